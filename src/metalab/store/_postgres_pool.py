"""Reaching the index's PostgreSQL: one connection pool, and what "unreachable" means.

A :class:`Database` owns one :class:`~psycopg_pool.ConnectionPool`, opened explicitly
(never in ``__init__``) and closed by :meth:`Database.close`. Only
:class:`psycopg.OperationalError` and :class:`psycopg_pool.PoolTimeout` mean "the
server cannot be reached"; :meth:`Database.run` re-raises them as
:class:`~metalab.errors.IndexUnavailableError` with the connection string redacted.
Every other database error is a bug and propagates. Before its pool, a Database
connects once directly, so that a mistake waiting cannot fix (no such database, user
or host, a refused password) is a :class:`~metalab.errors.ConfigError` at once, and an
unreachable server is reported within ``connect_timeout``, not the pool's timeout.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from metalab.errors import ConfigError, IndexUnavailableError
from metalab.store.locator import redact

__all__ = ["Connection", "Database"]

_log = logging.getLogger(__name__)

T = TypeVar("T")


class Connection(psycopg.Connection[TupleRow]):
    """A pooled connection, which keeps one cursor for the lookups by key.

    A new cursor per statement copies the connection's adapters: a tenth of a get by
    id. The pool serves a connection to one thread at a time, and a lookup's result
    (one row) is all the kept cursor holds between calls.
    """

    _lookup: psycopg.Cursor[TupleRow] | None = None

    def lookup_cursor(self) -> psycopg.Cursor[TupleRow]:
        """The connection's cursor for single-row lookups (binary results)."""
        cursor = self._lookup
        if cursor is None or cursor.closed:
            cursor = self._lookup = self.cursor(binary=True)
        return cursor


_RETRY_AFTER: Final = 5.0
"""Seconds during which calls skip a server that just failed to answer."""

_SYNC_HINT: Final = (
    "a sync brings the index up to date (store.sync_index(), or the command "
    "'metalab store sync-index LOCATOR')"
)


# What libpq and the server say when a connection can never succeed as configured,
# and what to tell the user instead (their text may quote the user or database name,
# which is fine, but never the password).
_PERMANENT: Final = (
    (re.compile(r'database "(?P<name>[^"]*)" does not exist'), "database {name!r} does not exist"),
    (re.compile(r'role "(?P<name>[^"]*)" does not exist'), "role {name!r} does not exist"),
    (re.compile(r"password authentication failed"), "the password was refused"),
    (re.compile(r"no password supplied"), "the server wants a password and none was given"),
    (re.compile(r"authentication failed"), "authentication failed"),
    (re.compile(r"no pg_hba\.conf entry"), "the server's pg_hba.conf refuses this connection"),
    (
        # Not "Temporary failure in name resolution": that one may pass.
        re.compile(
            r"(failed to resolve host|could not translate host name) ['\"](?P<name>[^'\"]*)"
            r"['\"].*(Name or service not known|nodename nor servname|No address associated)"
        ),
        "host {name!r} is not known (DNS)",
    ),
)


