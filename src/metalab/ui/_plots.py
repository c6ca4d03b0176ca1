"""The plot builder's numbers, computed on the server so that plots stay small.

``GET /api/experiments/{id}/plot`` selects the runs of an experiment that match a
filter of the query language, reads the fields a plot needs from their records (or
their metric series, for learning curves) and answers with at most :data:`MAX_POINTS`
points, whatever the number of runs:

- ``scatter`` and ``line``: ``y`` against ``x``, one group per value of ``color``;
  each run a point (``agg=none``; sampled when there are too many), or one point per
  value of ``x`` in each group: the mean of ``y`` with a band from the min to the max
  (``mean_minmax``) or of one standard error around the mean (``mean_se``).
- ``hist``: the counts of ``x`` in ``bins`` bins of equal width, per group.
- ``parallel``: one row per run of the fields of ``dims`` and ``y``.
- ``curves``: the series ``metric`` by step: per group and step, the mean over the
  group's runs with a band.

Plain Python, no NumPy: the work is one pass over the records (reading them is what
costs, at 100,000 runs), so the plots need no extra and give the same numbers
everywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from metalab.records import MetricValue, RunRecord
from metalab.store import Store, SupportsSeries, SupportsSeriesMany, derived_lookup
from metalab.ui._api import Column, Problem, jsonable, matching_runs, number, parse_columns
from metalab.ui._models import DimensionOut, PlotGroup, PlotOut

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_BINS",
    "KINDS",
    "MAX_BINS",
    "MAX_DIMENSIONS",
    "MAX_GROUPS",
    "MAX_POINTS",
    "PlotRequest",
    "plot",
]

MAX_POINTS: Final = 5000
"""The most points (or parallel rows) one plot sends; more are sampled with a seed."""

DEFAULT_BINS: Final = 20
MAX_BINS: Final = 200
"""A histogram's bins when ``bins`` is not given, and the most it may ask for."""

MAX_GROUPS: Final = 50
"""The most distinct values a ``color`` field may have among the runs plotted."""

MAX_DIMENSIONS: Final = 12
"""The most fields ``dims`` may name for a parallel-coordinates plot."""

KINDS: Final = ("scatter", "line", "hist", "parallel", "curves")
AGGREGATIONS: Final = ("none", "mean_minmax", "mean_se")


@dataclass(frozen=True)
class PlotRequest:
    """What a plot asks for (the query parameters of ``GET .../plot``).

    Attributes:
        kind: One of :data:`KINDS`.
        x: A field in query syntax (``scatter``, ``line``, ``hist``).
        y: A field in query syntax (``scatter``, ``line``, ``parallel``).
        color: A field whose values group the runs (all kinds but ``parallel``).
        agg: One of :data:`AGGREGATIONS` (``scatter``, ``line``, ``curves``).
        bins: A histogram's number of bins.
        where: A filter in the query language.
        metric: The series of ``curves``.
        dims: The comma-separated fields of ``parallel``.
        seed: Seeds the sample taken when there are more than ``limit`` points.
        limit: The most points sent (at most :data:`MAX_POINTS`).
    """

    kind: str
    x: str | None = None
    y: str | None = None
    color: str | None = None
    agg: str = "none"
    bins: int = DEFAULT_BINS
    where: str | None = None
    metric: str | None = None
    dims: str | None = None
    seed: int = 0
    limit: int = MAX_POINTS


