"""PostgresStore: rebuild, bulk put, single put, get by id and list, next to a raw COPY.

The server is ``$METALAB_BENCH_POSTGRES_URL`` if set, else an embedded throwaway
``pgserver`` (default settings: fsync and synchronous commit on). Measured at ``n``
records of the shared workload in one experiment, each with its derived metrics:

- rebuild: ``rebuild_index()`` of a store whose files hold the ``n`` records, run in a
  fresh child process per repeat so that its peak RSS (``VmHWM`` of that process:
  interpreter, libraries and the rebuild) can be reported; the anchor, in the same
  operation, is a raw binary ``COPY`` of the very same rows (same columns, same bytes)
  into a bare table with no index, from rows already in memory; then again with the
  experiment's records snapshot current (``snapshot_records()``), which the rebuild
  reads instead of the files whose state it recorded;
- bulk put: ``put_run_records`` of the ``n`` records into a fresh store (files and
  index), next to its two parts alone: the FileStore's ``put_run_records`` and the
  index's ``write`` of the documents (rows extracted from the encoded records, binary
  ``COPY`` into a staging table, then one merge);
- single put: ``put_run_record`` one by one (files, then one upsert), next to its
  two parts alone and to the physical anchor, a bare single-row ``INSERT`` of the same
  values per autocommit statement into a table without indexes; at most 2,000
  records. With synchronous commit on (PostgreSQL's default), every commit waits for
  one WAL flush, which bounds all three from below;
- get: 10,000 ``get_run_record`` of random ids (index only, the files are not read),
  next to a raw ``SELECT doc`` by key on an open connection, per autocommit
  statement (as a pooled get runs) and all in one transaction;
- list: ``list_run_records(experiment)`` of all ``n`` records, next to a raw binary
  ``COPY ... TO STDOUT`` of their bytes and to a raw ``SELECT`` whose rows are
  decoded by the record codec alone (the floor for records as Python objects).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks import _workload
from benchmarks._harness import Measurement, Report, time_interleaved, time_repeats
from benchmarks._postgres import drop_schema, postgres_server, settings
from metalab import _codec
from metalab.store import (
    FileStore,
    FileStoreConfig,
    PostgresIndex,
    PostgresStore,
    PostgresStoreConfig,
)
from metalab.store._documents import Document, FileState
from metalab.store._postgres_rows import run_row
from metalab.store._postgres_schema import RUNS, RunRow
from metalab.store._records_snapshot import RACY_SECONDS

EXP = _workload.EXPERIMENT_ID
SCHEMA = "metalab_bench"
GETS = 10_000
SINGLE_MAX = 2_000

STORE = "metalab PostgresStore"
FROM_SNAPSHOT = "metalab PostgresStore, records snapshot current"
INDEX_ONLY = "PostgresIndex alone (no files)"
FILES_ONLY = "FileStore alone (no index)"
BARE_INSERT = "bare INSERT per row, autocommit, no index"
ANCHOR = "raw binary COPY, bare table"
GET_TX = "raw SELECT by key, one transaction"
GET_AUTO = "raw SELECT by key, autocommit"
LIST_COPY = "raw binary COPY TO STDOUT (bytes only)"
LIST_DECODE = "raw SELECT + bare decode of each record"

_RUN_COLUMNS = RUNS.row_names
_RUN_TYPES = RUNS.copy_types
# The runs table's columns with no key, default or index: the floor under any insert.
_BARE_TABLE = sql.SQL("CREATE TABLE metalab_bench_bare ({})").format(RUNS.stage_definition())

# Peak RSS is read from /proc/self/status (VmHWM, this process's own address space):
# Linux carries the parent's high-water mark into ru_maxrss across vfork + exec, so
# ru_maxrss would report the benchmark's memory, not the rebuild's.
_REBUILD_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from metalab.store import parse_to_config

    with parse_to_config(sys.argv[1]).connect() as store:
        start = time.perf_counter()
        count = store.rebuild_index()
        seconds = time.perf_counter() - start
    try:
        with open("/proc/self/status") as status:
            peak = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "count": count, "peak_kib": peak}))
    """
)


