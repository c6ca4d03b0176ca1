"""A sweep on a Dask cluster: here a LocalCluster of two worker processes.

Run with ``python examples/dask_sweep.py [STORE]``. STORE is a directory (default: a
new temporary one) or a PostgreSQL locator whose ``file_root`` every worker can
reach, e.g. ``postgresql://me@dbhost/lab?file_root=/shared/experiments``: the workers
then write only files and this process indexes the finished runs in bulk. Running it
again on the same store skips the runs that already succeeded.

On a real cluster only the cluster line changes: see ``docs/dask.md`` for
dask-jobqueue on SLURM.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from typing import Any

from distributed import Client, LocalCluster

import metalab


@metalab.operation
def estimate_pi(
    params: dict[str, Any], seeds: metalab.SeedBundle, capture: metalab.Capture
) -> None:
    """Estimate pi by throwing ``n`` random darts at the unit square."""
    rng = seeds.rng()
    n = params["n"]
    inside = sum(rng.random() ** 2 + rng.random() ** 2 <= 1.0 for _ in range(n))
    estimate = 4.0 * inside / n
    capture.metric("pi", estimate)
    capture.metric("abs_error", abs(estimate - math.pi))
    capture.log(f"{inside} of {n} darts inside the circle, in worker process {os.getpid()}")


EXPERIMENT = metalab.Experiment(
    name="dask_sweep",
    version="1.0",
    description="Monte Carlo estimate of pi, on a Dask cluster",
    operation=estimate_pi,
    params=metalab.grid(n=[1_000, 10_000, 100_000]),
    seeds=metalab.seeds(base=42, replicates=8),
)


def main(store: str) -> None:
    # The guard below matters: LocalCluster starts its workers with the "spawn"
    # method, which imports this script again in every worker process.
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        handle = metalab.run(EXPERIMENT, store=store, executor=metalab.DaskExecutor(client))
        results = handle.result()
    print(f"{len(results)} runs of {handle.experiment_id} in {handle.store!r}")
    print(
        f"done {handle.done}, skipped {handle.skipped} (already succeeded), failed {handle.failed}"
    )
    for n in (1_000, 10_000, 100_000):
        errors = [float(r.metrics["abs_error"]) for r in results if r.params["n"] == n]
        print(f"n={n:>7,}: mean |pi - estimate| = {sum(errors) / len(errors):.5f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="metalab-dask-"))