def plot(store: Store, experiment_id: str, request: PlotRequest) -> PlotOut:
    """The numbers of one plot over the runs of an experiment that match ``where``.

    Raises:
        Problem: A parameter is missing or invalid (400, naming it): an unknown kind
            or aggregation, a field no matching run has, a field that holds no
            numbers where the plot needs them, bins out of range, too many groups.
        ExperimentNotFoundError: The store holds no such experiment.
    """
    if request.kind not in KINDS:
        raise Problem(
            400, f"kind must be one of {', '.join(KINDS)}, got {request.kind!r}", param="kind"
        )
    if request.agg not in AGGREGATIONS:
        raise Problem(
            400,
            f"agg must be one of {', '.join(AGGREGATIONS)}, got {request.agg!r}",
            param="agg",
        )
    if not 1 <= request.bins <= MAX_BINS:
        raise Problem(400, f"bins must be from 1 to {MAX_BINS}, got {request.bins}", param="bins")
    columns = _Columns(request)
    records = matching_runs(store, experiment_id, request.where)
    derived = derived_lookup(store, experiment_id)
    out = PlotOut(
        experiment_id=experiment_id,
        kind=request.kind,
        x=request.x,
        y=request.y,
        color=request.color,
        agg=request.agg,
        where=request.where,
        runs=len(records),
        skipped=0,
        total=0,
        sampled=False,
        points=0,
        limit=request.limit,
        seed=request.seed,
    )
    reader = _Reader(records, derived)
    if request.kind == "parallel":
        _parallel(out, reader, columns, request)
    elif request.kind == "curves":
        _curves(out, store, reader, columns, request)
    elif request.kind == "hist":
        _hist(out, reader, columns, request)
    else:
        _xy(out, reader, columns, request)
    return out


# --- reading fields ---------------------------------------------------------------


def _one_column(text: str | None, param: str, *, required: bool) -> Column | None:
    if text is None:
        if required:
            raise Problem(
                400, f"this plot needs {param}= (a field, e.g. metrics.loss)", param=param
            )
        return None
    found = _columns(text, param)
    if len(found) != 1:
        raise Problem(400, f"{param} takes one field, got {text!r}", param=param)
    return found[0]


def _columns(text: str, param: str) -> list[Column]:
    try:
        found = parse_columns(text)
    except Problem as exc:
        raise Problem(400, exc.message, param=param) from exc
    for column in found:
        if column.field is None:
            raise Problem(
                400,
                f"{column.key} is no field to plot; use params.NAME, metrics.NAME, ...",
                param=param,
            )
    return found


class _Columns:
    """The fields a request names, parsed (before any run is read)."""

    def __init__(self, request: PlotRequest) -> None:
        kind = request.kind
        needs_x = kind in ("scatter", "line", "hist")
        needs_y = kind in ("scatter", "line", "parallel")
        self.x = _one_column(request.x, "x", required=needs_x) if needs_x else None
        self.y = _one_column(request.y, "y", required=needs_y) if needs_y else None
        self.color = (
            _one_column(request.color, "color", required=False) if kind != "parallel" else None
        )
        self.dims: list[Column] = []
        if kind == "parallel":
            if request.dims is None:
                raise Problem(
                    400,
                    "a parallel plot needs dims= (fields, e.g. params.lr,params.width)",
                    param="dims",
                )
            self.dims = _columns(request.dims, "dims")
            if not 1 <= len(self.dims) <= MAX_DIMENSIONS:
                raise Problem(
                    400,
                    f"dims takes 1 to {MAX_DIMENSIONS} fields, got {len(self.dims)}",
                    param="dims",
                )
        if kind == "curves":
            if request.metric is None:
                raise Problem(400, "curves need metric= (the name of a series)", param="metric")
            if request.agg == "none":
                raise Problem(
                    400,
                    "curves are aggregated over the runs of each group: use agg=mean_minmax "
                    "or agg=mean_se",
                    param="agg",
                )


