"""Importing MLflow file stores written by hand: old and new formats, and broken ones.

The tests against MLflow's own client are in tests/integration/test_mlflow_import.py
(nox session ``interop``); these need no MLflow and run with the rest of the suite.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import metalab
from metalab.errors import ConfigError
from metalab.interop.mlflow import import_mlruns
from metalab.records import RunRecord
from metalab.store import FileStoreConfig, SupportsSeries

RUN = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
T0 = 1_780_000_000_000  # milliseconds


def experiment(root: Path, mlflow_id: str = "1", name: str = "exp", stage: str = "active") -> Path:
    path = root / mlflow_id
    path.mkdir(parents=True)
    (path / "meta.yaml").write_text(
        f"experiment_id: '{mlflow_id}'\nlifecycle_stage: {stage}\nname: {name}\n"
    )
    return path


def run(
    exp: Path,
    run_id: str = RUN,
    *,
    status: object = 3,
    end: int | None = T0 + 5_000,
    meta: str | None = None,
    metrics: dict[str, str] | None = None,
    params: dict[str, bytes] | None = None,
    artifact_uri: str | None = None,
) -> Path:
    path = exp / run_id
    path.mkdir()
    if meta is None:
        end_text = "null" if end is None else str(end)
        uri = artifact_uri or (path / "artifacts").as_uri()
        meta = (
            f"artifact_uri: {uri}\nend_time: {end_text}\nexperiment_id: '{exp.name}'\n"
            f"lifecycle_stage: active\nrun_id: {run_id}\nrun_name: r\n"
            f"start_time: {T0}\nstatus: {status}\nuser_id: me\n"
        )
    (path / "meta.yaml").write_text(meta)
    for folder, files in (("metrics", metrics or {}), ("params", params or {})):
        (path / folder).mkdir()
        for key, content in files.items():
            target = path / folder / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def records(store: Path, experiment_id: str = "exp:1") -> dict[str, RunRecord]:
    with metalab.load_results(FileStoreConfig(root=str(store)), experiment_id) as results:
        return {r.run_id: r for r in results.records}


def test_metric_lines_of_every_mlflow_version(tmp_path: Path) -> None:
    exp = experiment(tmp_path / "mlruns")
    # MLflow < 1.0 wrote no step; recent ones may add a dataset's name and digest.
    lines = f"{T0} 0.5\n{T0 + 1} 0.25 3\n{T0 + 2} 0.125 7 train abc123\n"
    run(exp, metrics={"loss": lines})
    report = import_mlruns(tmp_path / "mlruns", tmp_path / "store")
    assert report.ok, report.problems
    record = records(tmp_path / "store")[RUN]
    assert record.metrics == {"loss": 0.125}
    with FileStoreConfig(root=str(tmp_path / "store"), experiment_id="exp:1").connect() as store:
        assert isinstance(store, SupportsSeries)
        series = store.get_series(RUN)["loss"]
    assert series.steps == (0, 3, 7)
    assert series.values == (0.5, 0.25, 0.125)
    assert series.seconds == (T0 / 1000, (T0 + 1) / 1000, (T0 + 2) / 1000)
    assert record.started_at == dt.datetime.fromtimestamp(T0 / 1000, dt.UTC)
    assert record.duration_ms == 5_000


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"metrics": {"loss": f"{T0} 0.5 -1\n"}}, "step -1 is negative"),
        ({"metrics": {"loss": f"{T0} half 1\n"}}, "line 1: '1780000000000 half 1' is not"),
        ({"metrics": {"loss": f"{T0}\n"}}, "is not '<ms> <value> <step>'"),
        ({"metrics": {"loss": "\n"}}, "metric 'loss' has no points"),
        ({"params": {"lr": b"\xff\xfe"}}, "param 'lr' cannot be read"),
        ({"status": 9}, "unknown status 9"),
        ({"status": "DONE"}, "unknown status 'DONE'"),
        ({"end": None}, "the run ended (success) but meta.yaml has no end_time"),
        ({"meta": "- a list\n"}, "meta.yaml is not a mapping"),
        ({"meta": "run_id: [\n"}, "meta.yaml is not YAML"),
        ({"meta": f"run_id: {OTHER}\nstart_time: {T0}\n"}, f"names run '{OTHER}'"),
        ({"meta": f"run_id: {RUN}\nstatus: 1\n"}, "meta.yaml has no start_time"),
        ({"meta": f"run_id: {RUN}\nstatus: 1\nstart_time: -5\n"}, "not a time in milliseconds"),
    ],
)
def test_a_broken_run_is_named_and_nothing_of_it_written(
    tmp_path: Path, change: dict[str, object], reason: str
) -> None:
    exp = experiment(tmp_path / "mlruns")
    broken = run(exp, **change)  # type: ignore[arg-type]
    (broken / "artifacts").mkdir()
    (broken / "artifacts" / "model.bin").write_bytes(b"weights")
    run(exp, OTHER, metrics={"loss": f"{T0} 1.0 0\n"})
    report = import_mlruns(tmp_path / "mlruns", tmp_path / "store")
    assert report.imported == [OTHER]
    assert len(report.problems) == 1
    assert str(broken) in report.problems[0]
    assert reason in report.problems[0]
    assert not list((tmp_path / "store").rglob(f"*{RUN}*"))


def test_a_status_written_as_its_name_is_read(tmp_path: Path) -> None:
    exp = experiment(tmp_path / "mlruns")
    run(exp, status="KILLED")
    run(exp, OTHER, status="RUNNING", end=None)
    assert import_mlruns(tmp_path / "mlruns", tmp_path / "store").ok
    found = records(tmp_path / "store")
    assert (found[RUN].status, found[OTHER].status) == ("cancelled", "running")
    assert found[OTHER].finished_at is None
    assert found[OTHER].duration_ms is None


def test_an_experiment_marked_deleted_outside_the_trash_is_skipped(tmp_path: Path) -> None:
    exp = experiment(tmp_path / "mlruns", stage="deleted")
    run(exp)
    store = tmp_path / "store"
    with pytest.raises(ConfigError, match="holds no MLflow experiment"):
        import_mlruns(tmp_path / "mlruns", store)
    assert import_mlruns(tmp_path / "mlruns", store, include_deleted=True).imported == [RUN]


def test_experiments_without_meta_yaml_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    run(experiment(root))
    (root / "7").mkdir()
    (root / "models").mkdir()  # the model registry's folder: not an experiment
    report = import_mlruns(root, tmp_path / "store")
    assert report.imported == [RUN]
    assert report.problems == [f"MLflow experiment at {root / '7'}: it has no meta.yaml; skipped"]


def test_a_file_uri_is_read_and_other_uris_refused(tmp_path: Path) -> None:
    run(experiment(tmp_path / "mlruns"))
    uri = (tmp_path / "mlruns").as_uri()
    assert import_mlruns(uri, tmp_path / "store").imported == [RUN]
    with pytest.raises(ConfigError, match=r"not 'postgresql://me:\*\*\*@db/x'"):
        import_mlruns("postgresql://me:secret@db/x", tmp_path / "store")


def test_a_directory_that_is_no_mlflow_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        import_mlruns(tmp_path / "absent", tmp_path / "store")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no MLflow experiment"):
        import_mlruns(tmp_path / "empty", tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_artifacts_kept_elsewhere(tmp_path: Path) -> None:
    exp = experiment(tmp_path / "mlruns")
    outside = tmp_path / "shared-artifacts" / RUN
    (outside / "plots").mkdir(parents=True)
    (outside / "plots" / "a.png").write_bytes(b"png")
    run(exp, artifact_uri=outside.as_uri())
    run(exp, OTHER, artifact_uri="s3://bucket/path/artifacts")
    report = import_mlruns(tmp_path / "mlruns", tmp_path / "store")
    assert report.ok, report.problems
    assert report.notes == [
        (
            f"run {OTHER}: its artifacts are at 's3://bucket/path/artifacts', which is not "
            "a local directory; they were not copied"
        )
    ]
    (artifact,) = records(tmp_path / "store")[RUN].artifacts
    assert (artifact.name, artifact.format, artifact.metadata) == (
        "plots.a.png",
        "png",
        {"mlflow_path": "plots/a.png"},
    )


def test_an_artifact_rewritten_with_the_same_size_is_imported_again(tmp_path: Path) -> None:
    exp = experiment(tmp_path / "mlruns")
    run(exp, OTHER)  # without artifacts: unchanged throughout
    artifact = run(exp) / "artifacts" / "model.bin"
    artifact.parent.mkdir()
    artifact.write_bytes(b"old weights")
    store = tmp_path / "store"
    assert sorted(import_mlruns(tmp_path / "mlruns", store).imported) == sorted([RUN, OTHER])
    again = import_mlruns(tmp_path / "mlruns", store)
    assert (again.imported, sorted(again.unchanged)) == ([], sorted([RUN, OTHER]))
    # Same size, new bytes; the mtime set apart explicitly (a coarse clock may not move).
    before = artifact.stat().st_mtime_ns
    artifact.write_bytes(b"new weights")
    os.utime(artifact, ns=(before + 1_000_000_000, before + 1_000_000_000))
    third = import_mlruns(tmp_path / "mlruns", store)
    assert (third.imported, third.unchanged) == ([RUN], [OTHER])
    with metalab.load_results(FileStoreConfig(root=str(store)), "exp:1") as results:
        found = results.get(RUN)
        assert found is not None
        assert found.artifact("model.bin") == b"new weights"
    assert import_mlruns(tmp_path / "mlruns", store).imported == []


def test_names_and_stores_bound_to_an_experiment(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    run(experiment(root, name="team/vision"))
    bound = FileStoreConfig(root=str(tmp_path / "a"), experiment_id="other:1")
    report = import_mlruns(root, bound)
    assert report.imported == []
    assert (
        "bound to experiment 'other:1', and these runs go to 'team_vision:1'"
        in (report.problems[0])
    )
    right = FileStoreConfig(root=str(tmp_path / "b"), experiment_id="team_vision:1")
    assert import_mlruns(root, right).imported == [RUN]
    assert import_mlruns(root, bound, as_experiment="other:1").imported == [RUN]
    with pytest.raises(ConfigError, match="invalid experiment id"):
        import_mlruns(root, tmp_path / "c", as_experiment="a/b")


def test_a_run_of_the_store_itself_is_never_replaced(tmp_path: Path) -> None:
    run(experiment(tmp_path / "mlruns"))
    config = FileStoreConfig(root=str(tmp_path / "store"), experiment_id="exp:1")
    mine = RunRecord.running(run_id=RUN, experiment_id="exp:1")
    with config.connect() as store:
        store.put_run_record(mine)
    report = import_mlruns(tmp_path / "mlruns", config)
    assert report.imported == []
    assert "holds a run 0123456789abcdef0123456789abcdef of its own" in report.problems[0]
    assert records(tmp_path / "store")[RUN] == mine


def test_without_pyyaml_the_error_names_the_extra(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["yaml"] = None
        from metalab.errors import MissingDependencyError
        from metalab.interop.mlflow import import_mlruns
        try:
            import_mlruns({str(tmp_path)!r}, {str(tmp_path / "store")!r})
        except MissingDependencyError as exc:
            print(exc.module, exc.extra)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.split() == ["yaml", "mlflow"]
