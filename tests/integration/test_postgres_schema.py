"""The index tables are those of layout version 6, catalog entry for catalog entry.

An index created by any metalab with a given ``SCHEMA_VERSION`` is used as it is by
every other, so the tables, columns, types, nullability, defaults, constraints,
indexes and storage options the code creates must never drift. The golden files
were dumped when each version was defined (version 1's from the hand-written DDL that
first defined it; version 2 changed what the query copy's strings hold, not the
tables); they are never edited, and what version 3 changed from version 1 is checked
here too, and what versions 4, 5 and 6 changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types import TypeInfo

from metalab.store import PostgresIndex, PostgresStoreConfig
from metalab.store._postgres_sql import statements
from metalab.testing.store import make_record

GOLDEN_V1 = Path(__file__).parent / "data" / "postgres_index_catalog_v1.json"
GOLDEN_V3 = Path(__file__).parent / "data" / "postgres_index_catalog_v3.json"
GOLDEN_V4 = Path(__file__).parent / "data" / "postgres_index_catalog_v4.json"
GOLDEN_V5 = Path(__file__).parent / "data" / "postgres_index_catalog_v5.json"
GOLDEN = Path(__file__).parent / "data" / "postgres_index_catalog_v6.json"
SCHEMA_PLACEHOLDER = "<schema>"
TRIGRAM_INDEX = "runs_experiment_trgm_idx"
EXP = "schema:1"


def dump_catalog(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    """Every table of ``schema`` as the catalog describes it, schema name normalised.

    NOT NULL constraints (listed in ``pg_constraint`` from PostgreSQL 18 on) are
    left out: nullability is compared through the columns.
    """
    tables: dict[str, Any] = {}
    found = conn.execute(
        "SELECT c.oid, c.relname, c.reloptions FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname",
        (schema,),
    ).fetchall()
    for oid, name, options in found:
        columns = conn.execute(
            "SELECT column_name, data_type, udt_name, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position",
            (schema, name),
        ).fetchall()
        constraints = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s AND contype <> 'n' ORDER BY conname",
            (oid,),
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = %s AND tablename = %s ORDER BY indexname",
            (schema, name),
        ).fetchall()
        tables[name] = {
            "columns": [
                {"name": c, "type": t, "udt": u, "nullable": n, "default": d}
                for c, t, u, n, d in columns
            ],
            "constraints": dict(constraints),
            "indexes": {
                index: definition.replace(f" ON {schema}.", f" ON {SCHEMA_PLACEHOLDER}.")
                for index, definition in indexes
            },
            "options": sorted(options or []),
        }
    return tables


def column_types(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, str]]:
    """``(name, type)`` of every column of ``table`` (a qualified, quoted name)."""
    return conn.execute(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,),
    ).fetchall()


def golden_tables(path: Path = GOLDEN) -> dict[str, Any]:
    tables: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["tables"]
    return tables


def test_version_3_is_version_1_with_series_and_the_runs_edit_time() -> None:
    v1, v3 = golden_tables(GOLDEN_V1), golden_tables(GOLDEN_V3)
    assert sorted(v3.keys() - v1.keys()) == ["series", "series_chunks"]
    assert not v1.keys() - v3.keys()
    for name in v1:
        if name != "runs":
            assert v3[name] == v1[name], name
    runs = v3["runs"]["columns"]
    added = [c for c in runs if c["name"] == "edited_at"]
    assert added == [
        {
            "name": "edited_at",
            "type": "timestamp with time zone",
            "udt": "timestamptz",
            "nullable": "YES",
            "default": None,
        }
    ]
    assert [c for c in runs if c["name"] != "edited_at"] == v1["runs"]["columns"]
    assert {k: v for k, v in v3["runs"].items() if k != "columns"} == {
        k: v for k, v in v1["runs"].items() if k != "columns"
    }


def test_version_4_is_version_3_with_kept_sort_orders_and_two_runs_indexes() -> None:
    v3, v4 = golden_tables(GOLDEN_V3), golden_tables(GOLDEN_V4)
    assert sorted(v4.keys() - v3.keys()) == ["sort_metrics", "sort_values"]
    assert not v3.keys() - v4.keys()
    assert v4["sort_values"]["indexes"]["sort_values_order_idx"].endswith(
        "(experiment_id, metric, category, bool_value, num_value, str_value)"
    )
    for name in v3:
        if name != "runs":
            assert v4[name] == v3[name], name
    assert {k: v for k, v in v4["runs"].items() if k != "indexes"} == {
        k: v for k, v in v3["runs"].items() if k != "indexes"
    }
    old, new = v3["runs"]["indexes"], v4["runs"]["indexes"]
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    assert changed == {
        "runs_experiment_status_idx": "CREATE INDEX runs_experiment_status_idx ON <schema>.runs "
        "USING btree (experiment_id, status) INCLUDE (started_at, finished_at, tags)",
        "runs_experiment_run_idx": "CREATE INDEX runs_experiment_run_idx ON <schema>.runs "
        'USING btree (experiment_id, run_id COLLATE "C")',
    }
    assert old.keys() <= new.keys()


def test_version_5_is_version_4_with_the_catalog_change_log() -> None:
    v4, v5 = golden_tables(GOLDEN_V4), golden_tables(GOLDEN_V5)
    assert sorted(v5.keys() - v4.keys()) == ["catalog_changes"]
    assert all(v5[name] == v4[name] for name in v4)
    assert [c["name"] for c in v5["catalog_changes"]["columns"]] == [
        "experiment_id",
        "run_id",
        "kind",
        "existed",
        "params",
        "metrics",
        "seq",
    ]


def test_version_6_is_version_5_with_the_document_tables_indexed_by_time() -> None:
    v5, v6 = golden_tables(GOLDEN_V5), golden_tables()
    assert v6.keys() == v5.keys()
    added: dict[str, str] = {}
    for name, table in v6.items():
        assert {k: v for k, v in table.items() if k != "indexes"} == {
            k: v for k, v in v5[name].items() if k != "indexes"
        }, name
        old, new = v5[name]["indexes"], table["indexes"]
        assert old.items() <= new.items(), name
        added.update({k: v for k, v in new.items() if k not in old})
    assert added == {
        f"{t}_indexed_at_idx": f"CREATE INDEX {t}_indexed_at_idx ON <schema>.{t} "
        "USING btree (indexed_at)"
        for t in ("derived", "manifests", "runs", "series")
    }


def without_trigram(conn: psycopg.Connection[Any], tables: dict[str, Any]) -> dict[str, Any]:
    """The dump without the trigram index, which exists only where ``pg_trgm`` is installed."""
    if TypeInfo.fetch(conn, "gtrgm") is not None:
        assert TRIGRAM_INDEX in tables["runs"]["indexes"]
        del tables["runs"]["indexes"][TRIGRAM_INDEX]
    return tables


class TestIndexCatalog:
    def test_a_new_index_creates_exactly_the_v6_tables(
        self, postgres_url: str, postgres_schema: str
    ) -> None:
        index = PostgresIndex(postgres_url, schema=postgres_schema)
        try:
            assert index.open().created
        finally:
            index.close()
        with psycopg.connect(postgres_url) as conn:
            assert without_trigram(conn, dump_catalog(conn, postgres_schema)) == golden_tables()

    def test_a_rebuilt_index_swaps_in_exactly_the_v6_tables(
        self, postgres_config: PostgresStoreConfig, postgres_url: str
    ) -> None:
        with postgres_config.scoped(EXP).connect() as store:
            store.put_run_record(make_record(EXP))
            assert store.rebuild_index() == 1
            assert store.rebuild_index() == 1
        with psycopg.connect(postgres_url) as conn:
            tables = dump_catalog(conn, postgres_config.schema)
            assert without_trigram(conn, tables) == golden_tables()

    @pytest.mark.parametrize("table", ["runs", "derived", "manifests"])
    def test_document_tables_keep_rows_inline_up_to_a_page(self, table: str) -> None:
        assert golden_tables()[table]["options"] == ["toast_tuple_target=8160"]

    def test_staging_tables_take_the_live_column_types(
        self, postgres_url: str, postgres_schema: str
    ) -> None:
        with PostgresIndex(postgres_url, schema=postgres_schema):
            pass
        q = statements(postgres_schema)
        stages = [
            ("runs", "metalab_stage_runs", q.runs.create_stage, [("ordinal", "bigint")]),
            ("derived", "metalab_stage_derived", q.derived.create_stage, []),
            ("manifests", "metalab_stage_manifests", q.manifests.create_stage, []),
            ("runs", "metalab_rebuild_runs", q.rebuild.create_stages[0], []),
            ("derived", "metalab_rebuild_derived", q.rebuild.create_stages[1], []),
            ("manifests", "metalab_rebuild_manifests", q.rebuild.create_stages[2], []),
            ("series", "metalab_rebuild_series", q.rebuild.create_stages[3], []),
            ("series_chunks", "metalab_rebuild_series_chunks", q.rebuild.create_stages[4], []),
        ]
        with psycopg.connect(postgres_url) as conn:
            for live, stage, create, extra in stages:
                conn.execute(create)
                qualified = sql.Identifier(postgres_schema, live).as_string(conn)
                row_columns = [c for c in column_types(conn, qualified) if c[0] != "indexed_at"]
                assert column_types(conn, f"pg_temp.{stage}") == [*row_columns, *extra]
