"""``load_results`` reads a collection written by metalab 0.1 without changing a byte."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

import metalab

RUNS = {
    "1754b7ba5a1f8e13": ({"lr": 0.1, "opt": "adam"}, "success"),
    "63632ddd01d6b4b7": ({"lr": 0.1, "opt": "sgd"}, "success"),
    "101136d379f26e81": ({"lr": 0.2, "opt": "adam"}, "success"),
    "237498e3b826b634": ({"lr": 0.2, "opt": "sgd"}, "success"),
    "abb58e06e53a15ae": ({"lr": 0.9, "opt": "adam"}, "failed"),
    "7039053db7c554ca": ({"lr": 0.9, "opt": "sgd"}, "failed"),
}


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def loaded(golden_collection: Path) -> tuple[metalab.Results, Path, str]:
    before = _tree_digest(golden_collection)
    results = metalab.load_results(str(golden_collection), experiment_id="golden:0.1")
    return results, golden_collection, before


class TestLoadResultsOfA01Collection:
    def test_all_six_runs_with_their_params_and_status(
        self, loaded: tuple[metalab.Results, Path, str]
    ) -> None:
        results, _, _ = loaded
        assert len(results) == 6
        assert {r.run_id: (r.params, r.status) for r in results} == RUNS
        assert {r.experiment_id for r in results} == {"golden:0.1"}

    def test_metrics_of_every_type_nan_included(
        self, loaded: tuple[metalab.Results, Path, str]
    ) -> None:
        results, _, _ = loaded
        run = results.get("101136d379f26e81")
        assert run is not None
        assert run.metrics["converged"] is False
        assert run.metrics["optimizer"] == "adam"
        assert run.metrics["score"] == pytest.approx(0.10785878030022851)
        assert math.isnan(float(run.metrics["loss"]))
        ok = results.get("1754b7ba5a1f8e13")
        assert ok is not None
        assert ok.metrics["loss"] == 0.9

    def test_derived_metrics(self, loaded: tuple[metalab.Results, Path, str]) -> None:
        results, _, _ = loaded
        derived = {r.run_id: r.derived for r in results}
        assert derived["101136d379f26e81"] == {"double_score": pytest.approx(0.21571756060045702)}
        assert derived["1754b7ba5a1f8e13"] == {"double_score": pytest.approx(0.10785878030022851)}
        assert derived["7039053db7c554ca"] == {}

    def test_logs(self, loaded: tuple[metalab.Results, Path, str]) -> None:
        results, _, _ = loaded
        run = results.get("101136d379f26e81")
        assert run is not None
        assert run.logs == ["run"]
        assert "trained with lr=0.2" in (run.log() or "")
        failed = results.get("7039053db7c554ca")
        assert failed is not None
        assert failed.log() == ""

    def test_structured_data(self, loaded: tuple[metalab.Results, Path, str]) -> None:
        results, _, _ = loaded
        run = results.get("237498e3b826b634")
        assert run is not None
        assert run.data_names == ["curve"]
        assert run.data("curve") == [1.0, 0.5, 0.25]

    def test_artifacts_with_absolute_0_1_paths(
        self, loaded: tuple[metalab.Results, Path, str]
    ) -> None:
        results, _, _ = loaded
        run = results.get("63632ddd01d6b4b7")
        assert run is not None
        (descriptor,) = run.artifacts
        assert descriptor.uri == "artifacts/63632ddd01d6b4b7/config.json"
        assert run.artifact("config") == {"lr": 0.1, "opt": "sgd"}  # 0.1 loaded JSON
        data = run.artifact_bytes("config")
        assert json.loads(data) == {"lr": 0.1, "opt": "sgd"}
        assert len(data) == descriptor.size_bytes
        assert hashlib.sha256(data).hexdigest().startswith(descriptor.content_hash)

    def test_failed_runs_keep_their_error(self, loaded: tuple[metalab.Results, Path, str]) -> None:
        results, _, _ = loaded
        for run in results.failed:
            assert run.error is not None
            assert (run.error.type, run.error.message) == ("ValueError", "diverged: lr too high")
            assert "Traceback" in run.error.traceback

    def test_dataframe_of_the_collection(self, loaded: tuple[metalab.Results, Path, str]) -> None:
        results, _, _ = loaded
        frame = results.to_dataframe()
        assert len(frame) == 6
        assert frame["metrics.loss"].isna().sum() == 4  # 2 NaN + 2 failed runs
        assert frame["derived.double_score"].notna().sum() == 4
        assert str(frame["started_at"].dt.tz) == "UTC"
        assert set(frame["params.opt"]) == {"adam", "sgd"}

    def test_reading_everything_changes_no_byte(
        self, loaded: tuple[metalab.Results, Path, str]
    ) -> None:
        results, root, before = loaded
        for run in results:
            _ = (run.derived, run.logs, run.log(), run.data_names, run.artifacts)
            for name in run.data_names:
                run.data(name)
            for descriptor in run.artifacts:
                run.artifact(descriptor.name)
        results.to_dataframe()
        results.to_polars()
        assert _tree_digest(root) == before
