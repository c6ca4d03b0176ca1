"""Resuming a sweep whose process was killed: only what is missing runs again."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import metalab
from metalab.errors import ExperimentNotFoundError

N_RUNS = 30

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import metalab

    MARKS = Path(sys.argv[2])

    @metalab.operation
    def slow(params, capture):
        with open(MARKS / str(params["i"]), "a") as f:
            f.write("ran\\n")
        time.sleep(0.05)
        capture.metric("i", params["i"])

    EXP = metalab.Experiment(
        name="resume", version="1", operation=slow,
        params=metalab.grid(i=list(range({n}))), seeds=metalab.seeds(base=5),
    )

    if __name__ == "__main__":
        metalab.run(EXP, store=sys.argv[1], progress=False).result()
    """
).format(n=N_RUNS)


def _experiment(marks: Path) -> metalab.Experiment:
    @metalab.operation
    def slow(params: dict[str, Any], capture: metalab.Capture) -> None:
        with (marks / str(params["i"])).open("a") as f:
            f.write("ran\n")
        capture.metric("i", params["i"])

    return metalab.Experiment(
        name="resume",
        version="1",
        operation=slow,
        params=metalab.grid(i=list(range(N_RUNS))),
        seeds=metalab.seeds(base=5),
    )


def _statuses(root: Path) -> dict[str, str]:
    try:
        results = metalab.load_results(str(root), experiment_id="resume:1")
    except ExperimentNotFoundError:
        return {}  # the sweep has not laid down its experiment directory yet
    return {r.run_id: r.status for r in results}


def _kill_mid_sweep(tmp_path: Path, root: Path, marks: Path) -> dict[str, str]:
    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(marks)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = list(_statuses(root).values()).count("success") if root.exists() else 0
            if done >= 5:
                break
            if proc.poll() is not None:
                raise AssertionError(f"the sweep ended before it was killed ({proc.returncode})")
            time.sleep(0.02)
        else:
            raise AssertionError("the sweep made no progress in 60 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return _statuses(root)


class TestResumeAfterKill:
    def test_rerunning_a_killed_sweep_runs_only_what_is_missing(self, tmp_path: Path) -> None:
        root, marks = tmp_path / "experiments", tmp_path / "marks"
        marks.mkdir()
        before = _kill_mid_sweep(tmp_path, root, marks)
        succeeded = {rid for rid, status in before.items() if status == "success"}
        assert 5 <= len(succeeded) < N_RUNS
        assert set(before.values()) <= {"success", "running"}

        handle = metalab.run(_experiment(marks), store=str(root), progress=False)
        results = handle.result(timeout=60)

        assert handle.skipped == len(succeeded)
        assert handle.done == N_RUNS - len(succeeded)
        assert len(results) == N_RUNS
        assert [r.status for r in results] == ["success"] * N_RUNS
        record_files = list((root / "resume_1" / "runs").glob("*.json"))
        assert sorted(p.stem for p in record_files) == sorted(results.run_ids)
        runs_per_i = {r.params["i"]: r.run_id for r in results}
        for i, run_id in runs_per_i.items():
            executions = (marks / str(i)).read_text().count("ran")
            if run_id in succeeded:
                assert executions == 1, f"run {i} succeeded before the kill but ran again"
            else:
                assert executions in (1, 2), f"run {i} ran {executions} times"

    def test_a_second_resume_has_nothing_left_to_do(self, tmp_path: Path) -> None:
        marks = tmp_path / "marks"
        marks.mkdir()
        exp = _experiment(marks)
        metalab.run(exp, store=str(tmp_path), progress=False).result()
        handle = metalab.run(exp, store=str(tmp_path), progress=False)
        handle.result()
        assert (handle.skipped, handle.done) == (N_RUNS, 0)
        assert all((marks / str(i)).read_text() == "ran\n" for i in range(N_RUNS))

    def test_resume_false_runs_everything_again(self, tmp_path: Path) -> None:
        marks = tmp_path / "marks"
        marks.mkdir()
        exp = _experiment(marks)
        metalab.run(exp, store=str(tmp_path), progress=False).result()
        handle = metalab.run(exp, store=str(tmp_path), resume=False, progress=False)
        assert len(handle.result()) == N_RUNS
        assert (handle.skipped, handle.done) == (0, N_RUNS)
        assert all((marks / str(i)).read_text() == "ran\nran\n" for i in range(N_RUNS))
