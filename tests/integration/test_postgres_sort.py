"""Kept metric orders: top-k queries sorted on a metric, answered from ``sort_values``.

The first windowed query that sorts an experiment on a metric keeps that metric's
order; triggers on ``runs`` then keep it in step with every write. These tests hold
the answers to the Python engine's, with the candidate window cut small so that ties
straddle it, and check the kept rows against the records after every kind of write:
puts, re-puts, deletes, edits, both kinds of rebuild, and writers racing the first
query. A role that may only read answers the whole way, and right.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Final

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from metalab.query import F, Field, OrderBy, Query, build_query, select
from metalab.query.sql import index_text
from metalab.records import MetricValue, RunRecord
from metalab.store import PostgresStore, PostgresStoreConfig
from metalab.store import _postgres_index as postgres_index
from metalab.testing import strategies as mst

EXP: Final = "sort:1"
OTHER: Final = "sort-other:1"
T0: Final = dt.datetime(2026, 2, 3, tzinfo=dt.UTC)
VALUES: Final[tuple[MetricValue, ...]] = (0.5, 0.25, 1, 2, 0.5, True, "b", math.inf, -math.inf)


def record(experiment_id: str, i: int, metrics: dict[str, MetricValue]) -> RunRecord:
    run = RunRecord.running(
        run_id=uuid.uuid4().hex * 2,
        experiment_id=experiment_id,
        params={"opt": ("adam", "sgd")[i % 2], "i": i},
        started_at=T0 + dt.timedelta(seconds=i),
    )
    return run.succeeded(metrics=metrics, finished_at=T0 + dt.timedelta(seconds=i + 1))


def sweep(experiment_id: str, n: int, offset: int = 0) -> list[RunRecord]:
    """Runs whose ``acc`` repeats (ties) and mixes types; every seventh has none."""
    return [
        record(experiment_id, i, {} if i % 7 == 3 else {"acc": VALUES[i % len(VALUES)]})
        for i in range(offset, offset + n)
    ]


@pytest.fixture
def small_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Candidates cut at a handful of runs, so ties straddle the cut."""
    monkeypatch.setattr(postgres_index, "_TOP_K_WINDOW", 1)


@pytest.fixture
def store(
    postgres_config: PostgresStoreConfig, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PostgresStore]:
    """An unscoped store; candidates cut at a handful of runs (see ``small_window``)."""
    monkeypatch.setattr(postgres_index, "_TOP_K_WINDOW", 1)
    with postgres_config.connect() as opened:
        assert isinstance(opened, PostgresStore)
        yield opened


def expected(store: PostgresStore, query: Query, experiment_id: str = EXP) -> list[str]:
    return [r.run_id for r in select(store.list_run_records(experiment_id), query)]


def page(store: PostgresStore, query: Query) -> list[str]:
    return [r.run_id for r in store.query_runs(query)]


def queries(experiment_id: str = EXP) -> list[Query]:
    scoped = F.experiment_id == experiment_id
    adam = scoped & (F.params["opt"] == "adam")
    return [
        Query(where=where, order_by=(OrderBy(Field("metrics", ("acc",)), descending),), **window)
        for where in (scoped, adam)
        for descending in (False, True)
        for window in ({"limit": 5}, {"limit": 3, "offset": 4}, {"limit": 50})
    ]


def kept(conn: psycopg.Connection[Any], schema: str) -> set[tuple[str, str]]:
    rows = conn.execute(
        sql.SQL("SELECT experiment_id, metric FROM {}").format(
            sql.Identifier(schema, "sort_metrics")
        )
    ).fetchall()
    return {(str(e), str(m)) for e, m in rows}


def parts(value: object) -> tuple[int, bool | None, Decimal | None, str | None] | None:
    """What ``sort_values`` holds for a metric value (``None``: no row)."""
    if isinstance(value, bool):
        return (0, value, None, None)
    if isinstance(value, int):
        return (1, None, Decimal(value), None)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return (
            1,
            None,
            Decimal("Infinity" if value > 0 else "-Infinity")
            if math.isinf(value)
            else Decimal(repr(value)),
            None,
        )
    if isinstance(value, str):
        return (2, None, None, index_text(value))
    return None


def assert_kept_rows_match_the_records(store: PostgresStore, url: str, schema: str) -> None:
    """Every kept (experiment, metric) has exactly one row per run with a sortable value."""
    with psycopg.connect(url) as conn:
        for experiment_id, metric in kept(conn, schema):
            rows = conn.execute(
                sql.SQL(
                    "SELECT run_id, category, bool_value, num_value, str_value FROM {} "
                    "WHERE experiment_id = %s AND metric = %s"
                ).format(sql.Identifier(schema, "sort_values")),
                (experiment_id, metric),
            ).fetchall()
            found = {str(r[0]): (int(r[1]), r[2], r[3], r[4]) for r in rows}
            want = {}
            for run in store.list_run_records(experiment_id):
                key = next((k for k in run.metrics if index_text(k) == metric), None)
                value = parts(run.metrics[key]) if key is not None else None
                if value is not None:
                    want[run.run_id] = value
            assert found == want, (experiment_id, metric)


