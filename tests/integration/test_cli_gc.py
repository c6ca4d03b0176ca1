"""gc deletes a stuck run only if its record is still the one it judged.

gc lists the ``running`` runs, judges their writers, and only then deletes; a run
that lands a new record in between (it finished, or was started again) must survive.
The ``delete`` seam of :func:`collect_garbage` writes that record just before the
store's conditional delete runs, so the race is played out the same way every time,
against a FileStore and against a PostgresStore (whose index must follow the files).
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from metalab.cli._gc import collect_garbage, delete_if_unchanged
from metalab.records import Provenance, RunRecord, utc_now
from metalab.store import FileStoreConfig, PostgresStoreConfig, StoreConfig, SupportsDelete

EXP = "race:1"
RUN = "5" * 16


@pytest.fixture
def gone() -> Provenance:
    """The provenance of a writer that this test started and killed."""
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    writer.kill()
    writer.wait()
    return Provenance(host=socket.gethostname(), pid=writer.pid)


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    if request.param == "file":
        return FileStoreConfig(root=str(tmp_path), experiment_id=EXP)
    postgres: PostgresStoreConfig = request.getfixturevalue("postgres_config")
    return postgres.scoped(EXP)


def put_stuck(config: StoreConfig, provenance: Provenance) -> RunRecord:
    record = RunRecord.running(
        run_id=RUN, experiment_id=EXP, started_at=utc_now(), provenance=provenance
    )
    with config.connect() as store:
        store.put_run_record(record)
        store.put_artifact(RUN, "weights", b"w")
    return record


def landing_first(
    config: StoreConfig, landed: RunRecord
) -> Callable[[SupportsDelete, RunRecord], bool]:
    """A delete that lets the run's writer land ``landed`` just before it."""

    def delete(store: SupportsDelete, record: RunRecord) -> bool:
        with config.connect() as writer:
            writer.put_run_record(landed)
        return delete_if_unchanged(store, record)

    return delete


class TestGcAgainstWriters:
    def test_a_stuck_run_is_deleted_from_the_files_and_the_index(
        self, config: StoreConfig, gone: Provenance
    ) -> None:
        put_stuck(config, gone)
        with config.connect() as store:
            report = collect_garbage(store, older_than=dt.timedelta(0), apply=True)
            assert [v.record.run_id for v in report.stuck_runs] == [RUN]
            assert store.get_run_record(RUN) is None
            assert store.list_run_records() == []

    @pytest.mark.parametrize("landing", ["finished", "started again"])
    def test_a_run_that_lands_a_record_between_listing_and_delete_is_kept(
        self, config: StoreConfig, gone: Provenance, landing: str
    ) -> None:
        stuck = put_stuck(config, gone)
        landed = (
            stuck.succeeded(metrics={"acc": 0.9})
            if landing == "finished"
            else RunRecord.running(
                run_id=RUN, experiment_id=EXP, started_at=utc_now(), provenance=Provenance.current()
            )
        )
        with config.connect() as store:
            report = collect_garbage(
                store,
                older_than=dt.timedelta(0),
                apply=True,
                delete=landing_first(config, landed),
            )
            assert report.stuck_runs == []
            assert [v.record for v in report.changed_runs] == [stuck]
            assert store.get_run_record(RUN) == landed
            assert store.list_run_records() == [landed]
            assert store.get_artifact(RUN, "weights") == b"w"
