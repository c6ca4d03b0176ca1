"""A sweep that logs a training curve per run, read back and plotted across the sweep.

Run with ``python examples/learning_curves.py [DIRECTORY]`` (default: a new temporary
directory). Each run fits ``y = 3x`` by gradient descent at one learning rate and
logs its loss at every step with ``capture.metric("loss", ..., step=...)``. The curves
are read back as one long frame with ``results.series_dataframe()``; with matplotlib
installed they are drawn into ``curves.png`` beside the store, otherwise a few points
of each curve are printed.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import metalab


@metalab.operation
def fit(params: dict[str, Any], seeds: metalab.SeedBundle, capture: metalab.Capture) -> None:
    """Fit ``w`` in ``y = w x`` to noisy points by gradient descent."""
    rng = seeds.rng()
    xs = [rng.uniform(-1, 1) for _ in range(64)]
    ys = [3.0 * x + rng.gauss(0, 0.1) for x in xs]
    w = 0.0
    for step in range(params["steps"]):
        grad = sum(2 * (w * x - y) * x for x, y in zip(xs, ys, strict=True)) / len(xs)
        w -= params["lr"] * grad
        loss = sum((w * x - y) ** 2 for x, y in zip(xs, ys, strict=True)) / len(xs)
        capture.log_metrics({"loss": loss, "w": w}, step=step)
    capture.tag("example")
    capture.note(f"ended at w = {w:.3f}")


EXPERIMENT = metalab.Experiment(
    name="learning_curves",
    version="1.0",
    description="gradient descent at three learning rates",
    operation=fit,
    params=metalab.grid(lr=[0.05, 0.2, 0.8], steps=[60]),
    seeds=metalab.seeds(base=7, replicates=2),
)


def main(root: Path) -> None:
    results = metalab.run(EXPERIMENT, store=root, progress=False).result()
    curves = results.series_dataframe(["loss"])
    print(f"{len(results)} runs, {len(curves)} points of 'loss' under {root}")
    # The mean over the replicates of each learning rate, step by step.
    mean = curves.groupby(["params.lr", "step"])["value"].mean().unstack("params.lr")
    try:
        import matplotlib as mpl  # noqa: PLC0415 -- optional, only for the picture

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        for lr in mean.columns:
            points = ", ".join(f"{step}: {mean[lr][step]:.4f}" for step in (0, 10, 30, 59))
            print(f"lr={lr}: loss at steps {points}")
        return
    figure, axes = plt.subplots()
    mean.plot(ax=axes, logy=True, xlabel="step", ylabel="loss (mean of 2 replicates)")
    path = root / "curves.png"
    figure.savefig(path)
    plt.close(figure)
    print(f"curves drawn in {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="metalab-")))
