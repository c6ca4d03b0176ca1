"""Peers: metalab next to MLflow's tracking stores and the physical anchors, in one run.

Subjects, all holding the same ``n`` workload runs of one experiment:

- metalab ``FileStore``, ``MemoryStore`` and ``PostgresStore`` (files + index);
- MLflow's file store (``MLFLOW_ALLOW_FILE_STORE=true``), its ``SqlAlchemyStore`` on
  SQLite, and its ``SqlAlchemyStore`` on the same PostgreSQL server as metalab
  (``postgresql+psycopg://``, in a schema of its own through ``search_path``);
- physical anchors for the same bytes: bare reads and writes of the metalab record
  files (open/read, temp file + rename), and raw SQL on bare tables (primary key only)
  holding the very rows of metalab's index: ``COPY FROM STDIN``, ``COPY TO STDOUT``,
  ``SELECT`` by key.

MLflow is driven through its tracking *store* API (``FileStore`` / ``SqlAlchemyStore``
methods), not the fluent client, so that the stores themselves are compared; the one
exception is the DataFrame, for which users call ``mlflow.search_runs(...,
output_format="pandas")`` (it pages through the same store). An MLflow run carries
the workload's 10 params (as strings, MLflow's only param type), its 20 metrics plus
the 3 derived metrics (step 0), its two tags and the provenance as tags, status
``FINISHED`` and the start and end times. The artifact descriptors have no
tracking-store counterpart (MLflow lists artifacts from the artifact store) and are
not written to MLflow.

Operations, every subject timed in turn within each repeat (``time_interleaved``):

- ``peers.create``: append ``n / 10`` (at most 500) new runs to the store of ``n``
  runs, one at a time as a sweep finishes them: metalab ``put_run_record`` +
  ``put_derived``;
  MLflow ``create_run`` + ``log_batch`` + ``update_run_info``. Each system runs at its
  defaults: the metalab FileStore does not fsync (``durable=True`` is measured too),
  MLflow's SQLite store commits with SQLite's default ``synchronous=FULL``, and the
  PostgreSQL server keeps ``fsync`` and ``synchronous_commit`` on;
- ``peers.get``: ``min(n, 1,000)`` random gets by run id (the same runs everywhere);
- ``peers.list``: every run of the experiment (MLflow: ``search_runs`` paged by its
  maximum page size, 50,000);
- ``peers.search``: one param equality and one metric range,
  ``params.optimizer == "adam"`` and ``0.25 < metrics.m00 < 0.75`` (metalab:
  ``store.query_runs(query)`` when the store implements ``SupportsQuery``, else
  ``metalab.query.select`` over ``list_run_records``; MLflow: ``search_runs`` with the
  filter string, paging through every result);
- ``peers.frame``: the whole experiment as a pandas DataFrame, with the derived
  metrics (metalab: ``load_results(store, experiment).to_dataframe()``).

Every subject is checked to return the same number of runs for every read.

Filling MLflow stores run by run through the store API takes about 0.05 s (file
store) to 0.2 s (SQLite) per run here, hours at 100,000 runs; so the first run goes
through the API, and the other ``n - 1`` are written directly in the layout that
MLflow wrote for the first one (files, or rows through MLflow's own SQLAlchemy
tables). The direct writer is checked to reproduce the API's run exactly (every file
byte, every row) before it is used. Timed creates always go through the API.

MLflow is measured up to ``n = $METALAB_BENCH_MLFLOW_MAX_N`` (default 10,000); above
that, and when ``mlflow`` is not installed, the suite measures metalab and the
anchors only and says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import os
import random
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import metalab
from benchmarks import _postgres, _workload
from benchmarks._anchors import bare_read, bare_read_dirs
from benchmarks._harness import Measurement, Report, time_interleaved
from metalab import _codec
from metalab.query import F, Query, build_query, select
from metalab.records import DerivedMetrics, RunRecord
from metalab.store import FileStoreConfig, MemoryStoreConfig, PostgresStore, PostgresStoreConfig
from metalab.store._documents import Document, FileState
from metalab.store._postgres_rows import derived_row, run_row
from metalab.store.abc import Store, SupportsBulkPut, SupportsQuery, SupportsWorkingDirectory

EXP = _workload.EXPERIMENT_ID
CREATE_MAX = 500
GETS_MAX = 1_000
MLFLOW_MAX_ENV = "METALAB_BENCH_MLFLOW_MAX_N"
MLFLOW_MAX_DEFAULT = 10_000
#: Schemas on the server get a random suffix per run and are dropped afterwards.
SCHEMA_PREFIX = "bench_peers_"
_FILL_BATCH = 1_000

FILE = "metalab FileStore"
FILE_DURABLE = "metalab FileStore durable=True"
MEMORY = "metalab MemoryStore"
PG = "metalab PostgresStore"
ML_FILE = "MLflow file store"
ML_SQLITE = "MLflow SQLite"
ML_PG = "MLflow PostgreSQL"

#: operation -> (disk anchor, PostgreSQL anchor).
ANCHORS: dict[str, tuple[str, str]] = {
    "peers.create": ("raw disk write (tmp + rename)", "raw COPY FROM STDIN"),
    "peers.get": ("raw disk read (open/read)", "raw SELECT by key"),
    "peers.list": ("raw disk read (all files)", "raw COPY TO STDOUT"),
    "peers.search": ("raw disk read (all files)", "raw SQL filter + COPY TO STDOUT"),
    "peers.frame": ("raw disk read (records + derived)", "raw COPY TO STDOUT (+ derived)"),
}

MLFLOW_FILTER = "params.optimizer = 'adam' and metrics.m00 > 0.25 and metrics.m00 < 0.75"
QUERY: Query = build_query(
    (F.params["optimizer"] == "adam") & (F.metrics["m00"] > 0.25) & (F.metrics["m00"] < 0.75)
)
_RAW_FILTER = sql.SQL(
    "params->>'optimizer' = 'adam' AND (metrics->>'m00')::float8 > 0.25 "
    "AND (metrics->>'m00')::float8 < 0.75"
)

_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


@dataclass(frozen=True)
class _Run:
    """One workload run: its metalab documents and the same values as MLflow takes them."""

    record: RunRecord
    derived: DerivedMetrics
    start_ms: int
    end_ms: int
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


def _run(i: int) -> _Run:
    record = _workload.record(i)
    derived = _workload.derived(i)
    start_ms = int(record.started_at.timestamp() * 1000)
    finished = record.finished_at or record.started_at
    provenance = record.provenance
    tags = dict.fromkeys(record.tags, "") | {
        "metalab.code_hash": provenance.code_hash,
        "metalab.python_version": provenance.python_version or "",
        "metalab.metalab_version": provenance.metalab_version or "",
        "metalab.executor_id": provenance.executor_id or "",
        "metalab.host": provenance.host or "",
    }
    return _Run(
        record=record,
        derived=derived,
        start_ms=start_ms,
        end_ms=int(finished.timestamp() * 1000),
        params={key: str(value) for key, value in record.params.items()},
        metrics={key: float(value) for key, value in (record.metrics | derived.metrics).items()},
        tags=tags,
    )


def _import(name: str) -> Any:
    """Import an MLflow module.

    MLflow is a benchmark-only dependency that the type-checking environment does not
    install, and most of its store API is unannotated: its objects are ``Any`` here.
    """
    return importlib.import_module(name)


def mlflow_limit() -> int:
    """The largest ``n`` at which the MLflow subjects are measured."""
    return int(os.environ.get(MLFLOW_MAX_ENV, MLFLOW_MAX_DEFAULT))


def mlflow_installed() -> bool:
    """Whether ``mlflow`` can be imported."""
    return importlib.util.find_spec("mlflow") is not None


class _Metalab:
    """A metalab store doing the work of every operation."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def fill(self, runs: Sequence[_Run]) -> None:
        if isinstance(self.store, SupportsBulkPut):
            self.store.put_run_records(r.record for r in runs)
        else:
            for r in runs:
                self.store.put_run_record(r.record)
        for r in runs:
            self.store.put_derived(r.record.run_id, r.derived.metrics)

    def create(self, runs: Sequence[_Run]) -> None:
        put, put_derived = self.store.put_run_record, self.store.put_derived
        for r in runs:
            put(r.record)
            put_derived(r.record.run_id, r.derived.metrics)

    def get(self, run_ids: Sequence[str]) -> list[RunRecord | None]:
        get = self.store.get_run_record
        return [get(run_id) for run_id in run_ids]

    def list_all(self) -> list[RunRecord]:
        return self.store.list_run_records(EXP)

    @property
    def search_path(self) -> str:
        """How this store answers the search, for the notes."""
        if isinstance(self.store, SupportsQuery):
            return "store.query_runs(query)"
        return "select(list_run_records(), query)"

    def search(self) -> list[RunRecord]:
        if isinstance(self.store, SupportsQuery):
            return self.store.query_runs(QUERY)
        return select(self.store.list_run_records(EXP), QUERY)

    def frame(self) -> Any:
        return metalab.load_results(self.store, EXP).to_dataframe()

    def warm(self) -> None:
        """Import pandas and run the frame code once, untimed, on one run."""
        metalab.load_results(self.store, EXP)[:1].to_dataframe()


