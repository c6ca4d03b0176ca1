"""Atomic writes and copies: the old file or the new one, and no temp file left behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from metalab.store._fileio import (
    atomic_copy,
    atomic_write,
    copy_to_temp,
    link_into_place,
    write_temp,
    write_temp_with_state,
)


class TestAtomicWrite:
    @pytest.mark.parametrize("durable", [False, True])
    def test_it_creates_and_replaces_the_file(self, tmp_path: Path, durable: bool) -> None:
        target = tmp_path / "doc.json"
        atomic_write(target, b"old", durable=durable)
        atomic_write(target, bytearray(b"new"), durable=durable)
        assert target.read_bytes() == b"new"
        assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]

    def test_a_str_path_is_accepted(self, tmp_path: Path) -> None:
        atomic_write(str(tmp_path / "a"), memoryview(b"x" * 3_000_000))
        assert (tmp_path / "a").stat().st_size == 3_000_000

    def test_a_failed_rename_leaves_the_old_file_and_no_temp(self, tmp_path: Path) -> None:
        target = tmp_path / "taken"
        target.mkdir()
        (target / "inside").write_text("keep")
        with pytest.raises(OSError, match="directory"):
            atomic_write(target, b"data")
        assert (target / "inside").read_text() == "keep"
        assert [p.name for p in tmp_path.iterdir()] == ["taken"]

    def test_a_missing_directory_is_an_error_and_creates_nothing(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            atomic_write(tmp_path / "missing" / "doc.json", b"data")
        assert list(tmp_path.iterdir()) == []


class TestTempFiles:
    def test_temp_files_are_hidden_partials_in_the_target_directory(self, tmp_path: Path) -> None:
        tmp = write_temp(str(tmp_path), b"abc", durable=True)
        assert Path(tmp).parent == tmp_path
        assert Path(tmp).name.startswith(".")
        assert Path(tmp).name.endswith(".partial")
        assert len(Path(tmp).name) == len(".") + 32 + len(".partial")
        assert Path(tmp).read_bytes() == b"abc"

    def test_a_temp_file_reports_the_state_it_keeps_once_moved(self, tmp_path: Path) -> None:
        tmp, state = write_temp_with_state(str(tmp_path), b"abcd", durable=False)
        target = tmp_path / "doc.json"
        assert link_into_place(tmp, str(target)) is True
        stat = target.stat()
        assert state == (stat.st_mtime_ns, stat.st_size)
        assert state.size == 4

    def test_link_places_a_new_file_and_refuses_an_existing_one(self, tmp_path: Path) -> None:
        first = write_temp(str(tmp_path), b"first", durable=False)
        assert link_into_place(first, str(tmp_path / "t")) is True
        assert not Path(first).exists()
        second = write_temp(str(tmp_path), b"second", durable=False)
        assert link_into_place(second, str(tmp_path / "t")) is False
        assert (tmp_path / "t").read_bytes() == b"first"
        assert Path(second).read_bytes() == b"second"


class TestAtomicCopy:
    @pytest.mark.parametrize("size", [0, 1, 1 << 20, 3 * (1 << 20) + 7])
    def test_the_copy_is_hashed_and_counted(self, tmp_path: Path, size: int) -> None:
        source = tmp_path / "src.bin"
        payload = (bytes(range(251)) * (size // 251 + 1))[:size]
        source.write_bytes(payload)
        target = tmp_path / "out" / "dst.bin"
        target.parent.mkdir()
        digest, count = atomic_copy(source, target, durable=True)
        assert digest == hashlib.sha256(payload).hexdigest()
        assert count == size
        assert target.read_bytes() == payload
        assert [p.name for p in target.parent.iterdir()] == ["dst.bin"]

    def test_a_missing_source_leaves_nothing_behind(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            copy_to_temp(tmp_path / "nope", str(tmp_path), durable=False)
        assert list(tmp_path.iterdir()) == []

    def test_a_read_error_mid_copy_removes_the_temp_file(self, tmp_path: Path) -> None:
        # Reading /proc/self/mem at offset 0 (an unmapped address) fails with EIO.
        with pytest.raises(OSError, match="Input/output error"):
            copy_to_temp(Path("/proc/self/mem"), str(tmp_path), durable=False)
        assert list(tmp_path.iterdir()) == []
