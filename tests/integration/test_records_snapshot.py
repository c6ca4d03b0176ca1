"""The records snapshot: listings read it while it is current, and never serve a stale answer."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import metalab
from metalab import _codec
from metalab.errors import CorruptRecordError
from metalab.records import DerivedMetrics, RunRecord
from metalab.series import SeriesPoint
from metalab.store import FileStore, FileStoreConfig, _directory, _fileio, _records_snapshot
from metalab.store._directory import StoreDirectory
from metalab.store._documents import DocumentKind
from metalab.testing import assert_same_document, run_cli
from metalab.testing.store import make_record

EXP = "snap:1"
SNAPSHOT = _records_snapshot.SNAPSHOT_NAME


def _age(directory: Path) -> None:
    """Date the record and derived files of the last minute back, as if written long ago.

    Older files keep their time (and so their place in the snapshot).
    """
    now = time.time_ns()
    past = now - 120 * 10**9
    for kind in ("runs", "derived"):
        for path in (directory / kind).glob("*.json"):
            if path.stat().st_mtime_ns > now - 60 * 10**9:
                os.utime(path, ns=(past, past))


def _files_only(store: FileStore, eid: str | None = EXP) -> tuple[list[Any], dict[str, Any]]:
    """What the files alone give: the listing with every snapshot moved aside."""
    moved = []
    for path in store.get_working_directory().rglob(SNAPSHOT):
        aside = path.with_name(".aside")
        path.rename(aside)
        moved.append((aside, path))
    try:
        return _listing(store, eid)
    finally:
        for aside, path in moved:
            aside.rename(path)


def _listing(store: FileStore, eid: str | None = EXP) -> tuple[list[Any], dict[str, Any]]:
    records = sorted(store.list_run_records(eid), key=lambda r: r.run_id)
    derived = store.list_derived(eid)
    return records, dict(sorted(derived.items()))


def _assert_same(actual: tuple[list[Any], dict[str, Any]], expected: Any) -> None:
    assert [r.run_id for r in actual[0]] == [r.run_id for r in expected[0]]
    for left, right in zip(actual[0], expected[0], strict=True):
        assert_same_document(left, right)
    assert list(actual[1]) == list(expected[1])
    for key, value in actual[1].items():
        assert_same_document(value, expected[1][key])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FileStore]:
    with FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect() as files:
        for i in range(12):
            metrics: dict[str, Any] = {"loss": 1 / (i + 1), "nan": math.nan, "inf": -math.inf}
            files.put_run_record(
                make_record(EXP, f"run{i:02d}", metrics=metrics, params={"i": i, "s": "x" * i})
            )
            if i % 3:
                files.put_derived(f"run{i:02d}", {"score": i * 0.5, "odd": math.nan})
        files.put_run_record(make_record(EXP, "going", status="running"))
        yield files


def _directory_of(store: FileStore) -> Path:
    return store.get_working_directory()


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    real = _fileio.read_bytes

    def counting(path: str) -> bytes | None:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(_directory, "read_bytes", counting)
    return reads


def test_a_current_snapshot_serves_the_listing_without_reading_a_file(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _age(_directory_of(store))
    expected = _files_only(store)
    assert store.snapshot_records() == 13 + 8
    reads = _count_reads(monkeypatch)
    _assert_same(_listing(store), expected)
    assert reads == []


def test_every_change_after_the_snapshot_is_seen(store: FileStore) -> None:
    _age(_directory_of(store))
    store.snapshot_records()
    store.set_tags("run01", add=["edited"])
    store.delete_run("run02")
    store.put_run_record(make_record(EXP, "new", metrics={"loss": 9.0}))
    store.put_derived("run04", {"score": -1.0})
    store.put_derived("run03", {"score": 3.0})
    (_directory_of(store) / "derived" / "run05.json").unlink()
    listing = _listing(store)
    _assert_same(listing, _files_only(store))
    records = {r.run_id: r for r in listing[0]}
    assert "edited" in records["run01"].tags
    assert "run02" not in records
    assert "new" in records
    assert listing[1]["run04"].metrics == {"score": -1.0}
    assert "run05" not in listing[1]


def test_a_file_rewritten_in_place_is_seen(store: FileStore) -> None:
    """Another tool may edit a record in place: its size or time changes, so it is read."""
    directory = _directory_of(store)
    _age(directory)
    store.snapshot_records()
    path = directory / "runs" / "run07.json"
    text = path.read_text().replace('"conformance"', '"by-hand"')
    with path.open("r+") as stream:  # same inode, new mtime (and size)
        stream.write(text)
        stream.truncate()
    records = {r.run_id: r for r in store.list_run_records(EXP)}
    assert records["run07"].tags == ("by-hand",)


def test_writing_it_again_reads_only_new_or_changed_files(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _directory_of(store)
    _age(directory)
    store.snapshot_records()
    store.set_tags("run01", add=["edited"])
    store.put_run_record(make_record(EXP, "new"))
    store.put_derived("run04", {"score": -1.0})
    _age(directory)
    read: list[str] = []
    real = StoreDirectory._keyed

    def spy(self: StoreDirectory, kind: Any, run_id: str) -> Any:
        read.append(run_id)
        return real(self, kind, run_id)

    monkeypatch.setattr(StoreDirectory, "_keyed", spy)
    assert store.snapshot_records() == 14 + 8
    assert sorted(read) == ["new", "run01", "run04"]
    _assert_same(_listing(store), _files_only(store))


def test_files_changed_in_the_last_seconds_are_left_out(store: FileStore) -> None:
    """Two rewrites within one tick of the clock could reuse an inode: not trusted yet."""
    assert store.snapshot_records() == 0
    _assert_same(_listing(store), _files_only(store))
    _age(_directory_of(store))
    assert store.snapshot_records() == 21


def _damages() -> dict[str, Any]:
    def truncate(data: bytes) -> bytes:
        return data[: len(data) // 2]

    def second_chunk(data: bytes) -> bytes:
        # The chunks are arrays of 2 documents (CHUNK patched): break the second one.
        second = data.index(b"][") + 1
        return data[: second + 5] + b"\xc1" * 8 + data[second + 13 :]

    def a_value(data: bytes) -> bytes:
        # Still valid JSON, and a valid record: only the checksum tells.
        return data.replace(b"conformance", b"conformancf", 1)

    def a_name(data: bytes) -> bytes:
        # A name in the names blob, still a valid name: only the blob's checksum tells.
        assert b"going\nrun00\n" in data
        return data.replace(b"going\nrun00\n", b"going\nrun0O\n", 1)

    def another_version(data: bytes) -> bytes:
        # Version 1 kept the columns inside the footer: a reader of 2 must not try it.
        offset, length, magic = struct.unpack("<QQ8s", data[-24:])
        footer = msgspec.msgpack.decode(data[offset : offset + length])
        footer["version"] = 1
        encoded = msgspec.msgpack.encode(footer)
        return data[:offset] + encoded + struct.pack("<QQ8s", offset, len(encoded), magic)

    return {
        "a value": a_value,
        "a name": a_name,
        "another version": another_version,
        "empty": lambda _data: b"",
        "truncated": truncate,
        "magic": lambda data: data[:-8] + b"NOTMAGIC",
        "footer": lambda data: data[:-40] + b"\xff" * 24 + data[-16:],
        "second chunk": second_chunk,
        "garbage": lambda data: os.urandom(len(data)),
    }


@pytest.mark.parametrize("damage", list(_damages()))
def test_a_damaged_snapshot_is_ignored_from_where_it_breaks(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    monkeypatch.setattr(_records_snapshot, "CHUNK", 2)
    directory = _directory_of(store)
    _age(directory)
    expected = _files_only(store)
    store.snapshot_records()
    path = directory / SNAPSHOT
    path.write_bytes(_damages()[damage](path.read_bytes()))
    _assert_same(_listing(store), expected)
    store.snapshot_records()  # and writing it again replaces it
    assert _records_snapshot.open_snapshot(str(path)) is not None
    _assert_same(_listing(store), expected)


def test_a_corrupt_record_is_never_served_and_still_reported(store: FileStore) -> None:
    directory = _directory_of(store)
    (directory / "runs" / "run03.json").write_bytes(b"{not json")
    _age(directory)
    assert store.snapshot_records() == 12 + 8  # all but the corrupt one
    with pytest.raises(CorruptRecordError, match="run03"):
        store.list_run_records(EXP)
    scan = store.scan_run_records(EXP)
    assert [p.path for p in scan.problems] == [str(directory / "runs" / "run03.json")]
    assert len(scan.records) == 12


def test_values_json_holds_and_others_do_not_are_served_as_the_files_give_them(
    store: FileStore,
) -> None:
    huge = 2**70
    store.put_run_record(make_record(EXP, "huge", params={"n": huge, "$ref": "x"}))
    _age(_directory_of(store))
    assert store.snapshot_records() == 14 + 8
    records = {r.run_id: r for r in store.list_run_records(EXP)}
    assert records["huge"].params == {"n": huge, "$ref": "x"}


@pytest.mark.parametrize("nan", [False, True])
def test_a_chunk_of_current_documents_decodes_in_one_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nan: bool
) -> None:
    """Without escapes (no NaN) a chunk is one array decode; with them, one per document."""
    with FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect() as files:
        for i in range(5):
            metrics: dict[str, Any] = {"loss": math.nan if nan and i == 3 else float(i)}
            files.put_run_record(make_record(EXP, f"r{i}", metrics=metrics))
        _age(files.get_working_directory())
        files.snapshot_records()
        expected = _files_only(files)
        calls: list[int] = []
        real = _codec.RUN_RECORD.decode_array

        def counting(data: Any) -> Any:
            calls.append(1)
            return real(data)

        monkeypatch.setattr(_codec.RUN_RECORD, "decode_array", counting)
        _assert_same(_listing(files), expected)
        assert calls == ([] if nan else [1])


def test_a_sweep_leaves_a_snapshot(tmp_path: Path) -> None:
    @metalab.operation
    def op(params: dict[str, Any], capture: metalab.Capture) -> None:
        capture.metric("x", params["i"])

    sweep = metalab.Experiment(
        name="sw", version="1", operation=op, params=metalab.grid(i=range(4))
    )
    metalab.run(sweep, store=tmp_path, progress=False).result()
    assert (tmp_path / "sw_1" / SNAPSHOT).exists()
    assert len(metalab.load_results(tmp_path, "sw:1").records) == 4


def test_each_experiment_of_a_collection_has_its_own(tmp_path: Path) -> None:
    with FileStoreConfig(root=str(tmp_path)).connect() as files:
        for eid in ("a:1", "b:1"):
            for i in range(3):
                files.put_run_record(make_record(eid, f"{eid[0]}{i}"))
                files.put_derived(f"{eid[0]}{i}", {"m": float(i)})
        for eid in ("a:1", "b:1"):
            _age(tmp_path / eid.replace(":", "_"))
        assert files.snapshot_records() == 12
        assert files.snapshot_records("a:1") == 6
        assert sorted(p.parent.name for p in tmp_path.rglob(SNAPSHOT)) == ["a_1", "b_1"]
        listed: tuple[str | None, ...] = ("a:1", "b:1", None)
        for scope in listed:
            _assert_same(_listing(files, scope), _files_only(files, scope))


def test_an_empty_directory_has_none(store: FileStore) -> None:
    directory = _directory_of(store)
    _age(directory)
    store.snapshot_records()
    for path in [*(directory / "runs").glob("*.json"), *(directory / "derived").glob("*.json")]:
        path.unlink()
    assert store.snapshot_records() == 0
    assert not (directory / SNAPSHOT).exists()
    assert _listing(store) == ([], {})


def test_writers_racing_leave_a_listing_equal_to_the_files(store: FileStore) -> None:
    directory = _directory_of(store)
    _age(directory)
    stop = threading.Event()
    errors: list[BaseException] = []

    def refresh() -> None:
        with FileStoreConfig(root=str(directory.parent), experiment_id=EXP).connect() as own:
            while not stop.is_set():
                try:
                    own.snapshot_records()
                except Exception as exc:  # noqa: BLE001 -- reported below
                    errors.append(exc)
                    return

    threads = [threading.Thread(target=refresh) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for i in range(40):
            store.set_tags(f"run{i % 12:02d}", add=[f"t{i}"])
            if i % 5 == 0:
                _age(directory)
            _assert_same(_listing(store), _files_only(store))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert not list(directory.glob(".*.partial"))


_KILL_WHILE_WRITING = """
import os, signal, sys
from metalab.store import FileStoreConfig, _records_snapshot
_records_snapshot.CHUNK = 2
real = _records_snapshot.SnapshotWriter._flush
calls = []
def flush(self):
    real(self)
    calls.append(1)
    if len(calls) == 3:
        self._stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
