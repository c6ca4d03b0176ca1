"""Analysing what an experiment produced: :func:`load_results`, :class:`Results`, :class:`Run`.

``Results`` is a read-only sequence of :class:`Run` s loaded from a store (a path, a
locator, a config or a connected store). Each run exposes its record (params,
metrics, status, timings, error) and reads its derived metrics, artifacts, logs and
structured data from the store when asked. ``to_dataframe()`` and ``to_polars()``
give one row per run with flattened ``params.*``, ``metrics.*`` and ``derived.*``
columns; they build the columns straight from the records (no per-row dicts, no
per-cell Python calls), and ``benchmarks/bench_results.py`` measures them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from operator import attrgetter, itemgetter
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, cast, overload

from metalab._optional import require
from metalab.errors import CapabilityError, MissingDependencyError
from metalab.query import And, Expr, F, OrderBy, Query, build_query, select
from metalab.records import (
    ArtifactDescriptor,
    ErrorInfo,
    JSONValue,
    MetricValue,
    Provenance,
    RunRecord,
    Status,
    metric_value,
)
from metalab.store import (
    Store,
    StoreConfig,
    StoreLike,
    SupportsLogs,
    SupportsQuery,
    SupportsStructuredResults,
    coerce_store_config,
    derived_lookup,
    select_runs,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import polars as pl

__all__ = ["Results", "Run", "load_results"]

ColumnKind = Literal["bool", "int", "float", "str", "datetime", "strlist", "object"]


class Run:
    """One run of an experiment, as stored.

    Attributes come from the run record; :attr:`derived`, :meth:`artifact`,
    :meth:`log` and :meth:`data` read from the store the results were loaded from.
    """

    __slots__ = ("_record", "_results")

    def __init__(self, record: RunRecord, results: Results) -> None:
        self._record = record
        self._results = results

    def __repr__(self) -> str:
        return f"<Run {self._record.run_id[:12]} {self._record.status} params={self.params!r}>"

    @property
    def record(self) -> RunRecord:
        """The underlying immutable record."""
        return self._record

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._record.run_id

    @property
    def experiment_id(self) -> str:
        """The experiment it belongs to."""
        return self._record.experiment_id

    @property
    def status(self) -> Status:
        """``running``, ``success``, ``failed`` or ``cancelled``."""
        return self._record.status

    @property
    def params(self) -> dict[str, JSONValue]:
        """The run's parameters."""
        return self._record.params

    @property
    def metrics(self) -> dict[str, MetricValue]:
        """The metrics the operation captured."""
        return self._record.metrics

    @property
    def derived(self) -> dict[str, MetricValue]:
        """Metrics computed after the run (:meth:`Results.compute_derived`); may be empty."""
        return self._results.derived_of(self._record.run_id)

    @property
    def tags(self) -> tuple[str, ...]:
        """The run's tags."""
        return self._record.tags

    @property
    def started_at(self) -> dt.datetime:
        """When the run started (UTC)."""
        return self._record.started_at

    @property
    def finished_at(self) -> dt.datetime | None:
        """When it ended (UTC); ``None`` while running."""
        return self._record.finished_at

    @property
    def duration_ms(self) -> float | None:
        """Wall time in milliseconds; ``None`` while running."""
        return self._record.duration_ms

    @property
    def error(self) -> ErrorInfo | None:
        """The exception that ended a failed run (type, message, traceback)."""
        return self._record.error

    @property
    def provenance(self) -> Provenance:
        """Where and with what the run executed."""
        return self._record.provenance

    @property
    def artifacts(self) -> tuple[ArtifactDescriptor, ...]:
        """Descriptors of the run's artifacts (name, kind, format, sha256, size)."""
        return self._record.artifacts

    def artifact(self, name: str) -> bytes:
        """Return the bytes of artifact ``name``.

        Raises:
            ArtifactNotFoundError: The run has no such artifact.
        """
        return self._results.store.get_artifact(self._record.run_id, name)

    @property
    def logs(self) -> list[str]:
        """The names of the run's logs (``"run"`` is the one ``capture.log`` writes).

        Raises:
            CapabilityError: The store does not keep logs.
        """
        return self._results.log_store("Run.logs").list_logs(self._record.run_id)

    def log(self, name: str = "run") -> str | None:
        """Return the text of log ``name``, or ``None`` if the run has no such log.

        Raises:
            CapabilityError: The store does not keep logs.
        """
        return self._results.log_store("Run.log()").get_log(self._record.run_id, name)

    @property
    def data_names(self) -> list[str]:
        """The names of the structured data captured with ``capture.data``.

        Raises:
            CapabilityError: The store does not keep structured results.
        """
        store = self._results.result_store("Run.data_names")
        return store.list_results(self._record.run_id)

    def data(self, name: str) -> JSONValue:
        """Return structured data ``name`` (``None`` if the run has none by that name).

        Arrays captured from NumPy come back as nested lists; the stored document
        (with ``dtype`` and ``shape``) is ``results.store.get_result(run_id, name)``.

        Raises:
            CapabilityError: The store does not keep structured results.
        """
        document = self._results.result_store("Run.data()").get_result(self._record.run_id, name)
        return None if document is None else document.data


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
        import numpy as np

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

    def values(self, position: int) -> tuple[Any, ...]:
        return tuple(map(itemgetter(position), self._rows))


