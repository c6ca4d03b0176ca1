# Test names are the behavioural sentences; docstrings would repeat them.
# ruff: noqa: D102
# mypy cannot pass a Protocol class as type[C] (python/mypy#4717), which _require needs.
# mypy: disable-error-code="type-abstract"
"""The conformance suite every :class:`~metalab.store.abc.Store` must pass.

Subclass :class:`StoreConformance` in a test module (its name must start with
``Test``) and provide two fixtures: ``store``, a fresh, connected store scoped to the
``experiment_id`` fixture, and ``backdoor``, an object that reads and writes the
store's medium directly (files, tables, buckets), implementing :class:`Backdoor`.
Every test checks the store against the medium, not only against itself::

    class TestMyStore(StoreConformance[MyStore]):
        @pytest.fixture
        def store(self, experiment_id: str, tmp_path: Path) -> Iterator[MyStore]:
            with MyStoreConfig(root=str(tmp_path), experiment_id=experiment_id).connect() as s:
                yield s

        @pytest.fixture
        def backdoor(self, tmp_path: Path) -> MyBackdoor:
            return MyBackdoor(tmp_path)

Tests of an optional capability (``SupportsLogs``, ``SupportsDelete``, ...) are
skipped when the store does not implement it; nothing here looks at the store's
concrete class.

Besides the contract in the :class:`~metalab.store.abc.Store` docstring, the suite
holds every store to what metalab's own stores do: a scoped store refuses a record
or manifest of another experiment with
:class:`~metalab.errors.ExperimentMismatchError`; derived metrics, artifacts, logs
and results may be put before the run's record; an artifact's ``uri`` is
``artifacts/{run_id}/{name}.{format}``; documents go through ``metalab._codec``
semantics (timestamps come back in UTC, a naive one is a ``ValueError``, NaN and
infinities round-trip); and a caller mutating a record after ``put`` or after
``get`` never changes what is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, Generic, Protocol, TypeVar

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalab import _codec
from metalab.errors import (
    ArtifactNotFoundError,
    ConfigError,
    CorruptRecordError,
    ExperimentMismatchError,
    StoreError,
    UnsupportedSchemaVersionError,
)
from metalab.query import Query, RunSummary, build_query, select, summarize_runs
from metalab.records import (
    DerivedMetrics,
    ExperimentManifest,
    JSONValue,
    MetricValue,
    ResultDocument,
    RunRecord,
    Status,
)
from metalab.series import SeriesPoint
from metalab.store.abc import (
    Store,
    SupportsArtifactStreaming,
    SupportsBulkDerived,
    SupportsBulkPut,
    SupportsDelete,
    SupportsExperimentManifests,
    SupportsExperiments,
    SupportsIndexRebuild,
    SupportsIndexSync,
    SupportsLogs,
    SupportsQuery,
    SupportsRunEdits,
    SupportsRunSummary,
    SupportsSeries,
    SupportsStructuredResults,
    SupportsWorkingDirectory,
)
from metalab.testing import assert_same_document
from metalab.testing import strategies as mst

__all__ = [
    "BAD_IDS",
    "Backdoor",
    "StoreConformance",
    "make_record",
    "new_run_id",
]

S = TypeVar("S", bound=Store)
C = TypeVar("C")

BAD_IDS: Final = ("", ".", "..", "../x", "a/b", "a\\b", "x\x00y", "x" * 1000)
"""Run ids and names that no store may accept: they could escape a path or a key space."""

T0: Final = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
_FINISHED: Final[tuple[Status, ...]] = ("success", "failed", "cancelled")
# Each example uses fresh run ids, so sharing the function-scoped store is safe; every
# store's subclass runs the same inherited test (differing executors), and replaying
# one store's failing example against another is harmless.
_HYPOTHESIS: Final = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.differing_executors,
        HealthCheck.too_slow,
    ],
)


class Backdoor(Protocol):
    """Direct access to a store's medium, bypassing the store under test.

    Each conformance subclass provides one, so the suite can check that what the
    store says it holds is what the medium holds, and plant documents the store
    would never write (corrupt bytes, a future schema version).
    """

    def snapshot(self) -> dict[str, bytes]:
        """Return every document in the medium, keyed by where it lives.

        A key must contain the run id of the document it belongs to (as in
        ``runs/<run_id>.json``), so the suite can tell that a deleted run left
        nothing behind. Store metadata that a store writes once (a ``_meta.json``)
        may be left out.
        """
        ...

    def run_ids(self) -> set[str]:
        """Return the ids of the runs whose records are in the medium."""
        ...

    def read_run_record(self, run_id: str) -> RunRecord | None:
        """Read and decode a run record from the medium, or return ``None``."""
        ...

    def write_raw_run_record(self, run_id: str, data: bytes) -> None:
        """Write ``data`` where the record of ``run_id`` lives, as it is."""
        ...

    def read_derived(self, run_id: str) -> DerivedMetrics | None:
        """Read and decode a run's derived metrics from the medium, or return ``None``."""
        ...

    def write_raw_derived(self, run_id: str, data: bytes) -> None:
        """Write ``data`` where the derived metrics of ``run_id`` live, as it is."""
        ...

    def read_artifact(self, run_id: str, name: str) -> bytes | None:
        """Read an artifact's bytes from the medium, or return ``None``."""
        ...


def new_run_id() -> str:
    """Return a fresh run id shaped like metalab's (64 lowercase hex digits)."""
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()


def make_record(
    experiment_id: str,
    run_id: str | None = None,
    *,
    status: Status = "success",
    metrics: dict[str, MetricValue] | None = None,
    params: dict[str, JSONValue] | None = None,
) -> RunRecord:
    """Build a plausible record in any status, with fixed timestamps."""
    record = RunRecord.running(
        run_id=new_run_id() if run_id is None else run_id,
        experiment_id=experiment_id,
        params=params if params is not None else {"lr": 0.01, "layers": [64, 32], "opt": "adam"},
        started_at=T0,
        tags=("conformance",),
    )
    if status == "running":
        return record
    end = T0 + dt.timedelta(seconds=1.5)
    values: dict[str, MetricValue] = (
        metrics if metrics is not None else {"loss": 0.25, "steps": 100, "ok": True}
    )
    if status == "success":
        return record.succeeded(metrics=values, finished_at=end)
    if status == "failed":
        return record.failed(RuntimeError("diverged"), metrics=values, finished_at=end)
    return record.cancelled(metrics=values, finished_at=end)


