"""PostgresStore against the conformance suite, checked against its files and its tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from metalab.store import PostgresStore, PostgresStoreConfig, SupportsIndexedFiles
from metalab.testing.postgres import PostgresStoreBackdoor
from metalab.testing.store import StoreConformance


class TestPostgresStore(StoreConformance[PostgresStore]):
    @pytest.fixture
    def store(
        self, experiment_id: str, tmp_path: Path, postgres_url: str, postgres_schema: str
    ) -> Iterator[PostgresStore]:
        config = PostgresStoreConfig(
            connection_string=postgres_url,
            file_root=str(tmp_path / "files"),
            schema=postgres_schema,
            experiment_id=experiment_id,
        )
        with config.connect() as store:
            yield store

    @pytest.fixture
    def backdoor(
        self, store: PostgresStore, postgres_url: str, postgres_schema: str, experiment_id: str
    ) -> Iterator[PostgresStoreBackdoor]:
        backdoor = PostgresStoreBackdoor(
            postgres_url, postgres_schema, store.get_working_directory(), experiment_id
        )
        yield backdoor
        backdoor.close()

    def test_workers_may_write_its_files_through_files_config(self, store: PostgresStore) -> None:
        assert isinstance(store, SupportsIndexedFiles)
        assert store.files_config == store.files.config
        assert not store.files_config.process_local
