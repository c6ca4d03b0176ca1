"""PostgreSQL going away and coming back: nothing is lost, nothing is silently wrong."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import metalab
from metalab import _codec
from metalab.errors import IndexStaleWarning, IndexUnavailableError
from metalab.records import RunRecord
from metalab.store import FileStoreConfig, PostgresStoreConfig
from metalab.testing import comparable
from metalab.testing.postgres import RestartablePostgres
from metalab.testing.store import make_record

EXP = "sweep:1"

# The server that the first run of a sweep stops; set before the sweep, so the worker
# processes forked for it inherit it.
SERVER_TO_STOP: list[RestartablePostgres] = []


@metalab.operation
def stops_the_server(params: dict[str, Any]) -> None:
    if params["i"] == 0:
        SERVER_TO_STOP[0].stop()


def by_id(records: list[RunRecord]) -> list[object]:
    return [comparable(r) for r in sorted(records, key=lambda r: r.run_id)]


def meta_is_stale(directory: Path) -> bool:
    return _codec.STORE_META.decode((directory / "_meta.json").read_bytes()).index_stale


@pytest.fixture
def server(restartable_postgres: RestartablePostgres) -> Iterator[RestartablePostgres]:
    yield restartable_postgres
    restartable_postgres.start()


def config(server: RestartablePostgres, tmp_path: Path, **options: object) -> PostgresStoreConfig:
    fields: dict[str, object] = {
        "connection_string": server.url,
        "file_root": str(tmp_path / "files"),
        "experiment_id": EXP,
        "pool_timeout": 1.0,
        "connect_timeout": 1.0,
        **options,
    }
    return PostgresStoreConfig(**fields)  # type: ignore[arg-type]


class TestServerStoppedMidSweep:
    def test_writes_land_in_files_and_sync_repairs_the_index(
        self, server: RestartablePostgres, tmp_path: Path
    ) -> None:
        before = [make_record(EXP) for _ in range(5)]
        during = [make_record(EXP) for _ in range(5)]
        after = [make_record(EXP) for _ in range(5)]
        with config(server, tmp_path).connect() as store:
            for record in before:
                store.put_run_record(record)
            server.stop()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for record in during:
                    store.put_run_record(record)
                store.put_derived(during[0].run_id, {"auc": 0.7})
            assert [w.category for w in caught] == [IndexStaleWarning]
            assert store.is_index_stale()
            assert meta_is_stale(store.get_working_directory())
            with pytest.raises(IndexUnavailableError):
                store.list_run_records()
            server.start()
            for record in after:
                store.put_run_record(record)
            with pytest.raises(IndexUnavailableError, match="stale"):
                store.get_run_record(before[0].run_id)
            report = store.sync_index()
            assert report.indexed >= len(during) + 1
            assert not store.is_index_stale()
            assert not meta_is_stale(store.get_working_directory())
            expected = before + during + after
            assert by_id(store.list_run_records()) == by_id(expected)
            assert by_id(store.files.list_run_records()) == by_id(expected)
            assert store.get_derived(during[0].run_id) == store.files.get_derived(during[0].run_id)

    def test_the_stale_mark_reaches_a_store_connected_later(
        self, server: RestartablePostgres, tmp_path: Path
    ) -> None:
        with config(server, tmp_path).connect() as store:
            store.put_run_record(make_record(EXP))
            server.stop()
            with pytest.warns(IndexStaleWarning):
                store.put_run_record(make_record(EXP))
        server.start()
        with config(server, tmp_path).connect() as later:
            assert later.is_index_stale()
            later.sync_index()
            assert len(later.list_run_records()) == 2
        with config(server, tmp_path).connect() as fresh:
            assert not fresh.is_index_stale()

    def test_fallback_reads_the_files_with_one_warning(
        self, server: RestartablePostgres, tmp_path: Path
    ) -> None:
        records = [make_record(EXP) for _ in range(3)]
        with config(server, tmp_path, on_index_error="fallback").connect() as store:
            store.put_run_records(records)
            server.stop()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                listed = store.list_run_records()
                assert store.get_run_record(records[0].run_id) == records[0]
                assert store.run_exists(records[1].run_id)
            assert [w.category for w in caught] == [IndexStaleWarning]
            assert by_id(listed) == by_id(records)


def run_to_the_end(
    exp: metalab.Experiment, store: PostgresStoreConfig, executor: metalab.Executor
) -> metalab.Results:
    with metalab.run(exp, store=store, executor=executor, progress=False) as handle:
        return handle.result(timeout=120)


class TestServerStoppedUnderWorkerProcesses:
    def test_the_stale_index_warning_of_a_worker_reaches_the_caller(
        self, server: RestartablePostgres, tmp_path: Path
    ) -> None:
        exp = metalab.Experiment(
            name="sweep", version="1", operation=stops_the_server, params=metalab.grid(i=[0, 1])
        )
        store = config(server, tmp_path, on_index_error="fallback")
        SERVER_TO_STOP[:] = [server]
        try:
            with pytest.warns(IndexStaleWarning) as caught:
                results = run_to_the_end(exp, store, metalab.ProcessExecutor(1))
        finally:
            SERVER_TO_STOP.clear()

        assert len(results.successful) == 2
        # The worker's write missed the index; this process only read (from the files).
        written = [
            str(w.message) for w in caught if "the write went to the files" in str(w.message)
        ]
        assert len(written) == 1
        assert all(w.category is IndexStaleWarning for w in caught)


class TestServerDownAtConnect:
    def test_connect_raises_under_the_raise_policy_and_touches_no_file(
        self, server: RestartablePostgres, tmp_path: Path
    ) -> None:
        server.stop()
        with pytest.raises(IndexUnavailableError, match="cannot be reached"):
            config(server, tmp_path).connect()
        assert not (tmp_path / "files").exists()

    def test_connect_succeeds_under_the_fallback_policy_and_files_answer(
        self, server: RestartablePostgres, tmp_path: Path
    ) -> None:
        record = make_record(EXP)
        with FileStoreConfig(root=str(tmp_path / "files"), experiment_id=EXP).connect() as files:
            files.put_run_record(record)
        server.stop()
        with config(server, tmp_path, on_index_error="fallback").connect() as store:
            assert store.is_index_stale()
            with pytest.warns(IndexStaleWarning):
                assert store.list_run_records() == [record]
            server.start()
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert store.sync_index().indexed == 1
                assert store.list_run_records() == [record]
