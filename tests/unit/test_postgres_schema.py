"""The index table specs: rows, columns, ``COPY`` types and statements agree."""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from decimal import Decimal
from typing import Annotated, Any, NamedTuple

import pytest
from psycopg import postgres, sql

from metalab.store import _postgres_schema as ddl
from metalab.store import _postgres_sql
from metalab.store._postgres_schema import (
    Column,
    DerivedRow,
    JsonbBinary,
    ManifestRow,
    RunRow,
    SeriesChunkRow,
    SeriesRow,
    Table,
)

DOCUMENTS = [
    (ddl.RUNS, RunRow, RunRow._fields),
    (ddl.DERIVED, DerivedRow, DerivedRow._fields),
    (ddl.MANIFESTS, ManifestRow, ManifestRow._fields),
    (ddl.SERIES, SeriesRow, SeriesRow._fields),
]
# Tables rows are copied into: the documents', and the chunks of series (which follow
# their series row and carry no indexed_at of their own).
COPIED = [*DOCUMENTS, (ddl.SERIES_CHUNKS, SeriesChunkRow, SeriesChunkRow._fields)]
EVERY_TABLE = [*ddl.TABLES, ddl.META]

# The SQL type each Python type of a row field is stored as.
SQL_TYPES: dict[object, set[str]] = {
    str: {"text", 'text COLLATE "C"'},
    bool: {"boolean"},
    int: {"bigint", "integer", "smallint"},
    Decimal: {"numeric"},
    float: {"double precision"},
    bytes: {"bytea"},
    dt.datetime: {"timestamptz"},
    list[str]: {"text[]"},
    list[int]: {"bigint[]"},
    list[float | None]: {"double precision[]"},
    list[str | None]: {"text[]"},
    JsonbBinary: {"jsonb"},
    list[object]: {"jsonb"},
}


def python_types(spec: Table) -> list[tuple[object, bool]]:
    """``(type without None, whether None is allowed)`` of each row field."""
    found = []
    for hint in typing.get_type_hints(spec.row, include_extras=True).values():
        python_type = typing.get_args(hint)[0]
        if isinstance(python_type, types.UnionType):
            others = [a for a in typing.get_args(python_type) if a is not type(None)]
            assert len(others) == 1
            found.append((others[0], True))
        else:
            found.append((python_type, False))
    return found


def render(statement: sql.Composable | bytes) -> str:
    return statement.decode() if isinstance(statement, bytes) else statement.as_string(None)


def every_statement() -> list[str]:
    q = _postgres_sql.statements("s")
    found: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, (bytes, sql.Composable)):
            found.append(render(value))
        elif isinstance(value, _postgres_sql.CopyIn):
            collect(value.statement)
        elif isinstance(value, tuple):
            for item in value:
                collect(item)
        elif dataclasses.is_dataclass(value):
            for field in dataclasses.fields(value):
                collect(getattr(value, field.name))

    collect(q)
    return found


class TestTableSpecs:
    @pytest.mark.parametrize(("spec", "row", "fields"), DOCUMENTS)
    def test_row_fields_are_the_columns_but_those_rows_never_carry(
        self, spec: Table, row: type, fields: tuple[str, ...]
    ) -> None:
        assert spec.row is row
        assert spec.row_names == fields
        assert [c.name for c in spec.columns] == [*spec.row_names, "indexed_at"]
        assert [c.name for c in spec.extra] == ["indexed_at"]

    @pytest.mark.parametrize("spec", EVERY_TABLE, ids=lambda s: s.name)
    def test_columns_rows_never_carry_have_a_default_and_no_nulls(self, spec: Table) -> None:
        # A default or an identity: the database fills them.
        assert all(
            (c.default is not None or "GENERATED ALWAYS AS IDENTITY" in c.type) and not c.nullable
            for c in spec.extra
        )

    @pytest.mark.parametrize("spec", EVERY_TABLE, ids=lambda s: s.name)
    def test_the_sql_type_and_nullability_follow_the_python_type(self, spec: Table) -> None:
        for column, (python_type, optional) in zip(
            spec.row_columns, python_types(spec), strict=True
        ):
            assert column.type in SQL_TYPES[python_type], column
            assert column.nullable is optional, column

    @pytest.mark.parametrize("spec", EVERY_TABLE, ids=lambda s: s.name)
    def test_primary_key_columns_are_not_null(self, spec: Table) -> None:
        by_name = {c.name: c for c in spec.columns}
        assert spec.primary_key
        assert not any(by_name[name].nullable for name in spec.primary_key)

    @pytest.mark.parametrize(("spec", "row", "fields"), COPIED)
    def test_copy_types_line_up_with_the_row_fields(
        self, spec: Table, row: type, fields: tuple[str, ...]
    ) -> None:
        assert spec.row is row
        assert len(spec.copy_types) == len(fields)
        for column, copy_type, (python_type, _) in zip(
            spec.row_columns, spec.copy_types, python_types(spec), strict=True
        ):
            if python_type is JsonbBinary:
                assert (column.type, copy_type) == ("jsonb", "bytea")
            else:
                assert postgres.types.get_oid(copy_type) == postgres.types.get_oid(column.type)

    def test_updates_overwrite_every_row_column_outside_the_key(self) -> None:
        assert ddl.RUNS.updated_names == RunRow._fields[1:]
        assert ddl.DERIVED.updated_names == DerivedRow._fields[1:]
        assert ddl.MANIFESTS.updated_names == ManifestRow._fields[2:]


