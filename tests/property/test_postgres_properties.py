"""Hypothesis properties of the Postgres store: configs round-trip, records survive everything."""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from metalab import _codec
from metalab.records import RunEdits, RunRecord
from metalab.store import (
    FileStoreConfig,
    PostgresIndex,
    PostgresStoreConfig,
    StoreConfig,
    parse_to_config,
)
from metalab.store._documents import Document, FileState
from metalab.store._rules import STATUSES, batch_winner, keeps_edits, replaces
from metalab.testing import comparable
from metalab.testing import strategies as mst
from metalab.testing.store import new_run_id

EXP = "property:1"
# Edit times one microsecond (the index's resolution) and one second apart.
_EDIT_TIMES = [
    dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC),
    dt.datetime(2026, 12, 3, 9, 0, 0, 1, tzinfo=dt.UTC),
    dt.datetime(2026, 12, 3, 9, 0, 1, tzinfo=dt.UTC),
]

_segment = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="/\\"),
    min_size=1,
    max_size=10,
).filter(lambda s: s not in {".", ".."})
_user_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=12
)
_host = st.sampled_from(["localhost", "db.example.org", "10.0.0.7", ""])


@st.composite
def connection_strings(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["postgresql", "postgres"]))
    auth = ""
    if draw(st.booleans()):
        auth = quote(draw(_user_text), safe="")
        if draw(st.booleans()):
            auth += ":" + quote(draw(_user_text), safe="")
        auth += "@"
    host = draw(_host)
    port = f":{draw(st.integers(1, 65535))}" if host and draw(st.booleans()) else ""
    database = draw(st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8))
    params = draw(
        st.lists(st.sampled_from(["sslmode=require", "host=/run/pg", "application_name=x"]))
    )
    query = ("?" + "&".join(dict.fromkeys(params))) if params else ""
    return f"{scheme}://{auth}{host}{port}/{database}{query}"


