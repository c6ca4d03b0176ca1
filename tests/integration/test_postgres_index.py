"""The Postgres index itself: DDL, concurrency of connects, SQL rules, field catalog."""

from __future__ import annotations

import dataclasses
import gc
import math
import pickle
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg import sql

from metalab import _codec
from metalab.errors import ConfigError, StoreError
from metalab.query import FieldCatalog
from metalab.records import RunRecord, Status
from metalab.store import PostgresIndex, PostgresStore, PostgresStoreConfig, abc
from metalab.store._documents import Document, FileState
from metalab.store._postgres_pool import Connection
from metalab.store._postgres_schema import SCHEMA_VERSION
from metalab.testing.store import make_record, new_run_id

EXP = "index:1"


def document(record: RunRecord) -> Document:
    """A record as a FileStore hands it to its index."""
    data = _codec.RUN_RECORD.encode(record)
    return Document("runs", record.run_id, record.experiment_id, data, FileState(1, len(data)), "-")


@pytest.fixture
def index(postgres_url: str, postgres_schema: str) -> Iterator[PostgresIndex]:
    with PostgresIndex(postgres_url, schema=postgres_schema) as opened:
        yield opened


def scalar(url: str, query: sql.Composed | sql.SQL) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    return None if row is None else row[0]


class TestSchemaCreation:
    def test_ensure_schema_is_idempotent(self, index: PostgresIndex) -> None:
        again = index.ensure_schema()
        assert not again.created
        index.write([document(make_record(EXP))])
        assert not index.ensure_schema().created
        assert len(index.documents("runs", EXP)) == 1

    def test_fifty_stores_connecting_at_once_on_a_fresh_schema_all_work(
        self, postgres_config: PostgresStoreConfig, postgres_url: str
    ) -> None:
        config = dataclasses.replace(postgres_config, pool_min_size=1, pool_max_size=1)
        barrier = threading.Barrier(50)
        records = [make_record(f"exp:{i}") for i in range(50)]

        def connect_and_write(record: RunRecord) -> None:
            barrier.wait()
            with config.scoped(record.experiment_id).connect() as store:
                store.put_run_record(record)
                assert store.get_run_record(record.run_id) == record

        with ThreadPoolExecutor(50) as pool:
            for future in [pool.submit(connect_and_write, r) for r in records]:
                future.result()
        with config.connect() as store:
            assert len(store.list_run_records()) == 50
            assert not store.is_index_stale()
        meta = sql.Identifier(postgres_config.schema, "metalab_meta")
        assert scalar(postgres_url, sql.SQL("SELECT count(*) FROM {}").format(meta)) == 1

    def test_an_index_of_another_layout_version_is_recreated_and_synced(
        self, postgres_config: PostgresStoreConfig, postgres_url: str
    ) -> None:
        scoped = postgres_config.scoped(EXP)
        record = make_record(EXP)
        with scoped.connect() as store:
            store.put_run_record(record)
        meta = sql.Identifier(postgres_config.schema, "metalab_meta")
        old_function = sql.Identifier(postgres_config.schema, "metalab_keep_sort_values")
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("UPDATE {} SET schema_version = 0").format(meta))
            # A trigger function of layout 4, which layout 5 no longer has.
            conn.execute(
                sql.SQL(
                    "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql "
                    "AS 'BEGIN RETURN NULL; END'"
                ).format(old_function)
            )
        with scoped.connect() as store:
            assert store.is_index_stale()
            assert store.sync_index().indexed == 1
            assert store.list_run_records() == [record]
        version = scalar(postgres_url, sql.SQL("SELECT schema_version FROM {}").format(meta))
        assert version == SCHEMA_VERSION
        functions = sql.SQL(
            "SELECT array_agg(proname::text ORDER BY proname) FROM pg_proc "
            "WHERE pronamespace = to_regnamespace(%s)::oid"
        )
        with psycopg.connect(postgres_url) as conn:
            found = conn.execute(functions, (postgres_config.schema,)).fetchone()
        assert found is not None
        assert found[0] == ["metalab_derived_changed", "metalab_runs_changed"]

    def test_no_extension_is_created_or_needed(
        self, postgres_config: PostgresStoreConfig, postgres_url: str
    ) -> None:
        query = sql.SQL("SELECT array_agg(extname ORDER BY extname) FROM pg_extension")
        before = scalar(postgres_url, query)
        with postgres_config.scoped(EXP).connect() as store:
            store.put_run_record(make_record(EXP))
            store.rebuild_index()
        assert scalar(postgres_url, query) == before

    def test_a_schema_name_full_of_sql_is_just_a_name(
        self, postgres_url: str, postgres_config: PostgresStoreConfig
    ) -> None:
        hostile = 'x"; DROP TABLE runs; --'
        config = dataclasses.replace(postgres_config, schema=hostile, experiment_id=EXP)
        record = make_record(EXP)
        try:
            with config.connect() as store:
                store.put_run_record(record)
                assert store.rebuild_index() == 1
                assert store.get_run_record(record.run_id) == record
        finally:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(hostile))
                )

    def test_a_database_that_is_not_utf8_is_refused_with_the_fix(
        self, postgres_url: str, postgres_schema: str
    ) -> None:
        name = f"metalab_ascii_{new_run_id()[:12]}"
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE DATABASE {} ENCODING 'SQL_ASCII' TEMPLATE template0").format(
                    sql.Identifier(name)
                )
            )
            try:
                base, _, query = postgres_url.partition("?")
                url = base.rpartition("/")[0] + f"/{name}" + (f"?{query}" if query else "")
                index = PostgresIndex(url, schema=postgres_schema)
                try:
                    with pytest.raises(ConfigError, match="UTF8"):
                        index.open()
                finally:
                    index.close()
            finally:
                admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


