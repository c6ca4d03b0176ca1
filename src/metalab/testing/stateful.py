"""A hypothesis state machine that checks any store against a plain dict model.

Random sequences of puts (running and finished records, in one call or in bulk),
derived metrics, artifacts and deletes are applied both to a real store and to a
model made of dicts that encodes the store contract; after every step the store
must agree with the model, and no finished run may have gone back to ``running``::

    from hypothesis.stateful import run_state_machine_as_test

    def test_my_store_matches_the_model(tmp_path):
        machine = store_state_machine(
            lambda eid: MyStoreConfig(root=str(tmp_path / uuid4().hex), experiment_id=eid).connect()
        )
        run_state_machine_as_test(machine)
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Final

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from metalab.records import DerivedMetrics, MetricValue, RunRecord, Status
from metalab.store.abc import Store, SupportsBulkPut, SupportsDelete
from metalab.testing import assert_same_document, comparable
from metalab.testing import strategies as mst

__all__ = ["store_state_machine"]

# A few runs, so that puts, overwrites and deletes keep meeting each other.
RUN_IDS: Final = tuple(hashlib.sha256(str(i).encode()).hexdigest() for i in range(4))
ARTIFACT_NAMES: Final = ("model", "plot")
T0: Final = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

_run_ids = st.sampled_from(RUN_IDS)
_statuses: st.SearchStrategy[Status] = st.sampled_from(
    ["running", "success", "failed", "cancelled"]
)
_metrics = st.dictionaries(
    st.sampled_from(["loss", "acc", "name"]), mst.metric_values(), max_size=3
)


def _record(
    experiment_id: str, run_id: str, status: Status, metrics: dict[str, MetricValue]
) -> RunRecord:
    finished = status != "running"
    return RunRecord(
        run_id=run_id,
        experiment_id=experiment_id,
        status=status,
        started_at=T0,
        finished_at=T0 + dt.timedelta(seconds=1) if finished else None,
        duration_ms=1000.0 if finished else None,
        metrics=metrics,
    )


def store_state_machine(
    connect: Callable[[str], Store], *, experiment_id: str = "stateful:1.0"
) -> type[RuleBasedStateMachine]:
    """Return a state machine class that tests stores made by ``connect``.

    Run it with ``hypothesis.stateful.run_state_machine_as_test`` or expose its
    ``TestCase`` attribute to pytest. Bulk puts and deletes are exercised only when
    the store implements ``SupportsBulkPut`` / ``SupportsDelete``.

    Args:
        connect: Called once per test case with ``experiment_id``; returns a fresh,
            empty store scoped to it (the machine closes it at the end).
        experiment_id: The experiment every record belongs to.
    """

    class StoreStateMachine(RuleBasedStateMachine):
        """A store next to a dict model of what it must hold."""

        def __init__(self) -> None:
            super().__init__()
            self.store = connect(experiment_id)
            self.records: dict[str, RunRecord] = {}
            self.derived: dict[str, DerivedMetrics] = {}
            self.artifacts: dict[str, dict[str, bytes]] = {}
            # Runs that have been finished since they were last deleted, kept apart
            # from the model so that the rule is checked independently of it.
            self.finished: set[str] = set()

        def _model_put(self, record: RunRecord) -> None:
            stored = self.records.get(record.run_id)
            if record.status == "running" and stored is not None and stored.is_finished:
                return
            self.records[record.run_id] = record
            if record.is_finished:
                self.finished.add(record.run_id)

        @rule(run_id=_run_ids, status=_statuses, metrics=_metrics)
        def put_record(self, run_id: str, status: Status, metrics: dict[str, MetricValue]) -> None:
            record = _record(experiment_id, run_id, status, metrics)
            self.store.put_run_record(record)
            self._model_put(record)

        @precondition(lambda self: isinstance(self.store, SupportsBulkPut))
        @rule(batch=st.lists(st.tuples(_run_ids, _statuses, _metrics), min_size=1, max_size=6))
        def put_records_in_bulk(
            self, batch: list[tuple[str, Status, dict[str, MetricValue]]]
        ) -> None:
            assert isinstance(self.store, SupportsBulkPut)
            records = [_record(experiment_id, *item) for item in batch]
            assert self.store.put_run_records(records) == len(records)
            for record in records:
                self._model_put(record)

        @rule(run_id=_run_ids, metrics=_metrics)
        def put_derived(self, run_id: str, metrics: dict[str, MetricValue]) -> None:
            self.store.put_derived(run_id, metrics)
            self.derived[run_id] = DerivedMetrics(metrics=metrics)

        @rule(run_id=_run_ids, name=st.sampled_from(ARTIFACT_NAMES), data=st.binary(max_size=64))
        def put_artifact(self, run_id: str, name: str, data: bytes) -> None:
            descriptor = self.store.put_artifact(run_id, name, data)
            assert descriptor.content_hash == hashlib.sha256(data).hexdigest()
            assert descriptor.size_bytes == len(data)
            self.artifacts.setdefault(run_id, {})[name] = data

        @precondition(lambda self: isinstance(self.store, SupportsDelete))
        @rule(run_id=_run_ids)
        def delete_run(self, run_id: str) -> None:
            assert isinstance(self.store, SupportsDelete)
            had = (
                run_id in self.records or run_id in self.derived or bool(self.artifacts.get(run_id))
            )
            assert self.store.delete_run(run_id) is had
            self.records.pop(run_id, None)
            self.derived.pop(run_id, None)
            self.artifacts.pop(run_id, None)
            self.finished.discard(run_id)

        @invariant()
        def records_match_the_model(self) -> None:
            listed = {r.run_id: r for r in self.store.list_run_records()}
            assert comparable(listed) == comparable(self.records)
            for run_id in RUN_IDS:
                assert self.store.run_exists(run_id) is (run_id in self.records)
                assert_same_document(self.store.get_run_record(run_id), self.records.get(run_id))

        @invariant()
        def derived_metrics_match_the_model(self) -> None:
            for run_id in RUN_IDS:
                assert self.store.derived_exists(run_id) is (run_id in self.derived)
                assert_same_document(self.store.get_derived(run_id), self.derived.get(run_id))

        @invariant()
        def artifacts_match_the_model(self) -> None:
            for run_id in RUN_IDS:
                expected = self.artifacts.get(run_id, {})
                listed = self.store.list_artifacts(run_id)
                assert sorted(a.name for a in listed) == sorted(expected)
                for name, data in expected.items():
                    assert self.store.get_artifact(run_id, name) == data

        @invariant()
        def no_finished_run_is_running_again(self) -> None:
            for run_id in self.finished:
                stored = self.store.get_run_record(run_id)
                assert stored is not None
                assert stored.is_finished

        def teardown(self) -> None:
            self.store.close()

    return StoreStateMachine
