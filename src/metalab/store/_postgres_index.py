"""PostgresIndex: the RecordIndex of a PostgresStore, on psycopg 3.

The index only ever holds what can be rebuilt from the files. Each document is kept
as its exact codec encoding (``doc``, read back losslessly and decoded by the fast
path of the codec); the columns and ``jsonb`` values that queries filter on are
extracted beside it (:mod:`metalab.store._postgres_rows`). The tables are declared in
:mod:`metalab.store._postgres_schema`, the statements in
:mod:`metalab.store._postgres_sql`, and the server is reached through one pool
(:mod:`metalab.store._postgres_pool`), opened by :meth:`PostgresIndex.open`; nothing
touches the network in ``__init__``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Literal, Self, TypeVar, cast

import msgspec
from psycopg import errors, sql
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import Format
from psycopg.rows import class_row
from psycopg.types import TypeInfo

from metalab import _codec
from metalab.errors import ConfigError, IndexMissingError
from metalab.query import (
    CATALOG_SAMPLE_RUNS,
    CATALOG_SAMPLES,
    And,
    Compare,
    Field,
    FieldInfo,
    Query,
    RunSummary,
    select,
    summarize_groups,
)
from metalab.query.sql import answerable, compile_select, index_text, text_from_index
from metalab.records import MetricValue
from metalab.series import MetricSeries, SeriesArrays, seconds_to_micros
from metalab.store import _postgres_schema as ddl
from metalab.store._documents import (
    Document,
    DocumentKey,
    DocumentKind,
    FileState,
    SeriesAppend,
)
from metalab.store._index import DEFAULT_BATCH_SIZE, IndexState
from metalab.store._postgres_pool import Connection, Database
from metalab.store._postgres_rows import (
    derived_row,
    manifest_row,
    run_row,
    series_generation,
    series_row,
    series_rows,
)
from metalab.store._postgres_schema import JsonbBinary, ManifestRow, RunRow, SeriesRow
from metalab.store._postgres_sql import CatalogStatements, CopyIn, statements
from metalab.store.abc import ProgressCallback
from metalab.store.locator import redact

__all__ = ["PostgresIndex"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

_RUN_AND_DOC: Final = sql.SQL("r.run_id, r.doc")
_PROGRESS_EVERY: Final = 1_000
_JSONB_OID: Final = 3802


class _JsonbBinaryDumper(Dumper):
    format = Format.BINARY
    oid = _JSONB_OID

    def dump(self, obj: JsonbBinary) -> Buffer:
        return obj


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
        create: Create the schema and tables when they are missing (or of another
            layout version). ``False`` for readers, which must leave the database
            as they found it: they get :class:`~metalab.errors.IndexMissingError`.

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
        create: bool = True,
    ) -> None:
        self._db = Database(
            conninfo,
            name=f"metalab:{schema}",
            describe=f"the postgres index at {redact(conninfo)!r} (schema {schema!r})",
            min_size=min_size,
            max_size=max_size,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
            configure=_configure,
        )
        self._file_root = file_root
        self._pending_on_create = pending_on_create
        self._create_missing = create
        self._schema = schema
        self._schema_ready = False
        self._sql = statements(schema)
        # False once the role turned out unable to keep metric orders (read-only).
        self._sort_kept: bool | None = None

    def __repr__(self) -> str:
        return f"PostgresIndex({self._db.redacted_conninfo!r}, schema={self._schema!r})"

    @property
    def schema(self) -> str:
        """The Postgres schema holding the tables."""
        return self._schema

    @property
    def redacted_conninfo(self) -> str:
        """The connection string with any password hidden."""
        return self._db.redacted_conninfo

    def open(self) -> IndexState:
        """Open the connection pool and create the index tables if they are missing.

        Returns:
            What :meth:`ensure_schema` found.

        Raises:
            IndexUnavailableError: The server cannot be reached in time.
            ConfigError: The database does not use UTF-8.
        """
        self._db.open()
        return self.ensure_schema()

    def close(self) -> None:
        """Close the connection pool; calling it again does nothing."""
        self._db.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(
        self,
        fn: Callable[[Connection], T],
        *,
        force: bool = False,
        retry: bool = True,
        ensure: bool = True,
    ) -> T:
        """Call ``fn`` with a pooled connection (see :meth:`Database.run`).

        Args:
            fn: Runs the statements.
            force: Try even if the server failed to answer a moment ago.
            retry: Whether ``fn`` may run a second time after a broken connection.
            ensure: Create the tables first if they were never checked (the pool
                was opened while the server was down).
        """
        if ensure and not self._schema_ready:
            self.ensure_schema(force=force)
        return self._db.run(fn, force=force, retry=retry)

    def ensure_schema(self, *, force: bool = True) -> IndexState:
        """Create the schema and tables if missing; idempotent and safe to race.

        Runs under a transaction-level advisory lock, so many processes starting at
        once create the tables exactly once. An index of another layout version is
        dropped and created afresh (it is rebuilt from the files, never migrated).

        Args:
            force: Try even if the server failed to answer a moment ago.

        Raises:
            IndexUnavailableError: The server cannot be reached.
            IndexMissingError: There are no tables of this layout version and this
                index may not create them.
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
            if not self._create_missing:
                raise self._missing(current)
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

    def _missing(self, current: tuple[int, str] | None) -> IndexMissingError:
        what = (
            "no metalab index"
            if current is None
            else f"an index of layout version {current[0]} (this metalab uses {ddl.SCHEMA_VERSION})"
        )
        return IndexMissingError(
            f"there is {what} in schema {self._schema!r} of {self.redacted_conninfo!r}; "
            "nothing was created: 'metalab store rebuild-index LOCATOR' builds it from the files"
        )

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
        self._create_triggers(conn)
        experiments = sorted(e for e in pending if e is not None)
        if experiments:
            conn.execute(q.experiments.insert_pending, (experiments,))

    def _create_triggers(self, conn: Connection) -> None:
        """The triggers that log every write for kept orders and catalogs."""
        for statement in self._sql.triggers:
            conn.execute(statement)

    def _state(self, conn: Connection, *, created: bool, root: str) -> IndexState:
        pending: set[str | None] = set()
        row = conn.execute(self._sql.meta.read_needs_sync).fetchone()
        if row is not None and row[0]:
            pending.add(None)
        pending.update(r[0] for r in conn.execute(self._sql.experiments.pending))
        return IndexState(created=created, needs_sync=frozenset(pending), file_root=root)

    def write(
        self,
        documents: Iterable[Document],
        *,
        removed: Iterable[DocumentKey] = (),
        synced: tuple[str | None, Sequence[str]] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """Index documents and forget removed ones (see :class:`RecordIndex`).

        One document is one upsert statement; more go through a binary ``COPY`` into
        a staging table and one merge per ``batch_size`` documents. Several rows of
        one run in a batch merge as if put one by one
        (:func:`~metalab.store._rules.batch_winner`). A sync (``synced``) runs even
        if the server failed to answer a moment ago.

        Raises:
            CorruptRecordError: A document cannot be indexed (its batch is not).
            IndexUnavailableError: The server cannot be reached.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size!r}")
        gone = list(removed)
        force = synced is not None
        if (
            isinstance(documents, Sequence)
            and len(documents) == 1
            and documents[0].kind != "series"
            and not gone
            and not force
        ):
            self._put_one(documents[0])
            return
        found: set[str] = set()
        for batch in _batches(documents, batch_size):
            self.run(functools.partial(self._merge, batch=batch, found=found), force=force)
        if gone or synced is not None:
            self.run(
                functools.partial(self._finish, gone=gone, synced=synced, found=found), force=force
            )

    @property
    def _series_lock(self) -> str:
        """The advisory lock that serialises writes of series (appends and whole files)."""
        return ddl.lock_key(self._schema) + ":series"

    def _put_one(self, doc: Document) -> None:
        q = self._sql
        if doc.kind == "runs":
            params = run_row(doc)._asdict()
            self.run(lambda conn: conn.execute(q.runs.upsert, params))
        elif doc.kind == "derived":
            params = derived_row(doc)._asdict()
            self.run(lambda conn: conn.execute(q.derived.upsert, params))
        else:
            row = manifest_row(doc)

            def work(conn: Connection) -> None:
                with conn.transaction():
                    conn.execute(q.manifests.upsert, row._asdict())
                    conn.execute(q.experiments.touch, (row.experiment_id,))

            self.run(work)

    def _merge(self, conn: Connection, batch: Sequence[Document], found: set[str]) -> None:
        """Merge one batch of documents in one transaction, staged with ``COPY``."""
        q = self._sql
        runs = [run_row(d) for d in batch if d.kind == "runs"]
        derived = [derived_row(d) for d in batch if d.kind == "derived"]
        manifests = [manifest_row(d) for d in batch if d.kind == "manifests"]
        series = [d for d in batch if d.kind == "series"]
        found.update(row.experiment_id for row in runs)
        found.update(row.experiment_id for row in manifests)
        with conn.transaction():
            if series:
                self._merge_series(conn, series)
            if runs:
                conn.execute(q.runs.create_stage)
                staged = ((*row, ordinal) for ordinal, row in enumerate(runs))
                _copy(conn, q.runs.copy_stage, staged, None, None)
                conn.execute(q.runs.merge_stage)
                conn.execute(q.runs.touch_stage_experiments)
            if derived:
                conn.execute(q.derived.create_stage)
                _copy(conn, q.derived.copy_stage, derived, None, None)
                conn.execute(q.derived.merge_stage)
            if manifests:
                conn.execute(q.manifests.create_stage)
                _copy(conn, q.manifests.copy_stage, manifests, None, None)
                conn.execute(q.manifests.merge_stage)
                conn.execute(q.manifests.touch_stage_experiments)

    def _merge_series(self, conn: Connection, docs: Sequence[Document]) -> None:
        """Index whole series files, each replacing the points indexed of its run.

        A file of the generation indexed that is shorter than what is indexed was
        read before an append the index took since (a sync racing the run): the file
        only grows within a generation, so it is older and left out. A file of
        another generation (a run run again) replaces what is indexed.
        """
        q = self._sql.series
        latest: dict[str, Document] = {}
        for doc in docs:
            other = latest.get(doc.key)
            if other is None or doc.state.size >= other.state.size:
                latest[doc.key] = doc
        conn.execute(self._sql.meta.lock, (self._series_lock,))
        stored = {row[0]: (row[3], row[4]) for row in conn.execute(q.lock, (sorted(latest),))}
        taken = [
            doc
            for key, doc in latest.items()
            if key not in stored
            or stored[key][0] != series_generation(doc)
            or doc.state.size >= (stored[key][1] or 0)
        ]
        if not taken:
            return
        files: list[dict[str, object]] = []

        def chunks() -> Iterator[tuple[object, ...]]:
            for doc in taken:
                found = series_rows(doc, 0)
                generation = found.generation or ""
                files.append(series_row(doc, found.points, found.chunks, generation)._asdict())
                yield from found.rows

        conn.execute(q.delete_chunks, ([doc.key for doc in taken],))
        _copy(conn, q.copy_chunks, chunks(), None, None)
        conn.cursor().executemany(q.upsert, files)

    def append_series(self, append: SeriesAppend) -> bool:
        """Index points appended to a run's series file, if the index holds what came before.

        Returns:
            ``False`` if the index does not hold the file up to ``append.offset`` (it
            missed an append): then nothing changed, and the caller indexes the
            whole file.

        Raises:
            CorruptRecordError: The appended lines cannot be decoded.
            IndexUnavailableError: The server cannot be reached.
        """
        q = self._sql.series

        def work(conn: Connection) -> bool:
            with conn.transaction():
                conn.execute(self._sql.meta.lock, (self._series_lock,))
                row = conn.execute(q.lock, ([append.key],)).fetchone()
                if append.offset == 0:
                    points = chunks = 0
                    conn.execute(q.delete_chunks, ([append.key],))
                elif row is None or row[4] != append.offset:
                    return False
                else:
                    points, chunks = int(row[1]), int(row[2])
                found = series_rows(append, chunks)
                # Appended lines keep the generation of the file they were appended to.
                generation = found.generation
                if generation is None:
                    generation = "" if row is None else str(row[3])
                _copy(conn, q.copy_chunks, found.rows, None, None)
                upsert = series_row(
                    append, points + found.points, chunks + found.chunks, generation
                )
                conn.execute(q.upsert, upsert._asdict())
                return True

        return self.run(work)

    def series(
        self, run_ids: Sequence[str], experiment_id: str | None
    ) -> dict[str, dict[str, MetricSeries]]:
        """Return the indexed series of runs, by run id, then metric name.

        A run whose series file is not indexed (it has none) is left out; one whose
        file holds no points maps to an empty dict.

        Args:
            run_ids: The runs.
            experiment_id: Only runs of this experiment; ``None`` for any.
        """
        q = self._sql.series
        wanted = list(run_ids)

        def work(conn: Connection) -> dict[str, dict[str, MetricSeries]]:
            owners = conn.execute(q.owner, (wanted,)).fetchall()
            found: dict[str, dict[str, MetricSeries]] = {
                run_id: {}
                for run_id, owner in owners
                if experiment_id is None or owner == experiment_id
            }
            if not found:
                return found
            columns: dict[tuple[str, str], tuple[list[int], list[MetricValue], list[float]]] = {}
            rows = conn.execute(q.read, (list(found),), binary=True).fetchall()
            for run_id, metric, steps, nums, others, stamps in rows:
                into = columns.get((run_id, metric))
                if into is None:
                    into = columns[run_id, metric] = ([], [], [])
                into[0].extend(steps)
                into[1].extend(nums if others is None else _values(nums, others))
                into[2].extend(stamps)
            for (run_id, metric), (steps, values, stamps) in sorted(columns.items()):
                found[run_id][metric] = MetricSeries.from_columns(metric, steps, values, stamps)
            return found

        return self.run(work)

    def series_arrays(
        self, run_ids: Sequence[str], experiment_id: str | None
    ) -> dict[str, dict[str, SeriesArrays]]:
        """Like :meth:`series`, as NumPy columns read from the arrays' binary form.

        No Python object is made per point: the arrays of a chunk become NumPy arrays
        as they are. A series with values other than floats, or with unknown times,
        is read as :meth:`series` reads it and converted.
        """
        import numpy as np  # noqa: PLC0415 -- comes with pandas, which frames require

        q = self._sql.series
        wanted = list(run_ids)

        def work(conn: Connection) -> tuple[dict[str, dict[str, SeriesArrays]], set[str]]:
            owners = conn.execute(q.owner, (wanted,)).fetchall()
            found: dict[str, dict[str, SeriesArrays]] = {
                run_id: {}
                for run_id, owner in owners
                if experiment_id is None or owner == experiment_id
            }
            slow: set[str] = set()
            if not found:
                return found, slow
            parts: dict[tuple[str, str], list[tuple[Any, Any, Any]]] = {}
            rows = conn.execute(q.read_arrays, (list(found),), binary=True).fetchall()
            for run_id, metric, steps, nums, has_others, stamps in rows:
                arrays = (
                    _numpy_array(np, steps, "i8"),
                    None if has_others else _numpy_array(np, nums, "f8"),
                    _numpy_array(np, stamps, "f8"),
                )
                if any(a is None for a in arrays):
                    slow.add(run_id)
                else:
                    parts.setdefault((run_id, metric), []).append(arrays)
            for (run_id, metric), chunks in sorted(parts.items()):
                if run_id not in slow:
                    found[run_id][metric] = _sorted_by_step(np, chunks)
            return found, slow

        found, slow = self.run(work)
        if slow:
            for run_id, by_name in self.series(sorted(slow), experiment_id).items():
                found[run_id] = {name: SeriesArrays.of(s) for name, s in by_name.items()}
        return found

    def _finish(
        self,
        conn: Connection,
        gone: Sequence[DocumentKey],
        synced: tuple[str | None, Sequence[str]] | None,
        found: set[str],
    ) -> None:
        """Forget removed documents and, after a sync, mark what it brought up to date."""
        q = self._sql
        deletes = {
            "runs": q.runs.delete_by_key,
            "derived": q.derived.delete_by_key,
            "manifests": q.manifests.delete_by_key,
            "series": q.series.delete_by_key,
        }
        with conn.transaction():
            for kind, statement in deletes.items():
                keys = [k for k in gone if k.kind == kind]
                if keys:
                    conn.execute(
                        statement, ([k.key for k in keys], [k.experiment_id for k in keys])
                    )
            if synced is None:
                return
            scope, present = synced
            listed = sorted(found.union(present))
            conn.execute(q.experiments.touch_many, (listed,))
            if scope is None:
                conn.execute(q.experiments.forget_unlisted, (listed,))
                for statement in q.meta.mark_all_synced:
                    conn.execute(statement)
            else:
                conn.execute(q.experiments.mark_synced, (scope,))

    def get(
        self, kind: Literal["runs", "derived"], key: str, experiment_id: str | None
    ) -> bytes | None:
        """Return the stored bytes of one run record or derived-metrics document, or ``None``.

        Args:
            kind: ``"runs"`` or ``"derived"``.
            key: The run id.
            experiment_id: Only a document of this experiment; ``None`` for any.
        """
        group = self._sql.runs if kind == "runs" else self._sql.derived

        def work(conn: Connection) -> bytes | None:
            cur = conn.lookup_cursor()
            if experiment_id is None:
                cur.execute(group.get, (key,))
            else:
                cur.execute(group.get_in, (key, experiment_id))
            row = cur.fetchone()
            return None if row is None else row[0]

        return self.run(work)

    def documents(self, kind: DocumentKind, experiment_id: str | None) -> list[tuple[str, bytes]]:
        """Return ``(key, stored bytes)`` of every document of ``kind``, in one query.

        Manifests come oldest submission first; the rest in no particular order.
        """
        q = self._sql
        group = q.runs if kind == "runs" else q.derived if kind == "derived" else q.manifests
        every, one = group.list_all, group.list_in

        def work(conn: Connection) -> list[tuple[str, bytes]]:
            if experiment_id is None:
                cur = conn.execute(every, binary=True)
            else:
                cur = conn.execute(one, (experiment_id,), binary=True)
            return [(row[0], row[1]) for row in cur.fetchall()]

        return self.run(work)

    def experiments(self, experiment_id: str | None = None) -> list[str]:
        """Return the indexed experiments (only ``experiment_id``, if given), sorted."""
        q = self._sql.experiments

        def work(conn: Connection) -> list[str]:
            if experiment_id is None:
                return [r[0] for r in conn.execute(q.list_all)]
            return [r[0] for r in conn.execute(q.listed, (experiment_id,))]

        return self.run(work)

    def query(self, query: Query, experiment_id: str | None) -> list[tuple[str, bytes]]:
        """Return ``(run_id, stored record)`` of the runs matching ``query``, in its order.

        The query is compiled to one ``SELECT`` (:mod:`metalab.query.sql`), with every
        value passed as a parameter; the rare query that SQL cannot answer exactly
        (:func:`~metalab.query.sql.answerable`) is evaluated by the Python engine over
        the indexed documents instead.
        """
        if not answerable(query):
            return self._query_in_python(query, experiment_id)
        top = _top_k(query, experiment_id)
        if top is not None and self._sort_kept is not False:
            found = self._query_top_k(query, experiment_id, top)
            if found is not None:
                return found
        statement, params = compile_select(
            query, schema=self._schema, experiment_id=experiment_id, columns=_RUN_AND_DOC
        )

        def work(conn: Connection) -> list[tuple[str, bytes]]:
            cur = conn.execute(statement, params, binary=True)
            return [(row[0], row[1]) for row in cur.fetchall()]

        return self.run(work)

    def _query_top_k(
        self, query: Query, experiment_id: str | None, top: _TopK
    ) -> list[tuple[str, bytes]] | None:
        """Answer a query sorted on a metric from the metric's kept order, if it can.

        The candidates are the runs with the best values of the metric (every run
        tied with the last one included), in the ``sort_values`` index order. When at
        least ``offset + limit`` of them match, the page holds exactly the runs the
        whole query would: every other match sorts after them. Otherwise the window
        is widened once, then the whole query answers (``None``). The first such
        query on an experiment and metric keeps its order (see ``sort_values``);
        a role that may not write the index answers every query the whole way.
        """
        q = self._sql.sort
        assert query.limit is not None
        wanted = query.offset + query.limit
        statement, params = compile_select(
            query,
            schema=self._schema,
            experiment_id=experiment_id,
            columns=_RUN_AND_DOC,
            among=q.candidates[top.descending],
        )

        def work(conn: Connection) -> list[tuple[str, bytes]] | None:
            key = (top.experiment_id, top.metric)
            if conn.execute(q.is_kept, key).fetchone() is None:
                try:
                    with conn.transaction():
                        # Writers in flight finish first, and new ones wait: none
                        # can write a run between the copy and the kept metric.
                        conn.execute(q.lock_runs)
                        if conn.execute(q.keep, key).fetchone() is not None:
                            conn.execute(q.fill, {"e": top.experiment_id, "m": top.metric})
                            conn.execute(q.analyze)
                except (errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction):
                    self._sort_kept = False
                    return None
            for size in (max(_TOP_K_WINDOW, 4 * wanted), 16 * max(_TOP_K_WINDOW, 4 * wanted)):
                args = params | {"sort_e": top.experiment_id, "sort_m": top.metric, "sort_n": size}
                rows = conn.execute(statement, args, binary=True).fetchall()
                if len(rows) == query.limit:
                    return [(row[0], row[1]) for row in rows]
            return None

        return self.run(work)

    def _query_in_python(self, query: Query, experiment_id: str | None) -> list[tuple[str, bytes]]:
        docs = dict(self.documents("runs", experiment_id))
        source = f"postgres index {self._schema!r}.runs"
        records = [_codec.RUN_RECORD.decode(doc, source=source) for doc in docs.values()]
        derived: dict[str, Mapping[str, MetricValue]] = {}
        if query.uses_namespace("derived"):
            decode = _codec.DERIVED.decode
            derived = {
                run_id: decode(doc, source=f"postgres index {self._schema!r}.derived").metrics
                for run_id, doc in self.documents("derived", experiment_id)
            }
        chosen = select(records, query, lambda r: derived.get(r.run_id))
        return [(r.run_id, docs[r.run_id]) for r in chosen]

    def fields(self, experiment_id: str) -> list[FieldInfo]:
        """Return the field catalog of an experiment, with every write it can see folded in.

        Writes log what they changed (``catalog_changes``); a read folds the values of
        the changed runs only, and recomputes the whole catalog only when a write
        took a value away (a delete, a changed or removed value) or after a sync.

        Samples are the smallest distinct values in the order described at
        :class:`~metalab.query.FieldInfo` (whatever the database's collation), among
        the experiment's first :data:`~metalab.query.CATALOG_SAMPLE_RUNS` runs
        by run id; non-finite floats in their escaped form (``{"$float": "NaN"}``).
        """
        q = self._sql

        def work(conn: Connection) -> list[FieldInfo]:
            args = {"e": experiment_id, "n": CATALOG_SAMPLES, "k": CATALOG_SAMPLE_RUNS}
            with conn.transaction():
                # FOR UPDATE: writes in flight commit first (they hold FOR SHARE).
                found = conn.execute(q.catalog.lock, (experiment_id,)).fetchone()
                whole = found is not None and bool(found[0])
                if found is not None and not whole:
                    create, take, analyze = q.catalog.take
                    conn.execute(create)
                    conn.execute(take, args)
                    conn.execute(analyze)
                    whole = _fold_costs_more(conn, q.catalog, experiment_id)
                    if not whole:
                        folded = conn.execute(q.catalog.fold, args).fetchone()
                        assert folded is not None
                        whole = bool(folded[0])
                        if not whole and folded[1] and folded[2]:
                            conn.execute(q.catalog.refresh_samples, args)
                if whole:
                    conn.execute(q.catalog.delete, (experiment_id,))
                    conn.execute(q.catalog.refresh, args)
                    conn.execute(q.catalog.clean, (experiment_id,))
            cur = conn.cursor(row_factory=class_row(FieldInfo))
            return [_from_index(info) for info in cur.execute(q.catalog.read, (experiment_id,))]

        return self.run(work)

    def summary(self, experiment_id: str | None) -> dict[str, RunSummary]:
        """Return the run counts by status of the indexed experiments (only one, if given).

        One index-only scan of ``runs (experiment_id, status) INCLUDE (started_at,
        finished_at, tags)``: no record is read. Groups come per status and distinct
        tag list, and are folded here.
        """
        query = self._sql.runs.summary[experiment_id is not None]

        def work(conn: Connection) -> list[tuple[Any, ...]]:
            args = (experiment_id,) if experiment_id is not None else None
            return conn.execute(query, args).fetchall()

        groups = (
            (eid, status, [text_from_index(t) for t in tags], count, last)
            for eid, status, tags, count, last in self.run(work)
        )
        return summarize_groups(groups, experiment_id)

    def states(self, kind: DocumentKind, experiment_id: str | None) -> dict[str, FileState | None]:
        """Return ``key -> file state`` of the indexed documents of ``kind``.

        Args:
            kind: ``"runs"`` and ``"derived"`` (keyed by run id) or ``"manifests"``
                (keyed by file name).
            experiment_id: Only this experiment's documents; ``None`` for all.
        """
        query = self._sql.file_states[kind][experiment_id is not None]

        def work(conn: Connection) -> dict[str, FileState | None]:
            cur = conn.execute(query, (experiment_id,) if experiment_id is not None else None)
            return {
                r[0]: None if r[1] is None or r[2] is None else FileState(r[1], r[2]) for r in cur
            }

        return self.run(work, force=True)

    def rebuild(
        self,
        read: Callable[[DocumentKind], Iterable[Document]],
        *,
        scope: str | None,
        experiments: Iterable[str],
        progress: ProgressCallback | None = None,
        file_root: str | None = None,
    ) -> int:
        """Replace the index (or one experiment's part of it) in one transaction.

        The new rows are streamed with binary ``COPY`` into tables beside the live
        ones, which are swapped in at the end; readers see the old index until the
        commit and never an empty or partial one. Rows that writers changed while
        the rebuild ran are carried over. If anything fails, or the process dies,
        the transaction rolls back and the old index stays as it was.

        A whole rebuild fills the derived metrics' new table on a second connection
        (its own transaction, committed before the swap) while the first copies the
        rest and builds their indexes. A rebuild that dies after that commit leaves
        the ``derived__rebuild`` table behind, used by nothing; the next rebuild
        replaces it.

        Args:
            read: The documents of a kind, as read from the files.
            scope: The experiment being rebuilt, or ``None`` for the whole index.
            experiments: The experiments that have a directory in the files.
            progress: Called as ``progress(done, total)`` while runs are copied.
            file_root: Record this as the root of the files the index covers, in the
                same transaction (the files moved there); only with ``scope`` ``None``.

        Returns:
            The number of runs indexed.
        """
        if file_root is not None and scope is not None:
            raise ConfigError("a new file_root is recorded by a rebuild of the whole index")
        q = self._sql
        found = set(experiments)
        suffix = ddl.REBUILD_SUFFIX
        beside = (ddl.DERIVED,)  # built on a second connection, at the same time
        own = tuple(spec for spec in ddl.TABLES if spec not in beside)

        def runs(docs: Iterable[Document]) -> Iterator[RunRow]:
            for doc in docs:
                row = run_row(doc)
                found.add(row.experiment_id)
                yield row

        def manifests() -> Iterator[ManifestRow]:
            for doc in read("manifests"):
                row = manifest_row(doc)
                found.add(row.experiment_id)
                yield row

        def copy_runs(conn: Connection, into: CopyIn) -> int:
            # The files are listed only now, after ``started``: see RecordIndex.rebuild.
            # The listing holds every run's file name (some 120 MB at a million runs)
            # and goes with this frame, before the derived metrics are listed.
            docs = read("runs")
            total = len(docs) if isinstance(docs, Sized) else None
            return _copy(conn, into, runs(docs), total, progress)

        def copy_derived(conn: Connection, into: CopyIn, stop: threading.Event) -> None:
            rows = _until(stop, map(derived_row, read("derived")))
            _copy(conn, into, rows, None, None)

        def copy_others(conn: Connection, into: tuple[CopyIn, ...]) -> None:
            _copy(conn, into[2], manifests(), None, None)
            files: list[SeriesRow] = []

            def chunks() -> Iterator[tuple[object, ...]]:
                # The points stream into one COPY; the files' rows (one per run) wait.
                for doc in read("series"):
                    found = series_rows(doc, 0)
                    generation = found.generation or ""
                    files.append(series_row(doc, found.points, found.chunks, generation))
                    yield from found.rows

            _copy(conn, into[4], chunks(), None, None)
            _copy(conn, into[3], files, None, None)

        def build_beside(conn: Connection, stop: threading.Event) -> None:
            # On a connection of its own, committed before the swap: a rebuild killed
            # after this commit leaves the table behind, unused; the next one drops it.
            with conn.transaction():
                for statement in ddl.drop_tables(self._schema, suffix, tables=beside):
                    conn.execute(statement)
                for statement in ddl.create_tables(self._schema, suffix, beside):
                    conn.execute(statement)
                copy_derived(conn, q.rebuild.copy_new[1], stop)
                for statement in ddl.create_indexes(self._schema, suffix, tables=beside):
                    conn.execute(statement)

        def work(conn: Connection) -> int:
            with conn.transaction():
                # Read committed whatever the server's default: the table built beside
                # is committed after this transaction began, and must be seen.
                conn.execute(q.rebuild.read_committed)
                conn.execute(q.meta.lock, (ddl.lock_key(self._schema) + ":rebuild",))
                started = conn.execute(q.rebuild.now).fetchone()
                assert started is not None
                trigram = _has_trigram(conn)
                # A scope that is the whole index is rebuilt beside it and swapped in
                # (much faster than replacing rows under live indexes).
                whole = scope is None or not _fetch_bool(conn, q.rebuild.others_exist, {"e": scope})
                if whole:
                    for statement in ddl.drop_tables(self._schema, suffix, tables=own):
                        conn.execute(statement)
                    for statement in ddl.create_tables(self._schema, suffix, own):
                        conn.execute(statement)
                    count = copy_runs(conn, q.rebuild.copy_new[0])
                    # The derived metrics are read and copied (Python's work) while
                    # this connection's server process builds the indexes.
                    with _beside(self._db, build_beside):
                        copy_others(conn, q.rebuild.copy_new)
                        for statement in ddl.create_indexes(
                            self._schema, suffix, trigram=trigram, tables=own
                        ):
                            conn.execute(statement)
                    conn.execute(q.rebuild.lock_live)
                    for statement in q.rebuild.carry_over:
                        conn.execute(statement, (started[0],))
                    conn.execute(q.rebuild.analyze_new)
                    for statement in ddl.swap_in(self._schema, suffix, trigram=trigram):
                        conn.execute(statement)
                    self._create_triggers(conn)
                else:
                    for statement in q.rebuild.create_stages:
                        conn.execute(statement)
                    count = copy_runs(conn, q.rebuild.copy_stage[0])
                    copy_derived(conn, q.rebuild.copy_stage[1], threading.Event())
                    copy_others(conn, q.rebuild.copy_stage)
                    for statement in q.rebuild.replace_scope:
                        conn.execute(statement, (scope, started[0]))
                    for statement in q.rebuild.insert_scope:
                        conn.execute(statement)
                conn.execute(q.experiments.touch_many, (sorted(found),))
                if scope is None:
                    conn.execute(q.meta.mark_rebuilt)
                if file_root is not None:
                    conn.execute(q.meta.set_file_root, (file_root,))
                else:
                    conn.execute(q.experiments.mark_synced, (scope,))
            return count

        return self.run(work, force=True, retry=False)


_VALUES: Final = msgspec.json.Decoder(list[MetricValue])

_EXPERIMENT_FIELD: Final = Field("record", ("experiment_id",))
_TOP_K_WINDOW: Final = 256
"""The fewest candidates a top-k query sorted on a kept metric reads."""


@dataclasses.dataclass(frozen=True)
class _TopK:
    """A query the kept order of a metric can answer: its experiment and first sort key."""

    experiment_id: str
    metric: str
    descending: bool


def _top_k(query: Query, scope: str | None) -> _TopK | None:
    """The experiment and metric of a windowed query sorted first on a metric, if any.

    The experiment is the store's scope or an ``experiment_id == ...`` term of the
    filter's top-level conjunction; without one, there is no kept order to read.
    """
    if not query.limit or not query.order_by:
        return None  # no window (or an empty one): nothing to read in order
    first = query.order_by[0]
    if first.field.namespace != "metrics":
        return None
    experiment_id = scope
    if experiment_id is None:
        terms = query.where.items if isinstance(query.where, And) else (query.where,)
        for term in terms:
            if (
                isinstance(term, Compare)
                and term.op == "=="
                and term.field == _EXPERIMENT_FIELD
                and isinstance(term.value, str)
            ):
                experiment_id = term.value
                break
    if experiment_id is None:
        return None
    return _TopK(experiment_id, index_text(first.field.path[0]), first.descending)


_FOLD_ALWAYS: Final = 1000
"""Changed runs a catalog read always folds (above, it compares with the experiment)."""


def _fold_costs_more(conn: Connection, q: CatalogStatements, experiment_id: str) -> bool:
    """Whether recomputing the catalog is cheaper than folding the changed runs in.

    Folding reads a changed run's values twice (as they were, as they are) and
    compares them, several times the cost of a run in a whole recompute: past a
    quarter of the experiment, the recompute wins.
    """
    taken = conn.execute(q.taken).fetchone()
    changed = 0 if taken is None else int(taken[0])
    if changed <= _FOLD_ALWAYS:
        return False
    total = conn.execute(q.runs, (experiment_id,)).fetchone()
    return total is not None and changed * 4 > int(total[0])


def _values(nums: list[float | None], others: list[str | None]) -> list[MetricValue]:
    """The values of points: ``other`` (JSON text) where set, else ``num``."""
    texts = [text for text in others if text is not None]
    decoded = iter(_VALUES.decode("[" + ",".join(texts) + "]"))
    return [
        next(decoded) if text is not None else cast(float, num)
        for num, text in zip(nums, others, strict=True)
    ]


_ARRAY_HEADER: Final = struct.Struct(">iiIii")


def _numpy_array(np: Any, data: bytes, code: str) -> Any:
    """A one-dimensional array without NULLs, from its binary form; else ``None``.

    The form (``array_send``): dimensions, a has-NULLs flag, the element type, each
    dimension's size and lower bound, then every element as its length and bytes.
    """
    if len(data) < _ARRAY_HEADER.size:
        return np.empty(0, dtype=code)  # no dimensions: an empty array
    ndim, has_nulls, _type, size, _lower = _ARRAY_HEADER.unpack_from(data)
    if ndim != 1 or has_nulls:
        return None
    layout = np.dtype([("length", ">i4"), ("value", ">" + code)])
    items = np.frombuffer(data, dtype=layout, count=size, offset=_ARRAY_HEADER.size)
    return items["value"].astype(code)


def _sorted_by_step(np: Any, chunks: list[tuple[Any, Any, Any]]) -> SeriesArrays:
    """One series from its chunks in logging order, sorted by step (stably)."""
    if len(chunks) == 1:
        steps, values, seconds = chunks[0]
    else:
        steps, values, seconds = (np.concatenate(c) for c in zip(*chunks, strict=True))
    if len(steps) > 1 and bool((steps[1:] < steps[:-1]).any()):
        order = np.argsort(steps, kind="stable")
        steps, values, seconds = steps[order], values[order], seconds[order]
    return SeriesArrays(steps, values, seconds_to_micros(seconds))


def _from_index(info: FieldInfo) -> FieldInfo:
    """A catalog entry with its key and sampled strings out of their index form."""
    return dataclasses.replace(
        info, field=text_from_index(info.field), samples=[_json_from_index(s) for s in info.samples]
    )


def _json_from_index(value: object) -> object:
    if isinstance(value, str):
        return text_from_index(value)
    if isinstance(value, list):
        return [_json_from_index(v) for v in value]
    if isinstance(value, dict):
        return {text_from_index(k): _json_from_index(v) for k, v in value.items()}
    return value


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


@contextlib.contextmanager
def _beside(db: Database, fn: Callable[[Connection, threading.Event], None]) -> Iterator[None]:
    """Run ``fn`` on a connection of its own, in a thread, while the block runs.

    Leaving the block waits for ``fn`` and raises what it raised. If the block
    raises, ``fn`` is stopped (the event it was given is set and its statement
    cancelled, so its transaction rolls back) and the block's error is raised.
    """
    conn = db.connect()
    stop = threading.Event()
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="metalab-rebuild") as pool:
            done = pool.submit(fn, conn, stop)
            try:
                yield
            except BaseException:
                stop.set()
                conn.cancel_safe()
                raise
            done.result()
    finally:
        conn.close()


class _Stopped(Exception):
    """Work beside a failed rebuild was told to stop."""


def _until(stop: threading.Event, rows: Iterable[T]) -> Iterator[T]:
    """``rows``, raising :class:`_Stopped` as soon as ``stop`` is set."""
    for row in rows:
        if stop.is_set():
            raise _Stopped
        yield row
