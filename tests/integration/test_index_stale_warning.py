"""An IndexStaleWarning points at the caller's line, whichever write missed the index.

Kept out of the mutation groups (docs/testing.md): mutmut's trampolines add stack
frames, so a check of ``stacklevel`` cannot pass while it runs.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from metalab.errors import IndexStaleWarning, IndexUnavailableError
from metalab.records import ExperimentManifest
from metalab.store import PostgresStore, PostgresStoreConfig
from metalab.testing.store import make_record

EXP = "warn:1"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _down(*_args: Any, **_kwargs: Any) -> None:
    raise IndexUnavailableError("the index is down (staged)")


@pytest.fixture
def store(
    postgres_config: PostgresStoreConfig, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PostgresStore]:
    with postgres_config.connect() as store:
        monkeypatch.setattr(store.index, "write", _down)
        yield store


def test_a_missed_put_warns_at_the_callers_line(store: PostgresStore) -> None:
    with pytest.warns(IndexStaleWarning) as warned:
        store.put_run_record(make_record(EXP, "r1"))
    assert warned[0].filename == __file__


@pytest.mark.parametrize("write", ["derived", "manifest", "delete"])
def test_every_other_missed_write_warns_at_the_callers_line(
    postgres_config: PostgresStoreConfig, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    with postgres_config.connect() as store:
        store.put_run_record(make_record(EXP, "r1"))
        monkeypatch.setattr(store.index, "write", _down)
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            if write == "derived":
                store.put_derived("r1", {"m": 1.0})
            elif write == "manifest":
                store.put_experiment_manifest(
                    ExperimentManifest(experiment_id=EXP, name="warn", version="1", submitted_at=T0)
                )
            else:
                store.delete_run("r1")
        stale = [w.filename for w in warned if issubclass(w.category, IndexStaleWarning)]
        assert stale == [__file__]


def test_a_missed_bulk_put_warns_at_the_callers_line(store: PostgresStore) -> None:
    with pytest.warns(IndexStaleWarning) as warned:
        store.put_run_records([make_record(EXP, "r1")])
    assert warned[0].filename == __file__