class _Column:
    """One column of the frame: a name, a kind and its values in a neutral form."""

    __slots__ = ("_items", "block", "index", "kind", "missing", "name")

    def __init__(
        self,
        name: str,
        kind: ColumnKind,
        missing: bool,
        items: tuple[Any, ...] | list[Any] | None,
        block: _FloatBlock | None = None,
        index: int = 0,
    ) -> None:
        self.name = name
        self.kind = kind
        self.missing = missing
        self._items = items
        self.block = block
        self.index = index

    @property
    def items(self) -> tuple[Any, ...] | list[Any]:
        if self._items is None:
            if self.block is None:
                raise AssertionError(f"column {self.name!r} has neither values nor a block")
            self._items = self.block.values(self.index)
        return self._items


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


def _namespace_columns(prefix: str, dicts: Sequence[Mapping[str, Any]]) -> list[_Column]:
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
    columns: list[_Column] = []
    for i, key in enumerate(keys):
        name = f"{prefix}.{key}"
        kind, missing = kinds[i]
        if block is not None and i in floats:
            columns.append(_Column(name, kind, missing, None, block, floats.index(i)))
            continue
        items = transposed[i]
        types = {type(v) for v in items} if kind == "object" else set()
        if dict in types and types <= {dict, _NONE}:
            nested = [cast(Mapping[str, Any], {} if v is None else v) for v in items]
            columns.extend(_namespace_columns(name, nested))
        else:
            columns.append(_Column(name, kind, missing, items))
    return columns


_CORE: Final = attrgetter(
    "run_id", "experiment_id", "status", "started_at", "finished_at", "duration_ms", "error", "tags"
)


_NAMESPACES: Final = ("params", "metrics", "derived")


def _namespaces(columns: Sequence[str] | None) -> frozenset[str]:
    """The flattened namespaces a column selection needs (all of them for ``None``)."""
    if columns is None:
        return frozenset(_NAMESPACES)
    if isinstance(columns, str):
        raise TypeError(f"columns must be a list of names, not the string {columns!r}")
    return frozenset(ns for ns in _NAMESPACES for c in columns if c.startswith(f"{ns}."))


def _project(columns: list[_Column], wanted: Sequence[str]) -> list[_Column]:
    by_name = {c.name: c for c in columns}
    chosen: dict[str, _Column] = {}
    for name in wanted:
        if name.endswith(".*"):
            prefix = name[:-1]
            chosen.update((c.name, c) for c in columns if c.name.startswith(prefix))
        elif name in by_name:
            chosen[name] = by_name[name]
        else:
            raise KeyError(f"no column {name!r}; the runs have: {', '.join(by_name) or '(none)'}")
    return list(chosen.values())


