"""Strings with NUL, DEL, U+FFFD and backslashes: the SQL engine answers as the Python engine.

The index keeps params, metrics and tags in an *index form* that ``jsonb`` and
``text`` accept (:func:`metalab.query.sql.index_text`); these properties hold that
form one-to-one and order-preserving, its JSON version equal to it, and the engines
equal over records and queries made of such strings.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import operator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalab._codec import escape_json
from metalab.query import F, Query, build_query, select
from metalab.query._ast import Expr
from metalab.query._catalog import _jsonb_text
from metalab.query.sql import index_json, index_text, text_from_index
from metalab.records import JSONValue, RunRecord
from metalab.store import FileStoreConfig, PostgresStoreConfig, SupportsQuery

_COUNTER = itertools.count()
_T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

#: Characters next to the ones the index form rewrites, and the text of escapes.
_PIECES = ("\x00", "\x01", "\x02", "\x7f", "\ufffd", "\\", "u0000", "\\u0000", "a", "b", '"')
tricky_text = st.lists(st.sampled_from(_PIECES), max_size=4).map("".join)
_KEYS = ("k", "k\x00", "k\x01", "\x00", "\\u0000", "$float", "$dict", "\ufffd")


@given(st.text() | tricky_text, st.text() | tricky_text)
def test_the_index_form_is_one_to_one_and_keeps_the_order(a: str, b: str) -> None:
    ia, ib = index_text(a), index_text(b)
    assert "\x00" not in ia
    assert text_from_index(ia) == a
    assert (ia == ib) is (a == b)
    assert (ia < ib) is (a < b)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text() | tricky_text,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text() | tricky_text, inner, max_size=3)
        ),
        max_leaves=8,
    )
)
def test_the_json_index_form_puts_every_string_in_index_form(value: Any) -> None:
    def expected(v: Any) -> Any:
        if isinstance(v, str):
            return index_text(v)
        if isinstance(v, list):
            return [expected(x) for x in v]
        if isinstance(v, dict):
            return {index_text(k): expected(x) for k, x in v.items()}
        return v

    assert json.loads(index_json(msgspec.json.encode(escape_json(value)))) == expected(
        escape_json(value)
    )


@st.composite
def _records(draw: st.DrawFn, experiment: str, prefix: str) -> list[RunRecord]:
    texts = st.sampled_from(("", "a", "b", "\\u0000")) | tricky_text
    count = draw(st.integers(0, 8))
    records = []
    for i in range(count):
        params: dict[str, JSONValue] = draw(
            st.dictionaries(st.sampled_from(_KEYS), texts | st.lists(texts, max_size=3), max_size=3)
        )
        records.append(
            RunRecord(
                run_id=f"{prefix}{i:04x}",
                experiment_id=experiment,
                status="success",
                started_at=_T0,
                finished_at=_T0,
                params=params,
                metrics=draw(st.dictionaries(st.sampled_from(_KEYS), texts, max_size=2)),
                tags=tuple(draw(st.lists(texts, max_size=2, unique=True))),
            )
        )
    return records


@st.composite
def _predicates(draw: st.DrawFn) -> Expr:
    key = draw(st.sampled_from(_KEYS))
    text = draw(tricky_text)
    field = F.params[key] if draw(st.booleans()) else F.metrics[key]
    kind = draw(st.sampled_from(["exists", "contains", "tags", "in", "compare"]))
    if kind == "exists":
        return field.exists()
    if kind == "contains":
        return field.contains(text)
    if kind == "tags":
        return F.tags.contains(text)
    if kind == "in":
        return field.is_in([text, draw(tricky_text)])
    compare: Expr = _COMPARE[draw(st.sampled_from(sorted(_COMPARE)))](field, text)
    return compare


@st.composite
def _queries(draw: st.DrawFn) -> Query:
    where = draw(_predicates())
    if draw(st.booleans()):
        other = draw(_predicates())
        where = (where & other) if draw(st.booleans()) else (where | other)
    key = F.params[draw(st.sampled_from(("k", "k\x00", "\\u0000", "\ufffd")))]
    return build_query(where, order_by=[key.desc() if draw(st.booleans()) else key.asc()])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_index_and_files_agree_on_strings_jsonb_cannot_hold(
    postgres_config: PostgresStoreConfig, tmp_path: Path, data: st.DataObject
) -> None:
    n = next(_COUNTER)
    experiment = f"strings{n}:1"
    records = data.draw(_records(experiment, f"{n:08x}"))
    queries = data.draw(st.lists(_queries(), min_size=1, max_size=5))
    files = FileStoreConfig(root=str(tmp_path / f"plain{n}"), experiment_id=experiment)
    with postgres_config.scoped(experiment).connect() as pg, files.connect() as plain:
        assert isinstance(pg, SupportsQuery)
        assert isinstance(plain, SupportsQuery)
        for record in records:
            pg.put_run_record(record)
            plain.put_run_record(record)
        for query in queries:
            expected = [r.run_id for r in select(records, query)]
            assert [r.run_id for r in plain.query_runs(query)] == expected
            assert [r.run_id for r in pg.query_runs(query)] == expected, ascii(str(query.where))


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.sampled_from([0.1, 1e-7, 1e300, -0.0, 100.0, 2.5e-300])
        | st.text()
        | tricky_text,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(max_size=4) | tricky_text, inner, max_size=3)
        ),
        max_leaves=8,
    )
)
def test_catalog_samples_order_lists_and_objects_by_the_text_postgres_prints(
    postgres_url: str, value: JSONValue
) -> None:
    # The catalog orders list and object samples by their jsonb text, in Python and
    # in the index: the Python copy of that text must be PostgreSQL's, character for
    # character.
    escaped = escape_json(value)
    stored = index_json(msgspec.json.encode(escaped)).decode()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute("SELECT %s::jsonb::text", (stored,)).fetchone()
    assert row is not None
    assert _jsonb_text(escaped) == row[0]
