"""The Postgres index schema, declared once, and the versioned DDL derived from it.

Each table is a :class:`Table` spec over a row type: a ``NamedTuple`` whose fields
are ``Annotated[python_type, Column("sql type", ...)]``, in ``COPY`` column order. A
field's name is the column's name, and a field that admits ``None`` is a nullable
column. Columns that rows never carry (``indexed_at``) are declared on the spec.
The ``CREATE TABLE`` statements, the temporary staging tables, the binary ``COPY``
types and the column lists of every statement (:mod:`._postgres_sql`) are all read
from the specs, so a column is added or changed in one place.

Every table lives in one configurable schema and every name is quoted through
``psycopg.sql.Identifier``. ``metalab_meta`` records :data:`SCHEMA_VERSION`. The
index holds nothing that cannot be rebuilt from the files, so there is no migration
chain: an index written by another version is dropped and created afresh (and then
rebuilt from the files), never migrated in place. The tables created for a version
never change (``tests/integration/data/postgres_index_catalog_v1.json``, which
versions 1 and 2 share).

The tables can be created under a suffix (``runs__rebuild``), which is how
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
  with its value types, count, numeric range and a few distinct values;
- ``catalog_changes``: what writes changed since an experiment's catalog was last
  read: per changed run and part (``runs`` or ``derived``), the part as it was
  before (or that it did not exist). Triggers on ``runs`` and ``derived`` add a
  row per written row (a copy, no JSON work); the next catalog read folds them in
  (the values of the changed runs only), or recomputes the catalog when a write
  took a value away;
- ``series``: one row per run's series file (how many points and chunks it holds,
  the generation of its header, its state);
- ``series_chunks``: the points of a series, loaded with ``COPY``: one row per
  append and metric (``seq`` numbers the appends of a run, in order), with the
  points' steps, values and times as arrays in the order logged. A float value is
  in ``nums``; an int, bool or string value is in ``others`` as its JSON text (and,
  for numbers, in ``nums`` too, so SQL can aggregate every number; ``others`` is
  ``NULL`` when every value is a float). ``ts`` holds the times in seconds since
  the Unix epoch, as the file does. Arrays, not a row per point: a run's 100,000
  points come back in a few rows, decoded in C, where a row per point costs a
  server-side sort and a Python object per value.
- ``sort_metrics`` and ``sort_values``: the order of the metrics that queries sort
  on. The first query that sorts an experiment's runs on a metric (with a limit)
  lists the pair in ``sort_metrics`` and copies every run's value into
  ``sort_values``, split into the parts that order it (category, boolean, number,
  text); from then on, triggers on ``runs`` keep those rows in step with every
  write, and a top-k query reads about k rows of the ``order`` index instead of
  sorting every match. Only pairs someone sorted on are kept, so writes and
  rebuilds pay nothing for the others (a rebuild starts with none).

Rows are kept inline and uncompressed up to a page (``toast_tuple_target``): a run
record is about 2 KB, and compressing it costs more than the whole rest of an insert.
Metrics get no GIN index: their values are nearly all distinct, so it would cost
several times the insert itself and serve only equality filters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Final, NamedTuple

from psycopg import sql

__all__ = [
    "CATALOG_CHANGES",
    "DERIVED",
    "EXPERIMENTS",
    "FIELD_CATALOG",
    "MANIFESTS",
    "META",
    "META_TABLE",
    "REBUILD_SUFFIX",
    "RUNS",
    "SCHEMA_VERSION",
    "SERIES",
    "SERIES_CHUNKS",
    "SORT_METRICS",
    "SORT_VALUES",
    "TABLES",
    "TRIGGER_FUNCTIONS",
    "CatalogChangeRow",
    "Check",
    "Column",
    "DerivedRow",
    "ExperimentRow",
    "FieldCatalogRow",
    "Index",
    "JsonbBinary",
    "ManifestRow",
    "MetaRow",
    "RunRow",
    "SeriesChunkRow",
    "SeriesRow",
    "SortMetricRow",
    "SortValueRow",
    "Table",
    "column_list",
    "create_indexes",
    "create_meta_table",
    "create_tables",
    "drop_tables",
    "lock_key",
    "swap_in",
]

SCHEMA_VERSION: Final = 6
"""The version of the index layout; any other version in a database means rebuild.

