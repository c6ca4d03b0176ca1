"""Metric series in the Postgres index: appended live, synced, rebuilt, read in one query."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from metalab import load_results
from metalab.errors import IndexStaleWarning, IndexUnavailableError, StoreError
from metalab.series import MetricSeries, SeriesPoint
from metalab.store import FileStore, FileStoreConfig, PostgresStore, PostgresStoreConfig
from metalab.store._postgres_rows import CHUNK_POINTS, series_rows
from metalab.testing.store import make_record

EXP = "series:1"
COMPAT = Path(__file__).resolve().parents[1] / "compat" / "data" / "metalab-0.1-curves"

MIXED = [
    SeriesPoint("loss", 0, 0.5, 1_764_700_000.25),
    SeriesPoint("loss", 1, math.nan, 1_764_700_001.5),
    SeriesPoint("acc", 0, True, 1_764_700_000.25),
    SeriesPoint("count", 0, 7, None),
    SeriesPoint("count", 1, 2**70, 3.0),
    SeriesPoint("stage", 0, "warm-up \u00e9\x00", 4.0),
    SeriesPoint("loss", 1, -math.inf, 5.0),  # a step logged twice keeps both, in order
    SeriesPoint("loss", 0, -0.0, 6.0),  # out of order
]


def shown(found: dict[str, MetricSeries]) -> dict[str, list[tuple[object, ...]]]:
    """Series as comparable lists (NaN as text, the type of each value kept)."""
    return {
        name: [
            (step, type(value).__name__, repr(value), seconds)
            for step, value, seconds in zip(s.steps, s.values, s.seconds, strict=True)
        ]
        for name, s in found.items()
    }


def chunk_rows(url: str, schema: str, run_id: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE run_id = %s").format(
                sql.Identifier(schema, "series_chunks")
            ),
            (run_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def store(postgres_config: PostgresStoreConfig) -> Iterator[PostgresStore]:
    with postgres_config.scoped(EXP).connect() as connected:
        yield connected


@pytest.fixture
def plain_files(postgres_config: PostgresStoreConfig) -> Iterator[FileStore]:
    """The same files, written without the index (a worker while the index was down)."""
    with FileStoreConfig(root=postgres_config.file_root, experiment_id=EXP).connect() as files:
        yield files


def _run(store: PostgresStore | FileStore) -> str:
    record = make_record(EXP)
    store.put_run_record(record)
    return record.run_id


class TestLiveAppends:
    def test_points_appended_through_the_store_are_read_from_the_index(
        self, store: PostgresStore, postgres_url: str
    ) -> None:
        run_id = _run(store)
        store.append_series(run_id, MIXED[:3], restart=True)
        store.append_series(run_id, MIXED[3:6])
        store.append_series(run_id, MIXED[6:])
        expected = shown(store.files.get_series(run_id))
        assert expected["loss"][0][:3] == (0, "float", "0.5")
        assert chunk_rows(postgres_url, store.config.schema, run_id) == 5  # per append, metric
        # The file gone, the index still answers: reads come from the index.
        (store.get_working_directory() / "series" / f"{run_id}.jsonl").unlink()
        assert shown(store.get_series(run_id)) == expected
        assert list(store.get_series(run_id)) == sorted(expected)

    def test_an_append_the_index_missed_is_indexed_with_the_whole_file(
        self, store: PostgresStore
    ) -> None:
        run_id = _run(store)
        store.append_series(run_id, [SeriesPoint("loss", 0, 1.0, 1.0)], restart=True)
        store.files.append_series(run_id, [SeriesPoint("loss", 1, 0.5, 2.0)])  # not indexed
        store.append_series(run_id, [SeriesPoint("loss", 2, 0.25, 3.0)])
        assert store.index.series([run_id], EXP)[run_id]["loss"].values == (1.0, 0.5, 0.25)
        assert not store.is_index_stale()

    def test_a_run_run_again_starts_its_series_afresh(self, store: PostgresStore) -> None:
        run_id = _run(store)
        store.append_series(run_id, [SeriesPoint("loss", i, 1.0, 1.0) for i in range(5)])
        store.append_series(run_id, [SeriesPoint("acc", 0, 0.9, 2.0)], restart=True)
        found = store.index.series([run_id], EXP)[run_id]
        assert shown(found) == {"acc": [(0, "float", "0.9", 2.0)]}

    def test_an_unreachable_index_marks_stale_and_a_sync_catches_up(
        self, store: PostgresStore, postgres_config: PostgresStoreConfig, monkeypatch: Any
    ) -> None:
        run_id = _run(store)
        store.append_series(run_id, [SeriesPoint("loss", 0, 1.0, 1.0)], restart=True)

        def down(*_args: object) -> bool:
            raise IndexUnavailableError("the server went away")

        monkeypatch.setattr(store.index, "append_series", down)
        with pytest.warns(IndexStaleWarning, match="the server went away"):
            store.append_series(run_id, [SeriesPoint("loss", 1, 0.5, 2.0)])
        assert store.files.get_series(run_id)["loss"].values == (1.0, 0.5)
        with postgres_config.scoped(EXP).connect() as again:
            assert again.is_index_stale()
            report = again.sync_index()
            assert report.indexed == 1
            assert again.index.series([run_id], EXP)[run_id]["loss"].values == (1.0, 0.5)
            assert not again.is_index_stale()

    def test_a_whole_file_read_before_a_later_append_does_not_undo_it(
        self, store: PostgresStore
    ) -> None:
        run_id = _run(store)
        store.append_series(run_id, [SeriesPoint("loss", 0, 1.0, 1.0)], restart=True)
        (older,) = store.files.read_documents(store.files.document_states("series"))
        store.append_series(run_id, [SeriesPoint("loss", 1, 0.5, 2.0)])
        store.index.write([older])  # a sync that read the file before the append
        assert store.get_series(run_id)["loss"].values == (1.0, 0.5)

    def test_a_run_run_again_replaces_a_longer_file_written_in_the_same_tick(
        self, store: PostgresStore
    ) -> None:
        run_id = _run(store)
        store.append_series(run_id, [SeriesPoint("loss", i, 1.0, 1.0) for i in range(10)])
        (before,) = store.files.document_states("series")
        # Run again while the index was down, within the file system's time stamp
        # resolution: same modification time, a shorter file of a new generation.
        store.files.append_series(run_id, [SeriesPoint("acc", 0, 0.5, 2.0)], restart=True)
        path = store.get_working_directory() / "series" / f"{run_id}.jsonl"
        os.utime(path, ns=(before.state.mtime_ns, before.state.mtime_ns))
        assert store.sync_index().indexed == 1
        assert shown(store.get_series(run_id)) == {"acc": [(0, "float", "0.5", 2.0)]}
        assert (
            store.index.states("series", EXP)[run_id]
            == store.files.document_states("series")[0].state
        )

    def test_a_file_of_before_generations_is_indexed(
        self, store: PostgresStore, plain_files: FileStore
    ) -> None:
        run_id = _run(plain_files)
        path = plain_files.get_working_directory() / "series" / f"{run_id}.jsonl"
        path.parent.mkdir()
        path.write_text(f'{{"metalab_series":1,"run_id":"{run_id}"}}\n["loss",0,0.5,1.0]\n')
        store.sync_index()
        store.append_series(run_id, [SeriesPoint("loss", 1, 0.25, 2.0)])
        assert store.index.series([run_id], EXP)[run_id]["loss"].values == (0.5, 0.25)

    def test_deleting_a_run_removes_its_series_from_the_index(
        self, store: PostgresStore, postgres_url: str
    ) -> None:
        run_id = _run(store)
        store.append_series(run_id, [SeriesPoint("loss", 0, 1.0, 1.0)], restart=True)
        assert store.delete_run(run_id)
        assert chunk_rows(postgres_url, store.config.schema, run_id) == 0
        assert store.index.series([run_id], None) == {}
        assert store.get_series(run_id) == {}

    def test_many_runs_are_read_in_one_query(self, store: PostgresStore) -> None:
        runs = [_run(store) for _ in range(4)]
        for i, run_id in enumerate(runs[:3]):
            points = [SeriesPoint("loss", s, 1.0 / (s + i + 1), float(s)) for s in range(10)]
            store.append_series(run_id, points, restart=True)
        found = store.get_series_many(runs)
        assert list(found) == runs
        assert found[runs[3]] == {}
        for run_id in runs:
            assert shown(found[run_id]) == shown(store.files.get_series(run_id))


class TestSyncAndRebuild:
    def _written_without_the_index(self, files: FileStore, runs: int = 3) -> list[str]:
        ids = []
        for i in range(runs):
            run_id = _run(files)
            files.append_series(run_id, MIXED, restart=True)
            files.append_series(run_id, [SeriesPoint("loss", 9, float(i), 9.0)])
            ids.append(run_id)
        return ids

    def test_sync_indexes_new_series_files_and_forgets_removed_ones(
        self, store: PostgresStore, plain_files: FileStore
    ) -> None:
        runs = self._written_without_the_index(plain_files)
        report = store.sync_index()
        assert report.indexed == 6  # three records, three series files
        for run_id in runs:
            assert shown(store.index.series([run_id], EXP)[run_id]) == shown(
                plain_files.get_series(run_id)
            )
        (plain_files.get_working_directory() / "series" / f"{runs[0]}.jsonl").unlink()
        assert store.sync_index().removed == 1
        assert store.index.series(runs, EXP).keys() == set(runs[1:])
        on_disk = {ref.key: ref.state for ref in store.files.document_states("series")}
        assert store.index.states("series", EXP) == on_disk

    @pytest.mark.parametrize("scoped", [True, False])
    def test_a_rebuild_indexes_every_series_file(
        self,
        postgres_config: PostgresStoreConfig,
        plain_files: FileStore,
        scoped: bool,
    ) -> None:
        runs = self._written_without_the_index(plain_files)
        config = postgres_config.scoped(EXP) if scoped else postgres_config
        with config.connect() as store:
            assert store.rebuild_index() == 3
            found = store.index.series(runs, None)
            for run_id in runs:
                assert shown(found[run_id]) == shown(plain_files.get_series(run_id))
            assert store.rebuild_index() == 3  # again: nothing doubled
            assert store.index.series(runs, None).keys() == set(runs)
            assert shown(store.get_series(runs[0])) == shown(plain_files.get_series(runs[0]))

    def test_a_long_series_is_kept_in_chunks(
        self, store: PostgresStore, plain_files: FileStore, postgres_url: str
    ) -> None:
        run_id = _run(plain_files)
        n = CHUNK_POINTS + 10
        plain_files.append_series(
            run_id, [SeriesPoint("loss", i, i / 3, float(i)) for i in range(n)], restart=True
        )
        store.rebuild_index()
        assert chunk_rows(postgres_url, store.config.schema, run_id) == 2
        loss = store.get_series(run_id)["loss"]
        assert loss.steps == tuple(range(n))
        assert loss.values[-1] == (n - 1) / 3

    def test_an_append_made_while_a_rebuild_reads_is_carried_over(
        self,
        postgres_config: PostgresStoreConfig,
        plain_files: FileStore,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        run_id = _run(plain_files)
        plain_files.append_series(run_id, [SeriesPoint("loss", 0, 1.0, 1.0)], restart=True)
        appended = False

        def rows_then_append(doc: Any, first_seq: int) -> Any:
            nonlocal appended
            found = series_rows(doc, first_seq)
            if not appended:  # the file is read: the run appends through the live index
                appended = True
                with postgres_config.scoped(EXP).connect() as writer:
                    writer.append_series(run_id, [SeriesPoint("loss", 1, 0.5, 2.0)])
            return found

        with postgres_config.connect() as store:
            store.sync_index()  # the live index holds the first point
            monkeypatch.setattr("metalab.store._postgres_index.series_rows", rows_then_append)
            store.rebuild_index()
            assert appended
            assert store.get_series(run_id)["loss"].values == (1.0, 0.5)

    def test_metalab_0_1_stepped_metrics_are_read_through_the_index_store(
        self, postgres_url: str, postgres_schema: str, tmp_path: Path
    ) -> None:
        root = tmp_path / "curves"
        shutil.copytree(COMPAT, root)
        files = FileStoreConfig(root=str(root)).connect()
        with PostgresStore.from_filestore(postgres_url, files, schema=postgres_schema) as store:
            for record in store.list_run_records():
                found = store.get_series(record.run_id)
                assert sorted(found) == ["acc", "loss"]
                assert found["loss"].steps == tuple(range(0, 50, 5))
        assert not (root / "curves_0.1" / "series").exists()


class TestFrames:
    def test_series_dataframe_through_the_index_equals_the_one_from_the_files(
        self, postgres_config: PostgresStoreConfig
    ) -> None:
        import pandas as pd  # noqa: PLC0415 -- the test needs the frame

        with postgres_config.scoped(EXP).connect() as store:
            floats, mixed, none = _run(store), _run(store), _run(store)
            store.append_series(
                floats, [SeriesPoint("loss", s, 1 / (s + 1), 1.0 + s) for s in range(30)][::-1]
            )
            store.append_series(mixed, MIXED)
            through_index = load_results(store, EXP).series_dataframe()
        files = FileStoreConfig(root=postgres_config.file_root, experiment_id=EXP).connect()
        from_files = load_results(files, EXP).series_dataframe()
        assert list(through_index.columns) == [
            "run_id",
            "metric",
            "step",
            "value",
            "timestamp",
            *(c for c in from_files.columns if c.startswith("params.")),
        ]
        pd.testing.assert_frame_equal(through_index, from_files)
        assert none not in set(through_index["run_id"])
        loss = through_index[(through_index["run_id"] == floats)]
        assert loss["step"].tolist() == list(range(30))  # logged backwards, sorted by step
        assert str(loss["value"].dtype) == "object"  # another run's strings make objects
        with postgres_config.scoped(EXP).connect() as store:
            just_floats = load_results(store, EXP).filter(where=f'run_id == "{floats}"')
            assert str(just_floats.series_dataframe()["value"].dtype) == "float64"


def test_an_append_refused_before_writing_leaves_the_index_unmarked(
    postgres_config: PostgresStoreConfig,
) -> None:
    with postgres_config.scoped(EXP).connect() as scoped:
        _run(scoped)  # an experiment directory a mark could land in
    with postgres_config.connect() as unscoped:  # bound to no experiment: needs the record
        with pytest.raises(StoreError, match="put the run record first"):
            unscoped.append_series("f" * 64, [SeriesPoint("loss", 0, 1.0, 1.0)])
        assert not unscoped.is_index_stale()
        assert not unscoped.files.is_index_marked_stale()
