"""A FileStore reads the collection written by metalab 0.1 as it is, changing no byte."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from metalab.errors import ExperimentMismatchError
from metalab.records import RunRecord
from metalab.store import create_store
from metalab.store._file import FileStore, FileStoreConfig
from metalab.testing import assert_same_document

EID = "golden:0.1"
RUN_OK = "101136d379f26e81"
RUN_FAILED = "7039053db7c554ca"
WITH_ARTIFACTS = {"101136d379f26e81", "1754b7ba5a1f8e13", "237498e3b826b634", "63632ddd01d6b4b7"}


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def read_everything(store: FileStore) -> None:
    records = store.list_run_records()
    assert len(records) == 6
    assert {r.experiment_id for r in records} == {EID}
    for record in records:
        got = store.get_run_record(record.run_id)
        assert got is not None
        assert_same_document(got, record)
        assert store.list_logs(record.run_id) == ["run"]
        log = store.get_log(record.run_id, "run")
        assert log is not None
        for descriptor in store.list_artifacts(record.run_id):
            data = store.get_artifact(record.run_id, descriptor.name)
            assert len(data) == descriptor.size_bytes
            assert hashlib.sha256(data).hexdigest().startswith(descriptor.content_hash)
            assert len(descriptor.content_hash) == 16
        if record.run_id in WITH_ARTIFACTS:
            derived = store.get_derived(record.run_id)
            assert derived is not None
            assert derived.metrics
            assert store.list_results(record.run_id) == ["curve"]
            assert store.get_result(record.run_id, "curve") is not None
    manifests = store.list_experiment_manifests()
    assert [m.experiment_id for m in manifests] == [EID]
    assert manifests[0].total_runs == 6


class TestGoldenCollection:
    def test_the_collection_lists_its_experiment(self, golden_collection: Path) -> None:
        assert FileStoreConfig(root=str(golden_collection)).list_experiments() == [EID]

    def test_every_document_reads_and_no_byte_changes(self, golden_collection: Path) -> None:
        before = tree_digest(golden_collection)
        config = FileStoreConfig(root=str(golden_collection))
        with config.for_experiment(EID).connect() as scoped:
            assert scoped.get_working_directory() == golden_collection / "golden_0.1"
            read_everything(scoped)
        with config.connect() as collection:
            assert collection.list_experiments() == [EID]
            read_everything(collection)
        with create_store(golden_collection / "golden_0.1") as standalone:
            assert isinstance(standalone, FileStore)
            assert standalone.mode == "standalone"
            read_everything(standalone)
        assert tree_digest(golden_collection) == before
        assert not (golden_collection / "golden_0.1" / ".lock").exists()

    def test_the_failed_run_keeps_its_error(self, golden_collection: Path) -> None:
        store = FileStoreConfig(root=str(golden_collection), experiment_id=EID).connect()
        record = store.get_run_record(RUN_FAILED)
        assert record is not None
        assert record.status == "failed"
        assert record.error is not None
        assert record.error.message == "diverged: lr too high"

    def test_record_artifact_uris_resolve_in_the_copied_store(
        self, golden_collection: Path
    ) -> None:
        store = FileStoreConfig(root=str(golden_collection), experiment_id=EID).connect()
        record = store.get_run_record(RUN_OK)
        assert record is not None
        (descriptor,) = record.artifacts
        assert descriptor.uri == f"artifacts/{RUN_OK}/config.json"
        assert (store.get_working_directory() / descriptor.uri).is_file()

    def test_new_runs_can_be_added_next_to_the_old_ones(self, golden_collection: Path) -> None:
        store = FileStoreConfig(root=str(golden_collection), experiment_id=EID).connect()
        store.put_run_record(RunRecord.running(run_id="abc123", experiment_id=EID).succeeded())
        assert len(store.list_run_records()) == 7
        with pytest.raises(ExperimentMismatchError, match="golden"):
            FileStoreConfig(root=str(golden_collection), experiment_id="golden_0.1").connect()
