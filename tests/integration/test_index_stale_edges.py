"""The stale-mark rules of an indexed store at their edges, against a real index: a miss
marks only the experiments written and warns once, a write that places nothing touches
neither index nor marks, a delete leaves the index, and a scoped sync keeps to its scope.

The index's ``write`` is made to fail as the fault suite does it (the server is real;
only the outage is staged). Written against the survivors of a mutation run
(docs/testing.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metalab.errors import (
    ConfigError,
    CorruptRecordError,
    IndexStaleWarning,
    IndexUnavailableError,
    StoreError,
)
from metalab.records import ExperimentManifest
from metalab.store import FileStoreConfig, PostgresStore, PostgresStoreConfig
from metalab.store._index import SyncReport
from metalab.testing.store import make_record

A, B = "a:1", "b:1"
T0 = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


@pytest.fixture
def store(postgres_config: PostgresStoreConfig) -> Iterator[PostgresStore]:
    with postgres_config.connect() as store:
        store.put_run_record(make_record(A, "a1"))
        store.put_run_record(make_record(B, "b1"))
        yield store


def index_down(monkeypatch: pytest.MonkeyPatch, store: PostgresStore) -> None:
    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise IndexUnavailableError("the index is down (staged)")

    monkeypatch.setattr(store.index, "write", fail)


class TestAMissedWrite:
    def test_marks_only_the_experiment_written_and_warns_once(
        self,
        store: PostgresStore,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        index_down(monkeypatch, store)
        with caplog.at_level(logging.WARNING, logger="metalab.store._indexed"):
            with pytest.warns(IndexStaleWarning) as warned:
                store.put_run_record(make_record(A, "a2"))
            store.put_run_record(make_record(A, "a3"))  # no second warning
        assert [str(w.message) for w in warned] == [
            (
                "the index is down (staged); the write went to the files, and the index is "
                "marked stale until store.sync_index()"
            )
        ]
        assert [r.getMessage() for r in caplog.records] == [
            "the index is down (staged); the write went to the files and the index is marked stale"
        ]
        assert store.is_index_stale()
        assert set(store.files.index_stale_marks()) == {A}
        monkeypatch.undo()
        assert store.sync_index(batch_size=1).indexed == 2
        assert store.is_index_stale() is False
        assert store.files.index_stale_marks() == {}

    def test_a_write_that_places_nothing_leaves_index_and_marks_alone(
        self, store: PostgresStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A running record never replaces the finished one stored: nothing is placed.
        index_down(monkeypatch, store)
        store.put_run_record(make_record(A, "a1", status="running"))
        assert not store.is_index_stale()
        assert store.files.index_stale_marks() == {}

    def test_an_unforeseen_error_marks_only_the_experiment_written(
        self, store: PostgresStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def interrupted(*_args: Any, **_kwargs: Any) -> None:
            raise RuntimeError("interrupted (staged)")

        monkeypatch.setattr(store.index, "write", interrupted)
        with pytest.raises(RuntimeError, match="interrupted"):
            store.put_run_record(make_record(A, "a2"))
        assert set(store.files.index_stale_marks()) == {A}

    def test_a_store_opened_on_a_lagging_index_says_so(
        self,
        store: PostgresStore,
        postgres_config: PostgresStoreConfig,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        index_down(monkeypatch, store)
        with pytest.warns(IndexStaleWarning):
            store.put_run_record(make_record(A, "a2"))
        with (
            caplog.at_level(logging.INFO, logger="metalab.store._indexed"),
            postgres_config.connect() as again,
        ):
            assert again.is_index_stale() is True
            assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
                f"{again!r}: the index lags behind the files; sync_index() updates it"
            ]

    def test_a_miss_during_a_sync_keeps_the_store_stale(
        self, store: PostgresStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        index_down(monkeypatch, store)
        with pytest.warns(IndexStaleWarning):
            store.put_run_record(make_record(A, "a2"))
        monkeypatch.undo()
        real_states = store.index.states
        during: list[bool] = []

        def states_then_a_miss(*args: Any, **kwargs: Any) -> Any:
            found = real_states(*args, **kwargs)
            if not during:  # another thread's write misses the index while the sync reads
                during.append(True)
                index_down(monkeypatch, store)
                store.put_run_record(make_record(A, "a3"))
                monkeypatch.undo()
            return found

        monkeypatch.setattr(store.index, "states", states_then_a_miss)
        store.sync_index()
        assert store.is_index_stale() is True
        assert set(store.files.index_stale_marks()) == {A}


class TestDeletesAndSyncs:
    def test_a_deleted_run_leaves_the_index(self, store: PostgresStore) -> None:
        assert store.delete_run("a1")
        assert store.get_run_record("a1") is None
        assert [r.run_id for r in store.list_run_records()] == ["b1"]

    def test_a_scoped_sync_keeps_to_its_experiment(
        self, store: PostgresStore, postgres_config: PostgresStoreConfig
    ) -> None:
        with postgres_config.scoped(A).connect() as scoped:
            assert scoped.sync_index() == SyncReport(indexed=0, removed=0, unchanged=1)
        assert sorted(r.run_id for r in store.list_run_records()) == ["a1", "b1"]

    def test_the_batch_size_is_at_least_one(self, store: PostgresStore) -> None:
        with pytest.raises(ConfigError, match=r"^batch_size must be at least 1, got 0$"):
            store.sync_index(batch_size=0)


class TestOneIndexPerFileRoot:
    def test_an_index_made_for_other_files_refuses_reads_and_writes_until_rebuilt(
        self, postgres_config: PostgresStoreConfig, tmp_path: Any
    ) -> None:
        with postgres_config.connect() as store:
            store.put_run_record(make_record("a:1"))
        with postgres_config.connect() as store:  # the same root, again: fine
            assert store.foreign_file_root is None
        other = PostgresStoreConfig(
            connection_string=postgres_config.connection_string,
            file_root=str(tmp_path / "other"),
            schema=postgres_config.schema,
        )
        message = (
            f"the postgres index {postgres_config.schema!r} at "
            f"{postgres_config.redacted_connection_string!r} was built from the files "
            f"under {postgres_config.file_root!r}, not {other.file_root!r}: give the "
            "file_root it was built from, or another schema for these files; if the "
            "files moved here, rebuilding the index records their new root ('metalab "
            "store rebuild-index LOCATOR --file-root-moved', or store.rebuild_index())"
        )
        for policy in ("raise", "fallback"):  # not an outage: no fallback hides it
            with dataclasses.replace(other, on_index_error=policy).connect() as store:
                assert store.foreign_file_root == postgres_config.file_root
                for call in (
                    store.list_experiments,
                    lambda: store.list_run_records(None),
                    lambda: store.put_run_record(make_record("b:1")),
                    store.sync_index,
                ):
                    with pytest.raises(ConfigError) as caught:
                        call()
                    assert str(caught.value) == message
        assert not list((tmp_path / "other").rglob("*.json"))  # nothing was written
        with other.connect() as store:
            store.rebuild_index()  # the files moved: index these, record their root
            assert store.foreign_file_root is None
            assert store.list_experiments() == []
        with other.connect() as store:
            assert store.foreign_file_root is None
        with postgres_config.connect() as store:  # now the first root is the other one
            assert store.foreign_file_root == other.file_root

    def test_a_scoped_store_cannot_adopt_another_root(
        self, postgres_config: PostgresStoreConfig, tmp_path: Any
    ) -> None:
        postgres_config.connect().close()
        other = PostgresStoreConfig(
            connection_string=postgres_config.connection_string,
            file_root=str(tmp_path / "other"),
            schema=postgres_config.schema,
            experiment_id="a:1",
        )
        with other.connect() as store, pytest.raises(ConfigError, match="rebuild the whole"):
            store.rebuild_index()

    def test_a_symlink_to_the_root_is_the_same_root(
        self, postgres_config: PostgresStoreConfig, tmp_path: Any
    ) -> None:
        with postgres_config.connect():
            pass
        link = tmp_path / "link"
        link.symlink_to(postgres_config.file_root)
        with dataclasses.replace(postgres_config, file_root=str(link)).connect() as store:
            assert store.foreign_file_root is None
            assert not store.is_index_stale()


class TestManifestsOfSeveralExperiments:
    """A manifest's key may repeat across experiments; a run id may not."""

    def test_sync_and_rebuild_take_same_named_manifests_of_two_experiments(
        self, store: PostgresStore
    ) -> None:
        for experiment in (A, B):
            store.put_experiment_manifest(
                ExperimentManifest(
                    experiment_id=experiment, name="exp", version="1", submitted_at=T0
                )
            )
        store.sync_index()
        store.rebuild_index()
        assert sorted(m.experiment_id for m in store.list_experiment_manifests()) == [A, B]


