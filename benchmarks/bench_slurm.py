"""Sweeps through SLURM (dask-jobqueue) next to the same sweeps on a Dask LocalCluster.

It needs a running SLURM that ``SLURM_CONF`` (or the default configuration) names; on
one machine, the one-node cluster of ``tests/slurm``::

    python tests/slurm/slurm_cluster.py up        # as root
    export SLURM_CONF=/tmp/metalab-slurm/slurm.conf
    python -m benchmarks.bench_slurm [--n 500] [--repeat 3] [--json PATH]

It is not a suite of ``python -m benchmarks`` (which runs without SLURM); the slurm
tests run it once (``nox -s slurm``). ``run().result()`` of ``n`` trivial runs (one
metric each) into a fresh FileStore, with two workers of one thread each on:

- ``LocalCluster``: 2 worker processes on this machine (the baseline);
- ``SLURMCluster``: 2 SLURM jobs of one worker process each, submitted with sbatch.

Two operations, the subjects interleaved in every repeat:

- **warm**: each cluster is started once, untimed (its start-up time is in the notes),
  and warmed with a small sweep; each repeat times one sweep on it.
- **cold**: each repeat starts the cluster, runs the sweep and closes the cluster,
  all timed. For SLURM that is ``metalab.executors.slurm(...)``: ``sbatch``, the jobs
  leaving the queue, the workers starting and connecting, and ``scancel`` at the end.

On one machine, SLURM adds no network: what it adds is the jobs' start-up and
whatever the scheduler's placement costs; the runs themselves are the same.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dask_jobqueue.slurm import SLURMCluster
from distributed import Client, LocalCluster

import metalab
from benchmarks._harness import Measurement, Report

LOCAL = "LocalCluster, 2 workers x1 thread"
SLURM = "SLURMCluster, 2 jobs x1 worker x1 thread"


@metalab.operation
def trivial(params: dict[str, Any], capture: metalab.Capture) -> None:
    capture.metric("x", params["i"])


def _experiment(n: int) -> metalab.Experiment:
    return metalab.Experiment(
        name="slurm_bench", version="1", operation=trivial, params=metalab.grid(i=range(n))
    )


def _slurm_options(logs: Path, interface: str | None) -> dict[str, Any]:
    return {
        "cores": 1,
        "processes": 1,
        "memory": "512MB",
        "walltime": "00:30:00",
        "job_name": "metalab-bench",
        "log_directory": str(logs),
        "interface": interface,
        "scheduler_options": {"dashboard_address": ":0"},
    }


@contextmanager
def _local() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        client.wait_for_workers(2)
        yield client


@contextmanager
def _slurm(logs: Path, interface: str | None) -> Iterator[Client]:
    with (
        SLURMCluster(**_slurm_options(logs, interface)) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        cluster.scale(jobs=2)
        client.wait_for_workers(2, timeout=300)
        yield client


def _sweep(exp: metalab.Experiment, store: Path, executor: metalab.Executor) -> float:
    """Seconds that ``run(...).result()`` takes."""
    began = time.perf_counter()
    with metalab.run(exp, store=store, executor=executor, progress=False) as handle:
        handle.result()
    return time.perf_counter() - began


def _cold_local(exp: metalab.Experiment, store: Path) -> float:
    began = time.perf_counter()
    with _local() as client:
        _sweep(exp, store, metalab.DaskExecutor(client))
    return time.perf_counter() - began


def _cold_slurm(exp: metalab.Experiment, store: Path, logs: Path, interface: str | None) -> float:
    began = time.perf_counter()
    options = _slurm_options(logs, interface)
    with metalab.executors.slurm(
        cores=options.pop("cores"),
        memory=options.pop("memory"),
        walltime=options.pop("walltime"),
        jobs=2,
        **options,
    ) as executor:
        _sweep(exp, store, executor)
    return time.perf_counter() - began


def run(report: Report, *, n: int, repeat: int, interface: str | None = "lo") -> None:
    """Time ``n`` trivial runs on each cluster, warm and cold, ``repeat`` times."""
    exp = _experiment(n)
    base = Path(tempfile.mkdtemp(prefix="metalab-bench-slurm-"))
    logs = base / "slurm-logs"
    warm: dict[str, list[float]] = {LOCAL: [], SLURM: []}
    cold: dict[str, list[float]] = {LOCAL: [], SLURM: []}
    startup: dict[str, float] = {}
    try:
        began = time.perf_counter()
        with _local() as local_client:
            startup[LOCAL] = time.perf_counter() - began
            began = time.perf_counter()
            with _slurm(logs, interface) as slurm_client:
                startup[SLURM] = time.perf_counter() - began
                clients = {LOCAL: local_client, SLURM: slurm_client}
                for position, client in enumerate(clients.values()):
                    _sweep(
                        _experiment(50), base / f"warm-up-{position}", metalab.DaskExecutor(client)
                    )
                for index in range(repeat):
                    for position, (name, client) in enumerate(clients.items()):
                        store = base / f"warm-{index}-{position}"
                        warm[name].append(_sweep(exp, store, metalab.DaskExecutor(client)))
                        shutil.rmtree(store)
        cold_runs: dict[str, Callable[[Path], float]] = {
            LOCAL: lambda store: _cold_local(exp, store),
            SLURM: lambda store: _cold_slurm(exp, store, logs, interface),
        }
        for index in range(repeat):
            for position, (name, timed) in enumerate(cold_runs.items()):
                store = base / f"cold-{index}-{position}"
                cold[name].append(timed(store))
                shutil.rmtree(store)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for name in (LOCAL, SLURM):
        report.add(
            Measurement(
                "slurm.sweep FileStore, warm workers",
                name,
                n,
                tuple(warm[name]),
                baseline=LOCAL if name == SLURM else None,
                notes=f"cluster start-up {startup[name]:.1f} s (untimed)",
            )
        )
    for name in (LOCAL, SLURM):
        report.add(
            Measurement(
                "slurm.sweep FileStore, cluster start and close included",
                name,
                n,
                tuple(cold[name]),
                baseline=LOCAL if name == SLURM else None,
            )
        )


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print a Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_slurm", description=__doc__)
    parser.add_argument("--n", type=int, default=500, help="runs per sweep")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per measurement")
    parser.add_argument(
        "--interface",
        default="lo",
        help="network interface of the scheduler and workers ('' for dask's default)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    report = Report()
    print(f"[slurm] n={args.n:,}", file=sys.stderr, flush=True)
    run(report, n=args.n, repeat=args.repeat, interface=args.interface or None)
    print(report.markdown())
    for m in report.measurements:
        if m.notes:
            print(f"\n{m.subject}: {m.notes}", end="")
    print()
    if args.json is not None:
        report.write_json(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
