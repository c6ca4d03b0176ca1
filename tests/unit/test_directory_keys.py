"""The packed key listing a rebuild holds while it reads a kind's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from metalab.store._directory import Keys, StoreDirectory
from metalab.testing.store import make_record


@pytest.mark.parametrize("count", [0, 1, 4095, 4096, 4097, 10_000])
def test_keys_come_back_in_order_across_packs(count: int) -> None:
    keys = Keys()
    expected = [f"{i:064x}" for i in range(count)]
    for key in expected:
        keys.add(key)
    assert len(keys) == count
    assert list(keys) == expected
    assert list(keys) == expected  # iterating twice gives the same


def test_a_key_with_a_newline_is_kept_whole() -> None:
    keys = Keys()
    for key in ("a", "b\nc", "d"):
        keys.add(key)
    assert len(keys) == 3
    assert sorted(keys) == ["a", "b\nc", "d"]


def test_a_directory_lists_its_documents_keys(tmp_path: Path) -> None:
    directory = StoreDirectory(tmp_path / "exp", "k:1", durable=False)
    for i in range(5):
        directory.put_run_record(make_record("k:1", f"run{i}"))
    (tmp_path / "exp" / "runs" / ".hidden.json").write_text("{}")
    (tmp_path / "exp" / "runs" / "notes.txt").write_text("")
    assert sorted(directory.document_keys("runs")) == [f"run{i}" for i in range(5)]
    assert list(directory.document_keys("derived")) == []
    missing = StoreDirectory(tmp_path / "nowhere", "k:1", durable=False)
    assert len(missing.document_keys("runs")) == 0


@pytest.mark.parametrize("count", [0, 1, 4096, 9_000])
def test_keys_come_in_sorted_order_across_packs_with_newlines_last(count: int) -> None:
    keys = Keys()
    shuffled = [f"{(i * 7919) % max(count, 1):08d}-{i}" for i in range(count)]
    for key in [*shuffled[: count // 2], "z\nlast", *shuffled[count // 2 :]]:
        keys.add(key)
    assert list(keys.ordered()) == [*sorted(shuffled), "z\nlast"]
    assert len(keys) == count + 1
    assert sorted(keys) == sorted([*shuffled, "z\nlast"])  # the same keys, packs re-sorted
