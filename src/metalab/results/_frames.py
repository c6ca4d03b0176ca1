"""The columns of a results frame, built straight from the run records.

One :class:`Column` per record field and per flattened ``params.*``, ``metrics.*`` and
``derived.*`` key, in a neutral form that :func:`pandas_frame` and :func:`polars_frame`
turn into a pandas or polars DataFrame. The passes go run by run and hand whole
columns to NumPy, pandas and polars: no per-row dicts, no per-cell Python calls
(``benchmarks/bench_results.py`` measures them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import msgspec

from metalab._optional import require
from metalab.errors import MissingDependencyError
from metalab.records import MetricValue, RunRecord

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import polars as pl
    import pyarrow as pa

__all__ = [
    "Column",
    "ColumnKind",
    "arrow_table",
    "frame_columns",
    "namespaces_for",
    "numpy_values",
    "pandas_frame",
    "polars_frame",
    "project",
    "text_array",
]

ColumnKind = Literal["bool", "int", "float", "str", "datetime", "strlist", "object"]


class _FloatBlock:
    """Float columns of one namespace, kept as the per-run rows they came from.

    NumPy converts the rows into one 2-D array in a single pass, several times
    faster than converting column by column; Python values are produced per column
    only for a consumer that wants them.
    """

    def __init__(self, rows: list[tuple[Any, ...]], positions: tuple[int, ...]) -> None:
        self._rows = rows
        self._positions = positions
        self._array: np.ndarray[Any, Any] | None = None

    def array(self) -> np.ndarray[Any, Any]:
        import numpy as np  # noqa: PLC0415 -- optional (numpy extra)

        if self._array is None:
            rows, positions = self._rows, self._positions
            width = len(positions)
            values: Iterable[Any]
            if width == 1:
                values = map(itemgetter(positions[0]), rows)
            else:
                whole = bool(rows) and positions == tuple(range(len(rows[0])))
                values = chain.from_iterable(rows if whole else map(itemgetter(*positions), rows))
            flat = np.fromiter(values, dtype=np.float64, count=len(rows) * width)
            self._array = flat.reshape(len(rows), width)
        return self._array

    def values(self, index: int) -> tuple[Any, ...]:
        """The values of the block's ``index``-th column (not of the rows' position)."""
        return tuple(map(itemgetter(self._positions[index]), self._rows))


class Column:
    """One column of the frame: a name, a kind and its values in a neutral form.

    The values are Python ``items``, a column of a float ``block``, or (for a
    column read back from a frame cache) a NumPy ``array``: bool, int64 or float64
    for a column of that kind without gaps, int64 microseconds since the epoch (UTC)
    for a datetime column without gaps.
    """

    __slots__ = ("_items", "array", "block", "index", "kind", "missing", "name")

    def __init__(
        self,
        name: str,
        kind: ColumnKind,
        missing: bool,
        items: tuple[Any, ...] | list[Any] | None,
        block: _FloatBlock | None = None,
        index: int = 0,
        array: np.ndarray[Any, Any] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.missing = missing
        self._items = items
        self.block = block
        self.index = index
        self.array = array

    @property
    def items(self) -> tuple[Any, ...] | list[Any]:
        if self._items is None:
            if self.block is not None:
                self._items = self.block.values(self.index)
            elif self.array is not None and self.kind == "datetime":
                micros = self.array.tolist()
                self._items = [_EPOCH + dt.timedelta(microseconds=m) for m in micros]
            elif self.array is not None:
                self._items = self.array.tolist()
            else:
                raise AssertionError(f"column {self.name!r} has neither values nor a block")
        return self._items


_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


_NONE: Final = type(None)


def _kind_of(types: set[type]) -> tuple[ColumnKind, bool]:
    missing = _NONE in types
    present = types - {_NONE}
    if not present:
        return "object", missing
    if present == {bool}:
        return "bool", missing
    if present == {int}:
        return "int", missing
    if present <= {int, float}:
        return "float", missing
    if present == {str}:
        return "str", missing
    return "object", missing


def _row_types(row: tuple[Any, ...]) -> tuple[type, ...]:
    return tuple(map(type, row))


def _rows(dicts: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """Return the keys of a namespace and one tuple of values per run (``None``: absent)."""
    keys = tuple(dicts[0])
    width = len(keys)
    if width:
        getter = itemgetter(*keys)
        try:
            rows = list(map(getter, dicts)) if width > 1 else [(v,) for v in map(getter, dicts)]
        except KeyError:
            rows = []
        # Every dict holding the first one's keys and no more has exactly its keys.
        if rows and set(map(len, dicts)) == {width}:
            return keys, rows
    keys = tuple(dict.fromkeys(k for d in dicts for k in d))
    return keys, [tuple(map(d.get, keys)) for d in dicts]


def _namespace_columns(prefix: str, dicts: Sequence[Mapping[str, Any]]) -> list[Column]:
    """Turn one dict per run into one column per key (nested dicts flattened).

    The passes go run by run, never key by key: it is the cheap direction in
    memory, since the values of one run were decoded together.
    """
    if not dicts:
        return []
    keys, rows = _rows(dicts)
    if not keys:
        return []
    # Usually every run has the same value types, so this set has a single member.
    signatures = set(map(_row_types, rows))
    kinds = [_kind_of(set(types)) for types in zip(*signatures, strict=True)]
    floats = tuple(i for i, (kind, missing) in enumerate(kinds) if kind == "float" and not missing)
    block = _FloatBlock(rows, floats) if floats else None
    others = [i for i in range(len(keys)) if i not in floats]
    # strict=False below: the rows have one length, and strict checking doubles the cost.
    transposed: dict[int, tuple[Any, ...]]
    if not others:
        transposed = {}
    elif len(others) == len(keys):
        transposed = dict(zip(others, zip(*rows, strict=False), strict=True))
    elif len(others) == 1:
        transposed = {others[0]: tuple(map(itemgetter(others[0]), rows))}
    else:
        picked = map(itemgetter(*others), rows)
        transposed = dict(zip(others, zip(*picked, strict=False), strict=True))
    columns: list[Column] = []
    for i, key in enumerate(keys):
        name = f"{prefix}.{key}"
        kind, missing = kinds[i]
        if block is not None and i in floats:
            columns.append(Column(name, kind, missing, None, block, floats.index(i)))
            continue
        items = transposed[i]
        types = {type(v) for v in items} if kind == "object" else set()
        if dict in types and types <= {dict, _NONE}:
            nested = [cast(Mapping[str, Any], {} if v is None else v) for v in items]
            columns.extend(_namespace_columns(name, nested))
        else:
            columns.append(Column(name, kind, missing, items))
    return columns


_CORE: Final = attrgetter(
    "run_id", "experiment_id", "status", "started_at", "finished_at", "duration_ms", "error", "tags"
)


_NAMESPACES: Final = ("params", "metrics", "derived")


def namespaces_for(columns: Sequence[str] | None) -> frozenset[str]:
    """The flattened namespaces a column selection needs (all of them for ``None``)."""
    if columns is None:
        return frozenset(_NAMESPACES)
    if isinstance(columns, str):
        raise TypeError(f"columns must be a list of names, not the string {columns!r}")
    return frozenset(ns for ns in _NAMESPACES for c in columns if c.startswith(f"{ns}."))


def project(columns: list[Column], wanted: Sequence[str]) -> list[Column]:
    by_name = {c.name: c for c in columns}
    chosen: dict[str, Column] = {}
    for name in wanted:
        if name.endswith(".*"):
            prefix = name[:-1]
            chosen.update((c.name, c) for c in columns if c.name.startswith(prefix))
        elif name in by_name:
            chosen[name] = by_name[name]
        else:
            raise KeyError(f"no column {name!r}; the runs have: {', '.join(by_name) or '(none)'}")
    return list(chosen.values())


def frame_columns(
    records: Sequence[RunRecord],
    derived: list[dict[str, MetricValue]],
    namespaces: frozenset[str] = frozenset(_NAMESPACES),
) -> list[Column]:
    core = list(zip(*map(_CORE, records), strict=False)) if records else [()] * 8
    run_ids, experiment_ids, statuses, started, finished, durations, errors, tags = core
    if any(e is not None for e in errors):
        error_types: tuple[Any, ...] = tuple(e.type if e else None for e in errors)
        error_messages: tuple[Any, ...] = tuple(e.message if e else None for e in errors)
    else:
        error_types = error_messages = errors
    return [
        Column("run_id", "str", False, run_ids),
        Column("experiment_id", "str", False, experiment_ids),
        Column("status", "str", False, statuses),
        Column("started_at", "datetime", False, started),
        Column("finished_at", "datetime", None in finished, finished),
        Column("duration_ms", "float", None in durations, durations),
        Column("error_type", "str", True, error_types),
        Column("error_message", "str", True, error_messages),
        Column("tags", "strlist", False, tags),
        *(
            _namespace_columns("params", [r.params for r in records])
            if "params" in namespaces
            else ()
        ),
        *(
            _namespace_columns("metrics", [r.metrics for r in records])
            if "metrics" in namespaces
            else ()
        ),
        *(_namespace_columns("derived", derived) if "derived" in namespaces else ()),
    ]


def _seconds(values: tuple[Any, ...] | list[Any]) -> list[float]:
    """Seconds since the epoch of aware datetimes (``None`` is not allowed).

    A float holds these to well under a microsecond for dates before 2200, and
    converting it is several times faster than handing the datetimes to pandas or
    polars one by one.
    """
    return list(map(dt.datetime.timestamp, values))


def _pandas_column(column: Column) -> np.ndarray[Any, Any] | pd.Index[Any]:
    import numpy as np  # noqa: PLC0415 -- optional (comes with pandas)
    import pandas as pd  # noqa: PLC0415 -- optional (pandas extra)

    if column.kind == "datetime" and column.array is not None:
        return pd.DatetimeIndex(column.array.view("datetime64[us]"), tz="UTC")
    if column.kind == "datetime" and column.block is None:
        values = column.items
        if column.missing:
            return pd.DatetimeIndex(values, tz="UTC")
        micros = np.rint(np.array(_seconds(values), dtype=np.float64) * 1e6).astype(np.int64)
        return pd.DatetimeIndex(micros.view("datetime64[us]"), tz="UTC")
    return numpy_values(column)


def numpy_values(column: Column) -> np.ndarray[Any, Any]:
    """A column other than a datetime one as the NumPy array a pandas frame holds.

    bool and int columns without gaps keep their type (an int beyond int64 becomes
    objects), numbers with gaps become float64 (NaN for a gap), the rest objects.
    Needs NumPy only.
    """
    import numpy as np  # noqa: PLC0415 -- optional (numpy extra)

    if column.block is not None:
        return column.block.array()[:, column.index]
    if column.array is not None and column.kind != "datetime":
        return column.array
    values = column.items
    if column.kind == "bool" and not column.missing:
        return np.array(values, dtype=np.bool_)
    if column.kind == "int" and not column.missing:
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            pass
    elif column.kind in ("int", "float"):
        return np.array(values, dtype=np.float64)
    # Element by element, so that list and tuple values stay single objects.
    return np.fromiter(values, dtype=object, count=len(values))


def _has(module: str, extra: str, feature: str) -> bool:
    try:
        require(module, extra=extra, feature=feature)
    except MissingDependencyError:
        return False
    return True


_POLARS_TYPES: Final = {"bool": "Boolean", "int": "Int64", "float": "Float64", "str": "String"}


def _polars_series(column: Column, numpy: bool) -> tuple[pl.Series, bool]:
    """The polars series of a column, and whether its values had to become strings."""
    import polars as pl  # noqa: PLC0415 -- optional (polars extra)

    name, kind = column.name, column.kind
    if column.block is not None and numpy:
        return pl.Series(name, column.block.array()[:, column.index]), False
    if column.array is not None and numpy:
        if kind == "datetime":
            return pl.Series(name, column.array).cast(pl.Datetime("us", "UTC")), False
        return pl.Series(name, column.array), False
    values = column.items
    if kind == "datetime":
        utc = pl.Datetime("us", "UTC")
        if column.missing:
            return pl.Series(name, values, dtype=utc), False
        seconds = pl.Series(name, _seconds(values), dtype=pl.Float64)
        return (seconds * 1e6).round().cast(pl.Int64).cast(utc), False
    if kind == "strlist":
        # Runs share a handful of tag lists: build each once, then gather.
        codes: dict[Any, int] = {}
        for tags in values:
            codes.setdefault(tags, len(codes))
        unique = pl.Series(name, list(map(list, codes)), dtype=pl.List(pl.String()))
        return unique.gather(list(map(codes.__getitem__, values))), False
    dtype_name = _POLARS_TYPES.get(kind)
    if dtype_name is not None:
        try:
            return pl.Series(name, values, dtype=getattr(pl, dtype_name)(), strict=False), False
        except OverflowError:
            pass  # an int beyond int64: as text, like mixed values
    if all(v is None for v in values):
        return pl.Series(name, values, dtype=pl.Null()), False
    return pl.Series(name, _texts(values), dtype=pl.String()), True


def polars_frame(columns: Sequence[Column]) -> tuple[pl.DataFrame, list[str]]:
    """Return a polars DataFrame of ``columns``, and the names of those turned into strings.

    Through Arrow when pyarrow is installed (polars then takes the buffers as they
    are), else series by series (through NumPy when it is installed); the frames are
    the same. The caller checks that polars is installed (its message names the feature).
    """
    import polars as pl  # noqa: PLC0415 -- optional (polars extra)

    if _has("pyarrow", "arrow", "Results.to_polars() through Arrow"):
        table, as_text = arrow_table(columns)
        frame = pl.from_arrow(table)
        if not isinstance(frame, pl.DataFrame):  # pragma: no cover - a table gives a frame
            raise AssertionError("polars made a Series of an Arrow table")
        return frame, as_text
    numpy = _has("numpy", "numpy", "a faster Results.to_polars()")
    built = [_polars_series(c, numpy) for c in columns]
    frame = pl.DataFrame([series for series, _ in built])
    return frame, [c.name for c, (_, converted) in zip(columns, built, strict=True) if converted]


def pandas_frame(columns: Sequence[Column], length: int) -> pd.DataFrame:
    """Return a pandas DataFrame of ``columns``, indexed ``0 .. length - 1``.

    The caller checks that pandas is installed (its message names the feature).
    """
    import pandas as pd  # noqa: PLC0415 -- optional (pandas extra)

    data = {c.name: _pandas_column(c) for c in columns}
    return pd.DataFrame(data, index=pd.RangeIndex(length))


def _arrow_array(column: Column) -> tuple[pa.Array[Any], bool]:
    """The Arrow array of a column, and whether its values had to become strings."""
    import pyarrow as pa  # noqa: PLC0415 -- optional (arrow extra)
    import pyarrow.compute as pc  # noqa: PLC0415 -- optional (arrow extra)

    if column.block is not None:
        return pa.array(column.block.array()[:, column.index], type=pa.float64()), False
    if column.array is not None:
        if column.kind == "datetime":
            return pa.array(column.array, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")), False
        return pa.array(column.array), False
    values = column.items
    kind = column.kind
    if kind == "datetime":
        utc = pa.timestamp("us", tz="UTC")
        if column.missing:
            stamps = [None if v is None else round(v.timestamp() * 1e6) for v in values]
            return pa.array(stamps, type=pa.int64()).cast(utc), False
        seconds = pa.array(_seconds(values), type=pa.float64())
        micros = pc.round(pc.multiply(seconds, 1e6)).cast(pa.int64())
        return micros.cast(utc), False
    if kind == "strlist":
        # Runs share a handful of tag lists: build each once, then gather.
        codes: dict[Any, int] = {}
        for tags in values:
            codes.setdefault(tags, len(codes))
        unique = pa.array(list(map(list, codes)), type=pa.list_(pa.string()))
        return unique.take(pa.array(list(map(codes.__getitem__, values)), pa.int32())), False
    typed = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "str": pa.string()}
    if kind in typed:
        try:
            return pa.array(values, type=typed[kind], from_pandas=False), False
        except (OverflowError, pa.ArrowException):
            pass  # an int beyond int64: as text, like mixed values
    if all(v is None for v in values):
        return pa.nulls(len(values)), False
    return text_array(values), True


_JSON: Final = msgspec.json.Encoder()


def text_array(values: Iterable[object]) -> pa.Array[Any]:
    """Values of mixed types (or lists and dicts) as Arrow strings: JSON unless a string."""
    import pyarrow as pa  # noqa: PLC0415 -- optional (arrow extra)

    return pa.array(_texts(values), type=pa.string())


def _texts(values: Iterable[object]) -> list[str | None]:
    return [
        None if v is None else v if isinstance(v, str) else _JSON.encode(v).decode() for v in values
    ]


def arrow_table(columns: Sequence[Column]) -> tuple[pa.Table, list[str]]:
    """Return an Arrow table of ``columns``, and the names of those turned into strings.

    The caller checks that pyarrow is installed (its message names the feature).
    """
    import pyarrow as pa  # noqa: PLC0415 -- optional (arrow extra)

    arrays: list[pa.Array[Any]] = []
    as_text: list[str] = []
    for column in columns:
        array, converted = _arrow_array(column)
        arrays.append(array)
        if converted:
            as_text.append(column.name)
    return pa.table(arrays, names=[c.name for c in columns]), as_text
