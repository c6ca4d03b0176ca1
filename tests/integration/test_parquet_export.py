"""``export_parquet`` and ``metalab store export --to parquet://``: real stores, real files."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import math
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import metalab
from metalab._version import __version__
from metalab.errors import (
    ConfigError,
    ExperimentNotFoundError,
    MetalabWarning,
    MissingDependencyError,
    StoreNotFoundError,
)
from metalab.interop.parquet import ParquetExport, export_parquet
from metalab.records import RunRecord
from metalab.store import FileStoreConfig, PostgresStoreConfig, SupportsDelete, coerce_store_config
from metalab.testing import run_cli

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@metalab.operation
def _op(params: dict[str, Any], capture: metalab.Capture) -> None:
    n = params["n"]
    if n == 3:
        raise ValueError("three")
    capture.metric("x", n)
    capture.metric("score", n * 1.5)
    capture.metric("ok", n > 1)
    capture.metric("ratio", math.nan if n == 1 else math.inf)
    capture.metric("label", "big" if n > 1 else 7)  # a string and an int: mixed
    for step in range(3):
        capture.metric("loss", 1.0 / (step + n), step=step)


@metalab.operation
def _phases(params: dict[str, Any], capture: metalab.Capture) -> None:
    capture.metric("x", params["m"] * 10)
    capture.metric("phase", "warm" if params["m"] == 1 else 0.5, step=0)  # a mixed series


@metalab.operation
def _maybe_curve(params: dict[str, Any], capture: metalab.Capture) -> None:
    capture.metric("x", 1)
    if params["curve"]:
        for step in range(4):
            capture.metric("loss", float(step), step=step)


EXP = metalab.Experiment(
    name="arrow", version="1", operation=_op, params=metalab.grid(n=[1, 2, 3]), tags=("t",)
)
OTHER = metalab.Experiment(
    name="other", version="2", operation=_phases, params=metalab.grid(m=[1, 2])
)
ARROW_NOTE = (
    "experiment 'arrow:1', runs.parquet: columns of mixed types were turned into strings: "
    "metrics.label"
)
PHASE_RUNS_NOTE = (
    "experiment 'other:2', runs.parquet: columns of mixed types were turned into strings: "
    "metrics.phase"
)
PHASE_NOTE = (
    "experiment 'other:2', series.parquet: series columns of mixed types were turned into "
    "strings: value"
)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FileStore collection of two experiments; tests only read it."""
    root = tmp_path_factory.mktemp("parquet") / "experiments"
    metalab.run(EXP, store=root, progress=False).result()
    metalab.run(OTHER, store=root, progress=False).result()
    return root


def _expected_runs(root: Path, experiment_id: str) -> pa.Table:
    with (
        metalab.load_results(root, experiment_id) as results,
        pytest.warns(MetalabWarning, match="metrics.label"),
    ):
        return results.to_arrow()


def _metadata(path: Path) -> dict[bytes, bytes]:
    metadata = pq.read_schema(path).metadata
    assert metadata is not None
    return dict(metadata)


def _nan_free(value: object) -> object:
    """A value that compares equal to itself: NaN as a marker (NaN != NaN)."""
    return "<NaN>" if isinstance(value, float) and math.isnan(value) else value


def assert_same_table(actual: pa.Table, expected: pa.Table) -> None:
    """Same columns of the same types, same values (a NaN equals a NaN here)."""
    assert actual.schema.equals(expected.schema, check_metadata=False)
    for name in expected.column_names:
        got = [_nan_free(v) for v in actual.column(name).to_pylist()]
        assert got == [_nan_free(v) for v in expected.column(name).to_pylist()], name


