"""One small query language for run records, with a Python and a SQL engine.

Build a filter with the typed builder or parse it from a string; both give the same
AST::

    from metalab.query import F, parse_where

    a = (F.params["lr"] < 0.01) & (F.metrics["acc"] >= 0.9) & (F.status == "success")
    b = parse_where('params.lr < 0.01 and metrics.acc >= 0.9 and status == "success"')
    assert a == b

:func:`select` is the Python engine, over records in memory; the SQL engine,
:mod:`metalab.query.sql`, compiles a query for the Postgres index and needs the
``postgres`` extra, so this package does not import it.

Fields: ``params.<key>`` (nested: ``params.optim.lr``), ``metrics.<key>``,
``derived.<key>``, and the record fields ``run_id``, ``experiment_id``, ``status``,
``tags``, ``started_at``, ``finished_at``, ``duration_ms``. Keys that are not plain
identifiers are quoted: ``metrics."val acc"``. Operators: ``==`` (or ``=``), ``!=``,
``<``, ``<=``, ``>``, ``>=``, ``in [..]``, ``not in [..]``, ``contains`` (a value of a
list such as ``tags``), ``exists``, ``and``, ``or``, ``not`` and parentheses.

Semantics (both engines follow these exactly; property tests compare them):

- **Missing values.** A key that is absent, or whose value is ``null``, is missing.
  Every comparison with a missing value is false, ``!=`` and ``not in`` included;
  ``exists`` is true only for present, non-null values; ``not`` negates whatever its
  operand gives, so ``not params.x == 1`` is true for a run without ``x``.
- **Types.** Values fall into four categories: booleans, numbers (int and float),
  strings and timestamps. A comparison is true only between values of the same
  category: ``1 == 1.0`` holds, ``1 == true`` and ``"1" == 1`` do not, and
  ``params.x < "b"`` is false for a numeric ``x``. ``!=`` is true when the field has a
  comparable value that is not equal (a value of another category counts as not
  equal). Booleans can be tested for equality but not ordered. Lists and mappings
  only answer ``exists`` and ``contains``.
- **Numbers** compare by value; integers and floats mix freely (exact for integers up
  to 2**53). ``inf`` and ``-inf`` are ordinary numbers. **NaN** compares with nothing
  (every comparison false, like a missing value), but ``exists`` is true for it.
- **Strings** compare by Unicode code point (no locale).
- **Timestamps** (``started_at``, ``finished_at``) compare as instants. A literal must
  carry a time zone (``"2026-01-31T12:00:00Z"``); a naive one is an error, not a guess.
- **Sorting.** ``order_by`` sorts by category (booleans, numbers, strings, timestamps)
  then value, reversed as a whole for ``desc``. Missing, NaN and non-scalar values
  always sort last, ascending or descending. Ties are broken by ``run_id``, so the
  order is total and identical in both engines. ``offset`` and ``limit`` apply after
  sorting.
"""

from __future__ import annotations

from collections.abc import Sequence

from metalab.query._ast import (
    And,
    Compare,
    Contains,
    Exists,
    Expr,
    F,
    Field,
    FieldRef,
    In,
    Not,
    Or,
    OrderBy,
    Query,
    Scalar,
)
from metalab.query._catalog import (
    CATALOG_SAMPLE_RUNS,
    CATALOG_SAMPLES,
    FieldCatalog,
    FieldInfo,
    field_catalog,
)
from metalab.query._parser import order_from, parse_order, parse_where
from metalab.query._python import DerivedLookup, select
from metalab.query._summary import RunSummary, SummaryGroup, summarize_groups, summarize_runs

__all__ = [
    "CATALOG_SAMPLES",
    "CATALOG_SAMPLE_RUNS",
    "And",
    "Compare",
    "Contains",
    "DerivedLookup",
    "Exists",
    "Expr",
    "F",
    "Field",
    "FieldCatalog",
    "FieldInfo",
    "FieldRef",
    "In",
    "Not",
    "Or",
    "OrderBy",
    "Query",
    "RunSummary",
    "Scalar",
    "SummaryGroup",
    "build_query",
    "field_catalog",
    "parse_order",
    "parse_where",
    "select",
    "summarize_groups",
    "summarize_runs",
]


def build_query(
    where: Expr | str | None = None,
    order_by: Sequence[OrderBy | str] | OrderBy | str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Query:
    """Build a :class:`Query` from the forms the public API accepts.

    Args:
        where: A filter expression, its string form, or ``None`` for all runs.
        order_by: Sort keys: ``OrderBy`` objects (``F.metrics["acc"].desc()``) or
            strings (``"metrics.acc desc"``, ``"-metrics.acc"``), most significant first.
        limit: At most this many runs.
        offset: Skip this many runs first.

    Raises:
        QuerySyntaxError: A string does not parse.
        QueryError: The query is invalid.
    """
    expr = parse_where(where) if isinstance(where, str) else where
    return Query(where=expr, order_by=order_from(order_by), limit=limit, offset=offset)
