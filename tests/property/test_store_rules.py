"""The store rules of store/_rules.py agree with themselves and with every backend."""

from __future__ import annotations

import functools
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metalab.records import RunRecord
from metalab.store import FileStoreConfig, MemoryStoreConfig, Store, SupportsBulkPut
from metalab.store._rules import (
    STATUSES,
    batch_winner,
    completes,
    may_be_refused,
    replaces,
)
from metalab.testing import strategies as mst

statuses = st.sampled_from(STATUSES)


def put_one_by_one(statuses: list[str]) -> int:
    """The position of the record left after putting these, one at a time, with replaces()."""
    return functools.reduce(
        lambda kept, i: i if replaces(statuses[i], statuses[kept]) else kept,
        range(1, len(statuses)),
        0,
    )


class TestWhichRecordWins:
    def test_a_running_record_never_replaces_a_finished_one(self) -> None:
        for stored in STATUSES:
            assert replaces("running", stored) == (stored == "running")

    def test_a_finished_record_replaces_anything(self) -> None:
        for new in STATUSES:
            if new != "running":
                assert all(replaces(new, stored) for stored in STATUSES)

    @given(statuses)
    def test_only_a_refusable_put_needs_a_look_at_the_stored_record(self, new: str) -> None:
        assert may_be_refused(new) == (not all(replaces(new, s) for s in STATUSES))

    @given(st.lists(statuses, min_size=1, max_size=12))
    def test_a_batch_leaves_what_puts_one_by_one_leave(self, batch: list[str]) -> None:
        assert batch_winner(batch) == put_one_by_one(batch)

    def test_an_empty_batch_has_no_winner(self) -> None:
        with pytest.raises(ValueError, match="never empty"):
            batch_winner([])

    @given(statuses, statuses)
    def test_a_copy_completes_only_a_running_record_that_the_source_finished(
        self, stored: str, new: str
    ) -> None:
        assert completes(stored, new) == (stored == "running" and new != "running")
        if completes(stored, new):
            assert replaces(new, stored)


def _stores(tmp_path: Path) -> list[Store]:
    return [
        FileStoreConfig(root=str(tmp_path / "files")).connect(),
        MemoryStoreConfig().connect(),
    ]


@settings(max_examples=40, deadline=None)
@given(
    record=mst.run_records(),
    sequence=st.lists(statuses, min_size=1, max_size=6),
    bulk=st.booleans(),
)
def test_every_backend_keeps_the_record_the_rule_picks(
    tmp_path_factory: pytest.TempPathFactory, record: RunRecord, sequence: list[str], bulk: bool
) -> None:
    """File and memory stores, single puts and bulk puts: the rule's winner is stored."""
    versions = [
        msgspec.structs.replace(record, status=status, tags=(str(i),))
        for i, status in enumerate(sequence)
    ]
    expected = versions[put_one_by_one(sequence)]
    for store in _stores(tmp_path_factory.mktemp("rules")):
        with store:
            if bulk:
                assert isinstance(store, SupportsBulkPut)
                store.put_run_records(versions)
            else:
                for version in versions:
                    store.put_run_record(version)
            stored = store.get_run_record(record.run_id)
            assert stored is not None
            assert (stored.status, stored.tags) == (expected.status, expected.tags)
