"""FileStore against the conformance suite; its medium is the experiment's directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from metalab import _codec
from metalab.records import DerivedMetrics, RunRecord
from metalab.store import FileStore, FileStoreConfig
from metalab.store._layout import safe_experiment_id
from metalab.testing.store import StoreConformance


class FileBackdoor:
    """Reads and writes the files of one experiment directory, as DESIGN.md lays them out."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def snapshot(self) -> dict[str, bytes]:
        if not self.directory.exists():
            return {}
        return {
            str(path.relative_to(self.directory)): path.read_bytes()
            for path in self.directory.rglob("*")
            if path.is_file() and path.name != "_meta.json" and not path.name.startswith(".")
        }

    def run_ids(self) -> set[str]:
        runs = self.directory / "runs"
        return {p.stem for p in runs.glob("*.json") if not p.name.startswith(".")}

    def read_run_record(self, run_id: str) -> RunRecord | None:
        path = self.directory / "runs" / f"{run_id}.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return _codec.RUN_RECORD.decode(data, source=str(path))

    def write_raw_run_record(self, run_id: str, data: bytes) -> None:
        self._write(self.directory / "runs" / f"{run_id}.json", data)

    def read_derived(self, run_id: str) -> DerivedMetrics | None:
        path = self.directory / "derived" / f"{run_id}.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return _codec.DERIVED.decode(data, source=str(path))

    def write_raw_derived(self, run_id: str, data: bytes) -> None:
        self._write(self.directory / "derived" / f"{run_id}.json", data)

    def read_artifact(self, run_id: str, name: str) -> bytes | None:
        manifest_path = self.directory / "artifacts" / run_id / "_manifest.json"
        try:
            manifest = _codec.ARTIFACT_MANIFEST.decode(manifest_path.read_bytes())
        except FileNotFoundError:
            return None
        for descriptor in manifest.artifacts:
            if descriptor.name == name:
                try:
                    return (self.directory / descriptor.uri).read_bytes()
                except FileNotFoundError:
                    return None
        return None

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class TestFileStore(StoreConformance[FileStore]):
    @pytest.fixture
    def store(self, experiment_id: str, tmp_path: Path) -> Iterator[FileStore]:
        config = FileStoreConfig(root=str(tmp_path / "collection"), experiment_id=experiment_id)
        with config.connect() as store:
            yield store

    @pytest.fixture
    def backdoor(self, experiment_id: str, tmp_path: Path) -> FileBackdoor:
        return FileBackdoor(tmp_path / "collection" / safe_experiment_id(experiment_id))


class TestDurableFileStore(TestFileStore):
    @pytest.fixture
    def store(self, experiment_id: str, tmp_path: Path) -> Iterator[FileStore]:
        config = FileStoreConfig(
            root=str(tmp_path / "collection"), experiment_id=experiment_id, durable=True
        )
        with config.connect() as store:
            yield store