_records_snapshot.SnapshotWriter._flush = flush
with FileStoreConfig(root=sys.argv[1], experiment_id="snap:1").connect() as files:
    files.snapshot_records()
"""


def test_a_writer_killed_mid_snapshot_leaves_the_old_one_and_a_temp_file(store: FileStore) -> None:
    directory = _directory_of(store)
    _age(directory)
    store.snapshot_records()
    before = (directory / SNAPSHOT).read_bytes()
    store.set_tags("run00", add=["after"])
    _age(directory)
    done = subprocess.run(
        [sys.executable, "-c", _KILL_WHILE_WRITING, str(directory.parent)], check=False
    )
    assert done.returncode == -9
    assert (directory / SNAPSHOT).read_bytes() == before
    assert len(list(directory.glob(".*.partial"))) == 1
    listing = _listing(store)
    _assert_same(listing, _files_only(store))
    assert "after" in next(r for r in listing[0] if r.run_id == "run00").tags


def test_the_records_it_serves_are_the_files_records_field_by_field(store: FileStore) -> None:
    _age(_directory_of(store))
    store.snapshot_records()
    records, derived = _listing(store)
    assert all(isinstance(r, RunRecord) for r in records)
    assert all(isinstance(d, DerivedMetrics) for d in derived.values())
    first = next(r for r in records if r.run_id == "run00")
    assert first.started_at.tzinfo is not None
    assert math.isnan(first.metrics["nan"])
    assert first.metrics["inf"] == -math.inf


def _old(path: Path) -> None:
    past = time.time() - 3 * 86400
    os.utime(path, (past, past))


def test_verify_checks_it_and_reports_a_wrong_or_unreadable_one(store: FileStore) -> None:
    directory = _directory_of(store)
    _age(directory)
    store.snapshot_records()
    root = str(directory.parent)
    good = run_cli("store", "verify", root, "--json")
    assert good.returncode == 0, good.stdout
    assert json.loads(good.stdout)["checked"]["snapshot documents"] == 21
    # A record rewritten in place keeping size and time: the snapshot would serve the
    # old one. Only verify can tell (it compares documents).
    path = directory / "runs" / "run05.json"
    state = path.stat()
    path.write_bytes(path.read_bytes().replace(b"conformance", b"conformancf"))
    os.utime(path, ns=(state.st_atime_ns, state.st_mtime_ns))
    wrong = run_cli("store", "verify", root, "--json")
    assert wrong.returncode == 1
    (problem,) = json.loads(wrong.stdout)["problems"]
    assert "runs/run05.json" in problem
    assert "metalab store gc --apply" in problem
    (directory / SNAPSHOT).write_bytes(b"not a snapshot")
    unreadable = run_cli("store", "verify", root, "--json")
    (problem,) = json.loads(unreadable.stdout)["problems"]
    assert "cannot be read" in problem


def test_gc_removes_a_stale_snapshot_and_keeps_a_current_one(store: FileStore) -> None:
    directory = _directory_of(store)
    _age(directory)
    store.snapshot_records()
    snapshot = directory / SNAPSHOT
    _old(snapshot)
    root = str(directory.parent)
    current = run_cli("store", "gc", root, "--json")
    assert json.loads(current.stdout)["stale_snapshots"] == []
    store.set_tags("run01", add=["edited"])  # the snapshot now holds an outdated record
    dry = run_cli("store", "gc", root, "--json")
    assert json.loads(dry.stdout)["stale_snapshots"] == [str(snapshot)]
    assert snapshot.exists()
    young = run_cli("store", "gc", root, "--older-than", "10d", "--apply", "--json")
    assert json.loads(young.stdout)["stale_snapshots"] == []
    applied = run_cli("store", "gc", root, "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "stale records snapshot" in applied.stdout
    assert not snapshot.exists()
    _assert_same(_listing(store), _files_only(store))


def test_the_cli_writes_both_snapshots(store: FileStore) -> None:
    directory = _directory_of(store)
    store.append_series("run00", [SeriesPoint("loss", 0, 0.5, 1.0)])
    _age(directory)
    past = time.time() - 60
    os.utime(directory / "series" / "run00.jsonl", (past, past))
    done = run_cli("store", "snapshot", str(directory.parent), "--experiment", EXP, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"documents": 21, "series_runs": 1}
    assert (directory / SNAPSHOT).exists()
    assert (directory / "series" / ".snapshot").exists()
    text = run_cli("store", "snapshot", str(directory.parent))
    assert "records snapshot: 21 document(s); series snapshot: 1 run(s)" in text.stdout


def test_the_cli_refuses_a_store_without_files() -> None:
    done = run_cli("store", "snapshot", "memory://")
    assert done.returncode != 0
    assert "metalab store snapshot" in done.stderr


@pytest.mark.parametrize("with_snapshot", [False, True])
def test_a_directory_of_several_experiments_reads_only_the_ones_derived(
    tmp_path: Path, with_snapshot: bool
) -> None:
    directory = StoreDirectory(tmp_path / "mixed", None, durable=False)
    for eid, run_id in (("a:1", "a0"), ("a:1", "a1"), ("b:1", "b0")):
        directory.put_run_record(make_record(eid, run_id))
        directory.put_derived(run_id, {"m": 1.0})
    if with_snapshot:
        _age(tmp_path / "mixed")
        assert directory.snapshot_records() == 6
    (tmp_path / "mixed" / "derived" / "b0.json").write_bytes(b"{broken")
    assert sorted(directory.list_derived("a:1")) == ["a0", "a1"]
    with pytest.raises(CorruptRecordError, match="b0"):
        directory.list_derived("b:1")


@pytest.mark.parametrize("error", [PermissionError(13, "read-only"), RuntimeError("a bug")])
def test_a_snapshot_that_cannot_be_written_never_fails_the_sweep(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
) -> None:
    def fail(_self: FileStore, _experiment_id: str | None = None) -> int:
        raise error

    monkeypatch.setattr(FileStore, "snapshot_records", fail)

    @metalab.operation
    def op(params: dict[str, Any], capture: metalab.Capture) -> None:
        capture.metric("x", params["i"])

    sweep = metalab.Experiment(
        name="nw", version="1", operation=op, params=metalab.grid(i=range(3))
    )
    with caplog.at_level("WARNING", logger="metalab.runner"):
        results = metalab.run(sweep, store=tmp_path, progress=False).result()
    assert len(results.successful) == 3
    assert "the records snapshot was not written" in caplog.text
    assert not (tmp_path / "nw_1" / SNAPSHOT).exists()


def _read_from_files(store: FileStore, kind: Any) -> dict[str, tuple[bytes, Any]]:
    """Each document of ``kind`` as its file holds it now, with that file's state."""
    directory = _directory_of(store) / kind
    found = {}
    for path in directory.glob("*.json"):
        stat = path.stat()
        found[path.stem] = (path.read_bytes(), (stat.st_mtime_ns, stat.st_size))
    return found


