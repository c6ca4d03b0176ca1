"""The runner and results code of ``spec/storage.md``, run as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import metalab
from metalab import load_results
from metalab.store import FileStoreConfig, SupportsWorkingDirectory


@metalab.operation
def train(params: dict[str, Any], seeds: metalab.SeedBundle, capture: metalab.Capture) -> None:
    capture.metric("score", seeds.rng().random() * params["scale"])


exp = metalab.Experiment(
    name="my_exp",
    version="1.0",
    context={},
    operation=train,
    params=metalab.grid(scale=[0.1, 1.0, 10.0]),
    seeds=metalab.seeds(base=123, replicates=2),
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


class TestQuickStart:
    def test_a_path_creates_a_file_store_scoped_to_the_experiment(self, tmp_path: Path) -> None:
        handle = metalab.run(exp, store="./experiments")
        assert isinstance(handle.store, SupportsWorkingDirectory)
        assert handle.store.get_working_directory() == tmp_path / "experiments" / "my_exp_1.0"
        assert len(handle.result()) == 6


class TestExperimentScoping:
    def test_a_path_and_an_unscoped_config_are_equivalent(self, tmp_path: Path) -> None:
        first = metalab.run(exp, store="./experiments").result()
        again = metalab.run(exp, store=FileStoreConfig(root="./experiments"))
        assert again.result().run_ids == first.run_ids
        assert again.skipped == 6
        assert (tmp_path / "experiments" / "my_exp_1.0" / "runs").is_dir()

    def test_a_file_uri(self, tmp_path: Path) -> None:
        handle = metalab.run(exp, store=f"file://{tmp_path}/shared/experiments")
        assert len(handle.result()) == 6
        assert (tmp_path / "shared" / "experiments" / "my_exp_1.0" / "_meta.json").is_file()


class TestLoadingResults:
    def test_every_way_of_loading_results_of_the_spec(self) -> None:
        metalab.run(exp, store="./experiments").result()

        results = load_results("./experiments", experiment_id="my_exp:1.0")
        assert len(results) == 6

        collection = FileStoreConfig(root="./experiments")
        assert collection.list_experiments() == ["my_exp:1.0"]
        config = collection.for_experiment("my_exp:1.0")
        results = load_results(config)
        assert len(results) == 6

        df = results.to_dataframe()
        assert df.shape == (6, 11)
        assert list(df.columns[-2:]) == ["params.scale", "metrics.score"]
