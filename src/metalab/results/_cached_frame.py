"""The columns of a results frame as bytes, for a store's frame cache, and back.

A column of numbers, bools or datetimes without gaps is kept as its NumPy buffer
(little-endian float64, int64, bool, or int64 microseconds since the epoch); the tag
lists as the distinct lists and one int32 code per run; any other column as its values,
MessagePack-encoded (which keeps ints, floats, NaN, strings, ``None``, lists and dicts
as they are). Reading one back gives :class:`~metalab.results._frames.Column` objects
that build the very frame the records built: ``tests/property`` holds the two equal.

Needs NumPy both ways (the caller checks): a frame cache serves pandas, polars and
Arrow, which all bring it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, get_args

import msgspec

from metalab.results._frames import Column, ColumnKind, numpy_values

if TYPE_CHECKING:
    import numpy as np

__all__ = ["decode_columns", "encode_columns", "frame_rows"]

VERSION: Final = 1
_KINDS: Final = frozenset(get_args(ColumnKind))


class _Stored(msgspec.Struct, array_like=True):
    name: str
    kind: str
    missing: bool
    layout: str  # a NumPy dtype ("<f8", "<i8", "|b1"), "us", "tags" or "items"
    data: bytes


class _Frame(msgspec.Struct, array_like=True):
    version: int
    length: int
    columns: list[_Stored]


class _Head(msgspec.Struct, array_like=True):
    version: int
    length: int


class _Tags(msgspec.Struct, array_like=True):
    lists: list[tuple[str, ...]]
    codes: bytes  # int32 per run, little-endian


_ENCODER: Final = msgspec.msgpack.Encoder()
_FRAME: Final = msgspec.msgpack.Decoder(_Frame)
_HEAD: Final = msgspec.msgpack.Decoder(_Head)
_TAGS: Final = msgspec.msgpack.Decoder(_Tags)
_NUMERIC: Final = frozenset({"<f8", "<i8", "|b1"})


def _micros(values: Sequence[dt.datetime]) -> np.ndarray[Any, Any]:
    import numpy as np  # noqa: PLC0415 -- optional (the caller checked)

    seconds = np.fromiter(map(dt.datetime.timestamp, values), dtype=np.float64, count=len(values))
    return np.rint(seconds * 1e6).astype("<i8")


def _store(column: Column) -> _Stored:
    import numpy as np  # noqa: PLC0415 -- optional (the caller checked)

    name, kind, missing = column.name, column.kind, column.missing
    if kind == "datetime" and not missing:
        return _Stored(name, kind, missing, "us", _micros(column.items).tobytes())
    if (kind in ("bool", "int", "float") and not missing) or column.block is not None:
        values = numpy_values(column)
        layout = values.dtype.newbyteorder("<").str
        if layout in _NUMERIC:
            return _Stored(name, kind, missing, layout, values.astype(layout).tobytes())
    if kind == "strlist":
        codes: dict[tuple[str, ...], int] = {}
        for tags in column.items:
            codes.setdefault(tuple(tags), len(codes))
        indexes = np.fromiter(
            (codes[tuple(tags)] for tags in column.items), dtype="<i4", count=len(column.items)
        )
        return _Stored(
            name, kind, missing, "tags", _ENCODER.encode(_Tags(list(codes), indexes.tobytes()))
        )
    return _Stored(name, kind, missing, "items", _ENCODER.encode(list(column.items)))


def encode_columns(columns: Sequence[Column], length: int) -> bytes | None:
    """The columns of a frame of ``length`` rows as bytes; ``None`` if they cannot be.

    A value MessagePack cannot hold (an int beyond 64 bits) leaves the frame uncached.
    """
    try:
        return _ENCODER.encode(_Frame(VERSION, length, [_store(c) for c in columns]))
    except (OverflowError, msgspec.EncodeError, TypeError):
        return None


def _column(stored: _Stored, length: int) -> Column:
    import numpy as np  # noqa: PLC0415 -- optional (the caller checked)

    kind: Any = stored.kind
    if kind not in _KINDS:
        raise ValueError(f"unknown column kind {kind!r}")
    layout = stored.layout
    if layout in _NUMERIC or layout == "us":
        array = np.frombuffer(stored.data, dtype="<i8" if layout == "us" else layout)
        if len(array) != length:
            raise ValueError(f"column {stored.name!r} has {len(array)} values, not {length}")
        return Column(
            stored.name,
            kind,
            stored.missing,
            None,
            array=array.astype(array.dtype.newbyteorder("=")),
        )
    if layout == "tags":
        tags = _TAGS.decode(stored.data)
        indexes = np.frombuffer(tags.codes, dtype="<i4")
        lists = tags.lists
        items: list[Any] = [lists[i] for i in indexes.tolist()]
    elif layout == "items":
        items = msgspec.msgpack.decode(stored.data, type=list[Any])
    else:
        raise ValueError(f"unknown column layout {layout!r}")
    if len(items) != length:
        raise ValueError(f"column {stored.name!r} has {len(items)} values, not {length}")
    return Column(stored.name, kind, stored.missing, items)


def frame_rows(payload: bytes) -> int | None:
    """The row count of an encoded frame, without decoding its columns; ``None``: not one."""
    try:
        head = _HEAD.decode(payload)
    except msgspec.DecodeError:
        return None
    return head.length if head.version == VERSION and head.length >= 0 else None


def decode_columns(payload: bytes) -> tuple[int, list[Column]] | None:
    """The row count and columns of an encoded frame; ``None`` if it is not one."""
    try:
        frame = _FRAME.decode(payload)
        if frame.version != VERSION:
            return None
        return frame.length, [_column(stored, frame.length) for stored in frame.columns]
    except (msgspec.DecodeError, ValueError, IndexError):
        return None
