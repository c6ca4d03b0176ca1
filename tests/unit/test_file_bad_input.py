"""Bad input to a FileStore: a clear error, and the existing files stay byte-identical."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from metalab import _codec
from metalab.errors import (
    ConfigError,
    CorruptRecordError,
    ExperimentMismatchError,
    UnsupportedSchemaVersionError,
)
from metalab.records import ResultDocument, RunRecord, StoreMeta
from metalab.store._file import FileStore, FileStoreConfig

EID = "my_exp:1.0"


def tree_digest(root: Path) -> str:
    """Hash every path and file content under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def succeeded(run_id: str, eid: str = EID) -> RunRecord:
    return RunRecord.running(run_id=run_id, experiment_id=eid).succeeded()


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    s = FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect()
    s.put_run_records([succeeded("r1"), succeeded("r2")])
    s.put_artifact("r1", "model", b"weights")
    s.put_log("r1", "run", "log")
    s.put_result("r1", "curve", ResultDocument(data=[1]))
    s.put_derived("r1", {"d": 1.0})
    return s


BAD_IDS = ["..", "../r1", "a/b", "/etc/passwd", "a\\b", "r\x001", "x" * 10_000, ""]

OPERATIONS: dict[str, Callable[[FileStore, str], object]] = {
    "get_run_record": lambda s, i: s.get_run_record(i),
    "run_exists": lambda s, i: s.run_exists(i),
    "put_run_record": lambda s, i: s.put_run_record(succeeded(i)),
    "put_run_records": lambda s, i: s.put_run_records([succeeded(i)]),
    "put_artifact": lambda s, i: s.put_artifact(i, "model", b"x"),
    "put_artifact name": lambda s, i: s.put_artifact("r1", i, b"x"),
    "put_artifact format": lambda s, i: s.put_artifact("r1", "model", b"x", format=i),
    "get_artifact": lambda s, i: s.get_artifact(i, "model"),
    "get_artifact name": lambda s, i: s.get_artifact("r1", i),
    "list_artifacts": lambda s, i: s.list_artifacts(i),
    "put_derived": lambda s, i: s.put_derived(i, {"a": 1}),
    "get_derived": lambda s, i: s.get_derived(i),
    "put_log": lambda s, i: s.put_log("r1", i, "text"),
    "get_log": lambda s, i: s.get_log(i, "run"),
    "log_path": lambda s, i: s.log_path("r1", i),
    "list_logs": lambda s, i: s.list_logs(i),
    "put_result": lambda s, i: s.put_result(i, "curve", ResultDocument()),
    "get_result": lambda s, i: s.get_result("r1", i),
    "list_results": lambda s, i: s.list_results(i),
    "delete_run": lambda s, i: s.delete_run(i),
}


class TestUnsafeIds:
    @pytest.mark.parametrize("bad", BAD_IDS, ids=lambda b: repr(b)[:20])
    @pytest.mark.parametrize("operation", sorted(OPERATIONS))
    def test_every_operation_rejects_the_id_and_touches_nothing(
        self, store: FileStore, tmp_path: Path, operation: str, bad: str
    ) -> None:
        before = tree_digest(tmp_path)
        with pytest.raises(ConfigError, match="invalid"):
            OPERATIONS[operation](store, bad)
        assert tree_digest(tmp_path) == before

    @pytest.mark.parametrize("bad", ["..", "a/b", "e\x00x", "x" * 10_000])
    @pytest.mark.usefixtures("store")
    def test_an_unsafe_experiment_id_is_rejected_everywhere(self, tmp_path: Path, bad: str) -> None:
        before = tree_digest(tmp_path)
        with pytest.raises(ConfigError, match="invalid experiment id"):
            FileStoreConfig(root=str(tmp_path), experiment_id=bad)
        with pytest.raises(ConfigError, match="invalid experiment id"):
            FileStoreConfig(root=str(tmp_path)).scoped(bad)
        collection = FileStoreConfig(root=str(tmp_path)).connect()
        with pytest.raises(ConfigError, match="invalid experiment id"):
            collection.put_run_record(succeeded("r9", bad))
        assert tree_digest(tmp_path) == before


