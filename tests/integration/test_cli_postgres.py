"""The ``metalab`` command line against a real PostgresStore (subprocesses)."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from metalab.records import Provenance, RunRecord, utc_now
from metalab.series import SeriesPoint
from metalab.store import FileStoreConfig, PostgresStoreConfig
from metalab.testing import run_cli

EXP = "cli:1.0"
T0 = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)


def _locator(config: PostgresStoreConfig) -> str:
    joiner = "&" if "?" in config.connection_string else "?"
    return (
        f"{config.connection_string}{joiner}file_root={quote(config.file_root)}"
        f"&schema={config.schema}"
    )


@pytest.fixture
def filled(postgres_config: PostgresStoreConfig) -> PostgresStoreConfig:
    with postgres_config.scoped(EXP).connect() as store:
        for i in range(6):
            rec = RunRecord.running(
                run_id=f"{i:016x}", experiment_id=EXP, params={"i": i}, started_at=T0
            )
            art = store.put_artifact(rec.run_id, "blob", f"b{i}".encode())
            store.put_run_record(rec.succeeded(metrics={"m": i}, artifacts=(art,)))
    return postgres_config


class TestInspect:
    def test_ls_and_info(self, filled: PostgresStoreConfig) -> None:
        locator = _locator(filled)
        ls = run_cli("store", "ls", locator, "--json")
        assert ls.returncode == 0, ls.stderr
        assert json.loads(ls.stdout)["experiments"] == [
            {"experiment": EXP, "runs": 6, "success": 6, "failed": 0, "cancelled": 0, "running": 0}
        ]
        info = run_cli("store", "info", locator, "--json")
        assert info.returncode == 0, info.stderr
        data = json.loads(info.stdout)
        assert data["backend"] == "PostgresStore"
        assert data["index"] == "up to date"
        assert data["experiments"] == [EXP]

    def test_runs_ls_answers_from_the_index(self, filled: PostgresStoreConfig) -> None:
        proc = run_cli(
            "runs",
            "ls",
            _locator(filled),
            "--experiment",
            EXP,
            "--where",
            "metrics.m >= 3",
            "--sort=-metrics.m",
            "--format",
            "json",
        )
        assert proc.returncode == 0, proc.stderr
        assert [r["metrics.m"] for r in json.loads(proc.stdout)] == [5, 4, 3]

    def test_passwords_never_reach_the_output(self, tmp_path: Path) -> None:
        locator = f"postgresql://me:hunter2@127.0.0.1:1/db?file_root={quote(str(tmp_path))}"
        proc = run_cli("store", "ls", locator)
        assert proc.returncode == 0  # the files (none, an empty root) answered for the index
        assert "hunter2" not in proc.stderr + proc.stdout
        missing = run_cli("store", "ls", locator.replace("file_root=", "file_root=/nothing"))
        assert missing.returncode == 1
        assert "no metalab store at '/nothing" in missing.stderr
        assert "hunter2" not in missing.stderr + missing.stdout


class TestAnIndexThatCannotAnswer:
    def test_a_stale_index_is_reported_and_the_files_answer(
        self, filled: PostgresStoreConfig
    ) -> None:
        locator = _locator(filled)
        late = RunRecord.running(run_id="f" * 16, experiment_id=EXP, started_at=T0)
        with FileStoreConfig(root=filled.file_root).connect() as files:
            files.put_run_record(late.succeeded())  # as if the index had been down
            files.mark_index_stale([EXP])
        for command in ("ls", "info", "gc"):
            proc = run_cli("store", command, locator, "--json")
            assert proc.returncode == 0, proc.stderr
            data = json.loads(proc.stdout)
            assert data["index"] == "stale", command
            assert "metalab store sync-index" in data["index_problem"]
        listing = json.loads(run_cli("store", "ls", locator, "--json").stdout)
        assert [e["runs"] for e in listing["experiments"]] == [7]  # the files' count
        table = run_cli("store", "ls", locator)
        assert table.returncode == 0
        assert table.stdout.splitlines()[1].split()[:2] == [EXP, "7"]
        assert "metalab: warning: the index is stale" in table.stderr
        verify = run_cli("store", "verify", locator, "--json")
        assert verify.returncode == 1
        assert json.loads(verify.stdout)["problems"][0].startswith("the index is stale")
        assert run_cli("store", "sync-index", locator).returncode == 0
        synced = run_cli("store", "ls", locator, "--json")
        assert json.loads(synced.stdout)["index"] == "up to date"
        assert run_cli("store", "verify", locator).returncode == 0

    def test_an_unreachable_index_is_reported_and_the_files_answer(self, tmp_path: Path) -> None:
        root = tmp_path / "files"
        with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
            for i in range(3):
                rec = RunRecord.running(run_id=f"{i:016x}", experiment_id=EXP, started_at=T0)
                files.put_run_record(rec.succeeded())
        # Nothing listens on port 1: every connection is refused at once.
        locator = (
            f"postgresql://metalab@127.0.0.1:1/db?file_root={quote(str(root))}"
            "&pool_timeout=1&connect_timeout=1"
        )
        for command in ("ls", "info", "gc"):
            proc = run_cli("store", command, locator, "--json")
            assert proc.returncode == 0, proc.stderr
            data = json.loads(proc.stdout)
            assert data["index"] == "unreachable", command
            assert "the files answered instead" in data["index_problem"]
        listing = json.loads(run_cli("store", "ls", locator, "--json").stdout)
        assert listing["experiments"][0]["runs"] == 3
        info = run_cli("store", "info", locator)
        assert info.returncode == 0
        assert "index          unreachable" in info.stdout
        assert "metalab: warning: the postgres index at " in info.stderr
        verify = run_cli("store", "verify", locator)
        assert verify.returncode == 1
        assert verify.stdout.startswith("PROBLEM  the postgres index at ")
        assert "checked 3 records" in verify.stdout


class TestGcOverTheIndex:
    def test_a_dead_writers_run_leaves_the_files_and_the_index(
        self, filled: PostgresStoreConfig
    ) -> None:
        writer = subprocess.Popen([sys.executable, "-c", "pass"])
        writer.wait()
        stuck = RunRecord.running(
            run_id="d" * 16,
            experiment_id=EXP,
            started_at=utc_now(),
            provenance=Provenance(host=socket.gethostname(), pid=writer.pid),
        )
        with filled.scoped(EXP).connect() as store:
            store.put_run_record(stuck)
        locator = _locator(filled)
        proc = run_cli("store", "gc", locator, "--older-than", "0s", "--apply", "--json")
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert [r["run_id"] for r in report["stuck_runs"]] == ["d" * 16]
        assert report["index"] == "up to date"
        with filled.scoped(EXP).connect() as store:
            assert store.get_run_record("d" * 16) is None
            assert store.files.get_run_record("d" * 16) is None
        assert run_cli("store", "verify", locator).returncode == 0


class TestVerifyAndRepair:
    def test_a_drifted_index_is_found_then_synced(
        self, filled: PostgresStoreConfig, postgres_url: str
    ) -> None:
        locator = _locator(filled)
        clean = run_cli("store", "verify", locator)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE run_id = %s").format(
                    sql.Identifier(filled.schema, "runs")
                ),
                (f"{2:016x}",),
            )
        drifted = run_cli("store", "verify", locator, "--json")
        assert drifted.returncode == 1
        problems = json.loads(drifted.stdout)["problems"]
        assert any(f"{2:016x}" in p and "not in the index" in p for p in problems)
        # The file changes too: the index now differs from it.
        run_file = Path(filled.file_root) / "cli_1.0" / "runs" / f"{3:016x}.json"
        record = RunRecord.running(run_id=f"{3:016x}", experiment_id=EXP, started_at=T0)
        with FileStoreConfig(root=filled.file_root, experiment_id=EXP).connect() as files:
            files.put_run_record(record.failed(RuntimeError("edited on disk")))
        assert run_file.exists()
        differs = json.loads(run_cli("store", "verify", locator, "--json").stdout)["problems"]
        assert any(f"{3:016x}" in p and "differs" in p for p in differs)
        sync = run_cli("store", "sync-index", locator, "--json")
        assert sync.returncode == 0, sync.stderr
        assert json.loads(sync.stdout)["indexed"] >= 2
        assert run_cli("store", "verify", locator).returncode == 0

    def test_series_that_drifted_from_their_files_are_found_then_synced(
        self, filled: PostgresStoreConfig
    ) -> None:
        locator = _locator(filled)
        with filled.scoped(EXP).connect() as store:
            for i in (1, 2):
                store.append_series(f"{i:016x}", [SeriesPoint("loss", 0, 0.5, 1.0)], restart=True)
        clean = json.loads(run_cli("store", "verify", locator, "--json").stdout)
        assert clean["ok"], clean
        assert clean["checked"]["index series"] == 2
        with FileStoreConfig(root=filled.file_root, experiment_id=EXP).connect() as files:
            files.append_series(f"{1:016x}", [SeriesPoint("loss", 1, 0.25, 2.0)])  # index missed
            files.append_series(f"{3:016x}", [SeriesPoint("loss", 0, 0.5, 1.0)], restart=True)
        (Path(filled.file_root) / "cli_1.0" / "series" / f"{2:016x}.jsonl").unlink()
        problems = json.loads(run_cli("store", "verify", locator, "--json").stdout)["problems"]
        assert sorted(problems) == [
            f"the series of run {1:016x} ({EXP}) differs between the index and the files",
            f"the series of run {2:016x} ({EXP}) is in the index only",
            f"the series of run {3:016x} ({EXP}) is in the files but not in the index",
        ]
        assert run_cli("store", "sync-index", locator).returncode == 0
        assert run_cli("store", "verify", locator).returncode == 0

    def test_rebuild_index(self, filled: PostgresStoreConfig) -> None:
        proc = run_cli("store", "rebuild-index", _locator(filled))
        assert proc.returncode == 0, proc.stderr
        assert "indexed 6 record(s)" in proc.stdout
        as_json = run_cli("store", "rebuild-index", _locator(filled), "--json")
        assert as_json.returncode == 0, as_json.stderr
        report = json.loads(as_json.stdout)
        assert report["indexed"] == 6
        assert report["seconds"] >= 0


class TestExportBothWays:
    def test_file_to_postgres_to_file(
        self, tmp_path: Path, postgres_config: PostgresStoreConfig
    ) -> None:
        source = tmp_path / "plain"
        with FileStoreConfig(root=str(source), experiment_id=EXP).connect() as store:
            for i in range(4):
                rec = RunRecord.running(run_id=f"{i:016x}", experiment_id=EXP, started_at=T0)
                art = store.put_artifact(rec.run_id, "blob", f"payload {i}".encode())
                store.put_run_record(rec.succeeded(artifacts=(art,)))
        into_pg = run_cli(
            "store", "export", "--from", str(source), "--to", _locator(postgres_config), "--json"
        )
        assert into_pg.returncode == 0, into_pg.stderr
        assert json.loads(into_pg.stdout)["counts"]["artifacts"]["copied"] == 4
        back = tmp_path / "back"
        out_of_pg = run_cli(
            "store", "export", "--from", _locator(postgres_config), "--to", str(back), "--json"
        )
        assert out_of_pg.returncode == 0, out_of_pg.stderr
        counts = json.loads(out_of_pg.stdout)["counts"]
        assert counts["records"]["copied"] == 4
        assert counts["artifacts"]["copied"] == 4
        blob = back / "cli_1.0" / "artifacts" / f"{1:016x}" / "blob.bin"
        assert blob.read_bytes() == b"payload 1"
        again = json.loads(
            run_cli(
                "store", "export", "--from", _locator(postgres_config), "--to", str(back), "--json"
            ).stdout
        )
        assert again["counts"]["records"]["skipped"] == 4
