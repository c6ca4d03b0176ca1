"""The ``metalab`` command line, run as a real subprocess against FileStores."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metalab.records import Provenance, RunRecord, utc_now
from metalab.store._file import FileStoreConfig
from metalab.testing import run_cli

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def put_running(tmp_path: Path, run_id: str, provenance: Provenance) -> Path:
    """Store a running run that starts now, with an artifact and a log.

    Now, not earlier: a pid whose process started after its run began counts as
    reused, and the writer named here may be this test process.
    """
    root = tmp_path / "standalone"
    with FileStoreConfig(root=str(root), experiment_id="gc:1").connect() as store:
        store.put_run_record(
            RunRecord.running(
                run_id=run_id,
                experiment_id="gc:1",
                started_at=utc_now(),
                provenance=provenance,
            )
        )
        store.put_artifact(run_id, "weights", b"w")
        store.put_log(run_id, "run", "started\n")
    return root / "gc_1"


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    root = tmp_path / "experiments"
    config = FileStoreConfig(root=str(root))
    with config.scoped("alpha:1").connect() as store:
        for i in range(5):
            rec = RunRecord.running(
                run_id=f"{i:016x}",
                experiment_id="alpha:1",
                params={"lr": 0.1 * (i + 1)},
                started_at=T0,
            )
            art = store.put_artifact(rec.run_id, "weights", f"w{i}".encode())
            if i == 4:
                store.put_run_record(rec)  # stuck in running since 2026-03-01
            elif i == 3:
                store.put_run_record(rec.failed(RuntimeError("boom")))
            else:
                store.put_run_record(rec.succeeded(metrics={"acc": 0.5 + i / 10}, artifacts=(art,)))
    with config.scoped("beta:2").connect() as store:
        rec = RunRecord.running(run_id="b" * 16, experiment_id="beta:2", started_at=T0)
        store.put_run_record(rec.succeeded())
    return root


class TestHelpAndUsage:
    @pytest.mark.parametrize(
        "args",
        [["--help"], ["store", "--help"], ["store", "export", "--help"], ["runs", "ls", "--help"]],
    )
    def test_help_everywhere(self, args: list[str]) -> None:
        proc = run_cli(*args)
        assert proc.returncode == 0
        assert "usage:" in proc.stdout

    def test_missing_arguments_are_usage_errors(self) -> None:
        proc = run_cli("store", "export", "--from", "x")
        assert proc.returncode == 2
        assert "--to" in proc.stderr

    def test_no_command_is_a_usage_error(self) -> None:
        assert run_cli().returncode == 2

    def test_unknown_scheme_is_one_readable_line(self) -> None:
        proc = run_cli("store", "ls", "s3://bucket/x")
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("metalab: error: unknown store scheme 's3'")

    def test_a_store_without_an_index_cannot_rebuild_one(self, collection: Path) -> None:
        proc = run_cli("store", "rebuild-index", str(collection))
        assert proc.returncode == 2
        assert "SupportsIndexRebuild" in proc.stderr


class TestStoreLsAndInfo:
    def test_ls_counts_runs_by_status(self, collection: Path) -> None:
        proc = run_cli("store", "ls", str(collection), "--json")
        assert proc.returncode == 0, proc.stderr
        listing = json.loads(proc.stdout)
        assert listing["index"] is None
        assert listing["problems"] == []
        assert listing["experiments"] == [
            {
                "experiment": "alpha:1",
                "runs": 5,
                "success": 3,
                "failed": 1,
                "cancelled": 0,
                "running": 1,
            },
            {
                "experiment": "beta:2",
                "runs": 1,
                "success": 1,
                "failed": 0,
                "cancelled": 0,
                "running": 0,
            },
        ]

    def test_ls_as_a_table(self, collection: Path) -> None:
        proc = run_cli("store", "ls", str(collection))
        assert proc.stdout.splitlines()[0].split() == [
            "experiment",
            "runs",
            "success",
            "failed",
            "cancelled",
            "running",
        ]

    def test_info(self, collection: Path) -> None:
        proc = run_cli("store", "info", str(collection / "alpha_1"), "--json")
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout)
        assert info["backend"] == "FileStore"
        assert info["experiments"] == ["alpha:1"]
        assert info["runs"] == 5
        assert info["bytes"] > 0


class TestExportAndVerify:
    def test_export_then_verify(self, collection: Path, tmp_path: Path) -> None:
        proc = run_cli(
            "store", "export", "--from", str(collection), "--to", str(tmp_path / "b"), "--json"
        )
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["counts"]["records"]["copied"] == 6
        again = json.loads(
            run_cli(
                "store", "export", "--from", str(collection), "--to", str(tmp_path / "b"), "--json"
            ).stdout
        )
        assert again["counts"]["records"] == {
            "copied": 0,
            "skipped": 6,
            "conflicts": 0,
            "failed": 0,
        }
        verify = run_cli("store", "verify", str(tmp_path / "b"))
        assert verify.returncode == 0, verify.stdout
        assert "0 problem(s)" in verify.stdout

    def test_verify_finds_a_corrupt_record_and_a_tampered_artifact(self, collection: Path) -> None:
        exp = collection / "alpha_1"
        before = {p: p.read_bytes() for p in exp.rglob("*") if p.is_file()}
        (exp / "runs" / f"{0:016x}.json").write_bytes(b'{"schema_version":1,"run_id":')
        (exp / "artifacts" / f"{1:016x}" / "weights.bin").write_bytes(b"tampered")
        proc = run_cli("store", "verify", str(collection), "--json")
        assert proc.returncode == 1
        problems = json.loads(proc.stdout)["problems"]
        assert any(f"{0:016x}.json" in p for p in problems)
        assert any("weights" in p and "sha256" in p for p in problems)
        after = {p: p.read_bytes() for p in exp.rglob("*") if p.is_file() and p.name != ".lock"}
        assert after.keys() <= before.keys()  # verify changes nothing


@pytest.fixture
def corrupt(collection: Path) -> Path:
    """One record of alpha:1 cut short, as a crash of an old writer could leave it."""
    path = collection / "alpha_1" / "runs" / f"{0:016x}.json"
    path.write_bytes(b'{"schema_version":1,"run_id":')
    return path


def named(problem: str, path: Path) -> bool:
    return f"corrupt record at '{path}'" in problem and "truncated" in problem


class TestACorruptRecordIsReportedBesideTheRest:
    def test_store_ls(self, collection: Path, corrupt: Path) -> None:
        proc = run_cli("store", "ls", str(collection), "--json")
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr == ""
        listing = json.loads(proc.stdout)
        assert [(e["experiment"], e["runs"]) for e in listing["experiments"]] == [
            ("alpha:1", 4),
            ("beta:2", 1),
        ]
        (problem,) = listing["problems"]
        assert named(problem, corrupt)
        table = run_cli("store", "ls", str(collection))
        assert table.returncode == 1
        assert [line.split()[:2] for line in table.stdout.splitlines()[1:]] == [
            ["alpha:1", "4"],
            ["beta:2", "1"],
        ]
        (line,) = table.stderr.splitlines()
        assert line.startswith("metalab: problem: ")
        assert named(line, corrupt)

    def test_store_info(self, collection: Path, corrupt: Path) -> None:
        proc = run_cli("store", "info", str(collection / "alpha_1"), "--json")
        assert proc.returncode == 1, proc.stderr
        info = json.loads(proc.stdout)
        assert info["runs"] == 4
        assert [named(p, corrupt) for p in info["problems"]] == [True]
        text = run_cli("store", "info", str(collection / "alpha_1"))
        assert text.returncode == 1
        assert "runs           4" in text.stdout
        assert named(text.stderr, corrupt)

    def test_store_gc_still_does_the_rest(self, collection: Path, corrupt: Path) -> None:
        temp = collection / "beta_2" / "runs" / ".0123.partial"
        temp.write_bytes(b"half")
        os.utime(temp, (time.time() - 3 * 86400, time.time() - 3 * 86400))
        proc = run_cli("store", "gc", str(collection), "--apply", "--json")
        assert proc.returncode == 1, proc.stderr
        report = json.loads(proc.stdout)
        assert report["temp_files"] == [str(temp)]
        assert not temp.exists()
        assert [r["run_id"] for r in report["unknown_runs"]] == [f"{4:016x}"]
        assert [named(p, corrupt) for p in report["problems"]] == [True]
        text = run_cli("store", "gc", str(collection))
        assert text.returncode == 1
        assert "left alone run" in text.stdout
        assert named(text.stderr, corrupt)

    def test_runs_ls(self, collection: Path, corrupt: Path) -> None:
        proc = run_cli("runs", "ls", str(collection), "--experiment", "alpha:1", "--format", "csv")
        assert proc.returncode == 1
        rows = list(csv.DictReader(io.StringIO(proc.stdout)))
        assert [r["run_id"] for r in rows] == [f"{i:016x}" for i in (1, 2, 3, 4)]
        (line,) = proc.stderr.splitlines()
        assert line.startswith("metalab: problem: ")
        assert named(line, corrupt)

    def test_store_export(self, collection: Path, corrupt: Path, tmp_path: Path) -> None:
        proc = run_cli(
            "store", "export", "--from", str(collection), "--to", str(tmp_path / "b"), "--json"
        )
        assert proc.returncode == 1, proc.stderr
        report = json.loads(proc.stdout)
        assert report["counts"]["records"] == {
            "copied": 5,
            "skipped": 0,
            "conflicts": 0,
            "failed": 1,
        }
        assert [named(p, corrupt) for p in report["problems"]] == [True]
        assert (tmp_path / "b" / "beta_2" / "runs" / f"{'b' * 16}.json").exists()
        text = run_cli("store", "export", "--from", str(collection), "--to", str(tmp_path / "c"))
        assert text.returncode == 1
        assert named(text.stderr, corrupt)


class TestGc:
    def test_dry_run_then_apply(self, collection: Path) -> None:
        temp = collection / "alpha_1" / "runs" / ".0123.partial"
        temp.write_bytes(b"half")
        old = time.time() - 3 * 86400
        os.utime(temp, (old, old))
        dry = run_cli("store", "gc", str(collection), "--json")
        assert dry.returncode == 0, dry.stderr
        plan = json.loads(dry.stdout)
        assert plan["applied"] is False
        assert plan["temp_files"] == [str(temp)]
        # The fixture's stuck run names no process: nothing says it is abandoned.
        assert plan["stuck_runs"] == []
        assert [(r["experiment_id"], r["run_id"]) for r in plan["unknown_runs"]] == [
            ("alpha:1", f"{4:016x}")
        ]
        assert temp.exists()
        applied = run_cli("store", "gc", str(collection), "--apply")
        assert applied.returncode == 0, applied.stderr
        assert not temp.exists()
        stuck = collection / "alpha_1" / "runs" / f"{4:016x}.json"
        assert stuck.exists()
        assert "cannot tell whether it is alive" in applied.stdout
        forced = run_cli("store", "gc", str(collection), "--apply", "--include-unknown")
        assert forced.returncode == 0, forced.stderr
        assert not stuck.exists()
        assert (collection / "alpha_1" / "runs" / f"{3:016x}.json").exists()

    def test_young_runs_are_kept(self, collection: Path) -> None:
        proc = run_cli(
            "store", "gc", str(collection), "--older-than", "100000d", "--include-unknown", "--json"
        )
        assert json.loads(proc.stdout)["stuck_runs"] == []

    def test_bad_age(self, collection: Path) -> None:
        proc = run_cli("store", "gc", str(collection), "--older-than", "soon")
        assert proc.returncode == 2
        assert "invalid age 'soon'" in proc.stderr

    def test_a_run_whose_process_is_alive_is_never_removed(self, tmp_path: Path) -> None:
        # This test process wrote the record and is still running.
        root = put_running(tmp_path, "a" * 16, Provenance.current())
        for unknown in ([], ["--include-unknown"]):
            proc = run_cli(
                "store", "gc", str(root), "--older-than", "0s", "--apply", "--json", *unknown
            )
            assert proc.returncode == 0, proc.stderr
            report = json.loads(proc.stdout)
            assert report["stuck_runs"] == []
            assert [r["run_id"] for r in report["alive_runs"]] == ["a" * 16]
            assert report["alive_runs"][0]["pid"] == os.getpid()
            assert (root / "runs" / f"{'a' * 16}.json").exists()

    def test_a_run_whose_process_was_killed_is_removed(self, tmp_path: Path) -> None:
        writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        provenance = Provenance(host=socket.gethostname(), pid=writer.pid)
        writer.kill()
        writer.wait()
        root = put_running(tmp_path, "d" * 16, provenance)
        dry = run_cli("store", "gc", str(root), "--older-than", "0s")
        assert dry.returncode == 0, dry.stderr
        assert f"would remove run {'d' * 16}" in dry.stdout
        assert f"its process {writer.pid} on {socket.gethostname()} is gone" in dry.stdout
        proc = run_cli("store", "gc", str(root), "--older-than", "0s", "--apply", "--json")
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert [(r["run_id"], r["writer"]) for r in report["stuck_runs"]] == [("d" * 16, "dead")]
        assert not (root / "runs" / f"{'d' * 16}.json").exists()
        assert not (root / "artifacts" / ("d" * 16)).exists()
        assert not (root / "logs" / f"{'d' * 16}_run.log").exists()

    def test_a_run_of_another_host_is_reported_and_kept(self, tmp_path: Path) -> None:
        elsewhere = Provenance(host=f"{socket.gethostname()}.elsewhere", pid=os.getpid())
        root = put_running(tmp_path, "e" * 16, elsewhere)
        proc = run_cli("store", "gc", str(root), "--older-than", "0s", "--apply")
        assert proc.returncode == 0, proc.stderr
        assert f"left alone run {'e' * 16}" in proc.stdout
        assert "cannot tell whether it is alive" in proc.stdout
        assert "--include-unknown removes it" in proc.stdout
        assert (root / "runs" / f"{'e' * 16}.json").exists()

    def test_json_lists_each_category(self, tmp_path: Path) -> None:
        writer = subprocess.Popen([sys.executable, "-c", "pass"])
        writer.wait()
        host = socket.gethostname()
        root = put_running(tmp_path, "d" * 16, Provenance(host=host, pid=writer.pid))
        put_running(tmp_path, "a" * 16, Provenance.current())
        put_running(tmp_path, "e" * 16, Provenance(host=f"{host}.elsewhere", pid=1))
        put_running(tmp_path, "0" * 16, Provenance())  # written by metalab 0.1
        with FileStoreConfig(root=str(root)).connect() as store:
            store.put_artifact("a" * 16, "model", b"v1")
            store.put_artifact("a" * 16, "model", b"v2")  # a new file; the old one goes
        leftover = root / "artifacts" / ("a" * 16) / "model.bin"
        leftover.write_bytes(b"v1")  # as if the replacing writer crashed before removing it
        temp = root / "runs" / ".0123.partial"
        temp.write_bytes(b"half")
        proc = run_cli("store", "gc", str(root), "--older-than", "0s", "--json")
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["temp_files"] == [str(temp)]
        assert report["unreferenced_artifacts"] == [str(leftover)]
        runs = {
            key: [r["run_id"] for r in report[key]]
            for key in ("stuck_runs", "changed_runs", "alive_runs", "unknown_runs")
        }
        assert runs == {
            "stuck_runs": ["d" * 16],
            "changed_runs": [],
            "alive_runs": ["a" * 16],
            "unknown_runs": ["0" * 16, "e" * 16],
        }
        assert report["problems"] == []
        applied = run_cli("store", "gc", str(root), "--older-than", "0s", "--apply", "--json")
        assert applied.returncode == 0, applied.stderr
        assert json.loads(applied.stdout)["unreferenced_artifacts"] == [str(leftover)]
        assert not leftover.exists()
        verify = run_cli("store", "verify", str(root))
        assert verify.returncode == 0, verify.stdout  # the named artifact is intact


class TestRunsLs:
    def test_where_sort_limit_as_csv(self, collection: Path) -> None:
        proc = run_cli(
            "runs",
            "ls",
            str(collection),
            "--experiment",
            "alpha:1",
            "--where",
            'status == "success" and params.lr >= 0.2',
            "--sort",
            "metrics.acc desc",
            "--limit",
            "5",
            "--format",
            "csv",
        )
        assert proc.returncode == 0, proc.stderr
        rows = list(csv.DictReader(io.StringIO(proc.stdout)))
        assert [r["run_id"] for r in rows] == [f"{2:016x}", f"{1:016x}"]
        assert rows[0]["metrics.acc"] == "0.7"

    def test_json_output(self, collection: Path) -> None:
        proc = run_cli("runs", "ls", str(collection / "beta_2"), "--format", "json")
        assert proc.returncode == 0, proc.stderr
        assert [r["run_id"] for r in json.loads(proc.stdout)] == ["b" * 16]

    def test_a_bad_query_is_a_usage_error(self, collection: Path) -> None:
        proc = run_cli(
            "runs", "ls", str(collection), "--experiment", "alpha:1", "--where", "params.lr <"
        )
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1
        assert "invalid query at column 12: expected a value" in proc.stderr
