"""FileStore behaviour, checked against the files it writes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pickle
import shutil
import time
from pathlib import Path

import pytest

from metalab import _codec
from metalab.errors import (
    ArtifactNotFoundError,
    ConfigError,
    CorruptRecordError,
    ExperimentMismatchError,
    StoreError,
)
from metalab.records import DerivedMetrics, ExperimentManifest, ResultDocument, RunRecord
from metalab.store import (
    SupportsArtifactStreaming,
    SupportsBulkPut,
    SupportsDelete,
    SupportsExperimentManifests,
    SupportsExperiments,
    SupportsLogs,
    SupportsStructuredResults,
    SupportsWorkingDirectory,
)
from metalab.store._file import FileStore, FileStoreConfig
from metalab.testing import assert_same_document

EID = "my_exp:1.0"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def running(run_id: str, eid: str = EID) -> RunRecord:
    return RunRecord.running(run_id=run_id, experiment_id=eid, params={"x": 1}, started_at=T0)


def succeeded(run_id: str, eid: str = EID) -> RunRecord:
    return running(run_id, eid).succeeded(metrics={"loss": 0.5}, finished_at=T0)


def manifest(eid: str = EID, *, at: dt.datetime = T0, total: int = 1) -> ExperimentManifest:
    name, _, version = eid.partition(":")
    return ExperimentManifest(
        experiment_id=eid, name=name, version=version, submitted_at=at, total_runs=total
    )


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def documents_in(directory: Path) -> list[str]:
    """The files a store directory holds, apart from hidden ones (its lock)."""
    return sorted(
        str(p.relative_to(directory))
        for p in directory.rglob("*")
        if p.is_file() and p.name[0] != "."
    )


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect()


class TestFileStoreShapes:
    def test_a_scoped_store_works_in_the_experiment_directory(
        self, store: FileStore, tmp_path: Path
    ) -> None:
        assert store.mode == "scoped"
        assert store.get_working_directory() == tmp_path / "my_exp_1.0"

    def test_the_first_write_lays_down_the_skeleton_and_meta(
        self, store: FileStore, tmp_path: Path
    ) -> None:
        store.put_run_record(succeeded("r1"))
        directory = tmp_path / "my_exp_1.0"
        assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) == [
            "_meta.json",
            "artifacts",
            "derived",
            "experiments",
            "logs",
            "results",
            "runs",
        ]
        meta = _codec.STORE_META.decode((directory / "_meta.json").read_bytes())
        assert meta.experiment_id == EID
        assert meta.created_at is not None

    def test_scoping_creates_the_experiment_directory_and_nothing_in_it(
        self, tmp_path: Path
    ) -> None:
        with FileStoreConfig(root=str(tmp_path / "new"), experiment_id=EID).connect() as store:
            directory = store.get_working_directory()
            assert directory == tmp_path / "new" / "my_exp_1.0"
            assert directory.is_dir()
            meta = _codec.STORE_META.decode((directory / "_meta.json").read_bytes())
            assert meta.experiment_id == EID
            assert [p for p in directory.rglob("*") if p.is_file() and p.name[0] != "."] == [
                directory / "_meta.json"
            ]
            assert store.list_run_records() == []

    def test_reading_a_missing_root_creates_nothing(self, tmp_path: Path) -> None:
        missing = tmp_path / "missing"
        for config in (FileStoreConfig(root=str(missing)),):
            with config.connect() as s:
                assert s.get_run_record("r1") is None
                assert not s.run_exists("r1")
                assert s.list_run_records() == []
                assert s.scan_run_records().records == []
                assert s.list_artifacts("r1") == []
                assert s.get_derived("r1") is None
                assert not s.derived_exists("r1")
                assert s.get_log("r1", "run") is None
                assert s.list_logs("r1") == []
                assert s.get_result("r1", "curve") is None
                assert s.list_results("r1") == []
                assert s.list_experiment_manifests() == []
                assert s.list_experiments() == []
                assert not s.delete_run("r1")
                with pytest.raises(ArtifactNotFoundError):
                    s.get_artifact("r1", "model")
        assert not missing.exists()

    def test_an_unscoped_root_with_meta_is_a_standalone_store(
        self, store: FileStore, tmp_path: Path
    ) -> None:
        store.put_run_record(succeeded("r1"))
        standalone = FileStoreConfig(root=str(tmp_path / "my_exp_1.0")).connect()
        assert standalone.mode == "standalone"
        assert standalone.experiment_id == EID
        assert standalone.get_working_directory() == tmp_path / "my_exp_1.0"
        assert [r.run_id for r in standalone.list_run_records()] == ["r1"]
        assert standalone.list_experiments() == [EID]

    def test_a_collection_routes_records_to_their_experiment(self, tmp_path: Path) -> None:
        collection = FileStoreConfig(root=str(tmp_path)).connect()
        assert collection.mode == "collection"
        collection.put_run_record(succeeded("r1", "a:1"))
        collection.put_run_record(succeeded("r2", "b:1"))
        assert (tmp_path / "a_1" / "runs" / "r1.json").is_file()
        assert (tmp_path / "b_1" / "runs" / "r2.json").is_file()
        assert collection.list_experiments() == ["a:1", "b:1"]
        assert sorted(r.run_id for r in collection.list_run_records()) == ["r1", "r2"]
        assert [r.run_id for r in collection.list_run_records("b:1")] == ["r2"]
        assert collection.list_run_records("c:1") == []
        record = collection.get_run_record("r2")
        assert record is not None
        assert record.experiment_id == "b:1"
        assert collection.get_working_directory() == tmp_path

    def test_a_collection_finds_the_run_for_every_per_run_document(self, tmp_path: Path) -> None:
        collection = FileStoreConfig(root=str(tmp_path)).connect()
        collection.put_run_record(succeeded("r2", "b:1"))
        collection.put_artifact("r2", "model", b"weights")
        collection.put_derived("r2", {"d": 1.0})
        collection.put_log("r2", "run", "hello")
        collection.put_result("r2", "curve", ResultDocument(data=[1, 2]))
        collection.put_experiment_manifest(manifest("b:1"))
        scoped = FileStoreConfig(root=str(tmp_path), experiment_id="b:1").connect()
        assert scoped.get_artifact("r2", "model") == b"weights"
        assert collection.get_artifact("r2", "model") == b"weights"
        assert collection.list_artifacts("r2")[0].name == "model"
        assert collection.get_derived("r2") == scoped.get_derived("r2")
        assert collection.derived_exists("r2")
        assert collection.get_log("r2", "run") == "hello"
        assert collection.list_logs("r2") == ["run"]
        assert collection.log_path("r2", "run") == scoped.log_path("r2", "run")
        assert collection.get_result("r2", "curve") == ResultDocument(data=[1, 2])
        assert collection.list_results("r2") == ["curve"]
        assert [m.experiment_id for m in collection.list_experiment_manifests()] == ["b:1"]
        assert collection.delete_run("r2")
        assert scoped.get_run_record("r2") is None

    def test_a_collection_lists_the_derived_metrics_of_each_experiment(
        self, tmp_path: Path
    ) -> None:
        collection = FileStoreConfig(root=str(tmp_path)).connect()
        collection.put_run_record(succeeded("r1", "a:1"))
        collection.put_run_record(succeeded("r2", "b:1"))
        collection.put_derived("r1", {"d": 1})
        collection.put_derived("r2", {"d": 2})
        assert collection.list_derived() == {
            "r1": DerivedMetrics(metrics={"d": 1}),
            "r2": DerivedMetrics(metrics={"d": 2}),
        }
        assert collection.list_derived("b:1") == {"r2": DerivedMetrics(metrics={"d": 2})}
        assert collection.list_derived("c:1") == {}

    def test_a_store_of_no_one_experiment_lists_derived_metrics_by_their_runs(
        self, tmp_path: Path
    ) -> None:
        (tmp_path / "_meta.json").write_bytes(b'{"schema_version":1}')
        mixed = FileStoreConfig(root=str(tmp_path)).connect()
        assert (mixed.mode, mixed.experiment_id) == ("standalone", None)
        mixed.put_run_record(succeeded("r1", "a:1"))
        mixed.put_run_record(succeeded("r2", "b:1"))
        mixed.put_derived("r1", {"d": 1})
        mixed.put_derived("r2", {"d": 2})
        assert set(mixed.list_derived()) == {"r1", "r2"}
        assert mixed.list_derived("a:1") == {"r1": DerivedMetrics(metrics={"d": 1})}

    def test_a_collection_sees_experiments_written_by_another_store(self, tmp_path: Path) -> None:
        collection = FileStoreConfig(root=str(tmp_path)).connect()
        assert collection.get_run_record("r9") is None
        with FileStoreConfig(root=str(tmp_path), experiment_id="late:1").connect() as other:
            other.put_run_record(succeeded("r9", "late:1"))
        assert collection.run_exists("r9")
        assert collection.list_experiments() == ["late:1"]

    def test_a_collection_refuses_per_run_writes_for_an_unknown_run(self, tmp_path: Path) -> None:
        collection = FileStoreConfig(root=str(tmp_path)).connect()
        with pytest.raises(StoreError, match="put the run record first"):
            collection.put_artifact("nope", "model", b"x")
        assert list(tmp_path.iterdir()) == []

    def test_colliding_experiment_ids_are_caught_by_meta(self, tmp_path: Path) -> None:
        with FileStoreConfig(root=str(tmp_path), experiment_id="a:1").connect() as a:
            a.put_run_record(succeeded("r1", "a:1"))
        before = files(tmp_path)
        with pytest.raises(ExperimentMismatchError, match="'a:1'") as info:
            FileStoreConfig(root=str(tmp_path), experiment_id="a_1").connect()
        assert info.value.expected == "a_1"
        assert info.value.found == "a:1"
        collection = FileStoreConfig(root=str(tmp_path)).connect()
        with pytest.raises(ExperimentMismatchError):
            collection.put_run_record(succeeded("r2", "a_1"))
        assert files(tmp_path) == before

    def test_a_scoped_store_refuses_records_of_another_experiment(self, store: FileStore) -> None:
        with pytest.raises(ExperimentMismatchError, match="other:1"):
            store.put_run_record(succeeded("r1", "other:1"))
        with pytest.raises(ExperimentMismatchError):
            store.put_run_records([succeeded("r1", "other:1")])
        with pytest.raises(ExperimentMismatchError):
            store.put_experiment_manifest(manifest("other:1"))
        assert documents_in(store.get_working_directory()) == ["_meta.json"]

    def test_the_store_has_every_file_capability(self, store: FileStore) -> None:
        for capability in (
            SupportsWorkingDirectory,
            SupportsLogs,
            SupportsStructuredResults,
            SupportsExperimentManifests,
            SupportsExperiments,
            SupportsArtifactStreaming,
            SupportsBulkPut,
            SupportsDelete,
        ):
            assert isinstance(store, capability), capability.__name__

    def test_the_store_is_a_context_manager_and_refuses_pickling(self, store: FileStore) -> None:
        with store as same:
            same.put_run_record(succeeded("r1"))
        with pytest.raises(TypeError, match="pickle its config"):
            pickle.dumps(store)
        assert pickle.loads(pickle.dumps(store.config)).connect().run_exists("r1")


class TestFileStorePutRunRecord:
    def test_a_record_round_trips_through_its_file(self, store: FileStore) -> None:
        record = succeeded("r1")
        store.put_run_record(record)
        path = store.get_working_directory() / "runs" / "r1.json"
        assert path.read_bytes() == _codec.RUN_RECORD.encode(record)
        got = store.get_run_record("r1")
        assert got is not None
        assert_same_document(got, record)
        assert store.run_exists("r1")

    @pytest.mark.parametrize("finish", ["success", "failed", "cancelled"])
    def test_a_late_running_record_keeps_the_finished_one(
        self, store: FileStore, finish: str
    ) -> None:
        start = running("r1")
        finished = {
            "success": start.succeeded(finished_at=T0),
            "failed": start.failed(ValueError("boom"), finished_at=T0),
            "cancelled": start.cancelled(finished_at=T0),
        }[finish]
        store.put_run_record(finished)
        store.put_run_record(start)
        got = store.get_run_record("r1")
        assert got is not None
        assert got.status == finish

    def test_a_finished_record_replaces_a_running_one(self, store: FileStore) -> None:
        store.put_run_record(running("r1"))
        store.put_run_record(succeeded("r1"))
        got = store.get_run_record("r1")
        assert got is not None
        assert got.status == "success"

    def test_a_running_record_replaces_a_running_one(self, store: FileStore) -> None:
        store.put_run_record(running("r1"))
        later = RunRecord.running(run_id="r1", experiment_id=EID, params={"x": 2})
        store.put_run_record(later)
        assert store.get_run_record("r1") == later

    def test_a_finished_record_replaces_a_finished_one(self, store: FileStore) -> None:
        store.put_run_record(succeeded("r1"))
        failed = running("r1").failed(ValueError("again"), finished_at=T0)
        store.put_run_record(failed)
        got = store.get_run_record("r1")
        assert got is not None
        assert got.status == "failed"

    def test_writes_leave_no_temp_files(self, store: FileStore) -> None:
        store.put_run_record(running("r1"))
        store.put_run_record(running("r1"))
        store.put_run_record(succeeded("r1"))
        store.put_run_record(running("r1"))
        runs = store.get_working_directory() / "runs"
        assert sorted(p.name for p in runs.iterdir()) == ["r1.json"]

    def test_a_durable_store_writes_the_same_files(self, tmp_path: Path) -> None:
        config = FileStoreConfig(root=str(tmp_path), experiment_id=EID, durable=True)
        with config.connect() as durable:
            durable.put_run_record(running("r1"))
            durable.put_run_record(succeeded("r1"))
            durable.put_run_records([succeeded("r2"), running("r3")])
            durable.put_artifact("r1", "model", b"abc")
            durable.put_experiment_manifest(manifest())
            assert sorted(r.run_id for r in durable.list_run_records()) == ["r1", "r2", "r3"]
            assert durable.get_artifact("r1", "model") == b"abc"

    def test_an_invalid_run_id_is_rejected_before_anything_is_written(
        self, store: FileStore
    ) -> None:
        with pytest.raises(ConfigError, match="invalid run id"):
            store.put_run_record(succeeded("../escape"))
        assert documents_in(store.get_working_directory()) == ["_meta.json"]
        assert not (store.get_working_directory().parent / "escape.json").exists()


class TestFileStorePutRunRecords:
    def test_bulk_put_returns_the_count_and_stores_every_record(self, store: FileStore) -> None:
        records = (succeeded(f"r{i}") for i in range(1_100))
        assert store.put_run_records(records) == 1_100
        assert len(store.list_run_records()) == 1_100

    def test_bulk_put_keeps_finished_records(self, store: FileStore) -> None:
        store.put_run_record(succeeded("r1"))
        assert store.put_run_records([running("r1"), succeeded("r2"), running("r2")]) == 3
        statuses = {r.run_id: r.status for r in store.list_run_records()}
        assert statuses == {"r1": "success", "r2": "success"}

    def test_a_bad_id_in_a_chunk_writes_nothing_of_that_chunk(self, store: FileStore) -> None:
        with pytest.raises(ConfigError):
            store.put_run_records([succeeded("r1"), succeeded("a/b")])
        assert store.list_run_records() == []

    def test_a_collection_bulk_put_routes_by_experiment(self, tmp_path: Path) -> None:
        collection = FileStoreConfig(root=str(tmp_path)).connect()
        count = collection.put_run_records([succeeded("r1", "a:1"), succeeded("r2", "b:1")])
        assert count == 2
        assert collection.list_experiments() == ["a:1", "b:1"]


class TestFileStoreScan:
    def test_list_filters_by_experiment(self, store: FileStore) -> None:
        store.put_run_records([succeeded("r1"), succeeded("r2")])
        assert len(store.list_run_records(EID)) == 2
        assert store.list_run_records("other:1") == []

    def test_hidden_and_foreign_files_are_ignored(self, store: FileStore) -> None:
        store.put_run_record(succeeded("r1"))
        runs = store.get_working_directory() / "runs"
        (runs / ".0123.partial").write_bytes(b'{"schema_version":1,"tor')
        (runs / "notes.txt").write_text("not a record")
        assert [r.run_id for r in store.list_run_records()] == ["r1"]

    def test_a_corrupt_file_makes_list_raise_naming_it(self, store: FileStore) -> None:
        store.put_run_records([succeeded("r1"), succeeded("r2")])
        bad = store.get_working_directory() / "runs" / "r2.json"
        bad.write_bytes(b'{"schema_version":1,"run_id":')
        with pytest.raises(CorruptRecordError) as info:
            store.list_run_records()
        assert info.value.path == str(bad)
        with pytest.raises(CorruptRecordError, match=r"r2\.json"):
            store.get_run_record("r2")

    def test_scan_collects_problems_and_returns_the_good_records(self, store: FileStore) -> None:
        store.put_run_records([succeeded(f"r{i}") for i in range(5)])
        runs = store.get_working_directory() / "runs"
        (runs / "r1.json").write_bytes(b"garbage")
        (runs / "r3.json").write_bytes(json.dumps({"schema_version": 99}).encode())
        result = store.scan_run_records()
        assert sorted(r.run_id for r in result.records) == ["r0", "r2", "r4"]
        assert sorted(Path(p.path).name for p in result.problems) == ["r1.json", "r3.json"]

    def test_scan_collects_a_record_nested_too_deeply_to_decode(self, store: FileStore) -> None:
        store.put_run_records([succeeded("r0"), succeeded("r1")])
        deep = b"[" * 100_000 + b"]" * 100_000
        path = store.get_working_directory() / "runs" / "r1.json"
        path.write_bytes(b'{"schema_version":1,"run_id":"r1","params":{"p":' + deep + b"}}")
        result = store.scan_run_records()
        assert [r.run_id for r in result.records] == ["r0"]
        assert [Path(p.path).name for p in result.problems] == ["r1.json"]

    def test_a_file_holding_another_run_is_corrupt(self, store: FileStore) -> None:
        store.put_run_record(succeeded("r1"))
        runs = store.get_working_directory() / "runs"
        shutil.copy(runs / "r1.json", runs / "r2.json")
        with pytest.raises(CorruptRecordError, match="holds run 'r1'"):
            store.get_run_record("r2")
        assert len(store.scan_run_records().problems) == 1

    def test_iter_streams_in_small_batches(self, store: FileStore) -> None:
        store.put_run_records([succeeded(f"r{i}") for i in range(7)])
        stream = store.iter_run_records(batch_size=2)
        first = next(stream)
        assert first.experiment_id == EID
        assert len(list(stream)) == 6

    def test_iter_reports_problems_through_the_callback(self, store: FileStore) -> None:
        store.put_run_records([succeeded("r1"), succeeded("r2")])
        (store.get_working_directory() / "runs" / "r1.json").write_bytes(b"{")
        seen: list[CorruptRecordError] = []
        assert [r.run_id for r in store.iter_run_records(on_error=seen.append)] == ["r2"]
        assert len(seen) == 1

    def test_batch_size_must_be_positive(self, store: FileStore) -> None:
        with pytest.raises(ConfigError, match="batch_size"):
            list(store.iter_run_records(batch_size=0))


class TestFileStoreArtifacts:
    def test_bytes_are_stored_with_sha256_size_and_a_relative_uri(self, store: FileStore) -> None:
        store.put_run_record(succeeded("r1"))
        desc = store.put_artifact("r1", "model", b"weights", kind="bytes", format="bin")
        assert desc.uri == "artifacts/r1/model.bin"
        assert desc.content_hash == hashlib.sha256(b"weights").hexdigest()
        assert desc.size_bytes == 7
        assert (store.get_working_directory() / desc.uri).read_bytes() == b"weights"
        assert store.get_artifact("r1", "model") == b"weights"
        assert store.list_artifacts("r1") == [desc]

    @pytest.mark.parametrize(
        "data",
        [
            bytearray(b"\x00\x01\x02\x03"),
            memoryview(b"\x00\x01\x02\x03"),
            memoryview(b"\x00\x01\x02\x03").cast("H"),
        ],
    )
    def test_bytes_like_objects_are_accepted(
        self, store: FileStore, data: bytearray | memoryview
    ) -> None:
        desc = store.put_artifact("r1", "blob", data)
        assert desc.size_bytes == 4
        assert store.get_artifact("r1", "blob") == b"\x00\x01\x02\x03"

    def test_a_file_path_is_streamed_and_hashed(self, store: FileStore, tmp_path: Path) -> None:
        source = tmp_path / "big.bin"
        payload = bytes(range(256)) * 10_000
        source.write_bytes(payload)
        desc = store.put_artifact("r1", "big", source, kind="file", format="bin", metadata={"a": 1})
        assert desc.content_hash == hashlib.sha256(payload).hexdigest()
        assert desc.size_bytes == len(payload)
        assert desc.metadata == {"a": 1}
        with store.open_artifact("r1", "big") as stream:
            assert stream.read(256) == bytes(range(256))

    def test_putting_a_name_again_replaces_its_descriptor(self, store: FileStore) -> None:
        store.put_artifact("r1", "a", b"1")
        store.put_artifact("r1", "b", b"2")
        store.put_artifact("r1", "a", b"333")
        assert [(d.name, d.size_bytes) for d in store.list_artifacts("r1")] == [("a", 3), ("b", 1)]
        assert store.get_artifact("r1", "a") == b"333"

    def test_a_missing_artifact_raises_artifact_not_found(self, store: FileStore) -> None:
        store.put_artifact("r1", "a", b"1")
        with pytest.raises(ArtifactNotFoundError, match="'nope'"):
            store.get_artifact("r1", "nope")
        with pytest.raises(ArtifactNotFoundError):
            store.open_artifact("r2", "a")
        (store.get_working_directory() / "artifacts" / "r1" / "a.bin").unlink()
        with pytest.raises(ArtifactNotFoundError):
            store.get_artifact("r1", "a")

    def test_a_moved_store_still_resolves_its_artifacts(
        self, store: FileStore, tmp_path: Path
    ) -> None:
        store.put_artifact("r1", "a", b"payload")
        moved = tmp_path / "elsewhere"
        shutil.move(store.get_working_directory(), moved)
        assert FileStoreConfig(root=str(moved)).connect().get_artifact("r1", "a") == b"payload"

    def test_two_names_mapping_to_one_file_are_refused(self, store: FileStore) -> None:
        store.put_artifact("r1", "a", b"first", format="b.c")
        with pytest.raises(ConfigError, match="would overwrite"):
            store.put_artifact("r1", "a.b", b"second", format="c")
        assert store.get_artifact("r1", "a") == b"first"
        artifact_dir = store.get_working_directory() / "artifacts" / "r1"
        assert sorted(p.name for p in artifact_dir.iterdir()) == ["_manifest.json", "a.b.c"]

    def test_a_str_is_not_taken_for_a_path(self, store: FileStore) -> None:
        with pytest.raises(TypeError, match=r"pathlib\.Path"):
            store.put_artifact("r1", "a", "some/file.txt")  # type: ignore[arg-type]

    def test_a_manifest_uri_escaping_the_store_is_corrupt(self, store: FileStore) -> None:
        store.put_artifact("r1", "a", b"x")
        path = store.get_working_directory() / "artifacts" / "r1" / "_manifest.json"
        doc = json.loads(path.read_bytes())
        doc["artifacts"][0]["uri"] = "../../secret"
        path.write_text(json.dumps(doc))
        with pytest.raises(CorruptRecordError, match="outside the store"):
            store.get_artifact("r1", "a")


def age(path: Path, days: float = 3) -> Path:
    old = time.time() - days * 86400
    os.utime(path, (old, old))
    return path


class TestFileStoreUnreferencedArtifacts:
    def test_only_old_files_no_manifest_names_are_listed(self, store: FileStore) -> None:
        store.put_artifact("r1", "a", b"1")
        store.put_artifact("r1", "a", b"2")  # goes to a@<version>.bin; a.bin is removed
        run_dir = store.get_working_directory() / "artifacts" / "r1"
        named = run_dir / Path(store.list_artifacts("r1")[0].uri).name
        leftover = run_dir / "a.bin"  # a crash before the old file was removed
        leftover.write_bytes(b"1")
        (run_dir / "b.bin").write_bytes(b"being put")  # young: a writer may name it
        (run_dir / ".0123.partial").write_bytes(b"")
        for path in (leftover, run_dir / ".0123.partial", named):
            age(path)
        age(run_dir / "_manifest.json")
        assert store.unreferenced_artifacts(time.time() - 86400) == [leftover]

    def test_removal_leaves_the_named_files_readable(self, store: FileStore) -> None:
        store.put_artifact("r1", "a", b"keep")
        orphan_dir = store.get_working_directory() / "artifacts" / "r2"
        orphan_dir.mkdir()
        orphan = orphan_dir / "a.bin"  # a crash before the run's first manifest
        orphan.write_bytes(b"lost")
        age(orphan)
        age(store.get_working_directory() / "artifacts" / "r1" / "a.bin")
        assert store.remove_unreferenced_artifacts(time.time() - 86400) == [orphan]
        assert not orphan.exists()
        assert store.get_artifact("r1", "a") == b"keep"
        assert store.unreferenced_artifacts(time.time()) == []

    def test_a_run_whose_manifest_cannot_be_read_is_left_alone(self, store: FileStore) -> None:
        store.put_artifact("r1", "a", b"x")
        run_dir = store.get_working_directory() / "artifacts" / "r1"
        (run_dir / "_manifest.json").write_bytes(b"{not json")
        age(run_dir / "a.bin")
        problems: list[CorruptRecordError] = []
        assert store.remove_unreferenced_artifacts(time.time(), on_error=problems.append) == []
        assert [Path(p.path).name for p in problems] == ["_manifest.json"]
        assert (run_dir / "a.bin").exists()
        with pytest.raises(CorruptRecordError):
            store.unreferenced_artifacts(time.time())

    def test_a_collection_looks_in_every_experiment(self, tmp_path: Path) -> None:
        leftovers = []
        for eid in ("a:1", "b:1"):
            with FileStoreConfig(root=str(tmp_path), experiment_id=eid).connect() as scoped:
                scoped.put_artifact("r1", "x", b"x")
                path = scoped.get_working_directory() / "artifacts" / "r1" / "old.bin"
                path.write_bytes(b"old")
                leftovers.append(age(path))
        with FileStoreConfig(root=str(tmp_path)).connect() as collection:
            assert collection.unreferenced_artifacts(time.time() - 60) == leftovers


class TestFileStoreLogs:
    def test_logs_round_trip_and_are_listed_by_name(self, store: FileStore) -> None:
        store.put_log("r1", "run", "line 1\n")
        store.put_log("r1", "train_log", "ü\n")
        store.put_log("r1.b", "run", "other run")
        store.put_log("r1-2", "run", "other run")
        assert store.get_log("r1", "train_log") == "ü\n"
        assert store.list_logs("r1") == ["run", "train_log"]
        assert store.list_logs("r1.b") == ["run"]
        assert (store.get_working_directory() / "logs" / "r1_run.log").read_text() == "line 1\n"

    def test_log_path_is_ready_for_streaming(self, store: FileStore) -> None:
        path = store.log_path("r1", "run")
        assert path == store.get_working_directory() / "logs" / "r1_run.log"
        with path.open("a") as stream:
            stream.write("streamed\n")
        assert store.get_log("r1", "run") == "streamed\n"
        assert store.list_logs("r1") == ["run"]

    def test_a_log_cut_mid_character_still_reads(self, store: FileStore) -> None:
        store.log_path("r1", "run").write_bytes("é".encode()[:1])
        assert store.get_log("r1", "run") == "\ufffd"

    def test_log_text_must_be_a_string(self, store: FileStore) -> None:
        with pytest.raises(TypeError, match="str"):
            store.put_log("r1", "run", b"bytes")  # type: ignore[arg-type]


class TestFileStoreResultsAndDerived:
    def test_results_round_trip_and_are_listed(self, store: FileStore) -> None:
        doc = ResultDocument(data={"y": [1.0, float("inf")]}, dtype="float64", shape=(2,))
        store.put_result("r1", "curve", doc)
        store.put_result("r1", "pr", ResultDocument(data=None))
        got = store.get_result("r1", "curve")
        assert got is not None
        assert_same_document(got, doc)
        assert store.list_results("r1") == ["curve", "pr"]
        assert store.get_result("r1", "nope") is None

    def test_derived_metrics_are_stored_and_replaced(self, store: FileStore) -> None:
        assert not store.derived_exists("r1")
        store.put_derived("r1", {"a": 1.0, "b": "x"})
        store.put_derived("r1", {"a": 2.0})
        got = store.get_derived("r1")
        assert got is not None
        assert got.metrics == {"a": 2.0}
        assert store.derived_exists("r1")


class TestFileStoreExperimentManifests:
    def test_manifests_accumulate_and_list_oldest_first(self, store: FileStore) -> None:
        later = manifest(at=T0 + dt.timedelta(hours=1), total=2)
        store.put_experiment_manifest(later)
        store.put_experiment_manifest(manifest())
        listed = store.list_experiment_manifests()
        assert [m.total_runs for m in listed] == [1, 2]
        names = sorted(p.name for p in (store.get_working_directory() / "experiments").iterdir())
        assert names == [
            "my_exp_1.0_20260101_000000_000000.json",
            "my_exp_1.0_20260101_010000_000000.json",
        ]

    def test_the_same_manifest_twice_is_stored_once(self, store: FileStore) -> None:
        store.put_experiment_manifest(manifest())
        store.put_experiment_manifest(manifest())
        assert len(store.list_experiment_manifests()) == 1

    def test_different_manifests_at_the_same_instant_are_both_kept(self, store: FileStore) -> None:
        store.put_experiment_manifest(manifest(total=1))
        store.put_experiment_manifest(manifest(total=2))
        store.put_experiment_manifest(manifest(total=3))
        assert sorted(m.total_runs for m in store.list_experiment_manifests()) == [1, 2, 3]

    def test_manifests_filter_by_experiment(self, tmp_path: Path) -> None:
        collection = FileStoreConfig(root=str(tmp_path)).connect()
        collection.put_experiment_manifest(manifest("a:1", at=T0 + dt.timedelta(seconds=1)))
        collection.put_experiment_manifest(manifest("b:1"))
        assert [m.experiment_id for m in collection.list_experiment_manifests()] == ["b:1", "a:1"]
        assert [m.experiment_id for m in collection.list_experiment_manifests("a:1")] == ["a:1"]


class TestFileStoreDeleteRun:
    def test_delete_removes_everything_of_the_run_and_nothing_else(self, store: FileStore) -> None:
        for run_id in ("r1", "r1.b"):
            store.put_run_record(succeeded(run_id))
            store.put_derived(run_id, {"d": 1})
            store.put_artifact(run_id, "model", b"x")
            store.put_log(run_id, "run", "log")
            store.put_result(run_id, "curve", ResultDocument(data=1))
        root = store.get_working_directory()
        before = files(root)
        assert store.delete_run("r1")
        removed = sorted(set(before) - set(files(root)))
        assert removed == [
            "artifacts/r1",
            "artifacts/r1/_manifest.json",
            "artifacts/r1/model.bin",
            "derived/r1.json",
            "logs/r1_run.log",
            "results/r1",
            "results/r1/curve.json",
            "runs/r1.json",
        ]
        assert store.get_run_record("r1.b") is not None
        assert not store.delete_run("r1")