class _Reader:
    """Values of fields for the selected runs."""

    def __init__(
        self,
        records: list[RunRecord],
        derived: Callable[[RunRecord], Mapping[str, MetricValue] | None],
    ) -> None:
        self.records = records
        self.derived = derived

    def raw(self, column: Column, param: str) -> list[Any]:
        """Each run's value (``None`` where it has none); 400 if no run has one."""
        values = [column.value(r, self.derived) for r in self.records]
        if self.records and all(v is None for v in values):
            raise Problem(
                400,
                f"no run that matches has the field {column.key} (see the field catalog)",
                param=param,
            )
        return values

    def numbers(self, column: Column, param: str) -> tuple[list[float | None], bool]:
        """Each run's value as a finite number or ``None``, and whether they are times.

        Raises:
            Problem: The field holds something else than numbers (or times).
        """
        values = self.raw(column, param)
        out: list[float | None] = []
        times = False
        for value in values:
            if isinstance(value, dt.datetime):
                times = True
                out.append(value.timestamp())
                continue
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                out.append(None)
                continue
            found = number(value)
            if found is None:
                raise Problem(
                    400,
                    f"{param}: {column.key} is not numeric (a run has {_short(value)}); "
                    "plot it as color, or in dims of a parallel plot",
                    param=param,
                )
            out.append(found)
        return out, times

    def groups(self, column: Column | None) -> tuple[list[Any], dict[str, Any]]:
        """Each run's group key (a canonical text) and the value of each key.

        Raises:
            Problem: The colour field has more than :data:`MAX_GROUPS` values.
        """
        if column is None:
            return ["null"] * len(self.records), {"null": None}
        raw = self.raw(column, "color")
        keys = [json.dumps(jsonable(v), sort_keys=True) for v in raw]
        values = dict(zip(keys, (jsonable(v) for v in raw), strict=True))
        if len(values) > MAX_GROUPS:
            raise Problem(
                400,
                f"color: {column.key} has {len(values)} distinct values among the runs; "
                f"colour by a field with at most {MAX_GROUPS}",
                param="color",
            )
        return keys, values


