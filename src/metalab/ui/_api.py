"""What each endpoint of the dashboard answers, over any store (no web framework here).

Each function takes a connected store and the request's parameters and returns a
document of :mod:`metalab.ui._models` (or bytes to send). Paths never come from a
request: run ids, artifact names and log names go to the store, which validates
them (a name it refuses is a :class:`~metalab.errors.ConfigError`), and an artifact
or log is only read once the store has listed it under that exact name.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final, Literal, TypeGuard

import msgspec

from metalab._display import SHORT_ID, differing_params, short_ids
from metalab.errors import ExperimentNotFoundError, QueryError, QuerySyntaxError
from metalab.query import (
    F,
    Field,
    FieldInfo,
    Query,
    RunSummary,
    build_query,
    field_catalog,
    parse_order,
    summarize_runs,
)
from metalab.records import ArtifactDescriptor, MetricValue, RunRecord
from metalab.series import MetricSeries
from metalab.store import (
    FileStore,
    MemoryStore,
    Store,
    SupportsArtifactStreaming,
    SupportsExperimentManifests,
    SupportsExperiments,
    SupportsLogs,
    SupportsQuery,
    SupportsRunEdits,
    SupportsRunSummary,
    SupportsSeries,
    SupportsSeriesMany,
    derived_lookup,
    select_runs,
)
from metalab.store.locator import redact
from metalab.ui._models import (
    ArtifactOut,
    ColumnOut,
    CompareOut,
    CompareRow,
    CompareRun,
    CompareSeries,
    ErrorOut,
    ExperimentOut,
    ExperimentsOut,
    FieldOut,
    FieldsOut,
    LogOut,
    NotesEdit,
    NotesOut,
    RunOut,
    RunRow,
    RunsCount,
    RunsPage,
    SeriesOut,
    SeriesPage,
    TagsEdit,
    TagsOut,
)

__all__ = [
    "COMPARE_SERIES_POINTS",
    "DEFAULT_LIMIT",
    "DEFAULT_SORT",
    "DEFAULT_TAIL",
    "MAX_COMPARE",
    "MAX_LIMIT",
    "MAX_SERIES_POINTS",
    "MIN_COMPARE",
    "RECORD_COLUMNS",
    "SAMPLE",
    "STATUSES",
    "Column",
    "Problem",
    "RunsView",
    "artifact_source",
    "chunks",
    "compare",
    "default_columns",
    "describe",
    "downsample",
    "edit_notes",
    "edit_tags",
    "experiment_ids",
    "experiments",
    "fields",
    "find_artifact",
    "get_run",
    "jsonable",
    "log_tail",
    "matching_runs",
    "media_type",
    "number",
    "parse_columns",
    "require_experiment",
    "run_detail",
    "runs_count",
    "runs_csv",
    "runs_page",
    "runs_view",
    "series",
    "series_of",
]

DEFAULT_LIMIT: Final = 50
"""Rows of a runs page when ``limit`` is not given."""

MAX_LIMIT: Final = 1000
"""The most rows one page of JSON holds (the CSV export has no such limit)."""

DEFAULT_SORT: Final = ("-started_at",)
"""The order of the runs table when ``sort`` is not given: newest first."""

SAMPLE: Final = 1000
"""Matching runs a page reads from an index besides its own, for its total (exact up to
this many matches, a lower bound above), its default columns and its short ids."""

DEFAULT_TAIL: Final = 200
"""Lines of a log sent when ``tail`` is not given."""

MAX_SERIES_POINTS: Final = 2000
"""Points sent per series at most; a longer series is downsampled on the server."""

MIN_COMPARE: Final = 2
MAX_COMPARE: Final = 10
"""How many runs the compare page takes, at least and at most."""

COMPARE_SERIES_POINTS: Final = 1000
"""Points sent per series and run on the compare page at most."""

STATUSES: Final = ("running", "success", "failed", "cancelled")

RECORD_COLUMNS: Final = ("status", "started_at", "finished_at", "duration_ms", "tags")
"""Record fields a runs table can show, besides params, metrics and derived metrics."""

_TEXT_COLUMNS: Final = ("error", "notes")
"""Columns that are no field of the query language: shown, never sorted or filtered."""

_CHUNK: Final = 1 << 16

_MAPPINGS: Final[dict[str, Literal["params", "metrics", "derived"]]] = {
    "params": "params",
    "metrics": "metrics",
    "derived": "derived",
}

# Formats shown in the browser, and their media types. SVG and HTML are never shown
# inline: they can carry scripts.
_INLINE: Final = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "text": "text/plain; charset=utf-8",
    "log": "text/plain; charset=utf-8",
    "md": "text/plain; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "yaml": "text/plain; charset=utf-8",
    "yml": "text/plain; charset=utf-8",
}


class Problem(Exception):
    """A request the API refuses, with the HTTP status to answer.

    Attributes:
        status: The HTTP status code.
        message: What is wrong, for a person.
        param: The query parameter at fault, if one is.
        column: 1-based column of a syntax error in that parameter.
    """

    def __init__(
        self, status: int, message: str, *, param: str | None = None, column: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.column = column


def jsonable(value: Any) -> Any:
    """A run's value for JSON: non-finite floats as strings, mappings and lists walked."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