class _Mlflow:
    """An MLflow tracking store doing the work of every operation."""

    def __init__(self, store: Any, uri: str) -> None:
        self.store = store
        self.uri = uri
        self.experiment_id: str = store.create_experiment("bench")
        self.run_ids: list[str] = []
        self._entities = _import("mlflow.entities")
        self._used_fluent = False

    def create_one(self, run: _Run) -> str:
        e = self._entities
        created = self.store.create_run(
            self.experiment_id,
            "bench",
            run.start_ms,
            [e.RunTag(key, value) for key, value in run.tags.items()],
            run.record.run_id,
        )
        run_id: str = created.info.run_id
        self.store.log_batch(
            run_id,
            [e.Metric(key, value, run.end_ms, 0) for key, value in run.metrics.items()],
            [e.Param(key, value) for key, value in run.params.items()],
            [],
        )
        self.store.update_run_info(run_id, e.RunStatus.FINISHED, run.end_ms, None)
        return run_id

    def create(self, runs: Sequence[_Run]) -> None:
        for run in runs:
            self.create_one(run)

    def get(self, run_ids: Sequence[str]) -> list[Any]:
        get = self.store.get_run
        return [get(run_id) for run_id in run_ids]

    def _search(self, filter_string: str) -> list[Any]:
        limit = _import("mlflow.store.tracking").SEARCH_MAX_RESULTS_THRESHOLD
        active = self._entities.ViewType.ACTIVE_ONLY
        found: list[Any] = []
        token = None
        while True:
            page = self.store.search_runs(
                [self.experiment_id], filter_string, active, limit, None, token
            )
            found.extend(page)
            token = page.token
            if not token:
                return found

    def list_all(self) -> list[Any]:
        return self._search("")

    def search(self) -> list[Any]:
        return self._search(MLFLOW_FILTER)

    def frame(self, max_results: int | None = None) -> Any:
        mlflow = _import("mlflow")
        mlflow.set_tracking_uri(self.uri)
        self._used_fluent = True
        limit = {} if max_results is None else {"max_results": max_results}
        return mlflow.search_runs(
            experiment_ids=[self.experiment_id], output_format="pandas", **limit
        )

    def warm(self) -> None:
        """Open the fluent client's store for this URI once, untimed, on one run."""
        self.frame(max_results=1)

    def close(self) -> None:
        engines = [getattr(self.store, "engine", None)]
        if self._used_fluent:
            tracking = _import("mlflow.tracking._tracking_service.utils")
            engines.append(getattr(tracking._get_store(self.uri), "engine", None))
        for engine in engines:
            if engine is not None:
                engine.dispose()