class TestNeverBackwardsInSql:
    @pytest.mark.parametrize("status", ["success", "failed", "cancelled"])
    def test_a_running_row_never_replaces_a_finished_one(
        self, index: PostgresIndex, status: Status
    ) -> None:
        done = make_record(EXP, status=status)
        index.write([document(done)])
        index.write([document(make_record(EXP, done.run_id, status="running"))])
        # An iterator takes the bulk path (COPY and merge) even for one document.
        index.write(iter([document(make_record(EXP, done.run_id, status="running"))]))
        doc = index.get("runs", done.run_id, EXP)
        assert doc is not None
        assert _codec.RUN_RECORD.decode(doc) == done

    def test_within_a_batch_the_last_finished_row_wins(self, index: PostgresIndex) -> None:
        run_id = new_run_id()
        failed = make_record(EXP, run_id, status="failed")
        success = make_record(EXP, run_id, status="success")
        running = make_record(EXP, run_id, status="running")
        index.write([document(r) for r in (running, failed, success, running)])
        doc = index.get("runs", run_id, None)
        assert doc is not None
        assert _codec.RUN_RECORD.decode(doc) == success

    def test_bulk_batches_of_any_size_store_everything(self, index: PostgresIndex) -> None:
        records = [make_record(EXP) for _ in range(23)]
        index.write((document(r) for r in records), batch_size=5)
        listed = {run_id for run_id, _ in index.documents("runs", EXP)}
        assert len(listed) == 23
        assert listed == {r.run_id for r in records}

    def test_a_batch_size_below_one_is_refused(self, index: PostgresIndex) -> None:
        with pytest.raises(ConfigError, match="batch_size"):
            index.write([document(make_record(EXP))], batch_size=0)


class TestFieldCatalog:
    def test_fields_have_types_counts_ranges_and_samples(
        self, postgres_config: PostgresStoreConfig
    ) -> None:
        records = [
            make_record(EXP, metrics={"loss": 0.5, "steps": 10, "tag": "a"}, params={"lr": 0.1}),
            make_record(EXP, metrics={"loss": math.nan, "steps": 30}, params={"lr": 1}),
        ]
        with postgres_config.scoped(EXP).connect() as store:
            store.put_run_records(records)
            store.put_derived(records[0].run_id, {"auc": 0.75})
            catalog = {f.field: f for f in store.fields()}
        assert sorted(catalog) == [
            "derived.auc",
            "metrics.loss",
            "metrics.steps",
            "metrics.tag",
            "params.lr",
        ]
        assert catalog["params.lr"].types == ["float", "int"]
        assert (catalog["params.lr"].min_value, catalog["params.lr"].max_value) == (0.1, 1.0)
        assert catalog["metrics.steps"].count == 2
        assert catalog["metrics.tag"].samples == ["a"]
        assert catalog["metrics.loss"].types == ["float"]
        assert catalog["metrics.loss"].max_value == 0.5
        assert {"$float": "NaN"} in catalog["metrics.loss"].samples
        assert catalog["derived.auc"].samples == [0.75]

    def test_the_catalog_follows_later_writes(self, postgres_config: PostgresStoreConfig) -> None:
        with postgres_config.scoped(EXP).connect() as store:
            store.put_run_record(make_record(EXP, metrics={"a": 1.0}))
            assert [f.field for f in store.fields() if f.field.startswith("metrics.")] == [
                "metrics.a"
            ]
            store.put_run_record(make_record(EXP, metrics={"b": 2.0}))
            fields = [f.field for f in store.fields() if f.field.startswith("metrics.")]
            assert fields == ["metrics.a", "metrics.b"]

    def test_an_unscoped_store_needs_an_experiment(
        self, postgres_config: PostgresStoreConfig
    ) -> None:
        with postgres_config.connect() as store, pytest.raises(ConfigError, match="experiment"):
            store.fields()


