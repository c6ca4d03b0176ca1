"""The peers benchmark (metalab vs MLflow, with the physical anchors) runs end to end at N = 100.

It runs as ``python -m benchmarks --only peers`` in a subprocess, on the session's
PostgreSQL server. Timings are not judged here (this is a test, not a benchmark): only
that every subject did every operation, returned the same number of runs (the suite
checks that itself and fails otherwise) and got its ratios.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ("peers.create", "peers.get", "peers.list", "peers.search", "peers.frame")
METALAB = ("metalab FileStore", "metalab MemoryStore", "metalab PostgresStore")
MLFLOW = ("MLflow file store", "MLflow SQLite", "MLflow PostgreSQL")


def _run_peers(tmp_path: Path, postgres_url: str, **env: str) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "peers.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--only",
            "peers",
            "--n",
            "100",
            "--repeat",
            "1",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ | {"METALAB_BENCH_POSTGRES_URL": postgres_url} | env,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report: dict[str, Any] = json.loads(out.read_text())
    return proc.stdout, report


def _by_operation(report: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for m in report["measurements"]:
        found.setdefault(m["operation"], {})[m["subject"]] = m
    return found


@pytest.fixture(scope="module")
def metalab_only(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> tuple[str, dict[str, Any]]:
    """One run of the suite with MLflow left out (as where it is not installed)."""
    return _run_peers(
        tmp_path_factory.mktemp("peers"), postgres_url, METALAB_BENCH_MLFLOW_MAX_N="0"
    )


class TestPeersBenchmarkWithoutMlflow:
    def test_metalab_stores_and_both_anchors_are_measured_for_every_operation(
        self, metalab_only: tuple[str, dict[str, Any]]
    ) -> None:
        stdout, report = metalab_only

        found = _by_operation(report)
        assert set(found) == set(OPERATIONS)
        for operation, subjects in found.items():
            assert set(METALAB) <= set(subjects), operation
            assert not set(MLFLOW) & set(subjects), operation
            assert all(m["median"] > 0 for m in subjects.values())
        assert "| peers.search | metalab FileStore |" in stdout

    def test_metalab_gets_ratios_against_the_anchors_of_its_medium(
        self, metalab_only: tuple[str, dict[str, Any]]
    ) -> None:
        found = _by_operation(metalab_only[1])

        for operation, subjects in found.items():
            file_ratios = subjects["metalab FileStore"]["ratios"]
            assert [name for name in file_ratios if name.startswith("raw disk")], operation
            pg_ratios = subjects["metalab PostgresStore"]["ratios"]
            assert [name for name in pg_ratios if not name.startswith("raw disk")], operation

    def test_search_notes_say_how_many_runs_matched(
        self, metalab_only: tuple[str, dict[str, Any]]
    ) -> None:
        search = _by_operation(metalab_only[1])["peers.search"]["metalab FileStore"]

        assert " of 100 runs match" in search["notes"]


@pytest.mark.slow
class TestPeersBenchmarkWithMlflow:
    def test_every_mlflow_store_is_measured_and_metalab_gets_ratios_against_it(
        self, tmp_path: Path, postgres_url: str, require_module: Callable[[str, str], None]
    ) -> None:
        require_module("mlflow", "bench")

        _, report = _run_peers(tmp_path, postgres_url)

        assert report["machine"]["libraries"]["mlflow"]
        found = _by_operation(report)
        for operation, subjects in found.items():
            assert set(METALAB) | set(MLFLOW) <= set(subjects), operation
            assert {"MLflow file store", "MLflow SQLite"} <= set(
                subjects["metalab FileStore"]["ratios"]
            ), operation
            assert "MLflow PostgreSQL" in subjects["metalab PostgresStore"]["ratios"], operation