Version 2 has the tables of version 1; what changed is the query copy's strings,
which hold NUL and U+0001 in their index form (:func:`metalab.query.sql.index_text`)
where version 1 held U+FFFD for NUL. Version 3 adds ``series`` and
``series_chunks``, and ``runs.edited_at`` (when people last edited a run's tags or
notes), which lets the index refuse a record written before an edit it already took.
Version 4 adds ``sort_metrics`` and ``sort_values`` (kept metric orders, with
statement triggers on ``runs``) and changes two indexes of ``runs``: the
``(experiment_id, status)`` index includes ``started_at``, ``finished_at`` and
``tags`` (run summaries read the index alone), and ``(experiment_id, run_id COLLATE
"C")`` orders windows by run id. Version 5 adds ``catalog_changes``, filled by the
triggers on ``runs`` and on ``derived`` (one function per table now), from which a
catalog read folds in what changed instead of recomputing the catalog after writes.
Version 6 indexes ``indexed_at`` of the four document tables: a rebuild carries over
the rows written while it ran by an index range instead of reading every live row
(seconds at a million runs).
"""

REBUILD_SUFFIX: Final = "__rebuild"
"""The suffix of the tables a whole-index rebuild fills before swapping them in."""


@dataclass(frozen=True)
class Column:
    """The SQL side of a column, declared as ``Annotated[python_type, Column(...)]``.

    On a row field, ``name`` and ``nullable`` are left out: the field's name and
    whether its type admits ``None`` give them. A column that rows never carry is
    declared on its :class:`Table` with both.

    Attributes:
        type: The SQL type, as written in ``CREATE TABLE``.
        default: The SQL expression of the column's default, if it has one.
        name: The column's name.
        nullable: Whether the column takes ``NULL``.
    """

    type: str
    default: str | None = None
    name: str = ""
    nullable: bool = False

    @property
    def copy_type(self) -> str:
        """The type a binary ``COPY`` sends: ``jsonb`` as ``bytea`` (see :class:`JsonbBinary`)."""
        return "bytea" if self.type == "jsonb" else self.type

    def definition(self) -> sql.Composed:
        """``name type [NOT NULL] [DEFAULT expression]``, as in ``CREATE TABLE``."""
        parts: list[sql.Composable] = [self.name_and_type()]
        if not self.nullable:
            parts.append(sql.SQL("NOT NULL"))
        if self.default is not None:
            parts.append(sql.SQL("DEFAULT {}").format(sql.SQL(self.default)))
        return sql.SQL(" ").join(parts)

    def name_and_type(self) -> sql.Composed:
        """``name type``: the column of a staging table, with no constraint or default."""
        return sql.SQL("{} {}").format(sql.Identifier(self.name), sql.SQL(self.type))


@dataclass(frozen=True)
class Index:
    """A secondary index, named ``<table>_<purpose>_idx``.

    Attributes:
        purpose: The middle of the index name.
        method: What follows ``ON <table>`` (columns, or ``USING`` and operator class).
        trigram: Needs the ``pg_trgm`` extension; created only where it is installed.
    """

    purpose: str
    method: str
    trigram: bool = False

    def name(self, table: str, suffix: str = "") -> str:
        """The index name on ``table`` created under ``suffix``."""
        return f"{table}{suffix}_{self.purpose}_idx"


@dataclass(frozen=True)
class Check:
    """A check constraint, named ``<table>_<purpose>_check``.

    Attributes:
        purpose: The middle of the constraint name.
        expression: The SQL boolean expression every row satisfies.
    """

    purpose: str
    expression: str


@dataclass(frozen=True)
class Table:
    """One index table: its row type and what ``CREATE TABLE`` adds to the row's columns.

    Attributes:
        name: The table name (without schema).
        row: The row type (a ``NamedTuple``, in ``COPY`` order, where rows are
            sent), its fields annotated with :class:`Column`.
        primary_key: The primary key columns, named ``<table>_pkey``.
        extra: Columns after the row's that rows never carry (filled by defaults).
        checks: Check constraints.
        indexes: Secondary indexes.
        storage: Storage parameters (``WITH (name = value, ...)``).
        row_columns: The row's columns, in field (and ``COPY``) order.
        columns: Every column of the table, in table order.
    """

    name: str
    row: type
    primary_key: tuple[str, ...]
    extra: tuple[Column, ...] = ()
    checks: tuple[Check, ...] = ()
    indexes: tuple[Index, ...] = ()
    storage: tuple[tuple[str, int], ...] = ()
    row_columns: tuple[Column, ...] = dataclasses.field(init=False)
    columns: tuple[Column, ...] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        row_columns = _row_columns(self.row)
        columns = (*row_columns, *self.extra)
        names = [c.name for c in columns]
        if len(set(names)) != len(names) or not set(self.primary_key) <= set(names):
            raise TypeError(f"table {self.name!r}: duplicate or unknown columns in {names}")
        object.__setattr__(self, "row_columns", row_columns)
        object.__setattr__(self, "columns", columns)

    @property
    def row_names(self) -> tuple[str, ...]:
        """The names of the row's columns, in ``COPY`` order."""
        return tuple(c.name for c in self.row_columns)

    @property
    def updated_names(self) -> tuple[str, ...]:
        """The row's columns outside the primary key: what an upsert overwrites."""
        return tuple(n for n in self.row_names if n not in self.primary_key)

    @property
    def copy_types(self) -> tuple[str, ...]:
        """The binary ``COPY`` types of the row's columns."""
        return tuple(c.copy_type for c in self.row_columns)

    def identifier(self, schema: str, suffix: str = "") -> sql.Identifier:
        """The quoted, schema-qualified name of the table (created under ``suffix``)."""
        return sql.Identifier(schema, self.name + suffix)

    def constraint_names(self, suffix: str = "") -> tuple[str, ...]:
        """The names of the primary key and check constraints, as created under ``suffix``."""
        table = self.name + suffix
        return (f"{table}_pkey", *(f"{table}_{c.purpose}_check" for c in self.checks))

    def create(self, schema: str, suffix: str = "", *, if_not_exists: bool = False) -> sql.Composed:
        """The ``CREATE TABLE`` statement (secondary indexes come separately)."""
        pkey, *checks = self.constraint_names(suffix)
        body = [
            *(c.definition() for c in self.columns),
            sql.SQL("CONSTRAINT {} PRIMARY KEY ({})").format(
                sql.Identifier(pkey), column_list(self.primary_key)
            ),
            *(
                sql.SQL("CONSTRAINT {} CHECK ({})").format(
                    sql.Identifier(name), sql.SQL(check.expression)
                )
                for name, check in zip(checks, self.checks, strict=True)
            ),
        ]
        storage: sql.Composable = sql.SQL("")
        if self.storage:
            storage = sql.SQL(" WITH ({})").format(
                sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.SQL(name), sql.Literal(value))
                    for name, value in self.storage
                )
            )
        return sql.SQL("CREATE TABLE {exists}{t} ({body}){storage}").format(
            exists=sql.SQL("IF NOT EXISTS " if if_not_exists else ""),
            t=self.identifier(schema, suffix),
            body=sql.SQL(", ").join(body),
            storage=storage,
        )

    def stage_definition(self, *extra: Column) -> sql.Composed:
        """The columns of a staging table for rows: the row's, then ``extra``, unconstrained."""
        return sql.SQL(", ").join(c.name_and_type() for c in (*self.row_columns, *extra))


