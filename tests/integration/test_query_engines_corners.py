"""Corners of the SQL engine that the sampled mutation run found untested.

Each query runs on the Postgres index and is checked against the Python engine over
the same records: times compared with the record's timestamp columns, ``-inf``
literals, comparisons that can never match (a column of one kind against a value of
another), booleans in JSON fields, and ``exists`` on a column that may be empty.
"""

from __future__ import annotations

import datetime as dt

import pytest

from metalab.query import F, Query, build_query
from metalab.query._ast import Expr
from metalab.records import JSONValue, RunRecord
from metalab.store import PostgresStoreConfig, SupportsQuery
from metalab.testing import query_disagreements

EXP = "corners:1"
T0 = dt.datetime(2026, 4, 1, 12, 0, tzinfo=dt.UTC)
MIXED: list[JSONValue] = [True, 1, "1", None]


def _records() -> list[RunRecord]:
    records = []
    metrics = [float("-inf"), -1.0, 0.0, 2.5, float("inf"), float("nan")]
    for i, value in enumerate(metrics):
        start = T0 + dt.timedelta(minutes=i)
        record = RunRecord.running(
            run_id=f"corner{i:010d}",
            experiment_id=EXP,
            params={"flag": i % 2 == 0, "n": i, "mixed": MIXED[i % 4]},
            started_at=start,
            tags=("even",) if i % 2 == 0 else (),
        )
        if i != 5:  # one run still running: no finished_at, no duration
            record = record.succeeded(
                metrics={"m": value, "ok": i > 2}, finished_at=start + dt.timedelta(seconds=i)
            )
        records.append(record)
    return records


#: Comparisons of a field with a value of a kind it never holds.
NEVER: list[Expr] = [
    F.status == True,
    F.run_id == False,
    F.duration_ms == True,
    F.params["n"] == T0,
    F.params["n"] > T0,
    F.metrics["m"] <= T0,
    F.tags.contains(3),
    F.tags.contains(True),
]


def _queries() -> list[Query]:
    t = T0 + dt.timedelta(minutes=2)
    exprs: list[Expr] = [
        # Times against the timestamp columns.
        F.started_at > t,
        F.started_at <= t,
        F.started_at == t,
        F.finished_at >= t,
        F.finished_at != t,
        F.finished_at.exists(),
        ~F.finished_at.exists(),
        F.duration_ms.exists(),
        # -inf and inf literals.
        F.metrics["m"] > float("-inf"),
        F.metrics["m"] == float("-inf"),
        F.metrics["m"] <= float("-inf"),
        F.metrics["m"] < float("inf"),
        F.metrics["m"].is_in([float("-inf"), 2.5]),
        # Kinds that never compare: each is false for every run, in both engines.
        *NEVER,
        ~(F.status == True),
        # Booleans inside JSON fields.
        F.params["flag"] == True,
        F.params["flag"] != False,
        F.metrics["ok"] == True,
        F.params["mixed"] == True,
        F.params["mixed"] == 1,
        F.params["mixed"] == "1",
        F.params["mixed"].exists(),
        F.params["mixed"] > 0,
    ]
    queries = [build_query(expr) for expr in exprs]
    for order in ("started_at", "-finished_at", "params.flag", "-params.mixed", "metrics.m"):
        queries.append(build_query(None, order_by=order))
    return queries


@pytest.fixture
def records() -> list[RunRecord]:
    return _records()


def test_the_index_answers_the_corners_as_python(
    postgres_config: PostgresStoreConfig, records: list[RunRecord]
) -> None:
    with postgres_config.scoped(EXP).connect() as store:
        assert isinstance(store, SupportsQuery)
        store.put_run_records(records)
        wrong = query_disagreements(store, records, _queries())
    assert not wrong, "\n".join(wrong)


def test_the_queries_that_can_never_match_match_nothing(
    postgres_config: PostgresStoreConfig, records: list[RunRecord]
) -> None:
    # The Python engine agreeing is not enough: both could be wrong the same way.
    with postgres_config.scoped(EXP).connect() as store:
        assert isinstance(store, SupportsQuery)
        store.put_run_records(records)
        for expr in NEVER:
            assert store.query_runs(build_query(expr)) == [], str(expr)
        everything = store.query_runs(build_query(~(F.status == True)))
    assert len(everything) == len(records)


def _nested_records() -> list[RunRecord]:
    shapes: list[dict[str, JSONValue]] = [
        {"a": [10, 20], "deep": {"b": {"c": 1}}},  # a list where a path expects a mapping
        {"a": {"0": 10}, "deep": {"b": [1]}},
        {"a": {"0": 20, "1": 10}, "deep": {"b": {"c": 2}}},
        {"a": 10, "deep": 5},
    ]
    return [
        RunRecord.running(
            run_id=f"nested{i:010d}",
            experiment_id=EXP,
            params=params,
            started_at=T0 + dt.timedelta(minutes=i),
            tags=("x",) if i % 2 else (),
        ).succeeded(metrics={"m": float(i)}, finished_at=T0 + dt.timedelta(minutes=i, seconds=1))
        for i, params in enumerate(shapes)
    ]


def _nested_queries() -> list[Query]:
    exprs: list[Expr] = [
        # Python walks mappings only: "0" is a key, never an index into a list.
        F.params["a"]["0"] == 10,
        F.params["a"]["1"] == 10,
        F.params["a"]["0"].exists(),
        F.params["deep"]["b"]["c"] == 1,
        F.params["deep"]["b"]["c"] >= 1,
        F.params["deep"]["b"]["0"] == 1,
        F.params["deep"]["b"]["c"].exists(),
        # exists on columns that are never empty, and on the tags list.
        F.status.exists(),
        F.run_id.exists(),
        F.experiment_id.exists(),
        F.tags.exists(),
        ~F.tags.exists(),
        ~F.status.exists(),
        # The tags list compared as a whole: never equal to a string, in both engines.
        F.tags == "x",
        F.tags != "x",
        F.tags.is_in(["x"]),
        F.tags.not_in(["x"]),
    ]
    return [build_query(expr) for expr in exprs]


def test_paths_through_lists_and_exists_on_columns_answer_as_python(
    postgres_config: PostgresStoreConfig,
) -> None:
    records = _nested_records()
    with postgres_config.scoped(EXP).connect() as store:
        assert isinstance(store, SupportsQuery)
        store.put_run_records(records)
        wrong = query_disagreements(store, records, _nested_queries())
    assert not wrong, "\n".join(wrong)


def test_an_unscoped_query_without_a_filter_lists_every_run(
    postgres_config: PostgresStoreConfig,
) -> None:
    records = _nested_records()
    other = [
        RunRecord.running(run_id=f"other{i:011d}", experiment_id="other:1", started_at=T0)
        for i in range(2)
    ]
    with postgres_config.connect() as store:
        assert isinstance(store, SupportsQuery)
        store.put_run_records(records + other)
        queries = [build_query(None, order_by="run_id"), build_query(None, limit=3)]
        wrong = query_disagreements(store, records + other, queries)
    assert not wrong, "\n".join(wrong)
