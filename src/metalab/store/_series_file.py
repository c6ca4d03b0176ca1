"""The on-disk form of a run's metric series: one append-only JSON-lines file.

``series/{run_id}.jsonl`` starts with a header line, then holds one line per point
in the order the points were logged::

    {"metalab_series":1,"run_id":"3f9c...","generation":"9b1f0c2a7d4e6f80"}
    ["loss",0,0.93,1764700000.123456]
    ["loss",1,{"$float":"NaN"},1764700000.223456]

Each point is ``[name, step, value, timestamp]``: the timestamp in seconds since the
Unix epoch (UTC), non-finite floats in the escaped form of every other document. The
header's ``generation`` is a random token drawn each time the file is created, so a
run run again (whose series starts afresh) is told from an older read of the same
file; files without it (written before it existed) read as generation ``""``.
Writers only append whole lines, in one ``write`` per flush, so a flush cut short by a
kill leaves at most one torn line at the end: readers ignore it (and ``verify``
reports it); nothing before it is lost. A line that cannot be decoded anywhere else
is a corrupt file.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import Final, NamedTuple

import msgspec

from metalab.errors import CorruptRecordError
from metalab.records import MetricValue, ResultDocument
from metalab.series import MetricSeries, SeriesPoint, group_columns

__all__ = [
    "SERIES_VERSION",
    "PointColumns",
    "SeriesScan",
    "decode_lines",
    "decode_series",
    "encode_header",
    "encode_points",
    "legacy_series_points",
    "split_header",
]

SERIES_VERSION: Final = 1

_FLOAT_KEY: Final = "$float"
_NONFINITE: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class _Header(msgspec.Struct, forbid_unknown_fields=False):
    metalab_series: int
    run_id: str
    generation: str = ""


_Line = tuple[str, int, bool | int | float | str | dict[str, str], float | None]

_ENCODER: Final = msgspec.json.Encoder()
_HEADER: Final = msgspec.json.Decoder(_Header)
_LINES: Final = msgspec.json.Decoder(_Line)


class SeriesScan(NamedTuple):
    """What a series file holds.

    Attributes:
        series: Each metric's series, by name.
        points: How many points the file holds.
        torn: Bytes of a torn last line that were ignored (0 for a whole file).
    """

    series: dict[str, MetricSeries]
    points: int
    torn: int


def encode_header(run_id: str) -> bytes:
    """The first line of a new series file of a run (with a new generation token)."""
    header = {
        "metalab_series": SERIES_VERSION,
        "run_id": run_id,
        "generation": secrets.token_hex(8),
    }
    return _ENCODER.encode(header) + b"\n"


def encode_points(points: Sequence[SeriesPoint]) -> bytes:
    """The lines of ``points``, each ending with a newline."""
    rows: list[tuple[str, int, object, float | None]] = [
        (name, step, _escaped(value), ts) for name, step, value, ts in points
    ]
    return _ENCODER.encode_lines(rows)


def _escaped(value: MetricValue) -> object:
    if type(value) is float and not math.isfinite(value):
        return {
            _FLOAT_KEY: "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        }
    return value


def decode_series(data: bytes, *, source: str, run_id: str) -> SeriesScan:
    """Read a series file; a torn last line is left out and counted.

    Raises:
        CorruptRecordError: The header or a whole line cannot be decoded, or the file
            belongs to another run.
    """
    end = data.rfind(b"\n") + 1
    torn = len(data) - end
    first = data.find(b"\n")
    if first < 0:
        # Not even a whole header: a file cut short while it was created.
        return SeriesScan({}, 0, torn)
    _check_header(data[:first], source=source, run_id=run_id)
    columns = decode_lines(data[first + 1 : end], source=source)
    if not columns[0]:
        return SeriesScan({}, 0, torn)
    return SeriesScan(group_columns(*columns), len(columns[0]), torn)


PointColumns = tuple[list[str], list[int], list[MetricValue], list[float | None]]
"""The points of series lines as columns: names, steps, values, timestamps."""


def decode_lines(body: bytes, *, source: str) -> PointColumns:
    """The points of whole series lines (no header), as columns in logging order.

    Raises:
        CorruptRecordError: A line cannot be decoded.
    """
    try:
        lines = _LINES.decode_lines(body)
    except msgspec.DecodeError as exc:
        raise CorruptRecordError(source, f"a line cannot be decoded: {exc}") from None
    if not lines:
        return [], [], [], []
    # Columns in C, then one pass in Python per metric (not per point).
    names, steps, raw, seconds = (list(column) for column in zip(*lines, strict=True))
    values = [_unescaped(v, source) for v in raw] if dict in set(map(type, raw)) else raw
    return names, steps, values, seconds


def split_header(data: bytes, *, source: str, run_id: str) -> tuple[str, bytes]:
    """The generation and the lines after the header of a whole series file.

    A torn last line is left out; a file without a whole header holds no lines.

    Raises:
        CorruptRecordError: The header cannot be decoded, or names another run.
    """
    end = data.rfind(b"\n") + 1
    first = data.find(b"\n")
    if first < 0:
        return "", b""
    header = _check_header(data[:first], source=source, run_id=run_id)
    return header.generation, data[first + 1 : end]


def _check_header(line: bytes, *, source: str, run_id: str) -> _Header:
    try:
        header = _HEADER.decode(line)
    except msgspec.DecodeError as exc:
        raise CorruptRecordError(source, f"not a metalab series file: {exc}") from None
    if header.metalab_series != SERIES_VERSION:
        raise CorruptRecordError(
            source,
            f"series format version {header.metalab_series!r}; this metalab reads {SERIES_VERSION}",
        )
    if header.run_id != run_id:
        raise CorruptRecordError(source, f"holds the series of run {header.run_id!r}")
    return header


def _unescaped(value: bool | float | str | dict[str, str], source: str) -> MetricValue:
    if not isinstance(value, dict):
        return value
    name = value.get(_FLOAT_KEY)
    if len(value) != 1 or name not in _NONFINITE:
        raise CorruptRecordError(source, f"a point's value {value!r} is not a metric")
    return _NONFINITE[name]


def legacy_series_points(name: str, result: ResultDocument) -> list[SeriesPoint] | None:
    """The points of a metalab 0.1 stepped metric, or ``None`` for other results.

    metalab 0.1 kept ``capture.metric(name, value, step=...)`` as the structured
    result ``name`` with ``"metadata": {"type": "stepped_metric"}`` and ``data`` a list
    of ``[step, value]`` pairs, without timestamps.
    """
    if result.metadata.get("type") != "stepped_metric" or not isinstance(result.data, list):
        return None
    points: list[SeriesPoint] = []
    for pair in result.data:
        if not (isinstance(pair, list) and len(pair) == 2):
            return None
        step, value = pair
        if type(step) is not int or not isinstance(value, bool | int | float | str):
            return None
        points.append(SeriesPoint(name, step, value, None))
    return points