def _mlflow_run_dir(run_dir: Path, meta: dict[str, Any], template_id: str, run: _Run) -> None:
    """Write one finished run in the file store's layout, as the store API does."""
    file_utils = _import("mlflow.utils.file_utils")
    for sub in ("metrics", "params", "artifacts", "tags"):
        (run_dir / sub).mkdir(parents=True)
    file_utils.write_yaml(
        str(run_dir),
        "meta.yaml",
        meta
        | {
            "run_id": run_dir.name,
            "run_name": run.record.run_id,
            "start_time": run.start_ms,
            "end_time": run.end_ms,
            "artifact_uri": meta["artifact_uri"].replace(template_id, run_dir.name),
        },
    )
    for key, value in run.params.items():
        (run_dir / "params" / key).write_text(value, encoding="utf-8")
    for key, metric in run.metrics.items():
        (run_dir / "metrics" / key).write_text(f"{run.end_ms} {metric} 0\n", encoding="utf-8")
    for key, value in (run.tags | {"mlflow.runName": run.record.run_id}).items():
        (run_dir / "tags" / key).write_text(value, encoding="utf-8")


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()
    }


def _fill_mlflow_files(subject: _Mlflow, runs: Sequence[_Run]) -> None:
    template_id = subject.run_ids[0]
    exp_dir = Path(subject.store.root_directory) / subject.experiment_id
    meta = _import("mlflow.utils.file_utils").read_yaml(str(exp_dir / template_id), "meta.yaml")
    with tempfile.TemporaryDirectory(prefix="mlflow-check-") as scratch:
        _mlflow_run_dir(Path(scratch) / template_id, meta, template_id, runs[0])
        if _tree(Path(scratch) / template_id) != _tree(exp_dir / template_id):
            raise RuntimeError("the direct MLflow file writer no longer matches the store API")
    for run in runs[1:]:
        run_id = uuid.uuid4().hex
        _mlflow_run_dir(exp_dir / run_id, meta, template_id, run)
        subject.run_ids.append(run_id)


