"""A writer killed at every step of a multi-step write: the files decode, nothing is lost.

Each test kills a child process with SIGKILL at a named step (``crashpoints.py``) and
then checks what a reader finds: documents that decode, every acknowledged write, and
an index that either equals the files or says it is stale.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from metalab import _codec
from metalab.cli import main
from metalab.records import Provenance, ResultDocument, RunRecord
from metalab.series import SeriesPoint
from metalab.store import FileStore, FileStoreConfig, PostgresStoreConfig, export_store
from metalab.store._documents import DOCUMENT_KINDS, DocumentKind
from metalab.testing import comparable
from metalab.testing.store import make_record

CrashRunner = Callable[..., subprocess.CompletedProcess[str]]

EXP = "faults:1"


def by_id(records: list[RunRecord]) -> list[object]:
    return [comparable(r) for r in sorted(records, key=lambda r: r.run_id)]


def files_of(root: Path) -> FileStore:
    return FileStoreConfig(root=str(root), experiment_id=EXP).connect()


def assert_artifacts_match_their_manifest(store: FileStore, run_id: str) -> None:
    """Every descriptor names a file whose bytes have the recorded sha256 and size."""
    for descriptor in store.list_artifacts(run_id):
        data = (store.get_working_directory() / descriptor.uri).read_bytes()
        assert hashlib.sha256(data).hexdigest() == descriptor.content_hash
        assert len(data) == descriptor.size_bytes


class TestArtifactReplacedWhileKilled:
    @pytest.fixture
    def store(self, tmp_path: Path) -> FileStore:
        store = files_of(tmp_path)
        store.put_run_record(make_record(EXP, "r1"))
        store.put_artifact("r1", "model", b"old weights", format="bin")
        return store

    def test_killed_before_the_manifest_moves_the_old_version_stays_whole(
        self, store: FileStore, tmp_path: Path, crash: CrashRunner
    ) -> None:
        crash(
            f"""
            from metalab.store import FileStoreConfig
            store = FileStoreConfig(root={str(tmp_path)!r}, experiment_id={EXP!r}).connect()
            store.put_artifact("r1", "model", b"new weights, longer", format="bin")
            """,
            point="artifact:before-manifest",
        )
        assert store.get_artifact("r1", "model") == b"old weights"
        assert_artifacts_match_their_manifest(store, "r1")

    def test_killed_after_the_manifest_moved_the_new_version_is_whole(
        self, store: FileStore, tmp_path: Path, crash: CrashRunner
    ) -> None:
        crash(
            f"""
            from metalab.store import FileStoreConfig
            store = FileStoreConfig(root={str(tmp_path)!r}, experiment_id={EXP!r}).connect()
            store.put_artifact("r1", "model", b"new weights, longer", format="bin")
            """,
            point="artifact:before-old-removed",
        )
        assert store.get_artifact("r1", "model") == b"new weights, longer"
        assert_artifacts_match_their_manifest(store, "r1")

    def test_a_replacement_never_writes_over_the_file_the_manifest_names(
        self, store: FileStore
    ) -> None:
        first = store.list_artifacts("r1")[0]
        second = store.put_artifact("r1", "model", b"v2", format="bin")
        third = store.put_artifact("r1", "model", b"v3", format="bin")
        assert len({first.uri, second.uri}) == 2
        assert len({second.uri, third.uri}) == 2
        assert store.get_artifact("r1", "model") == b"v3"
        names = {p.name for p in (store.get_working_directory() / "artifacts" / "r1").iterdir()}
        assert names == {"_manifest.json", third.uri.rpartition("/")[2]}


class TestBulkWriteKilled:
    @pytest.mark.parametrize("after", [1, 7, 20])
    def test_every_file_decodes_and_the_records_placed_are_whole(
        self, tmp_path: Path, crash: CrashRunner, after: int
    ) -> None:
        records = [make_record(EXP, f"r{i:02d}") for i in range(20)]
        encoded = [_codec.RUN_RECORD.encode(r).hex() for r in records]
        crash(
            f"""
            from metalab import _codec
            from metalab.store import FileStoreConfig
            records = [_codec.RUN_RECORD.decode(bytes.fromhex(h)) for h in {encoded!r}]
            store = FileStoreConfig(root={str(tmp_path)!r}, experiment_id={EXP!r}).connect()
            store.put_run_records(records)
            """,
            point="bulk:placing",
            after=after,
        )
        store = files_of(tmp_path)
        scan = store.scan_run_records()
        assert scan.problems == []
        assert len(scan.records) == after - 1
        wanted = {r.run_id: r for r in records}
        for record in scan.records:
            assert comparable(record) == comparable(wanted[record.run_id])


def single_write(store: FileStore, kind: str, version: int) -> None:
    """Write version ``version`` of one single-file document of run ``r1``."""
    if kind == "derived metrics":
        store.put_derived("r1", {"auc": version / 10})
    elif kind == "structured result":
        store.put_result("r1", "curve", ResultDocument(data=[version] * version))
    elif kind == "log":
        store.put_log("r1", "run", f"line {version}\n" * version)
    elif kind == "_meta.json":
        # Version 1 leaves the file as connecting wrote it; later ones mark it.
        if version > 1:
            store.mark_index_stale()
    else:
        raise ValueError(f"unknown single write {kind!r}")


def _derived(store: FileStore) -> object:
    found = store.get_derived("r1")
    return None if found is None else found.metrics


def _result(store: FileStore) -> object:
    found = store.get_result("r1", "curve")
    return None if found is None else found.data


#: What each single-document write (crashpoints.single_write) leaves, read back, and
#: the end of its file's path.
SINGLE_WRITES: dict[str, tuple[Callable[[FileStore], object], str]] = {
    "derived metrics": (_derived, "/derived/r1.json"),
    "structured result": (_result, "/results/r1/curve.json"),
    "log": (lambda store: store.get_log("r1", "run"), "/logs/r1_run.log"),
    "_meta.json": (lambda store: store.index_stale_marks(), "/_meta.json"),
}


class TestSingleDocumentWritesKilled:
    """Derived metrics, results, logs and ``_meta.json`` are one atomic write each: a
    kill with the new content whole in its temp file, not yet renamed, leaves the old."""

    @pytest.mark.parametrize("kind", sorted(SINGLE_WRITES))
    def test_killed_before_the_rename_the_old_document_stays_whole(
        self, tmp_path: Path, crash: CrashRunner, kind: str
    ) -> None:
        read, suffix = SINGLE_WRITES[kind]
        store = files_of(tmp_path)
        store.put_run_record(make_record(EXP, "r1"))
        single_write(store, kind, 1)
        before = read(store)
        crash(
            f"""
            from test_crashes import single_write
            from metalab.store import FileStoreConfig
            store = FileStoreConfig(root={str(tmp_path)!r}, experiment_id={EXP!r}).connect()
            single_write(store, {kind!r}, 2)
            """,
            point=f"atomic:before-rename:{suffix}",
        )
        again = files_of(tmp_path)
        assert read(again) == before
        assert again.scan_run_records().problems == []
        # The temp file left behind is no document, and does not stop the next write.
        single_write(again, kind, 3)
        assert read(again) not in (None, before)


class TestExportKilled:
    def test_a_rerun_finishes_the_copy_and_nothing_is_torn(
        self, tmp_path: Path, crash: CrashRunner
    ) -> None:
        source = files_of(tmp_path / "src")
        records = [make_record(EXP, f"r{i}") for i in range(6)]
        source.put_run_records(records)
        for record in records:
            source.put_artifact(record.run_id, "blob", record.run_id.encode() * 100)
            source.put_derived(record.run_id, {"auc": 0.5})
        crash(
            f"""
            from metalab.store import export_store
            export_store({str(tmp_path / "src")!r}, {str(tmp_path / "dst")!r}, {EXP!r})
            """,
            point="export:run",
            after=3,
        )
        report = export_store(str(tmp_path / "src"), str(tmp_path / "dst"), EXP)
        assert report.ok, report.problems
        destination = files_of(tmp_path / "dst")
        assert by_id(destination.list_run_records()) == by_id(records)
        for record in records:
            assert destination.get_artifact(record.run_id, "blob") == record.run_id.encode() * 100
            assert_artifacts_match_their_manifest(destination, record.run_id)


class TestGcKilled:
    def test_a_rerun_finishes_and_only_stuck_runs_were_touched(
        self, tmp_path: Path, crash: CrashRunner
    ) -> None:
        gone_pid = _a_dead_pid()
        store = files_of(tmp_path)
        stuck = [
            msgspec.structs.replace(
                make_record(EXP, f"s{i}", status="running"),
                provenance=Provenance(host=socket.gethostname(), pid=gone_pid),
            )
            for i in range(4)
        ]
        done = [make_record(EXP, f"d{i}") for i in range(3)]
        store.put_run_records([*stuck, *done])
        for record in [*stuck, *done]:
            store.put_artifact(record.run_id, "blob", record.run_id.encode())
            store.put_log(record.run_id, "run", "text")
        command = ["store", "gc", str(tmp_path), "--older-than", "0s", "--apply"]
        crash(
            f"""
            from metalab.cli import main
            main({command!r})
            """,
            point="gc:deleting",
            after=3,
        )
        scan = store.scan_run_records()
        assert scan.problems == []
        for record in done:
            assert store.get_run_record(record.run_id) == record
            assert store.get_artifact(record.run_id, "blob") == record.run_id.encode()
        assert main(command) == 0
        assert sorted(r.run_id for r in store.list_run_records()) == [r.run_id for r in done]
        assert all(store.list_artifacts(r.run_id) == [] for r in stuck)


def _a_dead_pid() -> int:
    """The pid of a child process that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.postgres
