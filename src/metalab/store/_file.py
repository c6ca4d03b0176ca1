"""The filesystem store: the default store and the source of truth.

A :class:`FileStore` works in one of three shapes, decided when it connects:

- **scoped** (the config names an experiment): the directory
  ``root/safe_experiment_id(experiment_id)``, or ``root`` itself when its
  ``_meta.json`` already names that experiment;
- **standalone** (no experiment in the config, ``root/_meta.json`` exists): ``root``
  holds the layout, as in ``create_store("./experiments/my_exp_1.0")``;
- **collection** (no experiment, no ``root/_meta.json``): ``root`` holds one scoped
  directory per experiment; records are routed to the directory of their
  experiment, and a run is looked up in every experiment.

The layout of a directory is described in :mod:`metalab.store._layout`. Writes are
atomic (:mod:`metalab.store._atomic`); reads never create anything.
"""

# Hot paths work on str paths with os functions: a Path object per file costs more
# than the system call it wraps.
# ruff: noqa: PTH100, PTH105, PTH108, PTH111, PTH116, PTH120

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import posixpath
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar, Final, Literal, Self
from urllib.parse import quote, urlencode

from metalab import _codec
from metalab.errors import (
    ArtifactNotFoundError,
    ConfigError,
    CorruptRecordError,
    ExperimentMismatchError,
    StoreError,
)
from metalab.query import FieldInfo, Query, field_catalog
from metalab.records import (
    FINISHED_STATUSES,
    ArtifactDescriptor,
    ArtifactManifest,
    DerivedMetrics,
    ExperimentManifest,
    JSONValue,
    MetricValue,
    ResultDocument,
    RunRecord,
    StoreMeta,
    utc_now,
)
from metalab.store._atomic import (
    atomic_write,
    copy_to_temp,
    fsync_directory,
    link_into_place,
    write_temp,
)
from metalab.store._layout import (
    META_FILE,
    FileStoreLayout,
    manifest_file_name,
    safe_experiment_id,
    validate_name,
    validate_run_id,
)
from metalab.store._query import derived_lookup, select_runs
from metalab.store.abc import ArtifactSource, StoreConfig
from metalab.store.locator import LocatorInfo

__all__ = ["FileStore", "FileStoreConfig", "ScanResult"]

_READ_FLAGS: Final = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_FIRST_READ: Final = 1 << 16
_BULK_CHUNK: Final = 512
_SCAN_BATCH: Final = 256
_LOCATOR_KEYS: Final = ("durable", "experiment_id")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

Mode = Literal["scoped", "standalone", "collection"]
ErrorHandler = Callable[[CorruptRecordError], None]

