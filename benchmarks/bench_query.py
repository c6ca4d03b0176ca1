"""Queries: filters and the field catalog, through the Postgres index and through the files.

Workload operation 7 and the query language's benchmark, on ``n`` workload runs of one
experiment, each with its derived metrics, in a FileStore and in a PostgresStore over
the same files (the index built by ``rebuild_index()``, untimed). Every subject of an
operation is timed alternately in each repeat:

- ``query.filter``: the users' everyday question, one param equality, one metric
  range, sorted by a metric, top 20 (``FILTER`` below): ``query_runs`` on the
  PostgresStore (compiled to one SQL ``SELECT`` on the index) and on the FileStore
  (evaluated in Python over every record file, its query cache moved aside), the
  FileStore asked the same query again (answered from its query cache); next to "load everything, filter in
  Python" through the index (``list_run_records`` + :func:`metalab.query.select`),
  what a store without a query engine offers (the original metalab: 9.6 s through its
  index, 6.4 s through its files at 100,000 runs on this machine), and the anchors:
  the same filter written by hand in SQL on the index's own table, fetching the same
  20 documents, and a bare read of every record file;
- ``query.by_status`` and ``query.by_param``: ``status == "failed"`` (none in the
  workload: finding a sweep's failures) and ``params.optimizer == "adam"`` (a quarter
  of the runs, every record decoded and returned);
- ``query.fields``: ``store.fields(experiment)``, the field catalog (names, types,
  counts, ranges, samples); on the index steady (catalog up to date) and after a write
  (one record re-put before each repeat, so the catalog is refreshed in the timed call);
- ``query.list_experiments``: on the index, and on the files of a collection.

Per-item costs are per stored run (``N``), whatever the number of matches.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks import _workload
from benchmarks._anchors import bare_read_dirs
from benchmarks._harness import Measurement, Report, time_interleaved, without_files
from benchmarks._postgres import drop_schema, postgres_server, settings
from metalab.query import Query, build_query, select
from metalab.store import FileStore, FileStoreConfig, PostgresStore, PostgresStoreConfig
from metalab.store._query_cache import QUERY_CACHE_NAME
from metalab.store._records_snapshot import RACY_SECONDS

EXP = _workload.EXPERIMENT_ID
SCHEMA = "metalab_bench_query"
FILTER = "params.optimizer == 'adam' and metrics.m00 >= 0.25 and metrics.m00 < 0.75"
ORDER = "-metrics.m01"
LIMIT = 20

INDEX = "metalab PostgresStore (SQL on the index)"
FILES = "metalab FileStore (Python over the files)"
FILES_AGAIN = "metalab FileStore, same query again (query cache)"
LOAD_ALL = "load all via the index, filter in Python"
RAW_SQL = "hand-written SQL, same filter, same rows"
BARE = "bare read of every record file"
ORIGINAL = "original metalab 0.1 (load all, filter): 9.6 s index, 6.4 s files at 100,000"

RAW_FILTER = sql.SQL(
    """
    SELECT run_id, doc FROM {runs}
    WHERE experiment_id = %(e)s AND params @> %(p)s::jsonb
      AND (metrics ->> 'm00')::float8 >= 0.25 AND (metrics ->> 'm00')::float8 < 0.75
    ORDER BY (metrics ->> 'm01')::float8 DESC NULLS LAST, run_id
    LIMIT 20
    """
)


def _measure(
    report: Report,
    operation: str,
    n: int,
    repeat: int,
    subjects: dict[str, Callable[[], object]],
    baselines: dict[str, str | tuple[str, ...]],
    notes: dict[str, str],
    setup: Callable[[], object] | None = None,
) -> None:
    """Time ``subjects`` interleaved; ``baselines`` names what each is compared with."""
    timings = time_interleaved(subjects, repeat=repeat, setup=setup)
    for name, seconds in timings.items():
        against = baselines.get(name, ())
        first, *also = (against,) if isinstance(against, str) else against or (None,)
        report.add(
            Measurement(operation, name, n, seconds, first, notes.get(name, ""), tuple(also))
        )


def _check(operation: str, answers: dict[str, int]) -> None:
    if len(set(answers.values())) != 1:
        raise RuntimeError(f"{operation}: the subjects disagree: {answers}")


def run(report: Report, *, n: int, repeat: int) -> None:
    """Measure the queries at ``n`` runs."""
    with postgres_server() as url, tempfile.TemporaryDirectory(prefix="metalab-bench-") as tmp:
        root = Path(tmp) / "files"
        files_config = FileStoreConfig(root=str(root), experiment_id=EXP)
        with files_config.connect() as files:
            files.put_run_records(_workload.records(n))
            for i in range(n):
                files.put_derived(_workload.run_id(i), _workload.derived(i).metrics)
        time.sleep(RACY_SECONDS)  # a directory this young gets no query cache
        drop_schema(url, SCHEMA)
        pg_config = PostgresStoreConfig(
            connection_string=url, file_root=str(root), schema=SCHEMA, experiment_id=EXP
        )
        try:
            with (
                pg_config.connect() as index,
                files_config.connect() as files,
                FileStoreConfig(root=str(root)).connect() as collection,
                psycopg.connect(url) as raw,
            ):
                index.rebuild_index()
                server = settings(url)
                _filters(report, n, repeat, index, files, raw, root, server)
                _catalog(report, n, repeat, index, files, collection)
        finally:
            drop_schema(url, SCHEMA)


def _filters(
    report: Report,
    n: int,
    repeat: int,
    index: PostgresStore,
    files: FileStore,
    raw: psycopg.Connection[tuple[object, ...]],
    root: Path,
    server: str,
) -> None:
    query = build_query(FILTER, ORDER, LIMIT)
    statement = RAW_FILTER.format(runs=sql.Identifier(SCHEMA, "runs"))
    runs_dir = root / "bench_1.0" / "runs"

    def uncached(fn: Callable[[], object]) -> Callable[[], object]:
        return without_files(runs_dir.parent, (QUERY_CACHE_NAME,), fn)

    def raw_filter() -> list[tuple[object, ...]]:
        return raw.execute(statement, {"e": EXP, "p": '{"optimizer": "adam"}'}).fetchall()

    answers = {
        INDEX: [r.run_id for r in index.query_runs(query)],
        FILES: [r.run_id for r in files.query_runs(query)],
        FILES_AGAIN: [r.run_id for r in files.query_runs(query)],
        LOAD_ALL: [r.run_id for r in select(index.list_run_records(EXP), query)],
        RAW_SQL: [str(row[0]) for row in raw_filter()],
    }
    if len({tuple(ids) for ids in answers.values()}) != 1:
        raise RuntimeError(f"query.filter: the subjects disagree: {answers}")
    matches = len(select(index.list_run_records(EXP), Query(where=query.where)))
    _measure(
        report,
        "query.filter",
        n,
        repeat,
        {
            RAW_SQL: raw_filter,
            INDEX: lambda: index.query_runs(query),
            LOAD_ALL: lambda: select(index.list_run_records(EXP), query),
            BARE: lambda: bare_read_dirs(str(runs_dir)),
            FILES: uncached(lambda: files.query_runs(query)),
            FILES_AGAIN: lambda: files.query_runs(query),
        },
        {INDEX: (RAW_SQL, LOAD_ALL), FILES: (BARE, LOAD_ALL), FILES_AGAIN: (FILES, BARE)},
        {
            RAW_SQL: server,
            INDEX: f"top {LIMIT} of {matches:,} matches",
            LOAD_ALL: ORIGINAL,
            FILES: f"top {LIMIT} of {matches:,} matches",
            FILES_AGAIN: f"top {LIMIT} of {matches:,} matches",
        },
    )

    for operation, text in (
        ("query.by_status", "status == 'failed'"),
        ("query.by_param", "params.optimizer == 'adam'"),
    ):
        q = build_query(text)
        _check(operation, {INDEX: len(index.query_runs(q)), FILES: len(files.query_runs(q))})
        found = len(index.query_runs(q))
        _measure(
            report,
            operation,
            n,
            repeat,
            {INDEX: partial(index.query_runs, q), FILES: uncached(partial(files.query_runs, q))},
            {INDEX: FILES},
            {INDEX: f"{text}: {found:,} runs", FILES: f"{text}: {found:,} runs"},
        )


def _catalog(
    report: Report,
    n: int,
    repeat: int,
    index: PostgresStore,
    files: FileStore,
    collection: FileStore,
) -> None:
    fields = len(index.fields(EXP))
    _check("query.fields", {INDEX: fields, FILES: len(files.fields(EXP))})
    note = f"{fields} fields"
    _measure(
        report,
        "query.fields",
        n,
        repeat,
        {INDEX: lambda: index.fields(EXP), FILES: lambda: files.fields(EXP)},
        {INDEX: FILES},
        {INDEX: f"{note}; catalog up to date", FILES: note},
    )
    first = _workload.record(0)
    refreshed = "metalab PostgresStore, catalog refreshed after a write"
    _measure(
        report,
        "query.fields",
        n,
        repeat,
        {refreshed: lambda: index.fields(EXP)},
        {refreshed: FILES},
        {refreshed: f"{note}; one record re-put before each repeat"},
        setup=lambda: index.put_run_record(first),
    )
    _check(
        "query.list_experiments",
        {INDEX: len(index.list_experiments()), FILES: len(collection.list_experiments())},
    )
    _measure(
        report,
        "query.list_experiments",
        n,
        repeat,
        {INDEX: index.list_experiments, FILES: collection.list_experiments},
        {INDEX: FILES},
        {FILES: "a collection root"},
    )