class TestIndexMaintenanceKilled:
    """A killed rebuild or sync leaves the old index and keeps the stale mark."""

    @pytest.fixture
    def config(self, postgres_config: PostgresStoreConfig) -> PostgresStoreConfig:
        return postgres_config.scoped(EXP)

    def _stale_store_with_unindexed_runs(
        self, config: PostgresStoreConfig
    ) -> tuple[list[RunRecord], list[RunRecord]]:
        indexed = [make_record(EXP) for _ in range(5)]
        with config.connect() as store:
            store.put_run_records(indexed)
        missed = [make_record(EXP) for _ in range(30)]
        files = FileStoreConfig(root=config.file_root, experiment_id=EXP).connect()
        files.put_run_records(missed)  # as a worker that wrote while the index was down
        files.mark_index_stale()
        return indexed, missed

    @pytest.mark.parametrize("operation", ["rebuild_index()", "sync_index(batch_size=4)"])
    def test_the_mark_survives_and_the_next_run_repairs(
        self, config: PostgresStoreConfig, crash: CrashRunner, operation: str
    ) -> None:
        indexed, missed = self._stale_store_with_unindexed_runs(config)
        crash(
            f"""
            from metalab.store import StoreConfig
            config = StoreConfig.from_dict({config.to_dict()!r})
            with config.connect() as store:
                store.{operation}
            """,
            point="index:row",
            after=12,
        )
        with config.connect() as store:
            assert store.is_index_stale()
            assert store.files.is_index_marked_stale()
            store.sync_index()
            assert not store.is_index_stale()
            assert by_id(store.list_run_records()) == by_id(indexed + missed)

    @pytest.mark.parametrize(
        "write",
        [
            "store.put_run_record(make_record(EXP, RUN))",
            "store.put_run_records([make_record(EXP, RUN), make_record(EXP)])",
            "store.put_derived(KEPT, {'auc': 0.5})",
            "store.put_experiment_manifest(MANIFEST)",
        ],
    )
    def test_a_write_killed_between_files_and_index_leaves_the_mark(
        self, config: PostgresStoreConfig, crash: CrashRunner, write: str
    ) -> None:
        kept = make_record(EXP)
        with config.connect() as store:
            store.put_run_record(kept)
        crash(
            f"""
            from metalab.records import ExperimentManifest
            from metalab.store import StoreConfig
            from metalab.testing.store import make_record
            EXP, RUN, KEPT = {EXP!r}, {"f" * 64!r}, {kept.run_id!r}
            MANIFEST = ExperimentManifest(
                experiment_id=EXP, name="m", version="1", submitted_at=make_record(EXP).started_at
            )
            config = StoreConfig.from_dict({config.to_dict()!r})
            with config.connect() as store:
                {write}
            """,
            point="index:writing",
        )
        with config.connect() as store:
            assert store.is_index_stale()  # the dead writer's intent became a mark
            assert not any((Path(config.file_root) / "faults_1" / ".index-intents").iterdir())
            store.sync_index()
            assert not store.is_index_stale()
            for kind in DOCUMENT_KINDS:
                on_disk = {ref.key: ref.state for ref in store.files.document_states(kind)}
                assert store.index.states(kind, EXP) == on_disk, kind
        with config.connect() as store:
            assert not store.is_index_stale()

    def test_an_append_killed_between_series_file_and_index_leaves_the_mark(
        self, config: PostgresStoreConfig, crash: CrashRunner
    ) -> None:
        kept = make_record(EXP)
        with config.connect() as store:
            store.put_run_record(kept)
            store.append_series(kept.run_id, [SeriesPoint("loss", 0, 1.0, 1.0)], restart=True)
        crash(
            f"""
            from metalab.series import SeriesPoint
            from metalab.store import StoreConfig
            config = StoreConfig.from_dict({config.to_dict()!r})
            with config.connect() as store:
                store.append_series({kept.run_id!r}, [SeriesPoint("loss", 1, 0.5, 2.0)])
            """,
            point="index:appending",
        )
        with config.connect() as store:
            assert store.is_index_stale()  # the dead writer's intent became a mark
            assert store.index.series([kept.run_id], EXP)[kept.run_id]["loss"].values == (1.0,)
            store.sync_index()
            assert not store.is_index_stale()
            assert store.get_series(kept.run_id)["loss"].values == (1.0, 0.5)

    @pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
    def test_a_write_interrupted_before_the_index_has_it_is_marked(
        self, config: PostgresStoreConfig, monkeypatch: pytest.MonkeyPatch, error: type
    ) -> None:
        record = make_record(EXP)
        with config.connect() as store:

            def interrupted(*_args: object, **_kwargs: object) -> None:
                raise error("interrupted")

            monkeypatch.setattr(store.index, "write", interrupted)
            with pytest.raises(error):
                store.put_run_record(record)
            assert store.files.get_run_record(record.run_id) == record
            assert store.files.is_index_marked_stale()
            intents = store.files.get_working_directory() / ".index-intents"
            assert not any(intents.iterdir())
        with config.connect() as store:
            assert store.is_index_stale()
            store.sync_index()
            assert store.get_run_record(record.run_id) == record

    def test_a_delete_killed_between_files_and_index_leaves_the_mark(
        self, config: PostgresStoreConfig, crash: CrashRunner
    ) -> None:
        records = [make_record(EXP) for _ in range(3)]
        with config.connect() as store:
            store.put_run_records(records)
        crash(
            f"""
            from metalab.store import StoreConfig
            config = StoreConfig.from_dict({config.to_dict()!r})
            with config.connect() as store:
                store.delete_run({records[0].run_id!r})
            """,
            point="index:forgetting",
        )
        with config.connect() as store:
            assert store.files.get_run_record(records[0].run_id) is None
            assert store.is_index_stale()
            store.sync_index()
            assert by_id(store.list_run_records()) == by_id(records[1:])

    def test_a_delete_killed_while_a_sync_covers_an_older_mark_leaves_a_mark(
        self, config: PostgresStoreConfig, crash: CrashRunner, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Found by the soak: the delete's own mark was skipped when a mark was there
        # already, and the sync that had read that mark cleared it after the delete
        # was killed, leaving the index listing a run the files no longer held.
        records = [make_record(EXP) for _ in range(3)]
        with config.connect() as store:
            store.put_run_records(records)
            store.files.mark_index_stale()  # an earlier miss, which the sync covers
            real = store.files.document_states

            def listed_then_deleted(kind: DocumentKind, experiment_id: str | None = None) -> Any:
                refs = real(kind, experiment_id)
                if kind == "runs":
                    crash(
                        f"""
                        from metalab.store import StoreConfig
                        config = StoreConfig.from_dict({config.to_dict()!r})
                        with config.connect() as store:
                            store.delete_run({records[0].run_id!r})
                        """,
                        point="index:forgetting",
                    )
                return refs

            monkeypatch.setattr(store.files, "document_states", listed_then_deleted)
            store.sync_index()
        with config.connect() as store:
            assert store.files.get_run_record(records[0].run_id) is None
            assert store.is_index_stale()
            store.sync_index()
            assert by_id(store.list_run_records()) == by_id(records[1:])

    def test_a_delete_that_completes_leaves_no_mark(self, config: PostgresStoreConfig) -> None:
        records = [make_record(EXP) for _ in range(2)]
        with config.connect() as store:
            store.put_run_records(records)
            assert store.delete_run(records[0].run_id)
            assert not store.files.is_index_marked_stale()
            assert not store.is_index_stale()
            assert by_id(store.list_run_records()) == by_id(records[1:])
