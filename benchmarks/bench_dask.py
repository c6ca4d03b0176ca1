"""Sweeps on a Dask LocalCluster next to the process pool, on the same machine, in the same run.

``run().result()`` of ``n`` runs, for each executor on a fresh store, alternating in every
repeat, with two kinds of run:

- **trivial** runs (one metric each), where the hand-off to the workers is all there is;
- **10 ms CPU** runs, which spin until their thread has used 10 ms of CPU time
  (``time.thread_time()``) and then log one metric. Busy CPU rather than
  ``time.sleep``: on a 2-core machine the coordinating process, Dask's scheduler and
  the workers compete for the same cores, and sleeping runs would hide that cost.
  Counting CPU time, not wall time, keeps the work of a run the same when the
  machine is shared.

Each kind is timed for:

- ``ProcessExecutor(2)`` (worker start-up included, as in the e2e suite);
- ``DaskExecutor`` on a ``LocalCluster`` of 2 single-threaded worker processes. The
  cluster is long-lived infrastructure: it is started once, untimed (its start-up
  time is in the notes), and warmed with one small sweep so that its workers have
  imported metalab;

into a FileStore, and into a PostgresStore (``$METALAB_BENCH_POSTGRES_URL`` or an
embedded ``pgserver``, a fresh schema per sweep). Reported: runs per second; for the
PostgresStore, the **index lag** of each run, ``indexed_at - finished_at`` (when its
final record reached the index, by the server's ``clock_timestamp()``, minus when the
run finished, by the worker's clock: one machine, one clock), as its median, 95th
percentile and maximum over the runs of a sweep; and the peak number of database
connections during the sweep (``pg_stat_activity``, sampled every 20 ms). With the
process pool each worker process opens its own pool of connections and indexes its
runs one by one; with Dask the workers write files only and the coordinating process
indexes them in bulk.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from distributed import Client, LocalCluster
from psycopg import sql

import metalab
from benchmarks._harness import Measurement, Report
from benchmarks._postgres import drop_schema, postgres_server, settings
from metalab.store import PostgresStoreConfig

PROCESS = "ProcessExecutor(2)"
DASK = "DaskExecutor, LocalCluster 2x1"
SCHEMA = "metalab_bench_dask"
_SAMPLE_SECONDS = 0.02


#: CPU seconds that each run of the ``cpu`` workload spins for.
RUN_CPU_SECONDS = 0.01


@metalab.operation
def trivial(params: dict[str, Any], capture: metalab.Capture) -> None:
    capture.metric("x", params["i"])


@metalab.operation
def cpu_bound(params: dict[str, Any], capture: metalab.Capture) -> None:
    """Spin until this thread has used :data:`RUN_CPU_SECONDS` of CPU, then log a metric."""
    deadline = time.thread_time() + RUN_CPU_SECONDS
    spins = 0
    while time.thread_time() < deadline:
        spins += 1
    capture.metric("x", params["i"])
    capture.metric("spins", spins)


@dataclass(frozen=True)
class _Workload:
    """A kind of run: the operation, and the suffix of its measurements' names."""

    operation: metalab.Operation
    suffix: str


WORKLOADS = (
    _Workload(trivial, ""),
    _Workload(cpu_bound, f", {RUN_CPU_SECONDS * 1000:.0f} ms CPU runs"),
)


def _experiment(n: int, operation: metalab.Operation) -> metalab.Experiment:
    return metalab.Experiment(
        name=f"dask_bench_{operation.name}",
        version="1",
        operation=operation,
        params=metalab.grid(i=range(n)),
    )


class _ConnectionSampler:
    """Samples the number of client connections to the database in a thread."""

    def __init__(self, url: str) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        while not self._stop.is_set():
            row = self._conn.execute(query).fetchone()
            self.peak = max(self.peak, 0 if row is None else int(row[0]))
            self._stop.wait(_SAMPLE_SECONDS)

    def close(self) -> int:
        self._stop.set()
        self._thread.join()
        self._conn.close()
        return self.peak


def _lags(url: str, schema: str) -> list[float]:
    """``indexed_at - finished_at`` of every finished run, in seconds."""
    query = sql.SQL(
        "SELECT extract(epoch FROM indexed_at - finished_at)::float8 FROM {} "
        "WHERE finished_at IS NOT NULL"
    ).format(sql.Identifier(schema, "runs"))
    with psycopg.connect(url) as conn:
        return [float(row[0]) for row in conn.execute(query).fetchall()]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def _cluster() -> Iterator[tuple[Client, float]]:
    began = time.perf_counter()
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client, time.perf_counter() - began