def _mlflow_rows(
    template: dict[str, Any], run: _Run, run_id: str
) -> dict[str, list[dict[str, Any]]]:
    """The rows the SQL store API writes for one finished run, per table."""
    tags = run.tags | {"mlflow.runName": run.record.run_id}
    metrics = [
        {
            "key": key,
            "value": value,
            "timestamp": run.end_ms,
            "step": 0,
            "is_nan": False,
            "run_uuid": run_id,
        }
        for key, value in run.metrics.items()
    ]
    return {
        "runs": [
            template
            | {
                "run_uuid": run_id,
                "name": run.record.run_id,
                "start_time": run.start_ms,
                "end_time": run.end_ms,
                "artifact_uri": template["artifact_uri"].replace(template["run_uuid"], run_id),
            }
        ],
        "tags": [{"key": k, "value": v, "run_uuid": run_id} for k, v in tags.items()],
        "params": [{"key": k, "value": v, "run_uuid": run_id} for k, v in run.params.items()],
        "metrics": metrics,
        "latest_metrics": [dict(row) for row in metrics],
    }


def _fill_mlflow_sql(subject: _Mlflow, runs: Sequence[_Run]) -> None:
    models = _import("mlflow.store.tracking.dbmodels.models")
    tables = {
        "runs": models.SqlRun.__table__,
        "tags": models.SqlTag.__table__,
        "params": models.SqlParam.__table__,
        "metrics": models.SqlMetric.__table__,
        "latest_metrics": models.SqlLatestMetric.__table__,
    }
    template_id = subject.run_ids[0]
    engine = subject.store.engine
    with engine.connect() as conn:
        stored = {
            name: sorted(
                (
                    dict(row._mapping)
                    for row in conn.execute(t.select().where(t.c.run_uuid == template_id))
                ),
                key=lambda row: str(row.get("key", "")),
            )
            for name, t in tables.items()
        }
    template = stored["runs"][0]
    expected = {
        name: sorted(rows, key=lambda row: str(row.get("key", "")))
        for name, rows in _mlflow_rows(template, runs[0], template_id).items()
    }
    if expected != stored:
        raise RuntimeError("the direct MLflow SQL writer no longer matches the store API")
    for start in range(1, len(runs), _FILL_BATCH):
        batch: dict[str, list[dict[str, Any]]] = {name: [] for name in tables}
        for run in runs[start : start + _FILL_BATCH]:
            run_id = uuid.uuid4().hex
            subject.run_ids.append(run_id)
            for name, rows in _mlflow_rows(template, run, run_id).items():
                batch[name].extend(rows)
        with engine.begin() as conn:
            for name, table in tables.items():
                conn.execute(table.insert(), batch[name])


