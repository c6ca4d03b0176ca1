"""The index's field catalog follows writes: logged by triggers, folded in at the next read.

Writes log what they changed (``catalog_changes``). What they add (new runs, a running
run that finished with metrics, derived metrics) is folded into the catalog at the
next read, from the changed runs alone; what takes values away (a delete, a changed or
removed value) makes that read recompute the catalog. Either way the catalog is the
one the Python engine computes from the records, after any sequence of writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import uuid
from typing import Any, Final

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from psycopg import sql

from metalab.query import FieldInfo
from metalab.query import _catalog as catalog_module
from metalab.records import MetricValue, RunRecord
from metalab.store import MemoryStoreConfig, PostgresStore, PostgresStoreConfig, Store
from metalab.store import _postgres_index as postgres_index
from metalab.testing import strategies as mst

T0: Final = dt.datetime(2026, 4, 5, tzinfo=dt.UTC)
RUN_IDS: Final = tuple(f"{i:016x}" for i in range(5))


def catalog(store: Any) -> list[tuple[Any, ...]]:
    found: list[FieldInfo] = store.fields()
    return [dataclasses.astuple(info) for info in found]


def state(url: str, schema: str, experiment_id: str) -> tuple[bool, int]:
    """``(catalog_dirty, changes logged)`` of the experiment."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            sql.SQL("SELECT catalog_dirty FROM {} WHERE experiment_id = %s").format(
                sql.Identifier(schema, "experiments")
            ),
            (experiment_id,),
        ).fetchone()
        logged = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE experiment_id = %s").format(
                sql.Identifier(schema, "catalog_changes")
            ),
            (experiment_id,),
        ).fetchone()
    assert row is not None
    assert logged is not None
    return bool(row[0]), int(logged[0])


def running(experiment_id: str, run_id: str, params: dict[str, Any]) -> RunRecord:
    return RunRecord.running(
        run_id=run_id, experiment_id=experiment_id, params=params, started_at=T0
    )


def test_writes_are_logged_and_folded_in_at_the_next_read(
    postgres_config: PostgresStoreConfig, postgres_url: str
) -> None:
    eid = "merged:1"
    schema = postgres_config.schema
    model = MemoryStoreConfig(name=f"m-{uuid.uuid4().hex}", experiment_id=eid).connect()
    with postgres_config.scoped(eid).connect() as store:
        assert isinstance(store, PostgresStore)
        stores: tuple[Store, ...] = (store, model)
        first = running(eid, RUN_IDS[0], {"lr": 0.1, "opt": "adam"})
        for s in stores:
            s.put_run_record(first)
        assert catalog(store) == catalog(model)  # the first read computes it whole
        assert state(postgres_url, schema, eid) == (False, 0)

        finished = first.succeeded(metrics={"acc": 0.5, "n": 3}, finished_at=T0)
        other = running(eid, RUN_IDS[1], {"lr": 2, "depth": [1, 2]}).succeeded(
            metrics={"acc": "high"}, finished_at=T0
        )
        for s in (store, model):
            s.put_run_record(finished)  # running -> success: metrics added
            s.put_run_records([other])  # a batch
            s.put_derived(RUN_IDS[0], {"gain": 1.5})
            s.set_tags(RUN_IDS[1], add=["kept"])  # an edit changes no value
        dirty, logged = state(postgres_url, schema, eid)
        assert (dirty, logged >= 4) == (False, True)
        assert catalog(store) == catalog(model)
        assert state(postgres_url, schema, eid) == (False, 0)

        for s in stores:
            s.put_derived(RUN_IDS[0], {"gain": 2.5})  # a changed value
        assert state(postgres_url, schema, eid)[0] is False  # logged, not dirty
        assert catalog(store) == catalog(model)
        assert state(postgres_url, schema, eid) == (False, 0)

        live = running(eid, RUN_IDS[2], {"lr": 0.1})
        for s in (store, model):
            s.put_run_record(msgspec.structs.replace(live, metrics={"loss": 1.0}))
        assert catalog(store) == catalog(model)
        for s in (store, model):
            # A running run reports a new value: the old one is gone from the range.
            s.put_run_record(msgspec.structs.replace(live, metrics={"loss": 0.25}))
        assert state(postgres_url, schema, eid)[0] is False  # logged, not dirty
        assert catalog(store) == catalog(model)

        for s in (store, model):
            s.delete_run(RUN_IDS[1])
        assert state(postgres_url, schema, eid)[0] is True  # a delete: recomputed
        assert catalog(store) == catalog(model)
    model.close()


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "batch", "derived", "delete", "tag", "read"]),
        st.sampled_from(RUN_IDS),
        mst.query_records(),
        mst.query_derived(),
    ),
    min_size=1,
    max_size=10,
)