def _config(url: str, root: Path, schema: str) -> PostgresStoreConfig:
    return PostgresStoreConfig(
        connection_string=url, file_root=str(root), schema=schema, experiment_id=EXP
    )


def _documents(n: int) -> list[Document]:
    """Run records as a FileStore hands them to its index (encoded, with a file state)."""
    docs = []
    for record in _workload.records(n):
        data = _codec.RUN_RECORD.encode(record)
        state = FileState(0, len(data))
        docs.append(Document("runs", record.run_id, EXP, data, state, "<bench>"))
    return docs


def _rows(n: int) -> list[RunRow]:
    return [run_row(doc) for doc in _documents(n)]


def _raw_copy(url: str, rows: list[RunRow]) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS metalab_bench_bare")
        conn.execute(_BARE_TABLE)
        conn.commit()
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in _RUN_COLUMNS)
        statement = sql.SQL("COPY metalab_bench_bare ({}) FROM STDIN (FORMAT BINARY)").format(
            columns
        )
        with conn.cursor().copy(statement) as copy:
            copy.set_types(_RUN_TYPES)
            for row in rows:
                copy.write_row(row)
        conn.commit()


def _time_anchor(url: str, n: int, repeat: int) -> tuple[float, ...]:
    rows = _rows(n)
    return time_repeats(lambda: _raw_copy(url, rows), repeat=repeat)


def _rebuild_in_child(config: PostgresStoreConfig, n: int) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", _REBUILD_CHILD, config.to_locator()],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    if result["count"] != n:
        raise RuntimeError(f"rebuild indexed {result['count']} records, expected {n}")
    return float(result["seconds"]), result["peak_kib"] / 1024


def run(report: Report, *, n: int, repeat: int) -> None:
    """Measure the index operations at ``n`` records."""
    with postgres_server() as url, tempfile.TemporaryDirectory(prefix="metalab-bench-") as tmp:
        root = Path(tmp) / "files"
        with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
            files.put_run_records(_workload.records(n))
            for i in range(n):
                files.put_derived(_workload.run_id(i), _workload.derived(i).metrics)
        config = _config(url, root, SCHEMA)
        drop_schema(url, SCHEMA)

        anchor = _time_anchor(url, n, repeat)
        server = settings(url)
        report.add(
            Measurement("postgres.rebuild", ANCHOR, n, anchor, notes=f"rows in memory; {server}")
        )
        _rebuilds(
            report,
            config,
            n,
            repeat,
            STORE,
            "from files, with derived metrics; peak RSS {peak:.0f} MiB (VmHWM of the "
            "rebuilding process: interpreter, libraries and rebuild)",
        )
        time.sleep(RACY_SECONDS)  # files younger than this stay out of a snapshot
        with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as files:
            files.snapshot_records()
        _rebuilds(
            report,
            config,
            n,
            repeat,
            FROM_SNAPSHOT,
            "records and derived metrics read from the snapshot; peak RSS {peak:.0f} MiB",
        )

        with config.connect() as store:
            _gets_and_lists(report, url, server, store, n, repeat)

        _bulk(report, url, Path(tmp), n, repeat)
        _single(report, url, Path(tmp), min(n, SINGLE_MAX), repeat)
        drop_schema(url, SCHEMA)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS metalab_bench_bare")


def _rebuilds(
    report: Report, config: PostgresStoreConfig, n: int, repeat: int, subject: str, notes: str
) -> None:
    """Time ``repeat`` rebuilds, each in a fresh child; ``notes`` may name ``{peak}``."""
    rebuilds = [_rebuild_in_child(config, n) for _ in range(repeat)]
    peak = max(rss for _, rss in rebuilds)
    seconds = tuple(seconds for seconds, _ in rebuilds)
    report.add(
        Measurement("postgres.rebuild", subject, n, seconds, ANCHOR, notes.format(peak=peak))
    )


