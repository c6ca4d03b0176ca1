"""Rebuilding and syncing the Postgres index from the files, against a real server."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import msgspec
import psycopg
import pytest
from psycopg import sql

from metalab import _codec
from metalab.errors import CorruptRecordError, IndexUnavailableError, StoreError
from metalab.records import DerivedMetrics, ExperimentManifest, RunRecord
from metalab.store import FileStore, FileStoreConfig, PostgresStore, PostgresStoreConfig
from metalab.store._postgres_index import _beside, _until
from metalab.store._postgres_pool import Connection, Database
from metalab.testing import comparable
from metalab.testing.store import T0, make_record

EXP = "rebuild:1"
OTHER = "other:2"


def by_id(records: list[RunRecord]) -> list[object]:
    return [comparable(r) for r in sorted(records, key=lambda r: r.run_id)]


def table_exists(url: str, schema: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT to_regclass(%s)", (sql.Identifier(schema, name).as_string(conn),)
        ).fetchone()
    return row is not None and row[0] is not None


@pytest.fixture
def scoped(postgres_config: PostgresStoreConfig) -> Iterator[PostgresStore]:
    with postgres_config.scoped(EXP).connect() as store:
        yield store


@pytest.fixture
def plain_files(postgres_config: PostgresStoreConfig) -> Iterator[FileStore]:
    """The same files, written without the index (as another tool would)."""
    with FileStoreConfig(root=postgres_config.file_root, experiment_id=EXP).connect() as files:
        yield files


class TestRebuildIndex:
    def test_a_rebuild_reading_the_records_snapshot_equals_the_files(
        self,
        scoped: PostgresStore,
        plain_files: FileStore,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        from metalab.store import _directory  # noqa: PLC0415 -- patched below

        records = [make_record(EXP, f"run{i:02d}") for i in range(20)]
        scoped.put_run_records(records)
        for record in records[:10]:
            scoped.put_derived(record.run_id, {"d": 1.0})
        directory = Path(plain_files.get_working_directory())
        old = 1_000_000_000_000_000_000  # 2001: long before the snapshot
        for path in [*directory.glob("runs/*.json"), *directory.glob("derived/*.json")]:
            os.utime(path, ns=(old, old))
        assert plain_files.snapshot_records() == 30
        # Changes the snapshot does not hold, made to the files alone.
        plain_files.set_tags("run01", add=["edited"])
        plain_files.delete_run("run02")
        plain_files.put_run_record(make_record(EXP, "new"))
        plain_files.put_derived("run03", {"d": 2.0})
        monkeypatch.setattr(_directory, "_FROM_SNAPSHOT", 1)
        assert scoped.rebuild_index() == 20
        assert by_id(scoped.list_run_records()) == by_id(plain_files.list_run_records())
        assert scoped.list_derived() == plain_files.list_derived()
        assert not scoped.is_index_stale()

    def test_rebuild_after_dropping_the_schema_restores_every_record(
        self, postgres_config: PostgresStoreConfig, postgres_url: str, scoped: PostgresStore
    ) -> None:
        records = [make_record(EXP) for _ in range(30)]
        scoped.put_run_records(records)
        scoped.put_derived(records[0].run_id, {"auc": 0.5})
        scoped.close()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(postgres_config.schema))
            )
        with postgres_config.connect() as store:
            assert store.is_index_stale()
            with pytest.raises(IndexUnavailableError, match="stale"):
                store.list_run_records()
            assert store.rebuild_index() == 30
            assert not store.is_index_stale()
            assert by_id(store.list_run_records(EXP)) == by_id(records)
            assert store.get_derived(records[0].run_id) is not None

    def test_rebuild_after_dropping_the_database_restores_every_record(
        self, postgres_url: str, tmp_path: Path
    ) -> None:
        database = f"metalab_test_db_{os.getpid()}"
        admin = psycopg.connect(postgres_url, autocommit=True)
        create = sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(
            sql.Identifier(database)
        )
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        admin.execute(drop)
        admin.execute(create)
        try:
            base = PostgresStoreConfig(
                connection_string=_as_uri(postgres_url, database),
                file_root=str(tmp_path / "files"),
                experiment_id=EXP,
            )
            records = [make_record(EXP) for _ in range(10)]
            with base.connect() as store:
                store.put_run_records(records)
            admin.execute(drop)
            admin.execute(create)
            with base.connect() as store:
                assert store.rebuild_index() == 10
                assert by_id(store.list_run_records()) == by_id(records)
        finally:
            admin.execute(drop)
            admin.close()

    def test_progress_is_reported_and_the_count_returned(
        self, scoped: PostgresStore, plain_files: FileStore
    ) -> None:
        plain_files.put_run_records([make_record(EXP) for _ in range(2_500)])
        calls: list[tuple[int, int | None]] = []
        assert scoped.rebuild_index(lambda done, total: calls.append((done, total))) == 2_500
        assert calls[-1] == (2_500, 2_500)
        assert [done for done, _ in calls] == sorted(done for done, _ in calls)
        assert len(calls) >= 3

    # The other experiment's name sorts before and after this one's: the test for
    # "other experiments are indexed" probes an index on both sides of the name.
    @pytest.mark.parametrize("other_id", [OTHER, "zeta:3"])
    def test_a_scoped_rebuild_replaces_only_its_experiment(
        self,
        postgres_config: PostgresStoreConfig,
        scoped: PostgresStore,
        plain_files: FileStore,
        other_id: str,
    ) -> None:
        with postgres_config.scoped(other_id).connect() as other:
            kept = [make_record(other_id) for _ in range(3)]
            other.put_run_records(kept)
            stale = make_record(EXP)
            scoped.put_run_record(stale)
            plain_files.delete_run(stale.run_id)
            fresh = [make_record(EXP) for _ in range(4)]
            plain_files.put_run_records(fresh)
            assert scoped.rebuild_index() == 4
            assert by_id(scoped.list_run_records()) == by_id(fresh)
            assert by_id(other.list_run_records()) == by_id(kept)

    def test_an_unscoped_rebuild_covers_the_whole_collection(
        self, postgres_config: PostgresStoreConfig, postgres_url: str
    ) -> None:
        records = [make_record(EXP) for _ in range(5)] + [make_record(OTHER) for _ in range(5)]
        with FileStoreConfig(root=postgres_config.file_root).connect() as files:
            files.put_run_records(records)
        with postgres_config.connect() as store:
            assert store.rebuild_index() == 10
            assert store.list_experiments() == sorted([EXP, OTHER])
            assert by_id(store.list_run_records()) == by_id(records)
            assert len(store.list_run_records(OTHER)) == 5
        assert not table_exists(postgres_url, postgres_config.schema, "runs__rebuild")

    def test_readers_see_the_old_index_until_the_rebuild_commits(
        self, postgres_config: PostgresStoreConfig, scoped: PostgresStore, plain_files: FileStore
    ) -> None:
        old = [make_record(EXP) for _ in range(5)]
        scoped.put_run_records(old)
        plain_files.put_run_records([make_record(EXP) for _ in range(1_500)])
        seen: list[int] = []
        with postgres_config.connect() as reader:

            def look(done: int, _total: int | None) -> None:
                if done < 1_500:
                    seen.append(len(reader.list_run_records(EXP)))

            with postgres_config.connect() as unscoped:
                unscoped.rebuild_index(look)
            assert seen == [5]
            assert len(reader.list_run_records(EXP)) == 1_505

    # The derived metrics are copied on a second connection and committed before the
    # rebuild's own transaction ends; under a server default of repeatable read that
    # transaction would not see them, and carrying a write over onto one fails.
    @pytest.mark.parametrize("isolation", ["read committed", "repeatable read"])
    def test_writes_made_while_a_rebuild_runs_are_kept(
        self, postgres_config: PostgresStoreConfig, plain_files: FileStore, isolation: str
    ) -> None:
        url = postgres_config.connection_string
        options = quote("-c default_transaction_isolation=" + isolation.replace(" ", "\\ "))
        joined = f"{url}{'&' if '?' in url else '?'}options={options}"
        config = dataclasses.replace(postgres_config, connection_string=joined)
        records = [make_record(EXP) for _ in range(1_500)]
        plain_files.put_run_records(records)
        for record in records[:10]:
            plain_files.put_derived(record.run_id, {"d": 1.0})
        late = make_record(EXP)
        done_late = make_record(EXP, late.run_id, status="success")

        def write_meanwhile(done: int, _total: int | None) -> None:
            if done == 1_000:
                with config.scoped(EXP).connect() as writer:
                    writer.put_run_record(done_late)
                    writer.put_derived(records[0].run_id, {"d": 2.0})

        with config.connect() as store:
            store.rebuild_index(write_meanwhile)
            assert store.get_run_record(late.run_id) == done_late
            assert len(store.list_run_records()) == 1_501
            assert store.get_derived(records[0].run_id) == DerivedMetrics({"d": 2.0})
            assert store.get_derived(records[1].run_id) == DerivedMetrics({"d": 1.0})

    def test_a_corrupt_derived_file_stops_the_rebuild_and_keeps_the_old_index(
        self, postgres_config: PostgresStoreConfig, postgres_url: str, plain_files: FileStore
    ) -> None:
        records = [make_record(EXP) for _ in range(3)]
        plain_files.put_run_records(records)
        with postgres_config.connect() as store:
            store.rebuild_index()
            bad = plain_files.layout.derived_path(make_record(EXP).run_id)
            bad.parent.mkdir(parents=True, exist_ok=True)
            bad.write_bytes(b'{"metrics":')
            with pytest.raises(CorruptRecordError, match=bad.name):
                store.rebuild_index()
            assert by_id(store.list_run_records()) == by_id(records)
        for name in ("runs__rebuild", "derived__rebuild"):
            assert not table_exists(postgres_url, postgres_config.schema, name)

    def test_a_table_left_by_a_killed_rebuild_is_replaced(
        self, postgres_config: PostgresStoreConfig, postgres_url: str, plain_files: FileStore
    ) -> None:
        records = [make_record(EXP) for _ in range(3)]
        plain_files.put_run_records(records)
        plain_files.put_derived(records[0].run_id, {"d": 1.0})
        with postgres_config.connect() as store:
            store.rebuild_index()
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                left = sql.Identifier(postgres_config.schema, "derived__rebuild")
                conn.execute(sql.SQL("CREATE TABLE {} (junk int)").format(left))
            assert store.rebuild_index() == 3
            assert store.list_derived() == {records[0].run_id: DerivedMetrics({"d": 1.0})}
        assert not table_exists(postgres_url, postgres_config.schema, "derived__rebuild")

    def test_a_corrupt_file_stops_the_rebuild_and_keeps_the_old_index(
        self, scoped: PostgresStore, plain_files: FileStore
    ) -> None:
        old = [make_record(EXP) for _ in range(3)]
        scoped.put_run_records(old)
        bad = plain_files.layout.run_path(make_record(EXP).run_id)
        bad.write_bytes(b'{"schema_version":1,"run_id":')
        with pytest.raises(CorruptRecordError, match=bad.name):
            scoped.rebuild_index()
        assert by_id(scoped.list_run_records()) == by_id(old)

    def test_one_run_in_two_experiment_directories_stops_rebuild_and_sync(
        self, postgres_config: PostgresStoreConfig
    ) -> None:
        mine = make_record(EXP)
        with postgres_config.connect() as store:
            store.put_run_record(mine)
            with FileStoreConfig(root=postgres_config.file_root).connect() as files:
                files.put_run_record(make_record(OTHER, mine.run_id))
            with pytest.raises(StoreError, match="two experiment directories"):
                store.rebuild_index()
            with pytest.raises(StoreError, match="two experiment directories"):
                store.sync_index()
            assert store.list_run_records() == [mine]

    def test_a_rebuild_killed_midway_leaves_the_old_index_answering(
        self,
        postgres_config: PostgresStoreConfig,
        postgres_url: str,
        scoped: PostgresStore,
        plain_files: FileStore,
    ) -> None:
        old = [make_record(EXP) for _ in range(7)]
        scoped.put_run_records(old)
        plain_files.put_run_records([make_record(EXP) for _ in range(2_500)])
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_REBUILD, postgres_config.to_locator()],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "copying"
            assert len(scoped.list_run_records()) == 7
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
            if child.stdout is not None:
                child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        assert by_id(scoped.list_run_records()) == by_id(old)
        assert not table_exists(postgres_url, postgres_config.schema, "runs__rebuild")
        with postgres_config.connect() as store:
            assert store.rebuild_index() == 2_507


KILLED_REBUILD = textwrap.dedent(
    """
    import sys, time
    from metalab.store import parse_to_config

    def stall(done, total):
        if done >= 1000:
            print("copying", flush=True)
            time.sleep(600)

    with parse_to_config(sys.argv[1]).connect() as store:
        store.rebuild_index(stall)
    """
)


def _as_uri(url: str, database: str) -> str:
    """``url`` pointing at another database (pgserver URLs carry the socket in ``host=``)."""
    base, _, query = url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{database}" + (f"?{query}" if query else "")


class TestSyncIndex:
    def test_new_changed_and_deleted_files_are_synced(
        self, scoped: PostgresStore, plain_files: FileStore
    ) -> None:
        kept, changed, deleted = (make_record(EXP, status="running") for _ in range(3))
        scoped.put_run_records([kept, changed, deleted])
        scoped.put_derived(kept.run_id, {"auc": 0.1})
        added = make_record(EXP)
        finished = make_record(EXP, changed.run_id, status="success")
        plain_files.put_run_records([added, finished])
        plain_files.delete_run(deleted.run_id)
        plain_files.put_derived(kept.run_id, {"auc": 0.9})
        report = scoped.sync_index()
        assert (report.indexed, report.removed, report.unchanged) == (3, 1, 1)
        assert by_id(scoped.list_run_records()) == by_id([kept, finished, added])
        derived = scoped.get_derived(kept.run_id)
        assert derived is not None
        assert derived.metrics == {"auc": 0.9}

    def test_a_second_sync_finds_nothing_to_do(
        self, scoped: PostgresStore, plain_files: FileStore
    ) -> None:
        scoped.put_run_records([make_record(EXP) for _ in range(4)])
        plain_files.put_run_record(make_record(EXP))
        assert scoped.sync_index().indexed == 1
        assert dataclasses.astuple(scoped.sync_index()) == (0, 0, 5)

    def test_manifests_are_synced_by_file(
        self, scoped: PostgresStore, plain_files: FileStore
    ) -> None:
        manifest = ExperimentManifest(
            experiment_id=EXP, name="rebuild", version="1", submitted_at=T0
        )
        plain_files.put_experiment_manifest(manifest)
        plain_files.put_experiment_manifest(manifest)
        assert scoped.list_experiment_manifests() == []
        assert scoped.sync_index().indexed == 1
        assert scoped.list_experiment_manifests() == [manifest]

    def test_a_corrupt_changed_file_stops_the_sync_and_keeps_the_store_stale(
        self, scoped: PostgresStore, plain_files: FileStore
    ) -> None:
        record = make_record(EXP)
        scoped.put_run_record(record)
        plain_files.layout.run_path(record.run_id).write_bytes(b"not json")
        with pytest.raises(CorruptRecordError):
            scoped.sync_index()
        assert scoped.get_run_record(record.run_id) == record


class TestFromFilestore:
    def test_a_scoped_filestore_is_indexed_and_stays_scoped(
        self, postgres_url: str, postgres_schema: str, tmp_path: Path
    ) -> None:
        files = FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect()
        records = [make_record(EXP) for _ in range(6)]
        files.put_run_records(records)
        with FileStoreConfig(root=str(tmp_path), experiment_id=OTHER).connect() as other:
            other.put_run_record(make_record(OTHER))
        store = PostgresStore.from_filestore(
            postgres_url, files, rebuild=True, schema=postgres_schema
        )
        with store:
            assert store.files is files
            assert store.config.experiment_id == EXP
            assert by_id(store.list_run_records()) == by_id(records)
            assert store.list_experiments() == [EXP]

    def test_a_standalone_filestore_is_indexed(
        self, postgres_url: str, postgres_schema: str, tmp_path: Path
    ) -> None:
        with FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect() as seed:
            records = [make_record(EXP) for _ in range(3)]
            seed.put_run_records(records)
            directory = seed.get_working_directory()
        standalone = FileStoreConfig(root=str(directory)).connect()
        assert standalone.mode == "standalone"
        with PostgresStore.from_filestore(
            f"{postgres_url}&schema={postgres_schema}", standalone
        ) as store:
            assert by_id(store.list_run_records()) == by_id(records)
            assert store.get_working_directory() == directory

    def test_the_golden_collection_of_metalab_0_1_is_indexed(
        self, postgres_url: str, postgres_schema: str, golden_collection: Path
    ) -> None:
        files = FileStoreConfig(root=str(golden_collection)).connect()
        expected = files.list_run_records()
        with PostgresStore.from_filestore(postgres_url, files, schema=postgres_schema) as store:
            assert by_id(store.list_run_records()) == by_id(expected)
            assert store.list_experiments() == files.list_experiments()
            manifests = store.list_experiment_manifests()
            assert manifests == files.list_experiment_manifests()
            for record in expected:
                assert store.get_derived(record.run_id) == files.get_derived(record.run_id)

    def test_without_rebuild_the_index_is_stale_until_synced(
        self, postgres_url: str, postgres_schema: str, tmp_path: Path
    ) -> None:
        files = FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect()
        files.put_run_record(make_record(EXP))
        store = PostgresStore.from_filestore(
            postgres_url, files, rebuild=False, schema=postgres_schema
        )
        with store:
            assert store.is_index_stale()
            assert store.sync_index().indexed == 1
            assert not store.is_index_stale()
            assert len(store.list_run_records()) == 1

    def test_a_locator_naming_another_file_root_is_refused(
        self, postgres_url: str, tmp_path: Path
    ) -> None:
        files = FileStoreConfig(root=str(tmp_path / "a")).connect()
        with pytest.raises(ValueError, match="file_root"):
            PostgresStore.from_filestore(
                f"{postgres_url}&file_root={tmp_path / 'b'}", files, rebuild=False
            )


class TestToFilestore:
    def test_a_scoped_store_exports_to_a_standalone_filestore(
        self, scoped: PostgresStore, tmp_path: Path
    ) -> None:
        records = [make_record(EXP) for _ in range(3)]
        scoped.put_run_records(records)
        scoped.put_artifact(records[0].run_id, "model", b"weights")
        exported = scoped.to_filestore(tmp_path / "export")
        with exported:
            assert exported.mode == "standalone"
            assert exported.experiment_id == EXP
            assert by_id(exported.list_run_records()) == by_id(records)
            assert exported.get_artifact(records[0].run_id, "model") == b"weights"

    def test_exporting_into_a_non_empty_directory_is_refused_and_changes_nothing(
        self, scoped: PostgresStore, tmp_path: Path
    ) -> None:
        target = tmp_path / "busy"
        target.mkdir()
        (target / "keep.txt").write_text("mine")
        with pytest.raises(ValueError, match="not an empty directory"):
            scoped.to_filestore(target)
        assert [p.name for p in target.iterdir()] == ["keep.txt"]

    def test_the_stale_mark_is_not_exported(self, scoped: PostgresStore, tmp_path: Path) -> None:
        scoped.put_run_record(make_record(EXP))
        meta_path = scoped.get_working_directory() / "_meta.json"
        meta = _codec.STORE_META.decode(meta_path.read_bytes())
        meta_path.write_bytes(
            _codec.STORE_META.encode(msgspec.structs.replace(meta, index_stale=True))
        )
        exported = scoped.to_filestore(tmp_path / "export")
        exported.close()
        copied = _codec.STORE_META.decode((tmp_path / "export" / "_meta.json").read_bytes())
        assert copied.index_stale is False


def _database(url: str) -> Database:
    return Database(
        url,
        name="beside",
        describe="the test server",
        min_size=0,
        max_size=1,
        connect_timeout=5,
        pool_timeout=5,
        configure=lambda _conn: None,
    )


def _fail_once(running: threading.Event, *, settle: float) -> None:
    """The rebuild's own work failing, once the work beside it is running."""
    assert running.wait(30)
    time.sleep(settle)
    raise RuntimeError("block")


