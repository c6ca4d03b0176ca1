"""End to end: ``metalab.run`` of ``n`` trivial runs, per-run overhead.

Each run of the experiment records one metric. Measured, alternating in every repeat
(each on a fresh store directory, created untimed):

- ``run().result()`` on a FileStore, sequentially (the default executor);
- the same with ``ProcessExecutor(max_workers=2)`` (worker start-up included);
- the same on an in-memory store, which isolates the runner from the filesystem;
- the physical anchor: the two atomic file writes a run needs at least (its
  ``running`` record and its final record), done bare, for the same number of runs.

The original metalab 0.1 measured 2.5 ms per run sequentially on this machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import metalab
from benchmarks._harness import Measurement, Report, time_repeats
from metalab import _codec
from metalab.records import RunRecord

SEQUENTIAL = "run() FileStore, sequential"
PROCESSES = "run() FileStore, 2 processes"
MEMORY = "run() memory://, sequential"
BARE = "bare 2 atomic writes per run"
NOTE = "original metalab 0.1: 2.5 ms/run sequential"

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


@metalab.operation
def trivial(params: dict[str, Any], capture: metalab.Capture) -> None:
    capture.metric("x", params["i"])


def _experiment(n: int) -> metalab.Experiment:
    return metalab.Experiment(
        name="e2e", version="1", operation=trivial, params=metalab.grid(i=range(n))
    )


def _bare_writes(directory: Path, n: int) -> None:
    runs = directory / "runs"
    runs.mkdir(parents=True)
    record = RunRecord.running(run_id="0" * 64, experiment_id="e2e:1", params={"i": 0})
    blobs = (_codec.RUN_RECORD.encode(record), _codec.RUN_RECORD.encode(record.succeeded()))
    for i in range(n):
        target = f"{runs}/{i:064x}.json"
        for data in blobs:
            tmp = f"{runs}/.{os.urandom(16).hex()}.partial"
            fd = os.open(tmp, _FLAGS, 0o666)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, target)  # noqa: PTH105 - the anchor is the bare syscall


def run(report: Report, *, n: int, repeat: int) -> None:
    """Measure ``n`` trivial runs per subject, ``repeat`` times, interleaved."""
    exp = _experiment(n)
    base = Path(tempfile.mkdtemp(prefix="metalab-bench-e2e-"))
    fresh: list[Path] = []

    def new_dir() -> None:
        fresh.append(Path(tempfile.mkdtemp(dir=base)))

    subjects: dict[str, Callable[[], object]] = {
        SEQUENTIAL: lambda: metalab.run(exp, store=fresh[-1], progress=False).result(),
        PROCESSES: lambda: metalab.run(
            exp, store=fresh[-1], executor=metalab.ProcessExecutor(2), progress=False
        ).result(),
        MEMORY: lambda: metalab.run(exp, store="memory://", progress=False).result(),
        BARE: lambda: _bare_writes(fresh[-1], n),
    }
    timings: dict[str, list[float]] = {name: [] for name in subjects}
    try:
        for _ in range(repeat):
            for name, fn in subjects.items():
                timings[name].extend(time_repeats(fn, repeat=1, setup=new_dir))
                shutil.rmtree(fresh.pop())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report.add(Measurement("e2e.run", BARE, n, tuple(timings[BARE])))
    for name in (SEQUENTIAL, PROCESSES, MEMORY):
        report.add(Measurement("e2e.run", name, n, tuple(timings[name]), notes=NOTE))
