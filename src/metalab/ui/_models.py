"""The JSON documents of the dashboard's HTTP API, as msgspec Structs.

Every endpoint answers with one of these (encoded by ``msgspec.json``), so the shape
of the API is written down in one place. Values that come from runs (params,
metrics, cells of the runs table) are plain JSON values, with non-finite floats
spelled ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (JSON has no such numbers).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

__all__ = [
    "ApiError",
    "ArtifactOut",
    "ColumnOut",
    "CompareOut",
    "CompareRow",
    "CompareRun",
    "CompareSeries",
    "DimensionOut",
    "ErrorOut",
    "ExperimentOut",
    "ExperimentsOut",
    "FieldOut",
    "FieldsOut",
    "InfoOut",
    "LogOut",
    "NotesEdit",
    "NotesOut",
    "PlotGroup",
    "PlotOut",
    "RunOut",
    "RunRow",
    "RunsCount",
    "RunsPage",
    "SeriesOut",
    "SeriesPage",
    "TagsEdit",
    "TagsOut",
]


class ApiError(msgspec.Struct, kw_only=True):
    """The body of every error response.

    Attributes:
        error: What went wrong, for a person (passwords redacted).
        type: The exception's class name (``QuerySyntaxError``, ``IndexUnavailableError``).
        param: The query parameter at fault (``where``, ``sort``, ``columns``), if one is.
        column: 1-based column of a syntax error in that parameter.
    """

    error: str
    type: str
    param: str | None = None
    column: int | None = None


class InfoOut(msgspec.Struct, kw_only=True):
    """``GET /api/info``: what the server serves and what it allows."""

    version: str
    store: str
    write: bool


class ExperimentOut(msgspec.Struct, kw_only=True):
    """One experiment of ``GET /api/experiments``.

    Attributes:
        counts: Runs by status (``running``, ``success``, ``failed``, ``cancelled``).
        last_activity: The latest start or end of any of its runs.
        tags: The experiment's tags (from its latest submission manifest).
        run_tags: Every tag its runs carry.
        error: Why the experiment could not be read (the other fields are then empty).
    """

    experiment_id: str
    runs: int = 0
    counts: dict[str, int] = {}
    last_activity: dt.datetime | None = None
    description: str | None = None
    tags: list[str] = []
    run_tags: list[str] = []
    error: str | None = None


class ExperimentsOut(msgspec.Struct, kw_only=True):
    """``GET /api/experiments``."""

    experiments: list[ExperimentOut]


class ColumnOut(msgspec.Struct, kw_only=True):
    """A column of the runs table.

    Attributes:
        name: The column as a person reads it (``metrics.val acc``).
        key: The column in query syntax (``metrics."val acc"``), as ``columns=`` and
            ``sort=`` take it.
        sortable: Whether ``sort=`` accepts it (``error`` and ``notes`` are not fields
            of the query language).
    """

    name: str
    key: str
    sortable: bool


class RunRow(msgspec.Struct, kw_only=True):
    """One row of the runs table: the run and one value per column."""

    run_id: str
    short_id: str
    status: str
    error_type: str | None
    values: list[Any]


class RunsPage(msgspec.Struct, kw_only=True):
    """``GET /api/experiments/{id}/runs``: one page of the filtered, sorted runs."""

    experiment_id: str
    total: int
    total_exact: bool = True
    offset: int
    limit: int
    where: str | None
    sort: list[str]
    columns: list[ColumnOut]
    rows: list[RunRow]


class RunsCount(msgspec.Struct, kw_only=True):
    """``GET /api/experiments/{id}/runs/count``: how many runs match, exactly.

    The front end asks for it after a page whose ``total_exact`` is false.
    """

    experiment_id: str
    where: str | None
    total: int


class FieldOut(msgspec.Struct, kw_only=True):
    """One entry of the field catalog (see ``metalab.query.FieldInfo``), with its query key."""

    field: str
    key: str
    types: list[str]
    count: int
    min_value: float | None
    max_value: float | None
    samples: list[Any]


class FieldsOut(msgspec.Struct, kw_only=True):
    """``GET /api/experiments/{id}/fields``: the columns a runs table can show."""

    experiment_id: str
    record_fields: list[str]
    fields: list[FieldOut]
    series: list[str] = []
    """Names of the metric series of the latest runs (learning curves can draw them)."""


class ErrorOut(msgspec.Struct, kw_only=True):
    """The exception that ended a failed run."""

    type: str
    message: str
    traceback: str


class ArtifactOut(msgspec.Struct, kw_only=True):
    """An artifact of a run, and how the dashboard serves it.

    Attributes:
        media_type: The ``Content-Type`` its download has.
        inline: Whether the download is shown in the browser (images, JSON, text)
            rather than saved.
    """

    name: str
    kind: str
    format: str
    size_bytes: int
    sha256: str
    media_type: str
    inline: bool


class RunOut(msgspec.Struct, kw_only=True):
    """``GET /api/runs/{run_id}``: everything about one run but the bulk of its data."""

    run_id: str
    short_id: str
    experiment_id: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_ms: float | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    derived: dict[str, Any]
    tags: list[str]
    notes: str | None
    error: ErrorOut | None
    artifacts: list[ArtifactOut]
    logs: list[str]
    series: dict[str, int]
    warnings: list[str]
    provenance: dict[str, Any]


class LogOut(msgspec.Struct, kw_only=True):
    """``GET /api/runs/{run_id}/logs/{name}``: the last lines of a log.

    Attributes:
        lines: How many lines the whole log has.
        tail: How many lines were asked for (``text`` has at most that many).
    """

    run_id: str
    name: str
    lines: int
    tail: int
    text: str


class SeriesOut(msgspec.Struct, kw_only=True):
    """One metric series, downsampled when it has more points than asked for.

    Attributes:
        points: How many points the series has.
        downsampled: Whether ``steps``/``values`` keep only some of them (the smallest
            and largest value of each stretch of steps, so spikes stay visible).
        values: Numbers; ``None`` for a point that is not a finite number.
    """

    name: str
    points: int
    downsampled: bool
    steps: list[int]
    values: list[float | None]


class SeriesPage(msgspec.Struct, kw_only=True):
    """``GET /api/runs/{run_id}/series``."""

    run_id: str
    series: list[SeriesOut]


class TagsEdit(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /api/runs/{run_id}/tags``."""

    add: list[str] = []
    remove: list[str] = []


