"""The index's field catalog follows every kind of write, as the Python engine computes it.

Puts, batches, re-puts that add or change values, derived metrics, tag edits and
deletes, in any order, with reads in between: after each read the catalog is the one
a MemoryStore computes from the same records.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any, Final

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from metalab.query import FieldInfo
from metalab.records import MetricValue, RunRecord
from metalab.store import MemoryStoreConfig, PostgresStore, PostgresStoreConfig, Store
from metalab.testing import strategies as mst

T0: Final = dt.datetime(2026, 4, 5, tzinfo=dt.UTC)
RUN_IDS: Final = tuple(f"{i:016x}" for i in range(5))


def catalog(store: Any) -> list[tuple[Any, ...]]:
    found: list[FieldInfo] = store.fields()
    return [dataclasses.astuple(info) for info in found]


def running(experiment_id: str, run_id: str, params: dict[str, Any]) -> RunRecord:
    return RunRecord.running(
        run_id=run_id, experiment_id=experiment_id, params=params, started_at=T0
    )


def test_a_sweeps_writes_are_in_the_catalog_at_the_next_read(
    postgres_config: PostgresStoreConfig,
) -> None:
    eid = "merged:1"
    model = MemoryStoreConfig(name=f"m-{uuid.uuid4().hex}", experiment_id=eid).connect()
    with postgres_config.scoped(eid).connect() as store:
        assert isinstance(store, PostgresStore)
        stores: tuple[Store, ...] = (store, model)
        first = running(eid, RUN_IDS[0], {"lr": 0.1, "opt": "adam"})
        for s in stores:
            s.put_run_record(first)
        assert catalog(store) == catalog(model)

        finished = first.succeeded(metrics={"acc": 0.5, "n": 3}, finished_at=T0)
        other = running(eid, RUN_IDS[1], {"lr": 2, "depth": [1, 2]}).succeeded(
            metrics={"acc": "high"}, finished_at=T0
        )
        for s in (store, model):
            s.put_run_record(finished)  # running -> success: metrics added
            s.put_run_records([other])  # a batch
            s.put_derived(RUN_IDS[0], {"gain": 1.5})
            s.set_tags(RUN_IDS[1], add=["kept"])  # an edit changes no value
        assert catalog(store) == catalog(model)

        for s in stores:
            s.put_derived(RUN_IDS[0], {"gain": 2.5})  # a changed value
        assert catalog(store) == catalog(model)

        live = running(eid, RUN_IDS[2], {"lr": 0.1})
        for s in (store, model):
            s.put_run_record(msgspec.structs.replace(live, metrics={"loss": 1.0}))
        assert catalog(store) == catalog(model)
        for s in (store, model):
            # A running run reports a new value: the old one is gone from the range.
            s.put_run_record(msgspec.structs.replace(live, metrics={"loss": 0.25}))
        assert catalog(store) == catalog(model)

        for s in (store, model):
            s.delete_run(RUN_IDS[1])
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
def test_a_catalog_read_before_later_writes_shows_them(
    postgres_config: PostgresStoreConfig, first_read: bool
) -> None:
    eid = f"new{uuid.uuid4().hex[:8]}:1"
    with postgres_config.scoped(eid).connect() as store:
        store.put_run_record(running(eid, RUN_IDS[0], {"a": 1}))
        if first_read:
            assert [info.field for info in store.fields()] == ["params.a"]
        store.put_run_record(running(eid, RUN_IDS[1], {"b": "x"}))
        assert [info.field for info in store.fields()] == ["params.a", "params.b"]