def _gets_and_lists(
    report: Report, url: str, server: str, store: PostgresStore, n: int, repeat: int
) -> None:
    """Gets by id and the list of the experiment, each beside its raw anchors."""
    rng = random.Random(7)
    gets_n = min(GETS, 10 * n)
    run_ids = [_workload.run_id(rng.randrange(n)) for _ in range(gets_n)]
    runs = sql.Identifier(SCHEMA, "runs")
    by_key = sql.SQL("SELECT doc FROM {} WHERE run_id = %s").format(runs)
    every = sql.SQL("COPY (SELECT doc FROM {} WHERE experiment_id = {}) TO STDOUT (FORMAT BINARY)")
    with (
        psycopg.connect(url) as in_tx,
        psycopg.connect(url, autocommit=True) as auto,
    ):
        auto_cursor = auto.cursor(binary=True)

        def select_in_one_transaction() -> None:
            cursor = in_tx.cursor(binary=True)
            for run_id in run_ids:
                cursor.execute(by_key, (run_id,)).fetchone()
            in_tx.commit()

        def select_autocommit() -> None:
            for run_id in run_ids:
                auto_cursor.execute(by_key, (run_id,)).fetchone()

        def copy_out() -> None:
            with auto.cursor().copy(every.format(runs, sql.Literal(EXP))) as copy:
                for _ in copy:
                    pass

        def fetch_and_decode() -> None:
            rows = auto_cursor.execute(
                sql.SQL("SELECT doc FROM {} WHERE experiment_id = %s").format(runs), (EXP,)
            ).fetchall()
            decode = _codec.RUN_RECORD.decode
            kept = [decode(doc) for (doc,) in rows]  # kept, as a list's caller keeps them
            del kept

        gets = time_interleaved(
            {
                GET_TX: select_in_one_transaction,
                GET_AUTO: select_autocommit,
                STORE: lambda: [store.get_run_record(r) for r in run_ids],
            },
            repeat=repeat,
        )
        lists = time_interleaved(
            {
                LIST_COPY: copy_out,
                LIST_DECODE: fetch_and_decode,
                STORE: lambda: store.list_run_records(EXP),
            },
            repeat=repeat,
        )
    for subject in (GET_TX, GET_AUTO):
        report.add(
            Measurement("postgres.get_run_record", subject, gets_n, gets[subject], notes=server)
        )
    report.add(
        Measurement(
            "postgres.get_run_record",
            STORE,
            gets_n,
            gets[STORE],
            GET_TX,
            "distinct random ids; one pooled autocommit SELECT each, decoded",
            also_vs=(GET_AUTO,),
        )
    )
    for subject in (LIST_COPY, LIST_DECODE):
        report.add(Measurement("postgres.list_run_records", subject, n, lists[subject]))
    report.add(
        Measurement(
            "postgres.list_run_records",
            STORE,
            n,
            lists[STORE],
            LIST_COPY,
            "records decoded and checked",
            also_vs=(LIST_DECODE,),
        )
    )


def _fresh(url: str, tmp: Path, name: str) -> PostgresStore:
    schema = f"{SCHEMA}_{name}"
    drop_schema(url, schema)
    root = tmp / name
    shutil.rmtree(root, ignore_errors=True)
    return _config(url, root, schema).connect()


def _fresh_files(tmp: Path, name: str) -> FileStore:
    root = tmp / name
    shutil.rmtree(root, ignore_errors=True)
    return FileStoreConfig(root=str(root), experiment_id=EXP).connect()


def _fresh_index(url: str, name: str) -> PostgresIndex:
    schema = f"{SCHEMA}_{name}"
    drop_schema(url, schema)
    index = PostgresIndex(url, schema=schema)
    index.open()
    return index


class _Opened:
    """The store (or index) a repeat writes to, opened and closed outside the timing."""

    def __init__(self) -> None:
        self.current: PostgresStore | PostgresIndex | FileStore | None = None

    def replace(self, new: PostgresStore | PostgresIndex | FileStore | None) -> None:
        if self.current is not None:
            self.current.close()
        self.current = new


