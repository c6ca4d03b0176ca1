"""The dashboard (``metalab ui``): its two heaviest pages, served in-process.

Issue 16's targets, on ``n`` workload runs of one experiment in a PostgresStore (the
index built by ``rebuild_index()``, untimed) and in a FileStore over the same files.
Each request goes through Starlette's ``TestClient`` to ``create_app(store)`` (the
whole stack: guard, routing, worker thread, msgspec encoding; no network):

- ``ui.runs_page``: the first page of the runs table as the front end asks for it,
  ``GET /api/experiments/{id}/runs?where=params.optimizer == 'adam'&sort=-metrics.m01
  &offset=0&limit=50`` (default columns; the filter matches a quarter of the runs).
  Target: ≤ 100 ms from the index. The anchor is the SQL an index would need for the
  page with an exact total: the same top 50 documents and ``count(*)`` of the matches,
  hand-written on the index's ``runs`` table. The first request keeps the order of
  ``metrics.m01`` (see ``sort_values``); it is timed once and reported in the notes;
- ``ui.experiments``: the experiments page, ``GET /api/experiments``. Target: ≤ 200 ms
  from the index. The anchor is one ``GROUP BY status`` with the last activity and the
  distinct run tags, hand-written on the index's table.

The FileStore figures are reported beside them (no target: every record file is read).
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from benchmarks import _workload
from benchmarks._harness import Measurement, Report, time_interleaved
from benchmarks._postgres import drop_schema, postgres_server, settings
from metalab.store import FileStoreConfig, PostgresStoreConfig
from metalab.ui import create_app

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns when it finds httpx.
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from starlette.testclient import TestClient

EXP = _workload.EXPERIMENT_ID
SCHEMA = "metalab_bench_ui"
WHERE = "params.optimizer == 'adam'"
SORT = "-metrics.m01"
LIMIT = 50

INDEX = "metalab ui over a PostgresStore"
FILES = "metalab ui over a FileStore"
RAW_SQL = "hand-written SQL on the index"
RAW_PAGE_ONLY = "hand-written SQL, top 50 documents alone"
RAW_COUNT_ONLY = "hand-written SQL, count(*) alone"

RAW_PAGE = sql.SQL(
    """
    SELECT run_id, doc FROM {runs}
    WHERE experiment_id = %(e)s AND params @> %(p)s::jsonb
    ORDER BY (metrics ->> 'm01')::float8 DESC NULLS LAST, run_id
    LIMIT 50
    """
)
RAW_COUNT = sql.SQL(
    "SELECT count(*) FROM {runs} WHERE experiment_id = %(e)s AND params @> %(p)s::jsonb"
)
RAW_EXPERIMENTS = sql.SQL(
    """
    SELECT experiment_id, status, count(*),
           max(greatest(started_at, finished_at))
    FROM {runs} GROUP BY experiment_id, status
    """
)
RAW_TAGS = sql.SQL("SELECT DISTINCT experiment_id, unnest(tags) FROM {runs}")


def _client(store: Any) -> TestClient:
    return TestClient(create_app(store), base_url="http://127.0.0.1:8765")


def _get(client: TestClient, path: str, params: dict[str, Any] | None = None) -> Any:
    response = client.get(path, params=params)
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text}")
    return response.json()


def run(report: Report, *, n: int, repeat: int) -> None:
    """Measure the runs page and the experiments page at ``n`` runs."""
    with postgres_server() as url, tempfile.TemporaryDirectory(prefix="metalab-bench-") as tmp:
        root = Path(tmp) / "files"
        with FileStoreConfig(root=str(root)).connect() as files:
            files.put_run_records(_workload.records(n))
        drop_schema(url, SCHEMA)
        pg_config = PostgresStoreConfig(connection_string=url, file_root=str(root), schema=SCHEMA)
        try:
            with (
                pg_config.connect() as index,
                FileStoreConfig(root=str(root)).connect() as files,
                _client(index) as on_index,
                _client(files) as on_files,
                psycopg.connect(url) as raw,
            ):
                index.rebuild_index()
                _measure(report, n, repeat, on_index, on_files, raw, settings(url))
        finally:
            drop_schema(url, SCHEMA)


def _measure(
    report: Report,
    n: int,
    repeat: int,
    on_index: TestClient,
    on_files: TestClient,
    raw: psycopg.Connection[tuple[object, ...]],
    server: str,
) -> None:
    runs_path = f"/api/experiments/{EXP}/runs"
    params = {"where": WHERE, "sort": SORT, "offset": 0, "limit": LIMIT}
    runs = SCHEMA, "runs"
    page_sql, count_sql = (s.format(runs=sql.Identifier(*runs)) for s in (RAW_PAGE, RAW_COUNT))
    experiments_sql, tags_sql = (
        s.format(runs=sql.Identifier(*runs)) for s in (RAW_EXPERIMENTS, RAW_TAGS)
    )
    args = {"e": EXP, "p": '{"optimizer": "adam"}'}

    def raw_page() -> int:
        rows = raw.execute(page_sql, args).fetchall()
        found = raw.execute(count_sql, args).fetchone()
        return len(rows) + (0 if found is None else int(str(found[0])))

    def raw_experiments() -> int:
        return len(raw.execute(experiments_sql).fetchall()) + len(raw.execute(tags_sql).fetchall())

    # The index's first page keeps the order of the sort metric (once per experiment
    # and metric); its time is reported, the repeats that follow are the figures.
    started = time.perf_counter()
    pages = {INDEX: _get(on_index, runs_path, params)}
    first = time.perf_counter() - started
    pages[FILES] = _get(on_files, runs_path, params)
    ids = {name: [row["run_id"] for row in page["rows"]] for name, page in pages.items()}
    if ids[INDEX] != ids[FILES] or [str(r[0]) for r in raw.execute(page_sql, args)] != ids[INDEX]:
        raise RuntimeError(f"ui.runs_page: the subjects disagree: {ids}")
    found = raw.execute(count_sql, args).fetchone()
    matches = 0 if found is None else int(str(found[0]))
    totals = {
        name: f"{page['total']:,}{'' if page.get('total_exact', True) else '+ (lower bound)'}"
        for name, page in pages.items()
    }
    _report(
        report,
        "ui.runs_page",
        n,
        time_interleaved(
            {
                RAW_SQL: raw_page,
                RAW_PAGE_ONLY: lambda: raw.execute(page_sql, args).fetchall(),
                RAW_COUNT_ONLY: lambda: raw.execute(count_sql, args).fetchone(),
                INDEX: lambda: _get(on_index, runs_path, params),
                FILES: lambda: _get(on_files, runs_path, params),
            },
            repeat=repeat,
        ),
        {INDEX: (RAW_SQL, FILES), FILES: (RAW_SQL,)},
        {
            RAW_SQL: f"top {LIMIT} documents + count(*); {server}",
            INDEX: f"{LIMIT} of {matches:,} matches, total answered {totals[INDEX]}; "
            f"the first page, which kept the order of {SORT.lstrip('-')}, took {first:.2f} s; "
            "target <= 100 ms",
            FILES: f"{LIMIT} of {matches:,} matches, total answered {totals[FILES]}",
        },
    )

    listed = {
        name: _get(c, "/api/experiments")["experiments"]
        for name, c in ((INDEX, on_index), (FILES, on_files))
    }
    if [e["experiment_id"] for e in listed[INDEX]] != [e["experiment_id"] for e in listed[FILES]]:
        raise RuntimeError(f"ui.experiments: the subjects disagree: {listed}")
    _report(
        report,
        "ui.experiments",
        n,
        time_interleaved(
            {
                RAW_SQL: raw_experiments,
                INDEX: lambda: _get(on_index, "/api/experiments"),
                FILES: lambda: _get(on_files, "/api/experiments"),
            },
            repeat=repeat,
        ),
        {INDEX: (RAW_SQL, FILES), FILES: (RAW_SQL,)},
        {
            RAW_SQL: "GROUP BY experiment_id, status (count, last activity) + distinct tags",
            INDEX: "target <= 200 ms",
        },
    )


def _report(
    report: Report,
    operation: str,
    n: int,
    timings: dict[str, tuple[float, ...]],
    baselines: dict[str, tuple[str, ...]],
    notes: dict[str, str],
) -> None:
    for name, seconds in timings.items():
        first, *also = baselines.get(name, ()) or (None,)
        report.add(
            Measurement(operation, name, n, seconds, first, notes.get(name, ""), tuple(also))
        )
