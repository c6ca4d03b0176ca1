"""Screenshots of the dashboard for the docs: ``python tests/browser/screenshots.py OUT_DIR``.

It writes a small but realistic sweep into a temporary FileStore (:func:`write_demo`:
learning rates x widths x 3 seeds, a stepped loss curve per run, one run that fails,
an artifact and a log line per run), serves it with ``python -m metalab ui`` on a free
loopback port, and saves two 1280x800 screenshots taken in Debian's headless
``chromium`` driven by Playwright (the ``browser`` dependency group):

- ``OUT_DIR/runs.png``: the sweep's runs table;
- ``OUT_DIR/plots.png``: the plot builder's learning curves, the loss by step per
  learning rate, mean +/- standard error over the seeds and widths.

``docs/ui/runs.png`` and ``docs/ui/plots.png`` (shown in the README) are made with
``python tests/browser/screenshots.py docs/ui``. The browser tests use
:func:`write_demo` too (``conftest.py``), so the sweep shown is one they check.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import metalab

NAME: Final = "mlp-sweep"
VERSION: Final = "1"
EXPERIMENT_ID: Final = f"{NAME}:{VERSION}"
LEARNING_RATES: Final = (0.001, 0.003, 0.01, 0.03, 0.1)
WIDTHS: Final = (32, 128)
REPLICATES: Final = 3
STEPS: Final = tuple(range(0, 201, 10))
"""The steps at which each run logs its loss: every 10th of 200."""
FAILS: Final = (0.1, 128, 2)
"""The (lr, width, replicate) of the one run that fails, half way through."""
FAILS_AT: Final = 100
WIDTH: Final = 1280
HEIGHT: Final = 800
START_TIMEOUT: Final = 60.0
RUNS_SHOT: Final = "runs.png"
PLOTS_SHOT: Final = "plots.png"


# --- the demo sweep ---------------------------------------------------------------


def _loss(lr: float, width: int, step: int, noise: float) -> float:
    """A plausible training loss: fast but noisy at large learning rates, lower if wider."""
    speed = 40 * lr / (1 + 20 * lr)
    floor = 0.08 + 6.0 / width + 2.0 * lr
    return floor + (2.3 - floor) * math.exp(-speed * step / 10) + noise


@metalab.operation
def train_mlp(params: dict[str, Any], seeds: metalab.SeedBundle, capture: metalab.Capture) -> None:
    """A stand-in for training a small MLP: a loss curve, an accuracy, a config artifact."""
    lr, width = params["lr"], params["width"]
    rng = seeds.rng()
    capture.log(f"training an MLP of width {width} with lr {lr} (seed {seeds.seed})")
    capture.artifact("config", {"lr": lr, "width": width, "epochs": len(STEPS) - 1})
    loss = 0.0
    for step in STEPS:
        if (lr, width, seeds.replicate) == FAILS and step == FAILS_AT:
            capture.log(f"step {step}: the loss is NaN")
            raise FloatingPointError(f"the loss diverged at step {step}")
        loss = _loss(lr, width, step, rng.gauss(0, 0.02 + 0.3 * lr))
        capture.metric("loss", loss, step=step)
    accuracy = 0.97 - 0.5 * abs(math.log10(lr) + 2) ** 2 / 4 - 1.5 / width
    capture.metric("acc", round(accuracy + rng.gauss(0, 0.02), 4))
    time.sleep(0.01 * width / 32)  # a duration to show
    capture.log(f"done: loss {loss:.3f}")


def demo_experiment() -> metalab.Experiment:
    return metalab.Experiment(
        name=NAME,
        version=VERSION,
        context={},
        operation=train_mlp,
        params=metalab.grid(lr=list(LEARNING_RATES), width=list(WIDTHS), optimizer=["adam"]),
        seeds=metalab.seeds(base=7, replicates=REPLICATES),
        tags=("demo",),
        description="a small MLP: learning rate x width, 3 seeds",
    )


@dataclass(frozen=True)
class Demo:
    """What :func:`write_demo` wrote, for the tests to look for."""

    root: Path
    experiment_id: str = EXPERIMENT_ID
    runs: int = len(LEARNING_RATES) * len(WIDTHS) * REPLICATES
    failed: int = 1
    steps: tuple[int, ...] = STEPS
    learning_rates: tuple[float, ...] = LEARNING_RATES
    widths: tuple[int, ...] = WIDTHS


def write_demo(root: Path) -> Demo:
    """Run the demo sweep into a FileStore collection at ``root``."""
    with metalab.run(demo_experiment(), store=str(root), progress=False) as handle:
        handle.result()
    return Demo(root)


# --- the dashboard ----------------------------------------------------------------


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "api/info", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def serve(root: Path) -> tuple[subprocess.Popen[str], str]:
    """``metalab ui`` over ``root`` on a free loopback port: the process and its URL."""
    args = [sys.executable, "-m", "metalab", "ui", str(root), "--host", "127.0.0.1", "--port", "0"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()  # printed once the socket listens
    found = re.search(r" at (http://127\.0\.0\.1:\d+/)", line)
    deadline = time.monotonic() + START_TIMEOUT
    while found is None or not _answers(found.group(1)):
        if found is None or process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate(timeout=30)
            raise SystemExit(f"metalab ui did not start: {line!r}\n{err}")
        time.sleep(0.1)
    return process, found.group(1)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise SystemExit("no chromium: install Debian's (apt-get install chromium)")


def take(url: str, out: Path) -> list[str]:
    """Save the two screenshots under ``out``; the errors the pages logged."""
    from playwright.sync_api import ConsoleMessage, sync_playwright  # noqa: PLC0415

    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    experiment = urllib.parse.quote(EXPERIMENT_ID, safe="")
    plot = urllib.parse.urlencode(
        {"kind": "curves", "metric": "loss", "color": "params.lr", "agg": "mean_se"}
    )
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=_chromium(), args=["--no-sandbox"], headless=True
        )
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=1)
        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(error.message))

        page.goto(f"{url}#/experiments/{experiment}")
        page.locator("main table th.sortable").first.wait_for()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=out / RUNS_SHOT)

        page.goto(f"{url}#/plots/{experiment}?{plot}")
        page.locator("main figure.chart svg path.curve").first.wait_for()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=out / PLOTS_SHOT)
        browser.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshots of the dashboard for the docs.")
    parser.add_argument("out", type=Path, help="where to save runs.png and plots.png")
    out: Path = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="metalab-demo-") as scratch:
        demo = write_demo(Path(scratch) / "experiments")
        process, url = serve(demo.root)
        try:
            problems = take(url, out)
        finally:
            process.terminate()
            process.communicate(timeout=30)
    for name in (RUNS_SHOT, PLOTS_SHOT):
        saved = out / name
        print(f"{saved} ({saved.stat().st_size // 1024} KiB)")
    if problems:
        print("the pages logged errors:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
