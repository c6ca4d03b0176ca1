"""Sweeps on a Dask LocalCluster next to the process pool, on the same machine, in the same run.

``run().result()`` of ``n`` trivial runs (one metric each), for each executor on a fresh
store, alternating in every repeat:

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


@metalab.operation
def trivial(params: dict[str, Any], capture: metalab.Capture) -> None:
    capture.metric("x", params["i"])


def _experiment(n: int) -> metalab.Experiment:
    return metalab.Experiment(
        name="dask_bench", version="1", operation=trivial, params=metalab.grid(i=range(n))
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
    """Time ``n`` trivial runs per executor and store, ``repeat`` times, interleaved."""
    exp = _experiment(n)
    base = Path(tempfile.mkdtemp(prefix="metalab-bench-dask-"))
    seconds: dict[tuple[str, str], list[float]] = {}
    lag_stats: dict[str, list[tuple[float, float, float]]] = {PROCESS: [], DASK: []}
    peaks: dict[str, list[int]] = {PROCESS: [], DASK: []}
    try:
        with postgres_server() as url, _cluster() as (client, startup):
            executors: dict[str, Callable[[], metalab.Executor]] = {
                PROCESS: lambda: metalab.ProcessExecutor(2),
                DASK: lambda: metalab.DaskExecutor(client),
            }
            _sweep(_experiment(50), base / "warm-up", executors[DASK]())
            for index in range(repeat):
                for position, (name, make) in enumerate(executors.items()):
                    directory = base / f"{index}-{position}"
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
                    lag_stats[name].append(
                        (statistics.median(lags), _percentile(lags, 0.95), max(lags))
                    )
                    drop_schema(url, schema)
                    shutil.rmtree(directory)
            server = settings(url)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for store in ("FileStore", "PostgresStore"):
        for name in (PROCESS, DASK):
            notes = f"cluster start-up {startup:.1f} s (untimed)" if name == DASK else ""
            if store == "PostgresStore":
                notes = "; ".join(
                    filter(None, [notes, f"peak DB connections {max(peaks[name])}", server])
                )
            report.add(
                Measurement(
                    f"dask.sweep {store}",
                    name,
                    n,
                    tuple(seconds[store, name]),
                    baseline=PROCESS if name == DASK else None,
                    notes=notes,
                )
            )
    for position, label in enumerate(("p50", "p95", "max")):
        for name in (PROCESS, DASK):
            report.add(
                Measurement(
                    f"dask.index_lag_{label} (s per run, not per n)",
                    name,
                    1,
                    tuple(stats[position] for stats in lag_stats[name]),
                    notes="indexed_at - finished_at of each run, PostgresStore",
                )
            )
    print(_summary(n, seconds, lag_stats, peaks), file=sys.stderr, flush=True)


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
    seconds: dict[tuple[str, str], list[float]],
    lag_stats: dict[str, list[tuple[float, float, float]]],
    peaks: dict[str, list[int]],
) -> str:
    lines = [
        "",
        (
            f"| executor ({n:,} runs) | FileStore runs/s | PostgresStore runs/s | "
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