def _short(value: Any) -> str:
    text = json.dumps(jsonable(value), sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _label(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _ordered(values: Mapping[str, Any]) -> list[str]:
    """Group keys in legend order: numbers by value, then the rest by label, none last."""

    def order(key: str) -> tuple[int, float, str]:
        value = values[key]
        if value is None:
            return (2, 0.0, "")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (0, float(value), "")
        return (1, 0.0, _label(value))

    return sorted(values, key=order)


# --- statistics -------------------------------------------------------------------


def _band(values: Sequence[float], agg: str) -> tuple[float, float, float]:
    """The mean of ``values`` and its band: min and max, or one standard error around it.

    A single value has no standard error: its band is the value itself.
    """
    count = len(values)
    mean = math.fsum(values) / count
    if agg == "mean_minmax":
        return mean, min(values), max(values)
    if count < 2:
        return mean, mean, mean
    variance = math.fsum((v - mean) ** 2 for v in values) / (count - 1)
    se = math.sqrt(variance / count)
    return mean, mean - se, mean + se


def _sample(total: int, limit: int, seed: int) -> list[int] | None:
    """The indexes of the points kept, in order, or ``None`` to keep every one."""
    if total <= limit:
        return None
    return sorted(random.Random(seed).sample(range(total), limit))


# --- the kinds of plot ------------------------------------------------------------


def _xy(out: PlotOut, reader: _Reader, columns: _Columns, request: PlotRequest) -> None:
    """Scatter and line: each run a point, or one aggregated point per group and x."""
    assert columns.x is not None
    assert columns.y is not None
    xs, out.time_x = reader.numbers(columns.x, "x")
    ys, _ = reader.numbers(columns.y, "y")
    keys, values = reader.groups(columns.color)
    usable = [i for i in range(len(xs)) if xs[i] is not None and ys[i] is not None]
    out.skipped = len(xs) - len(usable)
    order = _ordered({keys[i]: values[keys[i]] for i in usable})
    runs_in: dict[str, int] = defaultdict(int)
    for i in usable:
        runs_in[keys[i]] += 1
    groups = {
        key: PlotGroup(key=values[key], label=_label(values[key]), runs=runs_in[key])
        for key in order
    }
    if request.agg == "none":
        out.total = len(usable)
        kept = _sample(len(usable), request.limit, request.seed)
        chosen = usable if kept is None else [usable[k] for k in kept]
        if request.kind == "line":
            chosen = sorted(chosen, key=lambda i: (xs[i], reader.records[i].run_id))
        for i in chosen:
            group = groups[keys[i]]
            group.x.append(_f(xs[i]))
            group.y.append(_f(ys[i]))
            group.run_ids.append(reader.records[i].run_id)
    else:
        cells: dict[tuple[str, float], list[float]] = defaultdict(list)
        for i in usable:
            cells[keys[i], _f(xs[i])].append(_f(ys[i]))
        out.total = len(cells)
        ordered = sorted(cells, key=lambda cell: (order.index(cell[0]), cell[1]))
        kept = _sample(len(ordered), request.limit, request.seed)
        for cell in ordered if kept is None else [ordered[k] for k in kept]:
            group = groups[cell[0]]
            mean, lo, hi = _band(cells[cell], request.agg)
            group.x.append(cell[1])
            group.y.append(mean)
            group.lo.append(lo)
            group.hi.append(hi)
            group.n.append(len(cells[cell]))
    out.sampled = out.total > request.limit
    out.groups = list(groups.values())
    out.points = sum(len(g.x) for g in out.groups)


def _f(value: float | None) -> float:
    assert value is not None
    return value


def _hist(out: PlotOut, reader: _Reader, columns: _Columns, request: PlotRequest) -> None:
    """Counts of x in bins of equal width from its smallest to its largest value."""
    assert columns.x is not None
    xs, out.time_x = reader.numbers(columns.x, "x")
    keys, values = reader.groups(columns.color)
    usable = [i for i, x in enumerate(xs) if x is not None]
    out.skipped = len(xs) - len(usable)
    out.total = len(usable)
    if not usable:
        return
    low = min(_f(xs[i]) for i in usable)
    high = max(_f(xs[i]) for i in usable)
    if low == high:  # one value: one unit wide around it
        low, high = low - 0.5, high + 0.5
    bins = request.bins
    width = (high - low) / bins
    edges = [low + b * width for b in range(bins)] + [high]
    order = _ordered({keys[i]: values[keys[i]] for i in usable})
    groups = {
        key: PlotGroup(key=values[key], label=_label(values[key]), runs=0, counts=[0] * bins)
        for key in order
    }
    for i in usable:
        x = _f(xs[i])
        b = min(int((x - low) / width), bins - 1)
        # The edges are what the bins are: correct a rounding of the division.
        while b > 0 and x < edges[b]:
            b -= 1
        while b < bins - 1 and x >= edges[b + 1]:
            b += 1
        group = groups[keys[i]]
        group.counts[b] += 1
        group.runs += 1
    out.edges = edges
    out.groups = list(groups.values())
    out.points = bins * len(out.groups)


def _parallel(out: PlotOut, reader: _Reader, columns: _Columns, request: PlotRequest) -> None:
    """One row per run: each field of dims (numbers, or indexes of categories), then y."""
    assert columns.y is not None
    ys, _ = reader.numbers(columns.y, "y")
    axes: list[tuple[Column, list[Any]]] = [(c, reader.raw(c, "dims")) for c in columns.dims]
    usable = [
        i
        for i in range(len(ys))
        if ys[i] is not None and all(raw[i] is not None for _, raw in axes)
    ]
    out.skipped = len(ys) - len(usable)
    out.total = len(usable)
    encoders: list[Callable[[Any], float]] = []
    for column, raw in axes:
        found = [raw[i] for i in usable]
        numeric = [number(v) for v in found]
        if all(
            n is not None and not isinstance(v, bool) for n, v in zip(numeric, found, strict=True)
        ):
            floats = [_f(n) for n in numeric]
            out.dimensions.append(
                DimensionOut(
                    key=column.key,
                    numeric=True,
                    min_value=min(floats, default=None),
                    max_value=max(floats, default=None),
                )
            )
            encoders.append(_numeric)
        else:
            texts = {json.dumps(jsonable(v), sort_keys=True): jsonable(v) for v in found}
            ordered = _ordered(texts)
            index = {key: k for k, key in enumerate(ordered)}
            out.dimensions.append(
                DimensionOut(key=column.key, numeric=False, categories=[texts[k] for k in ordered])
            )
            encoders.append(_categorical(index))
    metric = [_f(ys[i]) for i in usable]
    out.dimensions.append(
        DimensionOut(
            key=columns.y.key,
            numeric=True,
            min_value=min(metric, default=None),
            max_value=max(metric, default=None),
        )
    )
    kept = _sample(len(usable), request.limit, request.seed)
    for k in range(len(usable)) if kept is None else kept:
        i = usable[k]
        out.rows.append(
            [enc(raw[i]) for enc, (_, raw) in zip(encoders, axes, strict=True)] + [metric[k]]
        )
        out.run_ids.append(reader.records[i].run_id)
    out.sampled = kept is not None
    out.points = len(out.rows)


def _numeric(value: Any) -> float:
    return _f(number(value))


def _categorical(index: Mapping[str, int]) -> Callable[[Any], float]:
    """The position of a value among the categories of a dimension."""

    def encode(value: Any) -> float:
        return float(index[json.dumps(jsonable(value), sort_keys=True)])

    return encode


def _curves(
    out: PlotOut, store: Store, reader: _Reader, columns: _Columns, request: PlotRequest
) -> None:
    """Per group and step, the mean of the series over the group's runs, with a band."""
    assert request.metric is not None
    keys, values = reader.groups(columns.color)
    by_run = _series_values(store, [r.run_id for r in reader.records], request.metric)
    usable = [i for i, r in enumerate(reader.records) if by_run.get(r.run_id)]
    out.skipped = len(reader.records) - len(usable)
    if reader.records and not usable:
        raise Problem(400, f"no run that matches has a series {request.metric!r}", param="metric")
    order = _ordered({keys[i]: values[keys[i]] for i in usable})
    steps: dict[str, dict[int, list[float]]] = {key: defaultdict(list) for key in order}
    runs_in: dict[str, int] = defaultdict(int)
    for i in usable:
        runs_in[keys[i]] += 1
        for step, value in by_run[reader.records[i].run_id].items():
            steps[keys[i]][step].append(value)
    out.total = sum(len(found) for found in steps.values())
    per_group = max(2, request.limit // max(1, len(order)))
    for key in order:
        group = PlotGroup(key=values[key], label=_label(values[key]), runs=runs_in[key])
        ordered = sorted(steps[key])
        for step in _spread(ordered, per_group):
            mean, lo, hi = _band(steps[key][step], request.agg)
            group.x.append(float(step))
            group.y.append(mean)
            group.lo.append(lo)
            group.hi.append(hi)
            group.n.append(len(steps[key][step]))
        out.groups.append(group)
    out.points = sum(len(g.x) for g in out.groups)
    out.sampled = out.points < out.total


def _spread(items: list[int], most: int) -> Iterable[int]:
    """All of ``items``, or ``most`` of them evenly spread, the first and last included."""
    if len(items) <= most:
        return items
    last = len(items) - 1
    return [items[k] for k in sorted({round(j * last / (most - 1)) for j in range(most)})]


def _series_values(store: Store, run_ids: list[str], name: str) -> dict[str, dict[int, float]]:
    """Each run's series ``name`` as its finite values by step (the last of a step logged twice)."""
    if isinstance(store, SupportsSeriesMany):
        found = store.get_series_many(run_ids)
    elif isinstance(store, SupportsSeries):
        found = {run_id: store.get_series(run_id) for run_id in run_ids}
    else:
        return {}
    out: dict[str, dict[int, float]] = {}
    for run_id, named in found.items():
        one = named.get(name)
        if one is None:
            continue
        points: dict[int, float] = {}
        for step, value in zip(one.steps, one.values, strict=True):
            found_value = number(value)
            if found_value is not None:
                points[step] = found_value
            else:
                points.pop(step, None)
        if points:
            out[run_id] = points
    return out
