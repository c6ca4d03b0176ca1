"""Metric series: logging points in a training loop, and reading learning curves back.

``series.log``: ``capture.metric("loss", v, step=i)`` ``n`` times into a FileStore
(buffered; the background flush and the final flush included), against the bare
``list.append`` of the same ``(name, step, value, time.time())`` tuple.

``series.frame``: ``results.series_dataframe()`` of ``n`` points spread over
``n // 1000`` runs of 1,000 points each (one run when ``n`` < 1,000), against the
bare read of the same series files (``open`` + ``read``, no decoding).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import metalab
from benchmarks._harness import Measurement, Report, time_interleaved
from metalab.capture import Capture
from metalab.records import RunRecord
from metalab.series import SeriesPoint
from metalab.store import FileStoreConfig
from metalab.testing.store import new_run_id

_BARE_LOG = "bare list.append"
_BARE_READ = "bare read of the series files"
_PER_RUN = 1_000


def run(report: Report, *, n: int, repeat: int) -> None:
    """Time logging ``n`` points, and a frame of ``n`` points over several runs."""
    tmp = Path(tempfile.mkdtemp(prefix="metalab-bench-series-"))
    try:
        _log(report, n, repeat, tmp)
        _frame(report, n, repeat, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _log(report: Report, n: int, repeat: int, tmp: Path) -> None:
    store = FileStoreConfig(root=str(tmp / "log"), experiment_id="log:1").connect()

    def metalab_log() -> None:
        capture = Capture(store, new_run_id())
        for i in range(n):
            capture.metric("loss", 0.5, step=i)
        capture.close()

    def bare_log() -> None:
        points: list[tuple[str, int, float, float]] = []
        now = time.time
        for i in range(n):
            points.append(("loss", i, 0.5, now()))

    timings = time_interleaved({_BARE_LOG: bare_log, "metalab": metalab_log}, repeat=repeat)
    report.add(Measurement("series.log", _BARE_LOG, n, timings[_BARE_LOG]))
    report.add(
        Measurement(
            "series.log", "metalab", n, timings["metalab"], _BARE_LOG, "capture.metric(step=)"
        )
    )
    store.close()


def _frame(report: Report, n: int, repeat: int, tmp: Path) -> None:
    runs, per_run = (n // _PER_RUN, _PER_RUN) if n >= _PER_RUN else (1, n)
    root = tmp / "frame"
    experiment = "frame:1"
    with FileStoreConfig(root=str(root), experiment_id=experiment).connect() as store:
        start = time.time()
        for r in range(runs):
            record = RunRecord.running(
                run_id=new_run_id(), experiment_id=experiment, params={"lr": r / runs}
            )
            points = [SeriesPoint("loss", s, 1 / (s + 1), start + s) for s in range(per_run)]
            store.append_series(record.run_id, points)
            store.put_run_record(record.succeeded(metrics={"loss": points[-1].value}))
    files = sorted((root / "frame_1" / "series").glob("*.jsonl"))

    def bare_read() -> None:
        for path in files:
            with path.open("rb") as stream:
                stream.read()

    results = metalab.load_results(root, experiment)

    def metalab_frame() -> Any:
        return results.series_dataframe()

    metalab_frame()  # untimed: imports pandas
    timings = time_interleaved({_BARE_READ: bare_read, "metalab": metalab_frame}, repeat=repeat)
    report.add(Measurement("series.frame", _BARE_READ, n, timings[_BARE_READ]))
    report.add(
        Measurement(
            "series.frame",
            "metalab",
            n,
            timings["metalab"],
            _BARE_READ,
            f"{runs} run(s) x {per_run} points, series_dataframe()",
        )
    )
    results.close()