def run(report: Report, *, n: int, repeat: int) -> None:
    """Time ``n`` runs of each workload per executor and store, ``repeat`` times, interleaved."""
    base = Path(tempfile.mkdtemp(prefix="metalab-bench-dask-"))
    try:
        with postgres_server() as url, _cluster() as (client, startup):
            executors: dict[str, Callable[[], metalab.Executor]] = {
                PROCESS: lambda: metalab.ProcessExecutor(2),
                DASK: lambda: metalab.DaskExecutor(client),
            }
            _sweep(_experiment(50, trivial), base / "warm-up", executors[DASK]())
            server = settings(url)
            notes = {
                PROCESS: "",
                DASK: f"cluster start-up {startup:.1f} s (untimed)",
            }
            for workload in WORKLOADS:
                _measure(report, workload, n, repeat, url, base, executors, notes, server)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _measure(
    report: Report,
    workload: _Workload,
    n: int,
    repeat: int,
    url: str,
    base: Path,
    executors: dict[str, Callable[[], metalab.Executor]],
    notes: dict[str, str],
    server: str,
) -> None:
    """Time one workload on every executor and store; add the measurements to ``report``."""
    exp = _experiment(n, workload.operation)
    seconds: dict[tuple[str, str], list[float]] = {}
    lag_stats: dict[str, list[tuple[float, float, float]]] = {name: [] for name in executors}
    peaks: dict[str, list[int]] = {name: [] for name in executors}
    for index in range(repeat):
        for position, (name, make) in enumerate(executors.items()):
            directory = base / f"{workload.operation.name}-{index}-{position}"
            elapsed = _sweep(exp, directory, make())
            seconds.setdefault(("FileStore", name), []).append(elapsed)
            shutil.rmtree(directory)

            schema = f"{SCHEMA}_{index}"
            config = PostgresStoreConfig(
                connection_string=url, file_root=str(directory), schema=schema
            )
            sampler = _ConnectionSampler(url)
            try:
                elapsed = _sweep(exp, config, make())
            finally:
                peaks[name].append(sampler.close())
            seconds.setdefault(("PostgresStore", name), []).append(elapsed)
            lags = _lags(url, schema)
            lag_stats[name].append((statistics.median(lags), _percentile(lags, 0.95), max(lags)))
            drop_schema(url, schema)
            shutil.rmtree(directory)
    for store in ("FileStore", "PostgresStore"):
        for name in executors:
            note = notes[name]
            if store == "PostgresStore":
                note = "; ".join(
                    filter(None, [note, f"peak DB connections {max(peaks[name])}", server])
                )
            report.add(
                Measurement(
                    f"dask.sweep {store}{workload.suffix}",
                    name,
                    n,
                    tuple(seconds[store, name]),
                    baseline=PROCESS if name == DASK else None,
                    notes=note,
                )
            )
    for position, label in enumerate(("p50", "p95", "max")):
        for name in executors:
            report.add(
                Measurement(
                    f"dask.index_lag_{label}{workload.suffix} (s per run, not per n)",
                    name,
                    1,
                    tuple(stats[position] for stats in lag_stats[name]),
                    notes="indexed_at - finished_at of each run, PostgresStore",
                )
            )
    print(_summary(n, workload, seconds, lag_stats, peaks), file=sys.stderr, flush=True)


def _sweep(
    exp: metalab.Experiment, store: Path | PostgresStoreConfig, executor: metalab.Executor
) -> float:
    """Seconds that ``run(...).result()`` takes."""
    began = time.perf_counter()
    with metalab.run(exp, store=store, executor=executor, progress=False) as handle:
        handle.result()
    return time.perf_counter() - began


def _summary(
    n: int,
    workload: _Workload,
    seconds: dict[tuple[str, str], list[float]],
    lag_stats: dict[str, list[tuple[float, float, float]]],
    peaks: dict[str, list[int]],
) -> str:
    lines = [
        "",
        (
            f"| executor ({n:,} runs{workload.suffix or ', trivial'}) | FileStore runs/s | PostgresStore runs/s | "
            "index lag p50 / p95 / max | peak DB connections |"
        ),
        "|---|---:|---:|---|---:|",
    ]
    for name in (PROCESS, DASK):
        file_rate = n / statistics.median(seconds["FileStore", name])
        pg_rate = n / statistics.median(seconds["PostgresStore", name])
        p50, p95, worst = (statistics.median(s[i] for s in lag_stats[name]) for i in range(3))
        lines.append(
            f"| {name} | {file_rate:,.0f} | {pg_rate:,.0f} | "
            f"{p50 * 1000:.0f} / {p95 * 1000:.0f} / {worst * 1000:.0f} ms | {max(peaks[name])} |"
        )
    return "\n".join(lines)
