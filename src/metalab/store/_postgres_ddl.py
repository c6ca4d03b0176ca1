"""The versioned DDL of the Postgres index, as ``psycopg.sql`` objects.

Every table lives in one configurable schema and every name is quoted through
``psycopg.sql.Identifier``. ``metalab_meta`` records :data:`SCHEMA_VERSION`. The
index holds nothing that cannot be rebuilt from the files, so there is no migration
chain: an index written by another version is dropped and created afresh (and then
rebuilt from the files), never migrated in place.

The tables can be created under a suffix (``runs__new``), which is how
``rebuild_index()`` builds a complete index beside the live one before swapping it in.

Tables (``doc`` is always the exact codec encoding, read back losslessly; the columns
and ``jsonb`` values beside it are extracted for queries, since ``jsonb`` normalises
numbers and key order and so cannot give the document back):

- ``runs``: one row per run record, with the columns queries filter on;
- ``derived``: derived metrics per run;
- ``manifests``: experiment submission manifests;
- ``experiments``: every experiment, whether its field catalog is out of date and
  whether its files still need indexing;
- ``field_catalog``: per experiment, every ``params.``/``metrics.``/``derived.`` key
  with its value types, count, numeric range and a few distinct values.

Rows are kept inline and uncompressed up to a page (``toast_tuple_target``): a run
record is about 2 KB, and compressing it costs more than the whole rest of an insert.
Metrics get no GIN index: their values are nearly all distinct, so it would cost
several times the insert itself and serve only equality filters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from psycopg import sql

__all__ = [
    "META_TABLE",
    "SCHEMA_VERSION",
    "TABLES",
    "create_indexes",
    "create_meta_table",
    "create_tables",
    "drop_tables",
    "lock_key",
    "swap_in",
    "table",
]

SCHEMA_VERSION: Final = 1
"""The version of the index layout; any other version in a database means rebuild."""

META_TABLE: Final = "metalab_meta"
TABLES: Final = ("runs", "derived", "manifests", "experiments", "field_catalog")

# (table, purpose, what follows "ON <table>").
_INDEXES: Final[tuple[tuple[str, str, sql.SQL], ...]] = (
    ("runs", "experiment_status", sql.SQL("(experiment_id, status)")),
    ("runs", "params", sql.SQL("USING gin (params jsonb_path_ops)")),
    ("derived", "experiment", sql.SQL("(experiment_id)")),
)
_TRIGRAM_INDEX: Final = (
    "runs",
    "experiment_trgm",
    sql.SQL("USING gin (experiment_id gin_trgm_ops)"),
)
_ROW_STORAGE: Final = sql.SQL("WITH (toast_tuple_target = 8160)")


def _indexes(trigram: bool) -> tuple[tuple[str, str, sql.SQL], ...]:
    return (*_INDEXES, _TRIGRAM_INDEX) if trigram else _INDEXES


def table(schema: str, name: str, suffix: str = "") -> sql.Identifier:
    """The quoted, schema-qualified name of an index table."""
    return sql.Identifier(schema, name + suffix)


def lock_key(schema: str) -> str:
    """The text hashed into the advisory-lock key that serialises DDL on ``schema``."""
    return f"metalab.index:{schema}"


def create_meta_table(schema: str) -> sql.Composed:
    """``metalab_meta``: one row with the layout version and what the index covers."""
    return sql.SQL(
        """
        CREATE TABLE IF NOT EXISTS {meta} (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            schema_version integer NOT NULL,
            file_root text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            needs_sync boolean NOT NULL DEFAULT false,
            rebuilt_at timestamptz,
            synced_at timestamptz
        )
        """
    ).format(meta=table(schema, META_TABLE))


def create_tables(schema: str, suffix: str = "") -> Iterator[sql.Composed]:
    """The ``CREATE TABLE`` statements of every index table (indexes come separately).

    Args:
        schema: The Postgres schema.
        suffix: Appended to every table name (a rebuild builds ``runs__new``, ...).
    """
    constraint = sql.Identifier
    yield sql.SQL(
        """
        CREATE TABLE {t} (
            run_id text NOT NULL,
            experiment_id text NOT NULL,
            status text NOT NULL,
            started_at timestamptz NOT NULL,
            finished_at timestamptz,
            duration_ms double precision,
            tags text[] NOT NULL DEFAULT '{{}}',
            params jsonb,
            metrics jsonb,
            doc bytea NOT NULL,
            file_mtime_ns bigint,
            file_size bigint,
            indexed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            CONSTRAINT {pk} PRIMARY KEY (run_id)
        ) {storage}
        """
    ).format(
        t=table(schema, "runs", suffix),
        pk=constraint(f"runs{suffix}_pkey"),
        storage=_ROW_STORAGE,
    )
    yield sql.SQL(
        """
        CREATE TABLE {t} (
            run_id text NOT NULL,
            experiment_id text,
            metrics jsonb,
            doc bytea NOT NULL,
            file_mtime_ns bigint,
            file_size bigint,
            indexed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            CONSTRAINT {pk} PRIMARY KEY (run_id)
        ) {storage}
        """
    ).format(
        t=table(schema, "derived", suffix),
        pk=constraint(f"derived{suffix}_pkey"),
        storage=_ROW_STORAGE,
    )
    yield sql.SQL(
        """
        CREATE TABLE {t} (
            experiment_id text NOT NULL,
            name text NOT NULL,
            submitted_at timestamptz NOT NULL,
            doc bytea NOT NULL,
            file_mtime_ns bigint,
            file_size bigint,
            indexed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            CONSTRAINT {pk} PRIMARY KEY (experiment_id, name)
        ) {storage}
        """
    ).format(
        t=table(schema, "manifests", suffix),
        pk=constraint(f"manifests{suffix}_pkey"),
        storage=_ROW_STORAGE,
    )
    yield sql.SQL(
        """
        CREATE TABLE {t} (
            experiment_id text NOT NULL,
            catalog_dirty boolean NOT NULL DEFAULT true,
            needs_sync boolean NOT NULL DEFAULT false,
            CONSTRAINT {pk} PRIMARY KEY (experiment_id)
        )
        """
    ).format(t=table(schema, "experiments", suffix), pk=constraint(f"experiments{suffix}_pkey"))
    yield sql.SQL(
        """
        CREATE TABLE {t} (
            experiment_id text NOT NULL,
            field text NOT NULL,
            types text[] NOT NULL,
            count bigint NOT NULL,
            min_value double precision,
            max_value double precision,
            samples jsonb NOT NULL,
            CONSTRAINT {pk} PRIMARY KEY (experiment_id, field)
        )
        """
    ).format(t=table(schema, "field_catalog", suffix), pk=constraint(f"field_catalog{suffix}_pkey"))


def _index_name(name: str, purpose: str, suffix: str) -> str:
    return f"{name}{suffix}_{purpose}_idx"


def create_indexes(
    schema: str, suffix: str = "", *, trigram: bool = False
) -> Iterator[sql.Composed]:
    """The secondary indexes of the tables (the primary keys come with the tables).

    Args:
        schema: The Postgres schema.
        suffix: The table-name suffix the tables were created with.
        trigram: Also index ``experiment_id`` with ``gin_trgm_ops`` (only when the
            ``pg_trgm`` extension is installed; nothing requires it).
    """
    for name, purpose, how in _indexes(trigram):
        yield sql.SQL("CREATE INDEX {idx} ON {t} {how}").format(
            idx=sql.Identifier(_index_name(name, purpose, suffix)),
            t=table(schema, name, suffix),
            how=how,
        )


def drop_tables(schema: str, suffix: str = "", *, meta: bool = False) -> Iterator[sql.Composed]:
    """``DROP TABLE IF EXISTS`` for every index table (and ``metalab_meta`` if asked)."""
    names = [*TABLES, META_TABLE] if meta else list(TABLES)
    for name in names:
        yield sql.SQL("DROP TABLE IF EXISTS {t}").format(
            t=table(schema, name, "" if name == META_TABLE else suffix)
        )


def swap_in(schema: str, suffix: str, *, trigram: bool = False) -> Iterator[sql.Composed]:
    """Replace the live tables by the ones built under ``suffix`` (inside one transaction).

    The old tables are dropped, then the new tables, their primary keys and their
    indexes are renamed to the live names, so the next rebuild can use ``suffix``
    again.
    """
    yield from drop_tables(schema)
    for name in TABLES:
        yield sql.SQL("ALTER TABLE {t} RENAME TO {live}").format(
            t=table(schema, name, suffix), live=sql.Identifier(name)
        )
        yield sql.SQL("ALTER TABLE {t} RENAME CONSTRAINT {old} TO {new}").format(
            t=table(schema, name),
            old=sql.Identifier(f"{name}{suffix}_pkey"),
            new=sql.Identifier(f"{name}_pkey"),
        )
    for name, purpose, _ in _indexes(trigram):
        yield sql.SQL("ALTER INDEX {old} RENAME TO {new}").format(
            old=sql.Identifier(schema, _index_name(name, purpose, suffix)),
            new=sql.Identifier(_index_name(name, purpose, "")),
        )
