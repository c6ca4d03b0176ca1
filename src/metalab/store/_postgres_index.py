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

import datetime as dt
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, Self, TypeVar

import psycopg
from psycopg import sql
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import Format
from psycopg.rows import TupleRow, class_row
from psycopg.types import TypeInfo
from psycopg_pool import ConnectionPool, PoolTimeout

from metalab.errors import ConfigError, IndexUnavailableError
from metalab.query import CATALOG_SAMPLE_RUNS, CATALOG_SAMPLES, FieldInfo, Query
from metalab.query.sql import compile_select
from metalab.store import _postgres_ddl as ddl
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

_REBUILD_SUFFIX: Final = "__rebuild"
_RUN_AND_DOC: Final = sql.SQL("r.run_id, r.doc")
_PROGRESS_EVERY: Final = 1_000
_JSONB_OID: Final = 3802


class JsonbBinary(bytes):
    """A ``jsonb`` value in PostgreSQL's binary format: a version byte (1), then JSON text.

    The JSON the encoder produced is sent as it is, with no re-serialisation. In a
    binary ``COPY`` the server reads every field with the column's own input
    function, so these values go through psycopg's plain ``bytea`` dumper (in C); as
    a query parameter, :class:`_JsonbBinaryDumper` tells the server it is ``jsonb``.
    """

    __slots__ = ()

    @classmethod
    def from_json(cls, text: bytes) -> JsonbBinary:
        """Wrap standard JSON text."""
        return cls(b"\x01" + text)


class _JsonbBinaryDumper(Dumper):
    format = Format.BINARY
    oid = _JSONB_OID

    def dump(self, obj: JsonbBinary) -> Buffer:
        return obj


class RunRow(NamedTuple):
    """One row of the ``runs`` table, in ``COPY`` column order."""

    run_id: str
    experiment_id: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_ms: float | None
    tags: list[str]
    params: JsonbBinary | None
    metrics: JsonbBinary | None
    doc: bytes
    file_mtime_ns: int | None
    file_size: int | None


class DerivedRow(NamedTuple):
    """One row of the ``derived`` table, in ``COPY`` column order."""

    run_id: str
    experiment_id: str | None
    metrics: JsonbBinary | None
    doc: bytes
    file_mtime_ns: int | None
    file_size: int | None


class ManifestRow(NamedTuple):
    """One row of the ``manifests`` table, in ``COPY`` column order."""

    experiment_id: str
    name: str
    submitted_at: dt.datetime
    doc: bytes
    file_mtime_ns: int | None
    file_size: int | None


