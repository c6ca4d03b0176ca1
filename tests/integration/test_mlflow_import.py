"""``metalab import mlflow``: an ``mlruns/`` tree written by MLflow's own client, imported.

The fixture logs with ``MlflowClient`` into a temporary file store (params, stepped
metrics with NaN and infinity, tags, a note, nested artifacts; finished, failed,
killed, running and deleted runs; a deleted experiment). Each test imports it and
compares what metalab holds with what MLflow's client reads back, field by field.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import shutil
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import metalab
from metalab.errors import ConfigError
from metalab.interop.mlflow import import_mlruns
from metalab.records import RunRecord
from metalab.store import FileStoreConfig, PostgresStoreConfig, StoreConfig, SupportsSeries
from metalab.testing import run_cli

pytestmark = pytest.mark.interop

# MLflow 3 keeps its file store behind an opt-in.
_FILE_STORE_ALLOWED = ("MLFLOW_ALLOW_FILE_STORE", "true")
_STATUS = {"FINISHED": "success", "FAILED": "failed", "KILLED": "cancelled", "RUNNING": "running"}


def _mlflow(require_module: Callable[[str, str], None]) -> Any:
    require_module("mlflow", "interop")
    return importlib.import_module("mlflow")


def _client(mlflow: Any, root: Path) -> Any:
    return mlflow.tracking.MlflowClient(tracking_uri=root.as_uri())


def _write_mlruns(mlflow: Any, root: Path, scratch: Path) -> dict[str, str]:
    """Log the fixture's runs with MLflow's client; return run ids by role."""
    client = _client(mlflow, root)
    mnist = client.create_experiment("mnist")
    ids: dict[str, str] = {}

    run = client.create_run(mnist, tags={"team": "vision", "mlflow.runName": "best"})
    rid = ids["finished"] = run.info.run_id
    client.log_param(rid, "lr", 0.01)
    client.log_param(rid, "layers", "[64, 32]")
    client.log_param(rid, "optimizer/name", "adam")  # a '/' in a key: a nested file
    for step in range(6):
        client.log_metric(rid, "loss", 1.0 / (step + 1), step=step, timestamp=1_000 + step)
    client.log_metric(rid, "acc", 0.9)
    client.log_metric(rid, "weird", math.nan, step=0)
    client.log_metric(rid, "weird", math.inf, step=1)
    client.log_metric(rid, "train/loss", 0.5, step=3)
    # Logged out of order: the latest is the highest step, then the latest time.
    client.log_metric(rid, "late", 5.0, step=5, timestamp=2_000)
    client.log_metric(rid, "late", 2.0, step=2, timestamp=3_000)
    client.log_metric(rid, "late", 4.0, step=5, timestamp=1_500)
    client.set_tag(rid, "mlflow.note.content", "the best one\nso far")
    client.set_tag(rid, "empty", "")
    files = scratch / "files"
    (files / "plots").mkdir(parents=True)
    (files / "plots" / "loss curve.png").write_bytes(b"\x89PNG fake bytes")
    (files / "config.json").write_text('{"a": 1}')
    (files / "a.txt").write_text("root text")
    (files / "a.a.txt").write_text("would share a name with a/a.txt")
    client.log_artifact(rid, str(files / "config.json"))
    client.log_artifact(rid, str(files / "a.txt"))
    client.log_artifacts(rid, str(files / "plots"), artifact_path="plots")
    client.log_artifact(rid, str(files / "a.txt"), artifact_path="a")
    client.log_artifact(rid, str(files / "a.a.txt"))  # a/a.txt and a.a.txt: one name
    client.set_terminated(rid, "FINISHED")

    failed = ids["failed"] = client.create_run(mnist).info.run_id
    client.log_param(failed, "lr", 1.0)
    client.log_metric(failed, "loss", math.inf, step=0)
    client.set_terminated(failed, "FAILED")

    killed = ids["killed"] = client.create_run(mnist).info.run_id
    client.set_terminated(killed, "KILLED")

    running = ids["running"] = client.create_run(mnist).info.run_id
    client.log_metric(running, "loss", 0.7, step=0)

    deleted = ids["deleted"] = client.create_run(mnist).info.run_id
    client.set_terminated(deleted, "FINISHED")
    client.delete_run(deleted)

    other = client.create_experiment("team/other")
    ids["other"] = client.create_run(other).info.run_id
    client.log_param(ids["other"], "x", "1")
    client.set_terminated(ids["other"], "FINISHED")

    gone = client.create_experiment("gone")
    ids["in_deleted_experiment"] = client.create_run(gone).info.run_id
    client.set_terminated(ids["in_deleted_experiment"], "FINISHED")
    client.delete_experiment(gone)
    return ids


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The fixture store, logged once per module, and its run ids by role.

    Only ``mlruns`` asks for it, once ``require_module`` found MLflow: a missing
    MLflow then skips each test, or fails it under ``CI=true``.
    """
    mlflow = importlib.import_module("mlflow")
    base = tmp_path_factory.mktemp("mlflow")
    root = base / "mlruns"
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        patch.setenv(*_FILE_STORE_ALLOWED)
        warnings.simplefilter("ignore")  # MLflow's own deprecation notices
        ids = _write_mlruns(mlflow, root, base)
    return root, ids


