"""The Python engine follows the semantics written in metalab.query's docstring."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import msgspec
import pytest

from metalab.query import F, Query, build_query, parse_where, select
from metalab.records import MetricValue, RunRecord

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _run(
    run_id: str,
    params: dict[str, Any] | None = None,
    metrics: dict[str, MetricValue] | None = None,
) -> RunRecord:
    rec = RunRecord.running(run_id=run_id, experiment_id="e:1", params=params or {}, started_at=T0)
    return rec.succeeded(metrics=metrics or {}, finished_at=T0 + dt.timedelta(seconds=1))


RUNS = [
    _run("r1", {"x": 1, "opt": "adam", "flag": True}, {"acc": 0.5}),
    _run("r2", {"x": 1.0, "opt": "sgd", "flag": False}, {"acc": math.nan}),
    _run("r3", {"x": "1", "nested": {"lr": 0.1}}, {"acc": math.inf}),
    _run("r4", {"x": None, "list": [1, "a"]}, {"acc": "high"}),
    _run("r5", {}, {}),
]


def _ids(where: str, runs: list[RunRecord] = RUNS) -> list[str]:
    return [r.run_id for r in select(runs, build_query(where))]


class TestComparisonSemantics:
    def test_int_and_float_are_one_category(self) -> None:
        assert _ids("params.x == 1") == ["r1", "r2"]
        assert _ids("params.x == 1.0") == ["r1", "r2"]

    def test_strings_do_not_equal_numbers(self) -> None:
        assert _ids('params.x == "1"') == ["r3"]

    def test_booleans_do_not_equal_numbers(self) -> None:
        assert _ids("params.flag == 1") == []
        assert _ids("params.flag == true") == ["r1"]

    def test_missing_and_null_fail_every_comparison(self) -> None:
        assert "r4" not in _ids("params.x != 5")
        assert "r5" not in _ids("params.x != 5")
        assert _ids("params.x != 5") == ["r1", "r2", "r3"]

    def test_not_negates_the_two_valued_result(self) -> None:
        assert _ids("not params.x == 1") == ["r3", "r4", "r5"]

    def test_not_equal_counts_other_types_as_different(self) -> None:
        assert _ids("params.x != 1") == ["r3"]

    def test_ordering_only_within_a_category(self) -> None:
        assert _ids('params.x < "2"') == ["r3"]
        assert _ids("params.x < 2") == ["r1", "r2"]

    def test_nan_compares_with_nothing_but_exists(self) -> None:
        assert "r2" not in _ids("metrics.acc >= 0")
        assert "r2" not in _ids("metrics.acc != 0")
        assert "r2" in _ids("metrics.acc exists")

    def test_infinity_is_an_ordinary_number(self) -> None:
        assert _ids("metrics.acc > 1e308") == ["r3"]
        assert _ids("metrics.acc == inf") == ["r3"]

    def test_exists_ignores_null(self) -> None:
        assert _ids("params.x exists") == ["r1", "r2", "r3"]

    def test_in_and_not_in(self) -> None:
        assert _ids('params.opt in ["adam", "x"]') == ["r1"]
        assert _ids('params.opt not in ["adam"]') == ["r2"]

    def test_contains_for_tags_and_list_params(self) -> None:
        tagged = [msgspec_replace(RUNS[0], tags=("gpu", "big")), RUNS[1]]
        assert _ids('tags contains "gpu"', tagged) == ["r1"]
        assert _ids('params.list contains "a"') == ["r4"]
        assert _ids("params.list contains 1") == ["r4"]
        assert _ids("params.list contains true") == []

    def test_contains_never_looks_inside_a_string(self) -> None:
        runs = [_run("a", {"s": "gpu-big"}), _run("b", {"s": ["gpu"]}), _run("c", {"s": "gpu"})]
        assert _ids('params.s contains "gpu"', runs) == ["b"]
        assert _ids('params.s contains "g"', runs) == []

    def test_nested_params(self) -> None:
        assert _ids("params.nested.lr == 0.1") == ["r3"]
        assert _ids("params.x.lr exists") == []

    def test_strings_compare_by_code_point(self) -> None:
        runs = [_run("a", {"s": "Zeta"}), _run("b", {"s": "alpha"}), _run("c", {"s": "é"})]
        assert _ids('params.s > "Zz"', runs) == ["b", "c"]

    def test_timestamps(self) -> None:
        assert len(_ids('started_at >= "2026-01-01T00:00:00Z"')) == 5
        assert _ids('finished_at < "2026-01-01T00:00:00.5Z"') == []

    def test_status(self) -> None:
        runs = [*RUNS, RunRecord.running(run_id="r6", experiment_id="e:1", started_at=T0)]
        assert _ids('status == "running"', runs) == ["r6"]


class TestOrdering:
    def test_missing_and_nan_sort_last_both_ways(self) -> None:
        asc = select(RUNS, build_query(order_by="metrics.acc"))
        desc = select(RUNS, build_query(order_by="metrics.acc desc"))
        # numbers before strings, NaN / missing last (ties by run id)
        assert [r.run_id for r in asc] == ["r1", "r3", "r4", "r2", "r5"]
        assert [r.run_id for r in desc] == ["r4", "r3", "r1", "r2", "r5"]

    def test_ties_break_by_run_id_and_keys_chain(self) -> None:
        runs = [
            _run("c", {"g": 1}, {"m": 2}),
            _run("a", {"g": 1}, {"m": 1}),
            _run("b", {"g": 0}, {"m": 1}),
        ]
        query = build_query(order_by=["params.g desc", "metrics.m"])
        assert [r.run_id for r in select(runs, query)] == ["a", "c", "b"]
        assert [r.run_id for r in select(runs, Query())] == ["a", "b", "c"]

    def test_limit_and_offset_apply_after_sorting(self) -> None:
        query = build_query(order_by="-metrics.acc", limit=2, offset=1)
        assert [r.run_id for r in select(RUNS, query)] == ["r3", "r1"]


class TestDerived:
    def test_derived_fields_use_the_lookup(self) -> None:
        derived = {"r1": {"d": 2.0}, "r2": {"d": 1.0}}
        query = build_query("derived.d > 1.5")
        found = select(RUNS, query, derived=lambda r: derived.get(r.run_id))
        assert [r.run_id for r in found] == ["r1"]

    def test_without_a_lookup_derived_values_are_missing(self) -> None:
        assert select(RUNS, build_query("derived.d exists")) == []


def msgspec_replace(record: RunRecord, **changes: Any) -> RunRecord:
    return msgspec.structs.replace(record, **changes)


@pytest.mark.parametrize("text", ["params.x == 1", "not params.x == 1"])
def test_parse_and_builder_select_the_same_runs(text: str) -> None:
    built = F.params["x"] == 1
    expr = built if not text.startswith("not") else ~built
    assert select(RUNS, Query(where=expr)) == select(RUNS, Query(where=parse_where(text)))
