"""An in-process store for tests and throwaway runs (scheme ``memory://``).

``memory://`` connects a fresh, anonymous store each time; ``memory://NAME`` connects
the store called ``NAME``, which every connect in this process shares (threads
included) for as long as the process lives. Nothing crosses a process boundary: a
worker process that connects ``memory://NAME`` gets its own, separate store, so use a
FileStore with process executors.

A MemoryStore follows the FileStore's rules (:mod:`metalab.store._rules`) and routing
(:class:`~metalab.store._collection.Collection`): one partition per experiment, like
the experiment directories under a FileStore root. Documents go through the same
codec and are kept as their encoded bytes, so a caller can never mutate a stored
record, NaN and infinities round-trip as they do on disk, and a naive timestamp is
refused on write.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Final, Self
from urllib.parse import quote, urlsplit

from metalab import _codec
from metalab.errors import ArtifactNotFoundError, ConfigError, LocatorError, StoreError
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
from metalab.series import MetricSeries, SeriesPoint, group_points
from metalab.store._collection import Collection
from metalab.store._layout import safe_experiment_id
from metalab.store._rules import (
    check_filed_under,
    check_scope,
    must_read_stored,
    to_place,
    validate_experiment_id,
    validate_format,
    validate_name,
    validate_run_id,
)
from metalab.store.abc import ArtifactSource, StoreConfig

if TYPE_CHECKING:
    from metalab.store.locator import LocatorInfo

__all__ = ["MemoryStore", "MemoryStoreConfig"]

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
        if name != "":
            validate_name(self.name, "memory store name ('' for an anonymous store)")
        if self.experiment_id is not None:
            validate_experiment_id(self.experiment_id)

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
        if info.password is not None:
            # The name would be "user:password@name", which the name's error quotes.
            raise LocatorError(
                f"invalid memory store name in {info.redacted()!r}: a memory locator takes "
                "no user or password; use memory://NAME with a name of letters, digits, "
                "'_', '.' or '-'"
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


@dataclass(eq=False)
class _Partition:
    """The documents of one experiment, as encoded bytes (``str`` for logs)."""

    runs: dict[str, bytes] = field(default_factory=dict)
    derived: dict[str, bytes] = field(default_factory=dict)
    artifact_manifests: dict[str, bytes] = field(default_factory=dict)
    artifact_data: dict[str, dict[str, bytes]] = field(default_factory=dict)
    logs: dict[str, dict[str, str]] = field(default_factory=dict)
    results: dict[str, dict[str, bytes]] = field(default_factory=dict)
    series: dict[str, list[SeriesPoint]] = field(default_factory=dict)
    manifests: list[bytes] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.runs
            or self.derived
            or self.artifact_manifests
            or self.logs
            or self.results
            or self.series
            or self.manifests
        )


class _Backend:
    """Everything one named (or anonymous) store holds, guarded by one lock."""

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


class _LogFiles:
    """The private temporary directory of one connection, where logs are streamed.

    Created on first use; :meth:`close` moves the streamed text into memory and
    removes it (as does the garbage collector, if the connection is never closed).
    """

    def __init__(self, backend: _Backend) -> None:
        self._backend = backend
        self._directory: Path | None = None
        self._cleanup: weakref.finalize[[str], _LogFiles] | None = None
        self._keys: set[_StreamKey] = set()

    def path(self, experiment_id: str, run_id: str, name: str) -> Path:
        key = (experiment_id, run_id, name)
        with self._backend.lock:
            if self._directory is None:
                directory = tempfile.mkdtemp(prefix="metalab-memory-logs-")
                self._directory = Path(directory)
                self._cleanup = weakref.finalize(self, _remove_tree, directory)
            path = self._directory / f"{safe_experiment_id(experiment_id)}_{run_id}_{name}.log"
            self._backend.streams[key] = path
            self._keys.add(key)
        return path

    def forget(self, key: _StreamKey) -> None:
        self._keys.discard(key)

    def close(self) -> None:
        backend = self._backend
        with backend.lock:
            for key in self._keys:
                path = backend.streams.get(key)
                if path is None or path.parent != self._directory:
                    continue  # another connection streams this log now
                del backend.streams[key]
                text = _read_text(path)
                if text is not None:
                    experiment_id, run_id, name = key
                    logs = backend.partition(experiment_id).logs
                    logs.setdefault(run_id, {})[name] = text
            self._keys.clear()
            cleanup, self._cleanup, self._directory = self._cleanup, None, None
        if cleanup is not None:
            cleanup()


class _PartitionSpace:
    """One experiment's partition, as a space of the collection router."""

    def __init__(
        self, backend: _Backend, experiment_id: str, part: _Partition, logs: _LogFiles, where: str
    ) -> None:
        self._backend = backend
        self._eid = experiment_id
        self._part = part
        self._logs = logs
        self._where = where
        self._prefix = f"{where.partition('?')[0]}/{experiment_id}"

    @property
    def experiment_id(self) -> str:
        return self._eid

    def _source(self, kind: str, key: str) -> str:
        """Where a document lives, for error messages (``memory://lab/exp:1/runs/<id>``)."""
        return f"{self._prefix}/{kind}/{key}"

    def _decode_run(self, run_id: str, data: bytes) -> RunRecord:
        where = self._source("runs", run_id)
        record = _codec.RUN_RECORD.decode(data, source=where)
        check_filed_under(record.run_id, run_id, where)
        return record

    def put_run_record(self, record: RunRecord) -> None:
        self.put_run_records((record,))

    def put_run_records(self, records: Sequence[RunRecord]) -> int:
        batch: list[tuple[RunRecord, bytes]] = []
        for record in records:
            validate_run_id(record.run_id)
            check_scope(self._eid, record.experiment_id, self._where)
            batch.append((record, _codec.RUN_RECORD.encode(record)))
        runs = self._part.runs
        with self._backend.lock:
            for record, encoded in batch:
                data = encoded
                stored = runs.get(record.run_id)
                if stored is not None and must_read_stored(record.status, stored):
                    # A stored record that cannot be read raises rather than being
                    # replaced: it may be a finished record written by a newer metalab.
                    kept = to_place(record, self._decode_run(record.run_id, stored))
                    if kept is None:
                        continue
                    if kept is not record:
                        data = _codec.RUN_RECORD.encode(kept)
                runs[record.run_id] = data
        return len(batch)

    def edit_run(self, run_id: str, change: Callable[[RunRecord], RunRecord]) -> RunRecord:
        """Replace a run's record by ``change(stored)``, under the store's lock.

        Raises:
            StoreError: There is no record of ``run_id``.
        """
        validate_run_id(run_id)
        with self._backend.lock:
            stored = self.get_run_record(run_id)
            if stored is None:
                raise StoreError(f"no run {run_id!r} in {self._where} to edit")
            changed = change(stored)
            self._part.runs[run_id] = _codec.RUN_RECORD.encode(changed)
        return changed

    def get_run_record(self, run_id: str) -> RunRecord | None:
        validate_run_id(run_id)
        data = self._part.runs.get(run_id)
        return None if data is None else self._decode_run(run_id, data)

    def run_exists(self, run_id: str) -> bool:
        validate_run_id(run_id)
        return run_id in self._part.runs

    def list_run_records(self, experiment_id: str | None = None) -> list[RunRecord]:
        if experiment_id not in (None, self._eid):
            return []
        with self._backend.lock:
            items = list(self._part.runs.items())
        return [self._decode_run(run_id, data) for run_id, data in items]

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
        validate_run_id(run_id)
        validate_name(name, "artifact name")
        validate_format(format)
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
        part = self._part
        with self._backend.lock:
            artifacts = list(self._artifact_descriptors(run_id))
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

    def _artifact_descriptors(self, run_id: str) -> tuple[ArtifactDescriptor, ...]:
        data = self._part.artifact_manifests.get(run_id)
        if data is None:
            return ()
        where = self._source("artifacts", f"{run_id}/_manifest")
        return _codec.ARTIFACT_MANIFEST.decode(data, source=where).artifacts

    def get_artifact(self, run_id: str, name: str) -> bytes:
        validate_run_id(run_id)
        validate_name(name, "artifact name")
        content = self._part.artifact_data.get(run_id, {}).get(name)
        if content is None:
            raise ArtifactNotFoundError(run_id, name)
        return content

    def open_artifact(self, run_id: str, name: str) -> IO[bytes]:
        return io.BytesIO(self.get_artifact(run_id, name))

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        validate_run_id(run_id)
        with self._backend.lock:
            return list(self._artifact_descriptors(run_id))

    def put_derived(self, run_id: str, metrics: Mapping[str, MetricValue]) -> None:
        validate_run_id(run_id)
        data = _codec.DERIVED.encode(DerivedMetrics(metrics=dict(metrics)))
        with self._backend.lock:
            self._part.derived[run_id] = data

    def get_derived(self, run_id: str) -> DerivedMetrics | None:
        validate_run_id(run_id)
        data = self._part.derived.get(run_id)
        if data is None:
            return None
        return _codec.DERIVED.decode(data, source=self._source("derived", run_id))

    def derived_exists(self, run_id: str) -> bool:
        validate_run_id(run_id)
        return run_id in self._part.derived

    def list_derived(self, experiment_id: str | None = None) -> dict[str, DerivedMetrics]:
        if experiment_id not in (None, self._eid):
            return {}
        with self._backend.lock:
            items = list(self._part.derived.items())
        decode = _codec.DERIVED.decode
        return {
            run_id: decode(data, source=self._source("derived", run_id)) for run_id, data in items
        }

    def append_series(
        self, run_id: str, points: Sequence[SeriesPoint], *, restart: bool = False
    ) -> None:
        validate_run_id(run_id)
        with self._backend.lock:
            if restart:
                self._part.series[run_id] = list(points)
            else:
                self._part.series.setdefault(run_id, []).extend(points)

    def get_series(self, run_id: str) -> dict[str, MetricSeries]:
        validate_run_id(run_id)
        with self._backend.lock:
            points = list(self._part.series.get(run_id, ()))
        return group_points(points)

    def put_log(self, run_id: str, name: str, text: str) -> None:
        validate_run_id(run_id)
        validate_name(name, "log name")
        if not isinstance(text, str):
            raise TypeError(f"log text must be a str, got {type(text).__name__}")
        with self._backend.lock:
            self._part.logs.setdefault(run_id, {})[name] = text
            stream = self._backend.streams.get((self._eid, run_id, name))
            if stream is not None:
                stream.write_bytes(text.encode("utf-8"))

    def get_log(self, run_id: str, name: str) -> str | None:
        validate_run_id(run_id)
        validate_name(name, "log name")
        with self._backend.lock:
            stream = self._backend.streams.get((self._eid, run_id, name))
            text = self._part.logs.get(run_id, {}).get(name)
        if stream is not None:
            streamed = _read_text(stream)
            if streamed is not None:
                return streamed
        return text

    def list_logs(self, run_id: str) -> list[str]:
        validate_run_id(run_id)
        with self._backend.lock:
            names = set(self._part.logs.get(run_id, {}))
            streams = [
                (key[2], path)
                for key, path in self._backend.streams.items()
                if key[:2] == (self._eid, run_id)
            ]
        names.update(name for name, path in streams if path.exists())
        return sorted(names)

    def log_path(self, run_id: str, name: str) -> Path:
        validate_run_id(run_id)
        validate_name(name, "log name")
        return self._logs.path(self._eid, run_id, name)

    def put_result(self, run_id: str, name: str, result: ResultDocument) -> None:
        validate_run_id(run_id)
        validate_name(name, "result name")
        data = _codec.RESULT.encode(result)
        with self._backend.lock:
            self._part.results.setdefault(run_id, {})[name] = data

    def get_result(self, run_id: str, name: str) -> ResultDocument | None:
        validate_run_id(run_id)
        validate_name(name, "result name")
        data = self._part.results.get(run_id, {}).get(name)
        if data is None:
            return None
        return _codec.RESULT.decode(data, source=self._source("results", f"{run_id}/{name}"))

    def list_results(self, run_id: str) -> list[str]:
        validate_run_id(run_id)
        with self._backend.lock:
            return sorted(self._part.results.get(run_id, {}))

    def put_experiment_manifest(self, manifest: ExperimentManifest) -> None:
        check_scope(self._eid, manifest.experiment_id, self._where)
        data = _codec.EXPERIMENT_MANIFEST.encode(manifest)
        with self._backend.lock:
            if data not in self._part.manifests:
                self._part.manifests.append(data)

    def list_experiment_manifests(
        self, experiment_id: str | None = None
    ) -> list[ExperimentManifest]:
        if experiment_id not in (None, self._eid):
            return []
        with self._backend.lock:
            stored = list(self._part.manifests)
        manifests = [
            _codec.EXPERIMENT_MANIFEST.decode(data, source=self._source("experiments", str(i)))
            for i, data in enumerate(stored)
        ]
        # sorted() is stable: manifests submitted at the same instant keep their order.
        return sorted(manifests, key=lambda m: m.submitted_at)

    def experiments(self) -> list[str]:
        with self._backend.lock:
            return [] if self._part.is_empty() else [self._eid]

    def delete_run(self, run_id: str, *, expected: RunRecord | None = None) -> bool:
        validate_run_id(run_id)
        part = self._part
        with self._backend.lock:
            if expected is not None and self.get_run_record(run_id) != expected:
                return False
            deleted = False
            for mapping in (
                part.runs,
                part.derived,
                part.artifact_manifests,
                part.artifact_data,
                part.logs,
                part.results,
                part.series,
            ):
                deleted = mapping.pop(run_id, None) is not None or deleted
            streams = self._backend.streams
            for key in [k for k in streams if k[:2] == (self._eid, run_id)]:
                path = streams.pop(key)
                self._logs.forget(key)
                if path.exists():
                    deleted = True
                    path.unlink()
        return deleted

    def close(self) -> None:
        """Nothing to release: the connection's log directory is closed by the store."""


