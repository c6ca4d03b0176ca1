"""Races between writers made deterministic: each writer is stopped at a chosen step.

A thread test that starts writers and hopes they interleave catches an ordering bug
only when the scheduler happens to produce it. Here one writer is held at the step
where the race matters (after it read the stored record, before it replaces it),
the other writer runs, and only then is the first released. The outcome is the
same every time, on any machine.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import metalab.store._directory as directory_module
from metalab.records import RunRecord
from metalab.store import FileStoreConfig
from metalab.store._fileio import atomic_write, read_bytes

EID = "race:1"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
HOLD = 10.0  # seconds a held writer waits at most (a safety net, never reached)
BLOCKED = 1.0  # how long the second writer is given to show whether it waits


def running(run_id: str) -> RunRecord:
    return RunRecord.running(run_id=run_id, experiment_id=EID, params={"x": 1}, started_at=T0)


class Hold:
    """Stops one thread right after it reads the stored record of ``run_id``."""

    def __init__(self, run_id: str) -> None:
        self.target = f"{run_id}.json"
        self.reached = threading.Event()
        self.release = threading.Event()
        self.thread: int | None = None

    def wrap(self, read: Callable[[str], bytes | None]) -> Callable[[str], bytes | None]:
        def held(path: str) -> bytes | None:
            data = read(path)
            if threading.get_ident() == self.thread and path.endswith(self.target):
                self.reached.set()
                assert self.release.wait(HOLD), "the held writer was never released"
            return data

        return held


@pytest.fixture
def hold(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hold]:
    held = Hold("r1")
    monkeypatch.setattr(directory_module, "read_bytes", held.wrap(read_bytes))
    yield held
    held.release.set()


def run_in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except Exception as exc:  # noqa: BLE001 - the test asserts there is none
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    return thread, errors


class TestFinishedRecordAgainstAHeartbeat:
    """A heartbeat (``running``) that read the stored record must not land after a finish."""

    @pytest.mark.parametrize("finish", ["success", "failed"])
    def test_a_finish_waits_for_a_heartbeat_that_read_the_record(
        self, tmp_path: Path, hold: Hold, finish: str
    ) -> None:
        # Two connections: two lock descriptors, as two processes would have.
        heartbeat = FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect()
        finisher = FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect()
        heartbeat.put_run_record(running("r1"))
        done = (
            running("r1").succeeded(metrics={"loss": 0.5}, finished_at=T0)
            if finish == "success"
            else running("r1").failed(RuntimeError("m"), finished_at=T0)
        )

        def beat() -> None:
            hold.thread = threading.get_ident()
            heartbeat.put_run_record(running("r1"))

        beating, beat_errors = run_in_thread(beat)
        assert hold.reached.wait(HOLD)
        # The heartbeat holds the directory's lock and has read a `running` record.
        finishing, finish_errors = run_in_thread(lambda: finisher.put_run_record(done))
        finishing.join(BLOCKED)
        waited = finishing.is_alive()
        hold.release.set()
        beating.join(HOLD)
        finishing.join(HOLD)
        assert not beat_errors, beat_errors
        assert not finish_errors, finish_errors
        assert waited, "the finished record landed while another writer held the lock"
        stored = FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect()
        record = stored.get_run_record("r1")
        assert record is not None
        assert record.status == finish


class TestAtomicWriteInterrupted:
    """A write that fails half way leaves the old file whole and no temp file."""

    def test_a_full_disk_half_way_leaves_the_old_content(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        target = tmp_path / "doc.json"
        atomic_write(target, b"old content")
        real_write = os.write
        calls = 0

        def short_then_full(fd: int, data: Any) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                return real_write(fd, bytes(data[:4]))
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", short_then_full)
        with pytest.raises(OSError, match="No space left"):
            atomic_write(target, b"new content that does not fit")
        monkeypatch.undo()
        assert calls == 2
        assert target.read_bytes() == b"old content"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]

    def test_a_record_write_that_fails_half_way_keeps_the_stored_record(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect()
        first = running("r1")
        store.put_run_record(first)

        def full(_fd: int, _data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", full)
        with pytest.raises(OSError, match="No space left"):
            store.put_run_record(first.succeeded(metrics={"m": 1.0}, finished_at=T0))
        monkeypatch.undo()
        assert store.get_run_record("r1") == first
        runs = store.get_working_directory() / "runs"
        assert sorted(p.name for p in runs.iterdir()) == ["r1.json"]