def _bare_write(directory: str, blobs: Sequence[tuple[str, bytes]]) -> None:
    for name, data in blobs:
        tmp = f"{directory}/.{os.urandom(16).hex()}.partial"
        fd = os.open(tmp, _WRITE_FLAGS, 0o666)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, f"{directory}/{name}")  # noqa: PTH105 - the anchor is the bare syscall


_RUN_TYPES = [
    "text",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "float8",
    "text[]",
    "timestamptz",
    "bytea",  # jsonb, sent in its binary form: a version byte and the JSON text
    "bytea",  # jsonb
    "bytea",
    "int8",
    "int8",
]
_DERIVED_TYPES = ["text", "text", "bytea", "bytea", "int8", "int8"]  # metrics jsonb as above


def _jsonb(value: object) -> object:
    """``jsonb`` in its binary form (a version byte, then the JSON text), sent as bytea."""
    if isinstance(value, bytes) and not value.startswith(b"\x01"):
        return b"\x01" + value
    return value


class _RawPostgres:
    """Bare tables (primary key only) holding the very rows of metalab's index."""

    def __init__(self, url: str, schema: str) -> None:
        self.conn = psycopg.connect(url)
        runs, derived = (
            sql.Identifier(schema, "runs"),
            sql.Identifier(schema, "derived"),
        )
        self.runs, self.derived = runs, derived
        self.conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE {} (run_id text PRIMARY KEY, experiment_id text, status text, "
                "started_at timestamptz, finished_at timestamptz, duration_ms float8, "
                "tags text[], edited_at timestamptz, params jsonb, metrics jsonb, doc bytea, "
                "file_mtime_ns int8, "
                "file_size int8)"
            ).format(runs)
        )
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE {} (run_id text PRIMARY KEY, experiment_id text, metrics jsonb, "
                "doc bytea, file_mtime_ns int8, file_size int8)"
            ).format(derived)
        )
        self.conn.commit()

    @staticmethod
    def rows(runs: Sequence[_Run]) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        run_rows, derived_rows = [], []
        for r in runs:
            data = _codec.RUN_RECORD.encode(r.record)
            doc = Document("runs", r.record.run_id, EXP, data, FileState(0, len(data)), "-")
            row = run_row(doc)
            run_rows.append(
                tuple(
                    _jsonb(v) if k in ("params", "metrics") else v for k, v in row._asdict().items()
                )
            )
            data = _codec.DERIVED.encode(r.derived)
            drow = derived_row(
                Document("derived", r.record.run_id, EXP, data, FileState(0, len(data)), "-")
            )
            derived_rows.append(
                tuple(_jsonb(v) if k == "metrics" else v for k, v in drow._asdict().items())
            )
        return run_rows, derived_rows

    def copy_in(self, rows: tuple[list[tuple[object, ...]], list[tuple[object, ...]]]) -> None:
        cursor = self.conn.cursor()
        for table, types, batch in (
            (self.runs, _RUN_TYPES, rows[0]),
            (self.derived, _DERIVED_TYPES, rows[1]),
        ):
            with cursor.copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(table)) as copy:
                copy.set_types(types)
                for row in batch:
                    copy.write_row(row)
        self.conn.commit()

    def get(self, run_ids: Sequence[str]) -> list[tuple[Any, ...] | None]:
        statement = sql.SQL("SELECT doc FROM {} WHERE run_id = %s").format(self.runs)
        cursor = self.conn.cursor()
        found = [cursor.execute(statement, (run_id,)).fetchone() for run_id in run_ids]
        self.conn.commit()
        return found

    def copy_out(self, table: sql.Identifier, where: sql.Composable) -> int:
        total = 0
        statement = sql.SQL("COPY (SELECT doc FROM {} WHERE {}) TO STDOUT (FORMAT BINARY)").format(
            table, where
        )
        with self.conn.cursor().copy(statement) as copy:
            for data in copy:
                total += len(data)
        self.conn.commit()
        return total

    def list_all(self) -> int:
        return self.copy_out(self.runs, sql.SQL("experiment_id = {}").format(sql.Literal(EXP)))

    def search(self) -> int:
        return self.copy_out(self.runs, _RAW_FILTER)

    def frame(self) -> int:
        where = sql.SQL("experiment_id = {}").format(sql.Literal(EXP))
        return self.copy_out(self.runs, where) + self.copy_out(self.derived, where)

    def close(self) -> None:
        self.conn.close()


