"""The SQL engine: compile a query to PostgreSQL over the index tables.

The compiled SQL follows the semantics in :mod:`metalab.query` exactly (a property
test compares it with the Python engine on random records and queries). Values and
keys always travel as named parameters (``jsonb`` paths are ``text[]`` values), so an
injection attempt in a key or a value is just data. Equality on params adds a ``@>``
containment test that the ``jsonb_path_ops`` GIN index answers, and equality on the
run id, experiment and status columns is a bare comparison that their btree indexes
answer.

The ``params``/``metrics`` ``jsonb`` columns hold the codec's escaped form, in which a
non-finite float is ``{"$float": "NaN" | "Infinity" | "-Infinity"}``: infinities are read
back as ``numeric`` infinities and NaN compares with nothing. ``jsonb`` numbers are
compared as exact ``numeric``; ``duration_ms`` (a ``float8`` column) as ``float8``.

``text`` and ``jsonb`` cannot hold NUL, so every string of that query copy (keys,
values, tags) is in its *index form* (:func:`index_text`): NUL is written U+0001
U+0001 and U+0001 is written U+0001 U+0002. The mapping is one-to-one and keeps
code-point order, so equality, ranges and sorting on the copy answer as on the
values; every string literal a query compares with the copy is put in the same
form. Strings compare and sort under ``COLLATE "C"`` (code-point order, as Python
does), whatever the database's collation.

Needs the ``postgres`` extra: this module imports psycopg, so :mod:`metalab.query`
does not import it (``import metalab`` never loads psycopg); import it by path.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from psycopg import sql

from metalab._codec import MARKER_KEYS, escape_json
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
from metalab.query._python import BOOL, NUMBER, STRING, TIMESTAMP, category

__all__ = [
    "SortValue",
    "answerable",
    "compile_select",
    "index_json",
    "index_text",
    "sort_value",
    "text_from_index",
]

_ENCODER: Final = msgspec.json.Encoder()
_OPS: Final = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
_C: Final = sql.SQL(' COLLATE "C"')
# A JSON escape of U+0000 or U+0001 itself, not the text of one ("\\u0000" is a
# backslash and "u0000"): an even number of backslashes precedes the escape's own.
_LOW_ESCAPES: Final = re.compile(rb"(?<!\\)((?:\\\\)*)\\u000([01])")
_LOW_ESCAPED: Final = {b"0": b"\\u0001\\u0001", b"1": b"\\u0001\\u0002"}


def index_text(text: str) -> str:
    """The index form of a string: NUL made U+0001 U+0001, U+0001 made U+0001 U+0002.

    One-to-one and order-preserving (in code-point order), and free of NUL, which
    PostgreSQL's ``text`` and ``jsonb`` refuse.
    """
    if "\x00" in text or "\x01" in text:
        return text.replace("\x01", "\x01\x02").replace("\x00", "\x01\x01")
    return text


def text_from_index(text: str) -> str:
    """The string whose index form (:func:`index_text`) is ``text``."""
    if "\x01" in text:
        return re.sub("\x01([\x01\x02])", lambda m: "\x00" if m[1] == "\x01" else "\x01", text)
    return text


def index_json(data: bytes) -> bytes:
    r"""JSON text with every string (keys included) in its index form (:func:`index_text`).

    ``data`` is strict JSON, as the codec writes it: NUL and U+0001 appear only as
    the escapes ``\u0000`` and ``\u0001`` (never as the text ``\\u0000``).
    """
    if b"\\u000" not in data:
        return data
    return _LOW_ESCAPES.sub(lambda m: m[1] + _LOW_ESCAPED[m[2]], data)


def answerable(query: Query) -> bool:
    """Whether :func:`compile_select` answers ``query`` exactly as the Python engine does.

    Not when a field's path holds a key that the escaped form gives a meaning
    (``$float``, ``$dict``: a mapping with one of them alone is stored wrapped).
    """
    return not any(key in MARKER_KEYS for fld in query.fields() for key in fld.path)


class _Params:
    """Named query parameters: placeholders stay right wherever they end up in the SQL."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any) -> sql.Placeholder:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return sql.Placeholder(name)

    def jsonb(self, value: Any) -> sql.Composable:
        """A ``jsonb`` value in the escaped form the index stores, strings in index form."""
        text = index_json(_ENCODER.encode(escape_json(value))).decode()
        return sql.SQL("{}::jsonb").format(self.add(text))

    def path(self, keys: Sequence[str]) -> sql.Composable:
        """A ``text[]`` path of ``jsonb`` keys, in index form."""
        return sql.SQL("{}::text[]").format(self.add([index_text(k) for k in keys]))