# --- experiments ------------------------------------------------------------------


def experiment_ids(store: Store) -> list[str]:
    """The experiments a store holds, sorted."""
    if isinstance(store, SupportsExperiments):
        return store.list_experiments()
    return sorted({r.experiment_id for r in store.list_run_records()})


def require_experiment(store: Store, experiment_id: str) -> None:
    """Refuse an experiment the store does not hold (before anything reads it).

    Raises:
        ExperimentNotFoundError: It holds no such experiment.
    """
    known = experiment_ids(store)
    if experiment_id not in known:
        raise ExperimentNotFoundError(experiment_id, known, "this store")


def experiments(store: Store) -> ExperimentsOut:
    """Every experiment with its run counts by status, last activity and tags.

    A store that summarises itself (an index) counts without reading any record. An
    experiment whose runs cannot be read is listed with the error, and the others as
    usual.
    """
    found = []
    ids = experiment_ids(store)
    summaries: dict[str, RunSummary] = {}
    if isinstance(store, SupportsRunSummary) and ids:
        try:
            summaries = store.summarize_runs()
        except Exception:  # noqa: BLE001 - each experiment is tried again alone below
            summaries = {}
    for experiment_id in ids:
        try:
            found.append(_experiment(store, experiment_id, summaries.get(experiment_id)))
        except Exception as exc:  # noqa: BLE001 - one unreadable experiment spoils no other
            found.append(ExperimentOut(experiment_id=experiment_id, error=describe(exc)))
    return ExperimentsOut(experiments=found)


def describe(exc: BaseException) -> str:
    """One line about an error, passwords hidden."""
    text = " ".join(redact(str(exc)).split())
    if isinstance(exc, QueryError):
        text = redact(str(exc)).splitlines()[0]
    return text or type(exc).__name__


def _experiment(store: Store, experiment_id: str, summary: RunSummary | None) -> ExperimentOut:
    if summary is None:
        if isinstance(store, SupportsRunSummary):
            summary = store.summarize_runs(experiment_id)[experiment_id]
        else:
            records = store.list_run_records(experiment_id)
            summary = summarize_runs(records, experiment_id)[experiment_id]
    counts = dict.fromkeys(STATUSES, 0) | summary.counts
    description = None
    tags: list[str] = []
    if isinstance(store, SupportsExperimentManifests):
        manifests = store.list_experiment_manifests(experiment_id)
        if manifests:
            description = manifests[-1].description
            tags = list(manifests[-1].tags)
    return ExperimentOut(
        experiment_id=experiment_id,
        runs=summary.runs,
        counts=counts,
        last_activity=summary.last_activity,
        description=description,
        tags=tags,
        run_tags=summary.tags,
    )


# --- the runs table ---------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A column of the runs table.

    Attributes:
        name: As a person reads it (``metrics.val acc``).
        key: In query syntax (``metrics."val acc"``).
        field: The query field it shows, or ``None`` for ``error`` and ``notes``.
    """

    name: str
    key: str
    field: Field | None

    @classmethod
    def of(cls, field: Field) -> Column:
        """The column showing a field of the query language."""
        name = (
            field.path[0]
            if field.namespace == "record"
            else ".".join([field.namespace, *field.path])
        )
        return cls(name, field.text(), field)

    def out(self) -> ColumnOut:
        """The column as the API describes it."""
        return ColumnOut(name=self.name, key=self.key, sortable=self.field is not None)

    def value(self, record: RunRecord, derived: Callable[[RunRecord], Any]) -> Any:
        """The column's value for one run (``None`` where the run has none)."""
        field = self.field
        if field is None:
            if self.key == "error":
                return None if record.error is None else record.error.type
            return record.notes
        if field.namespace == "record":
            found = getattr(record, field.path[0])
            return list(found) if isinstance(found, tuple) else found
        if field.namespace == "derived":
            values = derived(record)
            return None if values is None else values.get(field.path[0])
        source: Mapping[str, Any] = record.params if field.namespace == "params" else record.metrics
        return _lookup(source, field.path)