def _comparisons(
    subject: str, operation: str, present: set[str]
) -> tuple[str | None, tuple[str, ...]]:
    """The baseline and further subjects a metalab subject's ratios are given against."""
    disk, raw_pg = ANCHORS[operation]
    wanted = {
        FILE: (ML_FILE, ML_SQLITE, disk),
        FILE_DURABLE: (ML_FILE, ML_SQLITE),
        PG: (ML_PG, raw_pg),
    }.get(subject, ())
    found = [name for name in wanted if name in present]
    return (found[0] if found else None), tuple(found[1:])


class _Counts:
    """Keeps how many items each subject returned, to check that all did the same work."""

    def __init__(self) -> None:
        self.seen: dict[str, set[int]] = {}

    def wrap(self, name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        def counted() -> Any:
            result = fn()
            self.seen.setdefault(name, set()).add(len(result))
            return result

        return counted

    def check(self, operation: str, expected: int) -> None:
        wrong = {name: sorted(c) for name, c in self.seen.items() if c != {expected}}
        if wrong:
            raise RuntimeError(
                f"{operation}: expected {expected} items from every subject, got {wrong}"
            )
        self.seen.clear()


def _measure(
    report: Report,
    operation: str,
    n: int,
    repeat: int,
    subjects: dict[str, Callable[[], Any]],
    notes: dict[str, str],
    setup: Callable[[], object] | None = None,
) -> None:
    timings = time_interleaved(subjects, repeat=repeat, setup=setup)
    present = set(timings)
    for name, seconds in timings.items():
        baseline, also = _comparisons(name, operation, present)
        report.add(Measurement(operation, name, n, seconds, baseline, notes.get(name, ""), also))


@dataclass
class _Subjects:
    metalab: dict[str, _Metalab]
    mlflow: dict[str, _Mlflow]
    raw_pg: _RawPostgres
    runs_dir: str
    derived_dir: str


def _open_mlflow(base: Path, url: str, schema: str, runs: Sequence[_Run]) -> dict[str, _Mlflow]:
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    file_store = _import("mlflow.store.tracking.file_store")
    sqlalchemy_store = _import("mlflow.store.tracking.sqlalchemy_store")
    mlruns = base / "mlruns"
    subjects = {
        ML_FILE: _Mlflow(file_store.FileStore(str(mlruns)), mlruns.as_uri()),
    }
    sqlite = f"sqlite:///{base / 'mlflow.sqlite'}"
    subjects[ML_SQLITE] = _Mlflow(
        sqlalchemy_store.SqlAlchemyStore(sqlite, str(base / "mlflow-artifacts")), sqlite
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    pg = url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
        "postgres://", "postgresql+psycopg://", 1
    )
    pg += ("&" if "?" in pg else "?") + f"options=-csearch_path%3D{schema}"
    subjects[ML_PG] = _Mlflow(
        sqlalchemy_store.SqlAlchemyStore(pg, str(base / "mlflow-artifacts")), pg
    )
    for name, subject in subjects.items():
        subject.run_ids.append(subject.create_one(runs[0]))
        if name == ML_FILE:
            _fill_mlflow_files(subject, runs)
        else:
            _fill_mlflow_sql(subject, runs)
    return subjects


def _chunks(items: Sequence[_Run], size: int, count: int) -> Iterator[Sequence[_Run]]:
    for k in range(count):
        yield items[k * size : (k + 1) * size]


def run(report: Report, *, n: int, repeat: int) -> None:
    """Measure metalab, MLflow and the anchors on ``n`` runs."""
    with_mlflow = mlflow_installed() and n <= mlflow_limit()
    if not mlflow_installed():
        print("  [peers] mlflow is not installed: metalab and anchors only", file=sys.stderr)
    elif not with_mlflow:
        print(
            f"  [peers] n={n:,} > {MLFLOW_MAX_ENV}={mlflow_limit():,}: MLflow not measured",
            file=sys.stderr,
        )
    k_create = max(1, min(n // 10, CREATE_MAX))
    k_get = min(n, GETS_MAX)
    runs = [_run(i) for i in range(n)]
    appended = [_run(n + i) for i in range(2 * k_create * repeat)]
    expected_hits = len(select((r.record for r in runs), QUERY))
    sample = random.Random(42).choices(range(n), k=k_get)

    token = uuid.uuid4().hex[:8]
    schemas = [f"{SCHEMA_PREFIX}{part}_{token}" for part in ("metalab", "mlflow", "raw")]
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(_postgres.postgres_server())
        for schema in schemas:
            stack.callback(_postgres.drop_schema, url, schema)
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-peers-")))
        pg_note = _postgres.settings(url)
        file_config = FileStoreConfig(root=str(base / "metalab"), experiment_id=EXP)
        files = stack.enter_context(file_config.connect())
        memory = stack.enter_context(MemoryStoreConfig(experiment_id=EXP).connect())
        pg_root = FileStoreConfig(root=str(base / "metalab-pg"), experiment_id=EXP)
        with pg_root.connect() as pg_files:
            _Metalab(pg_files).fill(runs)
        pg_config = PostgresStoreConfig(
            connection_string=url, file_root=pg_root.root, schema=schemas[0], experiment_id=EXP
        )
        pg_store = stack.enter_context(PostgresStore.from_filestore(pg_config, pg_root.connect()))
        metalab_subjects = {FILE: _Metalab(files), MEMORY: _Metalab(memory), PG: _Metalab(pg_store)}
        metalab_subjects[FILE].fill(runs)
        metalab_subjects[MEMORY].fill(runs)
        raw_pg = _RawPostgres(url, schemas[2])
        stack.callback(raw_pg.close)
        raw_pg.copy_in(_RawPostgres.rows(runs))
        mlflow_subjects: dict[str, _Mlflow] = {}
        if with_mlflow:
            mlflow_subjects = _open_mlflow(base, url, schemas[1], runs)
            for subject in mlflow_subjects.values():
                stack.callback(subject.close)
        if not isinstance(files, SupportsWorkingDirectory):
            raise TypeError("the FileStore has no working directory")
        work = files.get_working_directory()
        subjects = _Subjects(
            metalab_subjects, mlflow_subjects, raw_pg, str(work / "runs"), str(work / "derived")
        )
        _run_reads(report, subjects, runs, sample, expected_hits, repeat, pg_note)
        _run_creates(report, subjects, base, file_config, appended, repeat, pg_note)


def _notes(pg_note: str, note: str) -> dict[str, str]:
    """``note`` for every store, and the server's settings for everything on PostgreSQL."""
    stores = {FILE, FILE_DURABLE, MEMORY, PG, ML_FILE, ML_SQLITE, ML_PG}
    on_postgres = {PG, ML_PG, *(raw for _, raw in ANCHORS.values())}
    notes = {}
    for name in stores | on_postgres:
        parts = [note] if name in stores and note else []
        parts += [pg_note] if name in on_postgres else []
        notes[name] = "; ".join(parts)
    return notes


def _run_reads(
    report: Report,
    s: _Subjects,
    runs: Sequence[_Run],
    sample: Sequence[int],
    expected_hits: int,
    repeat: int,
    pg_note: str,
) -> None:
    n = len(runs)
    metalab_ids = [runs[i].record.run_id for i in sample]
    counts = _Counts()
    paths = [f"{s.runs_dir}/{run_id}.json" for run_id in metalab_ids]
    disk, raw = ANCHORS["peers.get"]
    get: dict[str, Callable[[], Any]] = {
        disk: functools.partial(bare_read, paths),
        raw: functools.partial(s.raw_pg.get, metalab_ids),
    }
    for name, m in s.metalab.items():
        get[name] = counts.wrap(name, functools.partial(m.get, metalab_ids))
    for name, f in s.mlflow.items():
        get[name] = counts.wrap(name, functools.partial(f.get, [f.run_ids[i] for i in sample]))
    note = f"{len(sample):,} random gets in a store of {n:,} runs"
    _measure(report, "peers.get", len(sample), repeat, get, _notes(pg_note, note))
    counts.check("peers.get", len(sample))

    reads: list[tuple[str, int, Callable[[], object], Callable[[], object]]] = [
        ("peers.list", n, functools.partial(bare_read_dirs, s.runs_dir), s.raw_pg.list_all),
        (
            "peers.search",
            expected_hits,
            functools.partial(bare_read_dirs, s.runs_dir),
            s.raw_pg.search,
        ),
        (
            "peers.frame",
            n,
            functools.partial(bare_read_dirs, s.runs_dir, s.derived_dir),
            s.raw_pg.frame,
        ),
    ]
    every: list[_Metalab | _Mlflow] = [*s.metalab.values(), *s.mlflow.values()]
    for store in every:
        store.warm()
    for operation, expected, disk_read, raw_read in reads:
        disk, raw = ANCHORS[operation]
        subjects: dict[str, Callable[[], Any]] = {disk: disk_read, raw: raw_read}
        for name, subject in (*s.metalab.items(), *s.mlflow.items()):
            method = operation.removeprefix("peers.").replace("list", "list_all")
            subjects[name] = counts.wrap(name, getattr(subject, method))
        note = f"{expected:,} of {n:,} runs match" if operation == "peers.search" else ""
        notes = _notes(pg_note, note)
        if operation == "peers.search":
            for name, m in s.metalab.items():
                notes[name] = f"{notes[name]}; {m.search_path}".lstrip("; ")
        _measure(report, operation, n, repeat, subjects, notes)
        counts.check(operation, expected)


def _run_creates(
    report: Report,
    s: _Subjects,
    base: Path,
    file_config: FileStoreConfig,
    appended: Sequence[_Run],
    repeat: int,
    pg_note: str,
) -> None:
    k = len(appended) // (2 * repeat)
    n = sum(1 for _ in os.scandir(s.runs_dir))
    # The durable FileStore appends to the same directory: it gets runs of its own.
    first, second = appended[: k * repeat], appended[k * repeat :]
    durable = _Metalab(dataclasses.replace(file_config, durable=True).connect())
    bare_runs, bare_derived = base / "bare-write" / "runs", base / "bare-write" / "derived"
    bare_runs.mkdir(parents=True)
    bare_derived.mkdir()
    subjects: dict[str, Callable[[], Any]] = {}
    disk, raw = ANCHORS["peers.create"]
    disk_batches = iter(
        [
            (
                [(f"{r.record.run_id}.json", _codec.RUN_RECORD.encode(r.record)) for r in batch],
                [(f"{r.record.run_id}.json", _codec.DERIVED.encode(r.derived)) for r in batch],
            )
            for batch in _chunks(first, k, repeat)
        ]
    )

    def bare_write() -> None:
        runs_blobs, derived_blobs = next(disk_batches)
        _bare_write(str(bare_runs), runs_blobs)
        _bare_write(str(bare_derived), derived_blobs)

    raw_batches = iter([_RawPostgres.rows(batch) for batch in _chunks(first, k, repeat)])
    subjects[disk] = bare_write
    subjects[raw] = lambda: s.raw_pg.copy_in(next(raw_batches))
    stores: list[tuple[str, _Metalab | _Mlflow]] = [
        *s.metalab.items(),
        (FILE_DURABLE, durable),
        *s.mlflow.items(),
    ]
    for name, subject in stores:
        batches = iter(list(_chunks(second if name == FILE_DURABLE else first, k, repeat)))
        subjects[name] = functools.partial(_create_next, subject, batches)
    note = f"{k:,} runs appended one by one to a store of {n:,}"
    try:
        # os.sync() first: no subject pays for the writeback of the files the one
        # before it wrote (MLflow's file store writes ~35 files per run).
        _measure(report, "peers.create", k, repeat, subjects, _notes(pg_note, note), os.sync)
    finally:
        durable.store.close()


def _create_next(subject: _Metalab | _Mlflow, batches: Iterator[Sequence[_Run]]) -> None:
    subject.create(next(batches))