def _columns(
    records: Sequence[RunRecord],
    derived: list[dict[str, MetricValue]],
    namespaces: frozenset[str] = frozenset(_NAMESPACES),
) -> list[_Column]:
    core = list(zip(*map(_CORE, records), strict=False)) if records else [()] * 8
    run_ids, experiment_ids, statuses, started, finished, durations, errors, tags = core
    if any(e is not None for e in errors):
        error_types: tuple[Any, ...] = tuple(e.type if e else None for e in errors)
        error_messages: tuple[Any, ...] = tuple(e.message if e else None for e in errors)
    else:
        error_types = error_messages = errors
    return [
        _Column("run_id", "str", False, run_ids),
        _Column("experiment_id", "str", False, experiment_ids),
        _Column("status", "str", False, statuses),
        _Column("started_at", "datetime", False, started),
        _Column("finished_at", "datetime", None in finished, finished),
        _Column("duration_ms", "float", None in durations, durations),
        _Column("error_type", "str", True, error_types),
        _Column("error_message", "str", True, error_messages),
        _Column("tags", "strlist", False, tags),
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


def _pandas_column(column: _Column) -> np.ndarray[Any, Any] | pd.Index[Any]:
    import numpy as np
    import pandas as pd

    if column.block is not None:
        return column.block.array()[:, column.index]
    values = column.items
    if column.kind == "datetime":
        if column.missing:
            return pd.DatetimeIndex(values, tz="UTC")
        micros = np.rint(np.array(_seconds(values), dtype=np.float64) * 1e6).astype(np.int64)
        return pd.DatetimeIndex(micros.view("datetime64[us]"), tz="UTC")
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


def _has_numpy() -> bool:
    try:
        require("numpy", extra="numpy", feature="a faster Results.to_polars()")
    except MissingDependencyError:
        return False
    return True


_POLARS_TYPES: Final = {"bool": "Boolean", "int": "Int64", "float": "Float64", "str": "String"}


def _polars_series(column: _Column, numpy: bool) -> pl.Series:
    import polars as pl

    name, kind = column.name, column.kind
    if column.block is not None and numpy:
        return pl.Series(name, column.block.array()[:, column.index])
    values = column.items
    if kind == "datetime":
        utc = pl.Datetime("us", "UTC")
        if column.missing:
            return pl.Series(name, values, dtype=utc)
        seconds = pl.Series(name, _seconds(values), dtype=pl.Float64)
        return (seconds * 1e6).round().cast(pl.Int64).cast(utc)
    if kind == "strlist":
        # Runs share a handful of tag lists: build each once, then gather.
        codes: dict[Any, int] = {}
        for tags in values:
            codes.setdefault(tags, len(codes))
        unique = pl.Series(name, list(map(list, codes)), dtype=pl.List(pl.String()))
        return unique.gather(list(map(codes.__getitem__, values)))
    dtype_name = _POLARS_TYPES.get(kind)
    if dtype_name is not None:
        try:
            return pl.Series(name, values, dtype=getattr(pl, dtype_name)(), strict=False)
        except OverflowError:
            pass
    try:
        return pl.Series(name, values)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
        return pl.Series(name, values, dtype=pl.Object())


def _matches(value: object, expected: object) -> bool:
    if callable(expected):
        return bool(expected(value))
    return value == expected


class Results(Sequence[Run]):
    """The runs of an experiment: sized, iterable, indexable and filterable.

    ``results[i]`` is a :class:`Run`, ``results[i:j]`` and :meth:`filter` return new
    ``Results`` over the same store. Derived metrics are read from the store once,
    when first needed, and shared by those views.

    Args:
        records: The run records, in the order to present them.
        store: The store they were read from (for artifacts, logs, data, derived).
        owns_store: Close ``store`` when these results are closed.
    """

    def __init__(
        self,
        records: Iterable[RunRecord],
        store: Store,
        *,
        owns_store: bool = False,
        complete: str | None = None,
    ) -> None:
        self._records = list(records)
        self._store = store
        self._owns_store = owns_store
        # The experiment whose every run these results hold (None for a subset): a
        # query over them can then be answered by the store's own engine.
        self._complete = complete
        self._derived: dict[str, dict[str, MetricValue]] | None = None

    def _view(self, records: Iterable[RunRecord]) -> Results:
        view = Results(records, self._store)
        view._derived = self._derived
        return view

    @property
    def store(self) -> Store:
        """The store the runs were loaded from."""
        return self._store

    @property
    def records(self) -> list[RunRecord]:
        """The underlying run records (a copy of the list)."""
        return list(self._records)

    @property
    def run_ids(self) -> list[str]:
        """The ids of the runs, in order."""
        return [r.run_id for r in self._records]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Run]:
        return (Run(r, self) for r in self._records)

    @overload
    def __getitem__(self, index: int) -> Run: ...

    @overload
    def __getitem__(self, index: slice) -> Results: ...

    def __getitem__(self, index: int | slice) -> Run | Results:
        if isinstance(index, slice):
            return self._view(self._records[index])
        return Run(self._records[index], self)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for record in self._records:
            counts[record.status] = counts.get(record.status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return f"<Results: {len(self._records)} runs{': ' + summary if summary else ''}>"

    def get(self, run_id: str) -> Run | None:
        """Return the run with id ``run_id``, or ``None``."""
        for record in self._records:
            if record.run_id == run_id:
                return Run(record, self)
        return None

    def filter(
        self,
        where: Expr | str | None = None,
        *,
        status: Status | Iterable[Status] | None = None,
        tags: str | Iterable[str] | None = None,
        params: Mapping[str, object] | None = None,
        metrics: Mapping[str, object] | None = None,
        order_by: Sequence[OrderBy | str] | OrderBy | str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> Results:
        """Return the runs that match every given condition.

        ``where``, ``order_by``, ``limit`` and ``offset`` are the query language of
        :mod:`metalab.query` (``"params.lr < 0.01 and metrics.acc >= 0.9"``); when
        these results hold a whole experiment and the store answers queries itself
        (:class:`~metalab.store.abc.SupportsQuery`, e.g. the Postgres index), the
        query runs there. The keyword conditions are applied afterwards, in Python.

        Args:
            where: A filter expression or its string form.
            status: A status, or several (any of them matches).
            tags: A tag, or several (a run must have all of them).
            params: Param name -> the value it must equal, or a predicate
                (``{"lr": lambda v: v < 0.1}``). A run without the param never
                matches.
            metrics: The same for metrics (a separate namespace from params).
            order_by: Sort keys (``"metrics.acc desc"``, ``F.metrics["acc"].desc()``).
            limit: At most this many runs (after sorting).
            offset: Skip this many runs first.

        Raises:
            QuerySyntaxError: ``where`` or ``order_by`` does not parse.
        """
        selected = self._records
        if where is not None or order_by is not None or limit is not None or offset:
            selected = self._query(build_query(where, order_by, limit, offset))
        if status is not None:
            wanted = {status} if isinstance(status, str) else set(status)
            selected = [r for r in selected if r.status in wanted]
        if tags is not None:
            required = {tags} if isinstance(tags, str) else set(tags)
            selected = [r for r in selected if required.issubset(r.tags)]
        for attribute, conditions in (("params", params), ("metrics", metrics)):
            for key, expected in (conditions or {}).items():
                selected = [
                    r
                    for r in selected
                    if key in getattr(r, attribute)
                    and _matches(getattr(r, attribute)[key], expected)
                ]
        return self._view(selected)

    def _query(self, query: Query) -> list[RunRecord]:
        store = self._store
        if self._complete is not None and isinstance(store, SupportsQuery):
            scoped = F.experiment_id == self._complete
            where = scoped if query.where is None else And.of(scoped, query.where)
            return store.query_runs(dataclasses.replace(query, where=where))
        derived = self._load_derived() if query.uses_namespace("derived") else {}
        return select(self._records, query, lambda record: derived.get(record.run_id))

    @property
    def successful(self) -> Results:
        """The runs with status ``success``."""
        return self.filter(status="success")

    @property
    def failed(self) -> Results:
        """The runs with status ``failed``."""
        return self.filter(status="failed")

    def log_store(self, operation: str) -> SupportsLogs:
        """Return the store as :class:`SupportsLogs`, or raise ``CapabilityError``."""
        store = self._store
        if not isinstance(store, SupportsLogs):
            raise CapabilityError(type(store).__qualname__, "SupportsLogs", operation)
        return store

    def result_store(self, operation: str) -> SupportsStructuredResults:
        """Return the store as :class:`SupportsStructuredResults`, or raise."""
        store = self._store
        if not isinstance(store, SupportsStructuredResults):
            raise CapabilityError(type(store).__qualname__, "SupportsStructuredResults", operation)
        return store

    def _load_derived(self) -> dict[str, dict[str, MetricValue]]:
        if self._derived is None:
            experiments = {record.experiment_id for record in self._records}
            lookup = derived_lookup(
                self._store, experiments.pop() if len(experiments) == 1 else None
            )
            derived: dict[str, dict[str, MetricValue]] = {}
            for record in self._records:
                metrics = lookup(record)
                if metrics is not None:
                    derived[record.run_id] = dict(metrics)
            self._derived = derived
        return self._derived

    def derived_of(self, run_id: str) -> dict[str, MetricValue]:
        """Return the derived metrics of one run (empty if it has none)."""
        if self._derived is None:
            document = self._store.get_derived(run_id)
            return {} if document is None else dict(document.metrics)
        return dict(self._derived.get(run_id, {}))

    def compute_derived(self, fn: Callable[[Run], Mapping[str, MetricValue]]) -> int:
        """Compute metrics from each run and store them as its derived metrics.

        The new metrics are merged into the run's existing derived metrics (a name
        computed again replaces its old value) and written with ``put_derived``.

        Args:
            fn: Called with each :class:`Run`; returns metric name -> scalar.

        Returns:
            The number of runs whose derived metrics were stored.

        Raises:
            TypeError: ``fn`` returned something other than a mapping of scalars.
        """
        derived = self._load_derived()
        count = 0
        for record in self._records:
            computed = fn(Run(record, self))
            if not isinstance(computed, Mapping):
                raise TypeError(
                    f"compute_derived expects fn to return a dict of metrics, "
                    f"got {type(computed).__name__} for run {record.run_id!r}"
                )
            checked = {str(k): metric_value(str(k), v) for k, v in computed.items()}
            merged = {**derived.get(record.run_id, {}), **checked}
            self._store.put_derived(record.run_id, merged)
            derived[record.run_id] = merged
            count += 1
        return count

    def _frame_columns(self, columns: Sequence[str] | None = None) -> list[_Column]:
        namespaces = _namespaces(columns)
        empty: dict[str, MetricValue] = {}
        if "derived" in namespaces:
            derived = self._load_derived()
            rows = [derived.get(r.run_id, empty) for r in self._records]
        else:
            rows = [empty] * len(self._records)
        built = _columns(self._records, rows, namespaces)
        return built if columns is None else _project(built, columns)

    def to_dataframe(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Return a pandas DataFrame with one row per run.

        Pass ``columns`` to build only those (names as below, or ``"params.*"``-style
        wildcards per namespace): a frame without ``derived.*`` columns does not read
        the derived metrics at all.

        Columns: ``run_id``, ``experiment_id``, ``status``, ``started_at``,
        ``finished_at`` (``datetime64[UTC]``), ``duration_ms``, ``error_type``,
        ``error_message``, ``tags``, then ``params.*``, ``metrics.*`` and
        ``derived.*`` (nested param dicts flattened with dots). Dtypes: bool columns
        stay bool, int columns are int64 (float64 when some runs lack the value),
        mixed int/float columns float64, strings are strings and anything else
        ``object``.

        Raises:
            MissingDependencyError: pandas is not installed.
            KeyError: A requested column does not exist (the message lists them).
        """
        require("pandas", extra="pandas", feature="Results.to_dataframe()")
        import pandas as pd

        data = {c.name: _pandas_column(c) for c in self._frame_columns(columns)}
        return pd.DataFrame(data, index=pd.RangeIndex(len(self._records)))

    def to_polars(self, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Return a polars DataFrame with one row per run (columns as :meth:`to_dataframe`).

        Missing values are nulls, so int and bool columns keep their type.

        Raises:
            MissingDependencyError: polars is not installed.
            KeyError: A requested column does not exist (the message lists them).
        """
        require("polars", extra="polars", feature="Results.to_polars()")
        import polars as pl

        numpy = _has_numpy()
        return pl.DataFrame([_polars_series(c, numpy) for c in self._frame_columns(columns)])

    def close(self) -> None:
        """Close the store, if these results opened it (``load_results`` of a locator)."""
        if self._owns_store:
            self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _sort_key(record: RunRecord) -> tuple[dt.datetime, str]:
    return record.started_at, record.run_id


def load_results(
    source: StoreLike | Store,
    experiment_id: str | None = None,
    *,
    where: Expr | str | None = None,
    order_by: Sequence[OrderBy | str] | OrderBy | str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Results:
    """Load the runs of an experiment for analysis.

    >>> results = load_results("./experiments", experiment_id="my_exp:1.0")  # doctest: +SKIP
    >>> df = results.to_dataframe()  # doctest: +SKIP
    >>> best = load_results(  # doctest: +SKIP
    ...     "postgresql://db/lab?file_root=/data", "my_exp:1.0",
    ...     where="status == 'success' and params.lr < 0.01",
    ...     order_by="metrics.acc desc", limit=20,
    ... )

    Args:
        source: A collection root path or locator (``"./experiments"``,
            ``"postgresql://...?file_root=..."``), a ``StoreConfig`` (scoped or
            not) or a connected store.
        experiment_id: The experiment to load; needed with a collection root,
            optional with a scoped config or store.
        where: Only runs matching this filter (:mod:`metalab.query` syntax or
            expression). Stores that answer queries (the Postgres index) evaluate it
            themselves, so only the matching records are fetched.
        order_by: Sort keys; without them runs come oldest first.
        limit: At most this many runs.
        offset: Skip this many runs first.

    Returns:
        The runs. Results loaded from a locator or config own the store they
        connected: ``close()`` them (or use ``with``) when done.

    Raises:
        ConfigError: ``experiment_id`` conflicts with the config's scope, or the
            locator is invalid.
        QuerySyntaxError: ``where`` or ``order_by`` does not parse.
        TypeError: ``source`` is not a locator, config or store.
    """
    query = (
        build_query(where, order_by, limit, offset)
        if where is not None or order_by is not None or limit is not None or offset
        else None
    )
    if isinstance(source, StoreConfig | str | os.PathLike):
        config = coerce_store_config(source, experiment_id=experiment_id)
        store = config.connect()
        wanted = experiment_id or config.experiment_id
        owns = True
    elif callable(getattr(source, "list_run_records", None)):
        store, wanted, owns = source, experiment_id, False
    else:
        raise TypeError(
            "load_results() takes a path, a locator, a StoreConfig or a store, "
            f"got {type(source).__qualname__}"
        )
    try:
        if query is None:
            records = sorted(store.list_run_records(wanted), key=_sort_key)
            return Results(records, store, owns_store=owns, complete=wanted)
        if isinstance(store, SupportsQuery):
            if wanted is not None:
                scoped = F.experiment_id == wanted
                query = dataclasses.replace(
                    query, where=scoped if query.where is None else And.of(scoped, query.where)
                )
            records = store.query_runs(query)
        else:
            records = select_runs(store, query, wanted)
        if not query.order_by:
            records.sort(key=_sort_key)
        return Results(records, store, owns_store=owns)
    except BaseException:
        if owns:
            store.close()
        raise
