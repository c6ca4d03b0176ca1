"""The query AST, its typed builder ``F`` and its canonical text form."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, get_args

from metalab.errors import QueryError
from metalab.records import FINISHED_STATUSES, ensure_aware

__all__ = [
    "RECORD_FIELDS",
    "And",
    "Compare",
    "CompareOp",
    "Contains",
    "Exists",
    "Expr",
    "F",
    "Field",
    "FieldRef",
    "In",
    "Namespace",
    "Not",
    "Or",
    "OrderBy",
    "Query",
    "Scalar",
]

Namespace: TypeAlias = Literal["params", "metrics", "derived", "record"]
CompareOp: TypeAlias = Literal["==", "!=", "<", "<=", ">", ">="]
Scalar: TypeAlias = bool | int | float | str | dt.datetime
"""A literal a field can be compared with."""

_COMPARE_OPS: Final = frozenset(get_args(CompareOp))
_ORDERING_OPS: Final = frozenset({"<", "<=", ">", ">="})

#: Top-level record fields and the kind of value each holds.
RECORD_FIELDS: Final[dict[str, Literal["string", "number", "timestamp", "list"]]] = {
    "run_id": "string",
    "experiment_id": "string",
    "status": "string",
    "tags": "list",
    "started_at": "timestamp",
    "finished_at": "timestamp",
    "duration_ms": "number",
}
_STATUSES: Final = frozenset(FINISHED_STATUSES | {"running"})
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_KEYWORDS: Final = frozenset(
    {"and", "or", "not", "in", "contains", "exists", "true", "false", "inf", "asc", "desc"}
)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _segment_text(segment: str) -> str:
    if _IDENT.match(segment) and segment.lower() not in _KEYWORDS:
        return segment
    return _quote(segment)


@dataclass(frozen=True, slots=True)
class Field:
    """A queryable field: a record field, or a key of params / metrics / derived.

    Attributes:
        namespace: ``"record"`` for top-level fields (``status``, ``started_at``, ...),
            otherwise the mapping the key lives in.
        path: The key; nested params have one element per level.
    """

    namespace: Namespace
    path: tuple[str, ...]

    def __post_init__(self) -> None:
        parts: tuple[object, ...] = self.path
        if not parts or any(not isinstance(p, str) or not p for p in parts):
            raise QueryError(f"a field needs a non-empty key, got {self.path!r}")
        if self.namespace == "record":
            if len(self.path) != 1 or self.path[0] not in RECORD_FIELDS:
                raise QueryError(
                    f"unknown field {'.'.join(self.path)!r}; record fields are "
                    f"{', '.join(sorted(RECORD_FIELDS))}, and params.*, metrics.*, derived.*"
                )
        elif self.namespace != "params" and len(self.path) != 1:
            raise QueryError(f"{self.namespace} are flat: use one key, got {self.path!r}")

    @property
    def kind(self) -> Literal["string", "number", "timestamp", "list", "any"]:
        """The kind of value the field holds (``"any"`` for params/metrics/derived)."""
        return RECORD_FIELDS[self.path[0]] if self.namespace == "record" else "any"

    def text(self) -> str:
        """The field in query syntax, e.g. ``params.optimizer.lr`` or ``metrics."val acc"``."""
        if self.namespace == "record":
            return self.path[0]
        return ".".join([self.namespace, *(_segment_text(p) for p in self.path)])


def _check_literal(fld: Field, value: object, op: str) -> Scalar:
    """Validate (and normalise) a literal compared with ``fld``."""
    if isinstance(value, bool):
        if op in _ORDERING_OPS:
            raise QueryError(f"cannot order booleans: {fld.text()} {op} {value!r}")
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            raise QueryError(
                f"NaN never equals or orders against anything; to find NaN values of "
                f"{fld.text()!r} use 'exists' and inspect them"
            )
        if fld.kind in ("string", "timestamp"):
            raise QueryError(f"{fld.text()} holds {fld.kind}s, not numbers: got {value!r}")
        return value
    if isinstance(value, dt.datetime):
        if fld.kind not in ("timestamp", "any"):
            raise QueryError(f"{fld.text()} holds {fld.kind}s, not timestamps")
        try:
            return ensure_aware(value, f"timestamp compared with {fld.text()}")
        except ValueError as exc:
            raise QueryError(str(exc)) from None
    if isinstance(value, str):
        if fld.kind == "timestamp":
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                raise QueryError(
                    f"{fld.text()} is a timestamp; {value!r} is not ISO 8601 "
                    "(e.g. '2026-01-31T12:00:00+00:00')"
                ) from None
            if parsed.tzinfo is None:
                raise QueryError(
                    f"timestamp {value!r} compared with {fld.text()} has no time zone; "
                    "add one, e.g. 'Z' or '+00:00'"
                )
            return parsed.astimezone(dt.UTC)
        if fld.kind == "number":
            raise QueryError(f"{fld.text()} holds numbers, not strings: got {value!r}")
        if fld.path == ("status",) and fld.namespace == "record" and value not in _STATUSES:
            raise QueryError(
                f"unknown status {value!r}; statuses are {', '.join(sorted(_STATUSES))}"
            )
        return value
    raise QueryError(
        f"cannot compare {fld.text()} with {type(value).__name__} {value!r}; "
        "use a bool, int, float, str or timezone-aware datetime"
    )


def _literal_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return _quote(value.isoformat())
    return _quote(value)


class _ExprOps:
    """Boolean combinators shared by every expression node."""

    __slots__ = ()

    def __and__(self, other: Expr) -> And:
        return And.of(self, other)  # type: ignore[arg-type]

    def __or__(self, other: Expr) -> Or:
        return Or.of(self, other)  # type: ignore[arg-type]

    def __invert__(self) -> Not:
        return Not(self)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Compare(_ExprOps):
    """``field <op> value``."""

    field: Field
    op: CompareOp
    value: Scalar

    def __post_init__(self) -> None:
        if self.op not in _COMPARE_OPS:
            raise QueryError(f"unknown comparison {self.op!r}; use one of {sorted(_COMPARE_OPS)}")
        object.__setattr__(self, "value", _check_literal(self.field, self.value, self.op))

    def __str__(self) -> str:
        return f"{self.field.text()} {self.op} {_literal_text(self.value)}"


@dataclass(frozen=True, slots=True)
class In(_ExprOps):
    """``field in [values]`` (or ``not in`` when ``negated``)."""

    field: Field
    values: tuple[Scalar, ...]
    negated: bool = False

    def __post_init__(self) -> None:
        if not self.values:
            raise QueryError(f"'in' needs at least one value for {self.field.text()}")
        checked = tuple(_check_literal(self.field, v, "==") for v in self.values)
        object.__setattr__(self, "values", checked)

    def __str__(self) -> str:
        items = ", ".join(_literal_text(v) for v in self.values)
        return f"{self.field.text()} {'not in' if self.negated else 'in'} [{items}]"


@dataclass(frozen=True, slots=True)
class Contains(_ExprOps):
    """``field contains value``: a list field (``tags``, a list param) holds ``value``."""

    field: Field
    value: Scalar

    def __post_init__(self) -> None:
        if self.field.kind not in ("list", "any"):
            raise QueryError(f"'contains' needs a list field such as tags, not {self.field.text()}")
        object.__setattr__(self, "value", _check_literal(_ANY_FIELD, self.value, "=="))

    def __str__(self) -> str:
        return f"{self.field.text()} contains {_literal_text(self.value)}"


@dataclass(frozen=True, slots=True)
class Exists(_ExprOps):
    """``field exists``: the key is present with a non-null value."""

    field: Field

    def __str__(self) -> str:
        return f"{self.field.text()} exists"


def _child_text(expr: Expr) -> str:
    return f"({expr})" if isinstance(expr, And | Or) else str(expr)


@dataclass(frozen=True, slots=True)
class And(_ExprOps):
    """All of ``items`` hold."""

    items: tuple[Expr, ...]

    @classmethod
    def of(cls, *items: Expr) -> And:
        """Combine, flattening direct ``And`` operands built with ``&``."""
        flat: list[Expr] = []
        for item in items:
            flat.extend(item.items if isinstance(item, And) else (item,))
        return cls(tuple(flat))

    def __str__(self) -> str:
        return " and ".join(_child_text(i) for i in self.items)


@dataclass(frozen=True, slots=True)
class Or(_ExprOps):
    """At least one of ``items`` holds."""

    items: tuple[Expr, ...]

    @classmethod
    def of(cls, *items: Expr) -> Or:
        """Combine, flattening direct ``Or`` operands built with ``|``."""
        flat: list[Expr] = []
        for item in items:
            flat.extend(item.items if isinstance(item, Or) else (item,))
        return cls(tuple(flat))

    def __str__(self) -> str:
        return " or ".join(_child_text(i) for i in self.items)


@dataclass(frozen=True, slots=True)
class Not(_ExprOps):
    """``item`` does not hold."""

    item: Expr

    def __str__(self) -> str:
        inner = self.item
        return f"not ({inner})" if isinstance(inner, And | Or | Not) else f"not {inner}"


Expr: TypeAlias = Compare | In | Contains | Exists | And | Or | Not
"""A boolean query expression."""

_ANY_FIELD: Final = Field("params", ("_",))


class FieldRef:
    """A field in the typed builder; comparisons build expressions.

    >>> str((F.params["lr"] < 0.01) & (F.metrics["acc"] >= 0.9))
    'params.lr < 0.01 and metrics.acc >= 0.9'
    """

    __slots__ = ("field",)

    def __init__(self, field: Field) -> None:
        self.field = field

    def __getitem__(self, key: str) -> FieldRef:
        """A nested key of a params mapping: ``F.params["opt"]["lr"]``."""
        return FieldRef(Field(self.field.namespace, (*self.field.path, key)))

    def __eq__(self, value: Scalar) -> Compare:  # type: ignore[override]
        return Compare(self.field, "==", value)

    def __ne__(self, value: Scalar) -> Compare:  # type: ignore[override]
        return Compare(self.field, "!=", value)

    def __lt__(self, value: Scalar) -> Compare:
        return Compare(self.field, "<", value)

    def __le__(self, value: Scalar) -> Compare:
        return Compare(self.field, "<=", value)

    def __gt__(self, value: Scalar) -> Compare:
        return Compare(self.field, ">", value)

    def __ge__(self, value: Scalar) -> Compare:
        return Compare(self.field, ">=", value)

    __hash__ = None  # type: ignore[assignment]

    def is_in(self, values: Iterable[Scalar]) -> In:
        """``field in [values]``."""
        return In(self.field, tuple(values))

    def not_in(self, values: Iterable[Scalar]) -> In:
        """``field not in [values]``."""
        return In(self.field, tuple(values), negated=True)

    def contains(self, value: Scalar) -> Contains:
        """``field contains value`` (for ``tags`` and list params)."""
        return Contains(self.field, value)

    def exists(self) -> Exists:
        """``field exists``."""
        return Exists(self.field)

    def asc(self) -> OrderBy:
        """Sort ascending by this field."""
        return OrderBy(self.field)

    def desc(self) -> OrderBy:
        """Sort descending by this field."""
        return OrderBy(self.field, descending=True)


class _Mapping:
    __slots__ = ("_namespace",)

    def __init__(self, namespace: Namespace) -> None:
        self._namespace = namespace

    def __getitem__(self, key: str) -> FieldRef:
        return FieldRef(Field(self._namespace, (key,)))


class _FieldBuilder:
    """Entry point of the typed builder: ``F.params["lr"]``, ``F.status``, ..."""

    __slots__ = ()
    params: Final = _Mapping("params")
    metrics: Final = _Mapping("metrics")
    derived: Final = _Mapping("derived")
    run_id: Final = FieldRef(Field("record", ("run_id",)))
    experiment_id: Final = FieldRef(Field("record", ("experiment_id",)))
    status: Final = FieldRef(Field("record", ("status",)))
    tags: Final = FieldRef(Field("record", ("tags",)))
    started_at: Final = FieldRef(Field("record", ("started_at",)))
    finished_at: Final = FieldRef(Field("record", ("finished_at",)))
    duration_ms: Final = FieldRef(Field("record", ("duration_ms",)))


F: Final = _FieldBuilder()
"""Build queries with Python operators: ``(F.params["lr"] < 0.01) & (F.status == "success")``."""


@dataclass(frozen=True, slots=True)
class OrderBy:
    """Sort by ``field``; values that are missing (or NaN) always sort last."""

    field: Field
    descending: bool = False

    def __str__(self) -> str:
        return f"{self.field.text()} {'desc' if self.descending else 'asc'}"


@dataclass(frozen=True, slots=True)
class Query:
    """A filter, an order and a window over run records.

    Attributes:
        where: The filter, or ``None`` for every run.
        order_by: Sort keys, most significant first; ties are broken by ``run_id``.
        limit: At most this many runs (``None``: all).
        offset: Skip this many runs first.
    """

    where: Expr | None = None
    order_by: tuple[OrderBy, ...] = ()
    limit: int | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        limit: object = self.limit
        offset: object = self.offset
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise QueryError(f"limit must be a non-negative int or None, got {limit!r}")
        if not isinstance(offset, int) or offset < 0:
            raise QueryError(f"offset must be a non-negative int, got {self.offset!r}")

    def fields(self) -> set[Field]:
        """Every field the query reads (filter and order)."""
        found = {o.field for o in self.order_by}
        if self.where is not None:
            stack: list[Expr] = [self.where]
            while stack:
                node = stack.pop()
                if isinstance(node, And | Or):
                    stack.extend(node.items)
                elif isinstance(node, Not):
                    stack.append(node.item)
                else:
                    found.add(node.field)
        return found

    def uses_namespace(self, namespace: Namespace) -> bool:
        """Whether any field of the query lives in ``namespace``."""
        return any(f.namespace == namespace for f in self.fields())
