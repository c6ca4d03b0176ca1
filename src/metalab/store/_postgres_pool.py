"""Reaching the index's PostgreSQL: one connection pool, and what "unreachable" means.

A :class:`Database` owns one :class:`~psycopg_pool.ConnectionPool`, opened explicitly
(never in ``__init__``) and closed by :meth:`Database.close`. Only
:class:`psycopg.OperationalError` and :class:`psycopg_pool.PoolTimeout` mean "the
server cannot be reached"; :meth:`Database.run` re-raises them as
:class:`~metalab.errors.IndexUnavailableError` with the connection string redacted.
Every other database error is a bug and propagates.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from metalab.errors import IndexUnavailableError
from metalab.store.locator import redact

__all__ = ["Connection", "Database"]

_log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.Connection[TupleRow]

_RETRY_AFTER: Final = 5.0
"""Seconds during which calls skip a server that just failed to answer."""


class Database:
    """One PostgreSQL server behind a connection pool.

    Args:
        conninfo: The libpq connection string.
        name: The pool's name (shown by psycopg_pool's logs and stats).
        describe: What the database is, for messages (with the password hidden).
        min_size: Connections the pool keeps open.
        max_size: Connections the pool may open.
        connect_timeout: Seconds libpq may take to connect.
        pool_timeout: Seconds to wait for the pool to open or for a connection.
        configure: Called on every new connection (to register adapters).

    **Thread safety**: every method may be called from several threads; each call
    takes its own connection from the pool.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        name: str,
        describe: str,
        min_size: int,
        max_size: int,
        connect_timeout: float,
        pool_timeout: float,
        configure: Callable[[Connection], None],
    ) -> None:
        self._conninfo = conninfo
        self._name = name
        self._describe = describe
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._timeout = pool_timeout
        self._configure = configure
        self._pool: ConnectionPool[Connection] | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._down_until = 0.0

    def __repr__(self) -> str:
        return f"Database({self.redacted_conninfo!r}, name={self._name!r})"

    @property
    def redacted_conninfo(self) -> str:
        """The connection string with any password hidden."""
        return redact(self._conninfo)

    def open(self) -> None:
        """Open the pool and wait until it has ``min_size`` connections.

        Raises:
            IndexUnavailableError: The server cannot be reached in time, libpq
                cannot parse the connection string, or the database was closed.
        """
        with self._lock:
            if self._closed:
                raise IndexUnavailableError(f"{self._describe} is closed")
            if self._pool is not None:
                return
            self._check_conninfo()
            pool: ConnectionPool[Connection] = ConnectionPool(
                self._conninfo,
                open=False,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._timeout,
                name=self._name,
                kwargs={
                    "autocommit": True,
                    # libpq counts whole seconds and treats 1 as 2.
                    "connect_timeout": max(2, math.ceil(self._connect_timeout)),
                },
                configure=self._configure,
            )
            try:
                pool.open(wait=True, timeout=self._timeout)
            except PoolTimeout as exc:
                # wait() closes the pool on timeout; the next call opens a new one.
                raise self._unavailable(exc) from exc
            self._pool = pool

    def _check_conninfo(self) -> None:
        """Refuse a connection string libpq cannot parse, before the pool sees it.

        libpq's message then quotes the string, or the piece it stumbled on (often a
        password: ``POSTGRESQL://`` with upper-case letters is not a URI to libpq, so
        the whole string is quoted), and psycopg_pool logs it on every retry.
        """
        try:
            conninfo_to_dict(self._conninfo)
        except psycopg.ProgrammingError:
            raise IndexUnavailableError(
                f"{self._describe} cannot be used: libpq cannot parse its connection "
                "string (its message is not shown: it may quote the password); write "
                "the scheme as lower-case postgresql:// or postgres://, and percent-encode "
                "'/', '@', ':', '?', '#', '&', '=' and '%' in a user name, password or "
                "query value"
            ) from None

    def close(self) -> None:
        """Close the pool; calling it again does nothing."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _unavailable(self, exc: BaseException) -> IndexUnavailableError:
        self._down_until = time.monotonic() + _RETRY_AFTER
        return IndexUnavailableError(
            f"{self._describe} cannot be reached: {redact(str(exc)).strip()}; the files "
            "are unaffected, and store.sync_index() brings the index up to date once the "
            "server is back"
        )

    def _get_pool(self, *, force: bool) -> ConnectionPool[Connection]:
        if not force and time.monotonic() < self._down_until:
            raise IndexUnavailableError(
                f"{self._describe} did not answer a moment ago; it is retried after "
                f"{_RETRY_AFTER:g} seconds, and store.sync_index() brings it up to date "
                "once the server is back"
            )
        pool = self._pool
        if pool is None:
            self.open()
            pool = self._pool
            assert pool is not None
        return pool

    def run(self, fn: Callable[[Connection], T], *, force: bool = False, retry: bool = True) -> T:
        """Call ``fn`` with a pooled connection, mapping "unreachable" errors.

        A connection that broke while idle in the pool (the server restarted) is
        replaced and ``fn`` runs once more, so ``fn`` must be idempotent when
        ``retry`` is true.

        Args:
            fn: Runs the statements; autocommit is on, so it opens transactions
                itself when it needs one.
            force: Try even if the server failed to answer a moment ago (explicit
                maintenance: ``sync_index``, ``rebuild_index``).
            retry: Whether ``fn`` may run a second time after a broken connection.

        Raises:
            IndexUnavailableError: The server cannot be reached.
        """
        for attempt in (1, 2):
            pool = self._get_pool(force=force)
            try:
                with pool.connection(timeout=self._timeout) as conn:
                    try:
                        result = fn(conn)
                    except psycopg.OperationalError:
                        if not (retry and attempt == 1 and conn.closed):
                            raise
                    else:
                        self._down_until = 0.0
                        return result
            except (psycopg.OperationalError, PoolTimeout) as exc:
                self._discard_pool(pool)
                raise self._unavailable(exc) from exc
            # The server restarted: drop every idle connection that broke with it.
            _log.info("a pooled connection of %r had broken; retrying once", self)
            pool.check()
        raise AssertionError("unreachable")  # pragma: no cover

    def _discard_pool(self, pool: ConnectionPool[Connection]) -> None:
        """Close a pool that failed: the next attempt opens a fresh one.

        A pool that lost its server retries in the background with a growing
        delay; a new pool connects at once when the server is back.
        """
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.close(timeout=1.0)
