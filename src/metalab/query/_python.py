"""The Python engine: evaluate a query over run records held in memory."""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from metalab.query._ast import (
    And,
    Compare,
    Contains,
    Exists,
    Expr,
    Field,
    In,
    Not,
    Or,
    OrderBy,
    Query,
    Scalar,
)
from metalab.records import MetricValue, RunRecord

__all__ = [
    "DerivedLookup",
    "category",
    "compile_filter",
    "field_value",
    "select",
]

DerivedLookup = Callable[[RunRecord], Mapping[str, MetricValue] | None]
"""Returns the derived metrics of a run (``None`` if it has none)."""

#: Comparable categories, in the order a sort puts them (ascending).
BOOL: Final = 0
NUMBER: Final = 1
STRING: Final = 2
TIMESTAMP: Final = 3


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

_ORDERING: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def category(value: object) -> int | None:
    """The comparable category of a value, or ``None`` if it compares with nothing.

    NaN, ``None``, lists, mappings and missing values have no category.
    """
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return NUMBER
    if isinstance(value, float):
        return None if math.isnan(value) else NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, dt.datetime):
        return TIMESTAMP
    return None


def field_value(fld: Field, record: RunRecord, derived: Mapping[str, MetricValue] | None) -> object:
    """Return the value of ``fld`` in a run, or ``MISSING``."""
    namespace = fld.namespace
    value: object
    if namespace == "record":
        value = getattr(record, fld.path[0])
    elif namespace == "metrics":
        value = record.metrics.get(fld.path[0], MISSING)
    elif namespace == "derived":
        value = MISSING if derived is None else derived.get(fld.path[0], MISSING)
    else:
        value = record.params
        for key in fld.path:
            if not isinstance(value, dict):
                return MISSING
            value = value.get(key, MISSING)
    return MISSING if value is None else value


def _equal(value: object, literal: Scalar, literal_cat: int | None) -> bool:
    return category(value) == literal_cat and value == literal


Predicate = Callable[[RunRecord, Mapping[str, MetricValue] | None], bool]


def compile_filter(expr: Expr) -> Predicate:
    """Compile an expression into a predicate over ``(record, derived)``."""
    if isinstance(expr, And):
        parts = [compile_filter(item) for item in expr.items]
        return lambda r, d: all(p(r, d) for p in parts)
    if isinstance(expr, Or):
        parts = [compile_filter(item) for item in expr.items]
        return lambda r, d: any(p(r, d) for p in parts)
    if isinstance(expr, Not):
        inner = compile_filter(expr.item)
        return lambda r, d: not inner(r, d)
    fld = expr.field
    if isinstance(expr, Exists):
        return lambda r, d: field_value(fld, r, d) is not MISSING
    if isinstance(expr, Contains):
        literal, cat = expr.value, category(expr.value)

        def contains(r: RunRecord, d: Mapping[str, MetricValue] | None) -> bool:
            value = field_value(fld, r, d)
            return isinstance(value, list | tuple) and any(_equal(v, literal, cat) for v in value)

        return contains
    if isinstance(expr, In):
        literals = [(v, category(v)) for v in expr.values]
        negated = expr.negated

        def member(r: RunRecord, d: Mapping[str, MetricValue] | None) -> bool:
            value = field_value(fld, r, d)
            if category(value) is None:
                return False
            found = any(_equal(value, lit, cat) for lit, cat in literals)
            return found != negated

        return member
    return _compile_compare(expr)


def _compile_compare(expr: Compare) -> Predicate:
    fld, literal, cat = expr.field, expr.value, category(expr.value)
    if expr.op == "==":
        return lambda r, d: _equal(field_value(fld, r, d), literal, cat)
    if expr.op == "!=":

        def differs(r: RunRecord, d: Mapping[str, MetricValue] | None) -> bool:
            value = field_value(fld, r, d)
            return category(value) is not None and not _equal(value, literal, cat)

        return differs
    compare = _ORDERING[expr.op]

    def ordered(r: RunRecord, d: Mapping[str, MetricValue] | None) -> bool:
        value = field_value(fld, r, d)
        return category(value) == cat and compare(value, literal)

    return ordered


def _sort_value(value: object) -> tuple[int, object] | None:
    cat = category(value)
    return None if cat is None else (cat, value)


def _order(
    rows: list[tuple[RunRecord, Mapping[str, MetricValue] | None]], key: OrderBy
) -> list[tuple[RunRecord, Mapping[str, MetricValue] | None]]:
    present: list[tuple[tuple[int, object], tuple[RunRecord, Mapping[str, MetricValue] | None]]]
    present, missing = [], []
    for row in rows:
        sort_value = _sort_value(field_value(key.field, row[0], row[1]))
        if sort_value is None:
            missing.append(row)
        else:
            present.append((sort_value, row))
    # Stable sorts (reverse=True keeps ties in order too) applied from the least to
    # the most significant key give a lexicographic order; missing values go last.
    present.sort(key=operator.itemgetter(0), reverse=key.descending)
    return [row for _, row in present] + missing


def select(
    records: Iterable[RunRecord], query: Query, derived: DerivedLookup | None = None
) -> list[RunRecord]:
    """Filter, sort and window ``records`` according to ``query``.

    Args:
        records: The candidate runs.
        query: What to select.
        derived: Looks up a run's derived metrics; needed only when the query reads
            ``derived.*`` fields (otherwise derived values count as missing).
    """
    lookup: DerivedLookup = derived if derived is not None else (lambda _r: None)
    needs_derived = derived is not None and query.uses_namespace("derived")
    predicate = compile_filter(query.where) if query.where is not None else None
    rows: list[tuple[RunRecord, Mapping[str, MetricValue] | None]] = []
    for record in records:
        extra = lookup(record) if needs_derived else None
        if predicate is None or predicate(record, extra):
            rows.append((record, extra))
    rows.sort(key=lambda row: row[0].run_id)
    for key in reversed(query.order_by):
        rows = _order(rows, key)
    end = None if query.limit is None else query.offset + query.limit
    return [record for record, _ in rows[query.offset : end]]
