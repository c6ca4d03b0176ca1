"""The series snapshot: frames of many runs read it while it is current, and only then."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import metalab
from metalab.series import SeriesPoint
from metalab.store import FileStore, FileStoreConfig
from metalab.store._directory import StoreDirectory
from metalab.testing.store import make_record

EXP = "snap:1"


@metalab.operation
def _train(params: dict[str, Any], capture: metalab.Capture) -> None:
    for step in range(20):
        capture.metric("loss", params["lr"] / (step + 1), step=step)
    if params["lr"] > 0.5:
        capture.metric("phase", "late", step=0)  # a string series: not in the snapshot


_SWEEP = metalab.Experiment(
    name="snap", version="1", operation=_train, params=metalab.grid(lr=[0.1, 0.2, 0.9])
)


def _cold(files: FileStore) -> pd.DataFrame:
    """The frame as the series files alone give it (no snapshot to read)."""
    snapshot = files.get_working_directory() / "series" / ".snapshot"
    kept = snapshot.read_bytes() if snapshot.exists() else None
    snapshot.unlink(missing_ok=True)
    try:
        return metalab.load_results(files, EXP).series_dataframe()
    finally:
        if kept is not None:
            snapshot.write_bytes(kept)


@pytest.fixture
def files(tmp_path: Path) -> FileStore:
    metalab.run(_SWEEP, store=tmp_path, progress=False).result()
    return FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect()


def _snapshot(files: FileStore) -> Path:
    return files.get_working_directory() / "series" / ".snapshot"


def test_a_sweep_writes_the_snapshot_and_frames_read_it(
    files: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _snapshot(files).exists()
    expected = _cold(files)
    assert len(expected) == 61
    # Read from the snapshot: the float runs' files are not decoded again.
    decoded: list[str] = []
    real = StoreDirectory.get_series

    def counting(directory: StoreDirectory, run_id: str) -> Any:
        decoded.append(run_id)
        return real(directory, run_id)

    monkeypatch.setattr(StoreDirectory, "get_series", counting)
    frame = metalab.load_results(files, EXP).series_dataframe()
    pd.testing.assert_frame_equal(frame, expected)
    strings = [r.run_id for r in metalab.load_results(files, EXP) if r.params["lr"] == 0.9]
    assert decoded == strings  # only the run with a string series


def test_a_file_that_changed_since_is_read_from_the_file(files: FileStore) -> None:
    run_id = metalab.load_results(files, EXP)[0].run_id
    files.append_series(run_id, [SeriesPoint("loss", 99, 0.001, 5.0)])
    frame = metalab.load_results(files, EXP).series_dataframe()
    pd.testing.assert_frame_equal(frame, _cold(files))
    assert 99 in set(frame[frame["run_id"] == run_id]["step"])


def test_a_run_run_again_in_place_is_seen_by_its_inode(files: FileStore) -> None:
    run_id = metalab.load_results(files, EXP)[0].run_id
    path = files.get_working_directory() / "series" / f"{run_id}.jsonl"
    before = path.stat()
    # Replaced as a run run again replaces it (a new file renamed over the old one),
    # with the same size and modification time: only the inode tells.
    data = path.read_bytes().replace(b'"loss",0,', b'"loss",7,', 1)
    assert len(data) == before.st_size
    fresh = path.with_name(".fresh")
    fresh.write_bytes(data)
    os.utime(fresh, ns=(before.st_atime_ns, before.st_mtime_ns))
    fresh.replace(path)
    assert path.stat().st_ino != before.st_ino
    frame = metalab.load_results(files, EXP).series_dataframe()
    assert 7 in set(frame[frame["run_id"] == run_id]["step"])
    pd.testing.assert_frame_equal(frame, _cold(files))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other version"])
def test_a_snapshot_that_cannot_be_read_is_ignored_and_rewritten(
    files: FileStore, damage: str
) -> None:
    expected = _cold(files)
    path = _snapshot(files)
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00not a snapshot")
    elif damage == "truncated":
        path.write_bytes(data[:-5])
    else:
        path.write_bytes(
            data.replace(b'"metalab_series_snapshot":1', b'"metalab_series_snapshot":9')
        )
    pd.testing.assert_frame_equal(metalab.load_results(files, EXP).series_dataframe(), expected)
    assert files.snapshot_series() == 2  # the string run stays out
    assert path.read_bytes() == data


def test_reading_writes_nothing_and_losing_the_snapshot_loses_nothing(tmp_path: Path) -> None:
    with FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect() as files:
        record = make_record(EXP)
        files.put_run_record(record)
        files.append_series(record.run_id, [SeriesPoint("loss", 0, 0.5, 1.0)])
        before = sorted(p.name for p in (files.get_working_directory() / "series").iterdir())
        frame = metalab.load_results(files, EXP).series_dataframe()
        assert (
            sorted(p.name for p in (files.get_working_directory() / "series").iterdir()) == before
        )
        assert files.snapshot_series() == 1
        _snapshot(files).unlink()
        pd.testing.assert_frame_equal(metalab.load_results(files, EXP).series_dataframe(), frame)
        assert files.delete_run(record.run_id)
        assert files.snapshot_series() == 0
        assert not _snapshot(files).exists()