def _row_columns(row: type) -> tuple[Column, ...]:
    """The columns of a row type, named by its fields, nullable where ``None`` is allowed."""
    columns = []
    for name, hint in typing.get_type_hints(row, include_extras=True).items():
        if typing.get_origin(hint) is not Annotated:
            raise TypeError(f"{row.__name__}.{name} is not Annotated[..., Column(...)]")
        python_type, *markers = typing.get_args(hint)
        found = [m for m in markers if isinstance(m, Column)]
        if len(found) != 1 or found[0].name:
            raise TypeError(f"{row.__name__}.{name} needs exactly one unnamed Column")
        nullable = typing.get_origin(python_type) in (types.UnionType, typing.Union) and (
            type(None) in typing.get_args(python_type)
        )
        columns.append(dataclasses.replace(found[0], name=name, nullable=nullable))
    return tuple(columns)


def column_list(names: Iterable[str]) -> sql.Composed:
    """``a, b, c`` with every name quoted."""
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


class JsonbBinary(bytes):
    """A ``jsonb`` value in PostgreSQL's binary format: a version byte (1), then JSON text.

    The JSON the encoder produced is sent as it is, with no re-serialisation. In a
    binary ``COPY`` the server reads every field with the column's own input
    function, so these values go through psycopg's plain ``bytea`` dumper (in C); as
    a query parameter, the index's dumper tells the server it is ``jsonb``.
    """

    __slots__ = ()

    @classmethod
    def from_json(cls, text: bytes) -> JsonbBinary:
        """Wrap standard JSON text."""
        return cls(b"\x01" + text)