class MemoryStore(Collection[_PartitionSpace]):
    """A store that keeps everything in this process's memory.

    Implements :class:`~metalab.store.abc.Store` and the capabilities
    ``SupportsLogs``, ``SupportsStructuredResults``, ``SupportsExperimentManifests``,
    ``SupportsExperiments``, ``SupportsArtifactStreaming``, ``SupportsBulkPut``,
    ``SupportsBulkDerived``, ``SupportsQuery`` and ``SupportsDelete``; it has no
    working directory.

    Logs streamed to :meth:`log_path` go to a private temporary directory, created
    on first use and removed by :meth:`close`, which first moves their text into
    memory. Every method may be called from several threads.

    Args:
        config: The config to connect; the default is an anonymous, unscoped store.
    """

    def __init__(self, config: MemoryStoreConfig | None = None) -> None:
        self._config = config if config is not None else MemoryStoreConfig()
        self._backend = _backend_for(self._config.name)
        self._logs = _LogFiles(self._backend)
        scope = self._config.experiment_id
        locator = self._config.to_locator()
        bound = None
        if scope is not None:
            bound = _PartitionSpace(
                self._backend, scope, self._backend.partition(scope), self._logs, locator
            )
        super().__init__(bound, locator)

    def _locate(self) -> Mapping[str, Hashable]:
        with self._backend.lock:
            return dict(self._backend.partitions)

    def _open(
        self, experiment_id: str, location: Hashable | None
    ) -> tuple[Hashable, _PartitionSpace]:
        part = (
            location if isinstance(location, _Partition) else self._backend.partition(experiment_id)
        )
        space = _PartitionSpace(self._backend, experiment_id, part, self._logs, self._where)
        return part, space

    @property
    def config(self) -> MemoryStoreConfig:
        """The config this store was connected from."""
        return self._config

    @property
    def experiment_id(self) -> str | None:
        """The experiment this store is scoped to, or ``None``."""
        return self._config.experiment_id

    def __repr__(self) -> str:
        return f"MemoryStore({self._where!r})"

    def close(self) -> None:
        """Move streamed logs into memory and remove the log directory.

        Nothing else is released: the data stays readable through this store (an
        anonymous store's data goes with its last reference; a named store's stays
        for the next connect), and a later :meth:`log_path` makes a new directory.
        Calling it again does nothing.
        """
        self._logs.close()

    def __getstate__(self) -> object:
        raise TypeError(
            "a MemoryStore lives in this process's memory and cannot be pickled; "
            "pickle its config (store.config) to reconnect a named store in this "
            "process, or use a FileStore to share data between processes"
        )
