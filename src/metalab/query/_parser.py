"""The string form of queries: a tokenizer and a recursive-descent parser.

Grammar (keywords are case-insensitive)::

    query     := or_expr
    or_expr   := and_expr ("or" and_expr)*
    and_expr  := not_expr ("and" not_expr)*
    not_expr  := "not" not_expr | "(" or_expr ")" | predicate
    predicate := field ( ("=="|"="|"!="|"<"|"<="|">"|">=") literal
                       | ["not"] "in" "[" literal ("," literal)* "]"
                       | "contains" literal
                       | "exists" )
    field     := record_field | ("params"|"metrics"|"derived") ("." segment)+
    segment   := identifier | "quoted string"
    literal   := number | "inf" | "-inf" | "string" | 'string' | true | false
    order     := field ["asc"|"desc"] ("," field ["asc"|"desc"])*   (or "-field" for desc)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeVar, cast

from metalab.errors import QueryError, QuerySyntaxError
from metalab.query._ast import (
    RECORD_FIELDS,
    And,
    Compare,
    CompareOp,
    Contains,
    Exists,
    Expr,
    Field,
    In,
    Namespace,
    Not,
    Or,
    OrderBy,
    Scalar,
)

__all__ = ["order_from", "parse_order", "parse_where"]

TokenKind = Literal["ident", "string", "number", "op", "punct", "end"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: TokenKind
    text: str
    column: int  # 1-based

    def describe(self) -> str:
        if self.kind == "end":
            return "end of query"
        return f"{self.text!r}"


_TOKEN: Final = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|=|<|>)
  | (?P<punct>[()\[\],.\-])
    """,
    re.VERBOSE,
)
_ESCAPE: Final = re.compile(r"\\(.)")
_NAMESPACES: Final = ("params", "metrics", "derived")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos] in "\"'":
                raise QuerySyntaxError(text, pos + 1, "a closing quote", "an unterminated string")
            raise QuerySyntaxError(text, pos + 1, "a field, value or operator", repr(text[pos]))
        kind = match.lastgroup
        if kind != "space":
            tokens.append(_Token(cast("TokenKind", kind), match.group(), pos + 1))
        pos = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def fail(self, expected: str, token: _Token | None = None) -> QuerySyntaxError:
        token = token or self.token
        return QuerySyntaxError(self.text, token.column, expected, token.describe())

    def at_punct(self, chars: str) -> bool:
        """Whether the current token is one of the punctuation characters ``chars``."""
        token = self.tokens[self.pos]
        return token.kind == "punct" and token.text in chars

    def is_keyword(self, word: str) -> bool:
        return self.token.kind == "ident" and self.token.text.lower() == word

    def expect_end(self, expected: str) -> None:
        if self.token.kind != "end":
            raise self.fail(expected)

    def or_expr(self) -> Expr:
        items = [self.and_expr()]
        while self.is_keyword("or"):
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Expr:
        items = [self.not_expr()]
        while self.is_keyword("and"):
            self.advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Expr:
        if self.is_keyword("not"):
            self.advance()
            return Not(self.not_expr())
        if self.at_punct("("):
            self.advance()
            inner = self.or_expr()
            if not self.at_punct(")"):
                raise self.fail("')' or 'and' / 'or'")
            self.advance()
            return inner
        return self.predicate()

    def field(self) -> Field:
        start = self.token
        if start.kind != "ident":
            raise self.fail("a field such as params.lr, metrics.acc or status")
        self.advance()
        name = start.text
        if name in _NAMESPACES:
            segments: list[str] = []
            while self.at_punct("."):
                self.advance()
                segment = self.token
                if segment.kind == "ident":
                    segments.append(segment.text)
                elif segment.kind == "string":
                    segments.append(_unquote(segment.text))
                else:
                    raise self.fail(f"a key after '{name}.'")
                self.advance()
            if not segments:
                raise self.fail(f"'.' and a key after {name!r} (e.g. {name}.lr)")
            # metrics and derived are flat, so there dots belong to the key ("val.acc").
            path = tuple(segments) if name == "params" else (".".join(segments),)
            namespace = cast("Namespace", name)
            return _checked(self.text, start, lambda: Field(namespace, path))
        if name not in RECORD_FIELDS:
            raise QuerySyntaxError(
                self.text,
                start.column,
                "a field: params.<key>, metrics.<key>, derived.<key> or one of "
                + ", ".join(sorted(RECORD_FIELDS)),
                repr(name),
            )
        return Field("record", (name,))

    def literal(self) -> Scalar:
        token = self.token
        if token.kind == "number":
            self.advance()
            text = token.text
            if any(c in text for c in ".eE"):
                return float(text)
            return int(text)
        if token.kind == "string":
            self.advance()
            return _unquote(token.text)
        if token.kind == "ident":
            word = token.text.lower()
            if word in ("true", "false"):
                self.advance()
                return word == "true"
            if word == "inf":
                self.advance()
                return float("inf")
        if token.kind == "punct" and token.text == "-" and self._peek_is_inf():
            self.advance()
            self.advance()
            return float("-inf")
        raise self.fail('a value (number, "string", true, false or inf)')

    def _peek_is_inf(self) -> bool:
        nxt = self.tokens[self.pos + 1]
        return nxt.kind == "ident" and nxt.text.lower() == "inf"

    def literal_list(self) -> tuple[Scalar, ...]:
        if not self.at_punct("[("):
            raise self.fail("'[' starting a list of values")
        closing = "]" if self.advance().text == "[" else ")"
        values = [self.literal()]
        while self.at_punct(","):
            self.advance()
            values.append(self.literal())
        if not self.at_punct(closing):
            raise self.fail(f"',' or {closing!r}")
        self.advance()
        return tuple(values)

    def predicate(self) -> Expr:
        start = self.token
        fld = self.field()
        token = self.token
        if token.kind == "op":
            self.advance()
            op = "==" if token.text == "=" else token.text
            value_token = self.token
            value = self.literal()
            return _checked(
                self.text, value_token, lambda: Compare(fld, cast("CompareOp", op), value)
            )
        if self.is_keyword("in") or self.is_keyword("not"):
            negated = self.is_keyword("not")
            self.advance()
            if negated:
                if not self.is_keyword("in"):
                    raise self.fail("'in' after 'not'")
                self.advance()
            list_token = self.token
            values = self.literal_list()
            return _checked(self.text, list_token, lambda: In(fld, values, negated))
        if self.is_keyword("contains"):
            self.advance()
            value_token = self.token
            value = self.literal()
            return _checked(self.text, value_token, lambda: Contains(fld, value))
        if self.is_keyword("exists"):
            self.advance()
            return Exists(fld)
        raise self.fail(
            f"an operator after {fld.text()} (==, !=, <, <=, >, >=, in, not in, contains, exists)"
            if start is not token
            else "an operator"
        )


