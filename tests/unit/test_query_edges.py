"""The Python query engine over derived metrics: every kind of filter and the sort read a
run's derived values, and they are looked up only when the query reads them.

Written against the survivors of a mutation run (docs/testing.md): the engine's other
tests filter on params and metrics only, so a filter that dropped the derived values
on the way passed them all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pytest

from metalab.query import build_query, select
from metalab.query._python import MISSING
from metalab.records import MetricValue, RunRecord

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _run(run_id: str) -> RunRecord:
    rec = RunRecord.running(run_id=run_id, experiment_id="e", started_at=T0)
    return rec.succeeded(metrics={}, finished_at=T0 + dt.timedelta(seconds=1))


RUNS = [_run("r1"), _run("r2"), _run("r3"), _run("r4")]
DERIVED: dict[str, dict[str, MetricValue]] = {
    "r1": {"score": 3, "tags": "a"},
    "r2": {"score": 1},
    "r3": {"score": 2, "tags": "b"},
}


def lookup(record: RunRecord) -> Mapping[str, MetricValue] | None:
    return DERIVED.get(record.run_id)


def ids(where: str | None, order_by: str | None = None) -> list[str]:
    query = build_query(where, order_by=order_by)
    return [r.run_id for r in select(RUNS, query, derived=lookup)]


class TestFiltersReadDerivedValues:
    @pytest.mark.parametrize(
        ("where", "expected"),
        [
            ("derived.score == 1", ["r2"]),
            ("derived.score != 1", ["r1", "r3"]),
            ("derived.score >= 2", ["r1", "r3"]),
            ("derived.score in [1, 3]", ["r1", "r2"]),
            ("derived.score not in [1, 3]", ["r3"]),
            ("derived.tags exists", ["r1", "r3"]),
            ("derived.score > 1 and derived.score < 3", ["r3"]),
            ("derived.score == 1 or derived.score == 3", ["r1", "r2"]),
            ("not derived.score == 1", ["r1", "r3", "r4"]),
            ('params.x exists or derived.tags == "a"', ["r1"]),
            ('derived.tags == "b" and params.x exists', []),
        ],
    )
    def test_each_filter(self, where: str, expected: list[str]) -> None:
        assert ids(where) == expected

    def test_the_sort_reads_derived_values_and_puts_missing_ones_last(self) -> None:
        assert ids(None, order_by="derived.score desc") == ["r1", "r3", "r2", "r4"]
        assert ids(None, order_by="derived.score") == ["r2", "r3", "r1", "r4"]


class TestDerivedLookups:
    def test_a_query_that_does_not_read_them_looks_none_up(self) -> None:
        asked: list[str] = []

        def counting(record: RunRecord) -> Mapping[str, MetricValue] | None:
            asked.append(record.run_id)
            return lookup(record)

        assert [r.run_id for r in select(RUNS, build_query("run_id != 'r1'"), counting)] == [
            "r2",
            "r3",
            "r4",
        ]
        assert asked == []
        select(RUNS, build_query("derived.score exists"), counting)
        assert asked == ["r1", "r2", "r3", "r4"]

    def test_without_a_lookup_derived_values_are_missing(self) -> None:
        query = build_query("not derived.score exists")
        assert [r.run_id for r in select(RUNS, query)] == ["r1", "r2", "r3", "r4"]


def test_the_missing_marker_shows_its_name() -> None:
    assert repr(MISSING) == "MISSING"
