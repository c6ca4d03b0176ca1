"""Strings jsonb and text columns cannot hold as they are: the index answers like the files.

PostgreSQL's ``text`` and ``jsonb`` refuse NUL, so the index keeps a query copy of
params, metrics and tags in which NUL is escaped; that copy must neither lose an
answer (``"a\\x00b"``), nor invent one (U+FFFD, the six characters ``\\u0000``), nor
change an order (NUL sorts before every other character). Each query here runs on a
PostgresStore and on a FileStore holding the same records, and on the Python engine
directly: the three answers must be equal.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest

from metalab.query import F, Query, build_query
from metalab.query._ast import Expr, OrderBy
from metalab.records import JSONValue, RunRecord
from metalab.store import FileStoreConfig, PostgresStoreConfig, SupportsBulkPut, SupportsQuery
from metalab.testing import query_disagreements

EXP = "strings:1"
T0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)

#: Values next to each other in code-point order, or that an escape could confuse.
STRINGS = (
    "",
    "\x00",
    "a\x00b",
    "a\x00",
    "a",
    "a\x01",
    "a\x01b",
    "\x01",
    "\x01\x01",
    "\x02",
    "\x7f",
    "a\x7f",
    "\ufffd",
    "a\ufffdb",
    "\\u0000",
    "\\\\u0000",
    "\\\\\\u0000",
    "\\u0001",
    "\\ufffd",
    "\\",
    "\\\\",
    "a\\b",
    '"\\"',
    "$float",
    "NaN",
    "Infinity",
)

#: Keys of the same kinds (the codec's marker keys among them).
KEYS = ("k", "k\x00", "k\x01", "k\ufffd", "\\u0000", "$float", "$dict", "\x00")


def _records() -> list[RunRecord]:
    records = []
    for i, text in enumerate(STRINGS):
        key = KEYS[i % len(KEYS)]
        params: dict[str, JSONValue] = {
            "s": text,
            key: text,
            "list": [text, STRINGS[(i + 1) % len(STRINGS)]],
            "nested": {key: text},
        }
        if i % 5 == 0:
            params["marker"] = {"$float": text}
        records.append(
            RunRecord(
                run_id=f"{i:016x}",
                experiment_id=EXP,
                status="success",
                started_at=T0,
                finished_at=T0,
                params=params,
                metrics={"m": text, key: i},
                tags=(text, "t"),
            )
        )
    return records


def _queries() -> list[Query]:
    exprs: list[Expr] = []
    for text in STRINGS:
        s = F.params["s"]
        exprs += [s == text, s != text, s < text, s <= text, s > text, s >= text]
        exprs += [s.is_in([text, "a"]), s.not_in([text])]
        exprs += [F.params["list"].contains(text), F.tags.contains(text)]
        exprs += [F.metrics["m"] == text, F.metrics["m"] > text]
        exprs += [F.run_id == text, F.run_id >= text, F.run_id.is_in([text])]
    for key in KEYS:
        exprs += [
            F.params[key].exists(),
            F.params[key] == "a",
            F.params["nested"][key] == "a\x00b",
            F.params["nested"][key].exists(),
            F.metrics[key] >= 0,
        ]
    for low, high in itertools.pairwise(("\x00", "a", "a\x00", "a\x01", "\ufffd")):
        exprs.append((F.params["s"] >= low) & (F.params["s"] < high))
    queries = [build_query(expr) for expr in exprs]
    orders: list[OrderBy] = [
        F.params["s"].asc(),
        F.params["s"].desc(),
        F.metrics["m"].asc(),
        F.params["k\x00"].desc(),
    ]
    queries += [build_query(None, order_by=order) for order in orders]
    return queries


@pytest.fixture(scope="module")
def records() -> list[RunRecord]:
    return _records()


class TestStringsTheIndexCannotHold:
    def test_the_index_answers_every_query_as_the_files(
        self, postgres_config: PostgresStoreConfig, tmp_path: Path, records: list[RunRecord]
    ) -> None:
        files = FileStoreConfig(root=str(tmp_path / "plain"), experiment_id=EXP)
        with postgres_config.scoped(EXP).connect() as pg, files.connect() as plain:
            assert isinstance(pg, SupportsQuery)
            assert isinstance(plain, SupportsQuery)
            for record in records:
                pg.put_run_record(record)
                plain.put_run_record(record)
            from_files = query_disagreements(plain, records, _queries())
            from_index = query_disagreements(pg, records, _queries())
        assert not from_files, "\n".join(from_files)
        assert not from_index, "\n".join(from_index)

    def test_a_rebuilt_index_answers_as_one_written_in_bulk(
        self, postgres_config: PostgresStoreConfig, records: list[RunRecord]
    ) -> None:
        with postgres_config.scoped(EXP).connect() as pg:
            assert isinstance(pg, SupportsQuery)
            assert isinstance(pg, SupportsBulkPut)
            assert pg.put_run_records(records) == len(records)
            bulk = query_disagreements(pg, records, _queries())
            pg.rebuild_index()
            rebuilt = query_disagreements(pg, records, _queries())
        assert not bulk, "\n".join(bulk)
        assert not rebuilt, "\n".join(rebuilt)

    def test_records_read_back_from_the_index_are_exact(
        self, postgres_config: PostgresStoreConfig, records: list[RunRecord]
    ) -> None:
        with postgres_config.scoped(EXP).connect() as pg:
            for record in records:
                pg.put_run_record(record)
            for record in records:
                assert pg.get_run_record(record.run_id) == record
            listed = {r.run_id: r for r in pg.list_run_records()}
        assert listed == {r.run_id: r for r in records}

    def test_the_field_catalog_names_keys_and_samples_as_the_files(
        self, postgres_config: PostgresStoreConfig, tmp_path: Path, records: list[RunRecord]
    ) -> None:
        files = FileStoreConfig(root=str(tmp_path / "plain"), experiment_id=EXP)
        with postgres_config.scoped(EXP).connect() as pg, files.connect() as plain:
            assert isinstance(pg, SupportsQuery)
            assert isinstance(plain, SupportsQuery)
            for record in records:
                pg.put_run_record(record)
                plain.put_run_record(record)
            from_index = {f.field: f for f in pg.fields()}
            from_files = {f.field: f for f in plain.fields()}
        assert sorted(from_index) == sorted(from_files)
        for name, info in from_files.items():
            other = from_index[name]
            assert (other.types, other.count) == (info.types, info.count), ascii(name)
            if info.types == ["str"]:  # (lists and objects are sampled in another order)
                assert other.samples == info.samples, ascii(name)
