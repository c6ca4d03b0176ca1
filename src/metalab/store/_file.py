"""The filesystem store: the default store and the source of truth.

A :class:`FileStore` takes one of three shapes, decided when it connects:

- **scoped** (the config names an experiment): the directory
  ``root/safe_experiment_id(experiment_id)``, or ``root`` itself when its
  ``_meta.json`` already names that experiment;
- **standalone** (no experiment in the config, ``root/_meta.json`` exists): ``root``
  holds the layout, as in ``create_store("./experiments/my_exp_1.0")``;
- **collection** (no experiment, no ``root/_meta.json``): ``root`` holds one scoped
  directory per experiment; records are routed to the directory of their
  experiment, and a run is looked up in every experiment.

A scoped or standalone store is one :class:`~metalab.store._directory.StoreDirectory`;
a collection routes between them (:class:`~metalab.store._collection.Collection`).
Besides the :class:`~metalab.store.abc.Store` contract, a FileStore hands out its
documents with their file state (:meth:`FileStore.scan_documents`,
:meth:`FileStore.document_states`, and the ``write_*`` methods), which is all an index
over it (a PostgresStore) needs to follow the files without reading them itself.
"""

# os.path keeps a user's root as given (no symlinks resolved), unlike Path.resolve().
# ruff: noqa: PTH100, PTH111

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, Self
from urllib.parse import quote, urlencode

from metalab import _codec
from metalab.errors import (
    ConfigError,
    CorruptRecordError,
    ExperimentMismatchError,
    StoreError,
    StoreNotFoundError,
)
from metalab.query import Query, select
from metalab.records import ExperimentManifest, MetricValue, RunRecord, StoreMeta
from metalab.series import MetricSeries, SeriesArrays, SeriesPoint
from metalab.store._collection import Collection
from metalab.store._directory import ErrorHandler, Keys, StoreDirectory, read_meta
from metalab.store._documents import Document, DocumentKind, DocumentRef, SeriesAppend
from metalab.store._fileio import atomic_write
from metalab.store._intents import Landing
from metalab.store._layout import META_FILE, FileStoreLayout, safe_experiment_id
from metalab.store._query import derived_lookup
from metalab.store._records_snapshot import SnapshotCheck
from metalab.store._rules import validate_experiment_id
from metalab.store._series_file import SeriesScan
from metalab.store.abc import StoreConfig
from metalab.store.locator import LocatorInfo

__all__ = ["DocumentScan", "FileStore", "FileStoreConfig", "ScanResult"]

_SCAN_BATCH: Final = 256
_LOCATOR_KEYS: Final = ("durable", "experiment_id")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

Mode = Literal["scoped", "standalone", "collection"]


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
        meta = read_meta(root / name / META_FILE)
        if meta is None or meta.experiment_id is None:
            continue
        eid = meta.experiment_id
        if eid not in found or name == safe_experiment_id(eid):
            found[eid] = root / name
    return found