def _bulk(report: Report, url: str, tmp: Path, n: int, repeat: int) -> None:
    records = list(_workload.records(n))
    opened = _Opened()

    def put() -> None:
        assert isinstance(opened.current, PostgresStore)
        opened.current.put_run_records(records)

    timings = time_repeats(
        put, repeat=repeat, setup=lambda: opened.replace(_fresh(url, tmp, "bulk"))
    )
    report.add(
        Measurement("postgres.bulk_put", STORE, n, timings, FILES_ONLY, notes="files + index")
    )

    def put_files() -> None:
        assert isinstance(opened.current, FileStore)
        opened.current.put_run_records(records)

    timings = time_repeats(
        put_files, repeat=repeat, setup=lambda: opened.replace(_fresh_files(tmp, "bulk"))
    )
    report.add(Measurement("postgres.bulk_put", FILES_ONLY, n, timings))
    docs = _documents(n)

    def put_index() -> None:
        assert isinstance(opened.current, PostgresIndex)
        opened.current.write(docs)

    timings = time_repeats(
        put_index, repeat=repeat, setup=lambda: opened.replace(_fresh_index(url, "bulk"))
    )
    opened.replace(None)
    report.add(Measurement("postgres.bulk_put", INDEX_ONLY, n, timings))
    drop_schema(url, f"{SCHEMA}_bulk")


def _single(report: Report, url: str, tmp: Path, n: int, repeat: int) -> None:
    server = settings(url)
    records = list(_workload.records(n))
    opened = _Opened()

    def put() -> None:
        assert isinstance(opened.current, PostgresStore)
        for record in records:
            opened.current.put_run_record(record)

    timings = time_repeats(
        put, repeat=repeat, setup=lambda: opened.replace(_fresh(url, tmp, "single"))
    )
    report.add(
        Measurement(
            "postgres.put_run_record", STORE, n, timings, FILES_ONLY, notes="files + upsert"
        )
    )

    def put_files() -> None:
        assert isinstance(opened.current, FileStore)
        for record in records:
            opened.current.put_run_record(record)

    timings = time_repeats(
        put_files, repeat=repeat, setup=lambda: opened.replace(_fresh_files(tmp, "single"))
    )
    report.add(Measurement("postgres.put_run_record", FILES_ONLY, n, timings))
    docs = _documents(n)

    def put_index() -> None:
        assert isinstance(opened.current, PostgresIndex)
        for doc in docs:
            opened.current.write((doc,))

    timings = time_repeats(
        put_index, repeat=repeat, setup=lambda: opened.replace(_fresh_index(url, "single"))
    )
    opened.replace(None)
    report.add(
        Measurement("postgres.put_run_record", INDEX_ONLY, n, timings, BARE_INSERT, "upsert")
    )
    drop_schema(url, f"{SCHEMA}_single")
    # The jsonb columns as JSON text (the statement casts them).
    values = [
        tuple(
            _json_text(value) if column.type == "jsonb" else value
            for column, value in zip(RUNS.row_columns, row, strict=True)
        )
        for row in map(run_row, docs)
    ]
    timings = time_repeats(lambda: _bare_inserts(url, values), repeat=repeat)
    report.add(Measurement("postgres.put_run_record", BARE_INSERT, n, timings, notes=server))


def _json_text(value: object) -> str:
    """A ``jsonb`` value of a row (its binary form, or ``None``) as JSON text."""
    return bytes(value)[1:].decode() if isinstance(value, bytes) else "{}"


def _bare_inserts(url: str, values: Sequence[tuple[object, ...]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS metalab_bench_bare")
        conn.execute(_BARE_TABLE)
        placeholders = sql.SQL(", ").join(
            sql.SQL("%s::jsonb" if c.type == "jsonb" else "%s") for c in RUNS.row_columns
        )
        statement = sql.SQL("INSERT INTO metalab_bench_bare ({}) VALUES ({})").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in _RUN_COLUMNS), placeholders
        )
        for row in values:
            conn.execute(statement, row)
