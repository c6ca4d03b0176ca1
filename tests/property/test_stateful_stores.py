"""Random sequences of writes and deletes leave every built-in store equal to a dict model."""

from __future__ import annotations

import uuid
from pathlib import Path

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from metalab.store import FileStoreConfig, MemoryStoreConfig, Store
from metalab.testing.stateful import store_state_machine

SETTINGS = settings(max_examples=30, stateful_step_count=20, deadline=None)


def test_memory_store_matches_the_model() -> None:
    machine = store_state_machine(lambda eid: MemoryStoreConfig(experiment_id=eid).connect())
    run_state_machine_as_test(machine, settings=SETTINGS)


def test_file_store_matches_the_model(tmp_path: Path) -> None:
    def connect(eid: str) -> Store:
        return FileStoreConfig(root=str(tmp_path / uuid.uuid4().hex), experiment_id=eid).connect()

    run_state_machine_as_test(store_state_machine(connect), settings=SETTINGS)
