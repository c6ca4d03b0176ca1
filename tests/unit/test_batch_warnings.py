"""Warnings that runs emit in a worker, recorded to travel back with their batch."""

from __future__ import annotations

import pickle
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import metalab
from metalab.executors import BatchOutcome, RecordedWarning, RunJob, RunTask, execute_batch
from metalab.store import MemoryStoreConfig, Store

EXPERIMENT_ID = "warns:1"


class OddWarning(UserWarning):
    """Emitted by the operation below."""


@metalab.operation
def warns(params: dict[str, Any]) -> None:
    warnings.warn(f"odd {params['i'] % 2}", OddWarning, stacklevel=1)


JOB = RunJob(
    experiment_id=EXPERIMENT_ID,
    operation=warns,
    context={},
    context_fingerprint="",
    seed_base=0,
)
TASKS = [RunTask(f"{i:064x}", {"i": i}, "", 0, "") for i in range(4)]


@pytest.fixture
def store() -> Iterator[Store]:
    with MemoryStoreConfig(experiment_id=EXPERIMENT_ID).connect() as connected:
        yield connected


class TestRecordedWarning:
    def test_it_names_the_class_and_each_warning_base(self) -> None:
        recorded = RecordedWarning.from_warning(OddWarning("odd"), OddWarning, "op.py", 3)
        assert recorded.message == "odd"
        assert recorded.categories == (
            f"{__name__}:OddWarning",
            "builtins:UserWarning",
            "builtins:Warning",
        )
        assert recorded.resolve_category() is OddWarning

    def test_a_class_this_process_has_not_imported_falls_back_to_its_nearest_base(self) -> None:
        recorded = RecordedWarning(
            "odd", ("not_imported_anywhere:OddWarning", "builtins:RuntimeWarning"), "op.py", 3
        )
        assert recorded.resolve_category() is RuntimeWarning
        assert RecordedWarning("odd", ("gone:Gone",), "op.py", 3).resolve_category() is Warning

    def test_an_outcome_carries_its_warnings_through_pickling(self) -> None:
        recorded = RecordedWarning.from_warning("odd", UserWarning, "op.py", 3)
        outcome = BatchOutcome(("success",), 0.5, (recorded,))
        assert pickle.loads(pickle.dumps(outcome)) == outcome


class TestExecuteBatchRecordingWarnings:
    def test_recorded_warnings_are_returned_once_each_instead_of_shown(self, store: Store) -> None:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            outcome = execute_batch(JOB, store, TASKS, executor_id="test", record_warnings=True)
        assert shown == []
        assert outcome.statuses == ("success",) * 4
        assert [(w.message, w.resolve_category()) for w in outcome.warnings] == [
            ("odd 0", OddWarning),
            ("odd 1", OddWarning),
        ]
        assert {w.filename for w in outcome.warnings} == {__file__}

    def test_without_recording_warnings_are_shown_where_the_runs_execute(
        self, store: Store
    ) -> None:
        with pytest.warns(OddWarning):
            outcome = execute_batch(JOB, store, TASKS, executor_id="test")
        assert outcome.warnings == ()

    def test_the_filters_still_decide_what_is_recorded(self, store: Store) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OddWarning)
            outcome = execute_batch(JOB, store, TASKS, executor_id="test", record_warnings=True)
        assert outcome.warnings == ()

    def test_only_the_thread_running_the_batch_is_recorded(self, store: Store) -> None:
        recording = threading.Event()
        other_done = threading.Event()

        @metalab.operation
        def waits_for_the_other_thread() -> None:
            recording.set()
            assert other_done.wait(10)

        def other_thread() -> None:
            assert recording.wait(10)
            warnings.warn("from elsewhere", OddWarning, stacklevel=1)
            other_done.set()

        job = RunJob(
            experiment_id=EXPERIMENT_ID,
            operation=waits_for_the_other_thread,
            context={},
            context_fingerprint="",
            seed_base=0,
        )
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            thread = threading.Thread(target=other_thread)
            thread.start()
            outcome = execute_batch(job, store, TASKS[:1], executor_id="test", record_warnings=True)
            thread.join()
        assert outcome.warnings == ()
        assert [str(w.message) for w in shown] == ["from elsewhere"]
