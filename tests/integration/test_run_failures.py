"""Failing operations, cancellation and waiting on a sweep."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import metalab
from metalab.errors import MetalabWarning

RELEASE = threading.Event()
STARTED = threading.Event()


@metalab.operation
def diverges_at_high_lr(params: dict[str, Any], capture: metalab.Capture) -> None:
    capture.metric("before_error", 1.0)
    if params["lr"] > 0.5:
        raise ValueError(f"diverged: lr {params['lr']} too high")
    capture.metric("score", 1.0 - params["lr"])


@metalab.operation
def waits_for_release(params: dict[str, Any], capture: metalab.Capture) -> None:
    STARTED.set()
    if not RELEASE.wait(timeout=30):
        raise TimeoutError("the test never released the operation")
    capture.metric("i", params["i"])


@metalab.operation
def stops_when_cancelled(runtime: metalab.Runtime, capture: metalab.Capture) -> None:
    STARTED.set()
    deadline = time.monotonic() + 30
    while not runtime.cancel_requested and time.monotonic() < deadline:
        time.sleep(0.01)
    capture.metric("saw_cancel", runtime.cancel_requested)


@metalab.operation
def exits(params: dict[str, Any]) -> None:
    if params["i"] == 1:
        raise SystemExit(3)


def _experiment(operation: metalab.Operation, **axes: list[Any]) -> metalab.Experiment:
    return metalab.Experiment(
        name="failures", version="1", operation=operation, params=metalab.grid(**axes)
    )


@pytest.fixture(autouse=True)
def _reset_events() -> None:
    RELEASE.clear()
    STARTED.clear()


class TestFailingOperations:
    @pytest.mark.parametrize(
        "executor",
        [metalab.ThreadExecutor(2), metalab.ProcessExecutor(2)],
        ids=["threads", "processes"],
    )
    def test_a_failing_run_is_recorded_and_the_others_still_run(
        self, tmp_path: Path, executor: metalab.Executor
    ) -> None:
        exp = _experiment(diverges_at_high_lr, lr=[0.1, 0.9, 0.2, 0.95])
        handle = metalab.run(exp, store=str(tmp_path), executor=executor, progress=False)
        results = handle.result(timeout=60)
        assert (handle.done, handle.failed) == (2, 2)
        assert len(results.successful) == 2
        failed = results.failed
        assert sorted(r.params["lr"] for r in failed) == [0.9, 0.95]  # type: ignore[type-var]
        for run in failed:
            assert run.error is not None
            assert run.error.type == "ValueError"
            assert run.error.message == f"diverged: lr {run.params['lr']} too high"
            assert "Traceback" in run.error.traceback
            assert "diverges_at_high_lr" in run.error.traceback
            assert run.metrics == {"before_error": 1.0}
            assert run.finished_at is not None

    def test_failed_runs_run_again_on_resume(self, tmp_path: Path) -> None:
        exp = _experiment(diverges_at_high_lr, lr=[0.1, 0.9])
        metalab.run(exp, store=str(tmp_path), progress=False).result()
        again = metalab.run(exp, store=str(tmp_path), progress=False)
        again.result()
        assert (again.skipped, again.failed, again.done) == (1, 1, 0)

    def test_a_base_exception_is_recorded_as_cancelled_and_raised_by_result(
        self, tmp_path: Path
    ) -> None:
        exp = _experiment(exits, i=[0, 1, 2])
        handle = metalab.run(exp, store=str(tmp_path), progress=False)
        with pytest.raises(SystemExit):
            handle.result(timeout=30)
        statuses = {r.params["i"]: r.status for r in metalab.load_results(handle.store).records}
        assert statuses[0] == "success"
        assert statuses[1] == "cancelled"


class TestCancel:
    def test_cancel_lets_the_running_run_finish_and_records_the_rest_as_cancelled(
        self, tmp_path: Path
    ) -> None:
        exp = _experiment(waits_for_release, i=list(range(12)))
        handle = metalab.run(exp, store=str(tmp_path), progress=False)
        assert STARTED.wait(timeout=30)
        handle.cancel()
        RELEASE.set()
        results = handle.result(timeout=30)
        statuses = [r.status for r in results]
        assert statuses.count("success") == 1
        assert statuses.count("cancelled") == 11
        assert (handle.done, handle.cancelled, handle.counts.pending) == (1, 11, 0)
        assert all(r.finished_at is not None for r in results)

    def test_cancelled_runs_run_on_resume(self, tmp_path: Path) -> None:
        exp = _experiment(waits_for_release, i=list(range(5)))
        handle = metalab.run(exp, store=str(tmp_path), progress=False)
        assert STARTED.wait(timeout=30)
        handle.cancel()
        RELEASE.set()
        handle.result(timeout=30)
        again = metalab.run(exp, store=str(tmp_path), progress=False)
        results = again.result(timeout=30)
        assert (again.skipped, again.done) == (1, 4)
        assert [r.status for r in results] == ["success"] * 5

    def test_a_running_operation_can_see_the_cancel(self, tmp_path: Path) -> None:
        exp = _experiment(stops_when_cancelled, i=[0, 1, 2])
        handle = metalab.run(exp, store=str(tmp_path), progress=False)
        assert STARTED.wait(timeout=30)
        handle.cancel()
        results = handle.result(timeout=30)
        first = results.successful
        assert len(first) == 1
        assert first[0].metrics == {"saw_cancel": True}
        assert len(results.filter(status="cancelled")) == 2

    def test_leaving_the_with_block_on_an_error_cancels(self, tmp_path: Path) -> None:
        exp = _experiment(waits_for_release, i=list(range(4)))
        handle = metalab.run(exp, store=str(tmp_path), progress=False)
        with pytest.raises(KeyError), handle:
            _fail_after_the_first_run_started()
        assert handle.is_finished
        assert (handle.done, handle.cancelled) == (1, 3)


def _fail_after_the_first_run_started() -> None:
    assert STARTED.wait(timeout=30)
    # Released only after the with block has cancelled (immediately, on the error).
    threading.Timer(0.3, RELEASE.set).start()
    raise KeyError("user error")


class TestWaiting:
    def test_result_times_out_while_runs_are_going(self, tmp_path: Path) -> None:
        exp = _experiment(waits_for_release, i=[0])
        handle = metalab.run(exp, store=str(tmp_path), progress=False)
        with pytest.raises(TimeoutError, match="still running"):
            handle.result(timeout=0.05)
        assert not handle.is_finished
        RELEASE.set()
        assert len(handle.result(timeout=30)) == 1
        assert handle.wait(0)

    def test_counts_are_live(self, tmp_path: Path) -> None:
        exp = _experiment(waits_for_release, i=[0, 1])
        handle = metalab.run(exp, store=str(tmp_path), progress=False)
        assert STARTED.wait(timeout=30)
        assert handle.counts.finished == 0
        assert handle.counts.pending == 2
        assert "running" in repr(handle)
        RELEASE.set()
        handle.result(timeout=30)
        assert handle.counts.finished == 2
        assert "finished" in repr(handle)

    def test_records_lost_to_a_per_process_store_are_reported(self) -> None:
        exp = _experiment(diverges_at_high_lr, lr=[0.1, 0.2])
        handle = metalab.run(
            exp, store="memory://", executor=metalab.ProcessExecutor(1), progress=False
        )
        with pytest.warns(MetalabWarning, match="share the store"):
            results = handle.result(timeout=60)
        assert len(results) == 0
