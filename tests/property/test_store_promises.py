"""What the README promises, on generated data: refusals at the nesting limit, scans
that report every bad file, exports that are idempotent and never delete, and field
catalogs that do not depend on the store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from metalab import _codec
from metalab.records import RunRecord
from metalab.store import (
    FileStoreConfig,
    MemoryStoreConfig,
    PostgresStoreConfig,
    export_store,
)
from metalab.testing import comparable
from metalab.testing import strategies as mst

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EID = "promise:1"
_COUNTER = itertools.count()
FIXTURES = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def record(run_id: str, params: dict[str, Any], eid: str = EID) -> RunRecord:
    return RunRecord.running(run_id=run_id, experiment_id=eid, params=params, started_at=T0)


# -- nesting: the deepest value allowed round-trips; one level more is refused ----------


@st.composite
def nested(draw: st.DrawFn, depth: int) -> Any:
    """A value with exactly ``depth`` levels of lists and mappings, in a random mix."""
    value: Any = draw(st.one_of(st.integers(), st.text(max_size=3), st.none()))
    for _ in range(depth):
        value = [value] if draw(st.booleans()) else {draw(mst.keys): value}
    return value


def levels(value: Any) -> int:
    """Levels of lists and mappings in ``value`` (the oracle's own count)."""
    if isinstance(value, list):
        return 1 + max((levels(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((levels(item) for item in value.values()), default=0)
    return 0


@settings(FIXTURES, max_examples=30)
@given(data=st.data(), depth=st.integers(_codec.MAX_NESTING - 6, _codec.MAX_NESTING + 3))
def test_a_param_at_the_nesting_limit_is_kept_and_one_level_more_refused(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, depth: int
) -> None:
    value = data.draw(nested(depth))
    assert levels(value) == depth
    # The record is level 1 and ``params`` level 2: the value's first list is level 3.
    allowed = 2 + depth <= _codec.MAX_NESTING
    store = FileStoreConfig(root=str(tmp_path_factory.mktemp("nest")), experiment_id=EID).connect()
    first = record("r1", {"p": 1})
    store.put_run_record(first)
    deep = record("r1", {"p": value})
    if allowed:
        store.put_run_record(deep)
        assert comparable(store.get_run_record("r1")) == comparable(deep)
    else:
        with pytest.raises(ValueError, match=f"at most {_codec.MAX_NESTING}"):
            store.put_run_record(deep)
        assert comparable(store.get_run_record("r1")) == comparable(first)


# -- a tolerant scan reports every bad file, and only those ----------------------------

DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda _data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda _data: b"\xff\xfe not json",
    "a list": lambda _data: b"[1, 2, 3]",
    "wrong type": lambda data: data.replace(b'"status":"running"', b'"status":7'),
    "another run inside": lambda data: data.replace(b'"run_id":"r', b'"run_id":"x'),
    "a newer schema": lambda data: data.replace(b'"schema_version":1', b'"schema_version":99'),
}


@settings(FIXTURES, max_examples=40)
@given(
    n=st.integers(1, 12),
    damage=st.dictionaries(st.integers(0, 11), st.sampled_from(sorted(DAMAGE)), max_size=6),
)
def test_a_scan_under_random_corruption_names_every_bad_file(
    tmp_path_factory: pytest.TempPathFactory, n: int, damage: dict[int, str]
) -> None:
    damage = {i: how for i, how in damage.items() if i < n}
    root = tmp_path_factory.mktemp("scan")
    store = FileStoreConfig(root=str(root), experiment_id=EID).connect()
    records = [record(f"r{i}", {"i": i}) for i in range(n)]
    store.put_run_records(records)
    runs = store.get_working_directory() / "runs"
    for i, how in damage.items():
        path = runs / f"r{i}.json"
        path.write_bytes(DAMAGE[how](path.read_bytes()))
    scan = FileStoreConfig(root=str(root), experiment_id=EID).connect().scan_run_records()
    bad = {str(runs / f"r{i}.json") for i in damage}
    assert {problem.path for problem in scan.problems} == bad
    assert len(scan.problems) == len(bad)
    good = [comparable(r) for i, r in enumerate(records) if i not in damage]
    assert sorted(map(repr, map(comparable, scan.records))) == sorted(map(repr, good))


# -- export: repeated, it changes nothing more; it never deletes -----------------------

statuses = st.sampled_from(["running", "success", "failed"])


def finish(base: RunRecord, status: str) -> RunRecord:
    if status == "success":
        return base.succeeded(metrics={"m": 1.0}, finished_at=T0)
    if status == "failed":
        return base.failed(RuntimeError("boom"), finished_at=T0)
    return base


@settings(FIXTURES, max_examples=30)
@given(
    source_runs=st.dictionaries(st.integers(0, 7), statuses, max_size=6),
    target_runs=st.dictionaries(st.integers(0, 7), statuses, max_size=6),
    values=st.lists(mst.json_values(4), min_size=8, max_size=8),
)
def test_export_twice_equals_export_once_and_never_deletes(
    tmp_path_factory: pytest.TempPathFactory,
    source_runs: dict[int, str],
    target_runs: dict[int, str],
    values: list[Any],
) -> None:
    root = tmp_path_factory.mktemp("export")
    source = FileStoreConfig(root=str(root / "src"), experiment_id=EID).connect()
    target = FileStoreConfig(root=str(root / "dst"), experiment_id=EID).connect()
    for i, status in source_runs.items():
        source.put_run_record(finish(record(f"r{i}", {"v": values[i]}), status))
        source.put_artifact(f"r{i}", "blob", f"from source {i}".encode())
    for i, status in target_runs.items():
        target.put_run_record(finish(record(f"r{i}", {"v": values[i], "t": 1}), status))
    before = {r.run_id: comparable(r) for r in target.list_run_records()}

    export_store(source, target)
    once = {r.run_id: comparable(r) for r in target.list_run_records()}
    again = export_store(source, target)
    twice = {r.run_id: comparable(r) for r in target.list_run_records()}

    assert twice == once
    assert again.copied == 0
    assert set(before) <= set(once)  # nothing the destination held is gone
    assert set(once) == set(before) | {f"r{i}" for i in source_runs}
    offered = {f"r{i}": comparable(source.get_run_record(f"r{i}")) for i in source_runs}
    for run_id, now in once.items():
        # Each run holds what the destination had or what the source offered.
        assert now in (before.get(run_id), offered.get(run_id))


# -- field catalogs do not depend on the store ------------------------------------------


def catalog(store: Any) -> list[tuple[Any, ...]]:
    return [dataclasses.astuple(info) for info in store.fields()]


@settings(FIXTURES, max_examples=40)
@given(records=st.lists(mst.query_records(), max_size=8, unique_by=lambda r: r.run_id))
def test_field_catalogs_are_equal_in_every_store(
    postgres_config: PostgresStoreConfig,
    tmp_path_factory: pytest.TempPathFactory,
    records: list[RunRecord],
) -> None:
    assume(records)
    experiment = f"catalog{next(_COUNTER)}:1"
    moved = [
        msgspec.structs.replace(r, experiment_id=experiment, run_id=f"{uuid.uuid4().hex[:8]}{i}")
        for i, r in enumerate(records)
    ]
    root = tmp_path_factory.mktemp("catalog")
    catalogs = []
    for config in (
        MemoryStoreConfig(experiment_id=experiment),
        FileStoreConfig(root=str(root / "files"), experiment_id=experiment),
        postgres_config.scoped(experiment),
    ):
        with config.connect() as store:
            store.put_run_records(moved)
            catalogs.append(catalog(store))
    memory, files, index = catalogs
    assert files == memory
    assert index == memory


def test_the_nesting_oracle_counts_levels() -> None:
    assert levels(1) == 0
    assert levels([]) == 1
    assert levels({"a": [1, {"b": []}]}) == 4