@dataclass
class _Value:
    """How to read a field in SQL: its category, and its value in each category.

    ``None`` for a category means the field can never hold a value of it.
    """

    category: sql.Composable
    exists: sql.Composable
    number: sql.Composable | None = None
    number_type: str = "numeric"
    text: sql.Composable | None = None
    boolean: sql.Composable | None = None
    time: sql.Composable | None = None
    json: sql.Composable | None = None
    params_path: tuple[str, ...] | None = None
    #: A ``NOT NULL`` text column (run id, experiment, status), compared bare so that
    #: its btree index answers equality.
    column: sql.Composable | None = None

    def typed(self, cat: int) -> sql.Composable | None:
        if cat == NUMBER:
            return self.number
        if cat == STRING:
            return None if self.text is None else sql.SQL("({}{})").format(self.text, _C)
        if cat == BOOL:
            return self.boolean
        return self.time


def _json_reader(v: sql.Composable, params_path: tuple[str, ...] | None = None) -> _Value:
    marker_number = sql.SQL(
        "(jsonb_typeof({v}) = 'object' AND {v} ->> '$float' IN ('Infinity', '-Infinity') "
        "AND ({v} - '$float') = '{{}}'::jsonb)"
    ).format(v=v)
    return _Value(
        category=sql.SQL(
            "(CASE jsonb_typeof({v}) WHEN 'boolean' THEN {b} WHEN 'number' THEN {n} "
            "WHEN 'string' THEN {s} WHEN 'object' THEN (CASE WHEN {m} THEN {n} END) END)"
        ).format(
            v=v,
            m=marker_number,
            b=sql.Literal(BOOL),
            n=sql.Literal(NUMBER),
            s=sql.Literal(STRING),
        ),
        exists=sql.SQL("({v} IS NOT NULL AND jsonb_typeof({v}) <> 'null')").format(v=v),
        number=sql.SQL(
            "(CASE WHEN jsonb_typeof({v}) = 'number' THEN ({v} #>> '{{}}')::numeric "
            "WHEN {m} THEN ({v} ->> '$float')::numeric END)"
        ).format(v=v, m=marker_number),
        text=sql.SQL("(CASE WHEN jsonb_typeof({v}) = 'string' THEN {v} #>> '{{}}' END)").format(
            v=v
        ),
        boolean=sql.SQL("(CASE WHEN jsonb_typeof({v}) = 'boolean' THEN ({v})::boolean END)").format(
            v=v
        ),
        json=v,
        params_path=params_path,
    )


@dataclass(frozen=True)
class SortValue:
    """How the SQL engine reads a ``jsonb`` value for sorting: one expression per part.

    A row of these parts, ordered by ``category`` then ``boolean``, ``number`` and
    ``text`` (each ``NULL`` outside its category), all in one direction, is in the
    order :func:`compile_select` sorts the value in; ``category`` is ``NULL`` for a
    value that sorts as missing (absent, ``null``, NaN, a list or a mapping).
    """

    category: sql.Composable
    boolean: sql.Composable
    number: sql.Composable
    text: sql.Composable


def sort_value(value: sql.Composable) -> SortValue:
    """The parts of a ``jsonb`` value (in the index's escaped form) that order it."""
    reader = _json_reader(value)
    assert reader.boolean is not None
    assert reader.number is not None
    assert reader.text is not None
    return SortValue(reader.category, reader.boolean, reader.number, reader.text)


