"""Canonical encoding and fingerprints: where run ids come from.

A run id must be the same for the same inputs on any machine, in any process and in
any Python session, so it cannot rely on ``hash()``, ``repr`` of containers, dict
order or pickling. Values are first normalised to JSON builtins (:func:`to_json`),
then written by :func:`canonical_bytes` as a small type-tagged, length-prefixed byte
string:

- ``None``, ``True`` and ``False`` have their own tags; an ``int`` is never equal to
  a ``float`` (``1`` and ``1.0`` give different fingerprints);
- a float is written with ``float.hex`` (exact, locale-free); ``-0.0`` is written as
  ``0.0`` (they compare equal) and every NaN as the same NaN;
- strings (and mapping keys) are NFC-normalised before they are encoded as UTF-8, so
  ``"é"`` typed as one code point or as ``e`` plus a combining accent is one value;
- mapping keys are sorted by their encoded bytes, so insertion order is irrelevant;
  lists and tuples are the same sequence (JSON cannot tell them apart either).

A fingerprint is the lowercase hex sha256 of that encoding, and a run id is the
fingerprint of ``[experiment_id, context_fp, params_fp, seed_fp]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import unicodedata
from collections.abc import Mapping
from typing import Final, cast

import msgspec

from metalab.errors import ConfigError
from metalab.records import JSONValue

__all__ = ["canonical_bytes", "fingerprint", "run_id_for", "to_json", "to_json_object"]

_NAN: Final = b"dnan;"
_ZERO: Final = b"d" + (0.0).hex().encode() + b";"
_PLAIN_SCALARS: Final = frozenset({type(None), bool, int, float, str})
_ACCEPTED: Final = (
    "None, bool, int, float, str, lists or tuples of them, and dicts with string keys"
)


def _where(path: str) -> str:
    return path or "the value"


def _nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def to_json(value: object, path: str = "") -> JSONValue:
    """Return ``value`` as plain JSON builtins, or raise naming the offending part.

    Tuples become lists, subclasses of ``bool``/``int``/``float``/``str`` their base
    type, NumPy scalars (anything with a ``dtype`` and a zero-dimensional
    ``item()``) Python scalars, and dataclasses or msgspec Structs dicts. Non-finite
    floats are kept (the codec stores them exactly).

    Args:
        value: The value to convert.
        path: Where ``value`` sits, for messages (``"params['lr']"``).

    Raises:
        ConfigError: ``value`` (or something inside it) has no JSON form.
    """
    kind = type(value)
    # Exact types first: this runs for every param of every run.
    if kind in _PLAIN_SCALARS:
        return cast(JSONValue, value)
    if kind is dict:
        return _mapping_to_json(cast(dict[object, object], value), path)
    if kind is list or kind is tuple:
        return [to_json(v, f"{path}[{i}]") for i, v in enumerate(cast(list[object], value))]
    return _other_to_json(value, path)


def to_json_object(value: Mapping[str, object], path: str = "") -> dict[str, JSONValue]:
    """Return a mapping as a JSON object (a dict of JSON builtins); see :func:`to_json`.

    Raises:
        ConfigError: ``value`` is not a mapping with string keys and JSON values.
    """
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_where(path)} must be a dict, got {type(value).__name__}")
    return _mapping_to_json(cast(Mapping[object, object], value), path)


def _string_key(key: object, path: str) -> str:
    if not isinstance(key, str):
        raise ConfigError(
            f"{_where(path)} has a key {key!r} of type {type(key).__name__}; "
            "mapping keys must be strings so the value can be stored as JSON"
        )
    return str(key)


def _mapping_to_json(value: Mapping[object, object], path: str) -> dict[str, JSONValue]:
    return {_string_key(k, path): to_json(v, f"{path}[{k!r}]") for k, v in value.items()}


def _other_to_json(value: object, path: str) -> JSONValue:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return _mapping_to_json(value, path)
    if isinstance(value, list | tuple):
        return [to_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "dtype") and getattr(value, "shape", None) == () and hasattr(value, "item"):
        return to_json(value.item(), path)
    own = getattr(value, "__metalab_json__", None)
    if callable(own):
        # metalab.FilePath / DirPath: their content, hashed when first needed.
        try:
            return to_json(own(), path)
        except OSError as exc:
            raise ConfigError(f"{_where(path)}: cannot read {value!r}: {exc}") from exc
    if isinstance(value, msgspec.Struct) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        try:
            builtins = msgspec.to_builtins(value, enc_hook=_own_json)
        except OSError as exc:
            raise ConfigError(f"{_where(path)}: cannot read a path it names: {exc}") from exc
        except TypeError as exc:
            raise ConfigError(f"{_where(path)} cannot be converted to JSON: {exc}") from exc
        return to_json(builtins, path)
    hint = " (call .tolist() on arrays)" if hasattr(value, "tolist") else ""
    raise ConfigError(
        f"{_where(path)} is a {type(value).__qualname__}, which has no stable JSON form; "
        f"use {_ACCEPTED}{hint}"
    )


def _own_json(value: object) -> object:
    """Msgspec's hook for a value nested in a dataclass: one with a JSON form of its own."""
    own = getattr(value, "__metalab_json__", None)
    if callable(own):
        return own()
    raise TypeError(f"Encoding objects of type {type(value).__qualname__} is unsupported")