def _lookup(source: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """A value by its key, or by a path into nested params (the query language's rule)."""
    joined = ".".join(path)
    if joined in source:
        return source[joined]
    value: Any = source
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def parse_columns(text: str) -> list[Column]:
    """Read ``columns=``: comma-separated columns in query syntax.

    Raises:
        Problem: A column is neither a field of the query language nor ``error`` or
            ``notes``.
    """
    columns = []
    for item in _split_commas(text):
        if item in _TEXT_COLUMNS:
            columns.append(Column(item, item, None))
            continue
        try:
            keys = parse_order(item)
        except QueryError as exc:
            keys = ()
            reason = describe(exc)
        else:
            reason = "a column is a field, without a sort direction"
        if len(keys) != 1 or keys[0].descending or item.lstrip().startswith("-"):
            raise Problem(
                400,
                f"unknown column {item!r} ({reason}); use params.NAME, metrics.NAME, "
                f"derived.NAME, {', '.join(RECORD_COLUMNS)}, {', '.join(_TEXT_COLUMNS)}",
                param="columns",
            )
        if keys[0].field.path != ("run_id",):  # every row has its run id already
            columns.append(Column.of(keys[0].field))
    if not columns:
        raise Problem(
            400, "columns= names no column; e.g. columns=status,metrics.acc", param="columns"
        )
    return columns


def _split_commas(text: str) -> list[str]:
    """Split at the commas that are not inside a quoted key."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def default_columns(records: Sequence[RunRecord]) -> list[Column]:
    """The columns shown when none are asked for (those of ``metalab runs ls``).

    Status, start and duration, the error type if a run failed, the params that
    differ between the runs, and their metrics.
    """
    columns = [
        Column.of(Field("record", (name,))) for name in ("status", "started_at", "duration_ms")
    ]
    if any(r.error is not None for r in records):
        columns.append(Column("error", "error", None))
    columns += [
        Column.of(Field("params", (k,))) for k in differing_params([r.params for r in records])
    ]
    metrics = sorted({k for r in records for k in r.metrics})
    columns += [Column.of(Field("metrics", (k,))) for k in metrics]
    return columns


@dataclass
class RunsView:
    """The runs of an experiment as a table shows them: filtered, sorted, windowed.

    Attributes:
        records: The runs of the window.
        total: How many runs match the filter; a lower bound where ``total_exact``
            is false.
        short: A short id for each matching run, long enough to tell it from the
            others that match (from those of the sample, where ``total_exact`` is
            false).
        total_exact: Whether ``total`` is exact. On a store with an index, a page
            reads at most :data:`SAMPLE` matching runs besides its own: when more
            match, the total is a lower bound (``runs_count`` counts them all), and
            the default columns and short ids come from that sample and the page.
    """

    experiment_id: str
    where: str | None
    sort: list[str]
    offset: int
    limit: int | None
    columns: list[Column]
    records: list[RunRecord]
    total: int
    short: dict[str, str]
    derived: Callable[[RunRecord], Mapping[str, MetricValue] | None]
    total_exact: bool = True

    def cells(self, record: RunRecord) -> list[Any]:
        """The run's value in each column."""
        return [column.value(record, self.derived) for column in self.columns]


def runs_view(
    store: Store,
    experiment_id: str,
    *,
    where: str | None,
    sort: Sequence[str],
    offset: int,
    limit: int | None,
    columns: str | None,
) -> RunsView:
    """Filter, sort and window the runs of an experiment.

    Raises:
        Problem: ``where``, ``sort`` or ``columns`` is not valid (with the column of
            a syntax error).
        ExperimentNotFoundError: The store holds no such experiment.
    """
    chosen = parse_columns(columns) if columns is not None else None
    sort = list(sort) or list(DEFAULT_SORT)
    query = _query(where, sort)
    require_experiment(store, experiment_id)
    exact = True
    if limit is not None and _indexed(store):
        # The index windows and sorts itself: only the page and a bounded sample of
        # the matches are read, never every matching record.
        scoped = _scoped(query, experiment_id)
        window = store.query_runs(dataclasses.replace(scoped, limit=limit, offset=offset))
        sample = store.query_runs(Query(where=scoped.where, limit=SAMPLE + 1))
        exact = len(sample) <= SAMPLE
        total = len(sample) if exact else max(len(sample), offset + len(window))
        seen = {r.run_id for r in sample}
        matching = sample + [r for r in window if r.run_id not in seen]
    else:
        matching = _select(store, experiment_id, query)
        window = matching[offset:] if limit is None else matching[offset : offset + limit]
        total = len(matching)
    return RunsView(
        experiment_id=experiment_id,
        where=where,
        sort=sort,
        offset=offset,
        limit=limit,
        columns=chosen if chosen is not None else default_columns(matching),
        records=window,
        total=total,
        short=short_ids([r.run_id for r in matching]),
        derived=derived_lookup(store, experiment_id),
        total_exact=exact,
    )


def runs_count(store: Store, experiment_id: str, where: str | None) -> RunsCount:
    """How many runs of an experiment match ``where``, exactly (every match is read).

    Raises:
        Problem: ``where`` is not valid (with the column of a syntax error).
        ExperimentNotFoundError: The store holds no such experiment.
    """
    query = dataclasses.replace(_query(where, ()), order_by=())
    require_experiment(store, experiment_id)
    return RunsCount(
        experiment_id=experiment_id,
        where=where,
        total=len(_select(store, experiment_id, query)),
    )


def _query(where: str | None, sort: Sequence[str]) -> Query:
    """The query of ``where`` and ``sort``, or a :class:`Problem` saying where it is wrong."""
    try:
        filtered = build_query(where or None)
    except QuerySyntaxError as exc:
        raise Problem(400, describe(exc), param="where", column=exc.column) from exc
    except QueryError as exc:
        raise Problem(400, describe(exc), param="where") from exc
    try:
        return build_query(filtered.where, order_by=list(sort))
    except QuerySyntaxError as exc:
        raise Problem(400, describe(exc), param="sort", column=exc.column) from exc
    except QueryError as exc:
        raise Problem(400, describe(exc), param="sort") from exc


def matching_runs(
    store: Store, experiment_id: str, where: str | None, sort: Sequence[str] = ("run_id",)
) -> list[RunRecord]:
    """The runs of an experiment that match ``where``, in the order of ``sort``.

    Raises:
        Problem: ``where`` or ``sort`` is not valid (with the column of a syntax error).
        ExperimentNotFoundError: The store holds no such experiment.
    """
    query = _query(where, sort)
    require_experiment(store, experiment_id)
    return _select(store, experiment_id, query)


def _select(store: Store, experiment_id: str, query: Query) -> list[RunRecord]:
    """Every run of the experiment that matches, in the query's order.

    The file and memory stores evaluate queries in Python over the records of one
    experiment; any other store that answers queries (an index) does it itself.
    """
    if _indexed(store):
        return store.query_runs(_scoped(query, experiment_id))
    return select_runs(store, query, experiment_id)


def _indexed(store: Store) -> TypeGuard[SupportsQuery]:
    """Whether the store answers queries itself (an index), not in Python over records."""
    return isinstance(store, SupportsQuery) and not isinstance(store, FileStore | MemoryStore)


def _scoped(query: Query, experiment_id: str) -> Query:
    """The query restricted to one experiment."""
    scoped = F.experiment_id == experiment_id
    return dataclasses.replace(query, where=scoped if query.where is None else scoped & query.where)


def runs_page(view: RunsView) -> RunsPage:
    """The view as the runs table's JSON."""
    return RunsPage(
        experiment_id=view.experiment_id,
        total=view.total,
        total_exact=view.total_exact,
        offset=view.offset,
        limit=len(view.records) if view.limit is None else view.limit,
        where=view.where,
        sort=view.sort,
        columns=[c.out() for c in view.columns],
        rows=[
            RunRow(
                run_id=r.run_id,
                short_id=view.short[r.run_id],
                status=r.status,
                error_type=None if r.error is None else r.error.type,
                values=jsonable(view.cells(r)),
            )
            for r in view.records
        ],
    )


def runs_csv(view: RunsView) -> str:
    """The view as CSV: a header, then one line per run, values whole."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run_id", *(c.name for c in view.columns)])
    for record in view.records:
        writer.writerow([record.run_id, *(_csv_cell(v) for v in view.cells(record))])
    return out.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        return json.dumps(jsonable(value), ensure_ascii=False)
    return str(value)


# --- the field catalog ------------------------------------------------------------


def fields(store: Store, experiment_id: str) -> FieldsOut:
    """The field catalog of an experiment, with each field's key in query syntax."""
    require_experiment(store, experiment_id)
    catalog: Sequence[FieldInfo]
    if isinstance(store, SupportsQuery):
        catalog = store.fields(experiment_id)
    else:
        catalog = field_catalog(
            store.list_run_records(experiment_id), derived_lookup(store, experiment_id)
        )
    return FieldsOut(
        experiment_id=experiment_id,
        record_fields=[*RECORD_COLUMNS, *_TEXT_COLUMNS],
        fields=[_field(info) for info in catalog],
        series=_series_names(store, experiment_id),
    )


_SERIES_SAMPLE: Final = 20


def _series_names(store: Store, experiment_id: str) -> list[str]:
    """The names of the metric series of the experiment's latest runs (a sample)."""
    if not isinstance(store, SupportsSeries):
        return []
    query = build_query(None, order_by=["-started_at"], limit=_SERIES_SAMPLE)
    names: set[str] = set()
    for record in _select(store, experiment_id, query):
        names.update(store.get_series(record.run_id))
    return sorted(names)


def _field(info: FieldInfo) -> FieldOut:
    namespace, _, key = info.field.partition(".")
    mapping = _MAPPINGS.get(namespace)
    query_key = info.field if mapping is None or not key else Field(mapping, (key,)).text()
    return FieldOut(
        field=info.field,
        key=query_key,
        types=list(info.types),
        count=info.count,
        min_value=jsonable(info.min_value),
        max_value=jsonable(info.max_value),
        samples=jsonable(list(info.samples)),
    )


# --- one run ----------------------------------------------------------------------


def get_run(store: Store, run_id: str) -> RunRecord:
    """The record of a run.

    Raises:
        ConfigError: The store refuses the id.
        Problem: There is no such run (404).
    """
    record = store.get_run_record(run_id)
    if record is None:
        raise Problem(404, f"no run {run_id!r} in this store")
    return record


def run_detail(store: Store, run_id: str) -> RunOut:
    """Everything the run page shows but the artifacts' bytes, the logs and the points."""
    record = get_run(store, run_id)
    derived = store.get_derived(run_id)
    logs = store.list_logs(run_id) if isinstance(store, SupportsLogs) else []
    found = store.get_series(run_id) if isinstance(store, SupportsSeries) else {}
    error = record.error
    return RunOut(
        run_id=record.run_id,
        short_id=record.run_id[:SHORT_ID],
        experiment_id=record.experiment_id,
        status=record.status,
        started_at=record.started_at,
        finished_at=record.finished_at,
        duration_ms=jsonable(record.duration_ms),
        params=jsonable(record.params),
        metrics=jsonable(record.metrics),
        derived={} if derived is None else jsonable(derived.metrics),
        tags=list(record.tags),
        notes=record.notes,
        error=None
        if error is None
        else ErrorOut(type=error.type, message=error.message, traceback=error.traceback),
        artifacts=[_artifact(a) for a in store.list_artifacts(run_id)],
        logs=sorted(logs),
        series={name: len(points) for name, points in sorted(found.items())},
        warnings=list(record.warnings),
        provenance=jsonable(msgspec.to_builtins(record.provenance)),
    )


def media_type(descriptor: ArtifactDescriptor) -> tuple[str, bool]:
    """The ``Content-Type`` of an artifact's download, and whether it is shown inline.

    Only images, JSON and text are shown in the browser; anything else (SVG and HTML
    included, which can carry scripts) is a download.
    """
    found = _INLINE.get(descriptor.format.lower())
    if found is not None:
        return found, True
    return "application/octet-stream", False


def _artifact(descriptor: ArtifactDescriptor) -> ArtifactOut:
    media, inline = media_type(descriptor)
    return ArtifactOut(
        name=descriptor.name,
        kind=descriptor.kind,
        format=descriptor.format,
        size_bytes=descriptor.size_bytes,
        sha256=descriptor.content_hash,
        media_type=media,
        inline=inline,
    )


def find_artifact(store: Store, run_id: str, name: str) -> ArtifactDescriptor:
    """The descriptor of a run's artifact, looked up among those the store lists.

    Raises:
        ConfigError: The store refuses the run id.
        Problem: No such run, or the run has no artifact of that name (404).
    """
    get_run(store, run_id)
    for descriptor in store.list_artifacts(run_id):
        if descriptor.name == name:
            return descriptor
    raise Problem(404, f"run {run_id!r} has no artifact {name!r}")


def artifact_source(store: Store, run_id: str, descriptor: ArtifactDescriptor) -> IO[bytes] | bytes:
    """An artifact's bytes: an open file to stream where the store can, else the bytes."""
    if isinstance(store, SupportsArtifactStreaming):
        return store.open_artifact(run_id, descriptor.name)
    return store.get_artifact(run_id, descriptor.name)


def chunks(handle: IO[bytes]) -> Iterator[bytes]:
    """Read an open artifact in chunks (its opener closes it)."""
    while chunk := handle.read(_CHUNK):
        yield chunk


def log_tail(store: Store, run_id: str, name: str, tail: int) -> LogOut:
    """The last ``tail`` lines of one of a run's logs.

    Raises:
        ConfigError: The store refuses the run id or the name.
        Problem: No such run or log (404).
    """
    get_run(store, run_id)
    if not isinstance(store, SupportsLogs) or name not in store.list_logs(run_id):
        raise Problem(404, f"run {run_id!r} has no log {name!r}")
    text = store.get_log(run_id, name)
    if text is None:
        raise Problem(404, f"run {run_id!r} has no log {name!r}")
    lines = text.splitlines(keepends=True)
    kept = lines[len(lines) - tail :] if tail else []
    return LogOut(run_id=run_id, name=name, lines=len(lines), tail=tail, text="".join(kept))


def series(store: Store, run_id: str, names: Sequence[str], max_points: int) -> SeriesPage:
    """A run's metric series (those named, else all), each at most ``max_points`` points.

    Raises:
        ConfigError: The store refuses the run id.
        Problem: No such run, or it has no series of a name asked for (404).
    """
    get_run(store, run_id)
    found = store.get_series(run_id) if isinstance(store, SupportsSeries) else {}
    missing = [name for name in names if name not in found]
    if missing:
        raise Problem(404, f"run {run_id!r} has no series {', '.join(map(repr, missing))}")
    wanted = list(names) or sorted(found)
    return SeriesPage(run_id=run_id, series=[series_of(found[n], max_points) for n in wanted])


def series_of(found: MetricSeries, max_points: int) -> SeriesOut:
    """One series as the API sends it: at most ``max_points`` points, numbers or ``None``."""
    steps, values = list(found.steps), [number(v) for v in found.values]
    kept = downsample(values, max_points)
    return SeriesOut(
        name=found.name,
        points=len(steps),
        downsampled=len(kept) < len(steps),
        steps=[steps[i] for i in kept],
        values=[values[i] for i in kept],
    )


def number(value: object) -> float | None:
    """A value as a finite float (booleans as 0 and 1), or ``None`` if it is none."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def downsample(values: Sequence[float | None], max_points: int) -> list[int]:
    """The indexes of the points to keep: all of them, or at most ``max_points``.

    The series is cut into ``(max_points - 2) // 2`` stretches of consecutive points,
    and of each the smallest and the largest value are kept (in their order), so a
    spike survives; so do the first and the last point of the series.
    """
    n = len(values)
    if n <= max_points:
        return list(range(n))
    buckets = max(1, (max_points - 2) // 2)
    kept: set[int] = {0, n - 1}
    for b in range(buckets):
        start, stop = b * n // buckets, (b + 1) * n // buckets
        numbered = [(v, i) for i, v in enumerate(values[start:stop], start) if v is not None]
        if numbered:
            kept.add(min(numbered)[1])
            kept.add(max(numbered)[1])
        else:
            kept.add(start)
    return sorted(kept)


# --- comparing runs ---------------------------------------------------------------


def compare(store: Store, run_ids: Sequence[str]) -> CompareOut:
    """2 to 10 runs side by side: their fields row by row, and their series.

    An id given twice counts once.

    Raises:
        Problem: Fewer than 2 or more than 10 ids (400), or ids of no run (404,
            naming each).
        ConfigError: The store refuses an id.
    """
    ids = list(dict.fromkeys(run_ids))
    if not MIN_COMPARE <= len(ids) <= MAX_COMPARE:
        raise Problem(
            400,
            f"compare takes {MIN_COMPARE} to {MAX_COMPARE} run ids (ids=a,b,...), got {len(ids)}",
            param="ids",
        )
    found = {run_id: store.get_run_record(run_id) for run_id in ids}
    missing = [run_id for run_id, record in found.items() if record is None]
    if missing:
        raise Problem(404, f"no run {', '.join(map(repr, missing))} in this store", param="ids")
    records = [r for r in found.values() if r is not None]
    derived = {r.run_id: store.get_derived(r.run_id) for r in records}
    short = short_ids(ids)
    rows = [
        _compare_row("run", name, [_record_value(r, name) for r in records])
        for name in ("experiment_id", "status", "started_at", "finished_at", "duration_ms")
    ]
    rows.append(_compare_row("run", "tags", [list(r.tags) for r in records]))
    rows.append(
        _compare_row("run", "error", [None if r.error is None else r.error.type for r in records])
    )
    mappings: list[tuple[str, list[Mapping[str, Any]]]] = [
        ("params", [r.params for r in records]),
        ("metrics", [r.metrics for r in records]),
        ("derived", [{} if (d := derived[r.run_id]) is None else d.metrics for r in records]),
    ]
    for group, values in mappings:
        for key in sorted({k for mapping in values for k in mapping}):
            rows.append(_compare_row(group, key, [mapping.get(key) for mapping in values]))
    return CompareOut(
        runs=[
            CompareRun(
                run_id=r.run_id,
                short_id=short[r.run_id],
                experiment_id=r.experiment_id,
                status=r.status,
                started_at=r.started_at,
                finished_at=r.finished_at,
                duration_ms=jsonable(r.duration_ms),
                tags=list(r.tags),
                error_type=None if r.error is None else r.error.type,
            )
            for r in records
        ],
        rows=rows,
        series=_compare_series(store, ids),
    )


def _record_value(record: RunRecord, name: str) -> Any:
    value = getattr(record, name)
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _compare_row(group: str, key: str, values: list[Any]) -> CompareRow:
    shown = jsonable(values)
    texts = {json.dumps(v, sort_keys=True) for v in shown}
    return CompareRow(group=group, key=key, values=shown, differ=len(texts) > 1)


def _compare_series(store: Store, run_ids: Sequence[str]) -> list[CompareSeries]:
    if isinstance(store, SupportsSeriesMany):
        by_run = store.get_series_many(run_ids)
    elif isinstance(store, SupportsSeries):
        by_run = {run_id: store.get_series(run_id) for run_id in run_ids}
    else:
        return []
    names = sorted({name for found in by_run.values() for name in found})
    return [
        CompareSeries(
            name=name,
            runs=[
                None
                if (one := by_run.get(run_id, {}).get(name)) is None
                else series_of(one, COMPARE_SERIES_POINTS)
                for run_id in run_ids
            ],
        )
        for name in names
    ]


# --- edits ------------------------------------------------------------------------


def _editable(store: Store) -> SupportsRunEdits:
    if not isinstance(store, SupportsRunEdits):
        raise Problem(501, f"{type(store).__qualname__} cannot edit tags and notes")
    return store


def edit_tags(store: Store, run_id: str, edit: TagsEdit) -> TagsOut:
    """Add and remove tags of a run."""
    editable = _editable(store)
    get_run(store, run_id)
    record = editable.set_tags(run_id, add=edit.add, remove=edit.remove)
    return TagsOut(run_id=run_id, tags=list(record.tags))


def edit_notes(store: Store, run_id: str, edit: NotesEdit) -> NotesOut:
    """Set (or with ``null`` clear) the notes of a run."""
    editable = _editable(store)
    get_run(store, run_id)
    record = editable.set_notes(run_id, edit.notes)
    return NotesOut(run_id=run_id, notes=record.notes)
