"""The runs of an experiment as a sequence (:class:`Results`), and :func:`load_results`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, overload

from metalab._display import differing_params, html_table, short_ids, shown, text_table
from metalab._optional import installed, require
from metalab._progress import in_notebook
from metalab.errors import CapabilityError, ConfigError, ExperimentNotFoundError, MetalabWarning
from metalab.query import And, Expr, F, OrderBy, Query, build_query, select
from metalab.records import MetricValue, RunRecord, RunState, Status, metric_value
from metalab.results._cached_frame import decode_columns, encode_columns, frame_rows
from metalab.results._derived import DerivedFn
from metalab.results._frame_0_1 import ArtifactReducer, frame_0_1
from metalab.results._frames import (
    Column,
    arrow_table,
    frame_columns,
    namespaces_for,
    numpy_values,
    pandas_frame,
    polars_frame,
    project,
    text_array,
)
from metalab.results._run import Run
from metalab.series import SeriesArrays, concat_values, micros_to_pandas
from metalab.store import (
    FileStoreConfig,
    Store,
    StoreConfig,
    StoreLike,
    SupportsExperiments,
    SupportsFrameCache,
    SupportsLogs,
    SupportsQuery,
    SupportsRunEdits,
    SupportsSeries,
    SupportsSeriesMany,
    SupportsStructuredResults,
    coerce_store_config,
    derived_lookup,
    select_runs,
)
from metalab.store.locator import redact

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

__all__ = ["Results", "frame_cache_matches", "load_results"]


def _matches(value: object, expected: object) -> bool:
    if callable(expected):
        return bool(expected(value))
    return value == expected


_HTML_ROWS: Final = 20
"""Runs a notebook shows of a :class:`Results` (``to_dataframe()`` has them all)."""


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
        self._loaded: list[RunRecord] | None = list(records)
        self._store = store
        self._owns_store = owns_store
        # The experiment whose every run these results hold (None for a subset): a
        # query over them can then be answered by the store's own engine.
        self._complete = complete
        self._derived: dict[str, dict[str, MetricValue]] | None = None
        # A whole experiment's frame, encoded (rows, payload), from the store's frame
        # cache; and the key to cache the frame under once it is built here.
        self._frame: tuple[int, bytes] | None = None
        self._frame_key: bytes | None = None

    @classmethod
    def _from_frame(
        cls, store: Store, experiment_id: str | None, frame: tuple[int, bytes], *, owns_store: bool
    ) -> Results:
        """Results of a whole experiment whose frame the store had cached.

        Frames come from the cache; the records are read only when first needed.
        Should they turn out to be other runs than the frame's (the experiment changed
        in between), the frame is dropped and later frames are built from them.
        """
        results = cls((), store, owns_store=owns_store, complete=experiment_id)
        results._loaded = None
        results._frame = frame
        return results

    @property
    def _records(self) -> list[RunRecord]:
        if self._loaded is None:
            records = sorted(self._store.list_run_records(self._complete), key=_sort_key)
            self._loaded = records
            if self._frame is not None and not _frame_of(self._frame[1], records):
                self._frame = None
        return self._loaded

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
        if self._loaded is None and self._frame is not None:
            return self._frame[0]
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

    def _repr_html_(self) -> str:
        """The first runs as a table (notebooks): short ids, the params that differ."""
        shown = self._records[:_HTML_ROWS]
        params = differing_params([r.params for r in shown])
        metrics = sorted({k for r in shown for k in r.metrics})
        short = short_ids([r.run_id for r in self._records])
        columns = ["run", "status", "started", "duration_ms", "error"]
        columns += [f"params.{k}" for k in params] + [f"metrics.{k}" for k in metrics]
        rows = [
            [
                short[r.run_id],
                r.status,
                r.started_at,
                r.duration_ms,
                None if r.error is None else r.error.type,
                *(r.params.get(k) for k in params),
                *(r.metrics.get(k) for k in metrics),
            ]
            for r in shown
        ]
        left = len(self._records) - len(shown)
        note = f"{left} more runs not shown; to_dataframe() has them all" if left else ""
        return html_table(columns, rows, caption=repr(self), note=note)

    @classmethod
    def from_store(cls, store: StoreLike | Store, experiment_id: str | None = None) -> Results:
        """Load results from a store: :func:`load_results` under its metalab 0.1 name."""
        return load_results(store, experiment_id)

    @property
    def runs(self) -> list[Run]:
        """The runs, as a list."""
        return list(self)

    @overload
    def table(self, as_dataframe: Literal[False] = False) -> list[dict[str, object]]: ...
    @overload
    def table(self, as_dataframe: Literal[True]) -> pd.DataFrame: ...
    def table(self, as_dataframe: bool = False) -> list[dict[str, object]] | pd.DataFrame:
        """One flat row per run: a list of dicts, or a pandas frame.

        The columns of metalab 0.1's ``table()``: ``run_id``, ``experiment_id``,
        ``status``, ``duration_ms``, ``started_at`` and ``finished_at`` (ISO 8601,
        UTC), the three fingerprints, each metric under its own name and ``tags``
        joined by commas; and, unlike 0.1, each param as ``param_<name>`` (the prefix
        0.1's ``to_dataframe`` used), since a table without its params says little.
        :meth:`to_dataframe` is the typed frame to analyse with.

        Raises:
            MissingDependencyError: ``as_dataframe`` and pandas is not installed.
        """
        rows = [_table_row(record) for record in self._records]
        if not as_dataframe:
            return rows
        require("pandas", extra="pandas", feature="Results.table(as_dataframe=True)")
        import pandas as pd  # noqa: PLC0415 -- optional (pandas extra), required above

        return pd.DataFrame(rows)

    def summary(self) -> dict[str, object]:
        """Counts by status and the spread of durations (of the runs that finished)."""
        by_status: dict[str, int] = {}
        for record in self._records:
            by_status[record.status] = by_status.get(record.status, 0) + 1
        durations = [r.duration_ms for r in self._records if r.duration_ms is not None]
        return {
            "total_runs": len(self._records),
            "by_status": by_status,
            "avg_duration_ms": sum(durations) / len(durations) if durations else 0.0,
            "min_duration_ms": min(durations, default=0.0),
            "max_duration_ms": max(durations, default=0.0),
        }

    def display(self, *, group_by: Sequence[str] | None = None, show_summary: bool = True) -> None:
        """Show the runs to a person: HTML in a notebook, text on a terminal.

        Args:
            group_by: Param or metric names to count successes and failures by.
            show_summary: Start with the counts by status and the mean duration.
        """
        if in_notebook():
            display_html = importlib.import_module("IPython.display")
            display_html.display(display_html.HTML(self._repr_html_()))
            return
        out = sys.stdout
        if show_summary:
            summary = self.summary()
            out.write(f"{self!r}\n")
            out.write(f"  mean duration {summary['avg_duration_ms']:.1f} ms\n")
        if group_by:
            groups: dict[tuple[str, ...], list[RunRecord]] = {}
            for record in self._records:
                key = tuple(shown(_param_or_metric(record, name)) for name in group_by)
                groups.setdefault(key, []).append(record)
            rows = [
                [
                    *key,
                    sum(r.status == "success" for r in group),
                    sum(r.status == "failed" for r in group),
                    len(group),
                ]
                for key, group in sorted(groups.items())
            ]
            columns = [*group_by, "success", "failed", "total"]
            out.write(text_table(columns, [[str(cell) for cell in row] for row in rows]))

    def to_csv(self, path: str | os.PathLike[str], *, include_fingerprints: bool = False) -> Path:
        """Write :meth:`table` to a CSV file (its directory is made); return its path.

        A path without a suffix is a directory, which gets ``results_<UTC time>.csv``.

        Raises:
            MissingDependencyError: pandas is not installed.
        """
        target = Path(path)
        if not target.suffix:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S")
            target = target / f"results_{stamp}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        frame = self.table(as_dataframe=True)
        if not include_fingerprints:
            frame = frame.drop(columns=[c for c in frame.columns if c.endswith("_fingerprint")])
        frame.to_csv(target, index=False)
        return target

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
        status: Status | RunState | Iterable[Status | RunState] | None = None,
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

    def edit_store(self, operation: str) -> SupportsRunEdits:
        """Return the store as :class:`SupportsRunEdits`, or raise ``CapabilityError``."""
        store = self._store
        if not isinstance(store, SupportsRunEdits):
            raise CapabilityError(type(store).__qualname__, "SupportsRunEdits", operation)
        return store

    def set_tags(self, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> Results:
        """Add and remove tags of every run here; return these runs as they are now.

        Raises:
            CapabilityError: The store cannot edit runs.
            ConfigError: A tag is not a non-empty string, or is added and removed.
        """
        store = self.edit_store("Results.set_tags()")
        return self._view([store.set_tags(r.run_id, add=add, remove=remove) for r in self._records])

    def series_store(self, operation: str) -> SupportsSeries:
        """Return the store as :class:`SupportsSeries`, or raise ``CapabilityError``."""
        store = self._store
        if not isinstance(store, SupportsSeries):
            raise CapabilityError(type(store).__qualname__, "SupportsSeries", operation)
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
        self._frame = self._frame_key = None  # the frame changes with the derived metrics
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

    def _frame_columns(self, columns: Sequence[str] | None = None) -> list[Column]:
        if self._frame is not None:
            decoded = decode_columns(self._frame[1])
            if decoded is not None:
                return decoded[1] if columns is None else project(decoded[1], columns)
            self._frame = None
        namespaces = namespaces_for(columns)
        empty: dict[str, MetricValue] = {}
        if "derived" in namespaces:
            derived = self._load_derived()
            rows = [derived.get(r.run_id, empty) for r in self._records]
        else:
            rows = [empty] * len(self._records)
        built = frame_columns(self._records, rows, namespaces)
        if columns is None:
            self._keep_frame(built)
        return built if columns is None else project(built, columns)

    def _keep_frame(self, built: list[Column]) -> None:
        """Cache the whole frame just built in the store, if load_results took a key for it."""
        key, self._frame_key = self._frame_key, None
        if key is None or not isinstance(self._store, SupportsFrameCache):
            return
        # Not kept here as well: at a million runs the encoded frame is some 370 MB.
        payload = encode_columns(built, len(self._records))
        if payload is not None:
            self._store.write_frame_cache(self._complete, key, payload)

    def to_dataframe(
        self,
        columns: Sequence[str] | None = None,
        *,
        include_params: bool | None = None,
        include_metrics: bool | None = None,
        include_record: bool | None = None,
        include_derived: bool | None = None,
        derived_metrics: Sequence[DerivedFn | str] | None = None,
        artifact_reducers: Mapping[str, ArtifactReducer] | None = None,
        progress: bool | None = None,
    ) -> pd.DataFrame:
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

        **metalab 0.1's frame.** Passing any of the keyword options below builds the
        frame 0.1's ``to_dataframe`` built instead, so that a 0.1 script keeps its
        column names: ``run_id``, ``experiment_id``, ``status``, ``duration_ms``,
        ``started_at``/``finished_at`` (ISO strings), ``param_<name>``, each metric
        under its own name, ``derived_<name>``, then the columns the functions return.

        Args:
            columns: Only these columns of metalab's frame.
            include_params: 0.1 frame: the ``param_*`` columns (default ``True``).
            include_metrics: 0.1 frame: the metric columns (default ``True``).
            include_record: 0.1 frame: the run's id, status and times (default ``True``).
            include_derived: 0.1 frame: stored derived metrics (default ``False``).
            derived_metrics: 0.1 frame: functions of a :class:`Run` (or
                ``"module:function"``) whose returned dicts become columns, not stored.
            artifact_reducers: 0.1 frame: ``{artifact name: reducer}``, where
                ``reducer(artifact)`` or ``reducer(artifact, run)`` gets the loaded
                artifact (:meth:`Run.artifact`) and returns columns.
            progress: 0.1 frame: a progress bar while runs are read.

        A derived metric or reducer that raises is reported as a ``MetalabWarning``
        naming it and the run, and that run's columns stay missing.

        Raises:
            MissingDependencyError: pandas is not installed.
            KeyError: A requested column does not exist (the message lists them).
            ConfigError: ``columns`` together with 0.1's options, or a derived
                metric reference that cannot be imported.
        """
        options_0_1 = (
            include_params,
            include_metrics,
            include_record,
            include_derived,
            derived_metrics,
            artifact_reducers,
            progress,
        )
        if any(option is not None for option in options_0_1):
            if columns is not None:
                raise ConfigError(
                    "to_dataframe(columns=...) selects columns of metalab's frame; the "
                    "include_*/derived_metrics/artifact_reducers/progress options build "
                    "metalab 0.1's frame: pass one or the other"
                )
            return frame_0_1(
                self,
                include_params=include_params is not False,
                include_metrics=include_metrics is not False,
                include_record=include_record is not False,
                include_derived=bool(include_derived),
                derived_metrics=derived_metrics or (),
                artifact_reducers=artifact_reducers or {},
                progress=bool(progress),
            )
        require("pandas", extra="pandas", feature="Results.to_dataframe()")
        return pandas_frame(self._frame_columns(columns), len(self))

    def to_polars(self, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Return a polars DataFrame with one row per run (columns as :meth:`to_dataframe`).

        Missing values are nulls, so int and bool columns keep their type. Types as
        in :meth:`to_arrow`: a column whose values are of several types becomes
        strings, with one ``MetalabWarning`` naming every such column. Built through
        Arrow when pyarrow is installed, never through pandas.

        Raises:
            MissingDependencyError: polars is not installed.
            KeyError: A requested column does not exist (the message lists them).
        """
        require("polars", extra="polars", feature="Results.to_polars()")
        frame, as_text = polars_frame(self._frame_columns(columns))
        _warn_as_text(as_text)
        return frame

    def to_arrow(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Return a ``pyarrow.Table`` with the columns of :meth:`to_dataframe`.

        Typed: booleans, int64, float64, strings, ``timestamp[us, UTC]`` and, for
        ``tags``, lists of strings. A column whose values are of several types (or
        lists and dicts) becomes strings: strings as they are, other values as JSON,
        with one ``MetalabWarning`` naming every such column.

        Raises:
            MissingDependencyError: pyarrow is not installed (``metalab[arrow]``).
            KeyError: A requested column does not exist (the message lists them).
        """
        require("pyarrow", extra="arrow", feature="Results.to_arrow()")
        table, as_text = arrow_table(self._frame_columns(columns))
        _warn_as_text(as_text)
        return table

    def to_parquet(
        self, path: str | os.PathLike[str], columns: Sequence[str] | None = None
    ) -> Path:
        """Write :meth:`to_arrow` to a Parquet file (replaced atomically); return its path.

        Raises:
            MissingDependencyError: pyarrow is not installed (``metalab[arrow]``).
            KeyError: A requested column does not exist (the message lists them).
        """
        require("pyarrow", extra="arrow", feature="Results.to_parquet()")
        import pyarrow.parquet as pq  # noqa: PLC0415 -- optional (arrow extra), required above

        table = self.to_arrow(columns)
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            pq.write_table(table, tmp)
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    def series_dataframe(self, names: Sequence[str] | str | None = None) -> pd.DataFrame:
        """Return the metric series of these runs as one long pandas frame.

        One row per point: ``run_id`` and ``metric`` (categoricals), ``step``
        (int64), ``value`` (float64 or int64 when every value is a number of that
        type, else objects), ``timestamp`` (``datetime64[UTC]``; missing for stores of
        metalab 0.1), then the runs' ``params.*`` columns typed as in
        :meth:`to_dataframe`, ready for plotting learning curves across a sweep
        (``sns.lineplot(df, x="step", y="value", hue="params.lr")``). Rows follow the
        runs' order, then the metric name, then the step. Series are read 1,000 runs
        at a time: from a PostgresStore's index in one query, from a FileStore's
        series snapshot (written when a sweep ends) for the runs whose file has not
        changed since.

        Args:
            names: Only these metrics (default: every series).

        Raises:
            MissingDependencyError: pandas is not installed.
            CapabilityError: The store keeps no series.
        """
        require("pandas", extra="pandas", feature="Results.series_dataframe()")
        return _long_frame(*self._chosen_series(names, "Results.series_dataframe()"))

    def _chosen_series(
        self, names: Sequence[str] | str | None, feature: str
    ) -> tuple[list[str], list[int], list[str], list[SeriesArrays], list[Column]]:
        """What the long series tables are built of, read 1,000 runs at a time.

        Returns the runs' ids (in order), then one entry per chosen (run, metric)
        series in three parallel lists: the run's position, the metric's name and
        its arrays; last the runs' ``params.*`` columns.
        """
        wanted = [names] if isinstance(names, str) else names
        store = self.series_store(feature)
        param_columns = [c for c in self._frame_columns(["params.*"]) if c.name != "run_id"]
        rows: list[int] = []
        names_of: list[str] = []
        chosen: list[SeriesArrays] = []
        for start in range(0, len(self._records), _SERIES_BATCH):
            batch = self._records[start : start + _SERIES_BATCH]
            ids = [record.run_id for record in batch]
            by_run = _series_arrays(store, ids)
            for row, run_id in enumerate(ids, start=start):
                found = by_run[run_id]
                for name in sorted(found) if wanted is None else wanted:
                    series = found.get(name)
                    if series is not None:
                        rows.append(row)
                        names_of.append(name)
                        chosen.append(series)
        run_ids = [record.run_id for record in self._records]
        return run_ids, rows, names_of, chosen, param_columns

    def series_arrow(self, names: Sequence[str] | str | None = None) -> pa.Table:
        """Return the table of :meth:`series_dataframe` as a ``pyarrow.Table``.

        It is built from the series' arrays, without pandas. ``run_id`` and
        ``metric`` are dictionary-encoded strings, ``timestamp`` is
        ``timestamp[us, UTC]``, the other columns are typed as the frame's would be
        (NaN becomes null); a column mixing types (``value`` when numbers meet
        strings) becomes strings (JSON for non-strings), with a ``MetalabWarning``.

        Raises:
            MissingDependencyError: pyarrow or NumPy is not installed.
            CapabilityError: The store keeps no series.
        """
        require("pyarrow", extra="arrow", feature="Results.series_arrow()")
        require("numpy", extra="numpy", feature="Results.series_arrow()")
        table, mixed = _long_table(*self._chosen_series(names, "Results.series_arrow()"))
        _warn_as_text(mixed, "series columns")
        return table

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


def _warn_as_text(names: Sequence[str], what: str = "columns") -> None:
    """Warn the caller of a frame method that these columns became strings."""
    if names:
        warnings.warn(
            f"{what} of mixed types were turned into strings: {', '.join(names)}",
            MetalabWarning,
            stacklevel=3,
        )


def _sort_key(record: RunRecord) -> tuple[dt.datetime, str]:
    return record.started_at, record.run_id


def _frame_of(payload: bytes, records: Sequence[RunRecord]) -> bool:
    """Whether an encoded frame is of exactly ``records``' runs, in their order."""
    decoded = decode_columns(payload)
    if decoded is None:
        return False
    run_ids = next((c.items for c in decoded[1] if c.name == "run_id"), None)
    return run_ids is not None and list(run_ids) == [r.run_id for r in records]


def _connect_for_reading(config: StoreConfig, experiment_id: str | None) -> Store:
    """Connect ``config`` scoped to ``experiment_id``, if the store holds that experiment.

    Scoping a store lays down the experiment's directory, which reading an experiment
    that is not there must not do: it is an error instead, as is a path that holds no
    metalab store.

    Raises:
        ConfigError: ``config`` is scoped to another experiment.
        StoreNotFoundError: A FileStore path that holds no metalab store.
        ExperimentNotFoundError: The store holds no such experiment.
    """
    if isinstance(config, FileStoreConfig):
        config.require_store()
    if experiment_id is None or config.is_scoped:
        return config.scoped(experiment_id).connect() if experiment_id else config.connect()
    if isinstance(config, FileStoreConfig):
        known: list[str] | None = config.list_experiments()  # from _meta.json, no store
        where = config.root
    else:
        with config.connect() as collection:
            known = (
                collection.list_experiments()
                if isinstance(collection, SupportsExperiments)
                else None
            )
        where = redact(config.to_locator())
    if known is not None and experiment_id not in known:
        raise ExperimentNotFoundError(experiment_id, known, repr(where))
    return config.scoped(experiment_id).connect()


def _table_row(record: RunRecord) -> dict[str, object]:
    return {
        "run_id": record.run_id,
        "experiment_id": record.experiment_id,
        "status": record.status,
        "duration_ms": record.duration_ms,
        "started_at": record.started_at.isoformat(),
        "finished_at": None if record.finished_at is None else record.finished_at.isoformat(),
        "context_fingerprint": record.context_fingerprint,
        "params_fingerprint": record.params_fingerprint,
        "seed_fingerprint": record.seed_fingerprint,
        **{f"param_{name}": value for name, value in record.params.items()},
        **record.metrics,
        "tags": ",".join(record.tags),
    }


def _param_or_metric(record: RunRecord, name: str) -> object:
    if name in record.params:
        return record.params[name]
    return record.metrics.get(name)


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
        StoreNotFoundError: A path that holds no metalab store.
        ExperimentNotFoundError: The store holds no experiment ``experiment_id``
            (the message lists those it holds and suggests the closest).
        QuerySyntaxError: ``where`` or ``order_by`` does not parse.
        TypeError: ``source`` is not a locator, config or store.
    """
    query = (
        build_query(where, order_by, limit, offset)
        if where is not None or order_by is not None or limit is not None or offset
        else None
    )
    if isinstance(source, StoreConfig | str | os.PathLike):
        config = coerce_store_config(source)
        store = _connect_for_reading(config, experiment_id)
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
            # Frames are cached only with NumPy (which pandas, polars and pyarrow bring).
            cache = store if installed("numpy") and isinstance(store, SupportsFrameCache) else None
            key = None if cache is None else cache.frame_cache_key(wanted)
            if cache is not None and key is not None:
                cached = cache.read_frame_cache(wanted, key)
                rows = None if cached is None else frame_rows(cached)
                if cached is not None and rows is not None:
                    return Results._from_frame(store, wanted, (rows, cached), owns_store=owns)
            records = sorted(store.list_run_records(wanted), key=_sort_key)
            results = Results(records, store, owns_store=owns, complete=wanted)
            results._frame_key = key
            return results
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


def frame_cache_matches(store: Store, experiment_id: str | None) -> bool | None:
    """Whether the frame a store would serve from its cache is the frame its runs build.

    A cached frame is served while ``runs/`` and ``derived/`` stay as they were, which
    a record or derived file edited *in place* by another program does not change;
    this builds the frame from the runs and compares (``metalab store verify`` does).

    Args:
        store: Any store (only a :class:`~metalab.store.abc.SupportsFrameCache` has a
            cache).
        experiment_id: The experiment, as ``load_results`` is given it.

    Returns:
        ``None`` when no cached frame would be served now (none, stale, no NumPy, or
        a store without a cache), else whether it is the one the runs build.
    """
    if not (installed("numpy") and isinstance(store, SupportsFrameCache)):
        return None
    key = store.frame_cache_key(experiment_id)
    cached = None if key is None else store.read_frame_cache(experiment_id, key)
    if cached is None:
        return None
    records = sorted(store.list_run_records(experiment_id), key=_sort_key)
    built = Results(records, store, complete=experiment_id)._frame_columns()
    return encode_columns(built, len(records)) == cached


_SERIES_BATCH: Final = 1_000
"""Runs whose series are read in one call (one index query)."""


def _series_arrays(store: SupportsSeries, run_ids: list[str]) -> dict[str, dict[str, SeriesArrays]]:
    """The series of runs as arrays: at once where the store can, else run by run."""
    if isinstance(store, SupportsSeriesMany):
        return store.get_series_arrays(run_ids)
    by_run = {run_id: store.get_series(run_id) for run_id in run_ids}
    return {
        run_id: {name: SeriesArrays.of(series) for name, series in found.items()}
        for run_id, found in by_run.items()
    }


def _long_frame(
    run_ids: list[str],
    rows: list[int],
    names: list[str],
    chosen: list[SeriesArrays],
    param_columns: list[Column],
) -> pd.DataFrame:
    """The long frame of ``series_dataframe``: one row per point of the chosen series.

    Each column is built in one pass: ids and names as categoricals from codes,
    steps, times and values by concatenating the series' arrays, params per series
    (typed as in ``to_dataframe``) repeated over its points.
    """
    import numpy as np  # noqa: PLC0415 -- comes with pandas
    import pandas as pd  # noqa: PLC0415 -- optional (pandas extra); callers required it

    counts = np.fromiter((len(s) for s in chosen), dtype=np.int64, count=len(chosen))
    # Categories are unique: a run listed twice (results added together) is one.
    unique_ids = list(dict.fromkeys(run_ids))
    position = {run_id: i for i, run_id in enumerate(unique_ids)}
    series_rows = np.asarray([position[run_ids[row]] for row in rows], dtype=np.int64)
    metric_names = sorted(set(names))
    metric_code = {name: i for i, name in enumerate(metric_names)}
    metric_codes = np.asarray([metric_code[n] for n in names], dtype=np.int64)
    empty = np.empty(0, dtype=np.float64)
    columns: dict[str, object] = {
        "run_id": pd.Categorical.from_codes(
            np.repeat(series_rows, counts), pd.Index(unique_ids, dtype=object)
        ),
        "metric": pd.Categorical.from_codes(
            np.repeat(metric_codes, counts), pd.Index(metric_names, dtype=object)
        ),
        "step": np.concatenate([s.steps for s in chosen]) if chosen else empty.astype(np.int64),
        "value": concat_values([s.values for s in chosen]),  # noqa: PD011
        "timestamp": micros_to_pandas(
            np.concatenate([s.micros for s in chosen]) if chosen else empty.astype(np.int64)
        ).array,
    }
    # The params of each series, typed as in to_dataframe(), then repeated per point.
    per_series = pandas_frame(
        [Column(c.name, c.kind, c.missing, [c.items[row] for row in rows]) for c in param_columns],
        len(rows),
    )
    for name in per_series.columns:
        columns[name] = per_series[name].repeat(counts.tolist()).reset_index(drop=True)
    return pd.DataFrame(columns)


def _long_table(
    run_ids: list[str],
    rows: list[int],
    names: list[str],
    chosen: list[SeriesArrays],
    param_columns: list[Column],
) -> tuple[pa.Table, list[str]]:
    """The table of ``series_arrow``, and the names of the columns turned into strings.

    The columns of :func:`_long_frame`, built from the same arrays with NumPy and
    pyarrow only: ids and names as dictionaries (indices as narrow as pandas makes
    a categorical's codes), each other column typed as Arrow types the frame's
    (NaN as null; mixed values as strings).
    """
    import numpy as np  # noqa: PLC0415 -- optional (numpy extra); the caller required it
    import pyarrow as pa  # noqa: PLC0415 -- optional (arrow extra); the caller required it

    as_text: list[str] = []

    def inferred(name: str, values: Any) -> pa.Array[Any]:
        try:
            array: pa.Array[Any] = pa.array(values, from_pandas=True)
        except (pa.ArrowException, OverflowError):
            as_text.append(name)
            return text_array(values)
        return array

    def dictionary(codes: Any, words: list[str]) -> pa.Array[Any]:
        width = next(
            t for t in (np.int8, np.int16, np.int32, np.int64) if len(words) < np.iinfo(t).max
        )
        indices = pa.array(np.asarray(codes, dtype=width))
        encoded: pa.Array[Any] = pa.DictionaryArray.from_arrays(
            indices, pa.array(words, type=pa.string())
        )
        return encoded

    counts = np.fromiter((len(s) for s in chosen), dtype=np.int64, count=len(chosen))
    # Categories are unique: a run listed twice (results added together) is one.
    unique_ids = list(dict.fromkeys(run_ids))
    position = {run_id: i for i, run_id in enumerate(unique_ids)}
    # The run (its row in the results) of every point, and its id's and metric's codes.
    point_rows = np.repeat(np.asarray(rows, dtype=np.int64), counts)
    id_codes = np.asarray([position[run_id] for run_id in run_ids], dtype=np.int64)
    metric_names = sorted(set(names))
    metric_code = {name: i for i, name in enumerate(metric_names)}
    metric_codes = np.asarray([metric_code[n] for n in names], dtype=np.int64)
    empty = np.empty(0, dtype=np.int64)
    micros = np.concatenate([s.micros for s in chosen]) if chosen else empty
    arrays: dict[str, pa.Array[Any]] = {
        "run_id": dictionary(id_codes[point_rows], unique_ids),
        "metric": dictionary(np.repeat(metric_codes, counts), metric_names),
        "step": pa.array(np.concatenate([s.steps for s in chosen]) if chosen else empty),
        "value": inferred("value", concat_values([s.values for s in chosen])),  # noqa: PD011
        "timestamp": pa.array(
            micros, mask=micros == np.iinfo(np.int64).min, type=pa.timestamp("us", tz="UTC")
        ),
    }
    for column in param_columns:
        arrays[column.name] = inferred(column.name, numpy_values(column)[point_rows])
    return pa.table(arrays), as_text
