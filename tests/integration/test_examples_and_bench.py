"""The README's example and the benchmark harness run end to end (small sizes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_example_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.count(" success ") == 6
    assert len(list((tmp_path / "quickstart_1.0" / "runs").glob("*.json"))) == 6
    assert len(list((tmp_path / "quickstart_1.0" / "logs").glob("*_run.log"))) == 6


def test_learning_curves_example_plots_or_prints_its_curves(tmp_path: Path) -> None:
    script = ROOT / "examples" / "learning_curves.py"
    # Without matplotlib (blocked), the example prints the curves instead.
    code = (
        "import runpy, sys; sys.modules['matplotlib'] = None; "
        f"sys.argv = [{str(script)!r}, {str(tmp_path / 'plain')!r}]; "
        f"runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "6 runs, 360 points of 'loss'" in plain.stdout
    lines = [line for line in plain.stdout.splitlines() if line.startswith("lr=")]
    assert len(lines) == 3
    # The loss falls along each curve.
    for line in lines:
        values = [float(part.split(": ")[1]) for part in line.split("steps ")[1].split(", ")]
        assert values == sorted(values, reverse=True)
    pytest.importorskip("matplotlib")
    drawn = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "drawn")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "curves drawn in" in drawn.stdout
    assert (tmp_path / "drawn" / "curves.png").stat().st_size > 1000


@pytest.mark.bench
def test_benchmark_harness_runs_at_small_n(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--n", "100", "--repeat", "1", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| codec.encode | metalab |" in proc.stdout
    report = json.loads(out.read_text())
    assert report["machine"]["python"]
    ops = {(m["operation"], m["subject"]) for m in report["measurements"]}
    assert ("codec.decode", "metalab") in ops
    for operation in ("query.filter", "query.by_status", "query.by_param", "query.fields"):
        assert (operation, "metalab PostgresStore (SQL on the index)") in ops
        assert (operation, "metalab FileStore (Python over the files)") in ops
    assert ("series.log", "metalab") in ops
    snapshot = "load_results().to_dataframe(), records snapshot current"
    assert ("results.frame", snapshot) in ops
    if os.access("/proc/sys/vm/drop_caches", os.W_OK):  # root: the cold page cache too
        assert ("results.cold", snapshot) in ops
    assert ("series.frame", "metalab") in ops
    assert ("context.start", "metalab, cache of a first sweep") in ops
    for operation in ("ui.runs_page", "ui.experiments"):
        assert (operation, "metalab ui over a PostgresStore") in ops
        assert (operation, "metalab ui over a FileStore") in ops
    assert all(m["median"] > 0 for m in report["measurements"])
