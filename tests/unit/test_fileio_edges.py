"""The file primitives of _fileio.py at their edges: where a copy's temp file goes, what
is fsynced, reads of files whose size the kernel does not know, and the lock after fork.

Written against the survivors of a mutation run (docs/testing.md).
"""

from __future__ import annotations

import os
import select
import sys
from pathlib import Path

import pytest

from metalab.store._fileio import (
    StoreLock,
    atomic_copy,
    discard,
    exists,
    list_names,
    read_with_state,
    remove_file,
    remove_tree,
)

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="needs /proc and fork")


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What ``os.fsync`` is called on: ``"file"`` or ``"dir"``."""
    calls: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        calls.append("dir" if Path(f"/proc/self/fd/{fd}").is_dir() else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return calls


class TestAtomicCopy:
    @linux_only
    def test_a_plain_copy_fsyncs_nothing(self, tmp_path: Path, fsyncs: list[str]) -> None:
        (tmp_path / "src").write_bytes(b"abc")
        atomic_copy(tmp_path / "src", tmp_path / "dst")
        assert fsyncs == []

    @linux_only
    def test_a_durable_copy_fsyncs_the_file_then_its_directory(
        self, tmp_path: Path, fsyncs: list[str]
    ) -> None:
        (tmp_path / "src").write_bytes(b"abc")
        atomic_copy(tmp_path / "src", tmp_path / "dst", durable=True)
        assert fsyncs == ["file", "dir"]

    def test_a_bare_file_name_is_copied_through_a_temp_file_beside_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "src").write_bytes(b"abc")
        monkeypatch.chdir(tmp_path)
        moved: list[str] = []
        real = os.replace

        def record(src: str, dst: str) -> None:
            moved.append(src)
            real(src, dst)

        monkeypatch.setattr(os, "replace", record)
        assert atomic_copy("src", "dst") == (
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            3,
        )
        assert Path("dst").read_bytes() == b"abc"
        assert [str(Path(m).parent) for m in moved] == ["."]

    @pytest.mark.usefixtures("umask_022")
    def test_the_copy_gets_the_usual_file_mode(self, tmp_path: Path) -> None:
        (tmp_path / "src").write_bytes(b"abc")
        (tmp_path / "src").chmod(0o600)
        atomic_copy(tmp_path / "src", tmp_path / "dst")
        assert (tmp_path / "dst").stat().st_mode & 0o777 == 0o644


@linux_only
class TestReadWithState:
    def test_a_file_whose_size_the_kernel_does_not_report_is_read_whole(self) -> None:
        # /proc files stat as empty; the read goes on to the end all the same.
        path = "/proc/self/cmdline"
        expected = Path(path).read_bytes()
        assert Path(path).stat().st_size == 0
        assert len(expected) > 0
        found = read_with_state(path)
        assert found is not None
        assert found[0] == expected


class TestSmallHelpers:
    def test_exists_is_false_for_a_missing_file(self, tmp_path: Path) -> None:
        assert exists(str(tmp_path / "missing")) is False
        assert exists(str(tmp_path)) is True

    def test_list_names_keeps_visible_names_with_the_suffix(self, tmp_path: Path) -> None:
        for name in ("a.json", ".b.json", "c.txt", ".partial"):
            (tmp_path / name).write_bytes(b"")
        assert list_names(str(tmp_path), ".json") == ["a.json"]

    def test_remove_file_says_whether_there_was_one(self, tmp_path: Path) -> None:
        (tmp_path / "f").write_bytes(b"")
        assert remove_file(tmp_path / "f") is True
        assert remove_file(tmp_path / "f") is False

    def test_remove_tree_says_whether_there_was_one(self, tmp_path: Path) -> None:
        (tmp_path / "d" / "e").mkdir(parents=True)
        assert remove_tree(tmp_path / "d") is True
        assert not (tmp_path / "d").exists()
        assert remove_tree(tmp_path / "d") is False

    def test_discard_of_a_missing_file_is_quiet(self, tmp_path: Path) -> None:
        discard(str(tmp_path / "missing"))


class TestStoreLock:
    def test_close_releases_the_descriptor_and_the_lock_opens_again(self, tmp_path: Path) -> None:
        lock = StoreLock(tmp_path / ".lock")
        with lock:
            pass
        lock.close()
        assert lock._fd is None
        with lock:
            pass
        lock.close()

    # mutmut records which tests reach a function in its own process only, so the
    # fork is also simulated here: a lock whose pid is not the process's own.
    def test_a_lock_from_another_process_drops_the_inherited_descriptor(
        self, tmp_path: Path
    ) -> None:
        lock = StoreLock(tmp_path / ".lock")
        inherited = os.open(tmp_path / "inherited", os.O_RDWR | os.O_CREAT, 0o600)
        lock._fd, lock._pid = inherited, -1
        with lock:
            assert lock._pid == os.getpid()
            assert lock._fd is not None
            assert os.fstat(lock._fd).st_ino == (tmp_path / ".lock").stat().st_ino
        lock.close()
        assert lock._fd is None

    def test_a_lock_from_another_process_closes_without_its_parents_thread_lock(
        self, tmp_path: Path
    ) -> None:
        lock = StoreLock(tmp_path / ".lock")
        with lock:
            pass
        # As if a thread of the parent held it when the process forked.
        assert lock._thread_lock.acquire(blocking=False)
        lock._pid = -1
        lock.close()
        assert lock._pid == os.getpid()
        assert lock._fd is None
        assert lock._thread_lock.acquire(blocking=False)

    @linux_only
    def test_after_fork_the_child_competes_with_its_parent(self, tmp_path: Path) -> None:
        # flock is per open file: a child using the parent's descriptor would get the
        # lock while the parent holds it.
        lock = StoreLock(tmp_path / ".lock")
        read_end, write_end = os.pipe()
        with lock:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                code = 1
                try:
                    with lock:
                        os.write(write_end, b"x")
                    lock.close()
                    code = 0
                finally:
                    os._exit(code)
            ready, _, _ = select.select([read_end], [], [], 0.5)
            assert ready == [], "the child took the lock its parent holds"
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.read(read_end, 1) == b"x"
        os.close(read_end)
        os.close(write_end)
        lock.close()
