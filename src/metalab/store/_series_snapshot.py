"""A columnar snapshot of an experiment's series files, for frames that read many runs.

Decoding the JSON lines of 1,000 runs' series costs ten times reading their bytes, so
a frame of a finished sweep reads ``series/.snapshot`` instead: the float series of
every run as raw little-endian arrays, written by :meth:`FileStore.snapshot_series`
(which the runner calls when a sweep ends). The files stay the truth: the snapshot
records the size, modification time and inode of each series file it holds, and an
entry is used only while its file is still in that state; a run whose file changed,
is new, or holds values other than floats is read from its file. The snapshot is
derived: deleting it loses nothing, and a snapshot that cannot be read is ignored.

Layout (version 1): one JSON line, then the arrays::

    {"metalab_series_snapshot":1,"runs":[[run_id, size, mtime_ns, inode,
        [[metric, points], ...]], ...]}
    <for each run, each metric: steps int64[points], values float64[points],
     times int64[points] (microseconds since the epoch, the smallest int64 where
     unknown), little-endian>

Points are in step order, as :class:`~metalab.series.MetricSeries` holds them.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Mapping
from typing import Any, Final, cast

import msgspec

from metalab.series import MetricSeries, SeriesArrays
from metalab.store._fileio import FileKey

__all__ = [
    "SNAPSHOT_NAME",
    "Snapshot",
    "encodable",
    "encode_arrays",
    "encode_snapshot",
    "read_snapshot",
]

SNAPSHOT_NAME: Final = ".snapshot"
"""The snapshot's file name in a ``series/`` directory (hidden: listings skip it)."""

SNAPSHOT_VERSION: Final = 1


class _Entry(msgspec.Struct, array_like=True):
    run_id: str
    size: int
    mtime_ns: int
    inode: int
    metrics: list[tuple[str, int]]


class _Header(msgspec.Struct):
    metalab_series_snapshot: int
    runs: list[_Entry]


_HEADER: Final = msgspec.json.Decoder(_Header)
_ENCODER: Final = msgspec.json.Encoder()
_POINT_BYTES: Final = 24  # int64 step, float64 value, int64 microseconds
_NAT: Final = -(2**63)


class Snapshot:
    """A snapshot as read: its entries and the bytes of its arrays."""

    def __init__(self, entries: list[_Entry], body: memoryview) -> None:
        self._entries: dict[str, tuple[_Entry, int]] = {}
        offset = 0
        for entry in entries:
            self._entries[entry.run_id] = (entry, offset)
            offset += sum(points for _, points in entry.metrics) * _POINT_BYTES
        self._body = body

    def arrays(self, run_id: str, key: FileKey | None) -> dict[str, SeriesArrays] | None:
        """The series of a run, if the snapshot holds them for its file as it is now."""
        found = self._entries.get(run_id)
        if found is None or key is None:
            return None
        entry, offset = found
        if (entry.size, entry.mtime_ns, entry.inode) != key:
            return None
        import numpy as np  # noqa: PLC0415 -- comes with pandas, which frames require

        series: dict[str, SeriesArrays] = {}
        for name, points in entry.metrics:
            steps = np.frombuffer(self._body, dtype="<i8", count=points, offset=offset)
            offset += 8 * points
            values = np.frombuffer(self._body, dtype="<f8", count=points, offset=offset)
            offset += 8 * points
            micros = np.frombuffer(self._body, dtype="<i8", count=points, offset=offset)
            offset += 8 * points
            series[name] = SeriesArrays(steps, values, micros)
        return series

    def raw(self, run_id: str, key: FileKey) -> tuple[list[tuple[str, int]], bytes] | None:
        """A run's entry and array bytes, to carry into the next snapshot, if still valid."""
        found = self._entries.get(run_id)
        if found is None:
            return None
        entry, offset = found
        if (entry.size, entry.mtime_ns, entry.inode) != key:
            return None
        length = sum(points for _, points in entry.metrics) * _POINT_BYTES
        return entry.metrics, bytes(self._body[offset : offset + length])


def read_snapshot(path: str) -> Snapshot | None:
    """Read a snapshot; ``None`` if there is none, or it cannot be read (it is derived)."""
    try:
        with open(path, "rb") as stream:  # noqa: PTH123 -- a hot path, str paths
            data = stream.read()
    except OSError:
        return None
    end = data.find(b"\n")
    if end < 0:
        return None
    try:
        header = _HEADER.decode(data[:end])
    except msgspec.DecodeError:
        return None
    body = memoryview(data)[end + 1 :]
    points = sum(p for entry in header.runs for _, p in entry.metrics)
    if header.metalab_series_snapshot != SNAPSHOT_VERSION or len(body) != points * _POINT_BYTES:
        return None
    return Snapshot(header.runs, body)


def encodable(found: Mapping[str, MetricSeries]) -> bool:
    """Whether a run's series fit the snapshot: every value a float."""
    return all(type(v) is float for series in found.values() for v in series.values)


def encode_snapshot(
    runs: Iterable[tuple[str, FileKey, list[tuple[str, int]], bytes]],
) -> bytes:
    """The bytes of a snapshot of ``(run_id, file key, metrics, array bytes)`` entries."""
    entries: list[list[Any]] = []
    bodies: list[bytes] = []
    for run_id, key, metrics, body in runs:
        entries.append([run_id, *key, metrics])
        bodies.append(body)
    header = {"metalab_series_snapshot": SNAPSHOT_VERSION, "runs": entries}
    return _ENCODER.encode(header) + b"\n" + b"".join(bodies)


def encode_arrays(found: Mapping[str, MetricSeries]) -> tuple[list[tuple[str, int]], bytes]:
    """The metrics and array bytes of a run's float series (see :func:`encodable`)."""
    metrics: list[tuple[str, int]] = []
    parts: list[bytes] = []
    for name in sorted(found):
        series = found[name]
        # As SeriesArrays.of rounds them (seconds_to_micros), without NumPy.
        micros = [_NAT if s is None else round(s * 1e6) for s in series.seconds]
        values = cast("tuple[float, ...]", series.values)  # encodable(): floats only
        for column in (array("q", series.steps), array("d", values), array("q", micros)):
            if sys.byteorder != "little":
                column.byteswap()
            parts.append(column.tobytes())
        metrics.append((name, len(series)))
    return metrics, b"".join(parts)
