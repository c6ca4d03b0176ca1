"""The worker processes of a ProcessExecutor: they die with their coordinator, and
the warnings they emit reach the caller of ``run()``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import metalab

ORPHAN_DEADLINE_SECONDS = 10.0

# The coordinator the orphan tests kill: a sweep over a slow run (which keeps one
# worker busy) and fast ones (after which the other worker waits idle for work).
COORDINATOR = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    import metalab

    marks = Path(sys.argv[1])

    @metalab.operation
    def work(params):
        i = params["i"]
        (marks / f"started-{i}-{os.getpid()}").touch()
        if i == 0:
            time.sleep(120)
        (marks / f"finished-{i}").touch()

    exp = metalab.Experiment(
        name="orphans", version="1", operation=work, params=metalab.grid(i=[0, 1, 2, 3])
    )
    executor = metalab.ProcessExecutor(max_workers=2)
    metalab.run(exp, store=sys.argv[2], executor=executor, progress=False).result()
    """
)


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, or ``None``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    return text[text.rindex(")") + 2 :].split()


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``, with their start times (to spot pid reuse)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found[int(entry.name)] = fields[19]
    return found


def _alive(processes: dict[int, str]) -> set[int]:
    """Those of ``processes`` that still run (a zombie is gone: it only awaits its reaper)."""
    alive = set()
    for pid, started in processes.items():
        fields = _stat(pid)
        if fields is not None and fields[19] == started and fields[0] != "Z":
            alive.add(pid)
    return alive


@dataclass(frozen=True)
class Sweep:
    """A coordinating process mid-sweep, and its worker processes with their start times."""

    coordinator: subprocess.Popen[bytes]
    marks: Path
    workers: dict[int, str]


@pytest.fixture
def sweep(tmp_path: Path) -> Iterator[Sweep]:
    """A sweep with one worker busy and one idle; what it leaves running is killed at the end."""
    marks = tmp_path / "marks"
    marks.mkdir()
    log = tmp_path / "coordinator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", COORDINATOR, str(marks), str(tmp_path / "store")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    workers: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 60
        while not (any(marks.glob("started-0-*")) and len(list(marks.glob("finished-*"))) == 3):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the sweep did not reach its slow run:\n{log.read_text()}")
            time.sleep(0.05)
        # Recorded now: once the coordinator is dead, its children are someone else's.
        workers = _children(proc.pid)
        yield Sweep(proc, marks, workers)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pid in _alive(workers):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(sys.platform != "linux", reason="finds the worker processes in /proc")
class TestOrphanedWorkers:
    def test_busy_and_idle_workers_exit_soon_after_their_coordinator_is_killed(
        self, sweep: Sweep
    ) -> None:
        ran_on = {int(mark.name.rsplit("-", 1)[1]) for mark in sweep.marks.glob("started-*")}
        assert len(sweep.workers) == 2
        assert ran_on <= set(sweep.workers)

        os.kill(sweep.coordinator.pid, signal.SIGKILL)
        sweep.coordinator.wait()
        deadline = time.monotonic() + ORPHAN_DEADLINE_SECONDS
        while _alive(sweep.workers) and time.monotonic() < deadline:
            time.sleep(0.1)

        assert _alive(sweep.workers) == set(), "worker processes outlived their coordinator"


class WorkerWarning(UserWarning):
    """Emitted by an operation in a worker process."""


@metalab.operation
def warns(params: dict[str, Any]) -> None:
    warnings.warn(f"run {params['i'] % 2} looks odd", WorkerWarning, stacklevel=1)


class TestWarningsOfWorkers:
    def test_a_warning_emitted_in_a_worker_reaches_the_caller_once_per_message(
        self, tmp_path: Path
    ) -> None:
        exp = metalab.Experiment(
            name="warns", version="1", operation=warns, params=metalab.grid(i=list(range(6)))
        )
        with pytest.warns(WorkerWarning) as caught:
            results = metalab.run(
                exp, store=str(tmp_path), executor=metalab.ProcessExecutor(2), progress=False
            ).result(timeout=60)

        assert [r.status for r in results] == ["success"] * 6
        assert {r.provenance.executor_id for r in results} == {"process"}
        ours = [w for w in caught if w.category is WorkerWarning]
        assert sorted(str(w.message) for w in ours) == ["run 0 looks odd", "run 1 looks odd"]
        assert {w.filename for w in ours} == {__file__}