_RUN_COLUMNS: Final = RunRow._fields
_RUN_TYPES: Final = (
    "text",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "float8",
    "text[]",
    "bytea",  # jsonb, see JsonbBinary
    "bytea",  # jsonb
    "bytea",
    "int8",
    "int8",
)
_DERIVED_COLUMNS: Final = DerivedRow._fields
_DERIVED_TYPES: Final = ("text", "text", "bytea", "bytea", "int8", "int8")  # 3rd: jsonb
_MANIFEST_COLUMNS: Final = ManifestRow._fields
_MANIFEST_TYPES: Final = ("text", "text", "timestamptz", "bytea", "int8", "int8")


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
        self._q = _Queries(schema)

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
        q = self._q

        def work(conn: Connection) -> IndexState:
            encoding = conn.execute(q.server_encoding).fetchone()
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
                conn.execute(q.lock, (ddl.lock_key(self._schema),))
                exists = conn.execute(q.schema_exists, (self._schema,)).fetchone()
                if exists is None or exists[0] is None:
                    conn.execute(q.create_schema)
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
        found = conn.execute(self._q.meta_exists, (self._qualified(ddl.META_TABLE),)).fetchone()
        if found is None or found[0] is None:
            return None
        row = conn.execute(self._q.read_meta).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def _qualified(self, name: str) -> str:
        return sql.Identifier(self._schema, name).as_string(None)

    def _create(self, conn: Connection, pending: frozenset[str | None]) -> None:
        q = self._q
        conn.execute(ddl.create_meta_table(self._schema))
        conn.execute(q.insert_meta, (ddl.SCHEMA_VERSION, self._file_root, None in pending))
        for statement in ddl.create_tables(self._schema):
            conn.execute(statement)
        for statement in ddl.create_indexes(self._schema, trigram=_has_trigram(conn)):
            conn.execute(statement)
        experiments = sorted(e for e in pending if e is not None)
        if experiments:
            conn.execute(q.insert_pending_experiments, (experiments,))

    def _state(self, conn: Connection, *, created: bool, root: str) -> IndexState:
        pending: set[str | None] = set()
        row = conn.execute(self._q.read_needs_sync).fetchone()
        if row is not None and row[0]:
            pending.add(None)
        pending.update(r[0] for r in conn.execute(self._q.pending_experiments))
        return IndexState(created=created, needs_sync=frozenset(pending), file_root=root)

    def put_run(self, row: RunRow) -> None:
        """Upsert one run (one statement); a ``running`` row never replaces a finished one."""
        self.run(lambda conn: conn.execute(self._q.upsert_run, row._asdict()))

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
        q = self._q
        with conn.transaction():
            conn.execute(q.create_stage_runs)
            with conn.cursor().copy(q.copy_stage_runs) as copy:
                copy.set_types([*_RUN_TYPES, "int8"])
                for ordinal, row in enumerate(rows):
                    copy.write_row((*row, ordinal))
            conn.execute(q.merge_stage_runs)
            conn.execute(q.touch_stage_experiments)

    def get_run_doc(self, run_id: str, experiment_id: str | None) -> bytes | None:
        """Return the encoded record of a run (of one experiment, if given), or ``None``."""
        return self._get_doc(self._q.get_run, self._q.get_run_in, run_id, experiment_id)

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
                row = conn.execute(self._q.run_exists, (run_id,)).fetchone()
            else:
                row = conn.execute(self._q.run_exists_in, (run_id, experiment_id)).fetchone()
            return row is not None

        return self.run(work)

    def list_run_docs(self, experiment_id: str | None) -> list[tuple[str, bytes]]:
        """Return ``(run_id, encoded record)`` of every run (of one experiment, if given)."""
        return self._list_docs(self._q.list_runs, self._q.list_runs_in, experiment_id)

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
                conn.execute(self._q.delete_run, params)
                conn.execute(self._q.delete_derived, params)

        self.run(work)

    def put_derived(self, row: DerivedRow) -> None:
        """Upsert the derived metrics of a run.

        Without an experiment, the row takes the experiment of the indexed run.
        """
        self.run(lambda conn: conn.execute(self._q.upsert_derived, row._asdict()))

    def get_derived_doc(self, run_id: str, experiment_id: str | None) -> bytes | None:
        """Return the encoded derived metrics of a run, or ``None``."""
        return self._get_doc(self._q.get_derived, self._q.get_derived_in, run_id, experiment_id)

    def list_derived_docs(self, experiment_id: str | None) -> list[tuple[str, bytes]]:
        """Return ``(run_id, encoded derived metrics)`` of one experiment (or all), in one query."""
        return self._list_docs(self._q.list_derived, self._q.list_derived_in, experiment_id)

    def put_manifest(self, row: ManifestRow) -> None:
        """Upsert one experiment manifest (keyed by experiment and file name)."""

        def work(conn: Connection) -> None:
            with conn.transaction():
                conn.execute(self._q.upsert_manifest, row._asdict())
                conn.execute(self._q.touch_experiment, (row.experiment_id,))

        self.run(work)

    def list_manifest_docs(self, experiment_id: str | None) -> list[bytes]:
        """Return encoded manifests (of one experiment, if given), oldest first."""

        def work(conn: Connection) -> list[bytes]:
            cur = conn.cursor(binary=True)
            if experiment_id is None:
                cur.execute(self._q.list_manifests)
            else:
                cur.execute(self._q.list_manifests_in, (experiment_id,))
            return [row[0] for row in cur.fetchall()]

        return self.run(work)

    def list_experiments(self, experiment_id: str | None = None) -> list[str]:
        """Return the indexed experiments (only ``experiment_id``, if given), sorted."""

        def work(conn: Connection) -> list[str]:
            if experiment_id is None:
                return [r[0] for r in conn.execute(self._q.list_experiments)]
            return [r[0] for r in conn.execute(self._q.experiment_listed, (experiment_id,))]

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
        q = self._q

        def work(conn: Connection) -> list[FieldInfo]:
            with conn.transaction():
                dirty = conn.execute(q.lock_catalog, (experiment_id,)).fetchone()
                if dirty is not None and dirty[0]:
                    conn.execute(q.delete_catalog, (experiment_id,))
                    conn.execute(
                        q.refresh_catalog,
                        {"e": experiment_id, "n": CATALOG_SAMPLES, "k": CATALOG_SAMPLE_RUNS},
                    )
                    conn.execute(q.clean_catalog, (experiment_id,))
            cur = conn.cursor(row_factory=class_row(FieldInfo))
            return cur.execute(q.read_catalog, (experiment_id,)).fetchall()

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
        query = self._q.file_states[kind][experiment_id is not None]

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
        q = self._q
        listed = sorted(set(experiments))

        def finish(conn: Connection) -> None:
            with conn.transaction():
                for kind, query in (
                    ("runs", q.delete_runs_by_key),
                    ("derived", q.delete_derived_by_key),
                    ("manifests", q.delete_manifests_by_key),
                ):
                    keys = removed.get(kind, [])
                    if keys:
                        conn.execute(query, ([k for k, _ in keys], [e for _, e in keys]))
                conn.execute(q.touch_experiments, (listed,))
                if scope is None:
                    conn.execute(q.forget_unlisted_experiments, (listed,))
                    for statement in q.mark_all_synced:
                        conn.execute(statement)
                else:
                    conn.execute(q.mark_experiment_synced, (scope,))

        self.run(finish, force=True)

    def _merge_derived(self, conn: Connection, rows: Sequence[DerivedRow]) -> None:
        q = self._q
        with conn.transaction():
            conn.execute(q.create_stage_derived)
            with conn.cursor().copy(q.copy_stage_derived) as copy:
                copy.set_types(list(_DERIVED_TYPES))
                for row in rows:
                    copy.write_row(row)
            conn.execute(q.merge_stage_derived)

    def _merge_manifests(self, conn: Connection, rows: Sequence[ManifestRow]) -> None:
        q = self._q
        with conn.transaction():
            conn.execute(q.create_stage_manifests)
            with conn.cursor().copy(q.copy_stage_manifests) as copy:
                copy.set_types(list(_MANIFEST_TYPES))
                for row in rows:
                    copy.write_row(row)
            conn.execute(q.merge_stage_manifests)
            conn.execute(q.touch_stage_manifest_experiments)

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
        q = self._q

        def work(conn: Connection) -> int:
            with conn.transaction():
                conn.execute(q.lock, (ddl.lock_key(self._schema) + ":rebuild",))
                started = conn.execute(q.now).fetchone()
                assert started is not None
                trigram = _has_trigram(conn)
                # A scope that is the whole index is rebuilt beside it and swapped in
                # (much faster than replacing rows under live indexes).
                whole = scope is None or not _fetch_bool(conn, q.others_exist, {"e": scope})
                if whole:
                    count = self._rebuild_all(
                        conn, runs, derived, manifests, total, progress, trigram=trigram
                    )
                else:
                    count = self._rebuild_scope(conn, runs, derived, manifests, total, progress)
                listed = sorted(set(experiments()))
                if whole:
                    conn.execute(q.lock_live)
                    for statement in q.carry_over:
                        conn.execute(statement, (started[0],))
                    for statement in ddl.swap_in(self._schema, _REBUILD_SUFFIX, trigram=trigram):
                        conn.execute(statement)
                    conn.execute(q.touch_experiments, (listed,))
                    if scope is None:
                        conn.execute(q.mark_rebuilt)
                else:
                    for statement in q.replace_scope:
                        conn.execute(statement, (scope, started[0]))
                    for statement in q.insert_scope:
                        conn.execute(statement)
                    conn.execute(q.touch_experiments, (listed,))
                if scope is not None:
                    conn.execute(q.mark_experiment_synced, (scope,))
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
        q = self._q
        for statement in ddl.drop_tables(self._schema, _REBUILD_SUFFIX):
            conn.execute(statement)
        for statement in ddl.create_tables(self._schema, _REBUILD_SUFFIX):
            conn.execute(statement)
        count = _copy(conn, q.copy_new_runs, _RUN_TYPES, runs, total, progress)
        _copy(conn, q.copy_new_derived, _DERIVED_TYPES, derived, None, None)
        _copy(conn, q.copy_new_manifests, _MANIFEST_TYPES, manifests, None, None)
        for statement in ddl.create_indexes(self._schema, _REBUILD_SUFFIX, trigram=trigram):
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
        q = self._q
        conn.execute(q.create_stage_runs_rebuild)
        conn.execute(q.create_stage_derived_rebuild)
        conn.execute(q.create_stage_manifests_rebuild)
        count = _copy(conn, q.copy_stage_runs_rebuild, _RUN_TYPES, runs, total, progress)
        _copy(conn, q.copy_stage_derived_rebuild, _DERIVED_TYPES, derived, None, None)
        _copy(conn, q.copy_stage_manifests_rebuild, _MANIFEST_TYPES, manifests, None, None)
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
    statement: sql.Composed,
    types: Sequence[str],
    rows: Iterable[tuple[object, ...]],
    total: int | None,
    progress: ProgressCallback | None,
) -> int:
    count = 0
    with conn.cursor().copy(statement) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)
            count += 1
            if progress is not None and count % _PROGRESS_EVERY == 0:
                progress(count, total)
    if progress is not None:
        progress(count, total)
    return count