class TestPendingSyncs:
    """An index created over existing files owes each experiment a sync; a scoped store
    owes only its own, and a sync pays what it covered."""

    @pytest.fixture
    def config(self, postgres_config: PostgresStoreConfig) -> PostgresStoreConfig:
        files = FileStoreConfig(root=postgres_config.file_root)
        for experiment, run_id in ((A, "a1"), (B, "b1")):
            with files.scoped(experiment).connect() as plain:
                plain.put_run_record(make_record(experiment, run_id))
        return postgres_config

    def test_a_scoped_store_lags_only_for_its_own_experiment(
        self, config: PostgresStoreConfig
    ) -> None:
        with config.scoped(A).connect() as a:
            assert a.is_index_stale() is True
            assert a.index.open().needs_sync == {A, B}
            a.sync_index()
            assert a.index.open().needs_sync == {B}
            assert a.is_index_stale() is False
        with config.scoped(A).connect() as again:
            assert again.is_index_stale() is False  # B still waits for its sync
            assert again.get_run_record("a1") is not None
        with config.scoped(B).connect() as b:
            assert b.is_index_stale() is True

    def test_an_unscoped_sync_pays_every_experiment(self, config: PostgresStoreConfig) -> None:
        with config.connect() as store:
            assert store.is_index_stale() is True
            store.sync_index()
            assert store.index.open().needs_sync == frozenset()
        with config.scoped(B).connect() as b:
            assert b.is_index_stale() is False


