"""Writers racing rebuilds and syncs, and a server that goes away mid-sweep.

After each scenario the index either equals the files or the store says it is stale,
and once synced it equals them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import metalab
from metalab.errors import CorruptRecordError
from metalab.records import RunRecord
from metalab.store import FileStoreConfig, PostgresStore, PostgresStoreConfig
from metalab.store._documents import DocumentKind
from metalab.store._file import DocumentScan
from metalab.testing import comparable
from metalab.testing.postgres import RestartablePostgres
from metalab.testing.store import make_record

pytestmark = pytest.mark.postgres

EXP = "faults:1"


def by_id(records: list[RunRecord]) -> list[object]:
    return [comparable(r) for r in sorted(records, key=lambda r: r.run_id)]


def index_equals_files(store: PostgresStore) -> bool:
    return by_id(store.list_run_records()) == by_id(store.files.list_run_records())


class TestWritersDuringARebuild:
    def test_a_run_written_just_after_the_listing_is_in_the_new_index(
        self, postgres_config: PostgresStoreConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        config = postgres_config.scoped(EXP)
        late = make_record(EXP)
        with config.connect() as store, config.connect() as writer:
            store.put_run_records([make_record(EXP) for _ in range(10)])
            real = store.files.scan_documents

            def listed_then_written(
                kind: DocumentKind, experiment_id: str | None = None
            ) -> DocumentScan:
                scan = real(kind, experiment_id)
                if kind == "runs":
                    writer.put_run_record(late)  # the file and the live index, mid-rebuild
                return scan

            monkeypatch.setattr(store.files, "scan_documents", listed_then_written)
            assert store.rebuild_index() == 10
            assert store.get_run_record(late.run_id) == late
            assert index_equals_files(store)
            assert not store.is_index_stale()

    def test_two_rebuilds_at_once_with_a_writer_lose_nothing(
        self, postgres_config: PostgresStoreConfig
    ) -> None:
        config = postgres_config.scoped(EXP)
        with config.connect() as store:
            store.put_run_records([make_record(EXP) for _ in range(300)])
        stop = threading.Event()
        errors: list[BaseException] = []

        def write() -> None:
            with config.connect() as writer:
                while not stop.is_set():
                    writer.put_run_record(make_record(EXP))

        def rebuild() -> None:
            try:
                with config.connect() as rebuilder:
                    for _ in range(3):
                        rebuilder.rebuild_index()
            except BaseException as exc:  # noqa: BLE001 -- reported by the test thread
                errors.append(exc)

        writer_thread = threading.Thread(target=write)
        rebuilders = [threading.Thread(target=rebuild) for _ in range(2)]
        writer_thread.start()
        for thread in rebuilders:
            thread.start()
        for thread in rebuilders:
            thread.join()
        stop.set()
        writer_thread.join()
        assert errors == []
        with config.connect() as store:
            assert index_equals_files(store)
            assert not store.is_index_stale()

    def test_a_sync_with_a_writer_loses_nothing(self, postgres_config: PostgresStoreConfig) -> None:
        config = postgres_config.scoped(EXP)
        files = FileStoreConfig(root=config.file_root, experiment_id=EXP).connect()
        files.put_run_records([make_record(EXP) for _ in range(200)])
        files.mark_index_stale()
        stop = threading.Event()

        def write() -> None:
            with config.connect() as writer:
                while not stop.is_set():
                    writer.put_run_record(make_record(EXP))

        writer_thread = threading.Thread(target=write)
        writer_thread.start()
        try:
            with config.connect() as store:
                for _ in range(3):
                    store.sync_index(batch_size=50)
        finally:
            stop.set()
            writer_thread.join()
        with config.connect() as store:
            assert index_equals_files(store)


class TestPartialBulkWrites:
    def test_a_corrupt_stored_record_mid_batch_leaves_the_index_with_what_landed(
        self, postgres_config: PostgresStoreConfig
    ) -> None:
        config = postgres_config.scoped(EXP)
        with config.connect() as store:
            broken = make_record(EXP)
            store.put_run_record(broken)
            store.files.layout.run_path(broken.run_id).write_bytes(b'{"schema_version":1,')
            first = make_record(EXP)
            # A running record must be weighed against the stored one, which cannot be read.
            late = msgspec.structs.replace(broken, status="running")
            with pytest.raises(CorruptRecordError):
                store.put_run_records([first, late])
            assert store.get_run_record(first.run_id) == first
            assert store.files.get_run_record(first.run_id) == first


@pytest.fixture
def server(restartable_postgres: RestartablePostgres) -> Iterator[RestartablePostgres]:
    yield restartable_postgres
    restartable_postgres.start()


def outage_config(
    server: RestartablePostgres, tmp_path: Path, experiment_id: str | None = EXP
) -> PostgresStoreConfig:
    return PostgresStoreConfig(
        connection_string=server.url,
        file_root=str(tmp_path / "files"),
        experiment_id=experiment_id,
        pool_timeout=1.0,
        connect_timeout=1.0,
    )


class TestOutages:
    def test_a_second_outage_is_marked_after_another_process_synced(
        self, server: RestartablePostgres, tmp_path: Path
    ) -> None:
        config = outage_config(server, tmp_path)
        with config.connect() as writer:
            server.stop()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                writer.put_run_record(make_record(EXP))
                assert writer.files.is_index_marked_stale()
                server.start()
                with config.connect() as other:
                    other.sync_index()
                assert not writer.files.is_index_marked_stale()
                server.stop()
                writer.put_run_record(make_record(EXP))
            assert writer.files.is_index_marked_stale()
            server.start()
            with config.connect() as later:
                assert later.is_index_stale()
                later.sync_index()
                assert index_equals_files(later)

    def test_a_sweep_survives_the_server_stopping_twice(
        self, server: RestartablePostgres, tmp_path: Path
    ) -> None:
        @metalab.operation
        def slow(params: dict[str, int], capture: metalab.Capture) -> None:
            time.sleep(0.02)
            capture.metric("x", params["i"])

        experiment = metalab.Experiment(
            name="outage",
            version="1",
            operation=slow,
            params=metalab.grid(i=list(range(60))),
            seeds=metalab.seeds(base=1, replicates=1),
        )

        def flap() -> None:
            for _ in range(2):
                time.sleep(0.3)
                server.stop()
                time.sleep(0.3)
                server.start()

        flapper = threading.Thread(target=flap)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flapper.start()
            config = outage_config(server, tmp_path, None)
            handle = metalab.run(
                experiment, store=dataclasses.replace(config, on_index_error="fallback")
            )
            assert handle.wait(timeout=120)
            flapper.join()
            assert len(handle.result()) == 60
        with PostgresStoreConfig(
            connection_string=server.url,
            file_root=str(tmp_path / "files"),
            experiment_id=experiment.experiment_id,
        ).connect() as store:
            files = store.files.list_run_records()
            assert len(files) == 60
            assert all(r.status == "success" for r in files)
            if not store.is_index_stale():
                assert index_equals_files(store)
            store.sync_index()
            assert index_equals_files(store)
