"""The index table specs: rows, columns, ``COPY`` types and DDL agree."""

from __future__ import annotations

import datetime as dt
import types
import typing
from typing import Annotated, NamedTuple

import pytest
from psycopg import postgres, sql

from metalab.store import _postgres_schema as ddl
from metalab.store._postgres_index import DerivedRow, JsonbBinary, ManifestRow, RunRow
from metalab.store._postgres_schema import Column, Table

DOCUMENTS = [
    (ddl.RUNS, RunRow, RunRow._fields),
    (ddl.DERIVED, DerivedRow, DerivedRow._fields),
    (ddl.MANIFESTS, ManifestRow, ManifestRow._fields),
]
EVERY_TABLE = [*ddl.TABLES, ddl.META]

# The SQL type each Python type of a row field is stored as.
SQL_TYPES: dict[object, set[str]] = {
    str: {"text"},
    bool: {"boolean"},
    int: {"bigint", "integer"},
    float: {"double precision"},
    bytes: {"bytea"},
    dt.datetime: {"timestamptz"},
    list[str]: {"text[]"},
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
        assert all(c.default is not None and not c.nullable for c in spec.extra)

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

    @pytest.mark.parametrize(("spec", "row", "fields"), DOCUMENTS)
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