def test_an_index_unreachable_when_the_store_opens_leaves_it_stale(tmp_path: Path) -> None:
    files = FileStoreConfig(root=str(tmp_path), experiment_id=A)
    with files.connect() as plain:
        plain.put_run_record(make_record(A, "a1"))
    config = PostgresStoreConfig(
        connection_string="postgresql://metalab@127.0.0.1:1/nothing",
        file_root=str(tmp_path),
        experiment_id=A,
        on_index_error="fallback",
        connect_timeout=1.0,
        pool_timeout=1.0,
    )
    with config.connect() as store:
        assert store.is_index_stale() is True
        with pytest.warns(IndexStaleWarning, match="reading from the files"):
            found = store.get_run_record("a1")
    assert found is not None


@pytest.mark.parametrize("copied", ["manifests", "derived"])
def test_a_document_copied_into_another_experiment_is_refused_by_name(
    store: PostgresStore, copied: str
) -> None:
    # A manifest's file name carries its experiment and the index keys derived
    # metrics by run id: the same file in two directories is a copy by hand. Sync
    # and rebuild refuse it clearly (not with the database's duplicate-key error)
    # and leave the index as it was.
    store.put_experiment_manifest(
        ExperimentManifest(experiment_id=A, name="exp", version="1", submitted_at=T0)
    )
    store.put_derived("a1", {"m": 1.0})
    root = Path(store.files_config.root)
    (original,) = root.glob(f"*/{'experiments' if copied == 'manifests' else 'derived'}/*.json")
    other = next(p for p in root.iterdir() if p.is_dir() and p != original.parent.parent)
    (other / original.parent.name).mkdir(exist_ok=True)
    shutil.copy2(original, other / original.parent.name / original.name)
    what = "manifest" if copied == "manifests" else "derived metrics of run"
    both = rf"\('{A}' and '{B}'\)|\('{B}' and '{A}'\)"
    expected = rf"{what} '{original.stem}' is in two experiment directories ({both}); remove one"
    with pytest.raises(StoreError, match=expected):
        store.sync_index()
    with pytest.raises(StoreError, match=expected):
        store.rebuild_index()
    assert [m.experiment_id for m in store.list_experiment_manifests()] == [A]
    derived = store.get_derived("a1")
    assert derived is not None
    assert derived.metrics == {"m": 1.0}


class TestAFailedSync:
    """A sync that fails part way clears nothing: the mark on disk and the store's own
    knowledge that the index lags both stay until a sync succeeds."""

    @pytest.fixture
    def marked(self, store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> PostgresStore:
        index_down(monkeypatch, store)
        with pytest.warns(IndexStaleWarning):
            store.put_run_record(make_record(A, "a2"))
        monkeypatch.undo()
        return store

    def test_an_index_lost_during_the_sync_keeps_the_mark(
        self, marked: PostgresStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        index_down(monkeypatch, marked)
        with pytest.raises(IndexUnavailableError, match="staged"):
            marked.sync_index()
        assert set(marked.files.index_stale_marks()) == {A}
        assert marked.is_index_stale() is True
        monkeypatch.undo()
        marked.sync_index()
        assert marked.files.index_stale_marks() == {}
        assert marked.is_index_stale() is False

    def test_a_corrupt_file_keeps_the_mark(self, marked: PostgresStore) -> None:
        path = next(Path(marked.files_config.root).glob("*/runs/a2.json"))
        good = path.read_bytes()
        path.write_bytes(b"{not json")
        with pytest.raises(CorruptRecordError):
            marked.sync_index()
        assert set(marked.files.index_stale_marks()) == {A}
        assert marked.is_index_stale() is True
        path.write_bytes(good)
        marked.sync_index()
        assert marked.is_index_stale() is False
