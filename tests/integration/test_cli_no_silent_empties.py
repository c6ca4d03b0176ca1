"""A mistyped locator or experiment is an error that says so, never an empty answer.

The command line runs as a real subprocess (``python -m metalab``); the library calls
(``load_results``, ``export_store``) are checked in-process. Nothing here may create
a directory or a file where the user pointed by mistake.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

import metalab
from metalab.errors import (
    ConfigError,
    ExperimentNotFoundError,
    MetalabError,
    StoreNotFoundError,
)
from metalab.store import FileStoreConfig, MemoryStoreConfig, export_store
from metalab.testing import run_cli
from metalab.testing.store import make_record

EXPERIMENTS = ("quickstart:1.0", "slow:1.0")


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    root = tmp_path / "experiments"
    for experiment in EXPERIMENTS:
        with FileStoreConfig(root=str(root), experiment_id=experiment).connect() as store:
            store.put_run_record(make_record(experiment, f"run-{experiment[:4]}"))
    return root


@pytest.fixture
def not_a_store(tmp_path: Path) -> Path:
    other = tmp_path / "etc"
    (other / "conf.d").mkdir(parents=True)
    (other / "hosts").write_text("127.0.0.1 localhost\n")
    return other


class TestALocatorThatIsNoStore:
    @pytest.mark.parametrize("command", ["ls", "info", "verify", "gc"])
    def test_a_missing_directory_is_an_error(self, tmp_path: Path, command: str) -> None:
        missing = tmp_path / "no" / "such" / "dir"
        proc = run_cli("store", command, str(missing))
        assert proc.returncode == 1, proc.stdout
        assert proc.stdout == ""
        assert proc.stderr == (
            f"metalab: error: no metalab store at '{missing}': the directory does not exist\n"
        )
        assert not (tmp_path / "no").exists()

    @pytest.mark.parametrize("command", [["store", "ls"], ["store", "info"], ["runs", "ls"]])
    def test_a_directory_of_other_files_is_an_error(
        self, not_a_store: Path, command: list[str]
    ) -> None:
        before = tree(not_a_store)
        proc = run_cli(*command, str(not_a_store))
        assert proc.returncode == 1
        assert proc.stdout == ""
        assert proc.stderr.startswith(f"metalab: error: no metalab store at '{not_a_store}': ")
        assert "holds 2 entries and no experiment directory" in proc.stderr
        assert tree(not_a_store) == before

    def test_a_file_is_an_error(self, not_a_store: Path) -> None:
        proc = run_cli("store", "ls", str(not_a_store / "hosts"))
        assert proc.returncode == 1
        assert "it is a file, not a directory" in proc.stderr

    def test_an_empty_directory_is_an_empty_store(self, tmp_path: Path) -> None:
        proc = run_cli("store", "ls", str(tmp_path), "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["experiments"] == []

    def test_a_real_collection_and_a_standalone_store_are_read(self, collection: Path) -> None:
        proc = run_cli("store", "ls", str(collection), "--json")
        assert proc.returncode == 0, proc.stderr
        listed = [e["experiment"] for e in json.loads(proc.stdout)["experiments"]]
        assert listed == list(EXPERIMENTS)
        standalone = collection / "slow_1.0"
        proc = run_cli("store", "ls", str(standalone), "--json")
        assert proc.returncode == 0, proc.stderr

    def test_load_results_of_a_missing_path_says_so(self, tmp_path: Path) -> None:
        with pytest.raises(StoreNotFoundError, match="the directory does not exist"):
            metalab.load_results(str(tmp_path / "nope"), experiment_id="x:1")
        assert not (tmp_path / "nope").exists()


class TestAnUnknownExperiment:
    def test_the_cli_names_the_known_ones_and_the_closest(self, collection: Path) -> None:
        before = tree(collection)
        proc = run_cli("runs", "ls", str(collection), "--experiment", "quickstart")
        assert proc.returncode == 1
        assert proc.stdout == ""
        assert proc.stderr == (
            f"metalab: error: no experiment 'quickstart' in '{collection}'; did you mean "
            "'quickstart:1.0'? (experiments: quickstart:1.0, slow:1.0)\n"
        )
        assert tree(collection) == before  # no directory laid down for the typo

    @pytest.mark.parametrize("command", [["store", "verify"], ["runs", "ls"]])
    def test_every_command_that_takes_an_experiment_refuses_it(
        self, collection: Path, command: list[str]
    ) -> None:
        proc = run_cli(*command, str(collection), "--experiment", "slwo:1.0")
        assert proc.returncode == 1
        assert "did you mean 'slow:1.0'?" in proc.stderr

    def test_a_scoped_locator_is_checked_too(self, collection: Path) -> None:
        locator = f"file://{collection}?experiment_id=nothing:1"
        proc = run_cli("store", "info", locator)
        assert proc.returncode == 1
        assert "no experiment 'nothing:1'" in proc.stderr
        assert not (collection / "nothing_1").exists()

    @pytest.mark.parametrize(
        ("asked", "closest"),
        [("slow", "slow:1.0"), ("quickstrat:1.0", "quickstart:1.0"), ("Slow:1.0", "slow:1.0")],
    )
    def test_load_results_suggests_the_closest(
        self, collection: Path, asked: str, closest: str
    ) -> None:
        with pytest.raises(ExperimentNotFoundError) as caught:
            metalab.load_results(str(collection), experiment_id=asked)
        error = caught.value
        assert isinstance(error, MetalabError)
        assert isinstance(error, LookupError)
        assert error.experiment_id == asked
        assert error.known == EXPERIMENTS
        assert error.suggestion() == closest
        assert f"did you mean {closest!r}?" in str(error)

    def test_nothing_close_lists_the_known_ones(self, collection: Path) -> None:
        with pytest.raises(ExperimentNotFoundError) as caught:
            metalab.load_results(str(collection), experiment_id="zzz")
        assert "did you mean" not in str(caught.value)
        assert str(caught.value).endswith("(experiments: quickstart:1.0, slow:1.0)")

    def test_an_empty_store_says_it_has_none(self, tmp_path: Path) -> None:
        with pytest.raises(ExperimentNotFoundError, match="the store has no experiments yet"):
            metalab.load_results(str(tmp_path), experiment_id="x:1")

    def test_the_error_survives_pickling(self) -> None:
        error = ExperimentNotFoundError("slow", ["slow:1.0"], "'/x'")
        again = pickle.loads(pickle.dumps(error))
        assert str(again) == str(error)


class TestRunsOfACollection:
    def test_runs_ls_without_an_experiment_shows_each_runs_experiment(
        self, collection: Path
    ) -> None:
        proc = run_cli("runs", "ls", str(collection), "--format", "json")
        assert proc.returncode == 0, proc.stderr
        rows = json.loads(proc.stdout)
        assert sorted((r["run_id"], r["experiment_id"]) for r in rows) == [
            ("run-quic", "quickstart:1.0"),
            ("run-slow", "slow:1.0"),
        ]

    def test_runs_ls_of_one_experiment_has_no_experiment_column(self, collection: Path) -> None:
        proc = run_cli(
            "runs", "ls", str(collection), "--experiment", "slow:1.0", "--format", "json"
        )
        assert proc.returncode == 0, proc.stderr
        (row,) = json.loads(proc.stdout)
        assert "experiment_id" not in row


class TestExportOntoItself:
    def test_the_cli_refuses_a_source_that_is_the_destination(self, collection: Path) -> None:
        before = tree(collection)
        # The same directory spelled two ways.
        proc = run_cli(
            "store", "export", "--from", str(collection), "--to", f"{collection}/./", "--json"
        )
        assert proc.returncode == 2
        assert proc.stdout == ""
        assert proc.stderr == (
            "metalab: error: the source and the destination are the same store (the files "
            f"under '{collection}'); export copies from one store to another\n"
        )
        assert tree(collection) == before

    def test_a_symlink_to_the_source_is_the_same_store(
        self, collection: Path, tmp_path: Path
    ) -> None:
        link = tmp_path / "link"
        link.symlink_to(collection)
        with pytest.raises(ConfigError, match="the same store"):
            export_store(str(collection), str(link))

    def test_one_connected_store_is_the_same_store(self) -> None:
        with MemoryStoreConfig(experiment_id="m:1").connect() as store:
            store.put_run_record(make_record("m:1", "r1"))
            with pytest.raises(ConfigError, match="one connected store"):
                export_store(store, store)

    def test_two_stores_are_exported_between(self, collection: Path, tmp_path: Path) -> None:
        report = export_store(str(collection), str(tmp_path / "copy"))
        assert report.experiments == list(EXPERIMENTS)
