"""Versioned JSON encoding of every document metalab persists.

Documents are written as compact, standard (RFC 8259) JSON whose first member is
``"schema_version": 1``. Standard JSON has no NaN or infinities, so a non-finite float
anywhere in a document is written as the one-member object ``{"$float": "NaN"}``
(``"Infinity"``, ``"-Infinity"``); a user mapping that happens to look like such a
marker (its only key is ``"$float"`` or ``"$dict"``) is wrapped as ``{"$dict": {...}}``,
so every value round-trips exactly and Postgres ``jsonb`` accepts every file.

Decoding has two paths. Bytes that start with the current version tag and contain no
``$`` (what metalab writes for ordinary records) are decoded by msgspec straight into
the Struct. Everything else takes the general path: parse (accepting the bare ``NaN``
tokens that metalab 0.1 wrote), read the version, upgrade documents written by metalab
0.1, unescape markers and validate with ``msgspec.convert``. An unknown version raises
:class:`~metalab.errors.UnsupportedSchemaVersionError`; malformed JSON or a value of the
wrong type raises :class:`~metalab.errors.CorruptRecordError` naming the JSON path.

Timestamps in metalab 0.1 documents are naive local times; they are read as the local
time of the machine that reads them (the original writer's time zone is not recorded)
and converted to UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

import msgspec

from metalab.errors import ConfigError, CorruptRecordError, UnsupportedSchemaVersionError
from metalab.records import (
    ArtifactManifest,
    DerivedMetrics,
    ExperimentManifest,
    ResultDocument,
    RunRecord,
    StoreMeta,
    ensure_aware,
)

__all__ = [
    "ARTIFACT_MANIFEST",
    "CURRENT_VERSION",
    "DERIVED",
    "EXPERIMENT_MANIFEST",
    "LEGACY_VERSION",
    "MARKER_KEYS",
    "MAX_NESTING",
    "RESULT",
    "RUN_RECORD",
    "STORE_META",
    "DocumentCodec",
    "escape_json",
    "unescape_json",
]

CURRENT_VERSION: Final = 1
LEGACY_VERSION: Final = "0.1"
SUPPORTED_VERSIONS: Final = (CURRENT_VERSION, LEGACY_VERSION)

MAX_NESTING: Final = 100
"""How deeply the lists and mappings of a document may nest (the record itself is
level 1). Deeper values are refused when written, so that every stored document can
be decoded and indexed whatever the caller's stack."""

_FAST_PREFIX: Final = b'{"schema_version":1,'
_FLOAT_KEY: Final = "$float"
_DICT_KEY: Final = "$dict"
MARKER_KEYS: Final = frozenset({_FLOAT_KEY, _DICT_KEY})
"""Keys the escaped form gives meaning to (a mapping with one of them alone is wrapped)."""
_NONFINITE_NAMES: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

D = TypeVar("D", bound=msgspec.Struct)
_Upgrade = Callable[[dict[str, Any]], dict[str, Any]]


def _nonfinite_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def escape_json(value: Any) -> Any:
    """Return ``value`` with non-finite floats and marker-like mappings escaped.

    ``value`` is made of JSON builtins (dict, list or tuple, str, int, float, bool,
    None), as ``msgspec.to_builtins`` returns them.
    """
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {_FLOAT_KEY: _nonfinite_name(value)}
    if isinstance(value, dict):
        escaped = {k: escape_json(v) for k, v in value.items()}
        if len(value) == 1 and next(iter(value)) in MARKER_KEYS:
            return {_DICT_KEY: escaped}
        return escaped
    if isinstance(value, list | tuple):
        return [escape_json(v) for v in value]
    return value


def unescape_json(value: Any) -> Any:
    """Invert :func:`escape_json`."""
    if isinstance(value, dict):
        if len(value) == 1:
            key, inner = next(iter(value.items()))
            if key == _FLOAT_KEY and isinstance(inner, str) and inner in _NONFINITE_NAMES:
                return _NONFINITE_NAMES[inner]
            if key == _DICT_KEY and isinstance(inner, dict):
                return {k: unescape_json(v) for k, v in inner.items()}
        return {k: unescape_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescape_json(v) for v in value]
    return value


