"""A small parameter sweep, run into a FileStore and read back as a table.

Run with ``python examples/quickstart.py [DIRECTORY]`` (default: a new temporary
directory). Running it again on the same directory skips the runs that already
succeeded (resume) and prints the same table.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path
from typing import Any

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
    capture.log(f"{inside} of {n} darts inside the circle")


EXPERIMENT = metalab.Experiment(
    name="quickstart",
    version="1.0",
    description="Monte Carlo estimate of pi",
    operation=estimate_pi,
    params=metalab.grid(n=[100, 1_000, 10_000]),
    seeds=metalab.seeds(base=42, replicates=2),
)


def main(root: Path) -> None:
    handle = metalab.run(EXPERIMENT, store=root, progress=False)
    results = handle.result()
    print(f"{len(results)} runs of {handle.experiment_id} under {root}")
    print(f"{'run':<10} {'status':<8} {'n':>6} {'pi':>8} {'abs_error':>10}")
    for run in results:
        print(
            f"{run.run_id[:8]:<10} {run.status:<8} {run.params['n']:>6} "
            f"{run.metrics['pi']:>8.4f} {run.metrics['abs_error']:>10.4f}"
        )
    best = min(results, key=lambda run: float(run.metrics["abs_error"]))
    print(f"closest: run {best.run_id[:8]}, log: {best.log()!r}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="metalab-")))