def _count_document_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files ``read_documents`` reads from now on."""
    reads: list[str] = []
    real = _fileio.read_with_state

    def counting(where: str) -> Any:
        reads.append(Path(where).stem)
        return real(where)

    monkeypatch.setattr(_directory, "read_with_state", counting)
    return reads


@pytest.mark.parametrize("chunk", [2048, 2])
def test_many_documents_for_a_rebuild_come_from_the_snapshot_where_unchanged(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(_records_snapshot, "CHUNK", chunk)
    directory = _directory_of(store)
    _age(directory)
    store.snapshot_records()
    store.set_tags("run01", add=["edited"])
    store.delete_run("run02")
    store.put_run_record(make_record(EXP, "new"))
    store.put_derived("run04", {"score": -1.0})
    (directory / "derived" / "run05.json").unlink()
    path = directory / "runs" / "run07.json"
    with path.open("r+b") as stream:  # in place: same inode, new time
        stream.write(path.read_bytes().replace(b'"conformance"', b'"by-hand____"'))
    monkeypatch.setattr(_directory, "_FROM_SNAPSHOT", 1)
    reads = _count_document_reads(monkeypatch)
    kinds: list[tuple[DocumentKind, list[str]]] = [
        ("runs", ["new", "run01", "run07"]),
        ("derived", ["run04"]),
    ]
    for kind, changed in kinds:
        reads.clear()
        scan = store.scan_documents(kind, EXP)
        documents = {doc.key: (doc.data, (doc.state.mtime_ns, doc.state.size)) for doc in scan}
        assert documents == _read_from_files(store, kind)
        assert sorted(reads) == changed


def test_a_few_documents_or_a_far_larger_snapshot_are_read_from_the_files(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _directory_of(store)
    _age(directory)
    store.snapshot_records()
    reads = _count_document_reads(monkeypatch)
    space = store._spaces_of(EXP)[0]
    assert len(list(space.read_documents("runs", ["run01", "run03"]))) == 2  # default bar
    assert reads == ["run01", "run03"]
    monkeypatch.setattr(_directory, "_FROM_SNAPSHOT", 1)
    reads.clear()
    assert len(list(space.read_documents("runs", ["run01", "run03"]))) == 2  # 13 held > 2x2
    assert reads == ["run01", "run03"]
    reads.clear()
    keys = [f"run{i:02d}" for i in range(7)]
    assert len(list(space.read_documents("runs", keys))) == 7  # 13 held <= 2x7
    assert reads == []


def test_a_rebuild_reads_from_the_files_past_a_broken_chunk(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_records_snapshot, "CHUNK", 2)
    directory = _directory_of(store)
    _age(directory)
    store.snapshot_records()
    path = directory / SNAPSHOT
    path.write_bytes(_damages()["second chunk"](path.read_bytes()))
    monkeypatch.setattr(_directory, "_FROM_SNAPSHOT", 1)
    reads = _count_document_reads(monkeypatch)
    scan = store.scan_documents("runs", EXP)
    documents = {doc.key: (doc.data, (doc.state.mtime_ns, doc.state.size)) for doc in scan}
    assert documents == _read_from_files(store, "runs")
    assert sorted(reads) == sorted(documents)[2:]  # the first chunk's two were served