class TestTopK:
    def test_pages_sorted_on_a_metric_are_the_python_engines(
        self, store: PostgresStore, postgres_url: str, postgres_config: PostgresStoreConfig
    ) -> None:
        store.put_run_records(sweep(EXP, 60) + sweep(OTHER, 20))
        for query in queries():
            assert page(store, query) == expected(store, query), query
        with psycopg.connect(postgres_url) as conn:
            assert kept(conn, postgres_config.schema) == {(EXP, "acc")}
        assert_kept_rows_match_the_records(store, postgres_url, postgres_config.schema)

    @pytest.mark.usefixtures("small_window")
    def test_a_scoped_store_keeps_the_order_of_its_own_experiment(
        self, postgres_config: PostgresStoreConfig, postgres_url: str
    ) -> None:
        with postgres_config.scoped(EXP).connect() as scoped:
            scoped.put_run_records(sweep(EXP, 30))
            query = build_query(order_by="-metrics.acc", limit=7)
            assert isinstance(scoped, PostgresStore)
            assert page(scoped, query) == expected(scoped, query)
        with psycopg.connect(postgres_url) as conn:
            assert kept(conn, postgres_config.schema) == {(EXP, "acc")}

    def test_without_an_experiment_no_order_is_kept(
        self, store: PostgresStore, postgres_url: str, postgres_config: PostgresStoreConfig
    ) -> None:
        store.put_run_records(sweep(EXP, 20) + sweep(OTHER, 20))
        query = build_query(order_by="-metrics.acc", limit=7)
        assert page(store, query) == [r.run_id for r in select(store.list_run_records(), query)]
        with psycopg.connect(postgres_url) as conn:
            assert kept(conn, postgres_config.schema) == set()

    def test_a_secondary_sort_key_orders_the_ties(self, store: PostgresStore) -> None:
        store.put_run_records(sweep(EXP, 40))
        query = build_query(F.experiment_id == EXP, order_by=["-metrics.acc", "-params.i"], limit=9)
        assert page(store, query) == expected(store, query)


class TestKeptInStep:
    def test_every_kind_of_write_keeps_the_rows_and_the_answers(
        self, store: PostgresStore, postgres_url: str, postgres_config: PostgresStoreConfig
    ) -> None:
        schema = postgres_config.schema
        runs = sweep(EXP, 40)
        store.put_run_records(runs + sweep(OTHER, 10))

        def check() -> None:
            for query in queries():
                assert page(store, query) == expected(store, query), query
            assert_kept_rows_match_the_records(store, postgres_url, schema)

        check()  # keeps the order of acc
        store.put_run_records(sweep(EXP, 15, offset=100))  # a batch
        check()
        store.put_run_record(sweep(EXP, 1, offset=200)[0])  # one row
        check()
        changed = msgspec.structs.replace(runs[0], metrics={"acc": 99.5})
        store.put_run_record(changed)  # a re-put with another value
        lost = msgspec.structs.replace(runs[1], metrics={"other": 1})
        store.put_run_records([lost])  # the value gone
        check()
        assert store.delete_run(runs[2].run_id)
        check()
        store.set_tags(runs[4].run_id, add=["picked"])  # an edit rewrites the row
        check()
        with postgres_config.scoped(EXP).connect() as scoped:
            scoped.rebuild_index()  # other experiments exist: rows replaced in place
        check()
        store.rebuild_index()  # the whole index: kept orders start again
        with psycopg.connect(postgres_url) as conn:
            assert kept(conn, schema) == set()
        check()
        with psycopg.connect(postgres_url) as conn:
            assert kept(conn, schema) == {(EXP, "acc")}
        store.put_run_records(sweep(EXP, 10, offset=300))  # the rebuilt tables' triggers
        store.put_run_record(msgspec.structs.replace(runs[5], metrics={"acc": -3}))
        check()

    def test_writers_racing_the_first_query_leave_no_run_out(
        self, store: PostgresStore, postgres_url: str, postgres_config: PostgresStoreConfig
    ) -> None:
        store.put_run_records(sweep(EXP, 200))
        batches = [sweep(EXP, 20, offset=1000 + 20 * i) for i in range(15)]
        failures: list[BaseException] = []

        def write() -> None:
            try:
                for batch in batches:
                    store.put_run_records(batch)
                    for run in batch[:2]:
                        store.put_run_record(msgspec.structs.replace(run, metrics={"acc": 7}))
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        query = queries()[0]
        while writer.is_alive():
            store.query_runs(query)
        writer.join()
        assert not failures
        assert_kept_rows_match_the_records(store, postgres_url, postgres_config.schema)
        for query in queries():
            assert page(store, query) == expected(store, query), query

    def test_the_first_query_waits_for_a_write_in_flight(
        self, store: PostgresStore, postgres_url: str, postgres_config: PostgresStoreConfig
    ) -> None:
        runs = sweep(EXP, 20)
        store.put_run_records(runs)
        runs_table = sql.Identifier(postgres_config.schema, "runs")
        values = sql.Identifier(postgres_config.schema, "sort_values")
        updated = threading.Event()

        def write_slowly() -> None:
            # The write's triggers run before the order is kept; its commit comes after.
            with psycopg.connect(postgres_url) as conn:
                conn.execute(
                    sql.SQL("UPDATE {} SET metrics = '{{\"acc\": 1000}}' WHERE run_id = %s").format(
                        runs_table
                    ),
                    (runs[0].run_id,),
                )
                updated.set()
                threading.Event().wait(1.0)

        writer = threading.Thread(target=write_slowly)
        writer.start()
        assert updated.wait(30)
        store.query_runs(queries()[0])
        writer.join()
        with psycopg.connect(postgres_url) as conn:
            found = conn.execute(
                sql.SQL("SELECT num_value FROM {} WHERE run_id = %s").format(values),
                (runs[0].run_id,),
            ).fetchone()
        assert found == (Decimal(1000),)


