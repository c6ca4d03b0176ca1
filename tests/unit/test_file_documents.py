"""The FileStore's document API: what an index over the files is handed, and nothing else."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import pytest

from metalab import _codec
from metalab.errors import ConfigError, ExperimentMismatchError
from metalab.records import ExperimentManifest
from metalab.store import FileStore, FileStoreConfig
from metalab.store._documents import FileState
from metalab.testing.store import make_record

EID = "docs:1"
AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def state_of(path: Path) -> FileState:
    stat = path.stat()
    return FileState(stat.st_mtime_ns, stat.st_size)


def manifest(eid: str = EID, name: str = "docs") -> ExperimentManifest:
    return ExperimentManifest(experiment_id=eid, name=name, version="1", submitted_at=AT)


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect()


@pytest.fixture
def collection(tmp_path: Path) -> FileStore:
    return FileStoreConfig(root=str(tmp_path)).connect()


class TestWritesReturnTheDocumentTheyWrote:
    def test_a_record_comes_back_with_the_bytes_and_state_of_its_file(
        self, store: FileStore
    ) -> None:
        record = make_record(EID)
        doc = store.write_run(record)
        assert doc is not None
        path = store.layout.run_path(record.run_id)
        assert (doc.kind, doc.key, doc.experiment_id) == ("runs", record.run_id, EID)
        assert doc.data == path.read_bytes() == _codec.RUN_RECORD.encode(record)
        assert doc.state == state_of(path)
        assert doc.source == str(path)

    def test_a_record_the_stored_one_keeps_out_returns_none_and_changes_nothing(
        self, store: FileStore
    ) -> None:
        done = make_record(EID, status="success")
        store.write_run(done)
        path = store.layout.run_path(done.run_id)
        before = (path.read_bytes(), state_of(path))
        assert store.write_run(make_record(EID, done.run_id, status="running")) is None
        assert (path.read_bytes(), state_of(path)) == before

    def test_bulk_writes_return_only_the_records_placed(self, store: FileStore) -> None:
        done = make_record(EID, status="failed")
        store.write_run(done)
        fresh = make_record(EID)
        written = store.write_runs([make_record(EID, done.run_id, status="running"), fresh])
        assert [d.key for d in written] == [fresh.run_id]
        assert written[0].state == state_of(store.layout.run_path(fresh.run_id))

    def test_a_bad_record_in_a_bulk_write_stores_none_of_it(self, collection: FileStore) -> None:
        good = make_record("a:1")
        with pytest.raises(ConfigError, match="invalid run id"):
            collection.write_runs([good, make_record("b:1", "bad/id")])
        assert collection.list_run_records() == []

    def test_a_collection_files_documents_under_the_experiment_of_the_run(
        self, collection: FileStore, tmp_path: Path
    ) -> None:
        record = make_record("a:1")
        collection.write_run(record)
        doc = collection.write_derived(record.run_id, {"auc": 0.5})
        path = tmp_path / "a_1" / "derived" / f"{record.run_id}.json"
        assert (doc.kind, doc.experiment_id, doc.state) == ("derived", "a:1", state_of(path))
        assert doc.data == path.read_bytes()

    def test_a_manifest_is_keyed_by_its_file_and_written_once(self, store: FileStore) -> None:
        first = store.write_manifest(manifest())
        again = store.write_manifest(manifest())
        other = store.write_manifest(manifest(name="other"))
        assert first == again
        assert first.kind == "manifests"
        assert other.key == f"{first.key}_1"
        files = sorted(p.stem for p in store.layout.experiments_dir.glob("*.json"))
        assert files == sorted([first.key, other.key])
        assert first.state == state_of(store.layout.experiments_dir / f"{first.key}.json")

    def test_a_manifest_of_another_experiment_is_refused(self, store: FileStore) -> None:
        with pytest.raises(ExperimentMismatchError):
            store.write_manifest(manifest("other:1"))


class TestScanningDocuments:
    def test_a_scan_counts_what_it_listed_and_reads_the_exact_bytes(
        self, collection: FileStore
    ) -> None:
        records = [make_record("a:1"), make_record("a:1"), make_record("b:1")]
        collection.put_run_records(records)
        scan = collection.scan_documents("runs")
        assert len(scan) == 3
        docs = {d.key: d for d in scan}
        for record in records:
            doc = docs[record.run_id]
            assert doc.experiment_id == record.experiment_id
            assert doc.data == Path(doc.source).read_bytes()
            assert doc.state == state_of(Path(doc.source))
        assert {d.key for d in collection.scan_documents("runs", "b:1")} == {records[2].run_id}

    def test_a_document_deleted_after_the_listing_is_skipped(self, store: FileStore) -> None:
        gone, kept = make_record(EID), make_record(EID)
        store.put_run_records([gone, kept])
        scan = store.scan_documents("runs")
        store.layout.run_path(gone.run_id).unlink()
        assert len(scan) == 2
        assert [d.key for d in scan] == [kept.run_id]

    def test_hidden_files_are_not_documents(self, store: FileStore) -> None:
        store.put_run_record(make_record(EID))
        (store.layout.runs_dir / ".leftover.partial").write_bytes(b"{")
        assert len(store.scan_documents("runs")) == 1
        assert len(store.document_states("runs")) == 1

    def test_states_are_the_files_and_read_back_as_documents(self, store: FileStore) -> None:
        record = make_record(EID)
        store.put_run_record(record)
        store.put_derived(record.run_id, {"x": 1})
        store.put_experiment_manifest(manifest())
        refs = [
            ref for kind in ("runs", "derived", "manifests") for ref in store.document_states(kind)
        ]
        assert [r.kind for r in refs] == ["runs", "derived", "manifests"]
        docs = list(store.read_documents(refs))
        assert [(d.kind, d.key, d.state) for d in docs] == [(r.kind, r.key, r.state) for r in refs]
        assert all(d.data == Path(d.source).read_bytes() for d in docs)

    def test_experiments_with_documents_and_directories(self, collection: FileStore) -> None:
        assert collection.experiment_directories() == []
        assert collection.experiments_with_documents() == frozenset()
        collection.put_run_record(make_record("a:1"))
        collection.put_experiment_manifest(manifest("b:1"))
        (Path(collection.config.root) / "c_1").mkdir()
        FileStoreConfig(root=collection.config.root, experiment_id="c:1").connect().log_path(
            "r1", "run"
        )
        assert collection.experiment_directories() == ["a:1", "b:1", "c:1"]
        assert collection.experiments_with_documents() == {"a:1", "b:1"}


class TestIndexStaleMarks:
    def test_a_mark_is_cleared_only_if_nothing_marked_it_again_since(
        self, collection: FileStore
    ) -> None:
        collection.put_run_record(make_record("a:1"))
        collection.put_run_record(make_record("b:1"))
        assert not collection.is_index_marked_stale()
        collection.mark_index_stale(["b:1"])
        seen = collection.index_stale_marks()
        assert list(seen) == ["b:1"]
        collection.mark_index_stale(["b:1"])  # a later miss, while a sync runs
        collection.clear_index_stale(seen)
        assert collection.is_index_marked_stale()
        collection.clear_index_stale(collection.index_stale_marks())
        assert not collection.is_index_marked_stale()

    def test_every_mark_gets_a_new_token(self, store: FileStore) -> None:
        store.put_run_record(make_record(EID))
        store.mark_index_stale()
        first = store.index_stale_marks()
        store.mark_index_stale()
        assert store.index_stale_marks() != first

    def test_a_mark_written_by_an_older_metalab_is_cleared(self, store: FileStore) -> None:
        store.put_run_record(make_record(EID))
        meta_path = store.layout.meta_path
        meta = _codec.STORE_META.decode(meta_path.read_bytes())
        meta_path.write_bytes(
            _codec.STORE_META.encode(msgspec.structs.replace(meta, index_stale=True))
        )
        assert store.index_stale_marks() == {EID: ""}
        store.clear_index_stale(store.index_stale_marks())
        assert not store.is_index_marked_stale()

    def test_a_directory_without_meta_gets_no_mark(self, tmp_path: Path) -> None:
        store = FileStoreConfig(root=str(tmp_path / "empty")).connect()
        store.mark_index_stale()
        assert not store.is_index_marked_stale()
        assert not (tmp_path / "empty").exists()


class TestCopyTo:
    def test_a_copy_holds_the_documents_without_hidden_files_or_marks(
        self, store: FileStore, tmp_path: Path
    ) -> None:
        record = make_record(EID)
        store.put_run_record(record)
        store.mark_index_stale()
        (store.layout.runs_dir / ".x.partial").write_bytes(b"{")
        copy = store.copy_to(tmp_path / "copy")
        assert copy.mode == "standalone"
        assert copy.get_run_record(record.run_id) == record
        assert not copy.is_index_marked_stale()
        assert store.is_index_marked_stale()
        assert not (tmp_path / "copy" / "runs" / ".x.partial").exists()

    def test_a_directory_that_is_not_empty_is_refused_and_left_alone(
        self, store: FileStore, tmp_path: Path
    ) -> None:
        store.put_run_record(make_record(EID))
        target = tmp_path / "busy"
        target.mkdir()
        (target / "keep.txt").write_text("mine")
        with pytest.raises(ConfigError, match="not an empty directory"):
            store.copy_to(target)
        assert [p.name for p in target.iterdir()] == ["keep.txt"]
