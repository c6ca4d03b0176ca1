"""Index intents: left while a write's files are ahead of its index, turned into marks once abandoned."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metalab._liveness import _linux_process_start
from metalab.records import JSONValue
from metalab.store import FileStoreConfig
from metalab.store import _intents as intents
from metalab.store._intents import ABANDONED_AFTER, INTENTS_DIR, Landing, abandoned_intents
from metalab.testing.store import make_record

HOST = socket.gethostname()
EXP = "intents:1"


@pytest.fixture
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def leave_intent(directory: Path, name: str, age: float = 0.0) -> Path:
    intents = directory / INTENTS_DIR
    intents.mkdir(parents=True, exist_ok=True)
    path = intents / name
    path.touch()
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


class TestLanding:
    def test_an_intent_is_left_once_per_directory_and_released(self, tmp_path: Path) -> None:
        landing = Landing()
        landing.cover(str(tmp_path))
        landing.cover(str(tmp_path))
        (intent,) = (tmp_path / INTENTS_DIR).iterdir()
        assert intent.name.startswith(f"{HOST}.{os.getpid()}.")
        assert abandoned_intents(str(tmp_path)) == []  # this process is alive
        landing.release()
        assert not any((tmp_path / INTENTS_DIR).iterdir())

    def test_releasing_an_intent_taken_for_abandoned_is_harmless(self, tmp_path: Path) -> None:
        landing = Landing()
        landing.cover(str(tmp_path))
        for intent in (tmp_path / INTENTS_DIR).iterdir():
            intent.unlink()
        landing.release()


class TestAbandoned:
    def test_the_intent_of_a_dead_process_is_abandoned(self, tmp_path: Path, dead_pid: int) -> None:
        intent = leave_intent(tmp_path, f"{HOST}.{dead_pid}.0")
        assert abandoned_intents(str(tmp_path)) == [str(intent)]

    def test_the_intent_of_a_live_process_is_not_even_when_old(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(intents, "ABANDONED_AFTER", 0.0)  # every intent is "old"
        leave_intent(tmp_path, f"{HOST}.{os.getpid()}.7")
        assert abandoned_intents(str(tmp_path)) == []

    @pytest.mark.skipif(sys.platform != "linux", reason="start times come from /proc")
    def test_an_intent_older_than_its_process_belongs_to_a_dead_one(self, tmp_path: Path) -> None:
        # The pid was reused: the process that left it started after it was left.
        # (Older than this process by a margin: a slow run of the suite lasts longer
        # than any fixed age.)
        found = _linux_process_start(os.getpid())
        assert found is not None
        age = time.time() - found[1] + ABANDONED_AFTER
        intent = leave_intent(tmp_path, f"{HOST}.{os.getpid()}.8", age=age)
        assert abandoned_intents(str(tmp_path)) == [str(intent)]

    @pytest.mark.parametrize(
        "name", ["elsewhere.example.org.123.0", "not-an-intent", f"{HOST}.x.y"]
    )
    def test_one_that_cannot_be_judged_is_abandoned_only_when_old(
        self, tmp_path: Path, name: str
    ) -> None:
        young = leave_intent(tmp_path, name)
        assert abandoned_intents(str(tmp_path)) == []
        old = time.time() - 2 * ABANDONED_AFTER
        os.utime(young, (old, old))
        assert abandoned_intents(str(tmp_path)) == [str(young)]

    def test_a_directory_without_intents_has_none(self, tmp_path: Path) -> None:
        assert abandoned_intents(str(tmp_path / "missing")) == []


class TestTurnedIntoMarks:
    def test_reading_the_mark_turns_an_abandoned_intent_into_one(
        self, tmp_path: Path, dead_pid: int
    ) -> None:
        files = FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect()
        files.put_run_record(make_record(EXP))
        directory = files.get_working_directory()
        intent = leave_intent(directory, f"{HOST}.{dead_pid}.3")
        live = leave_intent(directory, f"{HOST}.{os.getpid()}.4")
        assert files.is_index_marked_stale()
        assert not intent.exists()
        assert live.exists()  # a writer at work is left alone
        (mark,) = files.index_stale_marks().values()
        files.clear_index_stale({EXP: mark})
        assert not files.is_index_marked_stale()

    def test_a_plain_file_store_leaves_no_intents(self, tmp_path: Path) -> None:
        files = FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect()
        files.put_run_record(make_record(EXP))
        files.put_run_records([make_record(EXP)])
        files.put_derived(make_record(EXP).run_id, {"a": 1.0})
        assert not (files.get_working_directory() / INTENTS_DIR).exists()

    def test_the_document_writes_cover_their_directory_while_they_place(
        self, tmp_path: Path
    ) -> None:
        files = FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect()
        landing = Landing()
        record = make_record(EXP)
        files.write_run(record, into=landing)
        files.write_runs([make_record(EXP)], into=landing)
        files.write_derived(record.run_id, {"a": 1.0}, into=landing)
        assert [doc.kind for doc in landing.documents] == ["runs", "runs", "derived"]
        intents = files.get_working_directory() / INTENTS_DIR
        assert len(list(intents.iterdir())) == 1
        landing.release()
        assert not any(intents.iterdir())

    def test_a_refused_write_leaves_no_intent(self, tmp_path: Path) -> None:
        files = FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect()
        landing = Landing()
        deep: list[JSONValue] = []
        for _ in range(200):
            deep = [deep]
        with pytest.raises(ValueError, match="nests"):
            files.write_run(make_record(EXP, params={"deep": deep}), into=landing)
        assert landing.documents == []
        assert not (files.get_working_directory() / INTENTS_DIR).exists()