class TestReadOnlyRole:
    @pytest.mark.usefixtures("small_window")
    def test_a_role_that_may_only_read_answers_the_whole_way(
        self, postgres_config: PostgresStoreConfig, postgres_url: str
    ) -> None:
        schema = postgres_config.schema
        with postgres_config.connect() as writer:
            writer.put_run_records(sweep(EXP, 30))
        role = f"reader_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            conn.execute(
                sql.SQL(
                    "GRANT USAGE ON SCHEMA {s} TO {r}; GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}"
                ).format(s=sql.Identifier(schema), r=sql.Identifier(role))
            )
        try:
            reader = dataclasses.replace(
                postgres_config,
                connection_string=f"{postgres_url}{'&' if '?' in postgres_url else '?'}options=-c%20role%3D{role}",
            )
            with reader.connect() as store:
                assert isinstance(store, PostgresStore)
                for query in queries():
                    assert page(store, query) == expected(store, query), query
            with psycopg.connect(postgres_url) as conn:
                assert kept(conn, schema) == set()
        finally:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP OWNED BY {r}; DROP ROLE {r}").format(r=sql.Identifier(role))
                )


_EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_EXAMPLES
@given(
    records=st.lists(mst.query_records(), min_size=1, max_size=25),
    where=st.none() | mst.query_expressions(),
    metric=st.sampled_from(["m1", "m2", "val acc"]),
    descending=st.booleans(),
    then=st.lists(
        st.builds(
            OrderBy,
            st.sampled_from([Field("params", ("a",)), Field("record", ("started_at",))]),
            st.booleans(),
        ),
        max_size=1,
    ),
    limit=st.integers(1, 8),
    offset=st.integers(0, 4),
    window=st.integers(1, 6),
)
def test_the_kept_order_answers_as_the_python_engine_does(
    store: PostgresStore,
    monkeypatch: pytest.MonkeyPatch,
    records: list[RunRecord],
    where: Any,
    metric: str,
    descending: bool,
    then: list[OrderBy],
    limit: int,
    offset: int,
    window: int,
) -> None:
    monkeypatch.setattr(postgres_index, "_TOP_K_WINDOW", window)
    experiment_id = f"prop-{uuid.uuid4().hex[:10]}:1"
    runs = [
        msgspec.structs.replace(r, run_id=uuid.uuid4().hex * 2, experiment_id=experiment_id)
        for r in records
    ]
    store.put_run_records(runs)
    scoped = F.experiment_id == experiment_id
    query = Query(
        where=scoped if where is None else scoped & where,
        order_by=(OrderBy(Field("metrics", (metric,)), descending), *then),
        limit=limit,
        offset=offset,
    )
    assert page(store, query) == expected(store, query, experiment_id)
    # Written after the order is kept: the triggers add them.
    more = [
        msgspec.structs.replace(r, run_id=uuid.uuid4().hex * 2, experiment_id=experiment_id)
        for r in records[: len(records) // 2 + 1]
    ]
    store.put_run_records(more)
    assert page(store, query) == expected(store, query, experiment_id)
