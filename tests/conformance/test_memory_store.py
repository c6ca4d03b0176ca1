"""MemoryStore against the conformance suite; its medium is the store's private memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from metalab import _codec
from metalab.records import DerivedMetrics, RunRecord
from metalab.store import MemoryStore, MemoryStoreConfig
from metalab.store._memory import _Partition
from metalab.testing.store import StoreConformance


class MemoryBackdoor:
    """Reads and writes the dictionaries behind one scoped MemoryStore."""

    def __init__(self, store: MemoryStore, experiment_id: str) -> None:
        self._store = store
        self._experiment_id = experiment_id
        self._part: _Partition = store._backend.partition(experiment_id)

    def snapshot(self) -> dict[str, bytes]:
        part = self._part
        docs: dict[str, bytes] = {}
        docs.update({f"runs/{k}": v for k, v in part.runs.items()})
        docs.update({f"derived/{k}": v for k, v in part.derived.items()})
        docs.update({f"artifacts/{k}/_manifest": v for k, v in part.artifact_manifests.items()})
        for run_id, files in part.artifact_data.items():
            docs.update({f"artifacts/{run_id}/{name}": data for name, data in files.items()})
        for run_id, logs in part.logs.items():
            docs.update({f"logs/{run_id}_{name}": text.encode() for name, text in logs.items()})
        for (eid, run_id, name), path in self._store._backend.streams.items():
            if eid == self._experiment_id and path.exists():
                docs[f"streams/{run_id}_{name}"] = path.read_bytes()
        for run_id, results in part.results.items():
            docs.update({f"results/{run_id}/{name}": data for name, data in results.items()})
        for run_id, points in part.series.items():
            docs[f"series/{run_id}"] = repr(points).encode()
        docs.update({f"experiments/{i}": data for i, data in enumerate(part.manifests)})
        return docs

    def run_ids(self) -> set[str]:
        return set(self._part.runs)

    def read_run_record(self, run_id: str) -> RunRecord | None:
        data = self._part.runs.get(run_id)
        return None if data is None else _codec.RUN_RECORD.decode(data)

    def write_raw_run_record(self, run_id: str, data: bytes) -> None:
        self._part.runs[run_id] = data

    def read_derived(self, run_id: str) -> DerivedMetrics | None:
        data = self._part.derived.get(run_id)
        return None if data is None else _codec.DERIVED.decode(data)

    def write_raw_derived(self, run_id: str, data: bytes) -> None:
        self._part.derived[run_id] = data

    def read_artifact(self, run_id: str, name: str) -> bytes | None:
        return self._part.artifact_data.get(run_id, {}).get(name)


class TestAnonymousMemoryStore(StoreConformance[MemoryStore]):
    @pytest.fixture
    def store(self, experiment_id: str) -> Iterator[MemoryStore]:
        with MemoryStoreConfig(experiment_id=experiment_id).connect() as store:
            yield store

    @pytest.fixture
    def backdoor(self, store: MemoryStore, experiment_id: str) -> MemoryBackdoor:
        return MemoryBackdoor(store, experiment_id)
