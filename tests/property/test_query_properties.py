from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from metalab.query import Not, Query, parse_order, parse_where, select
from metalab.records import RunRecord
from metalab.testing import strategies as mst


def _unique(records: list[RunRecord]) -> list[RunRecord]:
    return list({r.run_id: r for r in records}.values())


@given(mst.query_expressions())
def test_string_form_parses_back_to_the_same_tree(expr: Any) -> None:
    assert parse_where(str(expr)) == expr


@given(mst.queries())
def test_order_string_form_parses_back(query: Query) -> None:
    if query.order_by:
        text = ", ".join(str(o) for o in query.order_by)
        assert parse_order(text) == query.order_by


@given(st.lists(mst.query_records(), max_size=12).map(_unique), mst.query_expressions())
def test_a_filter_and_its_negation_partition_the_runs(records: list[RunRecord], expr: Any) -> None:
    yes = {r.run_id for r in select(records, Query(where=expr))}
    no = {r.run_id for r in select(records, Query(where=Not(expr)))}
    assert yes.isdisjoint(no)
    assert yes | no == {r.run_id for r in records}


@given(st.lists(mst.query_records(), max_size=12).map(_unique), mst.queries())
def test_windows_are_slices_of_the_full_order(records: list[RunRecord], query: Query) -> None:
    full = select(records, Query(where=query.where, order_by=query.order_by))
    window = select(records, query)
    end = None if query.limit is None else query.offset + query.limit
    assert window == full[query.offset : end]