def _permanent_reason(message: str) -> str | None:
    """Why a failed connection can never succeed as configured, or ``None``."""
    for pattern, reason in _PERMANENT:
        found = pattern.search(message)
        if found is not None:
            return reason.format(**found.groupdict())
    return None


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
        self._last_reason = "no answer"

    def __repr__(self) -> str:
        return f"Database({self.redacted_conninfo!r}, name={self._name!r})"

    @property
    def redacted_conninfo(self) -> str:
        """The connection string with any password hidden."""
        return redact(self._conninfo)

    def open(self) -> None:
        """Open the pool and wait until it has ``min_size`` connections.

        Raises:
            ConfigError: libpq cannot parse the connection string, or the
                connection can never succeed as configured (no such database, user
                or host; a refused password).
            IndexUnavailableError: The server cannot be reached in time, or the
                database was closed.
        """
        with self._lock:
            if self._closed:
                raise IndexUnavailableError(f"{self._describe} is closed")
            if self._pool is not None:
                return
            self._check_conninfo()
            self._probe()
            pool: ConnectionPool[Connection] = ConnectionPool(
                self._conninfo,
                connection_class=Connection,
                open=False,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._timeout,
                name=self._name,
                kwargs={"autocommit": True, "connect_timeout": self._libpq_timeout()},
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
            raise ConfigError(
                f"{self._describe} cannot be used: libpq cannot parse its connection "
                "string (its message is not shown: it may quote the password); write "
                "the scheme as lower-case postgresql:// or postgres://, and percent-encode "
                "'/', '@', ':', '?', '#', '&', '=' and '%' in a user name, password or "
                "query value"
            ) from None

    def _probe(self) -> None:
        """Connect once, directly, before the pool does.

        A pool retries a failed connection in the background until its timeout, and
        logs each failure; one direct attempt tells at once (within
        ``connect_timeout``) whether waiting can help. A server that refuses or does
        not answer is unavailable; a database, user or host that does not exist, or
        a password that is refused, is a mistake in the locator.

        Raises:
            ConfigError: Waiting cannot help (see above).
            IndexUnavailableError: The server does not answer now.
        """
        try:
            conn = psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=self._libpq_timeout()
            )
        except psycopg.OperationalError as exc:
            reason = _permanent_reason(str(exc))
            if reason is not None:
                raise ConfigError(
                    f"{self._describe} cannot be used: {reason}; waiting will not help, "
                    "fix the locator"
                ) from None
            raise self._unavailable(exc) from exc
        conn.close()

    def _libpq_timeout(self) -> int:
        # libpq counts whole seconds and treats 1 as 2.
        return max(2, math.ceil(self._connect_timeout))

    def close(self) -> None:
        """Close the pool; calling it again does nothing."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _unavailable(self, exc: BaseException) -> IndexUnavailableError:
        self._down_until = time.monotonic() + _RETRY_AFTER
        # libpq's message runs over lines ("\tIs the server running ...?"): the first
        # says what happened.
        lines = redact(str(exc)).strip().splitlines()
        self._last_reason = lines[0].strip() if lines else type(exc).__name__
        return IndexUnavailableError(
            f"{self._describe} cannot be reached ({self._last_reason}); the files are "
            f"unaffected, and {_SYNC_HINT} once the server is back"
        )

    def _get_pool(self, *, force: bool) -> ConnectionPool[Connection]:
        if not force and time.monotonic() < self._down_until:
            raise IndexUnavailableError(
                f"{self._describe} did not answer a moment ago ({self._last_reason}); it "
                f"is retried after {_RETRY_AFTER:g} seconds, and {_SYNC_HINT} once the "
                "server is back"
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
                # getconn/putconn, not pool.connection(): its ``with conn`` block adds
                # nothing under autocommit (putconn rolls back a connection left in a
                # transaction) and costs a tenth of a get by id.
                conn = pool.getconn(timeout=self._timeout)
                try:
                    result = fn(conn)
                except psycopg.OperationalError:
                    if not (retry and attempt == 1 and conn.closed):
                        raise
                else:
                    self._down_until = 0.0
                    return result
                finally:
                    pool.putconn(conn)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                self._discard_pool(pool)
                raise self._unavailable(exc) from exc
            # The server restarted: drop every idle connection that broke with it.
            _log.info("a pooled connection of %r had broken; retrying once", self)
            pool.check()
        raise AssertionError("unreachable")  # pragma: no cover

    def connect(self) -> Connection:
        """A connection of its own, outside the pool, configured like the pooled ones.

        For work that runs beside a pooled connection's (a rebuild's second
        ``COPY``): taking it from the pool could wait for ever on a pool of one.
        Autocommit is on; the caller closes it.

        Raises:
            IndexUnavailableError: The server cannot be reached.
        """
        try:
            conn = Connection.connect(
                self._conninfo, autocommit=True, connect_timeout=self._libpq_timeout()
            )
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc
        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _discard_pool(self, pool: ConnectionPool[Connection]) -> None:
        """Close a pool that failed: the next attempt opens a fresh one.

        A pool that lost its server retries in the background with a growing
        delay; a new pool connects at once when the server is back.
        """
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.close(timeout=1.0)
