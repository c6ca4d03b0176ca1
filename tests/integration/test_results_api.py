"""Loading, browsing, filtering and deriving from results."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, cast

import pytest

import metalab
from metalab.errors import ArtifactNotFoundError, ConfigError, ExperimentNotFoundError
from metalab.records import DerivedMetrics, MetricValue
from metalab.store import FileStoreConfig, Store, SupportsBulkDerived, SupportsWorkingDirectory


@metalab.operation
def train(params: dict[str, Any], seeds: metalab.SeedBundle, capture: metalab.Capture) -> None:
    if params["opt"] == "bad":
        raise RuntimeError("bad optimizer")
    capture.metric("lr", params["lr"] * 100)
    capture.metric("score", seeds.rng().random())
    capture.data("curve", [1.0, 0.5])
    capture.artifact("weights", b"\x01\x02")
    capture.log("done")


EXP = metalab.Experiment(
    name="analysis",
    version="2",
    operation=train,
    params=metalab.grid(lr=[0.1, 0.01], opt=["adam", "sgd", "bad"]),
    seeds=metalab.seeds(base=1, replicates=2),
    tags=("sweep",),
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("results")
    metalab.run(EXP, store=str(path), progress=False).result()
    return path


@pytest.fixture
def results(root: Path) -> metalab.Results:
    return metalab.load_results(str(root), experiment_id="analysis:2")


class TestLoading:
    def test_path_and_experiment_id(self, results: metalab.Results) -> None:
        assert len(results) == 12
        assert {r.experiment_id for r in results} == {"analysis:2"}

    def test_collection_config_for_experiment(self, root: Path) -> None:
        collection = FileStoreConfig(root=str(root))
        assert collection.list_experiments() == ["analysis:2"]
        assert len(metalab.load_results(collection.for_experiment("analysis:2"))) == 12

    def test_scoped_config_and_locator(self, root: Path) -> None:
        config = FileStoreConfig(root=str(root), experiment_id="analysis:2")
        assert len(metalab.load_results(config)) == 12
        assert len(metalab.load_results(f"file://{root}", experiment_id="analysis:2")) == 12

    def test_a_connected_store(self, root: Path) -> None:
        with FileStoreConfig(root=str(root), experiment_id="analysis:2").connect() as store:
            assert len(metalab.load_results(store)) == 12

    def test_runs_come_oldest_first(self, results: metalab.Results) -> None:
        started = [r.started_at for r in results]
        assert started == sorted(started)

    def test_an_experiment_id_that_conflicts_with_the_scope_is_refused(self, root: Path) -> None:
        config = FileStoreConfig(root=str(root), experiment_id="analysis:2")
        with pytest.raises(ConfigError, match="already scoped"):
            metalab.load_results(config, experiment_id="other:1")

    def test_an_unknown_experiment_is_an_error_that_lays_nothing_down(self, root: Path) -> None:
        with pytest.raises(ExperimentNotFoundError, match="experiments: analysis:2"):
            metalab.load_results(str(root), experiment_id="nothing:1")
        assert not (root / "nothing_1").exists()

    def test_something_that_is_not_a_store_is_refused(self) -> None:
        with pytest.raises(TypeError, match="load_results"):
            metalab.load_results(42)  # type: ignore[arg-type]


class TestSequence:
    def test_indexing_iteration_and_slicing(self, results: metalab.Results) -> None:
        assert results[0].run_id == results.run_ids[0]
        assert results[-1].run_id == results.run_ids[-1]
        window = results[2:5]
        assert isinstance(window, metalab.Results)
        assert window.run_ids == results.run_ids[2:5]
        assert [r.run_id for r in results] == results.run_ids
        with pytest.raises(IndexError):
            results[12]

    def test_get_by_run_id(self, results: metalab.Results) -> None:
        run = results.get(results.run_ids[3])
        assert run is not None
        assert run.run_id == results.run_ids[3]
        assert results.get("0" * 64) is None

    def test_repr_counts_statuses(self, results: metalab.Results) -> None:
        assert repr(results) == "<Results: 12 runs: 4 failed, 8 success>"


class TestFilter:
    def test_by_status(self, results: metalab.Results) -> None:
        assert len(results.successful) == 8
        assert len(results.failed) == 4
        assert len(results.filter(status=["success", "failed"])) == 12
        assert len(results.filter(status="cancelled")) == 0

    def test_by_tags(self, results: metalab.Results) -> None:
        assert len(results.filter(tags="sweep")) == 12
        assert len(results.filter(tags=["sweep", "other"])) == 0

    def test_params_and_metrics_are_separate_namespaces(self, results: metalab.Results) -> None:
        by_param = results.filter(params={"lr": 0.1})
        by_metric = results.filter(metrics={"lr": 10.0})
        assert {r.params["lr"] for r in by_param} == {0.1}
        assert len(by_param) == 6
        assert {r.params["lr"] for r in by_metric} == {0.1}
        assert len(by_metric) == 4
        assert len(results.filter(metrics={"lr": 0.1})) == 0

    def test_predicates_and_combined_conditions(self, results: metalab.Results) -> None:
        chosen = results.filter(
            status="success",
            params={"opt": lambda v: v in ("adam", "sgd"), "lr": 0.01},
            metrics={"score": lambda v: v >= 0},
        )
        assert len(chosen) == 4
        assert {r.params["opt"] for r in chosen} == {"adam", "sgd"}

    def test_a_missing_key_never_matches(self, results: metalab.Results) -> None:
        assert len(results.filter(params={"momentum": None})) == 0

    def test_filters_chain(self, results: metalab.Results) -> None:
        assert len(results.successful.filter(params={"opt": "adam"})) == 4


class TestRunAccessors:
    def test_record_fields(self, results: metalab.Results) -> None:
        run = results.successful[0]
        assert run.status == "success"
        assert run.error is None
        assert run.duration_ms is not None
        assert run.finished_at is not None
        assert run.tags == ("sweep",)
        assert set(run.metrics) == {"lr", "score"}
        assert run.provenance.executor_id == "thread"
        assert run.run_id[:12] in repr(run)

    def test_failed_runs_carry_their_error(self, results: metalab.Results) -> None:
        run = results.failed[0]
        assert run.error is not None
        assert (run.error.type, run.error.message) == ("RuntimeError", "bad optimizer")
        assert run.metrics == {}

    def test_artifacts_logs_and_data(self, results: metalab.Results) -> None:
        run = results.successful[0]
        assert [a.name for a in run.artifacts] == ["weights"]
        assert run.artifact("weights") == b"\x01\x02"
        assert run.logs == ["run"]
        assert (run.log() or "").endswith("done\n")
        assert run.log("other") is None
        assert run.data_names == ["curve"]
        assert run.data("curve") == [1.0, 0.5]
        assert run.data("missing") is None

    def test_a_missing_artifact_raises(self, results: metalab.Results) -> None:
        with pytest.raises(ArtifactNotFoundError):
            results.failed[0].artifact("weights")

    def test_artifact_files_live_in_the_store_directory(self, results: metalab.Results) -> None:
        run = results.successful[0]
        store = results.store
        assert isinstance(store, SupportsWorkingDirectory)
        path = store.get_working_directory() / run.artifacts[0].uri
        assert path.read_bytes() == b"\x01\x02"


class TestComputeDerived:
    def test_derived_metrics_are_stored_and_read_back(self, tmp_path: Path) -> None:
        metalab.run(EXP, store=str(tmp_path), progress=False).result()
        results = metalab.load_results(str(tmp_path), experiment_id="analysis:2").successful

        def double(run: metalab.Run) -> dict[str, MetricValue]:
            return {"double": float(run.metrics["score"]) * 2}

        assert results.compute_derived(double) == 8
        for run in results:
            assert run.derived == {"double": float(run.metrics["score"]) * 2}
        reloaded = metalab.load_results(str(tmp_path), experiment_id="analysis:2")
        assert {r.run_id: r.derived for r in reloaded.successful} == {
            r.run_id: r.derived for r in results
        }
        assert all(r.derived == {} for r in reloaded.failed)
        derived_file = tmp_path / "analysis_2" / "derived" / f"{results[0].run_id}.json"
        assert json.loads(derived_file.read_bytes())["metrics"]["double"] == pytest.approx(
            results[0].derived["double"]
        )

    def test_derived_metrics_are_read_in_one_listing_not_one_lookup_per_run(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        metalab.run(EXP, store=str(tmp_path), progress=False).result()
        metalab.load_results(str(tmp_path), experiment_id="analysis:2").compute_derived(
            lambda run: {"twice": len(run.run_id) * 2}
        )
        results = metalab.load_results(str(tmp_path), experiment_id="analysis:2")

        def per_run(run_id: str) -> None:
            raise AssertionError(f"looked up the derived metrics of {run_id} alone")

        monkeypatch.setattr(results.store, "get_derived", per_run)
        frame = results.to_dataframe()
        assert list(frame["derived.twice"]) == [128] * len(results)
        assert len(results.filter(where="derived.twice == 128")) == len(results)

    def test_a_store_without_bulk_listing_is_asked_run_by_run(self, tmp_path: Path) -> None:
        metalab.run(EXP, store=str(tmp_path), progress=False).result()
        loaded = metalab.load_results(str(tmp_path), experiment_id="analysis:2")
        loaded.compute_derived(lambda run: {"first": run.run_id[0]})
        store = loaded.store

        class PerRunOnly:
            """Only the base Store protocol's derived lookup, as a minimal custom store has."""

            def get_derived(self, run_id: str) -> DerivedMetrics | None:
                return store.get_derived(run_id)

        assert not isinstance(PerRunOnly(), SupportsBulkDerived)
        results = metalab.Results(loaded.records, cast("Store", PerRunOnly()))
        assert [r.derived for r in results] == [{"first": r.run_id[0]} for r in loaded]
        assert len(results.filter(where=f"derived.first == '{loaded[0].run_id[0]}'")) >= 1

    def test_later_computations_merge_into_earlier_ones(self, tmp_path: Path) -> None:
        metalab.run(EXP, store=str(tmp_path), progress=False).result()
        results = metalab.load_results(str(tmp_path), experiment_id="analysis:2").successful
        results.compute_derived(lambda _: {"a": 1, "b": 2})
        results.compute_derived(lambda _: {"b": 3, "nan": math.nan})
        derived = metalab.load_results(str(tmp_path), experiment_id="analysis:2")[0].derived
        assert derived["a"] == 1
        assert derived["b"] == 3
        assert math.isnan(float(derived["nan"]))

    def test_a_function_returning_non_metrics_is_refused(self, tmp_path: Path) -> None:
        metalab.run(EXP, store=str(tmp_path), progress=False).result()
        results = metalab.load_results(str(tmp_path), experiment_id="analysis:2")
        with pytest.raises(TypeError, match="dict of metrics"):
            results.compute_derived(lambda _: [1, 2])  # type: ignore[arg-type,return-value]
        with pytest.raises(TypeError, match="metric 'x'"):
            results.compute_derived(lambda _: {"x": [1, 2]})  # type: ignore[dict-item]
        assert not any((tmp_path / "analysis_2" / "derived").iterdir())