class TestWorkBesideARebuild:
    """The derived metrics are copied on a second connection while the rebuild goes on."""

    def test_its_error_is_raised_when_the_block_ends(self, postgres_url: str) -> None:
        def fail(conn: Connection, _stop: threading.Event) -> None:
            conn.execute("SELECT 1")
            raise ValueError("beside")

        with pytest.raises(ValueError, match="beside"), _beside(_database(postgres_url), fail):
            pass

    def test_a_failing_block_cancels_its_statement(self, postgres_url: str) -> None:
        running = threading.Event()
        outcome: list[str] = []

        def sleep(conn: Connection, _stop: threading.Event) -> None:
            running.set()
            try:
                conn.execute("SELECT pg_sleep(120)")
            except psycopg.errors.QueryCanceled:
                outcome.append("cancelled")
                raise

        started = time.monotonic()
        with pytest.raises(RuntimeError, match="block"), _beside(_database(postgres_url), sleep):
            _fail_once(running, settle=0.5)  # the statement reaches the server
        assert outcome == ["cancelled"]
        assert time.monotonic() - started < 60

    def test_a_failing_block_stops_its_rows(self, postgres_url: str) -> None:
        running = threading.Event()
        read: list[int] = []

        def rows(_conn: Connection, stop: threading.Event) -> None:
            for n in _until(stop, range(100_000)):
                read.append(n)
                running.set()
                time.sleep(0.001)

        with pytest.raises(RuntimeError, match="block"), _beside(_database(postgres_url), rows):
            _fail_once(running, settle=0.0)
        assert 0 < len(read) < 100_000