class TestSpecDeclarations:
    def test_a_field_without_a_column_is_refused(self) -> None:
        class Bare(NamedTuple):
            run_id: str

        with pytest.raises(TypeError, match=r"Bare\.run_id"):
            Table("bare", Bare, primary_key=("run_id",))

    def test_a_primary_key_must_name_columns(self) -> None:
        class Keyed(NamedTuple):
            run_id: Annotated[str, Column("text")]

        with pytest.raises(TypeError, match="unknown"):
            Table("keyed", Keyed, primary_key=("id",))

    def test_a_column_is_named_by_its_field_only(self) -> None:
        class Named(NamedTuple):
            run_id: Annotated[str, Column("text", name="other")]

        with pytest.raises(TypeError, match=r"Named\.run_id"):
            Table("named", Named, primary_key=("run_id",))


class TestDdl:
    def test_the_trigram_index_is_created_and_renamed_as_in_v1(self) -> None:
        created = [render(s) for s in ddl.create_indexes("s", "__rebuild", trigram=True)]
        assert created[-1] == (
            'CREATE INDEX "runs__rebuild_experiment_trgm_idx" ON "s"."runs__rebuild" '
            "USING gin (experiment_id gin_trgm_ops)"
        )
        renamed = [render(s) for s in ddl.swap_in("s", "__rebuild", trigram=True)]
        assert renamed[-1] == (
            'ALTER INDEX "s"."runs__rebuild_experiment_trgm_idx" '
            'RENAME TO "runs_experiment_trgm_idx"'
        )
        assert not any("trgm" in render(s) for s in ddl.create_indexes("s", trigram=False))


class TestStatements:
    def test_the_runs_stage_has_the_row_columns_and_the_batch_ordinal(self) -> None:
        q = _postgres_sql.run_statements("s")
        assert q.copy_stage.types == (*ddl.RUNS.copy_types, "bigint")
        stage = render(q.create_stage)
        assert stage.startswith('CREATE TEMP TABLE IF NOT EXISTS "metalab_stage_runs" (')
        assert stage.endswith(', "ordinal" bigint) ON COMMIT DELETE ROWS')
        assert "NOT NULL" not in stage
        assert "DEFAULT" not in stage

    def test_every_upsert_into_runs_keeps_finished_runs(self) -> None:
        rule = render(_postgres_sql.NOT_BACKWARDS)
        upserts = [
            s for s in every_statement() if s.startswith(("INSERT", "WITH")) and "AS r " in s
        ]
        assert len(upserts) == 3
        assert all(s.endswith(f"WHERE {rule}") for s in upserts)

    def test_batches_of_runs_merge_by_the_batch_winner_order(self) -> None:
        merge = render(_postgres_sql.run_statements("s").merge_stage)
        assert f"ORDER BY {render(_postgres_sql.BATCH_WINNER_ORDER)} ON CONFLICT" in merge
        assert 'SELECT DISTINCT ON (run_id) "run_id",' in merge
