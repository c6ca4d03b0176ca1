"""The field catalog computed in Python (FileStore, MemoryStore)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from metalab.query import FieldInfo, field_catalog
from metalab.records import MetricValue, RunRecord

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _run(
    run_id: str, params: dict[str, Any] | None = None, metrics: dict[str, MetricValue] | None = None
) -> RunRecord:
    rec = RunRecord.running(run_id=run_id, experiment_id="e:1", params=params or {}, started_at=T0)
    return rec.succeeded(metrics=metrics or {}, finished_at=T0 + dt.timedelta(seconds=1))


def _catalog(values: list[Any], namespace: str = "params") -> FieldInfo:
    if namespace == "params":
        runs = [_run(f"r{i}", params={"k": v}) for i, v in enumerate(values)]
    else:
        runs = [_run(f"r{i}", metrics={"k": v}) for i, v in enumerate(values)]
    (info,) = field_catalog(runs)
    return info


class TestSummary:
    def test_every_namespace_is_listed_by_field_name(self) -> None:
        derived = {"r1": {"gain": 2.0}}
        runs = [_run("r1", {"lr": 0.1}, {"acc": 0.5}), _run("r2", {"opt": "adam"})]
        catalog = field_catalog(runs, lambda r: derived.get(r.run_id))
        assert [i.field for i in catalog] == [
            "derived.gain",
            "metrics.acc",
            "params.lr",
            "params.opt",
        ]
        assert [i.count for i in catalog] == [1, 1, 1, 1]

    def test_ranges_cover_finite_numbers_only(self) -> None:
        info = _catalog([3, -1.5, math.nan, math.inf, -math.inf, True, "9"], "metrics")
        assert (info.min_value, info.max_value) == (-1.5, 3.0)
        assert info.types == ["bool", "float", "int", "str"]
        assert info.count == 7

    def test_a_field_without_finite_numbers_has_no_range(self) -> None:
        info = _catalog(["a", None, [1], {"x": 1}])
        assert (info.min_value, info.max_value) == (None, None)
        assert info.types == ["dict", "list", "null", "str"]


class TestSamples:
    def test_numbers_are_the_smallest_distinct_in_numeric_order(self) -> None:
        assert _catalog([256, 16, 128, 32, 64, 16, 512]).samples == [16, 32, 64, 128, 256]

    def test_kinds_follow_the_jsonb_order(self) -> None:
        values = [{"a": 1}, [2], True, 1.5, "s", None]
        assert _catalog(values).samples == [None, "s", 1.5, True, [2]]

    def test_booleans_are_not_numbers(self) -> None:
        assert _catalog([True, 1, False]).samples == [1, False, True]

    def test_equal_numbers_of_either_type_are_one_sample(self) -> None:
        assert len(_catalog([1, 1.0, 2]).samples) == 2

    def test_non_finite_floats_are_escaped_once_each(self) -> None:
        info = _catalog([math.nan, math.nan, math.inf, 0.5], "metrics")
        assert info.samples == [0.5, {"$float": "Infinity"}, {"$float": "NaN"}]

    def test_lists_and_objects_are_deduplicated(self) -> None:
        info = _catalog([[1, 2], [1, 2], {"b": 1}, {"b": 1}, {"a": 2}])
        assert info.samples == [[1, 2], {"a": 2}, {"b": 1}]


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.lists(st.integers(0, 3), max_size=2),
)


@given(values=st.lists(SCALARS, min_size=1, max_size=40))
def test_a_catalog_entry_agrees_with_its_values(values: list[Any]) -> None:
    info = _catalog(values)
    finite = [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]
    assert info.count == len(values)
    assert info.min_value == (min(finite) if finite else None)
    assert info.max_value == (max(finite) if finite else None)
    assert 1 <= len(info.samples) <= 5
    distinct = {repr(s) for s in info.samples}
    assert len(distinct) == len(info.samples)
