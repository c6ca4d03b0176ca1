"""PostgresIndex: the query index of a PostgresStore, on psycopg 3 and psycopg_pool.

The index only ever holds what can be rebuilt from the files. Each document is kept
as its exact codec encoding (``doc``, read back losslessly and decoded by the fast
path of the codec); the columns and ``jsonb`` values that queries filter on are
extracted beside it. One :class:`~psycopg_pool.ConnectionPool` per index is opened
explicitly by :meth:`PostgresIndex.open` and released by :meth:`PostgresIndex.close`;
nothing touches the network in ``__init__``.

All SQL is composed with :mod:`psycopg.sql`. Only :class:`psycopg.OperationalError`
and :class:`psycopg_pool.PoolTimeout` mean "the index cannot be reached"; they are
re-raised as :class:`~metalab.errors.IndexUnavailableError` with the connection
string redacted. Every other database error is a bug and propagates.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Self, TypeVar

import psycopg
from psycopg import sql
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import Format
from psycopg.rows import TupleRow, class_row
from psycopg.types import TypeInfo
from psycopg_pool import ConnectionPool, PoolTimeout

from metalab.errors import ConfigError, IndexUnavailableError
from metalab.query import FieldInfo, Query
from metalab.query._catalog import CATALOG_SAMPLE_RUNS, CATALOG_SAMPLES
from metalab.query._sql import compile_select
from metalab.store import _postgres_schema as ddl
from metalab.store._postgres_schema import DerivedRow, JsonbBinary, ManifestRow, RunRow
from metalab.store._postgres_sql import CopyIn, statements
from metalab.store.abc import ProgressCallback
from metalab.store.locator import redact

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DerivedRow",
    "IndexState",
    "JsonbBinary",
    "ManifestRow",
    "PostgresIndex",
    "RunRow",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.Connection[TupleRow]

DEFAULT_BATCH_SIZE: Final = 5_000
"""Rows per ``COPY`` + merge transaction of the bulk paths."""

_RETRY_AFTER: Final = 5.0
"""Seconds during which reads and writes skip an index that just failed to answer."""

_RUN_AND_DOC: Final = sql.SQL("r.run_id, r.doc")
_PROGRESS_EVERY: Final = 1_000
_JSONB_OID: Final = 3802


class _JsonbBinaryDumper(Dumper):
    format = Format.BINARY
    oid = _JSONB_OID

    def dump(self, obj: JsonbBinary) -> Buffer:
        return obj


@dataclass(frozen=True)
class IndexState:
    """What :meth:`PostgresIndex.ensure_schema` found or did.

    Attributes:
        created: The index tables were created (or re-created for a new layout
            version) by this call.
        needs_sync: Experiments (or ``None`` for the whole index) that were found
            in the files when the tables were created and are not indexed yet.
        file_root: The file root the index was created for.
    """

    created: bool
    needs_sync: frozenset[str | None]
    file_root: str


class PostgresIndex:
    """The Postgres tables that index a file store, behind one connection pool.

    Args:
        conninfo: The libpq connection string (without metalab's parameters).
        schema: The Postgres schema of the tables.
        min_size: Connections the pool keeps open.
        max_size: Connections the pool may open.
        connect_timeout: Seconds libpq may take to connect.
        pool_timeout: Seconds to wait for the pool to open or for a connection.
        file_root: The file root the index covers (recorded when tables are created).
        pending_on_create: Called under the schema lock when the tables are
            created: the experiments that already have files and so need indexing
            (``None`` standing for the whole index).

    **Thread safety**: every method may be called from several threads; each call
    takes its own connection from the pool.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "public",
        min_size: int = 1,
        max_size: int = 4,
        connect_timeout: float = 10.0,
        pool_timeout: float = 10.0,
        file_root: str = "",
        pending_on_create: Callable[[], frozenset[str | None]] = frozenset,
    ) -> None:
        self._conninfo = conninfo
        self._file_root = file_root
        self._pending_on_create = pending_on_create
        self._schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._timeout = pool_timeout
        self._pool: ConnectionPool[Connection] | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._schema_ready = False
        self._down_until = 0.0
        self._sql = statements(schema)

    def __repr__(self) -> str:
        return f"PostgresIndex({redact(self._conninfo)!r}, schema={self._schema!r})"

    @property
    def schema(self) -> str:
        """The Postgres schema holding the tables."""
        return self._schema

    @property
    def redacted_conninfo(self) -> str:
        """The connection string with any password hidden."""
        return redact(self._conninfo)

    def open(self) -> None:
        """Open the connection pool and wait until it has ``min_size`` connections.

        Raises:
            IndexUnavailableError: The server cannot be reached in time.
        """
        with self._lock:
            if self._closed:
                raise IndexUnavailableError(f"{self!r} is closed")
            if self._pool is not None:
                return
            pool: ConnectionPool[Connection] = ConnectionPool(
                self._conninfo,
                open=False,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._timeout,
                name=f"metalab:{self._schema}",
                kwargs={
                    "autocommit": True,
                    # libpq counts whole seconds and treats 1 as 2.
                    "connect_timeout": max(2, math.ceil(self._connect_timeout)),
                },
                configure=_configure,
            )
            try:
                pool.open(wait=True, timeout=self._timeout)
            except PoolTimeout as exc:
                # wait() closes the pool on timeout; the next call opens a new one.
                raise self._unavailable(exc) from exc
            self._pool = pool

    def close(self) -> None:
        """Close the pool; calling it again does nothing."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _unavailable(self, exc: BaseException) -> IndexUnavailableError:
        self._down_until = time.monotonic() + _RETRY_AFTER
        return IndexUnavailableError(
            f"the postgres index at {self.redacted_conninfo!r} (schema {self._schema!r}) "
            f"cannot be reached: {redact(str(exc)).strip()}; the files are unaffected, "
            "and store.sync_index() brings the index up to date once the server is back"
        )

    def _get_pool(self, *, force: bool) -> ConnectionPool[Connection]:
        if not force and time.monotonic() < self._down_until:
            raise IndexUnavailableError(
                f"the postgres index at {self.redacted_conninfo!r} did not answer a moment "
                f"ago; it is retried after {_RETRY_AFTER:g} seconds, and store.sync_index() "
                "brings it up to date once the server is back"
            )
        pool = self._pool
        if pool is None:
            self.open()
            pool = self._pool
            assert pool is not None
        return pool

    def run(
        self,
        fn: Callable[[Connection], T],
        *,
        force: bool = False,
        retry: bool = True,
        ensure: bool = True,
    ) -> T:
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
            ensure: Create the tables first if they were never checked (the pool
                was opened while the server was down).

        Raises:
            IndexUnavailableError: The server cannot be reached.
        """
        if ensure and not self._schema_ready:
            self.ensure_schema(force=force)
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

    def ensure_schema(self, *, force: bool = True) -> IndexState:
        """Create the schema and tables if missing; idempotent and safe to race.

        Runs under a transaction-level advisory lock, so many processes starting at
        once create the tables exactly once. An index of another layout version is
        dropped and created afresh (it is rebuilt from the files, never migrated).

        Args:
            force: Try even if the server failed to answer a moment ago.

        Raises:
            IndexUnavailableError: The server cannot be reached.
            ConfigError: The database does not use UTF-8.
        """
        q = self._sql

        def work(conn: Connection) -> IndexState:
            encoding = conn.execute(q.meta.server_encoding).fetchone()
            if encoding is None or encoding[0] != "UTF8":
                raise ConfigError(
                    f"the database at {self.redacted_conninfo!r} uses encoding "
                    f"{encoding[0] if encoding else None!r}; the metalab index needs UTF8 "
                    "(CREATE DATABASE ... ENCODING 'UTF8')"
                )
            current = self._read_meta(conn)
            if current is not None and current[0] == ddl.SCHEMA_VERSION:
                return self._state(conn, created=False, root=current[1])
            with conn.transaction():
                conn.execute(q.meta.lock, (ddl.lock_key(self._schema),))
                exists = conn.execute(q.meta.schema_exists, (self._schema,)).fetchone()
                if exists is None or exists[0] is None:
                    conn.execute(q.meta.create_schema)
                current = self._read_meta(conn)
                if current is not None and current[0] == ddl.SCHEMA_VERSION:
                    return self._state(conn, created=False, root=current[1])
                if current is not None:
                    _log.warning(
                        "index schema %r has layout version %s, this metalab uses %s; "
                        "dropping it (rebuild_index() or sync_index() restores it)",
                        self._schema,
                        current[0],
                        ddl.SCHEMA_VERSION,
                    )
                for statement in ddl.drop_tables(self._schema, meta=True):
                    conn.execute(statement)
                self._create(conn, self._pending_on_create())
                return self._state(conn, created=True, root=self._file_root)

        state = self.run(work, force=force, ensure=False)
        self._schema_ready = True
        return state

    def _read_meta(self, conn: Connection) -> tuple[int, str] | None:
        found = conn.execute(self._sql.meta.exists, (self._qualified(ddl.META_TABLE),)).fetchone()
        if found is None or found[0] is None:
            return None
        row = conn.execute(self._sql.meta.read).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def _qualified(self, name: str) -> str:
        return sql.Identifier(self._schema, name).as_string(None)

    def _create(self, conn: Connection, pending: frozenset[str | None]) -> None:
        q = self._sql
        conn.execute(ddl.create_meta_table(self._schema))
        conn.execute(q.meta.insert, (ddl.SCHEMA_VERSION, self._file_root, None in pending))
        for statement in ddl.create_tables(self._schema):
            conn.execute(statement)
        for statement in ddl.create_indexes(self._schema, trigram=_has_trigram(conn)):
            conn.execute(statement)
        experiments = sorted(e for e in pending if e is not None)
        if experiments:
            conn.execute(q.experiments.insert_pending, (experiments,))

    def _state(self, conn: Connection, *, created: bool, root: str) -> IndexState:
        pending: set[str | None] = set()
        row = conn.execute(self._sql.meta.read_needs_sync).fetchone()
        if row is not None and row[0]:
            pending.add(None)
        pending.update(r[0] for r in conn.execute(self._sql.experiments.pending))
        return IndexState(created=created, needs_sync=frozenset(pending), file_root=root)

    def put_run(self, row: RunRow) -> None:
        """Upsert one run (one statement); a ``running`` row never replaces a finished one."""
        self.run(lambda conn: conn.execute(self._sql.runs.upsert, row._asdict()))

    def put_runs(self, rows: Iterable[RunRow], *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        """Upsert many runs: binary ``COPY`` into a staging table, one merge per batch.

        Within a batch, several rows of one run merge as if put one by one: the
        last finished row wins, else the last row.

        Returns:
            How many rows were given.
        """
        count = 0
        for batch in _batches(rows, batch_size):
            self.run(functools.partial(self._merge_runs, rows=batch))
            count += len(batch)
        return count

    def _merge_runs(self, conn: Connection, rows: Sequence[RunRow]) -> None:
        q = self._sql
        with conn.transaction():
            conn.execute(q.runs.create_stage)
            with conn.cursor().copy(q.runs.copy_stage.statement) as copy:
                copy.set_types(q.runs.copy_stage.types)
                for ordinal, row in enumerate(rows):
                    copy.write_row((*row, ordinal))
            conn.execute(q.runs.merge_stage)
            conn.execute(q.runs.touch_stage_experiments)

    def get_run_doc(self, run_id: str, experiment_id: str | None) -> bytes | None:
        """Return the encoded record of a run (of one experiment, if given), or ``None``."""
        return self._get_doc(self._sql.runs.get, self._sql.runs.get_in, run_id, experiment_id)

    def _get_doc(
        self, any_experiment: bytes, one_experiment: bytes, run_id: str, experiment_id: str | None
    ) -> bytes | None:
        """Run a ``SELECT doc`` of one run, restricted to one experiment if given."""

        def work(conn: Connection) -> bytes | None:
            if experiment_id is None:
                cur = conn.execute(any_experiment, (run_id,), binary=True)
            else:
                cur = conn.execute(one_experiment, (run_id, experiment_id), binary=True)
            row = cur.fetchone()
            return None if row is None else row[0]

        return self.run(work)

    def run_exists(self, run_id: str, experiment_id: str | None) -> bool:
        """Return whether a run (of one experiment, if given) is indexed."""

        def work(conn: Connection) -> bool:
            if experiment_id is None:
                row = conn.execute(self._sql.runs.exists, (run_id,)).fetchone()
            else:
                row = conn.execute(self._sql.runs.exists_in, (run_id, experiment_id)).fetchone()
            return row is not None

        return self.run(work)

    def list_run_docs(self, experiment_id: str | None) -> list[tuple[str, bytes]]:
        """Return ``(run_id, encoded record)`` of every run (of one experiment, if given)."""
        return self._list_docs(self._sql.runs.list_all, self._sql.runs.list_in, experiment_id)

    def _list_docs(
        self, every: bytes, one_experiment: bytes, experiment_id: str | None
    ) -> list[tuple[str, bytes]]:
        """Run a ``SELECT run_id, doc`` listing, of one experiment if given."""

        def work(conn: Connection) -> list[tuple[str, bytes]]:
            if experiment_id is None:
                cur = conn.execute(every, binary=True)
            else:
                cur = conn.execute(one_experiment, (experiment_id,), binary=True)
            return [(row[0], row[1]) for row in cur.fetchall()]

        return self.run(work)

    def delete_run(self, run_id: str, experiment_id: str | None) -> None:
        """Remove a run and its derived metrics from the index."""

        def work(conn: Connection) -> None:
            with conn.transaction():
                params = {"r": run_id, "e": experiment_id}
                conn.execute(self._sql.runs.delete, params)
                conn.execute(self._sql.derived.delete, params)

        self.run(work)

    def put_derived(self, row: DerivedRow) -> None:
        """Upsert the derived metrics of a run.

        Without an experiment, the row takes the experiment of the indexed run.
        """
        self.run(lambda conn: conn.execute(self._sql.derived.upsert, row._asdict()))

    def get_derived_doc(self, run_id: str, experiment_id: str | None) -> bytes | None:
        """Return the encoded derived metrics of a run, or ``None``."""
        return self._get_doc(self._sql.derived.get, self._sql.derived.get_in, run_id, experiment_id)

    def list_derived_docs(self, experiment_id: str | None) -> list[tuple[str, bytes]]:
        """Return ``(run_id, encoded derived metrics)`` of one experiment (or all), in one query."""
        return self._list_docs(self._sql.derived.list_all, self._sql.derived.list_in, experiment_id)

    def put_manifest(self, row: ManifestRow) -> None:
        """Upsert one experiment manifest (keyed by experiment and file name)."""

        def work(conn: Connection) -> None:
            with conn.transaction():
                conn.execute(self._sql.manifests.upsert, row._asdict())
                conn.execute(self._sql.experiments.touch, (row.experiment_id,))

        self.run(work)

    def list_manifest_docs(self, experiment_id: str | None) -> list[bytes]:
        """Return encoded manifests (of one experiment, if given), oldest first."""

        def work(conn: Connection) -> list[bytes]:
            cur = conn.cursor(binary=True)
            if experiment_id is None:
                cur.execute(self._sql.manifests.list_all)
            else:
                cur.execute(self._sql.manifests.list_in, (experiment_id,))
            return [row[0] for row in cur.fetchall()]

        return self.run(work)

    def list_experiments(self, experiment_id: str | None = None) -> list[str]:
        """Return the indexed experiments (only ``experiment_id``, if given), sorted."""

        def work(conn: Connection) -> list[str]:
            if experiment_id is None:
                return [r[0] for r in conn.execute(self._sql.experiments.list_all)]
            return [r[0] for r in conn.execute(self._sql.experiments.listed, (experiment_id,))]

        return self.run(work)

    def query_run_docs(self, query: Query, experiment_id: str | None) -> list[tuple[str, bytes]]:
        """Return ``(run_id, encoded record)`` of the runs matching ``query``, in its order.

        The query is compiled to one ``SELECT`` (:mod:`metalab.query._sql`), with every
        value passed as a parameter.
        """
        statement, params = compile_select(
            query, schema=self._schema, experiment_id=experiment_id, columns=_RUN_AND_DOC
        )

        def work(conn: Connection) -> list[tuple[str, bytes]]:
            cur = conn.execute(statement, params, binary=True)
            return [(row[0], row[1]) for row in cur.fetchall()]

        return self.run(work)

    def field_catalog(self, experiment_id: str) -> list[FieldInfo]:
        """Return the field catalog of an experiment, refreshing it if writes changed it.

        Samples are the smallest distinct values, in the order of ``jsonb`` values,
        among the experiment's first :data:`~metalab.query._catalog.CATALOG_SAMPLE_RUNS`
        runs by run id; non-finite floats in their escaped form (``{"$float": "NaN"}``).
        """
        q = self._sql

        def work(conn: Connection) -> list[FieldInfo]:
            with conn.transaction():
                dirty = conn.execute(q.catalog.lock, (experiment_id,)).fetchone()
                if dirty is not None and dirty[0]:
                    conn.execute(q.catalog.delete, (experiment_id,))
                    conn.execute(
                        q.catalog.refresh,
                        {"e": experiment_id, "n": CATALOG_SAMPLES, "k": CATALOG_SAMPLE_RUNS},
                    )
                    conn.execute(q.catalog.clean, (experiment_id,))
            cur = conn.cursor(row_factory=class_row(FieldInfo))
            return cur.execute(q.catalog.read, (experiment_id,)).fetchall()

        return self.run(work)

    def file_states(
        self, kind: str, experiment_id: str | None
    ) -> dict[str, tuple[int | None, int | None]]:
        """Return ``key -> (file mtime ns, file size)`` of indexed documents.

        Args:
            kind: ``"runs"`` and ``"derived"`` (keyed by run id) or ``"manifests"``
                (keyed by file name).
            experiment_id: Only this experiment's documents; ``None`` for all.
        """
        query = self._sql.file_states[kind][experiment_id is not None]

        def work(conn: Connection) -> dict[str, tuple[int | None, int | None]]:
            cur = conn.execute(query, (experiment_id,) if experiment_id is not None else None)
            return {r[0]: (r[1], r[2]) for r in cur}

        return self.run(work, force=True)

    def apply_sync(
        self,
        *,
        runs: Iterable[RunRow],
        derived: Iterable[DerivedRow],
        manifests: Iterable[ManifestRow],
        removed: dict[str, list[tuple[str, str | None]]],
        scope: str | None,
        experiments: Iterable[str],
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """Write what a sync found changed, and forget what it found deleted.

        Args:
            runs: Changed or new runs.
            derived: Changed or new derived metrics.
            manifests: Changed or new manifests.
            removed: Per kind, ``(key, experiment)`` of documents whose file is gone.
            scope: The experiment synced, or ``None`` for the whole index (whose
                "needs sync" mark is then cleared).
            experiments: The experiments present in the files (listed afterwards).
            batch_size: Rows per ``COPY`` + merge transaction.
        """
        for batch in _batches(runs, batch_size):
            self.run(functools.partial(self._merge_runs, rows=batch), force=True)
        for dbatch in _batches(derived, batch_size):
            self.run(functools.partial(self._merge_derived, rows=dbatch), force=True)
        for mbatch in _batches(manifests, batch_size):
            self.run(functools.partial(self._merge_manifests, rows=mbatch), force=True)
        q = self._sql
        listed = sorted(set(experiments))

        def finish(conn: Connection) -> None:
            with conn.transaction():
                for kind, query in (
                    ("runs", q.runs.delete_by_key),
                    ("derived", q.derived.delete_by_key),
                    ("manifests", q.manifests.delete_by_key),
                ):
                    keys = removed.get(kind, [])
                    if keys:
                        conn.execute(query, ([k for k, _ in keys], [e for _, e in keys]))
                conn.execute(q.experiments.touch_many, (listed,))
                if scope is None:
                    conn.execute(q.experiments.forget_unlisted, (listed,))
                    for statement in q.meta.mark_all_synced:
                        conn.execute(statement)
                else:
                    conn.execute(q.experiments.mark_synced, (scope,))

        self.run(finish, force=True)

    def _merge_derived(self, conn: Connection, rows: Sequence[DerivedRow]) -> None:
        q = self._sql
        with conn.transaction():
            conn.execute(q.derived.create_stage)
            with conn.cursor().copy(q.derived.copy_stage.statement) as copy:
                copy.set_types(q.derived.copy_stage.types)
                for row in rows:
                    copy.write_row(row)
            conn.execute(q.derived.merge_stage)

    def _merge_manifests(self, conn: Connection, rows: Sequence[ManifestRow]) -> None:
        q = self._sql
        with conn.transaction():
            conn.execute(q.manifests.create_stage)
            with conn.cursor().copy(q.manifests.copy_stage.statement) as copy:
                copy.set_types(q.manifests.copy_stage.types)
                for row in rows:
                    copy.write_row(row)
            conn.execute(q.manifests.merge_stage)
            conn.execute(q.manifests.touch_stage_experiments)

    def rebuild(
        self,
        *,
        runs: Iterable[RunRow],
        derived: Iterable[DerivedRow],
        manifests: Iterable[ManifestRow],
        experiments: Callable[[], Iterable[str]],
        scope: str | None,
        total: int | None,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Replace the index (or one experiment's part of it) in one transaction.

        The new rows are streamed with binary ``COPY`` into tables beside the live
        ones, which are swapped in at the end; readers see the old index until the
        commit and never an empty or partial one. Rows that writers changed while
        the rebuild ran are carried over. If anything fails, or the process dies,
        the transaction rolls back and the old index stays as it was.

        Args:
            runs: Every run of the scope, as read from the files.
            derived: Every derived-metrics document of the scope.
            manifests: Every manifest of the scope.
            experiments: Called after the rows were consumed: the experiments the
                files hold.
            scope: The experiment being rebuilt, or ``None`` for the whole index.
            total: How many runs are expected, for ``progress``.
            progress: Called as ``progress(done, total)`` while runs are copied.

        Returns:
            The number of runs indexed.
        """
        q = self._sql

        def work(conn: Connection) -> int:
            with conn.transaction():
                conn.execute(q.meta.lock, (ddl.lock_key(self._schema) + ":rebuild",))
                started = conn.execute(q.rebuild.now).fetchone()
                assert started is not None
                trigram = _has_trigram(conn)
                # A scope that is the whole index is rebuilt beside it and swapped in
                # (much faster than replacing rows under live indexes).
                whole = scope is None or not _fetch_bool(conn, q.rebuild.others_exist, {"e": scope})
                if whole:
                    count = self._rebuild_all(
                        conn, runs, derived, manifests, total, progress, trigram=trigram
                    )
                else:
                    count = self._rebuild_scope(conn, runs, derived, manifests, total, progress)
                listed = sorted(set(experiments()))
                if whole:
                    conn.execute(q.rebuild.lock_live)
                    for statement in q.rebuild.carry_over:
                        conn.execute(statement, (started[0],))
                    for statement in ddl.swap_in(self._schema, ddl.REBUILD_SUFFIX, trigram=trigram):
                        conn.execute(statement)
                    conn.execute(q.experiments.touch_many, (listed,))
                    if scope is None:
                        conn.execute(q.meta.mark_rebuilt)
                else:
                    for statement in q.rebuild.replace_scope:
                        conn.execute(statement, (scope, started[0]))
                    for statement in q.rebuild.insert_scope:
                        conn.execute(statement)
                    conn.execute(q.experiments.touch_many, (listed,))
                if scope is not None:
                    conn.execute(q.experiments.mark_synced, (scope,))
            return count

        return self.run(work, force=True, retry=False)

    def _rebuild_all(
        self,
        conn: Connection,
        runs: Iterable[RunRow],
        derived: Iterable[DerivedRow],
        manifests: Iterable[ManifestRow],
        total: int | None,
        progress: ProgressCallback | None,
        *,
        trigram: bool,
    ) -> int:
        q = self._sql
        for statement in ddl.drop_tables(self._schema, ddl.REBUILD_SUFFIX):
            conn.execute(statement)
        for statement in ddl.create_tables(self._schema, ddl.REBUILD_SUFFIX):
            conn.execute(statement)
        count = _copy(conn, q.rebuild.copy_new_runs, runs, total, progress)
        _copy(conn, q.rebuild.copy_new_derived, derived, None, None)
        _copy(conn, q.rebuild.copy_new_manifests, manifests, None, None)
        for statement in ddl.create_indexes(self._schema, ddl.REBUILD_SUFFIX, trigram=trigram):
            conn.execute(statement)
        return count

    def _rebuild_scope(
        self,
        conn: Connection,
        runs: Iterable[RunRow],
        derived: Iterable[DerivedRow],
        manifests: Iterable[ManifestRow],
        total: int | None,
        progress: ProgressCallback | None,
    ) -> int:
        q = self._sql
        for statement in q.rebuild.create_stages:
            conn.execute(statement)
        count = _copy(conn, q.rebuild.copy_stage_runs, runs, total, progress)
        _copy(conn, q.rebuild.copy_stage_derived, derived, None, None)
        _copy(conn, q.rebuild.copy_stage_manifests, manifests, None, None)
        return count


def _configure(conn: Connection) -> None:
    conn.adapters.register_dumper(JsonbBinary, _JsonbBinaryDumper)


def _fetch_bool(conn: Connection, query: sql.Composed, params: dict[str, object]) -> bool:
    row = conn.execute(query, params).fetchone()
    return bool(row is not None and row[0])


def _has_trigram(conn: Connection) -> bool:
    """Whether ``pg_trgm`` is installed in the database (it is never required)."""
    info = TypeInfo.fetch(conn, "gtrgm")
    return info is not None


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    if size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {size!r}")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _copy(
    conn: Connection,
    copy_in: CopyIn,
    rows: Iterable[tuple[object, ...]],
    total: int | None,
    progress: ProgressCallback | None,
) -> int:
    count = 0
    with conn.cursor().copy(copy_in.statement) as copy:
        copy.set_types(copy_in.types)
        for row in rows:
            copy.write_row(row)
            count += 1
            if progress is not None and count % _PROGRESS_EVERY == 0:
                progress(count, total)
    if progress is not None:
        progress(count, total)
    return count