def _checked(text: str, token: _Token, make: Callable[[], T]) -> T:
    """Build an AST node, pointing a semantic error at the token it came from."""
    try:
        return make()
    except QuerySyntaxError:
        raise
    except QueryError as exc:
        caret = " " * (token.column - 1) + "^"
        raise QueryError(f"{exc} (column {token.column})\n    {text}\n    {caret}") from None


def _unquote(token: str) -> str:
    return _ESCAPE.sub(r"\1", token[1:-1])


def parse_where(text: str) -> Expr:
    """Parse the string form of a filter.

    >>> str(parse_where("params.lr < 0.01 and metrics.acc >= 0.9"))
    'params.lr < 0.01 and metrics.acc >= 0.9'

    Raises:
        QuerySyntaxError: The text is not a valid filter (the message shows the column).
        QueryError: The filter is well-formed but meaningless (e.g. ``status < 3``).
    """
    if not isinstance(text, str):
        raise QueryError(f"a query must be a string, got {type(text).__name__}")
    parser = _Parser(text)
    if parser.token.kind == "end":
        raise parser.fail("a filter such as params.lr < 0.01")
    expr = parser.or_expr()
    parser.expect_end("'and', 'or' or the end of the query")
    return expr


def parse_order(text: str) -> tuple[OrderBy, ...]:
    """Parse a sort specification: ``"metrics.acc desc, params.lr"`` or ``"-metrics.acc"``.

    Raises:
        QuerySyntaxError: The text is not a valid sort specification.
    """
    parser = _Parser(text)
    keys: list[OrderBy] = []
    while True:
        descending = False
        if parser.at_punct("-"):
            parser.advance()
            descending = True
        fld = parser.field()
        if parser.is_keyword("asc") or parser.is_keyword("desc"):
            descending = parser.advance().text.lower() == "desc"
        keys.append(OrderBy(fld, descending))
        if parser.at_punct(","):
            parser.advance()
            continue
        parser.expect_end("',', 'asc', 'desc' or the end of the sort order")
        return tuple(keys)


def order_from(items: Sequence[OrderBy | str] | OrderBy | str | None) -> tuple[OrderBy, ...]:
    """Normalise the ``order_by`` argument accepted by the public API."""
    if items is None:
        return ()
    if isinstance(items, OrderBy | str):
        items = [items]
    out: list[OrderBy] = []
    for item in items:
        out.extend((item,) if isinstance(item, OrderBy) else parse_order(item))
    return tuple(out)