class NotesEdit(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /api/runs/{run_id}/notes`` (``null`` clears them)."""

    notes: str | None


class TagsOut(msgspec.Struct, kw_only=True):
    """A run's tags after an edit."""

    run_id: str
    tags: list[str]


class NotesOut(msgspec.Struct, kw_only=True):
    """A run's notes after an edit."""

    run_id: str
    notes: str | None


class CompareRun(msgspec.Struct, kw_only=True):
    """One run of ``GET /api/compare``: who it is, in the order asked for."""

    run_id: str
    short_id: str
    experiment_id: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_ms: float | None
    tags: list[str]
    error_type: str | None


class CompareRow(msgspec.Struct, kw_only=True):
    """One row of the comparison: a field and each run's value of it.

    Attributes:
        group: ``run`` (status, timing, tags, error), ``params``, ``metrics`` or
            ``derived``.
        key: The field's name within its group.
        values: One per run, in the order of ``runs``; ``null`` where a run has none.
        differ: Whether the runs' values are not all the same (a run without the
            field differs from one with it).
    """

    group: str
    key: str
    values: list[Any]
    differ: bool


class CompareSeries(msgspec.Struct, kw_only=True):
    """One metric series of the compared runs: one entry per run, ``null`` if it has none."""

    name: str
    runs: list[SeriesOut | None]


class CompareOut(msgspec.Struct, kw_only=True):
    """``GET /api/compare?ids=...``: 2 to 10 runs side by side."""

    runs: list[CompareRun]
    rows: list[CompareRow]
    series: list[CompareSeries]


class PlotGroup(msgspec.Struct, kw_only=True):
    """The points of one colour of a plot (every point when there is no colour field).

    Attributes:
        key: The colour field's value shared by the group's runs (``null``: no colour
            field, or runs without it).
        label: ``key`` as a legend shows it.
        runs: How many runs the group's points come from.
        x: The x of each point (a time in seconds since the Unix epoch when
            ``PlotOut.time_x``; for curves, the step); empty for a histogram, whose
            bins are ``PlotOut.edges``.
        y: The y of each point: a run's value, or the mean of an aggregated point.
        lo: The low end of each aggregated point's band (min, or mean - standard error).
        hi: The high end of each aggregated point's band (max, or mean + standard error).
        n: How many values each aggregated point is the mean of.
        run_ids: The run of each point, when points are runs (``agg=none``).
        counts: A histogram's count per bin.
    """

    key: Any
    label: str
    runs: int
    x: list[float] = []
    y: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    n: list[int] = []
    run_ids: list[str] = []
    counts: list[int] = []


class DimensionOut(msgspec.Struct, kw_only=True):
    """One axis of a parallel-coordinates plot.

    Attributes:
        key: The field in query syntax.
        numeric: Whether values are numbers; else each value is an index into
            ``categories``.
        min_value: The smallest value (numbers), over every run drawn or not.
        max_value: The largest value (numbers).
        categories: The distinct values, sorted (a field that is not numeric).
    """

    key: str
    numeric: bool
    min_value: float | None = None
    max_value: float | None = None
    categories: list[Any] = []


class PlotOut(msgspec.Struct, kw_only=True):
    """``GET /api/experiments/{id}/plot``: a plot's numbers, aggregated on the server.

    Attributes:
        kind: ``scatter``, ``line``, ``hist``, ``parallel`` or ``curves``.
        runs: How many runs match the filter.
        skipped: Of those, how many have no finite number (or series) where the plot
            needs one, and are left out.
        total: How many points (rows of a parallel plot) there are before sampling.
        sampled: Whether only some of them are sent (at most ``limit``, chosen at
            random with ``seed``: the same request gives the same points).
        points: How many points are sent.
        time_x: Whether x is a time (seconds since the Unix epoch).
        edges: A histogram's bin edges (one more than the bins).
        dimensions: A parallel plot's axes: the fields of ``dims``, then ``y``.
        rows: A parallel plot's rows, one value per dimension.
        run_ids: The run of each row of a parallel plot.
    """

    experiment_id: str
    kind: str
    x: str | None
    y: str | None
    color: str | None
    agg: str
    where: str | None
    runs: int
    skipped: int
    total: int
    sampled: bool
    points: int
    limit: int
    seed: int
    time_x: bool = False
    groups: list[PlotGroup] = []
    edges: list[float] = []
    dimensions: list[DimensionOut] = []
    rows: list[list[float]] = []
    run_ids: list[str] = []