def _render(query: sql.Composed) -> bytes:
    """Render a hot-path statement once, instead of on every call."""
    return query.as_bytes(None)


def _columns(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _excluded(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(n)) for n in names
    )


def _catalog_values(
    runs: sql.Composable, derived: sql.Composable, where: sql.Composable
) -> sql.Composed:
    """``(field, value)`` of every param, metric and derived metric of the runs ``x`` in ``where``."""
    return sql.SQL(
        """
        SELECT 'params.' || p.key AS field, p.value
        FROM {r} x, jsonb_each(x.params) p WHERE {where}
        UNION ALL
        SELECT 'metrics.' || m.key, m.value
        FROM {r} x, jsonb_each(x.metrics) m WHERE {where}
        UNION ALL
        SELECT 'derived.' || d.key, d.value
        FROM {d} y JOIN {r} x ON x.run_id = y.run_id, jsonb_each(y.metrics) d WHERE {where}
        """
    ).format(r=runs, d=derived, where=where)


class _Queries:
    """Every statement of the index, composed once per schema."""

    def __init__(self, schema: str) -> None:
        t = {name: ddl.table(schema, name) for name in (*ddl.TABLES, ddl.META_TABLE)}
        runs, derived, manifests = t["runs"], t["derived"], t["manifests"]
        experiments, catalog, meta = t["experiments"], t["field_catalog"], t[ddl.META_TABLE]
        new = {name: ddl.table(schema, name, _REBUILD_SUFFIX) for name in ddl.TABLES}
        run_cols = _columns(_RUN_COLUMNS)
        derived_cols = _columns(_DERIVED_COLUMNS)
        manifest_cols = _columns(_MANIFEST_COLUMNS)
        not_backwards = sql.SQL("(r.status = 'running' OR EXCLUDED.status <> 'running')")
        stage_runs = sql.Identifier("metalab_stage_runs")
        stage_derived = sql.Identifier("metalab_stage_derived")
        stage_manifests = sql.Identifier("metalab_stage_manifests")
        run_stage_def = sql.SQL(
            "run_id text, experiment_id text, status text, started_at timestamptz, "
            "finished_at timestamptz, duration_ms float8, tags text[], params jsonb, "
            "metrics jsonb, doc bytea, file_mtime_ns bigint, file_size bigint"
        )
        derived_stage_def = sql.SQL(
            "run_id text, experiment_id text, metrics jsonb, doc bytea, "
            "file_mtime_ns bigint, file_size bigint"
        )
        manifest_stage_def = sql.SQL(
            "experiment_id text, name text, submitted_at timestamptz, doc bytea, "
            "file_mtime_ns bigint, file_size bigint"
        )

        def fmt(template: str, **parts: sql.Composable) -> sql.Composed:
            return sql.SQL(template).format(**parts)

        self.now = sql.SQL("SELECT clock_timestamp()")
        self.server_encoding = sql.SQL("SELECT current_setting('server_encoding')")
        self.lock = sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))")
        self.schema_exists = sql.SQL("SELECT to_regnamespace(quote_ident(%s))")
        self.create_schema = fmt("CREATE SCHEMA IF NOT EXISTS {s}", s=sql.Identifier(schema))
        self.meta_exists = sql.SQL("SELECT to_regclass(%s)")
        self.read_meta = fmt("SELECT schema_version, file_root FROM {m}", m=meta)
        self.insert_meta = fmt(
            "INSERT INTO {m} (schema_version, file_root, needs_sync) VALUES (%s, %s, %s)", m=meta
        )
        self.read_needs_sync = fmt("SELECT needs_sync FROM {m}", m=meta)
        self.pending_experiments = fmt(
            "SELECT experiment_id FROM {e} WHERE needs_sync", e=experiments
        )
        self.insert_pending_experiments = fmt(
            "INSERT INTO {e} (experiment_id, needs_sync) SELECT unnest(%s::text[]), true",
            e=experiments,
        )
        self.mark_all_synced = (
            fmt("UPDATE {m} SET needs_sync = false, synced_at = now()", m=meta),
            fmt("UPDATE {e} SET needs_sync = false WHERE needs_sync", e=experiments),
        )
        self.mark_rebuilt = fmt(
            "UPDATE {m} SET needs_sync = false, rebuilt_at = now(), synced_at = now()", m=meta
        )
        self.mark_experiment_synced = fmt(
            "UPDATE {e} SET needs_sync = false, catalog_dirty = true WHERE experiment_id = %s",
            e=experiments,
        )
        self.others_exist = fmt(
            "SELECT EXISTS (SELECT 1 FROM {r} WHERE experiment_id <> %(e)s) "
            "OR EXISTS (SELECT 1 FROM {d} WHERE experiment_id IS DISTINCT FROM %(e)s) "
            "OR EXISTS (SELECT 1 FROM {m} WHERE experiment_id <> %(e)s) "
            "OR EXISTS (SELECT 1 FROM {x} WHERE experiment_id <> %(e)s)",
            r=runs,
            d=derived,
            m=manifests,
            x=experiments,
        )
        self.touch_experiment = fmt(
            "INSERT INTO {e} (experiment_id) VALUES (%s) ON CONFLICT (experiment_id) "
            "DO UPDATE SET catalog_dirty = true WHERE NOT {e}.catalog_dirty",
            e=experiments,
        )
        self.touch_experiments = fmt(
            "INSERT INTO {e} (experiment_id) SELECT unnest(%s::text[]) "
            "ON CONFLICT (experiment_id) DO UPDATE SET catalog_dirty = true "
            "WHERE NOT {e}.catalog_dirty",
            e=experiments,
        )
        self.forget_unlisted_experiments = fmt(
            "DELETE FROM {e} WHERE experiment_id <> ALL(%s::text[]) "
            "AND NOT EXISTS (SELECT 1 FROM {r} WHERE {r}.experiment_id = {e}.experiment_id) "
            "AND NOT EXISTS (SELECT 1 FROM {m} WHERE {m}.experiment_id = {e}.experiment_id)",
            e=experiments,
            r=runs,
            m=manifests,
        )
        self.upsert_run = _render(
            fmt(
                "WITH touched AS ({touch}) "
                "INSERT INTO {runs} AS r ({cols}) VALUES ({values}) "
                "ON CONFLICT (run_id) DO UPDATE SET {set}, indexed_at = clock_timestamp() "
                "WHERE {not_backwards}",
                touch=fmt(
                    "INSERT INTO {e} (experiment_id) VALUES (%(experiment_id)s) "
                    "ON CONFLICT (experiment_id) DO UPDATE SET catalog_dirty = true "
                    "WHERE NOT {e}.catalog_dirty",
                    e=experiments,
                ),
                runs=runs,
                cols=run_cols,
                values=sql.SQL(", ").join(sql.Placeholder(n) for n in _RUN_COLUMNS),
                set=_excluded(_RUN_COLUMNS[1:]),
                not_backwards=not_backwards,
            )
        )
        self.create_stage_runs = fmt(
            "CREATE TEMP TABLE IF NOT EXISTS {st} ({d}, ordinal bigint) ON COMMIT DELETE ROWS",
            st=stage_runs,
            d=run_stage_def,
        )
        self.copy_stage_runs = fmt(
            "COPY {st} ({cols}, ordinal) FROM STDIN (FORMAT BINARY)", st=stage_runs, cols=run_cols
        )
        self.merge_stage_runs = fmt(
            "INSERT INTO {runs} AS r ({cols}) "
            "SELECT DISTINCT ON (run_id) {cols} FROM {st} "
            "ORDER BY run_id, (status <> 'running') DESC, ordinal DESC "
            "ON CONFLICT (run_id) DO UPDATE SET {set}, indexed_at = clock_timestamp() "
            "WHERE {not_backwards}",
            runs=runs,
            cols=run_cols,
            st=stage_runs,
            set=_excluded(_RUN_COLUMNS[1:]),
            not_backwards=not_backwards,
        )
        self.touch_stage_experiments = fmt(
            "INSERT INTO {e} (experiment_id) SELECT DISTINCT experiment_id FROM {st} "
            "ON CONFLICT (experiment_id) DO UPDATE SET catalog_dirty = true "
            "WHERE NOT {e}.catalog_dirty",
            e=experiments,
            st=stage_runs,
        )
        self.get_run = _render(fmt("SELECT doc FROM {r} WHERE run_id = %s", r=runs))
        self.get_run_in = _render(
            fmt("SELECT doc FROM {r} WHERE run_id = %s AND experiment_id = %s", r=runs)
        )
        self.run_exists = _render(fmt("SELECT 1 FROM {r} WHERE run_id = %s", r=runs))
        self.run_exists_in = _render(
            fmt("SELECT 1 FROM {r} WHERE run_id = %s AND experiment_id = %s", r=runs)
        )
        self.list_runs = _render(fmt("SELECT run_id, doc FROM {r}", r=runs))
        self.list_runs_in = _render(
            fmt("SELECT run_id, doc FROM {r} WHERE experiment_id = %s", r=runs)
        )
        self.delete_run = fmt(
            "WITH gone AS (DELETE FROM {r} WHERE run_id = %(r)s "
            "AND (%(e)s::text IS NULL OR experiment_id = %(e)s) RETURNING experiment_id) "
            "UPDATE {x} SET catalog_dirty = true "
            "WHERE experiment_id IN (SELECT experiment_id FROM gone) AND NOT catalog_dirty",
            r=runs,
            x=experiments,
        )
        self.delete_derived = fmt(
            "DELETE FROM {d} WHERE run_id = %(r)s AND (%(e)s::text IS NULL OR experiment_id = %(e)s)",
            d=derived,
        )
        self.upsert_derived = _render(
            fmt(
                "WITH put AS (INSERT INTO {d} ({cols}) VALUES (%(run_id)s, "
                "COALESCE(%(experiment_id)s, (SELECT experiment_id FROM {r} WHERE run_id = %(run_id)s)), "
                "%(metrics)s, %(doc)s, %(file_mtime_ns)s, %(file_size)s) "
                "ON CONFLICT (run_id) DO UPDATE SET {set}, indexed_at = clock_timestamp() "
                "RETURNING experiment_id) "
                "UPDATE {x} SET catalog_dirty = true "
                "WHERE experiment_id IN (SELECT experiment_id FROM put) AND NOT catalog_dirty",
                d=derived,
                r=runs,
                x=experiments,
                cols=derived_cols,
                set=_excluded(_DERIVED_COLUMNS[1:]),
            )
        )
        self.get_derived = _render(fmt("SELECT doc FROM {d} WHERE run_id = %s", d=derived))
        self.get_derived_in = _render(
            fmt("SELECT doc FROM {d} WHERE run_id = %s AND experiment_id = %s", d=derived)
        )
        self.list_derived = _render(fmt("SELECT run_id, doc FROM {d}", d=derived))
        self.list_derived_in = _render(
            fmt("SELECT run_id, doc FROM {d} WHERE experiment_id = %s", d=derived)
        )
        self.create_stage_derived = fmt(
            "CREATE TEMP TABLE IF NOT EXISTS {st} ({d}) ON COMMIT DELETE ROWS",
            st=stage_derived,
            d=derived_stage_def,
        )
        self.copy_stage_derived = fmt(
            "COPY {st} ({cols}) FROM STDIN (FORMAT BINARY)", st=stage_derived, cols=derived_cols
        )
        self.merge_stage_derived = fmt(
            "INSERT INTO {d} ({cols}) SELECT DISTINCT ON (run_id) {cols} FROM {st} "
            "ON CONFLICT (run_id) DO UPDATE SET {set}, indexed_at = clock_timestamp()",
            d=derived,
            cols=derived_cols,
            st=stage_derived,
            set=_excluded(_DERIVED_COLUMNS[1:]),
        )
        self.upsert_manifest = fmt(
            "INSERT INTO {m} ({cols}) VALUES ({values}) ON CONFLICT (experiment_id, name) "
            "DO UPDATE SET {set}, indexed_at = clock_timestamp()",
            m=manifests,
            cols=manifest_cols,
            values=sql.SQL(", ").join(sql.Placeholder(n) for n in _MANIFEST_COLUMNS),
            set=_excluded(_MANIFEST_COLUMNS[2:]),
        )
        self.list_manifests = fmt("SELECT doc FROM {m} ORDER BY submitted_at, name", m=manifests)
        self.list_manifests_in = fmt(
            "SELECT doc FROM {m} WHERE experiment_id = %s ORDER BY submitted_at, name",
            m=manifests,
        )
        self.create_stage_manifests = fmt(
            "CREATE TEMP TABLE IF NOT EXISTS {st} ({d}) ON COMMIT DELETE ROWS",
            st=stage_manifests,
            d=manifest_stage_def,
        )
        self.copy_stage_manifests = fmt(
            "COPY {st} ({cols}) FROM STDIN (FORMAT BINARY)",
            st=stage_manifests,
            cols=manifest_cols,
        )
        self.merge_stage_manifests = fmt(
            "INSERT INTO {m} ({cols}) SELECT DISTINCT ON (experiment_id, name) {cols} "
            "FROM {st} ON CONFLICT (experiment_id, name) "
            "DO UPDATE SET {set}, indexed_at = clock_timestamp()",
            m=manifests,
            cols=manifest_cols,
            st=stage_manifests,
            set=_excluded(_MANIFEST_COLUMNS[2:]),
        )
        self.touch_stage_manifest_experiments = fmt(
            "INSERT INTO {e} (experiment_id) SELECT DISTINCT experiment_id FROM {st} "
            "ON CONFLICT (experiment_id) DO NOTHING",
            e=experiments,
            st=stage_manifests,
        )
        self.list_experiments = fmt("SELECT experiment_id FROM {e} ORDER BY 1", e=experiments)
        self.experiment_listed = fmt(
            "SELECT experiment_id FROM {e} WHERE experiment_id = %s", e=experiments
        )
        self.lock_catalog = fmt(
            "SELECT catalog_dirty FROM {e} WHERE experiment_id = %s FOR UPDATE", e=experiments
        )
        self.delete_catalog = fmt("DELETE FROM {c} WHERE experiment_id = %s", c=catalog)
        self.clean_catalog = fmt(
            "UPDATE {e} SET catalog_dirty = false WHERE experiment_id = %s", e=experiments
        )
        # One hash aggregation over every value gives types, counts and ranges; the
        # samples come from the first runs only (by run id): a DISTINCT ... ORDER BY
        # over every value of every field sorted millions of jsonb values, most of
        # the refresh's cost on a large experiment.
        self.refresh_catalog = fmt(
            """
            WITH stats AS (
                SELECT field,
                    count(*) AS count,
                    bool_or(kind = 'null') AS has_null,
                    bool_or(kind = 'string') AS has_str,
                    bool_or(kind = 'boolean') AS has_bool,
                    bool_or(kind = 'array') AS has_list,
                    -- jsonb keeps a number's scale (1.0) but not its exponent form:
                    -- scale 0 is an int, as the codec wrote it.
                    bool_or(scale(num) = 0) AS has_int,
                    bool_or(scale(num) > 0 OR (kind = 'object' AND {marker})) AS has_float,
                    bool_or(kind = 'object' AND NOT {marker}) AS has_dict,
                    min(num)::float8 AS min_value,
                    max(num)::float8 AS max_value
                FROM (
                    -- OFFSET 0 keeps each value's type and number computed once,
                    -- not once per aggregate that reads them.
                    SELECT field, value, kind,
                        CASE WHEN kind = 'number' THEN value::numeric END AS num
                    FROM (
                        SELECT field, value, jsonb_typeof(value) AS kind
                        FROM ({every}) AS v OFFSET 0
                    ) AS k OFFSET 0
                ) AS typed
                GROUP BY field
            ), first_runs AS (
                SELECT run_id FROM {r} WHERE experiment_id = %(e)s
                ORDER BY run_id COLLATE "C" LIMIT %(k)s
            ), samples AS (
                SELECT field, to_jsonb((array_agg(DISTINCT value ORDER BY value))[1:%(n)s]) AS s
                FROM ({first}) AS v
                GROUP BY field
            )
            INSERT INTO {c} (experiment_id, field, types, count, min_value, max_value, samples)
            SELECT %(e)s, field,
                array_remove(ARRAY[
                    CASE WHEN has_bool THEN 'bool' END, CASE WHEN has_dict THEN 'dict' END,
                    CASE WHEN has_float THEN 'float' END, CASE WHEN has_int THEN 'int' END,
                    CASE WHEN has_list THEN 'list' END, CASE WHEN has_null THEN 'null' END,
                    CASE WHEN has_str THEN 'str' END
                ], NULL),
                count, min_value, max_value, COALESCE(samples.s, '[]'::jsonb)
            FROM stats LEFT JOIN samples USING (field)
            """,
            marker=sql.SQL("(value ? '$float' AND value - '$float' = '{}'::jsonb)"),
            every=_catalog_values(runs, derived, sql.SQL("x.experiment_id = %(e)s")),
            first=_catalog_values(
                runs, derived, sql.SQL("x.run_id IN (SELECT run_id FROM first_runs)")
            ),
            r=runs,
            c=catalog,
        )
        self.read_catalog = fmt(
            "SELECT field, types, count, min_value, max_value, samples "
            "FROM {c} WHERE experiment_id = %s ORDER BY field",
            c=catalog,
        )
        file_state_sources = {
            "runs": (runs, sql.SQL("run_id")),
            "derived": (derived, sql.SQL("run_id")),
            "manifests": (manifests, sql.SQL("name")),
        }
        self.file_states: dict[str, tuple[sql.Composed, sql.Composed]] = {
            kind: (
                fmt("SELECT {k}, file_mtime_ns, file_size FROM {t}", k=key, t=table),
                fmt(
                    "SELECT {k}, file_mtime_ns, file_size FROM {t} WHERE experiment_id = %s",
                    k=key,
                    t=table,
                ),
            )
            for kind, (table, key) in file_state_sources.items()
        }
        by_key = (
            "DELETE FROM {t} x USING unnest(%s::text[], %s::text[]) AS k(key, exp) "
            "WHERE x.{k} = k.key AND (k.exp IS NULL OR x.experiment_id = k.exp)"
        )
        self.delete_runs_by_key = fmt(by_key, t=runs, k=sql.Identifier("run_id"))
        self.delete_derived_by_key = fmt(by_key, t=derived, k=sql.Identifier("run_id"))
        self.delete_manifests_by_key = fmt(by_key, t=manifests, k=sql.Identifier("name"))
        self.copy_new_runs = fmt(
            "COPY {t} ({cols}) FROM STDIN (FORMAT BINARY)", t=new["runs"], cols=run_cols
        )
        self.copy_new_derived = fmt(
            "COPY {t} ({cols}) FROM STDIN (FORMAT BINARY)", t=new["derived"], cols=derived_cols
        )
        self.copy_new_manifests = fmt(
            "COPY {t} ({cols}) FROM STDIN (FORMAT BINARY)",
            t=new["manifests"],
            cols=manifest_cols,
        )
        self.lock_live = fmt(
            "LOCK TABLE {r}, {d}, {m}, {e}, {c} IN ACCESS EXCLUSIVE MODE",
            r=runs,
            d=derived,
            m=manifests,
            e=experiments,
            c=catalog,
        )
        self.carry_over = (
            fmt(
                "INSERT INTO {n} AS r ({cols}) SELECT {cols} FROM {o} WHERE indexed_at >= %s "
                "ON CONFLICT (run_id) DO UPDATE SET {set} WHERE {not_backwards}",
                n=new["runs"],
                o=runs,
                cols=run_cols,
                set=_excluded(_RUN_COLUMNS[1:]),
                not_backwards=not_backwards,
            ),
            fmt(
                "INSERT INTO {n} ({cols}) SELECT {cols} FROM {o} WHERE indexed_at >= %s "
                "ON CONFLICT (run_id) DO UPDATE SET {set}",
                n=new["derived"],
                o=derived,
                cols=derived_cols,
                set=_excluded(_DERIVED_COLUMNS[1:]),
            ),
            fmt(
                "INSERT INTO {n} ({cols}) SELECT {cols} FROM {o} WHERE indexed_at >= %s "
                "ON CONFLICT (experiment_id, name) DO UPDATE SET {set}",
                n=new["manifests"],
                o=manifests,
                cols=manifest_cols,
                set=_excluded(_MANIFEST_COLUMNS[2:]),
            ),
        )
        rebuild_runs = sql.Identifier("metalab_rebuild_runs")
        rebuild_derived = sql.Identifier("metalab_rebuild_derived")
        rebuild_manifests = sql.Identifier("metalab_rebuild_manifests")
        self.create_stage_runs_rebuild = fmt(
            "CREATE TEMP TABLE {st} ({d}) ON COMMIT DROP", st=rebuild_runs, d=run_stage_def
        )
        self.create_stage_derived_rebuild = fmt(
            "CREATE TEMP TABLE {st} ({d}) ON COMMIT DROP", st=rebuild_derived, d=derived_stage_def
        )
        self.create_stage_manifests_rebuild = fmt(
            "CREATE TEMP TABLE {st} ({d}) ON COMMIT DROP",
            st=rebuild_manifests,
            d=manifest_stage_def,
        )
        self.copy_stage_runs_rebuild = fmt(
            "COPY {st} ({cols}) FROM STDIN (FORMAT BINARY)", st=rebuild_runs, cols=run_cols
        )
        self.copy_stage_derived_rebuild = fmt(
            "COPY {st} ({cols}) FROM STDIN (FORMAT BINARY)",
            st=rebuild_derived,
            cols=derived_cols,
        )
        self.copy_stage_manifests_rebuild = fmt(
            "COPY {st} ({cols}) FROM STDIN (FORMAT BINARY)",
            st=rebuild_manifests,
            cols=manifest_cols,
        )
        # A scoped rebuild keeps the rows that writers changed since it started
        # (they are newer than what it read) and replaces every other row of the
        # scope. Two statements: a data-modifying CTE would not let the insert see
        # the delete.
        self.replace_scope = (
            fmt("DELETE FROM {t} WHERE experiment_id = %s AND indexed_at < %s", t=runs),
            fmt("DELETE FROM {t} WHERE experiment_id = %s AND indexed_at < %s", t=derived),
            fmt("DELETE FROM {t} WHERE experiment_id = %s AND indexed_at < %s", t=manifests),
        )
        self.insert_scope = (
            fmt(
                "INSERT INTO {t} ({cols}) SELECT {cols} FROM {st} ON CONFLICT DO NOTHING",
                t=runs,
                cols=run_cols,
                st=rebuild_runs,
            ),
            fmt(
                "INSERT INTO {t} ({cols}) SELECT {cols} FROM {st} ON CONFLICT DO NOTHING",
                t=derived,
                cols=derived_cols,
                st=rebuild_derived,
            ),
            fmt(
                "INSERT INTO {t} ({cols}) SELECT {cols} FROM {st} ON CONFLICT DO NOTHING",
                t=manifests,
                cols=manifest_cols,
                st=rebuild_manifests,
            ),
        )