@pytest.fixture
def mlruns(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    require_module: Callable[[str, str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Path, dict[str, str], Any]:
    """A private copy of the fixture store (tests may damage it), its ids, and mlflow."""
    mlflow = _mlflow(require_module)  # before the module's fixture store is logged
    monkeypatch.setenv(*_FILE_STORE_ALLOWED)
    root, ids = request.getfixturevalue("pristine")
    copy = tmp_path / "mlruns"
    shutil.copytree(root, copy)
    return copy, ids, mlflow


def _records(config: StoreConfig, experiment_id: str) -> dict[str, RunRecord]:
    with metalab.load_results(config, experiment_id) as results:
        return {record.run_id: record for record in results.records}


def _same_number(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def _compare_with_mlflow(mlflow: Any, root: Path, config: StoreConfig, run_id: str) -> None:
    """Check every field of an imported run against what MLflow's client reads."""
    client = _client(mlflow, root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = client.get_run(run_id)
        histories = {key: client.get_metric_history(run_id, key) for key in theirs.data.metrics}
    experiment = client.get_experiment(theirs.info.experiment_id)
    experiment_id = experiment.name.replace("/", "_") + ":1"
    config = config.scoped(experiment_id) if not config.is_scoped else config
    with config.connect() as store:
        ours = store.get_run_record(run_id)
        assert ours is not None, f"run {run_id} was not imported"
        assert ours.experiment_id == experiment_id
        assert ours.status == _STATUS[theirs.info.status]
        assert ours.started_at.timestamp() * 1000 == pytest.approx(theirs.info.start_time)
        if theirs.info.status == "RUNNING":
            assert ours.finished_at is None
        else:
            assert ours.finished_at is not None
            assert ours.finished_at.timestamp() * 1000 == pytest.approx(theirs.info.end_time)
        assert ours.params == theirs.data.params
        assert ours.metrics.keys() == theirs.data.metrics.keys()
        for key, value in theirs.data.metrics.items():
            assert _same_number(ours.metrics[key], value), key
        user = {k: v for k, v in theirs.data.tags.items() if not k.startswith("mlflow.")}
        assert set(ours.tags) == {f"{k}={v}" if v else k for k, v in user.items()}
        extra = ours.provenance.extra
        assert extra["mlflow_tags"] == {
            k: v for k, v in theirs.data.tags.items() if k.startswith("mlflow.")
        }
        assert extra["mlflow_run_name"] == theirs.info.run_name
        assert ours.notes == theirs.data.tags.get("mlflow.note.content")
        assert isinstance(store, SupportsSeries)
        series = store.get_series(run_id)
        assert series.keys() == histories.keys()
        for key, history in histories.items():
            # metalab orders a series by step (stable); MLflow lists points as logged.
            got = series[key]
            assert list(zip(got.steps, got.seconds, map(repr, got.values), strict=True)) == sorted(
                ((m.step, m.timestamp / 1000, repr(m.value)) for m in history),
                key=lambda point: point[0],
            )
        # Artifacts: every file MLflow lists, with its bytes and their sha256.
        local = Path(client.download_artifacts(run_id, "", dst_path=str(root.parent / run_id)))
        files = {p.relative_to(local).as_posix(): p for p in local.rglob("*") if p.is_file()}
        by_path = {str(a.metadata["mlflow_path"]): a for a in ours.artifacts}
        assert by_path.keys() == files.keys()
        for rel, path in files.items():
            descriptor = by_path[rel]
            data = path.read_bytes()
            assert descriptor.content_hash == hashlib.sha256(data).hexdigest()
            assert store.get_artifact(run_id, descriptor.name) == data


class TestIntoAFileStore:
    def test_every_field_matches_what_mlflows_client_reads(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        root, ids, mlflow = mlruns
        config = FileStoreConfig(root=str(tmp_path / "store"))
        report = import_mlruns(root, config)
        assert report.ok, report.problems
        expected = {ids[k] for k in ("finished", "failed", "killed", "running", "other")}
        assert set(report.imported) == expected
        assert report.deleted == [ids["deleted"]]
        assert sorted(report.experiments.values()) == ["mnist:1", "team_other:1"]
        for run_id in expected:
            _compare_with_mlflow(mlflow, root, config, run_id)

    def test_artifact_names_are_paths_with_dots_and_unique(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        root, ids, _ = mlruns
        config = FileStoreConfig(root=str(tmp_path / "store"))
        import_mlruns(root, config)
        record = _records(config, "mnist:1")[ids["finished"]]
        names = {str(a.metadata["mlflow_path"]): a.name for a in record.artifacts}
        assert names["config.json"] == "config.json"
        assert names["a.txt"] == "a.txt"
        # a/a.txt and a.a.txt would share "a.a.txt": both get a digest of their path,
        # and so does a name with a character names cannot hold.
        assert names["a/a.txt"].startswith("a.a.txt-")
        assert names["a.a.txt"].startswith("a.a.txt-")
        assert names["plots/loss curve.png"].startswith("plots.loss-curve.png-")
        assert len(set(names.values())) == len(names)
        formats = {a.name: a.format for a in record.artifacts}
        assert formats["config.json"] == "json"
        with metalab.load_results(config, "mnist:1") as results:
            run = results.get(ids["finished"])
            assert run is not None
            assert run.artifact("config.json") == {"a": 1}

    def test_a_second_import_writes_nothing(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        root, _, _ = mlruns
        store = tmp_path / "store"
        first = import_mlruns(root, str(store))
        before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
        mtimes = {p: p.stat().st_mtime_ns for p in before}
        again = import_mlruns(root, str(store))
        assert again.imported == []
        assert sorted(again.unchanged) == sorted(first.imported)
        after = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
        assert after == before
        assert {p: p.stat().st_mtime_ns for p in after} == mtimes

    def test_a_moved_mlruns_is_still_the_same_runs(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        # meta.yaml names the absolute artifact location; an rsynced copy is elsewhere.
        root, _, _ = mlruns
        store = str(tmp_path / "store")
        first = import_mlruns(root, store)
        moved = tmp_path / "elsewhere" / "mlruns"
        shutil.move(root, moved)
        again = import_mlruns(moved, store)
        assert again.imported == []
        assert sorted(again.unchanged) == sorted(first.imported)

    def test_a_run_that_changed_is_imported_again_alone(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        root, ids, mlflow = mlruns
        config = FileStoreConfig(root=str(tmp_path / "store"))
        import_mlruns(root, config)
        client = _client(mlflow, root)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client.log_metric(ids["running"], "loss", 0.3, step=1)
            client.set_terminated(ids["running"], "FINISHED")
        again = import_mlruns(root, config)
        assert again.imported == [ids["running"]]
        record = _records(config, "mnist:1")[ids["running"]]
        assert record.status == "success"
        assert record.metrics == {"loss": 0.3}
        _compare_with_mlflow(mlflow, root, config, ids["running"])

    def test_a_run_that_only_ended_is_imported_again(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        root, ids, mlflow = mlruns
        config = FileStoreConfig(root=str(tmp_path / "store"))
        import_mlruns(root, config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _client(mlflow, root).set_terminated(ids["running"], "KILLED")
        again = import_mlruns(root, config)
        assert again.imported == [ids["running"]]
        assert _records(config, "mnist:1")[ids["running"]].status == "cancelled"

    def test_deleted_runs_and_experiments_come_with_include_deleted(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        root, ids, mlflow = mlruns
        config = FileStoreConfig(root=str(tmp_path / "store"))
        report = import_mlruns(root, config, include_deleted=True)
        assert report.ok, report.problems
        assert report.deleted == []
        assert {ids["deleted"], ids["in_deleted_experiment"]} <= set(report.imported)
        assert "gone:1" in report.experiments.values()
        _compare_with_mlflow(mlflow, root, config, ids["deleted"])

    def test_one_experiment_into_a_chosen_id(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        root, ids, _ = mlruns
        store = str(tmp_path / "store")
        report = import_mlruns(root, store, experiment="team/other", as_experiment="other:2")
        assert report.imported == [ids["other"]]
        assert list(report.experiments.values()) == ["other:2"]
        assert list(_records(FileStoreConfig(root=store), "other:2")) == [ids["other"]]
        with pytest.raises(ConfigError, match="2 MLflow experiments would go into it"):
            import_mlruns(root, store, as_experiment="all:1")
        with pytest.raises(ConfigError, match="no MLflow experiment named 'nope'"):
            import_mlruns(root, store, experiment="nope")


class TestBrokenRuns:
    def test_a_run_without_meta_yaml_is_reported_and_the_rest_imported(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        root, ids, _ = mlruns
        (next(root.glob(f"*/{ids['failed']}")) / "meta.yaml").unlink()
        store = tmp_path / "store"
        report = import_mlruns(root, str(store))
        assert not report.ok
        assert len(report.problems) == 1
        assert ids["failed"] in report.problems[0]
        assert "has no meta.yaml" in report.problems[0]
        assert ids["failed"] not in report.imported
        assert ids["finished"] in report.imported
        assert not list(store.rglob(f"*{ids['failed']}*"))

    def test_a_malformed_metric_leaves_no_trace_of_its_run(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        root, ids, _ = mlruns
        run_dir = next(root.glob(f"*/{ids['finished']}"))
        with (run_dir / "metrics" / "loss").open("a") as handle:
            handle.write("not a number\n")
        store = tmp_path / "store"
        report = import_mlruns(root, str(store))
        assert [ids["finished"] in p and "metric 'loss', line 7" in p for p in report.problems] == [
            True
        ]
        # Nothing of it: no record, no artifacts, no series.
        assert not list(store.rglob(f"*{ids['finished']}*"))


@pytest.mark.postgres
def test_into_a_postgres_store(
    mlruns: tuple[Path, dict[str, str], Any], postgres_config: PostgresStoreConfig
) -> None:
    root, ids, mlflow = mlruns
    report = import_mlruns(root, postgres_config)
    assert report.ok, report.problems
    for role in ("finished", "failed", "running", "other"):
        _compare_with_mlflow(mlflow, root, postgres_config, ids[role])
    # The index answers a query over the imported params.
    with metalab.load_results(postgres_config, "mnist:1") as results:
        found = results.filter(where="params.lr == '0.01'")
        assert [run.run_id for run in found] == [ids["finished"]]
    again = import_mlruns(root, postgres_config)
    assert again.imported == []
    assert sorted(again.unchanged) == sorted(report.imported)


def test_an_import_killed_midway_finishes_on_the_next_one(
    mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
) -> None:
    root, ids, mlflow = mlruns
    store = tmp_path / "store"
    # The child dies (SIGKILL) as it writes the series of its second run with series:
    # that run's artifacts may be written, its record is not.
    script = textwrap.dedent(
        f"""
        import os, signal
        from metalab.store import FileStore
        from metalab.interop.mlflow import import_mlruns
        real = FileStore.append_series
        calls = []
        def dying(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, *args, **kwargs)
        FileStore.append_series = dying
        import_mlruns({str(root)!r}, {str(store)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False, timeout=120)
    assert proc.returncode == -9
    # Experiments are imported in the order of their MLflow ids, which are random:
    # the runs that landed may be of either experiment.
    with FileStoreConfig(root=str(store)).connect() as landed:
        half = {record.run_id for record in landed.list_run_records()}
    assert 1 <= len(half) < 5
    report = import_mlruns(root, str(store))
    assert report.ok, report.problems
    assert set(report.unchanged) == set(half)
    assert set(report.imported) | set(half) == {
        ids[k] for k in ("finished", "failed", "killed", "running", "other")
    }
    for role in ("finished", "failed", "killed", "running"):
        _compare_with_mlflow(mlflow, root, FileStoreConfig(root=str(store)), ids[role])


class TestCommandLine:
    def test_import_then_list(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        root, ids, _ = mlruns
        store = str(tmp_path / "store")
        first = run_cli("import", "mlflow", str(root), "--to", store, "--json")
        assert first.returncode == 0, first.stderr
        data = json.loads(first.stdout)
        assert ids["finished"] in data["imported"]
        assert data["deleted"] == [ids["deleted"]]
        again = run_cli("import", "mlflow", str(root), "--to", store)
        assert again.returncode == 0, again.stderr
        assert again.stdout.split("\n")[1].split() == ["0", "5", "1", "0"]
        listed = run_cli("runs", "ls", store, "--experiment", "mnist:1", "--format", "csv")
        assert listed.returncode == 0, listed.stderr
        assert ids["finished"] in listed.stdout

    def test_include_deleted(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        root, ids, _ = mlruns
        store = str(tmp_path / "store")
        proc = run_cli("import", "mlflow", str(root), "--to", store, "--include-deleted", "--json")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["deleted"] == []
        assert {ids["deleted"], ids["in_deleted_experiment"]} <= set(data["imported"])
        assert sorted(data["experiments"].values()) == ["gone:1", "mnist:1", "team_other:1"]
        config = FileStoreConfig(root=store)
        assert ids["deleted"] in _records(config, "mnist:1")
        assert list(_records(config, "gone:1")) == [ids["in_deleted_experiment"]]

    def test_one_experiment_by_name(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        root, ids, _ = mlruns
        store = str(tmp_path / "store")
        proc = run_cli("import", "mlflow", str(root), "--to", store, "--experiment", "team/other")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split("\n")[1].split() == ["1", "0", "0", "0"]
        assert "-> team_other:1" in proc.stderr
        with FileStoreConfig(root=store).connect() as landed:
            assert [r.run_id for r in landed.list_run_records()] == [ids["other"]]

    def test_problems_exit_1_and_are_named(
        self, mlruns: tuple[Path, dict[str, str], Any], tmp_path: Path
    ) -> None:
        root, ids, _ = mlruns
        (next(root.glob(f"*/{ids['killed']}")) / "meta.yaml").write_text("status: [unclosed\n")
        proc = run_cli("import", "mlflow", str(root), "--to", str(tmp_path / "store"))
        assert proc.returncode == 1
        assert f"{ids['killed']}: meta.yaml is not YAML" in proc.stderr

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--experiment", "nope"], "no MLflow experiment named 'nope'"),
            (["--as", "x:1"], "2 MLflow experiments would go into it"),
            (["--as", "bad/id"], "invalid experiment id"),
        ],
    )
    def test_usage_errors_exit_2(
        self,
        mlruns: tuple[Path, dict[str, str], Any],
        tmp_path: Path,
        args: list[str],
        message: str,
    ) -> None:
        root, _, _ = mlruns
        if args[0] == "--as" and args[1] == "bad/id":
            args = ["--experiment", "mnist", *args]
        proc = run_cli("import", "mlflow", str(root), "--to", str(tmp_path / "s"), *args)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr
        assert not (tmp_path / "s").exists() or not list((tmp_path / "s").rglob("*.json"))