configs = st.builds(
    PostgresStoreConfig,
    connection_string=connection_strings(),
    file_root=st.lists(_segment, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
    schema=_user_text.filter(lambda s: "\x00" not in s and len(s.encode()) <= 63),
    experiment_id=st.none() | mst.experiment_ids(),
    pool_min_size=st.integers(0, 3),
    pool_max_size=st.integers(3, 20),
    connect_timeout=st.floats(0.001, 1e6, allow_nan=False),
    pool_timeout=st.floats(0.001, 1e6, allow_nan=False),
    on_index_error=st.sampled_from(["raise", "fallback"]),
)


class TestPostgresConfigProperties:
    @given(config=configs)
    def test_the_locator_parses_back_to_the_same_config(self, config: PostgresStoreConfig) -> None:
        assert parse_to_config(config.to_locator()) == config

    @given(config=configs)
    def test_the_dict_parses_back_to_the_same_config(self, config: PostgresStoreConfig) -> None:
        assert StoreConfig.from_dict(config.to_dict()) == config

    @given(config=configs)
    def test_repr_never_holds_the_password(self, config: PostgresStoreConfig) -> None:
        password = urlsplit(config.connection_string).password
        if password:
            assert f":{password}@" not in repr(config)
            assert ":***@" in repr(config)


def unique_records() -> st.SearchStrategy[list[RunRecord]]:
    return st.lists(
        mst.run_records().map(
            lambda r: msgspec.structs.replace(r, run_id=new_run_id(), experiment_id=EXP)
        ),
        max_size=8,
    )


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def by_id(records: list[RunRecord]) -> list[object]:
    return [comparable(r) for r in sorted(records, key=lambda r: r.run_id)]


class TestRecordsSurviveTheIndex:
    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(records=unique_records(), bulk=st.booleans())
    def test_records_read_back_identical_from_index_files_and_a_rebuilt_database(
        self,
        postgres_url: str,
        postgres_schema: str,
        tmp_path_factory: pytest.TempPathFactory,
        records: list[RunRecord],
        bulk: bool,
    ) -> None:
        root: Path = tmp_path_factory.mktemp("files")
        drop_schema(postgres_url, postgres_schema)
        config = PostgresStoreConfig(
            connection_string=postgres_url,
            file_root=str(root),
            schema=postgres_schema,
            experiment_id=EXP,
        )
        with config.connect() as store:
            if bulk:
                store.put_run_records(records)
            else:
                for record in records:
                    store.put_run_record(record)
            assert by_id(store.list_run_records()) == by_id(records)
            for record in records:
                assert comparable(store.get_run_record(record.run_id)) == comparable(record)
        with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
            assert by_id(files.list_run_records()) == by_id(records)
        drop_schema(postgres_url, postgres_schema)
        with config.connect() as store:
            assert store.rebuild_index() == len(records)
            assert by_id(store.list_run_records()) == by_id(records)


class TestTheRecordRuleInSql:
    """The SQL of the record rule (store/_rules.py) picks what its Python twin picks."""

    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        record=mst.run_records(),
        stored=st.none() | st.sampled_from(STATUSES),
        batch=st.lists(st.sampled_from(STATUSES), min_size=1, max_size=6),
        one_by_one=st.booleans(),
    )
    def test_the_index_keeps_the_record_the_python_rule_keeps(
        self,
        postgres_index: PostgresIndex,
        record: RunRecord,
        stored: str | None,
        batch: list[str],
        one_by_one: bool,
    ) -> None:
        run_id = new_run_id()
        versions = [
            msgspec.structs.replace(record, run_id=run_id, status=s, tags=(str(i),))
            for i, s in enumerate(batch)
        ]
        expected = versions[batch_winner(batch)]
        if stored is not None:
            first = msgspec.structs.replace(record, run_id=run_id, status=stored, tags=("stored",))
            postgres_index.write([_document(first)])
            if not replaces(expected.status, stored):
                expected = first
        if one_by_one:
            for version in versions:
                postgres_index.write([_document(version)])
        else:
            postgres_index.write(iter([_document(v) for v in versions]))
        doc = postgres_index.get("runs", run_id, None)
        assert doc is not None
        kept = _codec.RUN_RECORD.decode(doc)
        assert (kept.status, kept.tags) == (expected.status, expected.tags)

    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        record=mst.run_records(),
        stored_at=st.none() | st.sampled_from(_EDIT_TIMES),
        new_at=st.none() | st.sampled_from(_EDIT_TIMES),
        in_a_batch=st.booleans(),
    )
    def test_the_index_keeps_edits_as_the_python_rule_does(
        self,
        postgres_index: PostgresIndex,
        record: RunRecord,
        stored_at: dt.datetime | None,
        new_at: dt.datetime | None,
        in_a_batch: bool,
    ) -> None:
        run_id = new_run_id()

        def version(tag: str, edited_at: dt.datetime | None) -> RunRecord:
            edits = None if edited_at is None else RunEdits(tags_added=(tag,), edited_at=edited_at)
            return msgspec.structs.replace(
                record, run_id=run_id, status="success", tags=(tag,), edits=edits
            )

        first, new = version("stored", stored_at), version("new", new_at)
        postgres_index.write([_document(first)])
        postgres_index.write(iter([_document(new)]) if in_a_batch else [_document(new)])
        doc = postgres_index.get("runs", run_id, None)
        assert doc is not None
        expected = new if keeps_edits(new_at, stored_at) else first
        assert _codec.RUN_RECORD.decode(doc).tags == expected.tags


def _document(record: RunRecord) -> Document:
    data = _codec.RUN_RECORD.encode(record)
    return Document("runs", record.run_id, record.experiment_id, data, FileState(1, len(data)), "-")


@pytest.fixture
def postgres_index(postgres_url: str, postgres_schema: str) -> Iterator[PostgresIndex]:
    with PostgresIndex(postgres_url, schema=postgres_schema) as index:
        yield index