def _encode(value: JSONValue, out: list[bytes]) -> None:
    if value is None:
        out.append(b"N")
    elif value is True:
        out.append(b"T")
    elif value is False:
        out.append(b"F")
    elif type(value) is int:
        out.append(b"i%d;" % value)
    elif type(value) is float:
        if math.isnan(value):
            out.append(_NAN)
        elif value == 0.0:
            out.append(_ZERO)
        else:
            out.append(b"d" + value.hex().encode() + b";")
    elif type(value) is str:
        data = _nfc(value).encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(data))
        out.append(data)
    elif type(value) is list:
        out.append(b"l%d[" % len(value))
        for item in value:
            _encode(item, out)
        out.append(b"]")
    elif type(value) is dict:
        _encode_mapping(value, out)
    else:
        # Anything not yet plain JSON (a tuple, a dict subclass, a NumPy scalar).
        _encode(to_json(value), out)


def _encode_mapping(value: dict[str, JSONValue], out: list[bytes]) -> None:
    entries: dict[bytes, JSONValue] = {}
    for key, item in value.items():
        text = key if type(key) is str else _string_key(key, "")
        encoded = _nfc(text).encode("utf-8", "surrogatepass")
        if encoded in entries:
            raise ConfigError(
                f"mapping keys {key!r} and another key are the same text once "
                "unicode-normalised (NFC); rename one of them"
            )
        entries[encoded] = item
    out.append(b"m%d{" % len(entries))
    for encoded in sorted(entries):
        out.append(b"s%d:" % len(encoded))
        out.append(encoded)
        _encode(entries[encoded], out)
    out.append(b"}")


def canonical_bytes(value: object) -> bytes:
    """Return the canonical encoding of a JSON-like value (see the module docstring).

    Raises:
        ConfigError: The value has no JSON form, or two of its keys collide once
            unicode-normalised.
    """
    out: list[bytes] = []
    _encode(cast(JSONValue, value), out)
    return b"".join(out)


def fingerprint(value: object) -> str:
    """Return the lowercase hex sha256 of the canonical encoding of ``value``.

    Raises:
        ConfigError: The value has no JSON form.
    """
    return hashlib.sha256(canonical_bytes(value)).hexdigest()


def run_id_for(experiment_id: str, context_fp: str, params_fp: str, seed_fp: str) -> str:
    """Return the run id of one run: the fingerprint of its four identity parts.

    Equal to ``fingerprint([experiment_id, context_fp, params_fp, seed_fp])``,
    computed without the generic walk (it runs once per run of every sweep).
    """
    out = [b"l4["]
    for part in (experiment_id, context_fp, params_fp, seed_fp):
        if type(part) is not str:
            raise ConfigError(f"run id parts must be strings, got {part!r}")
        data = _nfc(part).encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(data))
        out.append(data)
    out.append(b"]")
    return hashlib.sha256(b"".join(out)).hexdigest()