@settings(
    max_examples=60,
    deadline=None,
    # No "explain" phase: it traces every line of the store, minutes per failure.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=_OPS)
def test_the_catalog_after_any_writes_is_the_python_engines(
    postgres_config: PostgresStoreConfig,
    ops: list[tuple[str, str, RunRecord, dict[str, MetricValue]]],
) -> None:
    eid = f"ops{uuid.uuid4().hex[:10]}:1"
    # Run ids are unique across the experiments of a schema: each example has its own.
    prefix = uuid.uuid4().hex[:8]
    model = MemoryStoreConfig(name=f"m-{uuid.uuid4().hex}", experiment_id=eid).connect()
    with postgres_config.scoped(eid).connect() as store:
        assert isinstance(store, PostgresStore)
        for op, slot, drawn, derived in ops:
            run_id = prefix + slot[8:]
            record = msgspec.structs.replace(drawn, run_id=run_id, experiment_id=eid)
            outcomes: list[type[Exception] | None] = []
            for s in (store, model):
                try:
                    if op == "put":
                        s.put_run_record(record)
                    elif op == "batch":
                        s.put_run_records([record])
                    elif op == "derived":
                        s.put_derived(run_id, derived)
                    elif op == "delete":
                        s.delete_run(run_id)
                    elif op == "tag":
                        s.set_tags(run_id, add=["t"])
                    outcomes.append(None)
                except Exception as exc:  # noqa: BLE001 - both stores must refuse alike
                    outcomes.append(type(exc))
            assert outcomes[0] == outcomes[1], (op, outcomes)
            if op == "read":
                assert catalog(store) == catalog(model)
        assert catalog(store) == catalog(model)
    model.close()


@pytest.mark.parametrize("first_read", [True, False])
def test_a_new_experiment_is_computed_whole_at_its_first_read(
    postgres_config: PostgresStoreConfig, postgres_url: str, first_read: bool
) -> None:
    eid = f"new{uuid.uuid4().hex[:8]}:1"
    with postgres_config.scoped(eid).connect() as store:
        store.put_run_record(running(eid, RUN_IDS[0], {"a": 1}))
        assert state(postgres_url, postgres_config.schema, eid)[0] is True
        if first_read:
            assert [info.field for info in store.fields()] == ["params.a"]
        store.put_run_record(running(eid, RUN_IDS[1], {"b": "x"}))
        assert [info.field for info in store.fields()] == ["params.a", "params.b"]


def test_reads_racing_writers_miss_nothing(postgres_config: PostgresStoreConfig) -> None:
    eid = f"race{uuid.uuid4().hex[:8]}:1"
    model = MemoryStoreConfig(name=f"m-{uuid.uuid4().hex}", experiment_id=eid).connect()
    with postgres_config.scoped(eid).connect() as store:
        assert isinstance(store, PostgresStore)
        store.put_run_record(running(eid, f"{0:016x}", {"i": 0}))
        store.fields()  # current from here on: writes are logged and folded
        failures: list[BaseException] = []

        def write(offset: int) -> None:
            try:
                for i in range(offset, offset + 60, 3):
                    batch = [
                        running(eid, f"{j:016x}", {"i": j, f"k{j % 7}": j / 3})
                        for j in range(i, i + 3)
                    ]
                    store.put_run_records(batch)
                    finished = batch[0].succeeded(metrics={"m": i}, finished_at=T0)
                    store.put_run_record(finished)
                    store.put_derived(batch[1].run_id, {"d": i})
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        writers = [threading.Thread(target=write, args=(1 + 1000 * k,)) for k in range(2)]
        for writer in writers:
            writer.start()
        while any(w.is_alive() for w in writers):
            store.fields()
        for writer in writers:
            writer.join()
        assert not failures
        for record in store.list_run_records():
            model.put_run_record(record)
        for run_id, derived in store.list_derived().items():
            model.put_derived(run_id, derived.metrics)
        assert catalog(store) == catalog(model)
    model.close()


def test_samples_are_read_again_only_when_a_changed_run_is_among_the_first(
    postgres_config: PostgresStoreConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Samples come from the first runs by id: two here, so runs after them change
    # counts and ranges but no sample, and a run before them changes the samples.
    monkeypatch.setattr(catalog_module, "CATALOG_SAMPLE_RUNS", 2)
    monkeypatch.setattr(postgres_index, "CATALOG_SAMPLE_RUNS", 2)
    eid = f"samples{uuid.uuid4().hex[:8]}:1"
    prefix = uuid.uuid4().hex[:8]
    model = MemoryStoreConfig(name=f"m-{uuid.uuid4().hex}", experiment_id=eid).connect()
    with postgres_config.scoped(eid).connect() as store:
        for s in (store, model):
            for i in (5, 6, 7):
                s.put_run_record(running(eid, f"{prefix}{i:08x}", {"v": i}))
        assert catalog(store) == catalog(model)
        for s in (store, model):
            s.put_run_record(running(eid, f"{prefix}{9:08x}", {"v": 90, "w": "late"}))
        assert catalog(store) == catalog(model)
        for s in (store, model):
            s.put_run_record(running(eid, f"{prefix}{1:08x}", {"v": -1, "w": "early"}))
        assert catalog(store) == catalog(model)
    model.close()


def test_a_read_after_most_runs_changed_recomputes_the_catalog(
    postgres_config: PostgresStoreConfig, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_index, "_FOLD_ALWAYS", 1)
    eid = f"most{uuid.uuid4().hex[:8]}:1"
    prefix = uuid.uuid4().hex[:8]
    model = MemoryStoreConfig(name=f"m-{uuid.uuid4().hex}", experiment_id=eid).connect()
    with postgres_config.scoped(eid).connect() as store:
        runs = [running(eid, f"{prefix}{i:08x}", {"v": i}) for i in range(4)]
        for s in (store, model):
            s.put_run_records(runs)
        assert catalog(store) == catalog(model)
        for s in (store, model):  # 3 of 4 runs changed: more than a quarter
            s.put_run_records(
                [r.succeeded(metrics={"m": i}, finished_at=T0) for i, r in enumerate(runs[:3])]
            )
        assert state(postgres_url, postgres_config.schema, eid)[1] == 3
        assert catalog(store) == catalog(model)
        assert state(postgres_url, postgres_config.schema, eid) == (False, 0)
    model.close()