class RunRow(NamedTuple):
    """One row of the ``runs`` table, in ``COPY`` column order."""

    run_id: Annotated[str, Column("text")]
    experiment_id: Annotated[str, Column("text")]
    status: Annotated[str, Column("text")]
    started_at: Annotated[dt.datetime, Column("timestamptz")]
    finished_at: Annotated[dt.datetime | None, Column("timestamptz")]
    duration_ms: Annotated[float | None, Column("double precision")]
    tags: Annotated[list[str], Column("text[]", default="'{}'")]
    edited_at: Annotated[dt.datetime | None, Column("timestamptz")]
    params: Annotated[JsonbBinary | None, Column("jsonb")]
    metrics: Annotated[JsonbBinary | None, Column("jsonb")]
    doc: Annotated[bytes, Column("bytea")]
    file_mtime_ns: Annotated[int | None, Column("bigint")]
    file_size: Annotated[int | None, Column("bigint")]


class DerivedRow(NamedTuple):
    """One row of the ``derived`` table, in ``COPY`` column order."""

    run_id: Annotated[str, Column("text")]
    experiment_id: Annotated[str | None, Column("text")]
    metrics: Annotated[JsonbBinary | None, Column("jsonb")]
    doc: Annotated[bytes, Column("bytea")]
    file_mtime_ns: Annotated[int | None, Column("bigint")]
    file_size: Annotated[int | None, Column("bigint")]


class ManifestRow(NamedTuple):
    """One row of the ``manifests`` table, in ``COPY`` column order."""

    experiment_id: Annotated[str, Column("text")]
    name: Annotated[str, Column("text")]
    submitted_at: Annotated[dt.datetime, Column("timestamptz")]
    doc: Annotated[bytes, Column("bytea")]
    file_mtime_ns: Annotated[int | None, Column("bigint")]
    file_size: Annotated[int | None, Column("bigint")]


class SeriesRow(NamedTuple):
    """One row of the ``series`` table (a run's series file), in ``COPY`` column order."""

    run_id: Annotated[str, Column("text")]
    experiment_id: Annotated[str | None, Column("text")]
    points: Annotated[int, Column("bigint")]
    chunks: Annotated[int, Column("bigint")]
    generation: Annotated[str, Column("text")]
    file_mtime_ns: Annotated[int | None, Column("bigint")]
    file_size: Annotated[int | None, Column("bigint")]


class SeriesChunkRow(NamedTuple):
    """One row of ``series_chunks`` (points of one metric), in ``COPY`` column order."""

    run_id: Annotated[str, Column("text")]
    seq: Annotated[int, Column("bigint")]
    metric: Annotated[str, Column("text")]
    steps: Annotated[list[int], Column("bigint[]")]
    nums: Annotated[list[float | None], Column("double precision[]")]
    others: Annotated[list[str | None] | None, Column("text[]")]
    ts: Annotated[list[float | None], Column("double precision[]")]


class ExperimentRow(NamedTuple):
    """One row of the ``experiments`` table."""

    experiment_id: Annotated[str, Column("text")]
    catalog_dirty: Annotated[bool, Column("boolean", default="true")]
    needs_sync: Annotated[bool, Column("boolean", default="false")]


class CatalogChangeRow(NamedTuple):
    """One row of ``catalog_changes``: a run's part as it was before a write changed it."""

    experiment_id: Annotated[str, Column("text")]
    run_id: Annotated[str, Column("text")]
    kind: Annotated[str, Column("text")]
    existed: Annotated[bool, Column("boolean")]
    params: Annotated[JsonbBinary | None, Column("jsonb")]
    metrics: Annotated[JsonbBinary | None, Column("jsonb")]


class SortMetricRow(NamedTuple):
    """One row of ``sort_metrics``: a metric of an experiment whose order is kept."""

    experiment_id: Annotated[str, Column("text")]
    metric: Annotated[str, Column("text")]


class SortValueRow(NamedTuple):
    """One row of ``sort_values``: a run's value of a kept metric, in sortable parts."""

    experiment_id: Annotated[str, Column("text")]
    metric: Annotated[str, Column("text")]
    category: Annotated[int, Column("smallint")]
    bool_value: Annotated[bool | None, Column("boolean")]
    num_value: Annotated[Decimal | None, Column("numeric")]
    str_value: Annotated[str | None, Column('text COLLATE "C"')]
    run_id: Annotated[str, Column("text")]


