"""The README's example and the benchmark harness run end to end (small sizes)."""

from __future__ import annotations

import json
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
    assert all(m["median"] > 0 for m in report["measurements"])