def _manifest(experiment_id: str, submitted_at: dt.datetime, note: str = "") -> ExperimentManifest:
    name, _, version = experiment_id.partition(":")
    return ExperimentManifest(
        experiment_id=experiment_id,
        name=name,
        version=version or "0",
        submitted_at=submitted_at,
        description=note or None,
        params={"lr": [0.1, 0.01]},
        run_ids=(new_run_id(),),
        total_runs=1,
    )


def _require(store: object, capability: type[C]) -> C:
    """Return ``store`` as ``capability``, or skip the test if it lacks it."""
    if not isinstance(store, capability):
        pytest.skip(f"{type(store).__qualname__} does not implement {capability.__name__}")
    return store


class StoreConformance(Generic[S]):
    """The tests every store must pass; subclass it and provide the fixtures.

    Fixtures to provide: ``store`` (a fresh, connected store scoped to
    ``experiment_id``; the suite closes it again, so ``close`` must be idempotent)
    and ``backdoor`` (a :class:`Backdoor` on the same medium). ``experiment_id`` has
    a default that holds a ``:``, as real experiment ids do; override it to test
    others.
    """

    @pytest.fixture
    def experiment_id(self) -> str:
        """The experiment the ``store`` fixture is scoped to."""
        return "conformance:1.0"

    @pytest.fixture
    def store(self) -> Iterator[S]:
        """A fresh, connected store scoped to ``experiment_id`` (override this)."""
        raise NotImplementedError(
            "subclass StoreConformance and provide a `store` fixture yielding a fresh store"
        )

    @pytest.fixture
    def backdoor(self) -> Backdoor:
        """Direct access to the medium of ``store`` (override this)."""
        raise NotImplementedError(
            "subclass StoreConformance and provide a `backdoor` fixture implementing Backdoor"
        )

    # Run records

    def test_a_put_record_is_returned_by_get_and_is_in_the_medium(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        record = make_record(experiment_id)
        store.put_run_record(record)
        assert store.get_run_record(record.run_id) == record
        assert backdoor.read_run_record(record.run_id) == record
        assert backdoor.run_ids() == {record.run_id}

    def test_put_records_are_listed_and_exist(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        records = [make_record(experiment_id, status=s) for s in ("running", *_FINISHED)]
        for record in records:
            store.put_run_record(record)
        listed = store.list_run_records()
        assert sorted(listed, key=lambda r: r.run_id) == sorted(records, key=lambda r: r.run_id)
        assert all(store.run_exists(r.run_id) for r in records)
        assert backdoor.run_ids() == {r.run_id for r in records}

    def test_a_missing_run_is_none_absent_and_unlisted(self, store: S) -> None:
        run_id = new_run_id()
        assert store.get_run_record(run_id) is None
        assert store.run_exists(run_id) is False
        assert store.list_run_records() == []

    def test_listing_by_experiment_returns_only_that_experiment(
        self, store: S, experiment_id: str
    ) -> None:
        record = make_record(experiment_id)
        store.put_run_record(record)
        assert store.list_run_records(experiment_id) == [record]
        assert store.list_run_records("some-other-experiment:9") == []

    def test_a_finished_record_replaces_a_running_one(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        running = make_record(experiment_id, status="running")
        done = make_record(experiment_id, running.run_id, status="success")
        store.put_run_record(running)
        store.put_run_record(done)
        assert store.get_run_record(running.run_id) == done
        assert backdoor.read_run_record(running.run_id) == done

    @pytest.mark.parametrize("status", _FINISHED)
    def test_a_running_record_never_replaces_a_finished_one(
        self, store: S, backdoor: Backdoor, experiment_id: str, status: Status
    ) -> None:
        done = make_record(experiment_id, status=status)
        store.put_run_record(done)
        store.put_run_record(make_record(experiment_id, done.run_id, status="running"))
        assert store.get_run_record(done.run_id) == done
        assert backdoor.read_run_record(done.run_id) == done

    def test_a_finished_record_replaces_another_finished_one(
        self, store: S, experiment_id: str
    ) -> None:
        failed = make_record(experiment_id, status="failed")
        rerun = make_record(experiment_id, failed.run_id, status="success")
        store.put_run_record(failed)
        store.put_run_record(rerun)
        assert store.get_run_record(failed.run_id) == rerun

    def test_nan_and_infinite_values_round_trip(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        record = make_record(
            experiment_id,
            metrics={"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "zero": -0.0},
            params={"nested": [math.nan, {"$float": "NaN"}, {"x": math.inf}]},
        )
        store.put_run_record(record)
        assert_same_document(store.get_run_record(record.run_id), record)
        assert_same_document(backdoor.read_run_record(record.run_id), record)
        [listed] = store.list_run_records()
        assert_same_document(listed, record)

    def test_timestamps_at_any_offset_are_returned_in_utc(
        self, store: S, experiment_id: str
    ) -> None:
        tokyo = dt.timezone(dt.timedelta(hours=9))
        record = msgspec.structs.replace(
            make_record(experiment_id), started_at=T0.astimezone(tokyo)
        )
        store.put_run_record(record)
        stored = store.get_run_record(record.run_id)
        assert stored is not None
        assert stored.started_at == T0
        assert stored.started_at.utcoffset() == dt.timedelta(0)

    def test_a_naive_timestamp_is_refused_and_nothing_is_written(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        naive = msgspec.structs.replace(
            make_record(experiment_id), started_at=T0.replace(tzinfo=None)
        )
        with pytest.raises(ValueError, match="timezone"):
            store.put_run_record(naive)
        assert backdoor.run_ids() == set()

    def test_changing_a_record_after_put_does_not_change_the_stored_one(
        self, store: S, experiment_id: str
    ) -> None:
        record = make_record(experiment_id)
        expected = make_record(experiment_id, record.run_id)
        store.put_run_record(record)
        record.params["lr"] = 99.0
        record.metrics["loss"] = 99.0
        returned = store.get_run_record(record.run_id)
        assert returned == expected
        assert returned is not None
        returned.params["lr"] = 42.0
        assert store.get_run_record(record.run_id) == expected

    @pytest.mark.parametrize("bad_id", BAD_IDS)
    def test_an_invalid_run_id_is_refused_and_nothing_is_written(
        self, store: S, backdoor: Backdoor, experiment_id: str, bad_id: str
    ) -> None:
        existing = make_record(experiment_id)
        store.put_run_record(existing)
        before = backdoor.snapshot()
        with pytest.raises(ConfigError):
            store.put_run_record(make_record(experiment_id, bad_id))
        with pytest.raises(ConfigError):
            store.get_run_record(bad_id)
        with pytest.raises(ConfigError):
            store.run_exists(bad_id)
        with pytest.raises(ConfigError):
            store.put_derived(bad_id, {"m": 1.0})
        with pytest.raises(ConfigError):
            store.put_artifact(bad_id, "model", b"data")
        assert backdoor.snapshot() == before
        assert store.list_run_records() == [existing]

    def test_a_record_of_another_experiment_is_refused(self, store: S, backdoor: Backdoor) -> None:
        with pytest.raises(ExperimentMismatchError):
            store.put_run_record(make_record("some-other-experiment:9"))
        assert backdoor.run_ids() == set()
        assert store.list_run_records() == []

    def test_a_corrupt_record_raises_on_get_and_list(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        store.put_run_record(make_record(experiment_id))
        run_id = new_run_id()
        backdoor.write_raw_run_record(run_id, b'{"schema_version":1,"run_id":')
        assert store.run_exists(run_id)
        with pytest.raises(CorruptRecordError):
            store.get_run_record(run_id)
        with pytest.raises(CorruptRecordError):
            store.list_run_records()

    def test_a_record_stored_under_another_run_id_raises_on_get_and_list(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        run_id = new_run_id()
        elsewhere = make_record(experiment_id)
        store.put_run_record(elsewhere)
        backdoor.write_raw_run_record(run_id, _codec.RUN_RECORD.encode(elsewhere))
        with pytest.raises(CorruptRecordError):
            store.get_run_record(run_id)
        with pytest.raises(CorruptRecordError):
            store.list_run_records()

    def test_a_record_of_the_wrong_shape_raises_on_get(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        run_id = new_run_id()
        bad = {"schema_version": 1, "run_id": run_id, "experiment_id": experiment_id}
        backdoor.write_raw_run_record(run_id, msgspec.json.encode(dict(bad, status="sleeping")))
        with pytest.raises(CorruptRecordError):
            store.get_run_record(run_id)

    def test_a_future_version_record_raises_on_get_and_list(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        run_id = new_run_id()
        future = msgspec.json.encode(
            {"schema_version": 99, "run_id": run_id, "experiment_id": experiment_id}
        )
        backdoor.write_raw_run_record(run_id, future)
        with pytest.raises(UnsupportedSchemaVersionError):
            store.get_run_record(run_id)
        with pytest.raises(UnsupportedSchemaVersionError):
            store.list_run_records()

    @_HYPOTHESIS
    @given(record=mst.run_records())
    def test_any_record_round_trips(
        self, store: S, backdoor: Backdoor, experiment_id: str, record: RunRecord
    ) -> None:
        record = msgspec.structs.replace(record, run_id=new_run_id(), experiment_id=experiment_id)
        store.put_run_record(record)
        assert_same_document(store.get_run_record(record.run_id), record)
        assert_same_document(backdoor.read_run_record(record.run_id), record)

    def test_threads_putting_different_runs_lose_none(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        batches = [[make_record(experiment_id) for _ in range(25)] for _ in range(4)]
        _in_threads(store, batches)
        expected = {r.run_id for b in batches for r in b}
        assert {r.run_id for r in store.list_run_records()} == expected
        assert backdoor.run_ids() == expected

    def test_threads_racing_on_the_same_runs_never_move_a_record_backwards(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        done = [make_record(experiment_id) for _ in range(20)]
        running = [make_record(experiment_id, r.run_id, status="running") for r in done]
        _in_threads(store, [running, done, running])
        for record in done:
            assert store.get_run_record(record.run_id) == record
            assert backdoor.read_run_record(record.run_id) == record

    # Bulk put

    def test_bulk_put_stores_every_record_and_counts_them(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        bulk = _require(store, SupportsBulkPut)
        records = [make_record(experiment_id, status=s) for s in ("running", *_FINISHED) * 3]
        assert bulk.put_run_records(iter(records)) == len(records)
        for record in records:
            assert store.get_run_record(record.run_id) == record
            assert backdoor.read_run_record(record.run_id) == record

    def test_bulk_put_keeps_the_rules_of_single_puts(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        bulk = _require(store, SupportsBulkPut)
        stored_done = make_record(experiment_id)
        store.put_run_record(stored_done)
        a, b = new_run_id(), new_run_id()
        bulk.put_run_records(
            [
                make_record(experiment_id, stored_done.run_id, status="running"),
                make_record(experiment_id, a, status="running"),
                make_record(experiment_id, a, status="failed"),
                make_record(experiment_id, b, status="cancelled"),
                make_record(experiment_id, b, status="running"),
            ]
        )
        assert backdoor.read_run_record(stored_done.run_id) == stored_done
        assert backdoor.read_run_record(a) == make_record(experiment_id, a, status="failed")
        assert backdoor.read_run_record(b) == make_record(experiment_id, b, status="cancelled")

    @pytest.mark.parametrize("bad_id", ["..", "a/b", "x\x00y"])
    def test_bulk_put_with_an_invalid_id_stores_none_of_the_batch(
        self, store: S, backdoor: Backdoor, experiment_id: str, bad_id: str
    ) -> None:
        bulk = _require(store, SupportsBulkPut)
        good = [make_record(experiment_id) for _ in range(3)]
        with pytest.raises(ConfigError):
            bulk.put_run_records([*good[:2], make_record(experiment_id, bad_id), good[2]])
        assert backdoor.run_ids() == set()

    def test_bulk_put_with_a_record_of_another_experiment_stores_none(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        bulk = _require(store, SupportsBulkPut)
        batch = [make_record(experiment_id), make_record("some-other-experiment:9")]
        with pytest.raises(ExperimentMismatchError):
            bulk.put_run_records(batch)
        assert backdoor.run_ids() == set()

    # Artifacts

    def test_an_artifact_is_stored_with_its_hash_size_and_relative_uri(
        self, store: S, backdoor: Backdoor
    ) -> None:
        run_id = new_run_id()
        data = bytes(range(256)) * 40
        descriptor = store.put_artifact(
            run_id, "model", data, kind="numpy", format="npy", metadata={"shape": [10, 1024]}
        )
        assert descriptor.name == "model"
        assert descriptor.kind == "numpy"
        assert descriptor.format == "npy"
        assert descriptor.content_hash == hashlib.sha256(data).hexdigest()
        assert descriptor.size_bytes == len(data)
        assert descriptor.uri == f"artifacts/{run_id}/model.npy"
        assert descriptor.metadata == {"shape": [10, 1024]}
        assert store.get_artifact(run_id, "model") == data
        assert store.list_artifacts(run_id) == [descriptor]
        assert backdoor.read_artifact(run_id, "model") == data

    def test_an_artifact_is_copied_from_a_file_path(
        self, store: S, backdoor: Backdoor, tmp_path: Path
    ) -> None:
        source = tmp_path / "weights.bin"
        data = b"\x00\x01weights\xff" * 1000
        source.write_bytes(data)
        run_id = new_run_id()
        descriptor = store.put_artifact(run_id, "weights", source)
        source.write_bytes(b"changed afterwards")
        assert descriptor.content_hash == hashlib.sha256(data).hexdigest()
        assert descriptor.size_bytes == len(data)
        assert (descriptor.kind, descriptor.format) == ("bytes", "bin")
        assert store.get_artifact(run_id, "weights") == data
        assert backdoor.read_artifact(run_id, "weights") == data

    @pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
    def test_an_artifact_accepts_any_bytes_like_value(
        self, store: S, wrap: type[bytes | bytearray | memoryview]
    ) -> None:
        run_id = new_run_id()
        descriptor = store.put_artifact(run_id, "blob", wrap(b"abc"))
        assert descriptor.size_bytes == 3
        assert store.get_artifact(run_id, "blob") == b"abc"

    def test_an_empty_artifact_is_kept(self, store: S, backdoor: Backdoor) -> None:
        run_id = new_run_id()
        descriptor = store.put_artifact(run_id, "empty", b"")
        assert descriptor.size_bytes == 0
        assert descriptor.content_hash == hashlib.sha256(b"").hexdigest()
        assert store.get_artifact(run_id, "empty") == b""
        assert backdoor.read_artifact(run_id, "empty") == b""

    def test_putting_an_artifact_again_by_name_replaces_it(
        self, store: S, backdoor: Backdoor
    ) -> None:
        run_id = new_run_id()
        store.put_artifact(run_id, "plot", b"old", format="png")
        other = store.put_artifact(run_id, "table", b"a,b\n1,2\n", kind="file", format="csv")
        new = store.put_artifact(run_id, "plot", b"new picture", format="svg")
        assert sorted(store.list_artifacts(run_id), key=lambda a: a.name) == [new, other]
        assert store.get_artifact(run_id, "plot") == b"new picture"
        assert backdoor.read_artifact(run_id, "plot") == b"new picture"
        assert backdoor.read_artifact(run_id, "table") == b"a,b\n1,2\n"
        assert b"old" not in backdoor.snapshot().values()

    def test_two_artifacts_that_would_share_a_uri_are_refused(
        self, store: S, backdoor: Backdoor
    ) -> None:
        run_id = new_run_id()
        store.put_artifact(run_id, "a.b", b"first", format="c")
        before = backdoor.snapshot()
        with pytest.raises(ConfigError):
            store.put_artifact(run_id, "a", b"second", format="b.c")
        assert backdoor.snapshot() == before
        assert store.get_artifact(run_id, "a.b") == b"first"

    def test_a_missing_artifact_raises_and_a_run_without_any_lists_none(self, store: S) -> None:
        run_id = new_run_id()
        assert store.list_artifacts(run_id) == []
        with pytest.raises(ArtifactNotFoundError):
            store.get_artifact(run_id, "model")
        store.put_artifact(run_id, "model", b"x")
        with pytest.raises(ArtifactNotFoundError):
            store.get_artifact(run_id, "other")

    @pytest.mark.parametrize("bad_name", BAD_IDS)
    def test_an_invalid_artifact_name_or_format_is_refused_and_nothing_is_written(
        self, store: S, backdoor: Backdoor, bad_name: str
    ) -> None:
        run_id = new_run_id()
        store.put_artifact(run_id, "model", b"kept")
        before = backdoor.snapshot()
        with pytest.raises(ConfigError):
            store.put_artifact(run_id, bad_name, b"data")
        with pytest.raises(ConfigError):
            store.put_artifact(run_id, "other", b"data", format=bad_name)
        with pytest.raises(ConfigError):
            store.get_artifact(run_id, bad_name)
        assert backdoor.snapshot() == before
        assert [a.name for a in store.list_artifacts(run_id)] == ["model"]

    def test_an_artifact_can_be_read_as_a_stream(self, store: S) -> None:
        streaming = _require(store, SupportsArtifactStreaming)
        run_id = new_run_id()
        data = b"stream me " * 10_000
        store.put_artifact(run_id, "big", data)
        with streaming.open_artifact(run_id, "big") as stream:
            assert stream.read(6) == b"stream"
            assert stream.read() == data[6:]
        with pytest.raises(ArtifactNotFoundError):
            streaming.open_artifact(run_id, "missing")

    # Derived metrics

    def test_derived_metrics_are_stored_and_replaced(self, store: S, backdoor: Backdoor) -> None:
        run_id = new_run_id()
        store.put_derived(run_id, {"auc": 0.9, "best": "b", "n": 3, "ok": False})
        store.put_derived(run_id, {"auc": 0.95})
        expected = DerivedMetrics(metrics={"auc": 0.95})
        assert store.derived_exists(run_id)
        assert store.get_derived(run_id) == expected
        assert backdoor.read_derived(run_id) == expected

    def test_derived_nan_and_infinity_round_trip(self, store: S, backdoor: Backdoor) -> None:
        run_id = new_run_id()
        metrics: dict[str, MetricValue] = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
        store.put_derived(run_id, metrics)
        assert_same_document(store.get_derived(run_id), DerivedMetrics(metrics=metrics))
        assert_same_document(backdoor.read_derived(run_id), DerivedMetrics(metrics=metrics))

    def test_missing_derived_metrics_are_none_and_absent(self, store: S) -> None:
        run_id = new_run_id()
        assert store.get_derived(run_id) is None
        assert store.derived_exists(run_id) is False

    def test_corrupt_derived_metrics_raise_on_get(self, store: S, backdoor: Backdoor) -> None:
        run_id = new_run_id()
        backdoor.write_raw_derived(run_id, b"\xff\xfe not json")
        with pytest.raises(CorruptRecordError):
            store.get_derived(run_id)
        backdoor.write_raw_derived(run_id, b'{"schema_version":7,"metrics":{}}')
        with pytest.raises(UnsupportedSchemaVersionError):
            store.get_derived(run_id)

    def test_the_derived_metrics_of_an_experiment_are_listed_at_once(
        self, store: S, experiment_id: str
    ) -> None:
        bulk = _require(store, SupportsBulkDerived)
        assert bulk.list_derived() == {}
        first, second = make_record(experiment_id), make_record(experiment_id)
        store.put_run_record(first)
        store.put_run_record(second)
        store.put_run_record(make_record(experiment_id))  # a run without derived metrics
        store.put_derived(first.run_id, {"auc": 0.9, "best": "b"})
        store.put_derived(second.run_id, {"n": 3})
        store.put_derived(second.run_id, {"n": 4, "ok": True})
        expected = {
            first.run_id: DerivedMetrics(metrics={"auc": 0.9, "best": "b"}),
            second.run_id: DerivedMetrics(metrics={"n": 4, "ok": True}),
        }
        assert bulk.list_derived() == expected
        assert bulk.list_derived(experiment_id) == expected
        assert bulk.list_derived("some-other-experiment:9") == {}

    def test_listing_corrupt_derived_metrics_raises(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        bulk = _require(store, SupportsBulkDerived)
        record = make_record(experiment_id)
        store.put_run_record(record)
        backdoor.write_raw_derived(record.run_id, b"\xff\xfe not json")
        with pytest.raises(CorruptRecordError):
            bulk.list_derived()

    @_HYPOTHESIS
    @given(derived=mst.derived_metrics())
    def test_any_derived_metrics_round_trip(
        self, store: S, backdoor: Backdoor, derived: DerivedMetrics
    ) -> None:
        run_id = new_run_id()
        store.put_derived(run_id, derived.metrics)
        assert_same_document(store.get_derived(run_id), derived)
        assert_same_document(backdoor.read_derived(run_id), derived)

    # Logs

    def test_logs_are_stored_exactly_listed_and_replaced(self, store: S) -> None:
        logs = _require(store, SupportsLogs)
        run_id = new_run_id()
        text = "step 1: loss=0.5\r\nstep 2: ünïcödé ✓\n\tend"
        logs.put_log(run_id, "stdout", "old text")
        logs.put_log(run_id, "stdout", text)
        logs.put_log(run_id, "stderr", "")
        assert logs.get_log(run_id, "stdout") == text
        assert logs.get_log(run_id, "stderr") == ""
        assert sorted(logs.list_logs(run_id)) == ["stderr", "stdout"]

    def test_a_missing_log_is_none_and_unlisted(self, store: S) -> None:
        logs = _require(store, SupportsLogs)
        run_id = new_run_id()
        assert logs.get_log(run_id, "stdout") is None
        assert logs.list_logs(run_id) == []

    def test_a_log_streamed_to_its_path_is_read_back(self, store: S) -> None:
        logs = _require(store, SupportsLogs)
        run_id = new_run_id()
        path = logs.log_path(run_id, "run")
        assert path.parent.is_dir()
        with path.open("a", encoding="utf-8") as stream:
            stream.write("first line\n")
            stream.flush()
            assert logs.get_log(run_id, "run") == "first line\n"
            stream.write("second line\n")
        assert logs.get_log(run_id, "run") == "first line\nsecond line\n"
        assert logs.list_logs(run_id) == ["run"]

    @pytest.mark.parametrize("bad_name", BAD_IDS)
    def test_an_invalid_log_name_is_refused_and_nothing_is_written(
        self, store: S, backdoor: Backdoor, bad_name: str
    ) -> None:
        logs = _require(store, SupportsLogs)
        run_id = new_run_id()
        logs.put_log(run_id, "stdout", "kept")
        before = backdoor.snapshot()
        with pytest.raises(ConfigError):
            logs.put_log(run_id, bad_name, "text")
        with pytest.raises(ConfigError):
            logs.log_path(run_id, bad_name)
        with pytest.raises(ConfigError):
            logs.log_path(bad_name, "stdout")
        with pytest.raises(ConfigError):
            logs.get_log(run_id, bad_name)
        assert backdoor.snapshot() == before
        assert logs.list_logs(run_id) == ["stdout"]

    # Tags and notes edited after the run

    def test_tags_and_notes_are_edited_on_the_stored_record(
        self, store: S, experiment_id: str
    ) -> None:
        edits = _require(store, SupportsRunEdits)
        record = msgspec.structs.replace(make_record(experiment_id), tags=("exp", "v1"))
        store.put_run_record(record)
        after = edits.set_tags(record.run_id, add=["baseline", "gpu", "baseline"], remove=["v1"])
        assert after.tags == ("exp", "baseline", "gpu")
        assert edits.set_notes(record.run_id, "looks good").notes == "looks good"
        stored = store.get_run_record(record.run_id)
        assert stored is not None
        assert (stored.tags, stored.notes) == (("exp", "baseline", "gpu"), "looks good")
        assert stored.edits is not None
        assert stored.edits.tags_removed == ("v1",)
        assert edits.set_notes(record.run_id, None).notes is None
        # Everything else of the record is as it was.
        assert (
            msgspec.structs.replace(
                store.get_run_record(record.run_id),  # type: ignore[type-var]
                tags=record.tags,
                notes=record.notes,
                edits=None,
            )
            == record
        )

    def test_a_later_status_write_keeps_the_edits(self, store: S, experiment_id: str) -> None:
        edits = _require(store, SupportsRunEdits)
        running = RunRecord.running(
            run_id=new_run_id(), experiment_id=experiment_id, tags=("exp",), params={"a": 1}
        )
        store.put_run_record(running)
        edits.set_tags(running.run_id, add=["keep"], remove=["exp"])
        edits.set_notes(running.run_id, "noted while it ran")
        store.put_run_record(running.succeeded(metrics={"m": 1}))  # built without them
        final = store.get_run_record(running.run_id)
        assert final is not None
        assert final.status == "success"
        assert (final.tags, final.notes) == (("keep",), "noted while it ran")
        store.put_run_record(final)  # a record read and put back keeps them once
        assert store.get_run_record(running.run_id) == final

    def test_edits_from_many_threads_all_land(self, store: S, experiment_id: str) -> None:
        edits = _require(store, SupportsRunEdits)
        record = make_record(experiment_id)
        store.put_run_record(record)
        labels = [f"t{i}" for i in range(8)]
        with ThreadPoolExecutor(len(labels)) as pool:
            list(pool.map(lambda t: edits.set_tags(record.run_id, add=[t]), labels))
        stored = store.get_run_record(record.run_id)
        assert stored is not None
        assert sorted(stored.tags) == sorted([*record.tags, *labels])

    def test_queries_see_edited_tags(self, store: S, experiment_id: str) -> None:
        edits = _require(store, SupportsRunEdits)
        querying = _require(store, SupportsQuery)
        tagged, other = make_record(experiment_id), make_record(experiment_id)
        for record in (tagged, other):
            store.put_run_record(record)
        edits.set_tags(tagged.run_id, add=["chosen"])
        found = querying.query_runs(build_query('tags contains "chosen"'))
        assert [r.run_id for r in found] == [tagged.run_id]

    @pytest.mark.parametrize(
        ("add", "remove", "error"),
        [
            ([""], [], "a tag must be a non-empty string"),
            ([3], [], "a tag must be a non-empty string"),
            (["x"], ["x"], "both added and removed"),
        ],
    )
    def test_a_bad_edit_is_refused_and_changes_nothing(
        self,
        store: S,
        backdoor: Backdoor,
        experiment_id: str,
        add: list[object],
        remove: list[object],
        error: str,
    ) -> None:
        edits = _require(store, SupportsRunEdits)
        record = make_record(experiment_id)
        store.put_run_record(record)
        before = backdoor.snapshot()
        with pytest.raises(ConfigError, match=error):
            edits.set_tags(record.run_id, add=add, remove=remove)  # type: ignore[arg-type]
        assert backdoor.snapshot() == before

    def test_editing_a_run_that_is_not_there_is_an_error(self, store: S) -> None:
        edits = _require(store, SupportsRunEdits)
        with pytest.raises(StoreError, match="no run"):
            edits.set_tags(new_run_id(), add=["x"])
        with pytest.raises(StoreError, match="no run"):
            edits.set_notes(new_run_id(), "x")

    # Metric series

    def test_series_are_appended_and_read_back_by_name_in_step_order(self, store: S) -> None:
        series = _require(store, SupportsSeries)
        run_id = new_run_id()
        assert series.get_series(run_id) == {}
        series.append_series(
            run_id,
            [SeriesPoint("loss", 2, 0.5, 10.0), SeriesPoint("acc", 0, True, 10.5)],
        )
        series.append_series(
            run_id,
            [
                SeriesPoint("loss", 0, 0.9, 11.0),  # late, out of order
                SeriesPoint("loss", 2, 0.4, 12.0),  # a step again
                SeriesPoint("note", 7, "warm-up done", None),
            ],
        )
        found = series.get_series(run_id)
        assert sorted(found) == ["acc", "loss", "note"]
        loss = found["loss"]
        assert loss.steps == (0, 2, 2)
        assert loss.values == (0.9, 0.5, 0.4)  # one step's points in the order logged
        assert [t.timestamp() if t else None for t in loss.timestamps] == [11.0, 10.0, 12.0]
        assert found["acc"].values == (True,)
        assert found["note"].timestamps == (None,)

    def test_series_keep_nan_infinities_and_every_scalar_type(self, store: S) -> None:
        series = _require(store, SupportsSeries)
        run_id = new_run_id()
        values: list[MetricValue] = [math.nan, math.inf, -math.inf, 3, 2.5, "x", False]
        series.append_series(run_id, [SeriesPoint("m", i, v, 1.0) for i, v in enumerate(values)])
        back = series.get_series(run_id)["m"].values
        assert math.isnan(back[0])  # type: ignore[arg-type]
        assert back[1:] == (math.inf, -math.inf, 3, 2.5, "x", False)
        assert [type(v) for v in back[3:]] == [int, float, str, bool]

    def test_restarting_a_series_replaces_what_the_run_logged(self, store: S) -> None:
        series = _require(store, SupportsSeries)
        run_id = new_run_id()
        series.append_series(run_id, [SeriesPoint("loss", 0, 1.0, 1.0)])
        series.append_series(run_id, [SeriesPoint("acc", 0, 0.1, 2.0)], restart=True)
        assert sorted(series.get_series(run_id)) == ["acc"]

    def test_the_series_of_runs_are_kept_apart(self, store: S) -> None:
        series = _require(store, SupportsSeries)
        first, second = new_run_id(), new_run_id()
        series.append_series(first, [SeriesPoint("loss", 0, 1.0, 1.0)])
        series.append_series(second, [SeriesPoint("loss", 0, 2.0, 1.0)])
        assert series.get_series(first)["loss"].values == (1.0,)
        assert series.get_series(second)["loss"].values == (2.0,)

    @pytest.mark.parametrize("bad_id", BAD_IDS)
    def test_an_invalid_run_id_for_a_series_is_refused_and_nothing_is_written(
        self, store: S, backdoor: Backdoor, bad_id: str
    ) -> None:
        series = _require(store, SupportsSeries)
        before = backdoor.snapshot()
        with pytest.raises(ConfigError):
            series.append_series(bad_id, [SeriesPoint("loss", 0, 1.0, 1.0)])
        with pytest.raises(ConfigError):
            series.get_series(bad_id)
        assert backdoor.snapshot() == before

    # Structured results

    def test_results_are_stored_listed_and_replaced(self, store: S) -> None:
        results = _require(store, SupportsStructuredResults)
        run_id = new_run_id()
        first = ResultDocument(data=[1, 2, 3], dtype="int64", shape=(3,))
        second = ResultDocument(data={"curve": [0.5, math.nan, math.inf]}, metadata={"u": "s"})
        results.put_result(run_id, "curve", first)
        results.put_result(run_id, "curve", second)
        results.put_result(run_id, "table", first)
        assert_same_document(results.get_result(run_id, "curve"), second)
        assert results.get_result(run_id, "table") == first
        assert sorted(results.list_results(run_id)) == ["curve", "table"]

    def test_a_missing_result_is_none_and_unlisted(self, store: S) -> None:
        results = _require(store, SupportsStructuredResults)
        run_id = new_run_id()
        assert results.get_result(run_id, "curve") is None
        assert results.list_results(run_id) == []

    @pytest.mark.parametrize("bad_name", BAD_IDS)
    def test_an_invalid_result_name_is_refused_and_nothing_is_written(
        self, store: S, backdoor: Backdoor, bad_name: str
    ) -> None:
        results = _require(store, SupportsStructuredResults)
        run_id = new_run_id()
        results.put_result(run_id, "kept", ResultDocument(data=1))
        before = backdoor.snapshot()
        with pytest.raises(ConfigError):
            results.put_result(run_id, bad_name, ResultDocument(data=2))
        with pytest.raises(ConfigError):
            results.get_result(run_id, bad_name)
        assert backdoor.snapshot() == before
        assert results.list_results(run_id) == ["kept"]

    @_HYPOTHESIS
    @given(result=mst.result_documents())
    def test_any_result_round_trips(self, store: S, result: ResultDocument) -> None:
        results = _require(store, SupportsStructuredResults)
        run_id = new_run_id()
        results.put_result(run_id, "data", result)
        assert_same_document(results.get_result(run_id, "data"), result)

    # Experiment manifests and experiments

    def test_manifests_are_listed_oldest_submission_first(
        self, store: S, experiment_id: str
    ) -> None:
        manifests = _require(store, SupportsExperimentManifests)
        times = [T0 + dt.timedelta(minutes=m) for m in (30, 0, 10)]
        for at in times:
            manifests.put_experiment_manifest(_manifest(experiment_id, at))
        listed = manifests.list_experiment_manifests()
        assert [m.submitted_at for m in listed] == sorted(times)
        assert manifests.list_experiment_manifests(experiment_id) == listed
        assert manifests.list_experiment_manifests("some-other-experiment:9") == []

    def test_manifests_submitted_at_the_same_instant_are_all_kept(
        self, store: S, experiment_id: str
    ) -> None:
        manifests = _require(store, SupportsExperimentManifests)
        manifests.put_experiment_manifest(_manifest(experiment_id, T0, "first"))
        manifests.put_experiment_manifest(_manifest(experiment_id, T0, "second"))
        listed = manifests.list_experiment_manifests()
        assert sorted(m.description or "" for m in listed) == ["first", "second"]

    def test_the_very_same_manifest_put_twice_is_kept_once(
        self, store: S, experiment_id: str
    ) -> None:
        manifests = _require(store, SupportsExperimentManifests)
        manifest = _manifest(experiment_id, T0)
        manifests.put_experiment_manifest(manifest)
        manifests.put_experiment_manifest(manifest)
        assert manifests.list_experiment_manifests() == [manifest]

    def test_a_manifest_of_another_experiment_is_refused(self, store: S) -> None:
        manifests = _require(store, SupportsExperimentManifests)
        with pytest.raises(ExperimentMismatchError):
            manifests.put_experiment_manifest(_manifest("some-other-experiment:9", T0))
        assert manifests.list_experiment_manifests() == []

    def test_the_experiment_of_a_stored_run_is_listed(self, store: S, experiment_id: str) -> None:
        experiments = _require(store, SupportsExperiments)
        store.put_run_record(make_record(experiment_id))
        assert experiments.list_experiments() == [experiment_id]

    # Delete

    def test_deleting_a_run_removes_everything_of_it(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        deleter = _require(store, SupportsDelete)
        keep = make_record(experiment_id)
        gone = make_record(experiment_id)
        for record in (keep, gone):
            _fill_run(store, record)
        kept_before = {k: v for k, v in backdoor.snapshot().items() if keep.run_id in k}
        assert deleter.delete_run(gone.run_id) is True
        assert store.get_run_record(gone.run_id) is None
        assert not store.run_exists(gone.run_id)
        assert store.get_derived(gone.run_id) is None
        assert store.list_artifacts(gone.run_id) == []
        assert backdoor.read_run_record(gone.run_id) is None
        assert backdoor.read_artifact(gone.run_id, "model") is None
        logs = _optional(store, SupportsLogs)
        if logs is not None:
            assert logs.list_logs(gone.run_id) == []
            assert logs.get_log(gone.run_id, "stream") is None
        results = _optional(store, SupportsStructuredResults)
        if results is not None:
            assert results.list_results(gone.run_id) == []
        series = _optional(store, SupportsSeries)
        if series is not None:
            assert series.get_series(gone.run_id) == {}
        snapshot = backdoor.snapshot()
        assert [k for k in snapshot if gone.run_id in k] == []
        assert {k: v for k, v in snapshot.items() if keep.run_id in k} == kept_before
        assert store.list_run_records() == [keep]

    def test_deleting_a_missing_run_returns_false(self, store: S, experiment_id: str) -> None:
        deleter = _require(store, SupportsDelete)
        assert deleter.delete_run(new_run_id()) is False
        record = make_record(experiment_id)
        store.put_run_record(record)
        assert deleter.delete_run(record.run_id) is True
        assert deleter.delete_run(record.run_id) is False

    def test_deleting_a_run_that_has_only_an_artifact_returns_true(self, store: S) -> None:
        deleter = _require(store, SupportsDelete)
        run_id = new_run_id()
        store.put_artifact(run_id, "model", b"x")
        assert deleter.delete_run(run_id) is True
        assert store.list_artifacts(run_id) == []

    @pytest.mark.parametrize("bad_id", BAD_IDS)
    def test_deleting_an_invalid_run_id_is_refused_and_nothing_is_removed(
        self, store: S, backdoor: Backdoor, experiment_id: str, bad_id: str
    ) -> None:
        deleter = _require(store, SupportsDelete)
        store.put_run_record(make_record(experiment_id))
        before = backdoor.snapshot()
        with pytest.raises(ConfigError):
            deleter.delete_run(bad_id)
        assert backdoor.snapshot() == before

    # Index

    def test_rebuilding_the_index_keeps_every_record(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        index = _require(store, SupportsIndexRebuild)
        records = [make_record(experiment_id, status=s) for s in ("running", *_FINISHED)]
        for record in records:
            store.put_run_record(record)
        calls: list[tuple[int, int | None]] = []
        assert index.rebuild_index(lambda done, total: calls.append((done, total))) == 4
        assert all(done <= 4 for done, _ in calls)
        by_id = sorted(records, key=lambda r: r.run_id)
        assert sorted(store.list_run_records(), key=lambda r: r.run_id) == by_id
        assert backdoor.run_ids() == {r.run_id for r in records}
        for record in records:
            assert store.get_run_record(record.run_id) == record

    def test_a_sync_brings_the_index_up_to_date(self, store: S, experiment_id: str) -> None:
        index = _require(store, SupportsIndexSync)
        records = [make_record(experiment_id) for _ in range(3)]
        for record in records:
            store.put_run_record(record)
        index.sync_index()
        assert index.is_index_stale() is False
        assert {r.run_id for r in store.list_run_records()} == {r.run_id for r in records}

    # Queries

    @_HYPOTHESIS
    @given(
        records=st.lists(mst.query_records(), max_size=8),
        derived=st.lists(mst.query_derived(), max_size=8),
        query=mst.queries(),
    )
    def test_a_query_selects_what_the_python_engine_selects(
        self,
        store: S,
        experiment_id: str,
        records: list[RunRecord],
        derived: list[dict[str, MetricValue]],
        query: Query,
    ) -> None:
        querying = _require(store, SupportsQuery)
        for i, drawn in enumerate(records):
            record = msgspec.structs.replace(
                drawn, run_id=new_run_id(), experiment_id=experiment_id
            )
            store.put_run_record(record)
            if i < len(derived):
                store.put_derived(record.run_id, derived[i])

        def lookup(record: RunRecord) -> dict[str, MetricValue] | None:
            doc = store.get_derived(record.run_id)
            return None if doc is None else doc.metrics

        expected = select(store.list_run_records(experiment_id), query, lookup)
        assert [r.run_id for r in querying.query_runs(query)] == [r.run_id for r in expected]

    def test_the_field_catalog_describes_every_key(self, store: S, experiment_id: str) -> None:
        querying = _require(store, SupportsQuery)
        first = make_record(experiment_id)
        second = make_record(experiment_id)
        store.put_run_record(
            msgspec.structs.replace(first, params={"lr": 0.1}, metrics={"acc": 0.5})
        )
        store.put_run_record(
            msgspec.structs.replace(
                second, params={"lr": 2, "opt": "adam"}, metrics={"acc": math.nan}
            )
        )
        store.put_derived(first.run_id, {"gain": 3})
        catalog = {info.field: info for info in querying.fields(experiment_id)}
        assert set(catalog) == {"params.lr", "params.opt", "metrics.acc", "derived.gain"}
        lr = catalog["params.lr"]
        assert (lr.types, lr.count, lr.min_value, lr.max_value) == (["float", "int"], 2, 0.1, 2.0)
        assert catalog["params.opt"].types == ["str"]
        assert catalog["params.opt"].samples == ["adam"]
        acc = catalog["metrics.acc"]
        assert (acc.types, acc.count, acc.min_value, acc.max_value) == (["float"], 2, 0.5, 0.5)
        assert (catalog["derived.gain"].types, catalog["derived.gain"].count) == (["int"], 1)

    # Run summaries

    def test_a_run_summary_counts_runs_by_status(self, store: S, experiment_id: str) -> None:
        summarizing = _require(store, SupportsRunSummary)
        records = [
            make_record(experiment_id),
            make_record(experiment_id),
            make_record(experiment_id, status="failed"),
            make_record(experiment_id, status="running"),
        ]
        records[1] = msgspec.structs.replace(records[1], tags=("b", "a"))
        records[2] = msgspec.structs.replace(records[2], tags=())
        for record in records:
            store.put_run_record(record)
        expected = RunSummary(
            experiment_id=experiment_id,
            counts={"failed": 1, "running": 1, "success": 2},
            last_activity=T0 + dt.timedelta(seconds=1.5),
            tags=["a", "b", "conformance"],
        )
        assert summarizing.summarize_runs(experiment_id) == {experiment_id: expected}
        assert summarizing.summarize_runs() == {experiment_id: expected}
        assert expected.runs == 4
        # The same as the Python engine over the records.
        assert summarize_runs(store.list_run_records(), experiment_id) == {experiment_id: expected}

    def test_a_run_put_again_is_counted_once_in_its_last_status(
        self, store: S, experiment_id: str
    ) -> None:
        summarizing = _require(store, SupportsRunSummary)
        record = make_record(experiment_id, status="running")
        store.put_run_record(record)
        assert summarizing.summarize_runs(experiment_id)[experiment_id].counts == {"running": 1}
        finished = record.succeeded(metrics={}, finished_at=T0 + dt.timedelta(hours=2))
        store.put_run_record(finished)
        summary = summarizing.summarize_runs(experiment_id)[experiment_id]
        assert (summary.counts, summary.last_activity) == (
            {"success": 1},
            T0 + dt.timedelta(hours=2),
        )

    def test_an_experiment_without_runs_is_summarised_as_empty(
        self, store: S, experiment_id: str
    ) -> None:
        summarizing = _require(store, SupportsRunSummary)
        assert summarizing.summarize_runs(experiment_id) == {
            experiment_id: RunSummary(experiment_id)
        }
        store.put_run_record(make_record(experiment_id))
        assert summarizing.summarize_runs("other:1") == {"other:1": RunSummary("other:1")}

    # Working directory, close

    def test_the_working_directory_exists(self, store: S, experiment_id: str) -> None:
        working = _require(store, SupportsWorkingDirectory)
        store.put_run_record(make_record(experiment_id))
        directory = working.get_working_directory()
        assert directory.is_absolute()
        assert directory.is_dir()

    def test_the_store_is_its_own_context_manager(self, store: S, experiment_id: str) -> None:
        with store as entered:
            assert entered is store
            store.put_run_record(make_record(experiment_id))

    def test_closing_twice_is_harmless_and_keeps_the_data(
        self, store: S, backdoor: Backdoor, experiment_id: str
    ) -> None:
        record = make_record(experiment_id)
        store.put_run_record(record)
        store.close()
        store.close()
        assert backdoor.read_run_record(record.run_id) == record


def _optional(store: object, capability: type[C]) -> C | None:
    """Return ``store`` as ``capability`` if it implements it, else ``None``."""
    return store if isinstance(store, capability) else None


def _fill_run(store: Store, record: RunRecord) -> None:
    """Give a run something of every kind the store can hold."""
    store.put_run_record(record)
    store.put_derived(record.run_id, {"auc": 0.5})
    store.put_artifact(record.run_id, "model", b"weights")
    store.put_artifact(record.run_id, "plot", b"<svg/>", format="svg")
    logs = _optional(store, SupportsLogs)
    if logs is not None:
        logs.put_log(record.run_id, "stdout", "hello\n")
        with logs.log_path(record.run_id, "stream").open("w", encoding="utf-8") as stream:
            stream.write("streamed\n")
    results = _optional(store, SupportsStructuredResults)
    if results is not None:
        results.put_result(record.run_id, "curve", ResultDocument(data=[1, 2]))
    series = _optional(store, SupportsSeries)
    if series is not None:
        series.append_series(record.run_id, [SeriesPoint("loss", 0, 0.5, 1.0)])


def _in_threads(store: Store, batches: list[list[RunRecord]]) -> None:
    """Put each batch from its own thread, all starting together; re-raise any error."""
    barrier = threading.Barrier(len(batches))

    def put_all(batch: list[RunRecord]) -> None:
        barrier.wait()
        for record in batch:
            store.put_run_record(record)

    with ThreadPoolExecutor(len(batches)) as pool:
        for future in [pool.submit(put_all, batch) for batch in batches]:
            future.result()