@dataclass(frozen=True)
class FieldCatalogRow:
    """One row of the ``field_catalog`` table (read as a ``FieldInfo``).

    A dataclass, not a ``NamedTuple``: a tuple's field cannot be called ``count``.
    """

    experiment_id: Annotated[str, Column("text")]
    field: Annotated[str, Column("text")]
    types: Annotated[list[str], Column("text[]")]
    count: Annotated[int, Column("bigint")]
    min_value: Annotated[float | None, Column("double precision")]
    max_value: Annotated[float | None, Column("double precision")]
    samples: Annotated[list[object], Column("jsonb")]


class MetaRow(NamedTuple):
    """The one row of ``metalab_meta``: the layout version and what the index covers."""

    singleton: Annotated[bool, Column("boolean", default="true")]
    schema_version: Annotated[int, Column("integer")]
    file_root: Annotated[str, Column("text")]
    created_at: Annotated[dt.datetime, Column("timestamptz", default="now()")]
    needs_sync: Annotated[bool, Column("boolean", default="false")]
    rebuilt_at: Annotated[dt.datetime | None, Column("timestamptz")]
    synced_at: Annotated[dt.datetime | None, Column("timestamptz")]


_INDEXED_AT: Final = Column("timestamptz", default="clock_timestamp()", name="indexed_at")
_ROW_STORAGE: Final = (("toast_tuple_target", 8160),)
_BY_INDEXED_AT: Final = Index("indexed_at", "(indexed_at)")
"""The rows written since a time: what a rebuild carries over (layout 6)."""

RUNS: Final = Table(
    "runs",
    RunRow,
    primary_key=("run_id",),
    extra=(_INDEXED_AT,),
    indexes=(
        # INCLUDE: run summaries (counts by status, last activity, tags) are an
        # index-only scan; run_id in code-point order: windows in the default order
        # walk an index instead of sorting every match.
        Index(
            "experiment_status",
            "(experiment_id, status) INCLUDE (started_at, finished_at, tags)",
        ),
        Index("experiment_run", '(experiment_id, run_id COLLATE "C")'),
        Index("params", "USING gin (params jsonb_path_ops)"),
        _BY_INDEXED_AT,
        Index("experiment_trgm", "USING gin (experiment_id gin_trgm_ops)", trigram=True),
    ),
    storage=_ROW_STORAGE,
)
DERIVED: Final = Table(
    "derived",
    DerivedRow,
    primary_key=("run_id",),
    extra=(_INDEXED_AT,),
    indexes=(Index("experiment", "(experiment_id)"), _BY_INDEXED_AT),
    storage=_ROW_STORAGE,
)
MANIFESTS: Final = Table(
    "manifests",
    ManifestRow,
    primary_key=("experiment_id", "name"),
    extra=(_INDEXED_AT,),
    indexes=(_BY_INDEXED_AT,),
    storage=_ROW_STORAGE,
)
SERIES: Final = Table(
    "series",
    SeriesRow,
    primary_key=("run_id",),
    extra=(_INDEXED_AT,),
    indexes=(Index("experiment", "(experiment_id)"), _BY_INDEXED_AT),
)
SERIES_CHUNKS: Final = Table(
    "series_chunks", SeriesChunkRow, primary_key=("run_id", "seq", "metric")
)
EXPERIMENTS: Final = Table("experiments", ExperimentRow, primary_key=("experiment_id",))
FIELD_CATALOG: Final = Table(
    "field_catalog", FieldCatalogRow, primary_key=("experiment_id", "field")
)
CATALOG_CHANGES: Final = Table(
    "catalog_changes",
    CatalogChangeRow,
    primary_key=("seq",),
    extra=(Column("bigint GENERATED ALWAYS AS IDENTITY", name="seq"),),
    indexes=(Index("experiment", "(experiment_id)"),),
)
SORT_METRICS: Final = Table("sort_metrics", SortMetricRow, primary_key=("experiment_id", "metric"))
SORT_VALUES: Final = Table(
    "sort_values",
    SortValueRow,
    primary_key=("run_id", "metric"),
    indexes=(
        Index("order", "(experiment_id, metric, category, bool_value, num_value, str_value)"),
    ),
)
META: Final = Table(
    "metalab_meta",
    MetaRow,
    primary_key=("singleton",),
    checks=(Check("singleton", "singleton"),),
)

TABLES: Final = (
    RUNS,
    DERIVED,
    MANIFESTS,
    EXPERIMENTS,
    FIELD_CATALOG,
    SERIES,
    SERIES_CHUNKS,
    SORT_METRICS,
    SORT_VALUES,
    CATALOG_CHANGES,
)
"""Every table of the index but ``metalab_meta``, which a rebuild keeps."""
META_TABLE: Final = META.name