def _scoped_directory(root: Path, experiment_id: str) -> Path:
    """Where the scoped store of ``experiment_id`` under ``root`` lives."""
    root_meta = read_meta(root / META_FILE)
    if root_meta is not None:
        if root_meta.experiment_id == experiment_id:
            return root
        raise ExperimentMismatchError(str(root), experiment_id, root_meta.experiment_id)
    directory = root / safe_experiment_id(experiment_id)
    meta = read_meta(directory / META_FILE)
    if meta is not None and meta.experiment_id != experiment_id:
        raise ExperimentMismatchError(str(directory), experiment_id, meta.experiment_id)
    return directory


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
            validate_experiment_id(self.experiment_id)
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
        """Open the store; a scoped store lays down its experiment directory.

        The directory of a scoped config gets its skeleton and ``_meta.json`` now, so
        :meth:`FileStore.get_working_directory` exists at once; an unscoped config
        creates nothing (a collection root comes into being with its first write).

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
        meta = read_meta(root / META_FILE)
        if meta is not None:
            return [meta.experiment_id] if meta.experiment_id is not None else []
        return sorted(_collection_experiments(root))

    def require_store(self) -> None:
        """Check that the root is a metalab store or collection, before reading it.

        Reading a path that holds no store would otherwise find no runs, silently. An
        empty directory is an empty store; hidden entries (``.locks``) do not count.
        Creates nothing.

        Raises:
            StoreNotFoundError: The root does not exist, is a file, cannot be read, or
                holds other files and no experiment directory.
            CorruptRecordError: A ``_meta.json`` cannot be decoded.
        """
        root = Path(self.root)
        if not root.exists():
            raise StoreNotFoundError(self.root, "the directory does not exist")
        if not root.is_dir():
            raise StoreNotFoundError(self.root, "it is a file, not a directory")
        if read_meta(root / META_FILE) is not None:
            return
        try:
            entries = [p.name for p in root.iterdir() if not p.name.startswith(".")]
        except PermissionError:
            raise StoreNotFoundError(self.root, "the directory cannot be read") from None
        # An experiment directory being laid down has its skeleton before _meta.json.
        if (
            entries
            and not _collection_experiments(root)
            and not any((root / name / "runs").is_dir() for name in entries)
        ):
            raise StoreNotFoundError(
                self.root,
                f"it holds {len(entries)} entries and no experiment directory (a store "
                "has a _meta.json in it, a collection one in each experiment directory)",
            )

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


class DocumentScan:
    """The documents of one kind in a FileStore: listed when made, read as iterated.

    ``len()`` is the number listed; iterating reads them one at a time (memory holds
    one document, whatever the store's size) and skips those deleted since.
    """

    def __init__(self, kind: DocumentKind, listing: list[tuple[StoreDirectory, Keys]]):
        self._kind: DocumentKind = kind
        self._listing = listing

    def __len__(self) -> int:
        return sum(len(keys) for _, keys in self._listing)

    @property
    def directories(self) -> int:
        """How many directories the listing spans (keys are unique within one)."""
        return len(self._listing)

    def __iter__(self) -> Iterator[Document]:
        for directory, keys in self._listing:
            yield from directory.read_documents(self._kind, keys)


class FileStore(Collection[StoreDirectory]):
    """A store on the local filesystem; see the module docstring for its shapes.

    Implements :class:`~metalab.store.abc.Store` and every file-backed capability:
    working directory, logs, structured results, experiment manifests, experiments,
    artifact streaming, bulk put, bulk derived metrics, query and delete.

    Args:
        config: The configuration; :meth:`FileStoreConfig.connect` is the usual way.

    Raises:
        ExperimentMismatchError: The experiment directory belongs to another experiment.
        CorruptRecordError: A ``_meta.json`` cannot be decoded.
    """

    def __init__(self, config: FileStoreConfig) -> None:
        root = Path(config.root)
        eid = config.experiment_id
        bound: StoreDirectory | None
        if eid is not None:
            bound = StoreDirectory(_scoped_directory(root, eid), eid, durable=config.durable)
            # Scoping "creates the subdirectory" (the spec): users put their own files
            # in the working directory before any run writes there.
            bound.prepare()
            self._mode: Mode = "scoped"
        else:
            meta = read_meta(root / META_FILE)
            if meta is not None:
                bound = StoreDirectory(root, meta.experiment_id, durable=config.durable)
                self._mode = "standalone"
            else:
                bound = None
                self._mode = "collection"
        super().__init__(bound, str(root if bound is None else bound.layout.directory))
        self._config = config
        self._root = root

    def _locate(self) -> Mapping[str, Hashable]:
        return _collection_experiments(self._root)

    def _open(
        self, experiment_id: str, location: Hashable | None
    ) -> tuple[Hashable, StoreDirectory]:
        directory = (
            _scoped_directory(self._root, experiment_id)
            if location is None
            else Path(str(location))
        )
        return directory, StoreDirectory(directory, experiment_id, durable=self._config.durable)

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
        return self._scope()

    @property
    def layout(self) -> FileStoreLayout:
        """The paths of this store's directory (a collection's root for a collection)."""
        if self._bound is not None:
            return self._bound.layout
        return FileStoreLayout(self._root)

    def __repr__(self) -> str:
        return f"FileStore({self._where!r}, mode={self._mode!r}, experiment_id={self._scope()!r})"

    def get_working_directory(self) -> Path:
        """Return the directory holding the layout (a collection's root for a collection)."""
        return self.layout.directory

    def __getstate__(self) -> object:
        raise TypeError(
            "a FileStore holds open file handles and cannot be pickled; "
            "pickle its config (store.config) and connect() again"
        )

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
        for space in self._spaces_of(experiment_id):
            yield from space.iter_run_records(
                experiment_id, batch_size=batch_size, on_error=on_error
            )

    def unreferenced_artifacts(
        self, modified_before: float, *, on_error: ErrorHandler | None = None
    ) -> list[Path]:
        """Return the artifact files no manifest names, last modified before a time.

        Such files are what a crash leaves behind while an artifact is being put or
        replaced; nothing reads them. Manifests and hidden files are never listed.

        Args:
            modified_before: A POSIX time; files modified since are left out (a writer
                may be about to name them in its manifest).
            on_error: Called with the error of each manifest that cannot be read
                (nothing of its run is listed); without it the error is raised.

        Raises:
            CorruptRecordError: A manifest cannot be read and there is no ``on_error``.
        """
        return [
            path
            for space in self._spaces_of(None)
            for path in space.unreferenced_artifacts(modified_before, on_error)
        ]

    def remove_unreferenced_artifacts(
        self, modified_before: float, *, on_error: ErrorHandler | None = None
    ) -> list[Path]:
        """Remove the files :meth:`unreferenced_artifacts` lists; return those removed.

        Each run's files are judged again under the lock that ``put_artifact`` holds
        from placing a file until its manifest names it, so a file being put is never
        taken for a leftover.

        Raises:
            CorruptRecordError: A manifest cannot be read and there is no ``on_error``.
        """
        return [
            path
            for space in self._spaces_of(None)
            for path in space.remove_unreferenced_artifacts(modified_before, on_error)
        ]

    def write_run(self, record: RunRecord, into: Landing | None = None) -> Document | None:
        """Store a record like :meth:`put_run_record` and return it as written.

        Args:
            record: The record.
            into: The landing of an indexed write: an intent covers the directory
                before the record is placed, and the document is added after (see
                :mod:`metalab.store._intents`).

        Returns:
            The document with its file state, or ``None`` if the stored record was
            kept (a record never moves backwards).
        """
        return self._space_for(record.experiment_id).write_run(record, into)

    def write_runs(
        self, records: Sequence[RunRecord], into: Landing | None = None
    ) -> list[Document]:
        """Store records like :meth:`put_run_records` and return those placed, as written.

        Every record is checked before any is written, so a bad one stores none.

        Args:
            records: The records.
            into: The landing of an indexed write (see :meth:`write_run`); each
                placed document is added as soon as it is placed, so that a caller
                knows what landed even when a later record fails (a stored record
                that cannot be decoded, a full disk).
        """
        landing = Landing() if into is None else into
        before = len(landing.documents)
        for space, group in self._grouped(records):
            space.write_runs(group, into=landing)
        return landing.documents[before:]

    def write_derived(
        self, run_id: str, metrics: Mapping[str, MetricValue], into: Landing | None = None
    ) -> Document:
        """Store derived metrics like :meth:`put_derived`; return them as written."""
        return self._owner_for_write(run_id).write_derived(run_id, metrics, into)

    def write_series(
        self,
        run_id: str,
        points: Sequence[SeriesPoint],
        *,
        restart: bool = False,
        into: Landing | None = None,
    ) -> SeriesAppend:
        """Append points like :meth:`append_series`; return what was appended, and where."""
        return self._owner_for_write(run_id).append_series(
            run_id, points, restart=restart, into=into
        )

    def get_series_many(self, run_ids: Sequence[str]) -> dict[str, dict[str, MetricSeries]]:
        """Return the series of several runs by metric name, keyed by run id."""
        return {run_id: self.get_series(run_id) for run_id in run_ids}

    def get_series_arrays(self, run_ids: Sequence[str]) -> dict[str, dict[str, SeriesArrays]]:
        """The series of several runs as NumPy columns, for frames (needs NumPy).

        Read from each experiment's series snapshot (:meth:`snapshot_series`) where it
        is current, else from the series files.
        """
        by_space: dict[int, tuple[StoreDirectory, list[str]]] = {}
        missing: list[str] = []
        for run_id in run_ids:
            owner = self._owner(run_id)
            if owner is None:
                missing.append(run_id)
            else:
                by_space.setdefault(id(owner), (owner, []))[1].append(run_id)
        found: dict[str, dict[str, SeriesArrays]] = {run_id: {} for run_id in missing}
        for space, ids in by_space.values():
            found.update(space.series_arrays(ids))
        return {run_id: found[run_id] for run_id in run_ids}

    def snapshot_series(self, experiment_id: str | None = None) -> int:
        """Write the series snapshot of each experiment directory; return the runs in them.

        Frames of many runs (``series_dataframe``) read ``series/.snapshot`` instead
        of decoding every run's series file, for the runs whose file has not changed
        since; :func:`metalab.run` writes it when a sweep ends. It is derived: the
        files stay the truth, and deleting it loses nothing.

        Args:
            experiment_id: Only this experiment's directory (default: every one).
        """
        return sum(space.snapshot_series() for space in self._spaces_of(experiment_id))

    def snapshot_records(self, experiment_id: str | None = None) -> int:
        """Write the records snapshot of each experiment directory; return the documents.

        Listing records and derived metrics (``load_results``, queries, the field
        catalog, summaries) reads ``.records-snapshot`` in the experiment's directory
        instead of one file per document, for the documents whose file has not
        changed since; :func:`metalab.run` writes it when a sweep ends. Writing it
        again reads only what is new or changed. It is derived: the files stay the
        truth, and deleting it loses nothing.

        Args:
            experiment_id: Only this experiment's directory (default: every one).

        Returns:
            The number of run records and derived documents it holds.
        """
        return sum(space.snapshot_records() for space in self._spaces_of(experiment_id))

    def _only_space(self, experiment_id: str | None) -> StoreDirectory | None:
        spaces = self._spaces_of(experiment_id)
        return spaces[0] if len(spaces) == 1 else None

    def frame_cache_key(self, experiment_id: str | None = None) -> bytes | None:
        """The key a frame of ``experiment_id``'s runs, built from the files now, is cached by.

        ``None`` when no cache can be trusted: the runs span several directories, or
        ``runs/`` or ``derived/`` changed in the last two seconds (see
        :class:`~metalab.store.abc.SupportsFrameCache`).
        """
        space = self._only_space(experiment_id)
        return None if space is None else space.frame_key(experiment_id)

    def read_frame_cache(self, experiment_id: str | None, key: bytes) -> bytes | None:
        """The frame cached for ``experiment_id`` under ``key``; ``None`` if there is none."""
        space = self._only_space(experiment_id)
        return None if space is None else space.read_frame(key)

    def write_frame_cache(self, experiment_id: str | None, key: bytes, payload: bytes) -> bool:
        """Cache a frame of ``experiment_id`` under ``key``; ``False`` if it was not written."""
        space = self._only_space(experiment_id)
        return space is not None and space.write_frame(key, payload)

    def stale_caches(self, experiment_id: str | None = None) -> list[str]:
        """The frame and query caches that can no longer be served (gc removes them)."""
        return [path for space in self._spaces_of(experiment_id) for path in space.stale_caches()]

    def query_runs(self, query: Query) -> list[RunRecord]:
        """Return the runs matching ``query`` (evaluated in Python over the records).

        The answers of the last few queries (of up to 1,000 runs each) are kept in the
        experiment directory's ``.query-cache`` under the key of the frame cache, so
        the same query is answered again by reading only its runs' records while
        ``runs/`` and ``derived/`` are unchanged.
        """
        scope = self._scope()
        space = self._only_space(scope)
        key = None if space is None else space.frame_key(scope)
        if space is None or key is None:
            return super().query_runs(query)
        cached = space.cached_query(key, query)
        if cached is not None:
            return cached
        records = super().query_runs(query)
        space.cache_query(key, query, records)
        return records

    def check_query_cache(self, experiment_id: str | None = None) -> list[Query] | None:
        """The cached queries whose answer is not what the files give now.

        ``None`` when no cached answer would be served now. Reads every record once
        and asks each cached query again (``metalab store verify`` does).
        """
        space = self._only_space(experiment_id)
        key = None if space is None else space.frame_key(experiment_id)
        cached = [] if space is None or key is None else space.cached_queries(key)
        if not cached:
            return None
        records = self.list_run_records(experiment_id)
        lookup = derived_lookup(self, experiment_id)
        return [
            query
            for query, run_ids in cached
            if [record.run_id for record in select(records, query, lookup)] != run_ids
        ]

    def check_records_snapshots(
        self, experiment_id: str | None = None, *, compare: bool = False
    ) -> list[SnapshotCheck]:
        """Check each experiment directory's records snapshot against its files.

        Args:
            experiment_id: Only this experiment's directory (default: every one).
            compare: Also compare each document the snapshot holds as unchanged with
                its file's (reads those files).

        Returns:
            One check per snapshot found (directories without one are left out).
        """
        checks = (
            space.check_records_snapshot(compare=compare)
            for space in self._spaces_of(experiment_id)
        )
        return [check for check in checks if check is not None]

    def write_edit(
        self,
        run_id: str,
        change: Callable[[RunRecord], RunRecord],
        into: Landing | None = None,
        after: Callable[[], None] | None = None,
    ) -> RunRecord:
        """Replace a run's record by ``change(stored)`` under the lock (see ``set_tags``).

        ``after`` runs under the lock once ``into`` holds the document.

        Raises:
            StoreError: There is no record of ``run_id``.
        """
        owner = self._owner(run_id)
        if owner is None:
            raise StoreError(f"no run {run_id!r} in {self!r} to edit")
        return owner.edit_run(run_id, change, into, after)

    def write_manifest(self, manifest: ExperimentManifest, into: Landing | None = None) -> Document:
        """Store a manifest like :meth:`put_experiment_manifest`; return it as written."""
        return self._space_for(manifest.experiment_id).write_manifest(manifest, into)

    def delete_run(
        self, run_id: str, *, expected: RunRecord | None = None, into: Landing | None = None
    ) -> bool:
        """Delete everything of a run (if its record is still ``expected``, when given).

        ``into`` is the landing of an indexed delete: an intent covers the run's
        directory before anything is removed.
        """
        owner = self._owner(run_id)
        self._owners.pop(run_id, None)
        return owner is not None and owner.delete_run(run_id, expected=expected, into=into)

    def scan_series(self, run_id: str) -> SeriesScan | None:
        """Read a run's series file as it is (``None`` if it has none).

        Unlike :meth:`get_series`, says how many bytes of a torn last line (a flush
        cut short by a kill) were left out, for ``metalab store verify``.

        Raises:
            CorruptRecordError: The file cannot be decoded.
        """
        owner = self._owner(run_id)
        return None if owner is None else owner.scan_series(run_id)

    def scan_documents(self, kind: DocumentKind, experiment_id: str | None = None) -> DocumentScan:
        """List the documents of ``kind`` (of one experiment, if given), to read as iterated.

        Documents are handed out as they are on disk, without decoding them.
        """
        listing = [(space, space.document_keys(kind)) for space in self._spaces_of(experiment_id)]
        return DocumentScan(kind, listing)

    def document_states(
        self, kind: DocumentKind, experiment_id: str | None = None
    ) -> list[DocumentRef]:
        """Return the documents of ``kind`` with their file state, without reading them."""
        return [
            ref for space in self._spaces_of(experiment_id) for ref in space.document_states(kind)
        ]

    def read_documents(self, refs: Iterable[DocumentRef]) -> Iterator[Document]:
        """Read the documents ``refs`` name, with their file state now.

        A document deleted since it was listed is skipped.
        """
        by_space: dict[tuple[str | None, DocumentKind], list[str]] = {}
        for ref in refs:
            by_space.setdefault((ref.experiment_id, ref.kind), []).append(ref.key)
        for (eid, kind), keys in by_space.items():
            for space in self._spaces_of(eid):
                yield from space.read_documents(kind, keys)

    def experiment_directories(self) -> list[str]:
        """The experiments that have a directory here, sorted (no record is read)."""
        return sorted(
            {s.experiment_id for s in self._spaces_of(None) if s.experiment_id is not None}
        )

    def experiments_with_documents(self) -> frozenset[str | None]:
        """The experiments that hold any record, derived metrics or manifest.

        ``None`` stands for a standalone store bound to no experiment.
        """
        return frozenset(
            space.experiment_id for space in self._spaces_of(None) if space.has_documents()
        )

    def is_index_marked_stale(self) -> bool:
        """Whether an index of these files recorded (in ``_meta.json``) that it missed a write."""
        return bool(self.index_stale_marks())

    def index_stale_marks(self) -> dict[str | None, str]:
        """The index-stale marks, by experiment (``None``: a store of no one experiment).

        Read them before a sync reads the files, and give them to
        :meth:`clear_index_stale` once the sync succeeded.
        """
        marks: dict[str | None, str] = {}
        for space in self._spaces_of(None):
            mark = space.index_stale_mark()
            if mark is not None:
                marks[space.experiment_id] = mark
        return marks

    def mark_index_stale(
        self, experiment_ids: Iterable[str] | None = None, *, only_if_unmarked: bool = False
    ) -> dict[str | None, str]:
        """Mark in ``_meta.json`` that an index missed (or may miss) a write of experiments.

        Args:
            experiment_ids: The experiments written; default: every experiment here.
            only_if_unmarked: Leave existing marks as they are (an operation that
                marks while it runs, and clears only its own mark when done).

        Returns:
            The marks set, to clear with :meth:`clear_index_stale`.
        """
        if self._bound is not None:
            spaces = [self._bound]
        elif experiment_ids is None:
            spaces = self._spaces_of(None)
        else:
            spaces = [self._space_for(eid) for eid in set(experiment_ids)]
        marks: dict[str | None, str] = {}
        for space in spaces:
            token = space.mark_index_stale(only_if_unmarked=only_if_unmarked)
            if token is not None:
                marks[space.experiment_id] = token
        return marks

    def clear_index_stale(self, marks: Mapping[str | None, str]) -> None:
        """Clear the marks that are still those of ``marks`` (see :meth:`index_stale_marks`)."""
        for space in self._spaces_of(None):
            seen = marks.get(space.experiment_id)
            if seen is not None:
                space.clear_index_stale(seen)

    def copy_to(self, path: str | os.PathLike[str]) -> FileStore:
        """Copy this store's files to a new directory and open the copy.

        A scoped store becomes a standalone store of its experiment, a collection a
        collection. Hidden files (temp files, locks) are left behind, and the copy
        carries no index-stale marks: no index follows it yet.

        Raises:
            ConfigError: ``path`` exists and is not an empty directory.
        """
        target = Path(path).expanduser().absolute()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ConfigError(
                f"cannot copy the store to {str(target)!r}: it exists and is not an empty "
                "directory; choose a new directory"
            )
        source = self.get_working_directory()
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(".*"), dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            if self._scope() is not None:
                meta = StoreMeta(experiment_id=self._scope())
                atomic_write(target / META_FILE, _codec.STORE_META.encode(meta))
        copy = FileStoreConfig(root=str(target), durable=self._config.durable).connect()
        copy.clear_index_stale(copy.index_stale_marks())
        return copy