class TestScopedStores:
    def test_a_scoped_store_only_ever_returns_its_own_experiment(
        self, postgres_config: PostgresStoreConfig
    ) -> None:
        mine, theirs = make_record(EXP), make_record("theirs:1")
        with (
            postgres_config.scoped(EXP).connect() as store,
            postgres_config.scoped("theirs:1").connect() as other,
        ):
            store.put_run_record(mine)
            other.put_run_record(theirs)
            other.put_derived(theirs.run_id, {"x": 1.0})
            assert store.list_run_records() == [mine]
            assert store.list_run_records("theirs:1") == []
            assert store.get_run_record(theirs.run_id) is None
            assert not store.run_exists(theirs.run_id)
            assert store.get_derived(theirs.run_id) is None
            assert store.list_experiments() == [EXP]
        with postgres_config.connect() as unscoped:
            assert unscoped.list_experiments() == sorted([EXP, "theirs:1"])
            assert postgres_config.list_experiments() == sorted([EXP, "theirs:1"])

    def test_reads_do_not_touch_the_files(self, postgres_config: PostgresStoreConfig) -> None:
        record = make_record(EXP)
        with postgres_config.scoped(EXP).connect() as store:
            store.put_run_record(record)
            store.put_derived(record.run_id, {"x": 1.0})
            store.files.layout.run_path(record.run_id).unlink()
            store.files.layout.derived_path(record.run_id).unlink()
            assert store.get_run_record(record.run_id) == record
            assert store.list_run_records() == [record]
            assert store.run_exists(record.run_id)
            assert store.derived_exists(record.run_id)

    def test_a_store_is_not_picklable_but_its_config_is(
        self, postgres_config: PostgresStoreConfig
    ) -> None:
        with postgres_config.connect() as store:
            with pytest.raises(TypeError, match="config"):
                pickle.dumps(store)
            assert pickle.loads(pickle.dumps(store.config)) == postgres_config

    def test_a_closed_store_refuses_work(self, postgres_config: PostgresStoreConfig) -> None:
        store: PostgresStore = postgres_config.scoped(EXP).connect()
        store.close()
        with pytest.raises(StoreError, match="closed"):
            store.list_run_records()


class TestCapabilities:
    def test_every_capability_of_the_filestore_plus_rebuild_and_sync(
        self, postgres_config: PostgresStoreConfig
    ) -> None:
        capabilities = [getattr(abc, name) for name in abc.__all__ if name.startswith("Supports")]
        with postgres_config.connect() as store:
            for capability in capabilities:
                if capability is abc.SupportsFrameCache:
                    # Keyed by the state of the files, a cache could keep a frame the
                    # index answered while it lagged behind them: the files' own only.
                    assert not isinstance(store, capability)
                elif isinstance(store.files, capability):
                    assert isinstance(store, capability), capability.__name__
            assert isinstance(store, abc.SupportsIndexRebuild)
            assert isinstance(store, abc.SupportsIndexSync)


def test_a_postgres_store_gives_its_catalog_the_notebook_table(
    postgres_config: PostgresStoreConfig,
) -> None:
    with postgres_config.scoped("html:1").connect() as store:
        store.put_run_record(make_record("html:1"))
        catalog = store.fields()
    assert isinstance(catalog, FieldCatalog)
    assert catalog.experiment_id == "html:1"
    assert "field catalog of" in catalog._repr_html_()


def test_a_pooled_connection_keeps_one_lookup_cursor_and_is_freed_when_retired(
    postgres_url: str,
) -> None:
    conn = Connection.connect(postgres_url, autocommit=True)
    cursor = conn.lookup_cursor()
    assert cursor.execute("SELECT 1").fetchone() == (1,)
    assert conn.lookup_cursor() is cursor  # kept, not one per lookup
    retired = weakref.ref(conn)
    conn.close()
    del conn, cursor
    gc.collect()
    # The kept cursor refers to its connection; nothing else may keep either alive,
    # or every connection a pool retires would stay in memory.
    assert retired() is None
