"""Random records and random queries: the SQL engine and the Python engine agree."""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalab.query import Query, select
from metalab.records import MetricValue, RunRecord
from metalab.store import FileStoreConfig, PostgresStoreConfig, SupportsQuery
from metalab.testing import strategies as mst

_COUNTER = itertools.count()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    records=st.lists(mst.query_records(), max_size=10, unique_by=lambda r: r.run_id),
    derived=st.lists(mst.query_derived(), max_size=10),
    query=mst.queries(),
)
def test_index_and_files_select_the_same_runs_in_the_same_order(
    postgres_config: PostgresStoreConfig,
    tmp_path: Path,
    records: list[RunRecord],
    derived: list[dict[str, MetricValue]],
    query: Query,
) -> None:
    # A fresh experiment and fresh run ids per example: the index keys runs by id.
    n = next(_COUNTER)
    experiment = f"agree{n}:1"
    pg_config = postgres_config.scoped(experiment)
    file_config = FileStoreConfig(root=str(tmp_path / "plain"), experiment_id=experiment)
    moved = [
        msgspec.structs.replace(r, experiment_id=experiment, run_id=f"{n:06x}{r.run_id}")
        for r in records
    ]
    by_run = dict(zip((r.run_id for r in moved), derived, strict=False))
    answers = []
    with pg_config.connect() as pg, file_config.connect() as files:
        for store in (pg, files):
            for record in moved:
                store.put_run_record(record)
            for run_id, metrics in by_run.items():
                store.put_derived(run_id, metrics)
            assert isinstance(store, SupportsQuery)
            answers.append([r.run_id for r in store.query_runs(query)])
    expected = [r.run_id for r in select(moved, query, lambda r: by_run.get(r.run_id))]
    assert answers == [expected, expected], f"where: {query.where}; order: {query.order_by}"
