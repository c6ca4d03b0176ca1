"""The frame and query caches: served again while an experiment's runs are unchanged.

Most tests let a directory count as settled at once (``RACY_SECONDS`` 0) and wait a
few clock ticks after writing, so that a write after the cache always lands on a new
directory time; one test keeps the real two seconds.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import polars.testing
import pytest

import metalab
import metalab.query
from metalab.cli import main as cli_main
from metalab.errors import MetalabWarning
from metalab.records import RunRecord
from metalab.results import Results, frame_cache_matches
from metalab.store import (
    FileStore,
    FileStoreConfig,
    _directory,
    _frame_cache,
    _query_cache,
    derived_lookup,
)
from metalab.store._directory import StoreDirectory
from metalab.testing.store import make_record

EXP = "frames:1"
CACHE = _frame_cache.CACHE_NAME


def _settle() -> None:
    """Let the clock move on, so a later write gets other directory times."""
    time.sleep(0.05)


@pytest.fixture(autouse=True)
def _settled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_frame_cache, "RACY_SECONDS", 0)


def _record(i: int, **metrics: Any) -> RunRecord:
    values: dict[str, Any] = {"loss": 1 / (i + 1), "nan": math.nan, "n": i, "ok": i % 2 == 0}
    values.update(metrics)
    params: dict[str, Any] = {"i": i, "s": "x" * i, "nested": {"depth": i, "act": "relu"}}
    if i % 4:
        params["sometimes"] = [i, "list"]
    return make_record(EXP, f"run{i:02d}", metrics=values, params=params)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    with FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect() as files:
        for i in range(10):
            files.put_run_record(_record(i))
            if i % 3:
                files.put_derived(f"run{i:02d}", {"score": i * 0.5, "odd": math.nan})
        files.put_run_record(make_record(EXP, "going", status="running"))
    _settle()
    return tmp_path


def _cache(root: Path) -> Path:
    return root / "frames_1" / CACHE


def _built(root: Path) -> pd.DataFrame:
    """The frame the records build, never from a cache."""
    with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
        records = sorted(files.list_run_records(EXP), key=lambda r: (r.started_at, r.run_id))
        return Results(records, files).to_dataframe()


def _loaded(root: Path) -> pd.DataFrame:
    with metalab.load_results(str(root), EXP) as results:
        return results.to_dataframe()


_MIXED = "turned into strings: params.layers, params.sometimes$"


def _no_record_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> Iterator[RunRecord]:
        raise AssertionError("a record was read")

    monkeypatch.setattr(StoreDirectory, "iter_run_records", refuse)
    monkeypatch.setattr(StoreDirectory, "list_derived", refuse)


def test_a_whole_frame_is_cached_and_served_without_reading_a_record(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _built(root)
    with metalab.load_results(str(root), EXP) as first:
        assert not _cache(root).exists()  # written by the first whole frame, not the load
        pd.testing.assert_frame_equal(first.to_dataframe(), expected)
        with pytest.warns(MetalabWarning, match=_MIXED):
            polars_first = first.to_polars()
        with pytest.warns(MetalabWarning, match=_MIXED):
            arrow_first = first.to_arrow()
    assert _cache(root).is_file()
    with monkeypatch.context() as patched:
        _no_record_read(patched)
        with metalab.load_results(str(root), EXP) as again:
            assert len(again) == len(expected)
            pd.testing.assert_frame_equal(again.to_dataframe(), expected)
            with pytest.warns(MetalabWarning, match=_MIXED):
                polars.testing.assert_frame_equal(again.to_polars(), polars_first)
            with pytest.warns(MetalabWarning, match=_MIXED):
                arrow_again = again.to_arrow()
            assert arrow_again.schema == arrow_first.schema
            pd.testing.assert_frame_equal(arrow_again.to_pandas(), arrow_first.to_pandas())
            chosen = ["run_id", "params.nested.*", "derived.score"]
            pd.testing.assert_frame_equal(
                again.to_dataframe(columns=chosen), expected[list(again.to_dataframe(chosen))]
            )
            with pytest.raises(KeyError, match=r"no column 'params\.nope'"):
                again.to_dataframe(columns=["params.nope"])
    # What needs the records reads them then, and they are the frame's.
    with metalab.load_results(str(root), EXP) as lazy:
        assert [run.run_id for run in lazy] == list(expected["run_id"])
        by_id = {record.run_id: record for record in lazy.records}
        assert by_id["run00"].params == {"i": 0, "s": "", "nested": {"depth": 0, "act": "relu"}}


def test_a_frame_of_part_of_the_runs_is_not_cached(root: Path) -> None:
    with metalab.load_results(str(root), EXP) as results:
        results.to_dataframe(columns=["run_id", "metrics.loss"])
        results[:3].to_dataframe()
        results.filter(status="success").to_dataframe()
    with metalab.load_results(str(root), EXP, where="metrics.n > 2") as some:
        some.to_dataframe()
    assert not _cache(root).exists()


def _add_run(files: FileStore) -> None:
    files.put_run_record(_record(20))


def _add_derived(files: FileStore) -> None:
    files.put_derived("run00", {"score": 99.0})


def _change_derived(files: FileStore) -> None:
    files.put_derived("run01", {"score": -1.0})


def _delete_run(files: FileStore) -> None:
    files.delete_run("run05")


def _tag(files: FileStore) -> None:
    files.set_tags("run02", add=["picked"])


def _finish(files: FileStore) -> None:
    files.put_run_record(make_record(EXP, "going", metrics={"loss": 0.5}))


CHANGES = [_add_run, _add_derived, _change_derived, _delete_run, _tag, _finish]


@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__.strip("_"))
def test_every_write_after_the_cache_is_seen(root: Path, change: Any) -> None:
    _loaded(root)
    assert _cache(root).is_file()
    with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
        change(files)
    _settle()
    expected = _built(root)
    # The cache still holds the frame of before (what serving it would give) ...
    assert not expected.equals(_built_from_cache_file(root))
    pd.testing.assert_frame_equal(_loaded(root), expected)
    # ... and the frame read now is cached in its turn.
    pd.testing.assert_frame_equal(_built_from_cache_file(root), expected)


def _built_from_cache_file(root: Path) -> pd.DataFrame:
    """The frame the cache file holds, whatever its key (what a stale cache would serve)."""
    from metalab.results._cached_frame import decode_columns  # noqa: PLC0415
    from metalab.results._frames import pandas_frame  # noqa: PLC0415

    data = _cache(root).read_bytes()
    header = _frame_cache._HEADER
    _, key_length, _ = header.unpack_from(data)
    decoded = decode_columns(data[header.size + key_length :])
    assert decoded is not None
    return pandas_frame(decoded[1], decoded[0])


def test_a_directory_changed_in_the_last_seconds_gets_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_frame_cache, "RACY_SECONDS", 2)
    with FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect() as files:
        files.put_run_record(_record(1))
    frame = _loaded(tmp_path)
    assert len(frame) == 1
    assert _answer(tmp_path, order_by="run_id", limit=1) == ["run01"]
    assert list((tmp_path / "frames_1").glob(".*-cache")) == []


def test_runs_changed_between_the_load_and_reading_the_records_replace_the_cached_frame(
    root: Path,
) -> None:
    _loaded(root)
    with metalab.load_results(str(root), EXP) as results:
        assert len(results) == 11  # from the cache
        with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
            _add_run(files)
        assert len(results.records) == 12  # read now: the run added meanwhile is there
        assert len(results) == 12
        frame = results.to_dataframe()
        assert len(frame) == 12
        assert "run20" in set(frame["run_id"])


def test_compute_derived_shows_in_the_next_frame_of_a_cached_load(root: Path) -> None:
    _loaded(root)
    with metalab.load_results(str(root), EXP) as results:
        assert "derived.extra" not in results.to_dataframe()
        results.compute_derived(lambda _run: {"extra": 1.0})
        assert list(results.to_dataframe()["derived.extra"]) == [1.0] * len(results)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-1] + bytes([data[-1] ^ 1]),  # a flipped bit in the payload
        lambda data: data[: len(data) // 2],  # torn
        lambda _data: b"not a cache at all",
        lambda _data: b"",
    ],
    ids=["bit", "torn", "garbage", "empty"],
)
def test_a_damaged_cache_is_not_served_and_is_replaced(root: Path, damage: Any) -> None:
    _loaded(root)
    path = _cache(root)
    path.write_bytes(damage(path.read_bytes()))
    pd.testing.assert_frame_equal(_loaded(root), _built(root))
    pd.testing.assert_frame_equal(_built_from_cache_file(root), _built(root))


def test_a_cache_that_cannot_be_written_is_no_error(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_frame_cache, "atomic_write", refuse)
    pd.testing.assert_frame_equal(_loaded(root), _built(root))
    assert not _cache(root).exists()


def test_only_a_load_of_one_experiment_directory_is_cached(tmp_path: Path) -> None:
    for eid in ("a:1", "b:1"):
        with FileStoreConfig(root=str(tmp_path), experiment_id=eid).connect() as files:
            files.put_run_record(make_record(eid, f"run-{eid[0]}"))
    _settle()
    with metalab.load_results(str(tmp_path)) as everything:
        assert len(everything.to_dataframe()) == 2
    assert list(tmp_path.rglob(CACHE)) == []
    with metalab.load_results(str(tmp_path), "b:1") as one:
        assert list(one.to_dataframe()["run_id"]) == ["run-b"]
    assert list(tmp_path.rglob(CACHE)) == [tmp_path / "b_1" / CACHE]
    with metalab.load_results(str(tmp_path), "a:1") as other:
        assert list(other.to_dataframe()["run_id"]) == ["run-a"]


def _gc(capsys: pytest.CaptureFixture[str], root: Path, *options: str) -> str:
    """``metalab store gc`` in this process (its ``RACY_SECONDS`` patched as here)."""
    code = cli_main(["store", "gc", str(root), "--older-than", "0s", *options])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def test_gc_removes_a_stale_cache_and_keeps_a_current_one(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _loaded(root)
    path = _cache(root)
    assert json.loads(_gc(capsys, root, "--apply", "--json"))["stale_caches"] == []
    assert path.is_file()
    with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
        _add_run(files)
    assert f"would remove stale cache {path}" in _gc(capsys, root)
    assert path.is_file()
    assert f"removed stale cache {path}" in _gc(capsys, root, "--apply")
    assert not path.exists()
    path.write_bytes(b"garbage")
    assert f"removed stale cache {path}" in _gc(capsys, root, "--apply")


def test_verify_finds_a_record_edited_in_place_under_a_current_cache(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _loaded(root)
    with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
        assert frame_cache_matches(files, EXP) is True
    assert cli_main(["store", "verify", str(root)]) == 0
    assert "checked 1 frame caches, 11 records: 0 problem(s)" in capsys.readouterr().out
    # Written in place, as another program might: runs/ keeps its times, so the key
    # still matches (only verify can tell).
    path = root / "frames_1" / "runs" / "run03.json"
    data = path.read_bytes()
    with path.open("r+b") as stream:
        stream.write(data.replace(b'"s":"xxx"', b'"s":"yyy"'))
    with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
        assert frame_cache_matches(files, EXP) is False
    assert cli_main(["store", "verify", str(root)]) != 0
    captured = capsys.readouterr()
    assert "the frame cache of 'frames:1' is not the frame its runs build" in (
        captured.out + captured.err
    )
    (root / "frames_1" / CACHE).unlink()
    with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
        assert frame_cache_matches(files, EXP) is None


# The query cache.

TOP = {
    "where": "metrics.n >= 2 and params.nested.act == 'relu'",
    "order_by": "-metrics.loss",
    "limit": 3,
}


def _answer(root: Path, **query: Any) -> list[str]:
    with metalab.load_results(str(root), EXP, **query) as results:
        return results.run_ids


def _answer_from_files(root: Path, **query: Any) -> list[str]:
    """What the query engine answers over the files, never from a cache."""
    with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
        built = metalab.query.build_query(
            query.get("where"), query.get("order_by"), query.get("limit")
        )
        found = metalab.query.select(files.list_run_records(EXP), built, derived_lookup(files, EXP))
        return [record.run_id for record in found]


def test_the_same_query_is_answered_again_reading_only_its_runs(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _answer(root, **TOP)
    assert first == _answer_from_files(root, **TOP) == ["run02", "run03", "run04"]
    other = {"where": "derived.score > 1", "order_by": "run_id"}
    expected_other = _answer_from_files(root, **other)
    assert _answer(root, **other) == expected_other
    reads: list[str] = []
    original = StoreDirectory.get_run_record

    def counting(self: StoreDirectory, run_id: str) -> RunRecord | None:
        reads.append(run_id)
        return original(self, run_id)

    with monkeypatch.context() as patched:
        _no_record_read(patched)
        patched.setattr(StoreDirectory, "get_run_record", counting)
        assert _answer(root, **TOP) == first
        assert reads == first
        assert _answer(root, **other) == expected_other


@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__.strip("_"))
def test_every_write_after_an_answer_is_seen(root: Path, change: Any) -> None:
    query = {"where": "status == 'success' or derived.score > 3", "order_by": "-metrics.n"}
    _answer(root, **query)
    with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
        change(files)
    _settle()
    assert _answer(root, **query) == _answer_from_files(root, **query)


def test_large_answers_are_not_kept_and_old_ones_make_room(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_query_cache, "MAX_RUNS", 3)
    monkeypatch.setattr(_query_cache, "ENTRIES", 2)
    path = root / "frames_1" / _query_cache.QUERY_CACHE_NAME

    def kept() -> list[Any]:
        with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
            key = files.frame_cache_key(EXP)
            assert key is not None
            return [query.limit for query, _ in _directory_of(files).cached_queries(key)]

    _answer(root, order_by="run_id")  # 11 runs: not kept
    assert not path.exists()
    for limit in (1, 2, 3):
        _answer(root, order_by="run_id", limit=limit)
    assert kept() == [2, 3]
    _answer(root, order_by="run_id", limit=2)  # answered from the cache: no change
    assert kept() == [2, 3]
    _answer(root, order_by="run_id", limit=1)  # asked anew: the oldest makes room
    assert kept() == [3, 1]


def _directory_of(files: FileStore) -> StoreDirectory:
    spaces = files._spaces_of(EXP)
    assert len(spaces) == 1
    return spaces[0]


@pytest.mark.parametrize(
    "damage",
    [lambda data: data[:-1] + bytes([data[-1] ^ 1]), lambda data: data[:20]],
    ids=["bit", "torn"],
)
def test_a_damaged_query_cache_is_not_served(root: Path, damage: Any) -> None:
    _answer(root, **TOP)
    path = root / "frames_1" / _query_cache.QUERY_CACHE_NAME
    path.write_bytes(damage(path.read_bytes()))
    assert _answer(root, **TOP) == _answer_from_files(root, **TOP)


def test_verify_finds_an_answer_the_files_no_longer_give(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _answer(root, **TOP)
    assert cli_main(["store", "verify", str(root)]) == 0
    assert "1 query caches" in capsys.readouterr().out
    path = root / "frames_1" / "runs" / "run03.json"
    data = path.read_bytes()
    with path.open("r+b") as stream:  # in place: runs/ keeps its times
        stream.write(data.replace(b'"n":3', b'"n":0'))
    assert cli_main(["store", "verify", str(root)]) != 0
    captured = capsys.readouterr()
    assert "the query cache of 'frames:1' holds 1 answer(s) the files do not give now" in (
        captured.out + captured.err
    )


def test_gc_removes_a_stale_query_cache(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _answer(root, **TOP)
    path = root / "frames_1" / _query_cache.QUERY_CACHE_NAME
    assert path.is_file()
    assert json.loads(_gc(capsys, root, "--apply", "--json"))["stale_caches"] == []
    with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
        _add_run(files)
    assert f"removed stale cache {path}" in _gc(capsys, root, "--apply")
    assert not path.exists()


def test_without_numpy_no_cache_is_read(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _loaded(root)
    assert _cache(root).is_file()
    monkeypatch.setitem(sys.modules, "numpy", None)

    def refuse(*_args: object) -> bytes | None:
        raise AssertionError("the cache was read")

    monkeypatch.setattr(_frame_cache, "read_cached", refuse)
    monkeypatch.setattr(_directory, "read_cached", refuse)
    with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
        expected = sorted(r.run_id for r in files.list_run_records(EXP))
        with metalab.load_results(files, EXP) as results:
            assert len(results) == len(expected)
            assert sorted(results.run_ids) == expected
        assert frame_cache_matches(files, EXP) is None