class DocumentCodec(Generic[D]):
    """Encoder and decoder of one document type.

    Args:
        doc_type: The Struct type of the document.
        upgrade_legacy: Turns a metalab 0.1 document (parsed JSON, version key
            removed) into the current shape; ``None`` if 0.1 had no such document.
        check: Raises if a document holds a value its JSON would not give back
            (run before each encode, so it must be cheap).
    """

    def __init__(
        self,
        doc_type: type[D],
        upgrade_legacy: _Upgrade | None,
        check: Callable[[D], None] | None = None,
    ) -> None:
        self.doc_type = doc_type
        self._upgrade_legacy = upgrade_legacy
        self._check = _no_check if check is None else check
        self._encoder = msgspec.json.Encoder()
        self._decode_fast = msgspec.json.Decoder(doc_type).decode
        self._decode_array = msgspec.json.Decoder(list[doc_type]).decode  # type: ignore[valid-type]
        self._timestamp_fields: tuple[str, ...] = getattr(doc_type, "timestamp_fields", ())

    def encode(self, doc: D) -> bytes:
        """Encode a document to compact, standard JSON bytes.

        Raises:
            ValueError: A timestamp of the document is naive, or its values nest
                lists and mappings more than :data:`MAX_NESTING` levels deep.
            ConfigError: The document holds binary data (a ``ValueError`` too).
        """
        # User values are checked for depth and bytes where they enter (params,
        # metrics, results, metadata); a document nested past the stack elsewhere is
        # caught as msgspec recurses.
        self._check(doc)
        doc = self._in_utc(doc)
        try:
            buf = self._encoder.encode(doc)
        except RecursionError as exc:
            raise self._too_deep() from exc
        # msgspec writes a non-finite float as ``null``; records rarely hold a real
        # ``null`` (defaults are omitted), so only then is the slower escape needed.
        if b"null" in buf or b"$" in buf:
            buf = self._encoder.encode(escape_json(msgspec.to_builtins(doc)))
        return buf

    def _too_deep(self) -> ValueError:
        return ValueError(
            f"a {self.doc_type.__name__} nests too many levels of lists and mappings; "
            f"metalab stores at most {MAX_NESTING} (flatten the value, or store it as "
            "an artifact)"
        )

    def _in_utc(self, doc: D) -> D:
        changes: dict[str, dt.datetime] = {}
        for name in self._timestamp_fields:
            value: dt.datetime | None = getattr(doc, name)
            if value is not None and value.tzinfo is not dt.UTC:
                changes[name] = ensure_aware(value, f"{self.doc_type.__name__}.{name}")
        return msgspec.structs.replace(doc, **changes) if changes else doc

    @staticmethod
    def direct(data: bytes) -> bool:
        """Whether ``data`` is a current document that decodes as it is (no upgrade, no escape)."""
        return data.startswith(_FAST_PREFIX) and b"$" not in data

    def decode_array(self, data: bytes | memoryview) -> list[D]:
        """Decode a JSON array of documents that are each :meth:`direct`, in one call.

        Gives what :meth:`decode` gives each of them, several times faster than one
        call per document.

        Raises:
            msgspec.DecodeError: The bytes are not such an array.
        """
        return self._decode_array(data)

    def decode(self, data: bytes, *, source: str = "<bytes>") -> D:
        """Decode and validate a document, upgrading older formats.

        Args:
            data: The raw bytes, as read from a file or a database.
            source: Where the bytes came from, used in error messages.

        Raises:
            CorruptRecordError: The bytes are not valid JSON or do not match the type.
            UnsupportedSchemaVersionError: The document was written by an unknown version.
        """
        try:
            if data.startswith(_FAST_PREFIX) and b"$" not in data:
                try:
                    return self._decode_fast(data)
                except msgspec.DecodeError as exc:
                    raise CorruptRecordError(source, str(exc)) from exc
            return self._decode_general(data, source)
        except RecursionError as exc:
            raise CorruptRecordError(
                source, "lists and mappings are nested too deeply to decode"
            ) from exc

    def _decode_general(self, data: bytes, source: str) -> D:
        try:
            # The stdlib parser accepts the bare NaN / Infinity tokens of metalab 0.1.
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptRecordError(source, f"malformed JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise CorruptRecordError(source, f"expected a JSON object, got {type(obj).__name__}")
        version: object = obj.pop("schema_version", None)
        if version is None:
            # metalab 0.1 marked run records with "_schema_version" and left the
            # other documents unversioned.
            version = obj.pop("_schema_version", LEGACY_VERSION)
        if type(version) is int and version == CURRENT_VERSION:
            obj = unescape_json(obj)
        elif version == LEGACY_VERSION and self._upgrade_legacy is not None:
            try:
                obj = self._upgrade_legacy(obj)
            except (KeyError, TypeError, ValueError) as exc:
                raise CorruptRecordError(source, f"cannot upgrade 0.1 document: {exc!r}") from exc
        else:
            supported = SUPPORTED_VERSIONS if self._upgrade_legacy else (CURRENT_VERSION,)
            raise UnsupportedSchemaVersionError(source, version, supported)
        try:
            return msgspec.convert(obj, self.doc_type)
        except msgspec.ValidationError as exc:
            raise CorruptRecordError(source, str(exc)) from exc


def _legacy_time(value: object) -> object:
    """Read a 0.1 naive local timestamp as local time and express it in UTC."""
    if not isinstance(value, str):
        return value
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()
    return parsed.astimezone(dt.UTC).isoformat()


def _relative_artifact_uri(uri: str) -> str:
    """Map an absolute 0.1 artifact path to one relative to the store root.

    metalab 0.1 wrote ``<root>/artifacts/<run_id>/<file>``; the store may since have
    moved, so only the part from ``artifacts/`` on is kept.
    """
    normalised = uri.replace("\\", "/")
    cut = normalised.rfind("/artifacts/")
    if cut < 0:
        return uri
    return normalised[cut + 1 :]


def _upgrade_artifacts(artifacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(a, uri=_relative_artifact_uri(a["uri"])) for a in artifacts]


def _upgrade_run_record(obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    out["params"] = out.pop("params_resolved", None) or {}
    for key in ("started_at", "finished_at"):
        if key in out:
            out[key] = _legacy_time(out[key])
    out["artifacts"] = _upgrade_artifacts(out.get("artifacts") or [])
    out["warnings"] = [
        w if isinstance(w, str) else json.dumps(w) for w in out.get("warnings") or []
    ]
    return out


def _upgrade_derived(obj: dict[str, Any]) -> dict[str, Any]:
    return {"metrics": obj}


def _upgrade_manifest(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj, submitted_at=_legacy_time(obj["submitted_at"]))


def _upgrade_artifact_manifest(obj: dict[str, Any]) -> dict[str, Any]:
    return {"artifacts": _upgrade_artifacts(obj.get("artifacts") or [])}


def _unchanged(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_CONTAINERS: Final = (dict, list, tuple)
_BINARY: Final = (bytes, bytearray, memoryview)


class _TooDeep(Exception):
    """A user value nests deeper than the limit (turned into a ValueError)."""


class _Binary(Exception):
    """A user value holds bytes (turned into a ConfigError naming where)."""


def _walk(container: dict[str, Any] | list[Any] | tuple[Any, ...], depth: int) -> None:
    """Check a user value that sits ``depth`` levels deep in its document.

    It runs on every encode, for every value, and nearly every value is a plain
    scalar: one exact-type test settles those. The walk never goes deeper than the
    limit, so it cannot exhaust the stack.

    Raises:
        _TooDeep: Lists and mappings nest past :data:`MAX_NESTING`.
        _Binary: A bytes-like value is inside.
    """
    if depth > MAX_NESTING:
        raise _TooDeep
    for value in container.values() if type(container) is dict else container:
        if type(value) in _SCALARS:
            continue
        if isinstance(value, _CONTAINERS):
            _walk(value, depth + 1)
        elif isinstance(value, _BINARY):
            raise _Binary


def _binary_path(container: dict[str, Any] | list[Any] | tuple[Any, ...]) -> str:
    """Where the first bytes-like value inside ``container`` is (``"['a'][0]"``)."""
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for key, value in items:
        if isinstance(value, _BINARY):
            return f"[{key!r}]"
        if isinstance(value, _CONTAINERS):
            try:
                _walk(value, 0)
            except _Binary:
                return f"[{key!r}]{_binary_path(value)}"
            except _TooDeep:  # pragma: no cover - depth is checked first
                continue
    raise AssertionError("no binary value in the container")  # pragma: no cover


def _check_values(document: str, depth: int, fields: dict[str, Any]) -> None:
    """Refuse user values a JSON document would not give back as they are.

    Args:
        document: The document's type, for messages.
        depth: How deep the fields sit in the document (its own mapping is level 1).
        fields: Field name (as shown in messages) -> value.

    Raises:
        ValueError: Lists and mappings nest more than :data:`MAX_NESTING` levels.
        ConfigError: A value is bytes-like; msgspec would write it as base64 text,
            to be read back as a ``str``. The runner refuses bytes in params when it
            plans the runs; this catches documents built by hand.
    """
    for name, value in fields.items():
        if type(value) in _SCALARS:
            continue
        if type(value) is dict and _flat(value):
            continue
        try:
            if isinstance(value, _BINARY):
                raise _Binary
            if isinstance(value, _CONTAINERS):
                _walk(value, depth)
        except _TooDeep:
            raise ValueError(
                f"{document}.{name} nests lists and mappings more than {MAX_NESTING} levels "
                f"deep (counting the document); metalab stores at most {MAX_NESTING}: "
                "flatten the value, or store it as an artifact"
            ) from None
        except _Binary:
            where = "" if isinstance(value, _BINARY) else _binary_path(value)
            raise ConfigError(
                f"{document}.{name}{where} is binary data (bytes, bytearray or memoryview), "
                "which a JSON document cannot hold: it would be stored as base64 text and "
                "read back as a str; store binary data as an artifact "
                "(capture.artifact() or store.put_artifact())"
            ) from None


def _flat(values: dict[str, Any]) -> bool:
    """Whether every value is a plain scalar (a plain loop: the fastest test measured)."""
    for value in values.values():  # noqa: SIM110 -- all() over a generator is 2x slower
        if type(value) not in _SCALARS:
            return False
    return True


def _check_run_record(record: RunRecord) -> None:
    params, metrics = record.params, record.metrics
    # Flat params and metrics, nearly all of them, need no walk.
    if not (_flat(params) and _flat(metrics)):
        _check_values("RunRecord", 2, {"params": params, "metrics": metrics})
    if record.provenance.extra:
        _check_values("RunRecord", 3, {"provenance.extra": record.provenance.extra})
    for i, artifact in enumerate(record.artifacts):
        if artifact.metadata:
            _check_values("RunRecord", 4, {f"artifacts[{i}].metadata": artifact.metadata})


def _check_derived(derived: DerivedMetrics) -> None:
    _check_values("DerivedMetrics", 2, {"metrics": derived.metrics})


def _check_result(result: ResultDocument) -> None:
    _check_values("ResultDocument", 2, {"data": result.data, "metadata": result.metadata})


def _check_manifest(manifest: ExperimentManifest) -> None:
    fields = {"metadata": manifest.metadata, "params": manifest.params, "seeds": manifest.seeds}
    _check_values("ExperimentManifest", 2, fields)


def _no_check(doc: object) -> None:
    del doc


RUN_RECORD: Final = DocumentCodec(RunRecord, _upgrade_run_record, _check_run_record)
DERIVED: Final = DocumentCodec(DerivedMetrics, _upgrade_derived, _check_derived)
RESULT: Final = DocumentCodec(ResultDocument, _unchanged, _check_result)
EXPERIMENT_MANIFEST: Final = DocumentCodec(ExperimentManifest, _upgrade_manifest, _check_manifest)
ARTIFACT_MANIFEST: Final = DocumentCodec(ArtifactManifest, _upgrade_artifact_manifest)
STORE_META: Final = DocumentCodec(StoreMeta, _unchanged)
