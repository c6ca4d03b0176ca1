"""An in-process store for tests and throwaway runs (scheme ``memory://``).

``memory://`` connects a fresh, anonymous store each time; ``memory://NAME`` connects
the store called ``NAME``, which every connect in this process shares (threads
included) for as long as the process lives. Nothing crosses a process boundary: a
worker process that connects ``memory://NAME`` gets its own, separate store, so use a
FileStore with process executors.

A MemoryStore follows the FileStore's rules: the same id validation, a record never
moves backwards, one space per experiment, and documents go through the same codec.
They are kept as their encoded bytes, so a caller can never mutate a stored record,
NaN and infinities round-trip as they do on disk, and a naive timestamp is refused
on write.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, ClassVar, Final, Self
from urllib.parse import quote, urlsplit

from metalab import _codec
from metalab.errors import (
    ArtifactNotFoundError,
    ConfigError,
    CorruptRecordError,
    ExperimentMismatchError,
    LocatorError,
    StoreError,
)
from metalab.query import FieldInfo, Query, field_catalog
from metalab.records import (
    ArtifactDescriptor,
    ArtifactManifest,
    DerivedMetrics,
    ExperimentManifest,
    JSONValue,
    MetricValue,
    ResultDocument,
    RunRecord,
)
from metalab.store._layout import (
    safe_experiment_id,
    validate_format,
    validate_name,
    validate_run_id,
)
from metalab.store._query import derived_lookup, select_runs
from metalab.store.abc import ArtifactSource, StoreConfig

if TYPE_CHECKING:
    from metalab.store.locator import LocatorInfo

__all__ = ["MemoryStore", "MemoryStoreConfig"]

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_NAME_RULE: Final = "1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit"
_LOCATOR_PARAMS: Final = frozenset({"experiment_id"})
_StreamKey = tuple[str, str, str]
"""(experiment id, run id, log name)"""


@dataclass(frozen=True, kw_only=True)
class MemoryStoreConfig(StoreConfig):
    """The config of a :class:`MemoryStore`.

    Locators: ``memory://`` (a fresh anonymous store on every connect),
    ``memory://NAME`` (the named store shared by every connect in this process, but
    never with another process) and either with ``?experiment_id=...`` to scope it.

    Attributes:
        name: The name of a shared store; ``""`` for an anonymous one.
        experiment_id: The experiment this config is scoped to, or ``None``.
    """

    scheme: ClassVar[str] = "memory"
    process_local: ClassVar[bool] = True

    name: str = ""
    experiment_id: str | None = None

    def __post_init__(self) -> None:
        name: object = self.name
        if not isinstance(name, str) or (name and _NAME.fullmatch(name) is None):
            raise ConfigError(
                f"invalid memory store name {name!r}: it must be {_NAME_RULE}, "
                "or empty for an anonymous store"
            )
        if self.experiment_id is not None:
            safe_experiment_id(self.experiment_id)

    def connect(self) -> MemoryStore:
        """Open the store (the shared one for a named config, a new one otherwise)."""
        return MemoryStore(self)

    @classmethod
    def from_locator(cls, info: LocatorInfo, **kwargs: Any) -> Self:
        """Build a config from ``memory://[NAME][?experiment_id=ID]``.

        Args:
            info: The parsed locator.
            **kwargs: ``name`` or ``experiment_id``, overriding the locator.

        Raises:
            LocatorError: The locator has a path or an unknown query parameter.
            ConfigError: A keyword argument is not a field, or a value is invalid.
        """
        if info.scheme != cls.scheme:
            raise LocatorError(
                f"{info.redacted()!r} is not a memory locator; use memory:// or memory://NAME"
            )
        unknown = sorted(set(kwargs) - {"name", "experiment_id"})
        if unknown:
            raise ConfigError(
                f"unknown memory store option(s) {unknown}; "
                "MemoryStoreConfig takes only 'name' and 'experiment_id'"
            )
        if info.path not in ("", "/"):
            raise LocatorError(
                f"memory locator {info.redacted()!r} has a path {info.path!r}; "
                "use memory://NAME with a name of letters, digits, '_', '.' or '-'"
            )
        bad_params = sorted(set(info.params) - _LOCATOR_PARAMS)
        if bad_params:
            raise LocatorError(
                f"unknown parameter(s) {bad_params} in memory locator {info.redacted()!r}; "
                "the only one is experiment_id"
            )
        # The host part of a URL is case-insensitive and comes back lower-cased;
        # store names keep their case, so read it from the raw locator.
        name = urlsplit(info.raw).netloc if info.raw else info.host
        fields: dict[str, Any] = {"name": name, "experiment_id": info.params.get("experiment_id")}
        fields.update(kwargs)
        return cls(**fields)

    def to_locator(self) -> str:
        """Return ``memory://NAME``, with ``?experiment_id=...`` when scoped."""
        locator = f"memory://{self.name}"
        if self.experiment_id is not None:
            locator += f"?experiment_id={quote(self.experiment_id, safe='')}"
        return locator