TRIGGER_FUNCTIONS: Final = (
    "metalab_keep_sort_values",  # layout 4
    "metalab_runs_changed",
    "metalab_derived_changed",
)
"""The trigger functions the index has defined in its schema, in any layout."""


def lock_key(schema: str) -> str:
    """The text hashed into the advisory-lock key that serialises DDL on ``schema``."""
    return f"metalab.index:{schema}"


def create_meta_table(schema: str) -> sql.Composed:
    """``metalab_meta``: one row with the layout version and what the index covers."""
    return META.create(schema, if_not_exists=True)


def create_tables(
    schema: str, suffix: str = "", tables: Sequence[Table] = TABLES
) -> Iterator[sql.Composed]:
    """The ``CREATE TABLE`` statements of index tables (indexes come separately).

    Args:
        schema: The Postgres schema.
        suffix: Appended to every table name (a rebuild builds ``runs__rebuild``, ...).
        tables: The tables; every index table by default.
    """
    for spec in tables:
        yield spec.create(schema, suffix)


def _indexes(trigram: bool, tables: Sequence[Table] = TABLES) -> Iterator[tuple[Table, Index]]:
    """The secondary indexes of ``tables``, the trigram ones last and only if ``trigram``."""
    every = [(spec, index) for spec in tables for index in spec.indexes]
    yield from ((spec, index) for spec, index in every if not index.trigram)
    if trigram:
        yield from ((spec, index) for spec, index in every if index.trigram)


def create_indexes(
    schema: str, suffix: str = "", *, trigram: bool = False, tables: Sequence[Table] = TABLES
) -> Iterator[sql.Composed]:
    """The secondary indexes of the tables (the primary keys come with the tables).

    Args:
        schema: The Postgres schema.
        suffix: The table-name suffix the tables were created with.
        trigram: Also index ``experiment_id`` with ``gin_trgm_ops`` (only when the
            ``pg_trgm`` extension is installed; nothing requires it).
        tables: The tables; every index table by default.
    """
    for spec, index in _indexes(trigram, tables):
        yield sql.SQL("CREATE INDEX {idx} ON {t} {how}").format(
            idx=sql.Identifier(index.name(spec.name, suffix)),
            t=spec.identifier(schema, suffix),
            how=sql.SQL(index.method),
        )


def drop_tables(
    schema: str, suffix: str = "", *, meta: bool = False, tables: Sequence[Table] = TABLES
) -> Iterator[sql.Composed]:
    """``DROP TABLE IF EXISTS`` for index tables (and ``metalab_meta`` if asked)."""
    for spec in tables:
        yield sql.SQL("DROP TABLE IF EXISTS {t}").format(t=spec.identifier(schema, suffix))
    if meta:
        yield sql.SQL("DROP TABLE IF EXISTS {t}").format(t=META.identifier(schema))
        # The trigger functions of every layout that had them (their triggers went
        # with the tables); the current ones are created again with the tables.
        for function in TRIGGER_FUNCTIONS:
            yield sql.SQL("DROP FUNCTION IF EXISTS {f}()").format(
                f=sql.Identifier(schema, function)
            )


def swap_in(schema: str, suffix: str, *, trigram: bool = False) -> Iterator[sql.Composed]:
    """Replace the live tables by the ones built under ``suffix`` (inside one transaction).

    The old tables are dropped, then the new tables, their constraints and their
    indexes are renamed to the live names, so the next rebuild can use ``suffix``
    again.
    """
    yield from drop_tables(schema)
    for spec in TABLES:
        yield sql.SQL("ALTER TABLE {t} RENAME TO {live}").format(
            t=spec.identifier(schema, suffix), live=sql.Identifier(spec.name)
        )
        for old, new in zip(spec.constraint_names(suffix), spec.constraint_names(), strict=True):
            yield sql.SQL("ALTER TABLE {t} RENAME CONSTRAINT {old} TO {new}").format(
                t=spec.identifier(schema), old=sql.Identifier(old), new=sql.Identifier(new)
            )
    for spec, index in _indexes(trigram):
        yield sql.SQL("ALTER INDEX {old} RENAME TO {new}").format(
            old=sql.Identifier(schema, index.name(spec.name, suffix)),
            new=sql.Identifier(index.name(spec.name)),
        )
