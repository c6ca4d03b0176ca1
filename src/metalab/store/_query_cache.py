"""The answers to recent queries over an experiment's files, served while they are unchanged.

A filtered, sorted top-k over the files decodes every record of the experiment (about
a second per 100,000 runs with every file cached). A FileStore keeps the run ids of
the last :data:`ENTRIES` answers of at most :data:`MAX_RUNS` runs in
``.query-cache``, under the same key as the frame cache
(:func:`~metalab.store._frame_cache.directory_key`: the state of ``runs/`` and
``derived/``), so asking again reads just those runs' records. A cache under another
key holds nothing for the directory as it is; the first answer after a change starts
a new one.

Each entry keeps its query in the query language's text form (which parses back to
the same query), so ``metalab store verify`` can ask each one again and compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from metalab.query import Query, parse_order, parse_where
from metalab.store._frame_cache import read_cached, write_cached

__all__ = [
    "ENTRIES",
    "MAX_RUNS",
    "QUERY_CACHE_NAME",
    "QueryText",
    "cached_answer",
    "cached_queries",
    "store_answer",
    "text_of",
]

QUERY_CACHE_NAME: Final = ".query-cache"
"""The cache's file name in an experiment directory (hidden: scans skip it)."""
ENTRIES: Final = 32
"""Answers kept; the oldest goes first."""
MAX_RUNS: Final = 1_000
"""Larger answers are not kept (reading that many records one by one gains little)."""

QueryText = tuple[str | None, tuple[str, ...], int | None, int]
"""A query as text: filter, sort keys, limit, offset."""


class _Entry(msgspec.Struct, array_like=True):
    where: str | None
    order_by: list[str]
    limit: int | None
    offset: int
    run_ids: list[str]

    def text(self) -> QueryText:
        return self.where, tuple(self.order_by), self.limit, self.offset


_ENTRIES: Final = msgspec.msgpack.Decoder(list[_Entry])
_ENCODER: Final = msgspec.msgpack.Encoder()


def text_of(query: Query) -> QueryText:
    """The text form of ``query``: equal queries, and only they, have equal texts."""
    where = None if query.where is None else str(query.where)
    return where, tuple(str(order) for order in query.order_by), query.limit, query.offset


def query_of(text: QueryText) -> Query:
    """The query a text form stands for."""
    where, order_by, limit, offset = text
    return Query(
        where=None if where is None else parse_where(where),
        order_by=parse_order(", ".join(order_by)) if order_by else (),
        limit=limit,
        offset=offset,
    )


def _entries(path: str, key: bytes) -> list[_Entry]:
    payload = read_cached(path, key)
    if payload is None:
        return []
    try:
        return _ENTRIES.decode(payload)
    except msgspec.DecodeError:
        return []


def cached_answer(path: str, key: bytes, query: Query) -> list[str] | None:
    """The run ids answering ``query`` cached at ``path`` under ``key``; ``None``: none."""
    text = text_of(query)
    return next((e.run_ids for e in _entries(path, key) if e.text() == text), None)


def store_answer(path: str, key: bytes, query: Query, run_ids: Sequence[str]) -> bool:
    """Keep the answer to ``query`` (if small enough); ``False`` if it was not kept.

    Two readers storing at once may each drop the other's new answer: it is asked
    again next time, never wrong.
    """
    if len(run_ids) > MAX_RUNS:
        return False
    text = text_of(query)
    kept = [e for e in _entries(path, key) if e.text() != text][-(ENTRIES - 1) :]
    where, order_by, limit, offset = text
    kept.append(_Entry(where, list(order_by), limit, offset, list(run_ids)))
    return write_cached(path, key, _ENCODER.encode(kept))


def cached_queries(path: str, key: bytes) -> list[tuple[Query, list[str]]]:
    """Every query cached at ``path`` under ``key``, with its answer."""
    return [(query_of(e.text()), e.run_ids) for e in _entries(path, key)]