@dataclass
class _Partition:
    """The documents of one experiment, as encoded bytes (``str`` for logs)."""

    runs: dict[str, bytes] = field(default_factory=dict)
    derived: dict[str, bytes] = field(default_factory=dict)
    artifact_manifests: dict[str, bytes] = field(default_factory=dict)
    artifact_data: dict[str, dict[str, bytes]] = field(default_factory=dict)
    logs: dict[str, dict[str, str]] = field(default_factory=dict)
    results: dict[str, dict[str, bytes]] = field(default_factory=dict)
    manifests: list[bytes] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.runs
            or self.derived
            or self.artifact_manifests
            or self.logs
            or self.results
            or self.manifests
        )


class _Backend:
    """Everything one named (or anonymous) store holds, guarded by one lock.

    There is one partition per experiment, like the experiment directories under a
    FileStore collection root.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.partitions: dict[str, _Partition] = {}
        # Logs being streamed to a file handed out by ``log_path``.
        self.streams: dict[_StreamKey, Path] = {}

    def partition(self, experiment_id: str) -> _Partition:
        with self.lock:
            part = self.partitions.get(experiment_id)
            if part is None:
                part = self.partitions[experiment_id] = _Partition()
            return part


_NAMED_LOCK: Final = threading.Lock()
_NAMED: Final[dict[str, _Backend]] = {}


def _backend_for(name: str) -> _Backend:
    if not name:
        return _Backend()
    with _NAMED_LOCK:
        backend = _NAMED.get(name)
        if backend is None:
            backend = _NAMED[name] = _Backend()
        return backend


def _remove_tree(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def _read_text(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    # A writer may be in the middle of a multi-byte character.
    return data.decode("utf-8", errors="replace")


def _artifact_bytes(data: ArtifactSource) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, os.PathLike):
        return Path(os.fspath(data)).read_bytes()
    raise TypeError(
        f"artifact data must be bytes or a path (os.PathLike), got {type(data).__qualname__}; "
        "wrap a path string in pathlib.Path"
    )


class MemoryStore:
    """A store that keeps everything in this process's memory.

    Implements :class:`~metalab.store.abc.Store` and the capabilities
    ``SupportsLogs``, ``SupportsStructuredResults``, ``SupportsExperimentManifests``,
    ``SupportsExperiments``, ``SupportsArtifactStreaming``, ``SupportsBulkPut`` and
    ``SupportsDelete``; it has no working directory.

    Each experiment is kept apart, as in the experiment directories under a FileStore
    collection root. A scoped store sees and accepts only its experiment: putting a
    record or a manifest of another experiment raises
    :class:`~metalab.errors.ExperimentMismatchError`. The unscoped store is the
    collection: it files each record under its experiment and finds a run in any
    experiment, so a run's other documents (artifacts, logs, ...) need its record
    first, or :class:`~metalab.errors.StoreError` is raised.

    Logs streamed to :meth:`log_path` go to a private temporary directory, created
    on first use and removed by :meth:`close`, which first moves their text into
    memory. Every method may be called from several threads.

    Args:
        config: The config to connect; the default is an anonymous, unscoped store.
    """

    def __init__(self, config: MemoryStoreConfig | None = None) -> None:
        self._config = config if config is not None else MemoryStoreConfig()
        self._backend = _backend_for(self._config.name)
        self._scope = self._config.experiment_id
        self._own: tuple[str, _Partition] | None = (
            None if self._scope is None else (self._scope, self._backend.partition(self._scope))
        )
        self._log_dir: Path | None = None
        self._cleanup: weakref.finalize[[str], MemoryStore] | None = None
        self._streams: set[_StreamKey] = set()

    @property
    def config(self) -> MemoryStoreConfig:
        """The config this store was connected from."""
        return self._config

    @property
    def experiment_id(self) -> str | None:
        """The experiment this store is scoped to, or ``None``."""
        return self._scope

    def __repr__(self) -> str:
        return f"MemoryStore({self._config.to_locator()!r})"

    def _where(self, experiment_id: str, kind: str, key: str) -> str:
        """Where a document lives, for error messages (``memory://lab/exp:1/runs/<id>``)."""
        return f"memory://{self._config.name}/{experiment_id}/{kind}/{key}"

    def _partition_for(self, experiment_id: str) -> _Partition:
        """The partition a record or manifest of ``experiment_id`` is written to."""
        if self._own is not None:
            scope, part = self._own
            if experiment_id != scope:
                raise ExperimentMismatchError(self._config.to_locator(), experiment_id, scope)
            return part
        # As in a FileStore collection, where the id becomes a directory name.
        safe_experiment_id(experiment_id)
        return self._backend.partition(experiment_id)

    def _partitions(self, experiment_id: str | None) -> list[tuple[str, _Partition]]:
        """The partitions a listing of ``experiment_id`` (``None``: all) reads."""
        if self._own is not None:
            return [self._own] if experiment_id in (None, self._own[0]) else []
        with self._backend.lock:
            if experiment_id is None:
                return list(self._backend.partitions.items())
            part = self._backend.partitions.get(experiment_id)
            return [] if part is None else [(experiment_id, part)]

    def _find(self, run_id: str) -> tuple[str, _Partition] | None:
        """The experiment and partition of a run (a scoped store's own, always)."""
        validate_run_id(run_id)
        if self._own is not None:
            return self._own
        with self._backend.lock:
            for experiment_id, part in self._backend.partitions.items():
                if run_id in part.runs:
                    return experiment_id, part
        return None

    def _find_for_write(self, run_id: str) -> tuple[str, _Partition]:
        found = self._find(run_id)
        if found is None:
            raise StoreError(
                f"no experiment in {self._config.to_locator()!r} has a record of run "
                f"{run_id!r}; put the run record first, or use a store scoped to the "
                "run's experiment"
            )
        return found

    def put_run_record(self, record: RunRecord) -> None:
        # docstring inherited
        self.put_run_records((record,))

    def put_run_records(self, records: Iterable[RunRecord]) -> int:
        """Store every record (a ``running`` one never replaces a finished one).

        Every record is validated before any is stored, so a bad one stores none.

        Returns:
            The number of records given.

        Raises:
            ConfigError: A run id (or, in the unscoped store, an experiment id) is
                invalid.
            ExperimentMismatchError: The store is scoped and a record belongs to
                another experiment.
        """
        batch: list[tuple[_Partition, RunRecord, bytes]] = []
        for record in records:
            validate_run_id(record.run_id)
            part = self._partition_for(record.experiment_id)
            batch.append((part, record, _codec.RUN_RECORD.encode(record)))
        with self._backend.lock:
            for part, record, data in batch:
                stored = part.runs.get(record.run_id)
                if (
                    record.status == "running"
                    and stored is not None
                    and self._is_finished(record.experiment_id, record.run_id, stored)
                ):
                    continue
                part.runs[record.run_id] = data
        return len(batch)

    def _is_finished(self, experiment_id: str, run_id: str, stored: bytes) -> bool:
        # A stored record that cannot be read raises rather than being overwritten:
        # it may be a finished record written by a newer metalab.
        return self._decode_run(experiment_id, run_id, stored).is_finished

    def _decode_run(self, experiment_id: str, run_id: str, data: bytes) -> RunRecord:
        where = self._where(experiment_id, "runs", run_id)
        record = _codec.RUN_RECORD.decode(data, source=where)
        if record.run_id != run_id:
            raise CorruptRecordError(where, f"the document holds run {record.run_id!r}")
        return record

    def get_run_record(self, run_id: str) -> RunRecord | None:
        # docstring inherited
        found = self._find(run_id)
        if found is None:
            return None
        experiment_id, part = found
        data = part.runs.get(run_id)
        return None if data is None else self._decode_run(experiment_id, run_id, data)

    def list_run_records(self, experiment_id: str | None = None) -> list[RunRecord]:
        # docstring inherited
        records: list[RunRecord] = []
        for eid, part in self._partitions(experiment_id):
            with self._backend.lock:
                items = list(part.runs.items())
            records.extend(self._decode_run(eid, run_id, data) for run_id, data in items)
        if experiment_id is None:
            return records
        return [r for r in records if r.experiment_id == experiment_id]

    def run_exists(self, run_id: str) -> bool:
        # docstring inherited
        found = self._find(run_id)
        return found is not None and run_id in found[1].runs

    def put_artifact(
        self,
        run_id: str,
        name: str,
        data: ArtifactSource,
        *,
        kind: str = "bytes",
        format: str = "bin",
        metadata: Mapping[str, JSONValue] | None = None,
    ) -> ArtifactDescriptor:
        """Store an artifact (bytes-like, or the path of a file to copy).

        Putting a name again replaces it.

        Returns:
            The descriptor, with sha256, size and ``uri`` ``artifacts/{run_id}/{name}.{format}``.

        Raises:
            ConfigError: The run id, name or format is invalid, or another artifact of
                the run already has the same uri.
            TypeError: ``data`` is neither bytes-like nor a path.
            StoreError: The store is unscoped and no experiment has the run.
        """
        validate_run_id(run_id)
        validate_name(name, "artifact name")
        validate_format(format)
        experiment_id, part = self._find_for_write(run_id)
        content = _artifact_bytes(data)
        uri = f"artifacts/{run_id}/{name}.{format}"
        descriptor = ArtifactDescriptor(
            name=name,
            kind=kind,
            format=format,
            uri=uri,
            content_hash=hashlib.sha256(content).hexdigest(),
            size_bytes=len(content),
            artifact_id=str(uuid.uuid4()),
            metadata=dict(metadata or {}),
        )
        with self._backend.lock:
            artifacts = list(self._artifact_descriptors(experiment_id, part, run_id))
            # As in a FileStore, where the two would share one file.
            clash = [a.name for a in artifacts if a.uri == uri and a.name != name]
            if clash:
                raise ConfigError(
                    f"artifact {name!r} of run {run_id!r} would have the uri of artifact "
                    f"{clash[0]!r} ({uri}); choose another name or format"
                )
            index = next((i for i, a in enumerate(artifacts) if a.name == name), None)
            if index is None:
                artifacts.append(descriptor)
            else:
                artifacts[index] = descriptor
            manifest = ArtifactManifest(artifacts=tuple(artifacts))
            part.artifact_manifests[run_id] = _codec.ARTIFACT_MANIFEST.encode(manifest)
            part.artifact_data.setdefault(run_id, {})[name] = content
        return descriptor

    def _artifact_descriptors(
        self, experiment_id: str, part: _Partition, run_id: str
    ) -> tuple[ArtifactDescriptor, ...]:
        data = part.artifact_manifests.get(run_id)
        if data is None:
            return ()
        where = self._where(experiment_id, "artifacts", f"{run_id}/_manifest")
        return _codec.ARTIFACT_MANIFEST.decode(data, source=where).artifacts

    def get_artifact(self, run_id: str, name: str) -> bytes:
        # docstring inherited
        validate_name(name, "artifact name")
        found = self._find(run_id)
        content = None if found is None else found[1].artifact_data.get(run_id, {}).get(name)
        if content is None:
            raise ArtifactNotFoundError(run_id, name)
        return content

    def open_artifact(self, run_id: str, name: str) -> IO[bytes]:
        """Open an artifact for binary reading.

        Raises:
            ArtifactNotFoundError: The run has no such artifact.
        """
        return io.BytesIO(self.get_artifact(run_id, name))

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        # docstring inherited
        found = self._find(run_id)
        if found is None:
            return []
        with self._backend.lock:
            return list(self._artifact_descriptors(*found, run_id))

    def put_derived(self, run_id: str, metrics: Mapping[str, MetricValue]) -> None:
        """Store (replace) the derived metrics of a run.

        Raises:
            ConfigError: The run id is invalid.
            StoreError: The store is unscoped and no experiment has the run.
        """
        _, part = self._find_for_write(run_id)
        data = _codec.DERIVED.encode(DerivedMetrics(metrics=dict(metrics)))
        with self._backend.lock:
            part.derived[run_id] = data

    def get_derived(self, run_id: str) -> DerivedMetrics | None:
        # docstring inherited
        found = self._find(run_id)
        data = None if found is None else found[1].derived.get(run_id)
        if found is None or data is None:
            return None
        return _codec.DERIVED.decode(data, source=self._where(found[0], "derived", run_id))

    def list_derived(self, experiment_id: str | None = None) -> dict[str, DerivedMetrics]:
        """Return run id -> derived metrics of every run (of one experiment) that has them.

        Raises:
            CorruptRecordError: A stored document cannot be decoded.
        """
        found: dict[str, DerivedMetrics] = {}
        decode = _codec.DERIVED.decode
        for eid, part in self._partitions(experiment_id):
            with self._backend.lock:
                items = list(part.derived.items())
            for run_id, data in items:
                found[run_id] = decode(data, source=self._where(eid, "derived", run_id))
        return found

    def derived_exists(self, run_id: str) -> bool:
        # docstring inherited
        found = self._find(run_id)
        return found is not None and run_id in found[1].derived

    def put_log(self, run_id: str, name: str, text: str) -> None:
        """Store (replace) the log ``name`` of a run.

        Raises:
            ConfigError: The run id or log name is invalid.
            TypeError: ``text`` is not a str.
            StoreError: The store is unscoped and no experiment has the run.
        """
        validate_name(name, "log name")
        if not isinstance(text, str):
            raise TypeError(f"log text must be a str, got {type(text).__name__}")
        experiment_id, part = self._find_for_write(run_id)
        with self._backend.lock:
            part.logs.setdefault(run_id, {})[name] = text
            stream = self._backend.streams.get((experiment_id, run_id, name))
            if stream is not None:
                stream.write_bytes(text.encode("utf-8"))

    def get_log(self, run_id: str, name: str) -> str | None:
        """Return a log's text (streamed or put), or ``None`` if there is no such log.

        Raises:
            ConfigError: The run id or log name is invalid.
        """
        validate_name(name, "log name")
        found = self._find(run_id)
        if found is None:
            return None
        experiment_id, part = found
        with self._backend.lock:
            stream = self._backend.streams.get((experiment_id, run_id, name))
            text = part.logs.get(run_id, {}).get(name)
        if stream is not None:
            streamed = _read_text(stream)
            if streamed is not None:
                return streamed
        return text

    def list_logs(self, run_id: str) -> list[str]:
        """Return the sorted names of a run's logs (empty if it has none).

        Raises:
            ConfigError: The run id is invalid.
        """
        found = self._find(run_id)
        if found is None:
            return []
        experiment_id, part = found
        with self._backend.lock:
            names = set(part.logs.get(run_id, {}))
            streams = [
                (key[2], path)
                for key, path in self._backend.streams.items()
                if key[:2] == (experiment_id, run_id)
            ]
        names.update(name for name, path in streams if path.exists())
        return sorted(names)

    def log_path(self, run_id: str, name: str) -> Path:
        """Return a file in a private temporary directory to stream a log to.

        :meth:`get_log` and :meth:`list_logs` (of any connection to this store) see
        what is written there; :meth:`close` keeps the text in memory and removes
        the directory.

        Raises:
            ConfigError: The run id or log name is invalid.
            StoreError: The store is unscoped and no experiment has the run.
        """
        validate_name(name, "log name")
        experiment_id, _ = self._find_for_write(run_id)
        key = (experiment_id, run_id, name)
        with self._backend.lock:
            if self._log_dir is None:
                directory = tempfile.mkdtemp(prefix="metalab-memory-logs-")
                self._log_dir = Path(directory)
                self._cleanup = weakref.finalize(self, _remove_tree, directory)
            file_name = f"{safe_experiment_id(experiment_id)}_{run_id}_{name}.log"
            path = self._log_dir / file_name
            self._backend.streams[key] = path
            self._streams.add(key)
        return path

    def put_result(self, run_id: str, name: str, result: ResultDocument) -> None:
        """Store (replace) the result ``name`` of a run.

        Raises:
            ConfigError: The run id or result name is invalid.
            StoreError: The store is unscoped and no experiment has the run.
        """
        validate_name(name, "result name")
        _, part = self._find_for_write(run_id)
        data = _codec.RESULT.encode(result)
        with self._backend.lock:
            part.results.setdefault(run_id, {})[name] = data

    def get_result(self, run_id: str, name: str) -> ResultDocument | None:
        """Return a result, or ``None`` if there is no such result.

        Raises:
            ConfigError: The run id or result name is invalid.
        """
        validate_name(name, "result name")
        found = self._find(run_id)
        data = None if found is None else found[1].results.get(run_id, {}).get(name)
        if found is None or data is None:
            return None
        where = self._where(found[0], "results", f"{run_id}/{name}")
        return _codec.RESULT.decode(data, source=where)

    def list_results(self, run_id: str) -> list[str]:
        """Return the sorted names of a run's results (empty if it has none).

        Raises:
            ConfigError: The run id is invalid.
        """
        found = self._find(run_id)
        if found is None:
            return []
        with self._backend.lock:
            return sorted(found[1].results.get(run_id, {}))

    def put_experiment_manifest(self, manifest: ExperimentManifest) -> None:
        """Store a submission manifest; manifests accumulate and none is replaced.

        Putting the very same manifest twice stores it once.

        Raises:
            ExperimentMismatchError: The store is scoped and the manifest belongs to
                another experiment.
        """
        part = self._partition_for(manifest.experiment_id)
        data = _codec.EXPERIMENT_MANIFEST.encode(manifest)
        with self._backend.lock:
            if data not in part.manifests:
                part.manifests.append(data)

    def list_experiment_manifests(
        self, experiment_id: str | None = None
    ) -> list[ExperimentManifest]:
        """Return manifests (of one experiment, if given), oldest submission first."""
        manifests: list[ExperimentManifest] = []
        for eid, part in self._partitions(experiment_id):
            with self._backend.lock:
                stored = list(part.manifests)
            manifests.extend(
                _codec.EXPERIMENT_MANIFEST.decode(
                    data, source=self._where(eid, "experiments", str(i))
                )
                for i, data in enumerate(stored)
            )
        # sorted() is stable: manifests submitted at the same instant keep their order.
        return sorted(manifests, key=lambda m: m.submitted_at)

    def query_runs(self, query: Query) -> list[RunRecord]:
        """Return the runs matching ``query`` (evaluated in Python)."""
        return select_runs(self, query, self._config.experiment_id)

    def fields(self, experiment_id: str | None = None) -> list[FieldInfo]:
        """Return the field catalog of an experiment (default: this store's)."""
        eid = experiment_id or self._config.experiment_id
        return field_catalog(self.list_run_records(eid), derived_lookup(self, eid))

    def list_experiments(self) -> list[str]:
        """Return the sorted ids of the experiments with data in this store.

        A scoped store names at most its own experiment.
        """
        with self._backend.lock:
            return sorted(eid for eid, part in self._partitions(None) if not part.is_empty())

    def delete_run(self, run_id: str) -> bool:
        """Delete the record, derived metrics, artifacts, logs and results of a run.

        Returns:
            Whether there was anything to delete.

        Raises:
            ConfigError: The run id is invalid.
        """
        found = self._find(run_id)
        if found is None:
            return False
        experiment_id, part = found
        with self._backend.lock:
            deleted = False
            for mapping in (
                part.runs,
                part.derived,
                part.artifact_manifests,
                part.artifact_data,
                part.logs,
                part.results,
            ):
                deleted = mapping.pop(run_id, None) is not None or deleted
            streams = self._backend.streams
            for key in [k for k in streams if k[:2] == (experiment_id, run_id)]:
                path = streams.pop(key)
                self._streams.discard(key)
                if path.exists():
                    deleted = True
                    path.unlink()
        return deleted

    def close(self) -> None:
        """Move streamed logs into memory and remove the log directory.

        Nothing else is released: the data stays readable through this store (an
        anonymous store's data goes with its last reference; a named store's stays
        for the next connect), and a later :meth:`log_path` makes a new directory.
        Calling it again does nothing.
        """
        with self._backend.lock:
            for key in self._streams:
                path = self._backend.streams.get(key)
                if path is None or path.parent != self._log_dir:
                    continue  # another connection streams this log now
                del self._backend.streams[key]
                text = _read_text(path)
                if text is not None:
                    experiment_id, run_id, name = key
                    logs = self._backend.partition(experiment_id).logs
                    logs.setdefault(run_id, {})[name] = text
            self._streams.clear()
            cleanup, self._cleanup, self._log_dir = self._cleanup, None, None
        if cleanup is not None:
            cleanup()

    def __getstate__(self) -> object:
        raise TypeError(
            "a MemoryStore lives in this process's memory and cannot be pickled; "
            "pickle its config (store.config) to reconnect a named store in this "
            "process, or use a FileStore to share data between processes"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
