"""Real processes writing one FileStore at once, and a writer killed mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from metalab import _codec
from metalab.records import RunRecord
from metalab.store._file import FileStoreConfig

EID = "conc:1"

# Shared by the parent and the workers (run as `python -c`): deterministic records.
RECORDS = """
import datetime as dt, hashlib
from metalab.records import RunRecord

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

def make(worker, i, *, size=0):
    run_id = hashlib.sha256(f"{worker}:{i}".encode()).hexdigest()
    return RunRecord.running(
        run_id=run_id,
        experiment_id="conc:1",
        params={"worker": worker, "i": i, "pad": "x" * size},
        started_at=T0,
    ).succeeded(metrics={"m": i * 0.5}, finished_at=T0)
"""

MANY_WRITER = (
    RECORDS
    + """
import sys
from metalab.store._file import FileStoreConfig
root, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = FileStoreConfig(root=root, experiment_id="conc:1").connect()
for i in range(n):
    store.put_run_record(make(worker, i))
"""
)

SAME_RUN_WRITER = """
import datetime as dt, sys
from metalab.records import RunRecord
from metalab.store._file import FileStoreConfig
root, role, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = FileStoreConfig(root=root, experiment_id="conc:1").connect()
t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
runs = [f"run{k}" for k in range(8)]
for r in range(rounds):
    batch = []
    for run_id in runs:
        rec = RunRecord.running(run_id=run_id, experiment_id="conc:1", started_at=t0)
        if role == "finisher" and r == rounds // 3:
            rec = rec.succeeded(finished_at=t0)
        batch.append(rec)
    if role == "bulk":
        store.put_run_records(batch)
    else:
        for rec in batch:
            store.put_run_record(rec)
"""

WATCHER = """
import os, sys
from metalab.store._file import FileStoreConfig
root, stop = sys.argv[1], sys.argv[2]
store = FileStoreConfig(root=root, experiment_id="conc:1").connect()
finished = set()
while not os.path.exists(stop):
    for k in range(8):
        rec = store.get_run_record(f"run{k}")
        if rec is None:
            continue
        if rec.status != "running":
            finished.add(rec.run_id)
        elif rec.run_id in finished:
            print(f"BACKWARDS {rec.run_id}", flush=True)
            sys.exit(1)
print(f"watched {len(finished)}", flush=True)
"""

ENDLESS_WRITER = (
    RECORDS
    + """
import sys
from metalab.store._file import FileStoreConfig
root, durable = sys.argv[1], sys.argv[2] == "durable"
store = FileStoreConfig(root=root, experiment_id="conc:1", durable=durable).connect()
i = 0
while True:
    store.put_run_record(make(9, i % 50, size=200_000 + i))
    i += 1
"""
)


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def expected_records(worker: int, n: int) -> dict[str, bytes]:
    namespace: dict[str, object] = {}
    exec(RECORDS, namespace)
    make = namespace["make"]
    assert callable(make)
    out: dict[str, bytes] = {}
    for i in range(n):
        rec = make(worker, i)
        assert isinstance(rec, RunRecord)
        out[rec.run_id] = _codec.RUN_RECORD.encode(rec)
    return out


class TestManyProcessWriters:
    def test_four_processes_write_eight_thousand_intact_records(self, tmp_path: Path) -> None:
        procs = [spawn(MANY_WRITER, str(tmp_path), str(w), "2000") for w in range(4)]
        for proc in procs:
            finish(proc)
        store = FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect()
        records = store.list_run_records()
        assert len(records) == 8_000
        expected: dict[str, bytes] = {}
        for worker in range(4):
            expected |= expected_records(worker, 2000)
        assert {r.run_id: _codec.RUN_RECORD.encode(r) for r in records} == expected
        runs = store.get_working_directory() / "runs"
        assert not [p for p in runs.iterdir() if p.name.startswith(".")]

    def test_the_same_runs_written_by_racing_processes_never_end_running(
        self, tmp_path: Path
    ) -> None:
        stop = tmp_path / "stop"
        root = str(tmp_path / "store")
        watcher = spawn(WATCHER, root, str(stop))
        writers = [
            spawn(SAME_RUN_WRITER, root, role, "60")
            for role in ("runner", "finisher", "bulk", "runner")
        ]
        for proc in writers:
            finish(proc)
        stop.touch()
        assert "watched 8" in finish(watcher)
        store = FileStoreConfig(root=root, experiment_id=EID).connect()
        statuses = {r.run_id: r.status for r in store.list_run_records()}
        assert statuses == {f"run{k}": "success" for k in range(8)}


class TestKilledWriter:
    def test_sigkill_mid_write_leaves_no_torn_record(self, tmp_path: Path) -> None:
        for mode in ("fast", "durable"):
            root = tmp_path / mode
            runs = root / "conc_1" / "runs"
            proc = subprocess.Popen([sys.executable, "-c", ENDLESS_WRITER, str(root), mode])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if runs.is_dir() and len(list(runs.iterdir())) >= 5:
                    break
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            store = FileStoreConfig(root=str(root), experiment_id=EID).connect()
            result = store.scan_run_records()
            assert result.problems == []
            assert len(result.records) >= 4
            assert all(p.name.endswith((".json", ".partial")) for p in runs.iterdir())
            # The dead writer's lock is gone with it: another writer gets through.
            store.put_run_record(result.records[0])
            assert store.get_run_record(result.records[0].run_id) is not None
