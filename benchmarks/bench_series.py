"""Metric series: logging points in a training loop, and reading learning curves back.

``series.log``: ``capture.metric("loss", v, step=i)`` ``n`` times into a FileStore
(buffered; the background flush and the final flush included), against the bare
``list.append`` of the same ``(name, step, value, time.time())`` tuple.

``series.frame``: ``results.series_dataframe()`` of ``n`` points spread over
``n // 1000`` runs of 1,000 points each (one run when ``n`` < 1,000), against the
bare read of the same series files (``open`` + ``read``, no decoding), with the
series snapshot that a sweep leaves (``FileStore.snapshot_series()``);
``series.frame_cold`` the same without it (every JSON line decoded).

``series.index_read``: ``store.get_series(run_id)`` of one run with 100,000 points
(or ``n``, if fewer) through a PostgresStore, answered by the index, against a bare
binary ``COPY ... TO STDOUT`` of the same rows (bytes only, nothing decoded).

``series.index_frame``: ``series_dataframe()`` of the ``series.frame`` sweep through a
PostgresStore, against a bare binary ``COPY ... TO STDOUT`` of the same rows.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import metalab
from benchmarks._harness import Measurement, Report, time_interleaved
from benchmarks._postgres import drop_schema, postgres_server, settings
from metalab.capture import Capture
from metalab.records import RunRecord
from metalab.series import SeriesPoint
from metalab.store import FileStoreConfig, PostgresStoreConfig, Store, SupportsSeries
from metalab.testing.store import new_run_id

_BARE_LOG = "bare list.append"
_BARE_READ = "bare read of the series files"
_BARE_COPY = "bare COPY TO STDOUT of the rows"
_PER_RUN = 1_000
_ONE_RUN = 100_000
_SCHEMA = "metalab_bench_series"


def run(report: Report, *, n: int, repeat: int) -> None:
    """Time logging ``n`` points, and a frame of ``n`` points over several runs."""
    tmp = Path(tempfile.mkdtemp(prefix="metalab-bench-series-"))
    try:
        _log(report, n, repeat, tmp)
        _frame(report, n, repeat, tmp)
        with postgres_server() as url:
            try:
                _index(report, n, repeat, tmp, url)
            finally:
                drop_schema(url, _SCHEMA)
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


def _sweep(store: Store, experiment: str, n: int) -> tuple[int, int]:
    """Write ``n`` points over runs of :data:`_PER_RUN` points; return (runs, per run)."""
    runs, per_run = (n // _PER_RUN, _PER_RUN) if n >= _PER_RUN else (1, n)
    assert isinstance(store, SupportsSeries)
    start = time.time()
    for r in range(runs):
        record = RunRecord.running(
            run_id=new_run_id(), experiment_id=experiment, params={"lr": r / runs}
        )
        points = [SeriesPoint("loss", s, 1 / (s + 1), start + s) for s in range(per_run)]
        store.append_series(record.run_id, points)
        store.put_run_record(record.succeeded(metrics={"loss": points[-1].value}))
    return runs, per_run


def _frame(report: Report, n: int, repeat: int, tmp: Path) -> None:
    root = tmp / "frame"
    experiment = "frame:1"
    with FileStoreConfig(root=str(root), experiment_id=experiment).connect() as store:
        runs, per_run = _sweep(store, experiment, n)
    files = sorted((root / "frame_1" / "series").glob("*.jsonl"))

    def bare_read() -> None:
        for path in files:
            with path.open("rb") as stream:
                stream.read()

    results = metalab.load_results(root, experiment)
    snapshot = root / "frame_1" / "series" / ".snapshot"

    def metalab_frame() -> Any:
        return results.series_dataframe()

    metalab_frame()  # untimed: imports pandas
    for operation, with_snapshot in (("series.frame_cold", False), ("series.frame", True)):
        if with_snapshot:
            with FileStoreConfig(root=str(root), experiment_id=experiment).connect() as store:
                store.snapshot_series()  # what a sweep leaves when it ends
        else:
            snapshot.unlink(missing_ok=True)
        timings = time_interleaved({_BARE_READ: bare_read, "metalab": metalab_frame}, repeat=repeat)
        report.add(Measurement(operation, _BARE_READ, n, timings[_BARE_READ]))
        how = "the series snapshot" if with_snapshot else "no snapshot: every line decoded"
        report.add(
            Measurement(
                operation,
                "metalab",
                n,
                timings["metalab"],
                _BARE_READ,
                f"{runs} run(s) x {per_run} points, series_dataframe(), {how}",
            )
        )
    results.close()


def _bare_copy(conn: psycopg.Connection[Any], run_ids: list[str]) -> Callable[[], int]:
    """A binary ``COPY`` of the series rows of ``run_ids`` on an open connection, as bytes."""
    statement = sql.SQL(
        "COPY (SELECT * FROM {t} WHERE run_id = ANY({ids})) TO STDOUT (FORMAT BINARY)"
    ).format(t=sql.Identifier(_SCHEMA, "series_chunks"), ids=sql.Literal(run_ids))

    def bare() -> int:
        size = 0
        with conn.cursor().copy(statement) as copy:
            for block in copy:
                size += len(block)
        return size

    return bare


def _index(report: Report, n: int, repeat: int, tmp: Path, url: str) -> None:
    experiment = "index:1"
    config = PostgresStoreConfig(
        connection_string=url, file_root=str(tmp / "index"), schema=_SCHEMA
    ).scoped(experiment)
    server = settings(url)
    with config.connect() as store, psycopg.connect(url, autocommit=True) as conn:
        # One long run, appended in flushes of 1,000 points as a training loop would.
        one = min(n, _ONE_RUN)
        long_run = new_run_id()
        start = time.time()
        for first in range(0, one, 1_000):
            points = [
                SeriesPoint("loss", s, 1 / (s + 1), start + s)
                for s in range(first, min(one, first + 1_000))
            ]
            store.append_series(long_run, points, restart=first == 0)
        bare = _bare_copy(conn, [long_run])
        timings = time_interleaved(
            {_BARE_COPY: bare, "metalab": lambda: store.get_series(long_run)}, repeat=repeat
        )
        report.add(
            Measurement("series.index_read", _BARE_COPY, one, timings[_BARE_COPY], notes=server)
        )
        report.add(
            Measurement(
                "series.index_read",
                "metalab",
                one,
                timings["metalab"],
                _BARE_COPY,
                f"get_series() of one run of {one} points",
            )
        )
        store.delete_run(long_run)
        runs, per_run = _sweep(store, experiment, n)
        results = metalab.load_results(store, experiment)
        ids = [run.run_id for run in results]
        bare = _bare_copy(conn, ids)
        results.series_dataframe()  # untimed: imports pandas
        timings = time_interleaved(
            {_BARE_COPY: bare, "metalab": results.series_dataframe}, repeat=repeat
        )
        report.add(
            Measurement("series.index_frame", _BARE_COPY, n, timings[_BARE_COPY], notes=server)
        )
        report.add(
            Measurement(
                "series.index_frame",
                "metalab",
                n,
                timings["metalab"],
                _BARE_COPY,
                f"{runs} run(s) x {per_run} points, series_dataframe() through PostgresStore",
            )
        )