class TestCorruptFiles:
    def test_a_corrupt_record_raises_naming_its_file(
        self, store: FileStore, tmp_path: Path
    ) -> None:
        path = store.get_working_directory() / "runs" / "r2.json"
        path.write_bytes(b'{"schema_version":1,"run_id":"r2",')
        before = tree_digest(tmp_path)
        with pytest.raises(CorruptRecordError) as info:
            store.get_run_record("r2")
        assert info.value.path == str(path)
        assert str(path) in str(info.value)
        with pytest.raises(CorruptRecordError):
            store.list_run_records()
        assert len(store.scan_run_records().problems) == 1
        assert tree_digest(tmp_path) == before

    def test_a_running_put_does_not_overwrite_an_undecodable_record(
        self, store: FileStore, tmp_path: Path
    ) -> None:
        path = store.get_working_directory() / "runs" / "r2.json"
        path.write_bytes(b"{not json")
        before = tree_digest(tmp_path)
        with pytest.raises(CorruptRecordError):
            store.put_run_record(RunRecord.running(run_id="r2", experiment_id=EID))
        assert tree_digest(tmp_path) == before

    def test_a_future_schema_version_is_reported_and_kept(
        self, store: FileStore, tmp_path: Path
    ) -> None:
        path = store.get_working_directory() / "runs" / "r2.json"
        doc = json.loads(path.read_bytes())
        doc["schema_version"] = 7
        path.write_text(json.dumps(doc))
        before = tree_digest(tmp_path)
        with pytest.raises(UnsupportedSchemaVersionError, match="upgrade metalab"):
            store.get_run_record("r2")
        with pytest.raises(UnsupportedSchemaVersionError):
            store.put_run_record(RunRecord.running(run_id="r2", experiment_id=EID))
        problems = store.scan_run_records().problems
        assert [type(p) for p in problems] == [UnsupportedSchemaVersionError]
        assert tree_digest(tmp_path) == before

    def test_a_corrupt_artifact_manifest_names_its_file(
        self, store: FileStore, tmp_path: Path
    ) -> None:
        path = store.get_working_directory() / "artifacts" / "r1" / "_manifest.json"
        path.write_bytes(b"[]")
        before = tree_digest(tmp_path)
        with pytest.raises(CorruptRecordError, match=r"_manifest\.json"):
            store.list_artifacts("r1")
        with pytest.raises(CorruptRecordError):
            store.put_artifact("r1", "other", b"x")
        assert tree_digest(tmp_path) == before

    def test_a_corrupt_meta_file_fails_at_connect(self, store: FileStore, tmp_path: Path) -> None:
        (store.get_working_directory() / "_meta.json").write_bytes(b"{")
        before = tree_digest(tmp_path)
        with pytest.raises(CorruptRecordError, match=r"_meta\.json"):
            FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect()
        with pytest.raises(CorruptRecordError, match=r"_meta\.json"):
            FileStoreConfig(root=str(tmp_path)).list_experiments()
        assert tree_digest(tmp_path) == before


class TestWrongPlaces:
    def test_a_directory_of_another_experiment_is_refused(self, tmp_path: Path) -> None:
        directory = tmp_path / "my_exp_1.0"
        directory.mkdir()
        meta = StoreMeta(experiment_id="someone:else")
        (directory / "_meta.json").write_bytes(_codec.STORE_META.encode(meta))
        before = tree_digest(tmp_path)
        with pytest.raises(ExperimentMismatchError) as info:
            FileStoreConfig(root=str(tmp_path), experiment_id=EID).connect()
        assert info.value.found == "someone:else"
        assert "use a different store root or experiment id" in str(info.value)
        assert tree_digest(tmp_path) == before

    def test_list_experiments_on_a_scoped_config_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="unscoped"):
            FileStoreConfig(root=str(tmp_path), experiment_id=EID).list_experiments()
        assert list(tmp_path.iterdir()) == []

    def test_a_root_that_is_a_file_is_refused(self, tmp_path: Path) -> None:
        root = tmp_path / "file.txt"
        root.write_text("not a directory")
        with pytest.raises(ConfigError, match="not a directory"):
            FileStoreConfig(root=str(root)).connect()
        assert root.read_text() == "not a directory"
