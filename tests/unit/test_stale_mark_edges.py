"""Stale marks and index intents at their edges: the token rules of a directory's mark,
intents of writers whose liveness cannot be told, dotted host names, the age limit, and
two writers creating the intents directory at once.

Written against the survivors of a mutation run (docs/testing.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metalab.store import FileStoreConfig
from metalab.store import _intents as intents
from metalab.store._directory import StoreDirectory, read_meta
from metalab.store._intents import ABANDONED_AFTER, INTENTS_DIR, Landing, abandoned_intents
from metalab.store._layout import safe_experiment_id
from metalab.testing.store import make_record

EXP = "stale:1"


@pytest.fixture
def directory(tmp_path: Path) -> StoreDirectory:
    """A store directory holding one run (so it has a ``_meta.json``)."""
    with FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect() as store:
        store.put_run_record(make_record(EXP, "r1"))
    return StoreDirectory(tmp_path / safe_experiment_id(EXP), EXP, durable=False)


def meta_token(root: Path) -> tuple[bool, str | None]:
    meta = read_meta(root / safe_experiment_id(EXP) / "_meta.json")
    assert meta is not None
    return meta.index_stale, meta.index_stale_token


class TestTheMarkOfADirectory:
    def test_marking_again_gives_a_new_token(self, directory: StoreDirectory) -> None:
        first = directory.mark_index_stale()
        second = directory.mark_index_stale()
        assert first is not None
        assert second is not None
        assert first != second
        assert directory.index_stale_mark() == second

    def test_only_if_unmarked_keeps_an_existing_mark(self, directory: StoreDirectory) -> None:
        first = directory.mark_index_stale()
        assert directory.mark_index_stale(only_if_unmarked=True) is None
        assert directory.index_stale_mark() == first

    def test_only_if_unmarked_marks_an_unmarked_directory(self, directory: StoreDirectory) -> None:
        token = directory.mark_index_stale(only_if_unmarked=True)
        assert token is not None
        assert directory.index_stale_mark() == token

    def test_a_directory_without_meta_gets_no_mark(self, tmp_path: Path) -> None:
        (tmp_path / "empty").mkdir()
        empty = StoreDirectory(tmp_path / "empty", EXP, durable=False)
        assert empty.mark_index_stale() is None
        assert empty.mark_index_stale(only_if_unmarked=True) is None
        assert empty.clear_index_stale("") is False

    def test_clearing_with_the_token_seen_removes_mark_and_token(
        self, directory: StoreDirectory, tmp_path: Path
    ) -> None:
        token = directory.mark_index_stale()
        assert token is not None
        assert directory.clear_index_stale(token) is True
        assert meta_token(tmp_path) == (False, None)
        assert directory.index_stale_mark() is None

    def test_clearing_with_another_token_leaves_the_mark(self, directory: StoreDirectory) -> None:
        token = directory.mark_index_stale()
        assert directory.clear_index_stale("not-" + str(token)) is False
        assert directory.index_stale_mark() == token

    def test_clearing_an_unmarked_directory_does_nothing(
        self, directory: StoreDirectory, tmp_path: Path
    ) -> None:
        assert directory.clear_index_stale("") is False
        assert meta_token(tmp_path) == (False, None)


class TestIntents:
    @pytest.mark.usefixtures("umask_022")
    def test_intent_files_get_the_usual_mode(self, tmp_path: Path) -> None:
        first, second = Landing(), Landing()
        first.cover(str(tmp_path))  # creates the intents directory
        second.cover(str(tmp_path))  # finds it
        modes = {p.stat().st_mode & 0o777 for p in (tmp_path / INTENTS_DIR).iterdir()}
        assert modes == {0o644}
        first.release()
        second.release()

    def test_a_writer_that_creates_the_intents_directory_meanwhile_is_no_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_open = os.open
        raced: list[bool] = []

        def racing_open(path: str, flags: int, mode: int = 0o777) -> int:
            if not raced:
                # Another writer makes the directory right after this open failed.
                raced.append(True)
                (tmp_path / INTENTS_DIR).mkdir()
                raise FileNotFoundError(path)
            return real_open(path, flags, mode)

        monkeypatch.setattr(os, "open", racing_open)
        landing = Landing()
        landing.cover(str(tmp_path))
        monkeypatch.undo()
        assert len(list((tmp_path / INTENTS_DIR).iterdir())) == 1
        landing.release()

    def test_a_dead_writer_on_a_host_with_a_dotted_name_is_found(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        monkeypatch.setattr(intents, "_HOST", "node1.cluster.example.org")
        (tmp_path / INTENTS_DIR).mkdir()
        intent = tmp_path / INTENTS_DIR / f"node1.cluster.example.org.{proc.pid}.0"
        intent.touch()  # fresh: only the writer's death makes it abandoned
        assert abandoned_intents(str(tmp_path)) == [str(intent)]

    def test_a_writer_whose_liveness_cannot_be_told_counts_by_age(self, tmp_path: Path) -> None:
        # pid 0 names no process: its liveness is unknown, so the age decides.
        (tmp_path / INTENTS_DIR).mkdir()
        old = tmp_path / INTENTS_DIR / f"{intents._HOST}.0.1"
        new = tmp_path / INTENTS_DIR / f"{intents._HOST}.0.2"
        old.touch()
        new.touch()
        then = old.stat().st_mtime - 2 * ABANDONED_AFTER
        os.utime(old, (then, then))
        assert abandoned_intents(str(tmp_path)) == [str(old)]

    def test_an_intent_is_abandoned_only_after_the_full_age(self) -> None:
        assert intents._writer_gone("elsewhere.12.0", 1000.0, 1000.0 + ABANDONED_AFTER) is False
        assert intents._writer_gone("elsewhere.12.0", 1000.0, 1000.5 + ABANDONED_AFTER) is True
