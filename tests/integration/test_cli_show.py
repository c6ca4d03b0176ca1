"""``metalab runs show`` and ``metalab artifacts ls|get``, run as the real command."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from metalab.store import FileStoreConfig
from metalab.testing import run_cli
from metalab.testing.store import make_record

EXP = "show:1"
FAILED = "3f9c2a1b77d04e11"
OTHER = "3f9d000000000000"
WEIGHTS = b"weights" * 1000


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
        record = make_record(EXP, FAILED)
        try:
            raise RuntimeError("the loss diverged")
        except RuntimeError as exc:
            files.put_run_record(record.failed(exc, finished_at=record.started_at))
        files.put_run_record(make_record(EXP, OTHER))
        files.put_artifact(FAILED, "model", WEIGHTS, format="bin")
        files.put_log(FAILED, "run", "".join(f"step {i}\n" for i in range(30)))
        files.put_derived(FAILED, {"gain": 2.0})
    return root


class TestRunsShow:
    def test_a_prefix_shows_everything_a_person_looks_for(self, store: Path) -> None:
        proc = run_cli("runs", "show", str(store), "3f9c", "--lines", "3")
        out, err = proc.stdout, proc.stderr
        assert proc.returncode == 0, err
        assert out.startswith(f"run         {FAILED}\nexperiment  {EXP}\nstatus      failed\n")
        assert "\nparams\n  layers  [64, 32]\n  lr      0.01\n" in out
        assert "\nderived\n  gain  2.0\n" in out
        assert "\nerror  RuntimeError: the loss diverged\n" in out
        assert 'raise RuntimeError("the loss diverged")' in out  # the traceback
        assert "\nartifacts\n  model  bin  6.8 KiB\n" in out
        assert out.endswith("log run (last 3 lines)\n  step 27\n  step 28\n  step 29\n")

    def test_json_has_the_logs_whole(self, store: Path) -> None:
        proc = run_cli("runs", "show", str(store), FAILED, "--json")
        assert proc.returncode == 0
        info = json.loads(proc.stdout)
        assert info["run_id"] == FAILED
        assert info["error"]["type"] == "RuntimeError"
        assert info["derived"] == {"gain": 2.0}
        assert info["artifacts"] == [
            {
                "name": "model",
                "kind": "bytes",
                "format": "bin",
                "size_bytes": len(WEIGHTS),
                "sha256": hashlib.sha256(WEIGHTS).hexdigest(),
            }
        ]
        assert info["logs"]["run"].count("\n") == 30

    def test_an_ambiguous_prefix_is_a_usage_error_naming_the_runs(self, store: Path) -> None:
        proc = run_cli("runs", "show", str(store), "3f9")
        assert proc.returncode == 2
        assert proc.stderr == (
            f"metalab: error: 2 runs start with '3f9' ({FAILED}, {OTHER}); give more of the id\n"
        )

    @pytest.mark.parametrize("prefix", ["zz", "3f9e", "../x"])
    def test_no_such_run(self, store: Path, prefix: str) -> None:
        proc = run_cli("runs", "show", str(store), prefix)
        assert proc.returncode == 1
        assert proc.stderr == (
            f"metalab: error: no run id starts with {prefix!r}; 'metalab runs ls' lists the runs\n"
        )


class TestArtifacts:
    def test_ls(self, store: Path) -> None:
        proc = run_cli("artifacts", "ls", str(store), "3f9c", "--json")
        assert proc.returncode == 0
        listed = json.loads(proc.stdout)
        assert listed["run_id"] == FAILED
        assert [a["name"] for a in listed["artifacts"]] == ["model"]

    def test_get_writes_the_checked_bytes_and_never_overwrites_unasked(
        self, store: Path, tmp_path: Path
    ) -> None:
        proc = run_cli("artifacts", "get", str(store), "3f9c", "model", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "model.bin").read_bytes() == WEIGHTS
        assert proc.stderr == f"metalab: {len(WEIGHTS)} bytes written to 'model.bin'\n"
        again = run_cli("artifacts", "get", str(store), "3f9c", "model", cwd=tmp_path)
        assert again.returncode == 2
        assert "exists; --force replaces it" in again.stderr
        forced = run_cli("artifacts", "get", str(store), "3f9c", "model", "--force", cwd=tmp_path)
        assert forced.returncode == 0

    def test_get_to_a_path_and_to_stdout(self, store: Path, tmp_path: Path) -> None:
        target = tmp_path / "out" / "w.bin"
        target.parent.mkdir()
        written = run_cli("artifacts", "get", str(store), FAILED, "model", "-o", str(target))
        assert written.returncode == 0, written.stderr
        assert target.read_bytes() == WEIGHTS
        piped = run_cli("artifacts", "get", str(store), FAILED, "model", "-o", "-")
        assert piped.returncode == 0
        assert piped.stdout == WEIGHTS.decode()

    def test_bytes_that_do_not_match_their_sha256_leave_nothing(
        self, store: Path, tmp_path: Path
    ) -> None:
        (stored,) = (store / "show_1" / "artifacts" / FAILED).glob("model*")
        stored.write_bytes(b"tampered" + WEIGHTS[8:])
        proc = run_cli("artifacts", "get", str(store), FAILED, "model", cwd=tmp_path)
        assert proc.returncode == 1
        assert "does not match its recorded sha256" in proc.stderr
        assert list(tmp_path.iterdir()) == [store]

    def test_an_unknown_artifact_names_the_ones_there_are(self, store: Path) -> None:
        proc = run_cli("artifacts", "get", str(store), FAILED, "weights")
        assert proc.returncode == 1
        assert proc.stderr == (
            f"metalab: error: run '{FAILED}' has no artifact 'weights' (it has: model)\n"
        )