def _field(fld: Field, p: _Params) -> _Value:
    if fld.namespace == "record":
        name = fld.path[0]
        column = sql.SQL("r.{}").format(sql.Identifier(name))
        present = sql.SQL("({} IS NOT NULL)").format(column)
        if fld.kind == "timestamp":
            return _Value(
                category=sql.SQL("(CASE WHEN {} THEN {} END)").format(
                    present, sql.Literal(TIMESTAMP)
                ),
                exists=present,
                time=column,
            )
        if fld.kind == "number":
            return _Value(
                category=sql.SQL(
                    "(CASE WHEN {c} IS NOT NULL AND {c} <> 'NaN'::float8 THEN {n} END)"
                ).format(c=column, n=sql.Literal(NUMBER)),
                exists=present,
                number=column,
                number_type="float8",
            )
        if fld.kind == "string":
            # A bare integer in ORDER BY would mean a column position; cast it.
            category = sql.SQL("{}::int").format(sql.Literal(STRING))
            return _Value(category=category, exists=present, text=column, column=column)
        return _Value(category=sql.NULL, exists=sql.SQL("true"))  # tags: a list
    if fld.namespace == "params":
        v = sql.SQL("(r.params #> {})").format(p.path(fld.path))
        value = _json_reader(v, fld.path)
        if len(fld.path) > 1:
            # ``#>`` also indexes arrays ("0"); Python only walks mappings. Require
            # every parent on the path to be an object so both engines agree.
            parents = [
                sql.SQL("jsonb_typeof(r.params #> {}) = 'object'").format(p.path(fld.path[:i]))
                for i in range(1, len(fld.path))
            ]
            guarded = sql.SQL("(CASE WHEN {} THEN {} END)").format(
                sql.SQL(" AND ").join(parents), v
            )
            value = _json_reader(guarded, fld.path)
        return value
    mapping = sql.SQL("r.metrics" if fld.namespace == "metrics" else "d.metrics")
    key = p.add(index_text(fld.path[0]))
    return _json_reader(sql.SQL("({} -> {}::text)").format(mapping, key))


def _literal(value: Scalar, cat: int, p: _Params, number_type: str) -> sql.Composable:
    if cat == NUMBER:
        assert isinstance(value, int | float)
        if isinstance(value, float) and math.isinf(value):
            text = "Infinity" if value > 0 else "-Infinity"
        else:
            text = repr(value)
        return sql.SQL("{}::{}").format(p.add(text), sql.SQL(number_type))
    if cat == STRING:
        assert isinstance(value, str)
        return sql.SQL("({}::text{})").format(p.add(index_text(value)), _C)
    if cat == BOOL:
        return sql.SQL("{}::boolean").format(p.add(value))
    return sql.SQL("{}::timestamptz").format(p.add(value))


def _containment(path: tuple[str, ...], value: Scalar, p: _Params) -> sql.Composable:
    nested: Any = value.isoformat() if isinstance(value, dt.datetime) else value
    for key in reversed(path):
        nested = {key: nested}
    return sql.SQL("r.params @> {}").format(p.jsonb(nested))


def _equals(val: _Value, value: Scalar, p: _Params, *, index_hint: bool = True) -> sql.Composable:
    cat = category(value)
    assert cat is not None
    typed = val.typed(cat)
    if typed is None:
        return sql.SQL("false")
    if val.column is not None:
        # Never NULL and always text; under a deterministic collation, equal means
        # byte-equal, as under "C": the bare comparison is exact and sargable. Ids
        # and statuses hold no control character: their index form is themselves.
        assert isinstance(value, str)
        return sql.SQL("({} = {}::text)").format(val.column, p.add(index_text(value)))
    test = sql.SQL("COALESCE(({cat} = {c} AND {lhs} = {rhs}), false)").format(
        cat=val.category,
        c=sql.Literal(cat),
        lhs=typed,
        rhs=_literal(value, cat, p, val.number_type),
    )
    if index_hint and val.params_path is not None:
        # Equality implies containment (jsonb compares numbers by value, and stores
        # infinities as the same escaped marker), which the GIN index answers; it
        # stays outside COALESCE (it is never NULL) so the planner can use it.
        return sql.SQL("({} AND {})").format(_containment(val.params_path, value, p), test)
    return test


def _compile(expr: Expr, p: _Params) -> sql.Composable:
    if isinstance(expr, And | Or):
        joiner = sql.SQL(" AND " if isinstance(expr, And) else " OR ")
        return sql.SQL("({})").format(joiner.join(_compile(i, p) for i in expr.items))
    if isinstance(expr, Not):
        return sql.SQL("(NOT {})").format(_compile(expr.item, p))
    val = _field(expr.field, p)
    if isinstance(expr, Exists):
        return sql.SQL("COALESCE({}, false)").format(val.exists)
    if isinstance(expr, Contains):
        return _contains(val, expr.value, p)
    if isinstance(expr, In):
        found = sql.SQL("({})").format(
            sql.SQL(" OR ").join(_equals(val, v, p) for v in expr.values)
        )
        if expr.negated:
            return sql.SQL("({} IS NOT NULL AND NOT {})").format(val.category, found)
        return found
    return _compare(val, expr, p)