def _listing(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


class TestTheFiles:
    def test_runs_parquet_holds_the_to_arrow_table_typed(
        self, collection: Path, tmp_path: Path
    ) -> None:
        out = tmp_path / "out"
        report = export_parquet(collection, out, experiment_id="arrow:1")
        runs = out / "arrow_1" / "runs.parquet"
        assert report == ParquetExport(
            directory=out,
            experiments=["arrow:1"],
            files=[runs, out / "arrow_1" / "series.parquet"],
            runs=3,
            series_points=6,
            notes=[ARROW_NOTE],
            details=report.details,
        )
        back = pq.read_table(runs)
        expected = _expected_runs(collection, "arrow:1")
        assert_same_table(back, expected)
        by_n = {row["params.n"]: row for row in back.to_pylist()}
        assert math.isnan(by_n[1]["metrics.ratio"])
        assert by_n[2]["metrics.ratio"] == math.inf
        schema = back.schema
        assert schema.field("started_at").type == pa.timestamp("us", tz="UTC")
        assert schema.field("finished_at").type == pa.timestamp("us", tz="UTC")
        assert schema.field("tags").type == pa.list_(pa.string())
        assert schema.field("params.n").type == pa.int64()
        assert schema.field("metrics.x").type == pa.int64()
        assert schema.field("metrics.score").type == pa.float64()
        assert schema.field("metrics.ok").type == pa.bool_()
        assert schema.field("metrics.ratio").type == pa.float64()
        assert schema.field("metrics.label").type == pa.string()
        assert _metadata(runs)[b"metalab.experiment_id"] == b"arrow:1"
        assert _metadata(runs)[b"metalab.version"] == __version__.encode()
        assert _listing(out) == {"arrow_1", "arrow_1/runs.parquet", "arrow_1/series.parquet"}

    def test_pandas_reads_values_as_the_records_hold_them(
        self, collection: Path, tmp_path: Path
    ) -> None:
        export_parquet(collection, tmp_path, experiment_id="arrow:1")
        frame = pd.read_parquet(tmp_path / "arrow_1" / "runs.parquet")
        assert str(frame["started_at"].dtype) == "datetime64[us, UTC]"
        records = {r.run_id: r for r in metalab.load_results(collection, "arrow:1").records}
        assert sorted(frame["run_id"]) == sorted(records)
        for row in frame.to_dict("records"):
            record = records[row["run_id"]]
            assert row["experiment_id"] == "arrow:1"
            assert row["status"] == record.status
            assert row["started_at"].to_pydatetime() == record.started_at
            assert str(row["started_at"].tz) == "UTC"
            assert list(row["tags"]) == ["t"]
            assert row["params.n"] == record.params["n"]
            n = record.params["n"]
            assert isinstance(n, int)
            if n == 3:
                assert row["status"] == "failed"
                assert row["error_type"] == "ValueError"
                assert row["error_message"] == "three"
                assert math.isnan(row["metrics.score"])  # missing in a float column
                assert pd.isna(row["metrics.label"])
                continue
            assert row["metrics.score"] == n * 1.5
            assert row["metrics.x"] == n
            assert row["metrics.ok"] == (n > 1)
            assert row["metrics.label"] == ("big" if n > 1 else "7")
            if n == 1:
                assert math.isnan(row["metrics.ratio"])
            else:
                assert row["metrics.ratio"] == math.inf

    def test_series_parquet_holds_every_point(self, collection: Path, tmp_path: Path) -> None:
        export_parquet(collection, tmp_path, experiment_id="arrow:1")
        path = tmp_path / "arrow_1" / "series.parquet"
        back = pq.read_table(path)
        with metalab.load_results(collection, "arrow:1") as results:
            assert_same_table(back, results.series_arrow())
            ids = {r.run_id: r.params["n"] for r in results.records}
        assert back.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
        assert back.schema.field("value").type == pa.float64()
        assert back.schema.field("params.n").type == pa.int64()
        assert _metadata(path)[b"metalab.experiment_id"] == b"arrow:1"
        frame = pd.read_parquet(path)
        assert isinstance(frame["run_id"].dtype, pd.CategoricalDtype)
        assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
        points = sorted(
            (ids[str(r["run_id"])], r["step"], r["value"]) for r in frame.to_dict("records")
        )
        assert points == [(n, s, 1.0 / (s + n)) for n in (1, 2) for s in range(3)]

    def test_a_collection_gives_one_directory_per_experiment(
        self, collection: Path, tmp_path: Path
    ) -> None:
        done: list[tuple[int, int | None]] = []
        report = export_parquet(
            str(collection), tmp_path, progress=lambda d, t: done.append((d, t))
        )
        assert report.experiments == ["arrow:1", "other:2"]
        assert done == [(1, 2), (2, 2)]
        assert report.runs == 5
        assert report.series_points == 6 + 2
        assert report.notes == [ARROW_NOTE, PHASE_RUNS_NOTE, PHASE_NOTE]
        assert [(d.experiment_id, d.runs, d.series_points) for d in report.details] == [
            ("arrow:1", 3, 6),
            ("other:2", 2, 2),
        ]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["arrow_1", "other_2"]
        for eid, folder in (("arrow:1", "arrow_1"), ("other:2", "other_2")):
            for name in ("runs.parquet", "series.parquet"):
                assert _metadata(tmp_path / folder / name)[b"metalab.experiment_id"] == (
                    eid.encode()
                )
        other = pq.read_table(tmp_path / "other_2" / "runs.parquet")
        assert sorted(other.column("metrics.x").to_numpy().tolist()) == [10, 20]
        phases = pq.read_table(tmp_path / "other_2" / "series.parquet")
        assert phases.schema.field("value").type == pa.string()
        assert sorted(phases.column("value").to_pylist(), key=str) == ["0.5", "warm"]

    def test_a_scoped_locator_exports_its_experiment_only(
        self, collection: Path, tmp_path: Path
    ) -> None:
        config = coerce_store_config(collection).scoped("other:2")
        report = export_parquet(config, tmp_path)
        assert report.experiments == ["other:2"]
        assert _listing(tmp_path) == {"other_2", "other_2/runs.parquet", "other_2/series.parquet"}


class TestExportingAgain:
    def test_files_are_replaced_and_a_stale_series_file_removed(self, tmp_path: Path) -> None:
        root = tmp_path / "store"
        exp = metalab.Experiment(
            name="curves", version="1", operation=_maybe_curve, params=metalab.grid(curve=[1, 0])
        )
        results = metalab.run(exp, store=root, progress=False).result()
        out = tmp_path / "out"
        first = export_parquet(root, out)
        folder = out / "curves_1"
        assert (first.runs, first.series_points) == (2, 4)
        assert (folder / "series.parquet").exists()
        with FileStoreConfig(root=str(root), experiment_id="curves:1").connect() as store:
            assert isinstance(store, SupportsDelete)
            curved = next(r for r in results.records if r.params["curve"] == 1)
            assert store.delete_run(curved.run_id)
        again = export_parquet(root, out)
        assert (again.runs, again.series_points) == (1, 0)
        assert again.files == [folder / "runs.parquet"]
        assert sorted(p.name for p in folder.iterdir()) == ["runs.parquet"]  # no temp files
        assert pq.read_table(folder / "runs.parquet").column("params.curve").to_pylist() == [0]

    def test_an_experiment_without_series_gets_no_series_file(self, tmp_path: Path) -> None:
        root = tmp_path / "store"
        exp = metalab.Experiment(
            name="flat", version="1", operation=_maybe_curve, params=metalab.grid(curve=[0])
        )
        metalab.run(exp, store=root, progress=False).result()
        report = export_parquet(root, tmp_path / "out")
        assert report.files == [tmp_path / "out" / "flat_1" / "runs.parquet"]
        assert report.notes == []

    def test_a_failed_write_leaves_no_temp_file(self, collection: Path, tmp_path: Path) -> None:
        blocker = tmp_path / "arrow_1" / "runs.parquet"
        blocker.mkdir(parents=True)  # a directory where the file goes: the rename fails
        with pytest.raises(IsADirectoryError):
            export_parquet(collection, tmp_path, experiment_id="arrow:1")
        assert _listing(tmp_path) == {"arrow_1", "arrow_1/runs.parquet"}


class TestRefusals:
    def test_a_file_as_the_directory(self, collection: Path, tmp_path: Path) -> None:
        target = tmp_path / "taken"
        target.write_text("mine")
        with pytest.raises(ConfigError, match="it is a file"):
            export_parquet(collection, target)
        assert target.read_text() == "mine"

    def test_an_unknown_experiment(self, collection: Path, tmp_path: Path) -> None:
        with pytest.raises(ExperimentNotFoundError, match=r"no experiment 'nope:1'.*arrow:1"):
            export_parquet(collection, tmp_path / "out", experiment_id="nope:1")
        assert not (tmp_path / "out").exists()

    def test_a_path_that_holds_no_store(self, tmp_path: Path) -> None:
        with pytest.raises(StoreNotFoundError, match="does not exist"):
            export_parquet(tmp_path / "nothing", tmp_path / "out")
        assert not (tmp_path / "out").exists()

    def test_a_directory_inside_the_store(self, tmp_path: Path) -> None:
        root = tmp_path / "store"
        metalab.run(OTHER, store=root, progress=False).result()
        before = _listing(root)
        with pytest.raises(ConfigError, match="inside the store's files"):
            export_parquet(root, root / "exports")
        assert _listing(root) == before

    def test_two_experiments_that_would_share_a_directory(self, tmp_path: Path) -> None:
        config = coerce_store_config(f"memory://parquet-{uuid.uuid4().hex}")
        for eid in ("c:1", "c_1"):
            with config.scoped(eid).connect() as store:
                record = RunRecord.running(run_id=f"{eid[-1]}{'a' * 15}", experiment_id=eid)
                store.put_run_record(record.succeeded(metrics={"x": 1}))
        with pytest.raises(ConfigError, match=r"'c:1' and 'c_1' would both be exported"):
            export_parquet(config, tmp_path / "out")
        assert not (tmp_path / "out").exists()

    def test_without_pyarrow_the_error_names_the_extra(
        self, collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "pyarrow", None)
        with pytest.raises(MissingDependencyError, match=r"metalab\[arrow\]"):
            export_parquet(collection, tmp_path / "out")
        assert not (tmp_path / "out").exists()


class TestCommandLine:
    def test_table_and_notes(self, collection: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        proc = run_cli("store", "export", "--from", str(collection), "--to", f"parquet://{out}")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].split() == ["experiment", "runs", "series", "points", "files"]
        assert lines[1].split() == [
            "arrow:1",
            "3",
            "6",
            "arrow_1/runs.parquet,",
            "arrow_1/series.parquet",
        ]
        assert lines[2].split()[:3] == ["other:2", "2", "2"]
        assert proc.stderr.splitlines() == [
            f"metalab: {note}" for note in (ARROW_NOTE, PHASE_RUNS_NOTE, PHASE_NOTE)
        ]
        assert pq.read_table(out / "arrow_1" / "runs.parquet").num_rows == 3

    def test_json(self, collection: Path, tmp_path: Path) -> None:
        proc = run_cli(
            "store",
            "export",
            "--from",
            str(collection),
            "--to",
            "parquet://exports",
            "--experiment",
            "arrow:1",
            "--json",
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        assert json.loads(proc.stdout) == {
            "directory": "exports",
            "experiments": ["arrow:1"],
            "files": ["exports/arrow_1/runs.parquet", "exports/arrow_1/series.parquet"],
            "runs": 3,
            "series_points": 6,
            "notes": [ARROW_NOTE],
        }
        assert _listing(tmp_path) == {
            "exports",
            "exports/arrow_1",
            "exports/arrow_1/runs.parquet",
            "exports/arrow_1/series.parquet",
        }

    @pytest.mark.parametrize(
        ("extra", "code", "message"),
        [
            (["--to", "parquet://"], 2, "'parquet://' names no directory"),
            (["--to", "parquet://out", "--overwrite"], 2, "--overwrite apply to store targets"),
            (["--to", "parquet://out", "--no-artifacts"], 2, "--no-artifacts apply to store"),
            (["--to", "parquet://taken"], 2, "it is a file, not a directory"),
            (["--to", "parquet://out", "--experiment", "nope:1"], 1, "no experiment 'nope:1'"),
        ],
    )
    def test_bad_input_is_one_line_and_writes_nothing(
        self, collection: Path, tmp_path: Path, extra: list[str], code: int, message: str
    ) -> None:
        (tmp_path / "taken").write_text("mine")
        before = _listing(tmp_path)
        proc = run_cli("store", "export", "--from", str(collection), *extra, cwd=tmp_path)
        assert proc.returncode == code, proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("metalab: error: ")
        assert message in lines[0]
        assert proc.stdout == ""
        assert _listing(tmp_path) == before
        assert (tmp_path / "taken").read_text() == "mine"

    def test_help_shows_the_parquet_form(self) -> None:
        proc = run_cli("store", "export", "--help")
        assert proc.returncode == 0
        assert "--to parquet:///data/exports" in proc.stdout


@pytest.mark.postgres
def test_a_postgres_store_exports_like_a_file_store(
    postgres_config: PostgresStoreConfig, tmp_path: Path
) -> None:
    metalab.run(EXP, store=postgres_config, progress=False).result()
    out = tmp_path / "out"
    report = export_parquet(postgres_config, out)
    assert report.experiments == ["arrow:1"]
    assert (report.runs, report.series_points) == (3, 6)
    assert report.notes == [ARROW_NOTE]
    with (
        metalab.load_results(postgres_config, "arrow:1") as results,
        pytest.warns(MetalabWarning, match="metrics.label"),
    ):
        expected = results.to_arrow()
    assert_same_table(pq.read_table(out / "arrow_1" / "runs.parquet"), expected)
    series = pq.read_table(out / "arrow_1" / "series.parquet")
    assert sorted(series.column("step").to_numpy().tolist()) == [0, 0, 1, 1, 2, 2]
    assert _metadata(out / "arrow_1" / "series.parquet")[b"metalab.experiment_id"] == b"arrow:1"


@pytest.mark.interop
def test_duckdb_reads_every_experiment_with_one_glob(
    collection: Path, tmp_path: Path, require_module: Callable[[str, str], None]
) -> None:
    require_module("duckdb", "interop")
    duckdb: Any = importlib.import_module("duckdb")
    export_parquet(collection, tmp_path)
    with duckdb.connect() as con:
        count, mean = con.execute(
            'SELECT count(*), avg("metrics.x") '
            f"FROM read_parquet('{tmp_path}/*/runs.parquet', union_by_name = true)"
        ).fetchone()
        assert count == 5
        assert mean == pytest.approx((1 + 2 + 10 + 20) / 4)  # the failed run has no x
        by_experiment = con.execute(
            "SELECT experiment_id, count(*) "
            f"FROM read_parquet('{tmp_path}/*/runs.parquet', union_by_name = true) "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        assert by_experiment == [("arrow:1", 3), ("other:2", 2)]
        curve = con.execute(
            'SELECT "params.n", step, value '
            f"FROM read_parquet('{tmp_path}/arrow_1/series.parquet') "
            "WHERE metric = 'loss' ORDER BY ALL"
        ).fetchall()
        assert curve == [(n, s, 1.0 / (s + n)) for n in (1, 2) for s in range(3)]
        keys = con.execute(
            "SELECT decode(value) FROM parquet_kv_metadata("
            f"'{tmp_path}/other_2/runs.parquet') WHERE decode(key) = 'metalab.experiment_id'"
        ).fetchall()
        assert keys == [("other:2",)]
