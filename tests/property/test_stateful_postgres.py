"""PostgresStore against the dict model, and ``sync_index()`` against ``rebuild_index()``.

Each hypothesis example gets a fresh schema and a fresh file root; the schemas are
dropped when the test ends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from psycopg import sql

from metalab import _codec
from metalab.errors import CorruptRecordError
from metalab.query import build_query
from metalab.records import DerivedMetrics, RunRecord, Status
from metalab.store import PostgresStore, PostgresStoreConfig, Store, SupportsQuery
from metalab.testing.postgres import PostgresStoreBackdoor
from metalab.testing.stateful import store_state_machine

EXP = "sync:1"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
RUN_IDS = tuple(hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(6))


@dataclasses.dataclass
class Schemas:
    """Fresh schema names on the test server, all dropped at the end of the test."""

    url: str
    names: list[str] = dataclasses.field(default_factory=list)

    def new(self) -> str:
        name = f"metalab_test_{uuid.uuid4().hex}"
        self.names.append(name)
        return name


@pytest.fixture
def schemas(postgres_url: str) -> Iterator[Schemas]:
    made = Schemas(postgres_url)
    yield made
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for name in made.names:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_postgres_store_matches_the_model(schemas: Schemas, tmp_path: Path) -> None:
    def connect(eid: str) -> Store:
        config = PostgresStoreConfig(
            connection_string=schemas.url,
            file_root=str(tmp_path / uuid.uuid4().hex),
            schema=schemas.new(),
            experiment_id=eid,
        )
        return config.connect()

    run_state_machine_as_test(
        store_state_machine(connect),
        settings=settings(max_examples=12, stateful_step_count=12, deadline=None),
    )


def _record(run_id: str, status: Status, value: int) -> RunRecord:
    finished = status != "running"
    return RunRecord(
        run_id=run_id,
        experiment_id=EXP,
        status=status,
        started_at=T0,
        finished_at=T0 + dt.timedelta(seconds=value) if finished else None,
        params={"i": value, "s": f"v{value}"},
        metrics={"m": value / 2} if finished else {},
    )


_statuses: st.SearchStrategy[Status] = st.sampled_from(["running", "success", "failed"])
_edits = st.lists(
    st.tuples(
        st.sampled_from(["write", "delete", "corrupt", "derived", "delete derived"]),
        st.sampled_from(RUN_IDS),
        _statuses,
        st.integers(0, 9),
    ),
    min_size=1,
    max_size=8,
)


def _index_of(store: PostgresStore, backdoor: PostgresStoreBackdoor) -> dict[str, object]:
    assert isinstance(store, SupportsQuery)
    return {
        "runs": backdoor.index_docs("runs"),
        "derived": backdoor.index_docs("derived"),
        "listed": sorted(r.run_id for r in store.list_run_records()),
        "queried": [r.run_id for r in store.query_runs(build_query("params.i >= 0", "-params.i"))],
        "fields": [dataclasses.astuple(f) for f in store.fields()],
    }


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.lists(st.tuples(st.sampled_from(RUN_IDS), _statuses, st.integers(0, 9)), max_size=4),
    edits=_edits,
)
def test_sync_after_file_edits_gives_the_index_a_rebuild_gives(
    schemas: Schemas,
    tmp_path: Path,
    first: list[tuple[str, Status, int]],
    edits: list[tuple[str, str, Status, int]],
) -> None:
    schema = schemas.new()
    config = PostgresStoreConfig(
        connection_string=schemas.url,
        file_root=str(tmp_path / schema),
        schema=schema,
        experiment_id=EXP,
    )
    with config.connect() as store:
        assert isinstance(store, PostgresStore)
        for run_id, status, value in first:
            store.put_run_record(_record(run_id, status, value))
        directory = store.get_working_directory()
        backdoor = PostgresStoreBackdoor(schemas.url, schema, directory, EXP)
        try:
            for step, (op, run_id, status, value) in enumerate(edits, 1):
                runs, derived = directory / "runs" / f"{run_id}.json", directory / "derived"
                runs.parent.mkdir(parents=True, exist_ok=True)
                derived.mkdir(parents=True, exist_ok=True)
                if op == "write":
                    runs.write_bytes(_codec.RUN_RECORD.encode(_record(run_id, status, value)))
                elif op == "delete":
                    runs.unlink(missing_ok=True)
                elif op == "corrupt":
                    runs.write_bytes(b'{"schema_version": 1, "run_id": ')
                elif op == "derived":
                    document = DerivedMetrics(metrics={"d": value})
                    (derived / f"{run_id}.json").write_bytes(_codec.DERIVED.encode(document))
                else:
                    (derived / f"{run_id}.json").unlink(missing_ok=True)
                # An edit made a while after the last write, as by hand: a file
                # rewritten in the clock tick of its indexing, at the same size, is
                # another matter (see test_an_edit_in_the_tick_of_the_write_is_synced).
                for path in (runs, derived / f"{run_id}.json"):
                    if path.exists():
                        os.utime(path, ns=(0, path.stat().st_mtime_ns + step * 10**9))
            corrupt = any(op == "corrupt" for op, *_ in edits)
            bad = sorted(
                p for p in (directory / "runs").glob("*.json") if p.read_bytes().endswith(b": ")
            )
            if bad:
                # Both refuse, naming a corrupt file, and leave the index as it was.
                before = _index_of(store, backdoor)
                for refresh in (store.sync_index, store.rebuild_index):
                    with pytest.raises(CorruptRecordError) as info:
                        refresh()
                    assert info.value.path in {str(p) for p in bad}
                    assert _index_of(store, backdoor) == before
                for path in bad:
                    path.unlink()
            assert corrupt or not bad
            store.sync_index()
            synced = _index_of(store, backdoor)
            store.rebuild_index()
            rebuilt = _index_of(store, backdoor)
        finally:
            backdoor.close()
    for part, answer in synced.items():
        assert answer == rebuilt[part], part


def test_a_same_size_edit_one_nanosecond_later_is_synced(
    postgres_config: PostgresStoreConfig,
) -> None:
    # sync_index() knows a file changed by its (mtime, size): any difference counts.
    # (An edit of the same size within the clock tick of the indexed write keeps
    # both, and is missed: docs/reliability.md, "What sync cannot see".)
    with postgres_config.scoped(EXP).connect() as store:
        assert isinstance(store, PostgresStore)
        store.put_run_record(_record(RUN_IDS[0], "success", 3))
        path = store.get_working_directory() / "runs" / f"{RUN_IDS[0]}.json"
        written = path.stat()
        edited = _codec.RUN_RECORD.encode(_record(RUN_IDS[0], "success", 4))
        assert len(edited) == written.st_size
        path.write_bytes(edited)
        os.utime(path, ns=(written.st_atime_ns, written.st_mtime_ns + 1))
        store.sync_index()
        found = store.get_run_record(RUN_IDS[0])
    assert found is not None
    assert found.params["i"] == 4