def _contains(val: _Value, value: Scalar, p: _Params) -> sql.Composable:
    if val.json is None:  # tags, a text[] column
        if not isinstance(value, str):
            return sql.SQL("false")
        return sql.SQL("COALESCE({}::text = ANY(r.tags), false)").format(p.add(index_text(value)))
    element = _json_reader(sql.SQL("e.value"))
    return sql.SQL(
        "COALESCE((jsonb_typeof({v}) = 'array' AND EXISTS "
        "(SELECT 1 FROM jsonb_array_elements({v}) AS e(value) WHERE {test})), false)"
    ).format(v=val.json, test=_equals(element, value, p, index_hint=False))


def _compare(val: _Value, expr: Compare, p: _Params) -> sql.Composable:
    if expr.op == "==":
        return _equals(val, expr.value, p)
    if expr.op == "!=":
        return sql.SQL("({} IS NOT NULL AND NOT {})").format(
            val.category, _equals(val, expr.value, p, index_hint=False)
        )
    cat = category(expr.value)
    assert cat is not None
    typed = val.typed(cat)
    if typed is None:
        return sql.SQL("false")
    return sql.SQL("COALESCE(({cat} = {c} AND {lhs} {op} {rhs}), false)").format(
        cat=val.category,
        c=sql.Literal(cat),
        lhs=typed,
        op=sql.SQL(_OPS[expr.op]),
        rhs=_literal(expr.value, cat, p, val.number_type),
    )


def _order(keys: Sequence[OrderBy], p: _Params) -> sql.Composable:
    parts: list[sql.Composable] = []
    for key in keys:
        val = _field(key.field, p)
        direction = sql.SQL(" DESC" if key.descending else " ASC")
        parts.append(sql.SQL("({} IS NULL) ASC").format(val.category))
        parts.append(sql.SQL("{}{}").format(val.category, direction))
        for cat in (BOOL, NUMBER, STRING, TIMESTAMP):
            typed = val.typed(cat)
            if typed is not None:
                parts.append(sql.SQL("{}{}").format(typed, direction))
    parts.append(sql.SQL("r.run_id{} ASC").format(_C))
    return sql.SQL(", ").join(parts)


def compile_select(
    query: Query,
    *,
    schema: str,
    experiment_id: str | None,
    columns: sql.Composable,
    among: sql.Composable | None = None,
) -> tuple[sql.Composed, dict[str, Any]]:
    """Compile ``query`` into one ``SELECT`` over the index, with its parameters.

    Args:
        query: The query.
        schema: The Postgres schema of the index tables.
        experiment_id: Restrict to this experiment (a scoped store), or ``None``.
        columns: What to select from ``runs r`` (e.g. ``sql.SQL("r.doc")``).
        among: A subquery of run ids to choose among (its own parameters must not
            be named ``p0``, ``p1``, ...: those are this function's).

    Returns:
        The statement and its named parameters.
    """
    p = _Params()
    conditions: list[sql.Composable] = []
    if among is not None:
        conditions.append(sql.SQL("r.run_id IN ({})").format(among))
    if experiment_id is not None:
        conditions.append(sql.SQL("r.experiment_id = {}").format(p.add(experiment_id)))
    if query.where is not None:
        conditions.append(_compile(query.where, p))
    join: sql.Composable = sql.SQL("")
    if query.uses_namespace("derived"):
        join = sql.SQL(" LEFT JOIN {} d ON d.run_id = r.run_id").format(
            sql.Identifier(schema, "derived")
        )
    where: sql.Composable = sql.SQL("")
    if conditions:
        where = sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(conditions))
    parts: list[sql.Composable] = [
        sql.SQL("SELECT {cols} FROM {runs} r").format(
            cols=columns, runs=sql.Identifier(schema, "runs")
        ),
        join,
        where,
        sql.SQL(" ORDER BY {}").format(_order(query.order_by, p)),
    ]
    if query.limit is not None:
        parts.append(sql.SQL(" LIMIT {}").format(p.add(query.limit)))
    if query.offset:
        parts.append(sql.SQL(" OFFSET {}").format(p.add(query.offset)))
    return sql.Composed(parts), p.values
