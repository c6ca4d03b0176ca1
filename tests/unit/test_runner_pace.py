"""How the runner sizes the batches it hands to an executor."""

from __future__ import annotations

import pickle

import pytest

from metalab.executors import BatchOutcome
from metalab.runner import _BATCH_SECONDS, _MAX_BATCH, _Pace

# Wall time of a sweep far longer than its work: what a slow hand-off looks like.
SLOW_HAND_OFF = 100.0


class TestBatchSizes:
    def test_one_run_per_batch_until_a_batch_comes_back(self) -> None:
        assert _Pace(workers=2).batch_size(1000, elapsed=0.0) == 1
        assert _Pace(workers=2).batch_size(1000, elapsed=SLOW_HAND_OFF) == 1

    def test_batches_hold_about_batch_seconds_of_work_whatever_the_wall_time(self) -> None:
        pace = _Pace(workers=2)
        pace.add(BatchOutcome(("success", "failed"), seconds=2 * _BATCH_SECONDS / 20.5))
        assert pace.batch_size(1000, elapsed=SLOW_HAND_OFF) == 20

    def test_the_work_time_is_averaged_over_every_run_that_came_back(self) -> None:
        pace = _Pace(workers=1)
        pace.add(BatchOutcome(("success",), seconds=_BATCH_SECONDS * 0.6))
        pace.add(BatchOutcome(("success",) * 9, seconds=_BATCH_SECONDS * 0.36))
        # 10 runs in 0.96 batch-times: not 1 (the first batch) nor 25 (the second).
        assert pace.batch_size(1000, elapsed=SLOW_HAND_OFF) == 10

    def test_an_executor_can_ask_for_longer_batches(self) -> None:
        pace = _Pace(workers=1, batch_seconds=4 * _BATCH_SECONDS)
        pace.add(BatchOutcome(("success",), seconds=_BATCH_SECONDS / 2.5))
        # 2 runs by default; 4 times the work, 4 times the runs.
        assert pace.batch_size(1000, elapsed=SLOW_HAND_OFF) == 10

    def test_runs_that_never_started_do_not_count(self) -> None:
        pace = _Pace(workers=1)
        pace.add(BatchOutcome(("success", None, None, None), seconds=_BATCH_SECONDS / 5.5))
        assert pace.batch_size(1000, elapsed=SLOW_HAND_OFF) == 5

    def test_a_batch_holds_at_least_one_run_however_long_runs_take(self) -> None:
        pace = _Pace(workers=1)
        pace.add(BatchOutcome(("success",), seconds=60.0))
        assert pace.batch_size(1000, elapsed=60.0) == 1

    def test_a_batch_holds_at_most_the_maximum_however_short_runs_are(self) -> None:
        pace = _Pace(workers=1)
        pace.add(BatchOutcome(("success",) * 10, seconds=1e-9))
        assert pace.batch_size(10_000, elapsed=SLOW_HAND_OFF) == _MAX_BATCH

    @pytest.mark.parametrize(
        ("remaining", "workers", "expected"), [(10, 2, 5), (9, 2, 5), (3, 4, 1), (1, 1, 1)]
    )
    def test_the_last_runs_are_shared_out_over_the_workers(
        self, remaining: int, workers: int, expected: int
    ) -> None:
        pace = _Pace(workers=workers)
        pace.add(BatchOutcome(("success",), seconds=1e-6))
        assert pace.batch_size(remaining, elapsed=SLOW_HAND_OFF) == expected

    def test_without_a_measured_work_time_the_wall_time_per_run_stands_in(self) -> None:
        pace = _Pace(workers=2)
        pace.add(BatchOutcome(("success",) * 4))  # a custom executor that does not time runs
        # 2 workers ran 4 runs in elapsed seconds: elapsed / 2 seconds per run.
        assert pace.batch_size(1000, elapsed=_BATCH_SECONDS * 2) == 1
        assert pace.batch_size(1000, elapsed=2 * _BATCH_SECONDS / 11.5) == 11

    def test_measured_batches_outweigh_unmeasured_ones(self) -> None:
        pace = _Pace(workers=1)
        pace.add(BatchOutcome(("success",) * 4))
        pace.add(BatchOutcome(("success",), seconds=_BATCH_SECONDS / 8.5))
        assert pace.batch_size(1000, elapsed=SLOW_HAND_OFF) == 8


class TestBatchOutcome:
    def test_a_batch_that_never_started_reports_none_for_each_task_and_no_time(self) -> None:
        assert BatchOutcome.not_started(3) == BatchOutcome((None, None, None), 0.0)

    def test_an_outcome_survives_pickling_as_workers_send_it_back(self) -> None:
        outcome = BatchOutcome(("success", "failed", None), seconds=0.25)
        assert pickle.loads(pickle.dumps(outcome)) == outcome

    def test_an_outcome_is_immutable(self) -> None:
        outcome = BatchOutcome(("success",), seconds=0.25)
        with pytest.raises(AttributeError):
            outcome.seconds = 1.0  # type: ignore[misc]
