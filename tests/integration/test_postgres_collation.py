"""On a database whose collation is not code-point order, the index still answers as Python.

The query engines compare and sort strings in code-point order (``"B" < "a"``,
``"_" > "Z"``), as Python does; an en-US collation puts ``"a" < "B"``, ignores
punctuation at first and sorts accents next to their letter. The SQL engine pins
``COLLATE "C"`` on every string compare and sort; these tests hold it there, on a
database created with an en-US default collation (``postgres_collated``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from metalab.query import F, Query, build_query, select
from metalab.query._ast import Expr
from metalab.records import RunRecord
from metalab.store import FileStoreConfig, PostgresStoreConfig, SupportsQuery
from metalab.testing import query_disagreements
from metalab.testing.postgres import CollatedDatabase

EXP = "collation:1"
T0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)

#: Strings whose order under en-US differs from their code-point order.
STRINGS = (
    "a",
    "A",
    "b",
    "B",
    "_",
    "-a",
    "a b",
    "ab",
    "aB",
    "Ab",
    "a_b",
    "a-b",
    "a.b",
    "é",
    "e",
    "f",
    "E",
    "z",
    "Z",
    "1",
    "10",
    "9",
    "",
    " ",
    "ä",
    "Ä",
    "co-op",
    "coop",
    "ß",
    "ss",
)
#: Param keys in the same situation (for the catalog's order of fields).
KEYS = ("a", "B", "_", "é", "Z", "b")


def _records() -> list[RunRecord]:
    return [
        RunRecord(
            run_id=f"{i:016x}",
            experiment_id=EXP,
            status="success",
            started_at=T0,
            finished_at=T0,
            params={"s": text, KEYS[i % len(KEYS)]: text, "list": [text]},
            metrics={"m": text},
            tags=(text,),
        )
        for i, text in enumerate(STRINGS)
    ]


def _queries() -> list[Query]:
    exprs: list[Expr] = []
    for text in ("a", "B", "_", "é", "Z", "ab", "a b", "1", "9", "ss"):
        s = F.params["s"]
        exprs += [s == text, s < text, s <= text, s > text, s >= text, s != text]
        exprs += [s.is_in([text, "z"]), F.params["list"].contains(text), F.tags.contains(text)]
        exprs += [F.metrics["m"] < text, F.metrics["m"] >= text, F.run_id < text]
    for low, high in (("A", "b"), ("_", "a"), ("a", "B"), ("Z", "a"), ("e", "f"), ("1", "9")):
        exprs.append((F.params["s"] >= low) & (F.params["s"] < high))
    queries = [build_query(expr) for expr in exprs]
    for order in ("params.s", "-params.s", "metrics.m", "-metrics.m", "params.a", "-params.B"):
        queries.append(build_query(None, order_by=order))
        queries.append(build_query(F.params["s"] > "A", order_by=order, limit=5, offset=2))
    return queries


class TestNonCCollation:
    def test_the_database_sorts_text_otherwise_than_python(
        self, postgres_collated: CollatedDatabase
    ) -> None:
        import psycopg  # noqa: PLC0415 -- the test needs psycopg itself, as the fixture does

        with psycopg.connect(postgres_collated.url) as conn:
            row = conn.execute(
                "SELECT array_agg(x ORDER BY x) FROM unnest(%s::text[]) AS x", (list(STRINGS),)
            ).fetchone()
        assert row is not None
        assert row[0] != sorted(STRINGS), postgres_collated.collation

    def test_the_index_compares_and_sorts_strings_as_the_files(
        self, postgres_collated_config: PostgresStoreConfig, tmp_path: Path
    ) -> None:
        records = _records()
        files = FileStoreConfig(root=str(tmp_path / "plain"), experiment_id=EXP)
        with postgres_collated_config.scoped(EXP).connect() as pg, files.connect() as plain:
            assert isinstance(pg, SupportsQuery)
            assert isinstance(plain, SupportsQuery)
            for record in records:
                pg.put_run_record(record)
                plain.put_run_record(record)
            from_files = query_disagreements(plain, records, _queries())
            from_index = query_disagreements(pg, records, _queries())
            pg.rebuild_index()
            rebuilt = query_disagreements(pg, records, _queries())
        assert not from_files, "\n".join(from_files)
        assert not from_index, "\n".join(from_index)
        assert not rebuilt, "\n".join(rebuilt)

    @pytest.mark.parametrize("descending", [False, True])
    def test_records_list_in_run_id_order(
        self, postgres_collated_config: PostgresStoreConfig, descending: bool
    ) -> None:
        # Run ids sort last, as a tie-breaker: in code-point order too.
        records = [
            RunRecord(
                run_id=run_id,
                experiment_id=EXP,
                status="success",
                started_at=T0,
                finished_at=T0,
                params={"same": 1},
            )
            for run_id in ("B-1", "a-1", "a1", "A.1", "b1", "a.2", "Z9", "1a")
        ]
        query = build_query(None, order_by=F.params["same"].desc() if descending else "params.same")
        with postgres_collated_config.scoped(EXP).connect() as pg:
            assert isinstance(pg, SupportsQuery)
            for record in records:
                pg.put_run_record(record)
            got = [r.run_id for r in pg.query_runs(query)]
        assert got == [r.run_id for r in select(records, query)]

    def test_the_field_catalog_names_and_samples_as_the_files(
        self, postgres_collated_config: PostgresStoreConfig, tmp_path: Path
    ) -> None:
        records = _records()
        files = FileStoreConfig(root=str(tmp_path / "plain"), experiment_id=EXP)
        with postgres_collated_config.scoped(EXP).connect() as pg, files.connect() as plain:
            assert isinstance(pg, SupportsQuery)
            assert isinstance(plain, SupportsQuery)
            for record in records:
                pg.put_run_record(record)
                plain.put_run_record(record)
            from_index = [(f.field, f.samples) for f in pg.fields()]
            from_files = [(f.field, f.samples) for f in plain.fields()]
        assert [f for f, _ in from_index] == [f for f, _ in from_files]
        assert from_index == from_files