if sys.platform == "win32":
    import msvcrt

    def _lock_fd(fd: int) -> None:
        # LK_LOCK gives up after ten one-second tries; keep waiting like flock does.
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
            except OSError:
                continue
            return

    def _unlock_fd(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _read_bytes(path: str) -> bytes | None:
    """Return a file's bytes, or ``None`` if it does not exist (no stat beforehand)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, _FIRST_READ)
        if len(data) == _FIRST_READ:
            parts = [data]
            while chunk := os.read(fd, 1 << 20):
                parts.append(chunk)
            data = b"".join(parts)
    finally:
        os.close(fd)
    return data


def _exists(path: str) -> bool:
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    return True


def _list_names(directory: str, suffix: str) -> list[str]:
    """Names in ``directory`` ending in ``suffix``, hidden (``.``) names left out."""
    try:
        with os.scandir(directory) as entries:
            return [
                e.name for e in entries if e.name.endswith(suffix) and not e.name.startswith(".")
            ]
    except FileNotFoundError:
        return []


def _read_meta(path: Path) -> StoreMeta | None:
    try:
        data = _read_bytes(str(path))
    except NotADirectoryError as exc:
        raise ConfigError(
            f"store path {str(path.parent)!r} is not a directory; "
            "give the directory that holds (or will hold) the store"
        ) from exc
    if data is None:
        return None
    return _codec.STORE_META.decode(data, source=str(path))


def _collection_experiments(root: Path) -> dict[str, Path]:
    """Map every experiment id in a collection to its directory.

    When two directories claim one experiment, the one named after it wins.
    """
    found: dict[str, Path] = {}
    try:
        with os.scandir(root) as entries:
            dirs = sorted(e.name for e in entries if e.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return found
    for name in dirs:
        meta = _read_meta(root / name / META_FILE)
        if meta is None or meta.experiment_id is None:
            continue
        eid = meta.experiment_id
        if eid not in found or name == safe_experiment_id(eid):
            found[eid] = root / name
    return found


def _parse_bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ConfigError(f"{name} must be a boolean (true/false), got {value!r}")


@dataclass(frozen=True, kw_only=True)
class FileStoreConfig(StoreConfig):
    """Configuration of a :class:`FileStore`.

    Attributes:
        root: The store directory; made absolute (``~`` expanded) on creation. For an
            unscoped config this is a collection root or a standalone store.
        experiment_id: The experiment this config is scoped to, or ``None``.
        durable: fsync every written file and its directory, so that acknowledged
            writes survive a power cut (several times slower to write).

    >>> FileStoreConfig(root="/data/experiments", experiment_id="my_exp:1.0").to_dict()
    {'root': '/data/experiments', 'experiment_id': 'my_exp:1.0', '_type': 'file'}
    """

    scheme: ClassVar[str] = "file"

    root: str
    experiment_id: str | None = None
    durable: bool = False

    def __post_init__(self) -> None:
        raw: object = self.root
        if not isinstance(raw, str | os.PathLike):
            raise ConfigError(f"root must be a path, got {type(raw).__name__}")
        root = os.fspath(raw)
        if not isinstance(root, str) or not root.strip():
            raise ConfigError(f"root must be a non-empty directory path, got {raw!r}")
        if "\x00" in root:
            raise ConfigError(f"root {root!r} contains a NUL byte")
        object.__setattr__(self, "root", os.path.abspath(os.path.expanduser(root)))
        if self.experiment_id is not None:
            safe_experiment_id(self.experiment_id)
        durable: object = self.durable
        if not isinstance(durable, bool):
            raise ConfigError(f"durable must be a bool, got {durable!r}")

    @classmethod
    def from_locator(cls, info: LocatorInfo, **kwargs: Any) -> Self:
        """Build a config from a ``file`` locator (a path or ``file://`` URI).

        Accepted query parameters and keyword overrides: ``experiment_id`` and
        ``durable``; keywords win over query parameters.

        Raises:
            ConfigError: An unknown parameter or keyword, or an invalid value.
        """
        unknown = sorted((set(info.params) | set(kwargs)) - set(_LOCATOR_KEYS))
        if unknown:
            raise ConfigError(
                f"file store locator {info.redacted()!r} got unknown option(s) "
                f"{', '.join(unknown)}; accepted: {', '.join(_LOCATOR_KEYS)}"
            )
        options: dict[str, object] = {**info.params, **kwargs}
        experiment_id = options.get("experiment_id")
        if experiment_id is not None and not isinstance(experiment_id, str):
            raise ConfigError(f"experiment_id must be a string, got {experiment_id!r}")
        durable = _parse_bool(options.get("durable", False), "durable")
        return cls(root=info.path, experiment_id=experiment_id or None, durable=durable)

    def to_locator(self) -> str:
        """Render ``file:///abs/root`` plus ``?experiment_id=...&durable=true`` if set.

        ``parse_to_config(config.to_locator()) == config``.
        """
        query: dict[str, str] = {}
        if self.experiment_id is not None:
            query["experiment_id"] = self.experiment_id
        if self.durable:
            query["durable"] = "true"
        locator = "file://" + quote(self.root, safe="/")
        return f"{locator}?{urlencode(query)}" if query else locator

    def connect(self) -> FileStore:
        """Open the store (reads ``_meta.json``; creates nothing until the first write).

        Raises:
            ExperimentMismatchError: The experiment directory belongs to another experiment.
            CorruptRecordError: A ``_meta.json`` cannot be decoded.
        """
        return FileStore(self)

    def list_experiments(self) -> list[str]:
        """Return the ids of the experiments under this (unscoped) root, sorted.

        Reads every ``root/*/_meta.json`` (or ``root/_meta.json`` of a standalone
        store); creates nothing, and a missing root has no experiments.

        Raises:
            ConfigError: The config is scoped to one experiment.
            CorruptRecordError: A ``_meta.json`` cannot be decoded.
        """
        if self.experiment_id is not None:
            raise ConfigError(
                f"list_experiments() needs the unscoped collection config; this one is "
                f"scoped to {self.experiment_id!r}: use FileStoreConfig(root={self.root!r})"
            )
        root = Path(self.root)
        meta = _read_meta(root / META_FILE)
        if meta is not None:
            return [meta.experiment_id] if meta.experiment_id is not None else []
        return sorted(_collection_experiments(root))

    def for_experiment(self, experiment_id: str) -> FileStoreConfig:
        """Return this collection config scoped to ``experiment_id``."""
        return self.scoped(experiment_id)


@dataclass(frozen=True)
class ScanResult:
    """What a tolerant scan found: the good records and every problem.

    Attributes:
        records: The records that decoded.
        problems: One error per file that did not, naming the file.
    """

    records: list[RunRecord] = field(default_factory=list)
    problems: list[CorruptRecordError] = field(default_factory=list)


class _StoreLock:
    """The one cross-process lock of a store directory (``.lock``, ``flock``).

    ``flock`` does not exclude threads sharing one descriptor, so a thread lock is
    taken first. The lock is released by the kernel when its process dies, so a
    killed writer never leaves the store locked. After a fork the child opens its own descriptor: one inherited from
    the parent would share the parent's lock instead of competing with it.
    """

    def __init__(self, path: Path) -> None:
        self._path = str(path)
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = os.getpid()

    def __enter__(self) -> None:
        if self._pid != os.getpid():
            self._after_fork()
        self._thread_lock.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | _READ_FLAGS, 0o666)
            _lock_fd(self._fd)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._fd is not None:
                _unlock_fd(self._fd)
        finally:
            self._thread_lock.release()

    def _after_fork(self) -> None:
        self._thread_lock = threading.Lock()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._pid = os.getpid()

    def close(self) -> None:
        if self._pid != os.getpid():
            self._after_fork()
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _batched(items: Iterable[RunRecord], size: int) -> Iterator[list[RunRecord]]:
    batch: list[RunRecord] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class FileStore:
    """A store on the local filesystem; see the module docstring for its shapes.

    Implements :class:`~metalab.store.abc.Store` and every file-backed capability:
    working directory, logs, structured results, experiment manifests, experiments,
    artifact streaming, bulk put and delete.

    **Concurrency.** Every write is a temp file moved into place, so readers never
    see a torn file. A ``running`` record is placed with an exclusive link when no
    record exists yet; otherwise the store's one lock (``.lock``, held only around a
    rename) orders it against finished records, so a record never moves backwards,
    also with many processes writing the same run.

    Args:
        config: The configuration; :meth:`FileStoreConfig.connect` is the usual way.

    Raises:
        ExperimentMismatchError: The experiment directory belongs to another experiment.
        CorruptRecordError: A ``_meta.json`` cannot be decoded.
    """

    def __init__(self, config: FileStoreConfig) -> None:
        root = Path(config.root)
        eid = config.experiment_id
        if eid is not None:
            self._setup(config, "scoped", _scoped_directory(root, eid), eid)
            return
        meta = _read_meta(root / META_FILE)
        if meta is not None:
            self._setup(config, "standalone", root, meta.experiment_id)
        else:
            self._setup(config, "collection", root, None)

    def _setup(self, config: FileStoreConfig, mode: Mode, directory: Path, eid: str | None) -> None:
        self._config = config
        self._mode: Mode = mode
        self._experiment_id = eid
        self._durable = config.durable
        self._layout = FileStoreLayout(directory)
        self._dir = str(directory)
        self._runs = str(self._layout.runs_dir)
        self._derived = str(self._layout.derived_dir)
        self._ready = False
        self._lock = _StoreLock(self._layout.lock_path)
        self._children: dict[str, FileStore] = {}
        self._owners: dict[str, FileStore] = {}
        self._children_lock = threading.Lock()

    @classmethod
    def _child(cls, parent: FileStore, eid: str, directory: Path) -> FileStore:
        child = cls.__new__(cls)
        child._setup(parent._config.scoped(eid), "scoped", directory, eid)
        return child

    @property
    def config(self) -> FileStoreConfig:
        """The configuration this store was opened with."""
        return self._config

    @property
    def mode(self) -> Mode:
        """``"scoped"``, ``"standalone"`` or ``"collection"``."""
        return self._mode

    @property
    def experiment_id(self) -> str | None:
        """The experiment of a scoped or standalone store (``None`` for a collection)."""
        return self._experiment_id

    @property
    def layout(self) -> FileStoreLayout:
        """The paths of this store's directory (a collection's root for a collection)."""
        return self._layout

    def __repr__(self) -> str:
        return (
            f"FileStore({self._dir!r}, mode={self._mode!r}, experiment_id={self._experiment_id!r})"
        )

    def get_working_directory(self) -> Path:
        """Return the directory holding the layout (a collection's root for a collection)."""
        return self._layout.directory

    def close(self) -> None:
        """Release the lock file's descriptor (of every experiment, for a collection)."""
        self._lock.close()
        with self._children_lock:
            children = list(self._children.values())
        for child in children:
            child.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __getstate__(self) -> object:
        raise TypeError(
            "a FileStore holds open file handles and cannot be pickled; "
            "pickle its config (store.config) and connect() again"
        )

    def _discover(self) -> dict[str, FileStore]:
        """Refresh the experiments of a collection from disk."""
        found = _collection_experiments(self._layout.directory)
        with self._children_lock:
            for eid, directory in found.items():
                child = self._children.get(eid)
                if child is None or child._layout.directory != directory:
                    self._children[eid] = FileStore._child(self, eid, directory)
            return dict(self._children)

    def _child_for_write(self, experiment_id: str) -> FileStore:
        child = self._children.get(experiment_id) or self._discover().get(experiment_id)
        if child is not None:
            return child
        store = FileStore(dataclasses.replace(self._config, experiment_id=experiment_id))
        with self._children_lock:
            return self._children.setdefault(experiment_id, store)

    def _owner(self, run_id: str) -> FileStore | None:
        """The experiment of a collection that holds ``run_id``, or ``None``."""
        owner = self._owners.get(run_id)
        if owner is not None and owner.run_exists(run_id):
            return owner
        self._owners.pop(run_id, None)
        checked: set[str] = set()
        for refresh in (False, True):
            children = self._discover() if refresh or not self._children else dict(self._children)
            for eid, child in children.items():
                if eid not in checked and child.run_exists(run_id):
                    self._owners[run_id] = child
                    return child
                checked.add(eid)
        return None

    def _owner_for_write(self, run_id: str) -> FileStore:
        owner = self._owner(run_id)
        if owner is None:
            raise StoreError(
                f"no experiment in collection {self._dir!r} has a record of run {run_id!r}; "
                "put the run record first, or use a store scoped to the run's experiment"
            )
        return owner

    def _check_experiment(self, experiment_id: str) -> None:
        if self._experiment_id is not None and experiment_id != self._experiment_id:
            raise ExperimentMismatchError(self._dir, experiment_id, self._experiment_id)

    def _prepare(self) -> None:
        """Lay down the skeleton and ``_meta.json`` before the first write."""
        if self._ready:
            return
        self._layout.ensure_skeleton(durable=self._durable)
        meta_path = str(self._layout.meta_path)
        if self._mode == "scoped" and self._experiment_id is not None:
            meta = StoreMeta(experiment_id=self._experiment_id, created_at=utc_now())
            if not self._create_new(meta_path, _codec.STORE_META.encode(meta)):
                found = _read_meta(self._layout.meta_path)
                if found is None or found.experiment_id != self._experiment_id:
                    raise ExperimentMismatchError(
                        self._dir, self._experiment_id, found.experiment_id if found else None
                    )
        self._ready = True

    def _create_new(self, target: str, data: bytes) -> bool:
        """Move ``data`` into ``target`` only if nothing is there; return whether it was."""
        directory = os.path.dirname(target)
        tmp = write_temp(directory, data, durable=self._durable)
        try:
            placed = link_into_place(tmp, target)
            if placed is None:
                with self._lock:
                    placed = not _exists(target)
                    if placed:
                        os.replace(tmp, target)
            if not placed:
                os.unlink(tmp)
        except BaseException:
            _discard(tmp)
            raise
        if placed and self._durable:
            fsync_directory(directory)
        return placed

    def _place_record(self, tmp: str, target: str, status: str, *, locked: bool) -> None:
        """Move a record's temp file into place, never moving a record backwards."""
        if status == "running":
            placed = link_into_place(tmp, target)
            if placed:
                return
            if locked:
                self._replace_unless_finished(tmp, target)
            else:
                with self._lock:
                    self._replace_unless_finished(tmp, target)
        elif locked:
            os.replace(tmp, target)
        else:
            with self._lock:
                os.replace(tmp, target)

    def _replace_unless_finished(self, tmp: str, target: str) -> None:
        data = _read_bytes(target)
        if data is not None:
            stored = _codec.RUN_RECORD.decode(data, source=target)
            if stored.status in FINISHED_STATUSES:
                os.unlink(tmp)
                return
        os.replace(tmp, target)

    def put_run_record(self, record: RunRecord) -> None:
        """Store a record atomically; a ``running`` one never replaces a finished one.

        Raises:
            ConfigError: The run id cannot be a file name.
            ExperimentMismatchError: The record belongs to another experiment than
                this scoped (or standalone) store.
            CorruptRecordError: A ``running`` record meets a stored record that
                cannot be decoded (it is left untouched).
        """
        if self._mode == "collection":
            self._child_for_write(record.experiment_id).put_run_record(record)
            return
        run_id = validate_run_id(record.run_id)
        self._check_experiment(record.experiment_id)
        if not self._ready:
            self._prepare()
        data = _codec.RUN_RECORD.encode(record)
        tmp = write_temp(self._runs, data, durable=self._durable)
        try:
            self._place_record(tmp, f"{self._runs}/{run_id}.json", record.status, locked=False)
        except BaseException:
            _discard(tmp)
            raise
        if self._durable:
            fsync_directory(self._runs)

    def put_run_records(self, records: Iterable[RunRecord]) -> int:
        """Store many records, with the same rules as :meth:`put_run_record`.

        Records are written in chunks: each chunk is validated and encoded before
        any of it is written, its temp files are written outside the lock, and the
        lock is taken once per chunk to move them into place (with ``durable``, the
        directory is fsynced once per chunk). Records are streamed, so an iterator
        of any length is fine.

        Returns:
            How many records were stored.
        """
        count = 0
        if self._mode == "collection":
            for chunk in _batched(records, _BULK_CHUNK):
                groups: dict[str, list[RunRecord]] = {}
                for rec in chunk:
                    groups.setdefault(rec.experiment_id, []).append(rec)
                for eid, group in groups.items():
                    count += self._child_for_write(eid).put_run_records(group)
            return count
        for chunk in _batched(records, _BULK_CHUNK):
            for rec in chunk:
                validate_run_id(rec.run_id)
                self._check_experiment(rec.experiment_id)
            if not self._ready:
                self._prepare()
            encoded = [_codec.RUN_RECORD.encode(rec) for rec in chunk]
            self._put_chunk(chunk, encoded)
            count += len(chunk)
        return count

    def _put_chunk(self, chunk: list[RunRecord], encoded: list[bytes]) -> None:
        runs = self._runs
        temps: list[str] = []
        placed = 0
        try:
            for data in encoded:
                temps.append(write_temp(runs, data, durable=self._durable))
            with self._lock:
                for rec, tmp in zip(chunk, temps, strict=True):
                    self._place_record(tmp, f"{runs}/{rec.run_id}.json", rec.status, locked=True)
                    placed += 1
        finally:
            for tmp in temps[placed:]:
                _discard(tmp)
        if self._durable:
            fsync_directory(runs)

    def get_run_record(self, run_id: str) -> RunRecord | None:
        """Return the record of ``run_id``, or ``None`` if there is none.

        Raises:
            ConfigError: The run id cannot be a file name.
            CorruptRecordError: The stored record cannot be decoded.
        """
        validate_run_id(run_id)
        if self._mode == "collection":
            owner = self._owner(run_id)
            return None if owner is None else owner.get_run_record(run_id)
        path = f"{self._runs}/{run_id}.json"
        data = _read_bytes(path)
        if data is None:
            return None
        record = _codec.RUN_RECORD.decode(data, source=path)
        if record.run_id != run_id:
            raise CorruptRecordError(path, f"the file holds run {record.run_id!r}")
        return record

    def run_exists(self, run_id: str) -> bool:
        """Return whether a record of ``run_id`` is stored."""
        validate_run_id(run_id)
        if self._mode == "collection":
            return self._owner(run_id) is not None
        return _exists(f"{self._runs}/{run_id}.json")

    def list_run_records(self, experiment_id: str | None = None) -> list[RunRecord]:
        """Return every record (of one experiment, if given), in no particular order.

        Raises:
            CorruptRecordError: A record cannot be decoded (the first one met).
        """
        return list(self.iter_run_records(experiment_id))

    def scan_run_records(self, experiment_id: str | None = None) -> ScanResult:
        """Like :meth:`list_run_records`, but collect undecodable files instead of raising."""
        result = ScanResult()
        result.records.extend(self.iter_run_records(experiment_id, on_error=result.problems.append))
        return result

    def iter_run_records(
        self,
        experiment_id: str | None = None,
        *,
        batch_size: int = _SCAN_BATCH,
        on_error: ErrorHandler | None = None,
    ) -> Iterator[RunRecord]:
        """Stream the records (of one experiment, if given) with bounded memory.

        Files are read ``batch_size`` at a time and decoded as the caller consumes
        them, so memory holds one batch of raw bytes, whatever the store's size.

        Args:
            experiment_id: Only records of this experiment.
            batch_size: How many files are read before they are decoded.
            on_error: Called with each undecodable file's error, and the scan goes
                on; without it the first such error is raised.

        Raises:
            CorruptRecordError: A record cannot be decoded and there is no ``on_error``.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size!r}")
        if self._mode == "collection":
            children = self._discover()
            if experiment_id is not None:
                child = children.get(experiment_id)
                selected = [child] if child is not None else []
            else:
                selected = [children[eid] for eid in sorted(children)]
            for child in selected:
                yield from child.iter_run_records(
                    experiment_id, batch_size=batch_size, on_error=on_error
                )
            return
        if experiment_id is not None and self._experiment_id not in (None, experiment_id):
            return
        names = _list_names(self._runs, ".json")
        if not names:
            return
        yield from _scan(self._runs, names, experiment_id, batch_size, on_error)

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
        """Store an artifact file and record it (sha256, size) in the run's manifest.

        ``data`` is the content (bytes-like) or the path of a file to copy, which is
        streamed and hashed on the way. Putting a name again replaces it.

        Returns:
            The descriptor; its ``uri`` is relative to the store directory.

        Raises:
            ConfigError: The run id, name or format cannot be part of a file name,
                or another artifact of the run already uses the same file name.
            TypeError: ``data`` is neither bytes-like nor a path.
        """
        validate_run_id(run_id)
        uri = self._layout.artifact_uri(run_id, name, format)
        if self._mode == "collection":
            return self._owner_for_write(run_id).put_artifact(
                run_id, name, data, kind=kind, format=format, metadata=metadata
            )
        if not isinstance(data, bytes | bytearray | memoryview | os.PathLike):
            raise TypeError(
                "artifact data must be bytes, bytearray, memoryview or a path "
                f"(os.PathLike, e.g. pathlib.Path), got {type(data).__name__}"
            )
        self._prepare()
        directory = self._layout.artifact_dir(run_id)
        directory.mkdir(exist_ok=True)
        dir_str = str(directory)
        if isinstance(data, os.PathLike):
            digest, size, tmp = copy_to_temp(data, dir_str, durable=self._durable)
        else:
            view = memoryview(data)
            view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
            digest, size = hashlib.sha256(view).hexdigest(), view.nbytes
            tmp = write_temp(dir_str, view, durable=self._durable)
        descriptor = ArtifactDescriptor(
            name=name,
            kind=kind,
            format=format,
            uri=uri,
            content_hash=digest,
            size_bytes=size,
            artifact_id=str(uuid.uuid4()),
            metadata=dict(metadata or {}),
        )
        manifest_path = self._layout.artifact_manifest_path(run_id)
        try:
            with self._lock:
                artifacts = list(self._read_artifact_manifest(manifest_path))
                index = next((i for i, a in enumerate(artifacts) if a.name == name), None)
                clash = [a.name for a in artifacts if a.uri == uri and a.name != name]
                if clash:
                    raise ConfigError(
                        f"artifact {name!r} of run {run_id!r} would overwrite the file of "
                        f"artifact {clash[0]!r} ({uri}); choose another name or format"
                    )
                replaced = None
                if index is None:
                    artifacts.append(descriptor)
                else:
                    replaced = artifacts[index]
                    artifacts[index] = descriptor
                os.replace(tmp, self._layout.directory / uri)
                manifest = ArtifactManifest(artifacts=tuple(artifacts))
                atomic_write(
                    manifest_path,
                    _codec.ARTIFACT_MANIFEST.encode(manifest),
                    durable=self._durable,
                )
                if replaced is not None and replaced.uri != uri:
                    # Same name in another format: the old file belongs to no artifact now.
                    _remove_file(self._resolve_uri(replaced.uri, manifest_path))
        except BaseException:
            _discard(tmp)
            raise
        if self._durable:
            fsync_directory(dir_str)
        return descriptor

    def _read_artifact_manifest(self, path: Path) -> tuple[ArtifactDescriptor, ...]:
        data = _read_bytes(str(path))
        if data is None:
            return ()
        return _codec.ARTIFACT_MANIFEST.decode(data, source=str(path)).artifacts

    def _artifact_file(self, run_id: str, name: str) -> Path:
        validate_run_id(run_id)
        validate_name(name, "artifact name")
        manifest_path = self._layout.artifact_manifest_path(run_id)
        for descriptor in self._read_artifact_manifest(manifest_path):
            if descriptor.name == name:
                return self._resolve_uri(descriptor.uri, manifest_path)
        raise ArtifactNotFoundError(run_id, name)

    def _resolve_uri(self, uri: str, manifest_path: Path) -> Path:
        relative = posixpath.normpath(uri.replace("\\", "/"))
        if posixpath.isabs(relative) or relative.split("/", 1)[0] == "..":
            raise CorruptRecordError(
                str(manifest_path), f"artifact uri {uri!r} points outside the store directory"
            )
        return self._layout.directory / relative

    def get_artifact(self, run_id: str, name: str) -> bytes:
        """Return an artifact's bytes.

        Raises:
            ArtifactNotFoundError: The run has no such artifact, or its file is gone.
        """
        with self.open_artifact(run_id, name) as stream:
            return stream.read()

    def open_artifact(self, run_id: str, name: str) -> IO[bytes]:
        """Open an artifact for binary reading (the caller closes it).

        Raises:
            ArtifactNotFoundError: The run has no such artifact, or its file is gone.
        """
        if self._mode == "collection":
            validate_run_id(run_id)
            owner = self._owner(run_id)
            if owner is None:
                raise ArtifactNotFoundError(run_id, name)
            return owner.open_artifact(run_id, name)
        path = self._artifact_file(run_id, name)
        try:
            return path.open("rb")
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(run_id, name) from exc

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        """Return the descriptors in a run's manifest (empty if it has none)."""
        validate_run_id(run_id)
        if self._mode == "collection":
            owner = self._owner(run_id)
            return [] if owner is None else owner.list_artifacts(run_id)
        return list(self._read_artifact_manifest(self._layout.artifact_manifest_path(run_id)))

    def put_derived(self, run_id: str, metrics: Mapping[str, MetricValue]) -> None:
        """Store (replace) the derived metrics of a run."""
        validate_run_id(run_id)
        if self._mode == "collection":
            self._owner_for_write(run_id).put_derived(run_id, metrics)
            return
        if not self._ready:
            self._prepare()
        data = _codec.DERIVED.encode(DerivedMetrics(metrics=dict(metrics)))
        atomic_write(f"{self._derived}/{run_id}.json", data, durable=self._durable)

    def get_derived(self, run_id: str) -> DerivedMetrics | None:
        """Return the derived metrics of a run, or ``None`` if there are none.

        Raises:
            CorruptRecordError: The stored document cannot be decoded.
        """
        validate_run_id(run_id)
        if self._mode == "collection":
            owner = self._owner(run_id)
            return None if owner is None else owner.get_derived(run_id)
        path = f"{self._derived}/{run_id}.json"
        data = _read_bytes(path)
        return None if data is None else _codec.DERIVED.decode(data, source=path)

    def list_derived(self, experiment_id: str | None = None) -> dict[str, DerivedMetrics]:
        """Return run id -> derived metrics of every run (of one experiment) that has them.

        One directory listing and one read per document, instead of a lookup per run.

        Raises:
            CorruptRecordError: A stored document cannot be decoded.
        """
        if self._mode == "collection":
            children = self._discover()
            found: dict[str, DerivedMetrics] = {}
            for eid in sorted(children):
                if experiment_id in (None, eid):
                    found.update(children[eid].list_derived(eid))
            return found
        if experiment_id is not None and self._experiment_id not in (None, experiment_id):
            return {}
        names = _list_names(self._derived, ".json")
        if experiment_id is not None and self._experiment_id is None:
            # Derived documents do not name their experiment; the run records do.
            ran = {f"{r.run_id}.json" for r in self.iter_run_records(experiment_id)}
            names = [name for name in names if name in ran]
        decode = _codec.DERIVED.decode
        found = {}
        for name in names:
            path = f"{self._derived}/{name}"
            data = _read_bytes(path)
            if data is not None:  # None: deleted since it was listed
                found[name[:-5]] = decode(data, source=path)
        return found

    def derived_exists(self, run_id: str) -> bool:
        """Return whether derived metrics of ``run_id`` are stored."""
        validate_run_id(run_id)
        if self._mode == "collection":
            owner = self._owner(run_id)
            return owner is not None and owner.derived_exists(run_id)
        return _exists(f"{self._derived}/{run_id}.json")

    def put_log(self, run_id: str, name: str, text: str) -> None:
        """Store (replace) the log ``name`` of a run (``logs/{run_id}_{name}.log``)."""
        path = self._layout.log_path(run_id, name)
        if not isinstance(text, str):
            raise TypeError(f"log text must be a str, got {type(text).__name__}")
        if self._mode == "collection":
            self._owner_for_write(run_id).put_log(run_id, name, text)
            return
        self._prepare()
        atomic_write(path, text.encode("utf-8"), durable=self._durable)

    def get_log(self, run_id: str, name: str) -> str | None:
        """Return a log's text, or ``None`` if there is no such log.

        Bytes that are not UTF-8 (a log cut off mid-character) read as U+FFFD.
        """
        path = self._layout.log_path(run_id, name)
        if self._mode == "collection":
            owner = self._owner(run_id)
            return None if owner is None else owner.get_log(run_id, name)
        data = _read_bytes(str(path))
        return None if data is None else data.decode("utf-8", errors="replace")

    def list_logs(self, run_id: str) -> list[str]:
        """Return the names of a run's logs, sorted (empty if it has none)."""
        validate_run_id(run_id)
        if self._mode == "collection":
            owner = self._owner(run_id)
            return [] if owner is None else owner.list_logs(run_id)
        return sorted(
            name.removesuffix(".log").removeprefix(f"{run_id}_")
            for name in _list_names(str(self._layout.logs_dir), ".log")
            if name.startswith(f"{run_id}_")
        )

    def log_path(self, run_id: str, name: str) -> Path:
        """Return the file a log is streamed to; its directory exists afterwards."""
        path = self._layout.log_path(run_id, name)
        if self._mode == "collection":
            return self._owner_for_write(run_id).log_path(run_id, name)
        self._prepare()
        return path

    def put_result(self, run_id: str, name: str, result: ResultDocument) -> None:
        """Store (replace) the structured result ``name`` of a run."""
        path = self._layout.result_path(run_id, name)
        if self._mode == "collection":
            self._owner_for_write(run_id).put_result(run_id, name, result)
            return
        self._prepare()
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, _codec.RESULT.encode(result), durable=self._durable)

    def get_result(self, run_id: str, name: str) -> ResultDocument | None:
        """Return a structured result, or ``None`` if there is no such result.

        Raises:
            CorruptRecordError: The stored document cannot be decoded.
        """
        path = self._layout.result_path(run_id, name)
        if self._mode == "collection":
            owner = self._owner(run_id)
            return None if owner is None else owner.get_result(run_id, name)
        data = _read_bytes(str(path))
        return None if data is None else _codec.RESULT.decode(data, source=str(path))

    def list_results(self, run_id: str) -> list[str]:
        """Return the names of a run's structured results, sorted."""
        directory = self._layout.result_dir(run_id)
        if self._mode == "collection":
            owner = self._owner(run_id)
            return [] if owner is None else owner.list_results(run_id)
        return sorted(name.removesuffix(".json") for name in _list_names(str(directory), ".json"))

    def put_experiment_manifest(self, manifest: ExperimentManifest) -> None:
        """Store a submission manifest; manifests accumulate and are never replaced.

        The file is ``experiments/{safe_experiment_id}_{UTC submitted_at}.json``;
        putting the very same manifest twice stores it once.

        Raises:
            ExperimentMismatchError: The manifest belongs to another experiment than
                this scoped (or standalone) store.
        """
        if self._mode == "collection":
            self._child_for_write(manifest.experiment_id).put_experiment_manifest(manifest)
            return
        base = manifest_file_name(manifest.experiment_id, manifest.submitted_at)
        self._check_experiment(manifest.experiment_id)
        self._prepare()
        data = _codec.EXPERIMENT_MANIFEST.encode(manifest)
        directory = self._layout.experiments_dir
        attempt = 0
        while True:
            path = str(directory / (f"{base}.json" if attempt == 0 else f"{base}_{attempt}.json"))
            if self._create_new(path, data) or _read_bytes(path) == data:
                return
            attempt += 1

    def list_experiment_manifests(
        self, experiment_id: str | None = None
    ) -> list[ExperimentManifest]:
        """Return the submission manifests, oldest first.

        Raises:
            CorruptRecordError: A manifest cannot be decoded.
        """
        if self._mode == "collection":
            children = self._discover()
            found = [
                m
                for eid in sorted(children)
                if experiment_id in (None, eid)
                for m in children[eid].list_experiment_manifests(experiment_id)
            ]
            return sorted(found, key=lambda m: m.submitted_at)
        directory = str(self._layout.experiments_dir)
        manifests: list[tuple[ExperimentManifest, str]] = []
        for name in _list_names(directory, ".json"):
            path = f"{directory}/{name}"
            data = _read_bytes(path)
            if data is None:
                continue
            manifest = _codec.EXPERIMENT_MANIFEST.decode(data, source=path)
            if experiment_id in (None, manifest.experiment_id):
                manifests.append((manifest, name))
        manifests.sort(key=lambda pair: (pair[0].submitted_at, pair[1]))
        return [m for m, _ in manifests]

    def query_runs(self, query: Query) -> list[RunRecord]:
        """Return the runs matching ``query`` (evaluated in Python over the files)."""
        return select_runs(self, query, self._experiment_id)

    def fields(self, experiment_id: str | None = None) -> list[FieldInfo]:
        """Return the field catalog of an experiment (default: this store's), from the files."""
        eid = experiment_id or self._experiment_id
        return field_catalog(self.list_run_records(eid), derived_lookup(self, eid))

    def list_experiments(self) -> list[str]:
        """Return the ids of the experiments with data in this store, sorted.

        Raises:
            CorruptRecordError: A ``_meta.json`` or (in a standalone store not bound
                to one experiment) a record cannot be decoded.
        """
        if self._mode == "collection":
            return sorted(self._discover())
        if self._experiment_id is not None:
            return [self._experiment_id] if self._layout.meta_path.exists() else []
        return sorted({rec.experiment_id for rec in self.iter_run_records()})

    def delete_run(self, run_id: str) -> bool:
        """Delete a run's record, derived metrics, artifacts, logs and results.

        Returns:
            Whether anything was deleted.
        """
        validate_run_id(run_id)
        if self._mode == "collection":
            owner = self._owner(run_id)
            self._owners.pop(run_id, None)
            return owner is not None and owner.delete_run(run_id)
        if not self._layout.directory.is_dir():
            return False
        removed = False
        layout = self._layout
        with self._lock:
            for path in (layout.run_path(run_id), layout.derived_path(run_id)):
                removed |= _remove_file(path)
            for directory in (layout.artifact_dir(run_id), layout.result_dir(run_id)):
                removed |= _remove_tree(directory)
            prefix = f"{run_id}_"
            for name in _list_names(str(layout.logs_dir), ".log"):
                if name.startswith(prefix):
                    removed |= _remove_file(layout.logs_dir / name)
        return removed


def _scoped_directory(root: Path, experiment_id: str) -> Path:
    """Where the scoped store of ``experiment_id`` under ``root`` lives."""
    root_meta = _read_meta(root / META_FILE)
    if root_meta is not None:
        if root_meta.experiment_id == experiment_id:
            return root
        raise ExperimentMismatchError(str(root), experiment_id, root_meta.experiment_id)
    directory = root / safe_experiment_id(experiment_id)
    meta = _read_meta(directory / META_FILE)
    if meta is not None and meta.experiment_id != experiment_id:
        raise ExperimentMismatchError(str(directory), experiment_id, meta.experiment_id)
    return directory


def _discard(path: str) -> None:
    # Cleanup after another error: the original exception is the one to report.
    with contextlib.suppress(OSError):
        os.unlink(path)


def _remove_file(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _remove_tree(path: Path) -> bool:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return False
    return True


def _read_batch(directory: str, names: list[str]) -> list[bytes | None]:
    return [_read_bytes(f"{directory}/{name}") for name in names]


def _scan(
    directory: str,
    names: list[str],
    experiment_id: str | None,
    batch_size: int,
    on_error: ErrorHandler | None,
) -> Iterator[RunRecord]:
    """Decode the records in ``names``, reading ``batch_size`` files at a time.

    Reading in a helper thread while this one decodes was measured slower on CPython
    3.11 (every finished read waits for the decoding thread to drop the GIL), so
    reads and decodes alternate in one thread.
    """
    for start in range(0, len(names), batch_size):
        batch = names[start : start + batch_size]
        yield from _decode_batch(
            directory, batch, _read_batch(directory, batch), experiment_id, on_error
        )


def _decode_batch(
    directory: str,
    names: list[str],
    contents: list[bytes | None],
    experiment_id: str | None,
    on_error: ErrorHandler | None,
) -> Iterator[RunRecord]:
    decode = _codec.RUN_RECORD.decode
    for name, data in zip(names, contents, strict=True):
        if data is None:
            continue  # deleted since it was listed: no longer a record
        path = f"{directory}/{name}"
        try:
            record = decode(data, source=path)
            if record.run_id != name[:-5]:
                raise CorruptRecordError(path, f"the file holds run {record.run_id!r}")
        except CorruptRecordError as exc:
            if on_error is None:
                raise
            on_error(exc)
            continue
        if experiment_id is None or record.experiment_id == experiment_id:
            yield record
