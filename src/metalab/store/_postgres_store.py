"""PostgresStore: the FileStore (the source of truth) plus a PostgresIndex (the speed).

Every write goes to the files first and then to the index; reads that the index can
answer (records, derived metrics, manifests, experiments) never touch the files.
Artifacts, logs and structured results live only in the files and are delegated to
the FileStore. The index can always be rebuilt from the files
(:meth:`PostgresStore.rebuild_index`) or brought up to date with what changed in them
(:meth:`PostgresStore.sync_index`).

**When the index cannot be reached**, a write still lands in the files; the store is
marked stale (``index_stale`` in the ``_meta.json`` of the directories written, so
other processes see it when they connect) and one
:class:`~metalab.errors.IndexStaleWarning` is emitted. While the index is stale or
unreachable, reads follow the config's ``on_index_error``: ``"raise"`` an
:class:`~metalab.errors.IndexUnavailableError`, or ``"fallback"`` to reading the files
(with one warning). ``sync_index()`` repairs the index and clears the mark.
"""

# Hot paths work on str paths with os functions, like the FileStore's.
# ruff: noqa: PTH116

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, NamedTuple, Protocol, Self, TypeVar

import msgspec

from metalab import _codec
from metalab.errors import (
    ConfigError,
    CorruptRecordError,
    ExperimentMismatchError,
    IndexStaleWarning,
    IndexUnavailableError,
    StoreError,
)
from metalab.query import FieldInfo, Query
from metalab.records import (
    ArtifactDescriptor,
    DerivedMetrics,
    ExperimentManifest,
    JSONValue,
    MetricValue,
    ResultDocument,
    RunRecord,
    Status,
    StoreMeta,
    Timestamp,
)
from metalab.store._atomic import atomic_write
from metalab.store._file import FileStore, FileStoreConfig
from metalab.store._layout import (
    FileStoreLayout,
    manifest_file_name,
    safe_experiment_id,
    validate_run_id,
)
from metalab.store._postgres_config import PostgresStoreConfig
from metalab.store._postgres_index import (
    DEFAULT_BATCH_SIZE,
    DerivedRow,
    IndexState,
    JsonbBinary,
    ManifestRow,
    PostgresIndex,
    RunRow,
)
from metalab.store.abc import ArtifactSource, ProgressCallback
from metalab.store.locator import parse_locator

__all__ = ["PostgresStore", "RecordIndex", "SyncReport"]

_log = logging.getLogger(__name__)

T = TypeVar("T")
_READ_FLAGS: Final = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_ENCODER: Final = msgspec.json.Encoder()
# What the codec writes today; older documents (metalab 0.1) are upgraded and
# re-encoded before they are indexed, so the index reads every document fast.
_CURRENT_PREFIX: Final = b'{"schema_version":%d,' % _codec.CURRENT_VERSION
_NUL_ESCAPE: Final = b"\\u0000"
_REPLACEMENT_ESCAPE: Final = b"\\ufffd"


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`PostgresStore.sync_index` did.

    Attributes:
        indexed: Documents (records, derived metrics, manifests) that were new or
            changed in the files and were (re)indexed.
        removed: Documents whose file is gone and that were dropped from the index.
        unchanged: Documents whose file had not changed since it was indexed.
    """

    indexed: int = 0
    removed: int = 0
    unchanged: int = 0


class RecordIndex(Protocol):
    """What a PostgresStore needs from its index (implemented by :class:`PostgresIndex`).

    ``experiment_id`` arguments restrict a lookup to one experiment; ``None``
    means every experiment. Documents go in and come out as the codec's bytes.
    Every method raises :class:`~metalab.errors.IndexUnavailableError` when the
    index cannot be reached.
    """

    @property
    def redacted_conninfo(self) -> str:
        """Where the index is, with any password hidden."""
        ...

    def open(self) -> None:
        """Connect."""
        ...

    def close(self) -> None:
        """Disconnect; idempotent."""
        ...

    def ensure_schema(self, *, force: bool = True) -> IndexState:
        """Create the tables if missing and report the index's state."""
        ...

    def put_run(self, row: RunRow) -> None:
        """Index one run (a running row never replaces a finished one)."""
        ...

    def put_runs(self, rows: Iterable[RunRow], *, batch_size: int = ...) -> int:
        """Index many runs."""
        ...

    def get_run_doc(self, run_id: str, experiment_id: str | None) -> bytes | None:
        """Return a run's document, or ``None``."""
        ...

    def run_exists(self, run_id: str, experiment_id: str | None) -> bool:
        """Return whether a run is indexed."""
        ...

    def list_run_docs(self, experiment_id: str | None) -> list[tuple[str, bytes]]:
        """Return ``(run_id, document)`` of every run."""
        ...

    def delete_run(self, run_id: str, experiment_id: str | None) -> None:
        """Forget a run and its derived metrics."""
        ...

    def put_derived(self, row: DerivedRow) -> None:
        """Index a run's derived metrics."""
        ...

    def get_derived_doc(self, run_id: str, experiment_id: str | None) -> bytes | None:
        """Return a run's derived-metrics document, or ``None``."""
        ...

    def list_derived_docs(self, experiment_id: str | None) -> list[tuple[str, bytes]]:
        """Return ``(run_id, derived-metrics document)`` of one experiment (or all)."""
        ...

    def put_manifest(self, row: ManifestRow) -> None:
        """Index a submission manifest."""
        ...

    def list_manifest_docs(self, experiment_id: str | None) -> list[bytes]:
        """Return manifest documents, oldest first."""
        ...

    def list_experiments(self, experiment_id: str | None = None) -> list[str]:
        """Return the indexed experiments, sorted."""
        ...

    def query_run_docs(self, query: Query, experiment_id: str | None) -> list[tuple[str, bytes]]:
        """Return ``(run_id, document)`` of the runs matching a query, in its order."""
        ...

    def field_catalog(self, experiment_id: str) -> list[FieldInfo]:
        """Return an experiment's field catalog."""
        ...

    def file_states(
        self, kind: str, experiment_id: str | None
    ) -> dict[str, tuple[int | None, int | None]]:
        """Return ``key -> (mtime ns, size)`` of the files the documents came from."""
        ...

    def apply_sync(
        self,
        *,
        runs: Iterable[RunRow],
        derived: Iterable[DerivedRow],
        manifests: Iterable[ManifestRow],
        removed: dict[str, list[tuple[str, str | None]]],
        scope: str | None,
        experiments: Iterable[str],
        batch_size: int = ...,
    ) -> None:
        """Index changed documents and forget deleted ones."""
        ...

    def rebuild(
        self,
        *,
        runs: Iterable[RunRow],
        derived: Iterable[DerivedRow],
        manifests: Iterable[ManifestRow],
        experiments: Callable[[], Iterable[str]],
        scope: str | None,
        total: int | None,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Replace the index (or one experiment's part) atomically."""
        ...


class _Source(NamedTuple):
    """One directory of documents and the experiment it belongs to (if known)."""

    layout: FileStoreLayout
    experiment_id: str | None


class _FileState(NamedTuple):
    path: str
    mtime_ns: int
    size: int
    experiment_id: str | None


def _json_fragment(value: Mapping[str, object]) -> JsonbBinary:
    r"""Encode params or metrics as standard JSON that ``jsonb`` accepts.

    Non-finite floats are escaped as the codec escapes them; ``\\u0000``, which
    ``jsonb`` refuses, becomes U+FFFD (only in this query copy: the document keeps
    the exact value).
    """
    data = _ENCODER.encode(value)
    if b"null" in data or b"$" in data:
        data = _ENCODER.encode(_codec.escape_json(msgspec.to_builtins(value)))
    if _NUL_ESCAPE in data:
        data = data.replace(_NUL_ESCAPE, _REPLACEMENT_ESCAPE)
    return JsonbBinary.from_json(data)


def _read_file(path: str) -> tuple[bytes, int, int] | None:
    """Return a file's bytes, mtime (ns) and size, or ``None`` if it does not exist."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    try:
        stat = os.fstat(fd)
        data = os.read(fd, stat.st_size + 1)
        if len(data) != stat.st_size:
            # Changed since fstat (or a short read): read on to the end.
            parts = [data]
            while chunk := os.read(fd, 1 << 20):
                parts.append(chunk)
            data = b"".join(parts)
    finally:
        os.close(fd)
    return data, stat.st_mtime_ns, stat.st_size


def _stat(path: str, expected_size: int) -> tuple[int | None, int | None]:
    """The file's (mtime ns, size) if it holds ``expected_size`` bytes, else unknown.

    A size that differs means another writer (or the never-backwards rule) put other
    content there; leaving the state unknown makes the next sync read the file.
    """
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None, None
    if stat.st_size != expected_size:
        return None, None
    return stat.st_mtime_ns, stat.st_size


def _json_names(directory: str) -> list[str]:
    try:
        with os.scandir(directory) as entries:
            return [e.name for e in entries if e.name.endswith(".json") and e.name[0] != "."]
    except FileNotFoundError:
        return []


def _stat_documents(directory: str, experiment_id: str | None) -> dict[str, _FileState]:
    """``key -> state`` of every document in ``directory`` (the key is the file stem)."""
    states: dict[str, _FileState] = {}
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if not name.endswith(".json") or name[0] == ".":
                    continue
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                states[name[:-5]] = _FileState(
                    entry.path, stat.st_mtime_ns, stat.st_size, experiment_id
                )
    except FileNotFoundError:
        pass
    return states


def _has_documents(layout: FileStoreLayout) -> bool:
    return any(
        _json_names(str(d)) for d in (layout.runs_dir, layout.derived_dir, layout.experiments_dir)
    )


def _pending_experiments(file_root: str) -> frozenset[str | None]:
    """The experiments under ``file_root`` that already have documents.

    Called when the index tables are created: those experiments need a sync before
    the index can answer for them. ``None`` stands for a standalone store that is
    bound to no experiment.
    """
    config = FileStoreConfig(root=file_root)
    with config.connect() as files:
        if files.mode != "collection":
            pending = {files.experiment_id} if _has_documents(files.layout) else set()
            return frozenset(pending)
        found: set[str | None] = set()
        for experiment_id in files.list_experiments():
            with config.for_experiment(experiment_id).connect() as child:
                if _has_documents(child.layout):
                    found.add(experiment_id)
        return frozenset(found)


def _query_tags(tags: tuple[str, ...]) -> list[str]:
    """Tags for the ``text[]`` column, which cannot hold NUL (the document keeps it)."""
    return [t.replace("\x00", "\ufffd") if "\x00" in t else t for t in tags]


class _IndexedRunFields(msgspec.Struct, frozen=True, gc=False, tag_field="schema_version", tag=1):
    """The fields of a current-version run record that the index extracts.

    Decoding only these (params and metrics kept as their raw JSON text) is several
    times faster than decoding whole records, which matters when a rebuild reads
    every file. The rest of the document is parsed, so it must be well-formed JSON,
    but not validated: a record that is wrong elsewhere is indexed as it is and
    raises ``CorruptRecordError`` when read, from the index as from the files.
    """

    run_id: str
    experiment_id: str
    status: Status
    started_at: Timestamp
    finished_at: Timestamp | None = None
    duration_ms: float | None = None
    tags: tuple[str, ...] = ()
    params: msgspec.Raw = msgspec.Raw(b"{}")
    metrics: msgspec.Raw = msgspec.Raw(b"{}")


class _IndexedDerivedFields(
    msgspec.Struct, frozen=True, gc=False, tag_field="schema_version", tag=1
):
    """The metrics of a current-version derived-metrics document, as raw JSON text."""

    metrics: msgspec.Raw = msgspec.Raw(b"{}")


_decode_indexed_run: Final = msgspec.json.Decoder(_IndexedRunFields).decode
_decode_indexed_derived: Final = msgspec.json.Decoder(_IndexedDerivedFields).decode


def _raw_jsonb(raw: msgspec.Raw) -> JsonbBinary | None:
    """The raw JSON of an object as ``jsonb``, or ``None`` if it is not an object."""
    text = bytes(raw)
    if text[:1] != b"{":
        return None
    if _NUL_ESCAPE in text:
        text = text.replace(_NUL_ESCAPE, _REPLACEMENT_ESCAPE)
    return JsonbBinary.from_json(text)


def _indexed_run(data: bytes, state: tuple[int | None, int | None]) -> RunRow | None:
    """The row of a document the codec wrote (current version), or ``None`` to decode it fully.

    The raw JSON of params and metrics is what the codec wrote, non-finite floats
    already escaped, so it goes to ``jsonb`` as it is.
    """
    if not data.startswith(_CURRENT_PREFIX):
        return None
    try:
        fields = _decode_indexed_run(data)
    except msgspec.DecodeError:
        return None
    params, metrics = _raw_jsonb(fields.params), _raw_jsonb(fields.metrics)
    if params is None or metrics is None:
        return None
    return RunRow(
        fields.run_id,
        fields.experiment_id,
        fields.status,
        fields.started_at,
        fields.finished_at,
        fields.duration_ms,
        _query_tags(fields.tags),
        params,
        metrics,
        data,
        state[0],
        state[1],
    )


def _indexed_metrics(data: bytes) -> JsonbBinary | None:
    """The metrics of a current-version derived document, or ``None`` to decode it fully."""
    if not data.startswith(_CURRENT_PREFIX):
        return None
    try:
        return _raw_jsonb(_decode_indexed_derived(data).metrics)
    except msgspec.DecodeError:
        return None


def _run_row(record: RunRecord, doc: bytes, state: tuple[int | None, int | None]) -> RunRow:
    return RunRow(
        run_id=record.run_id,
        experiment_id=record.experiment_id,
        status=record.status,
        started_at=record.started_at,
        finished_at=record.finished_at,
        duration_ms=record.duration_ms,
        tags=_query_tags(record.tags),
        params=_json_fragment(record.params),
        metrics=_json_fragment(record.metrics),
        doc=doc,
        file_mtime_ns=state[0],
        file_size=state[1],
    )


def _derived_row(
    run_id: str,
    experiment_id: str | None,
    derived: DerivedMetrics,
    doc: bytes,
    state: tuple[int | None, int | None],
) -> DerivedRow:
    return DerivedRow(
        run_id=run_id,
        experiment_id=experiment_id,
        metrics=_json_fragment(derived.metrics),
        doc=doc,
        file_mtime_ns=state[0],
        file_size=state[1],
    )


def _manifest_row(
    name: str, manifest: ExperimentManifest, doc: bytes, state: tuple[int | None, int | None]
) -> ManifestRow:
    return ManifestRow(
        experiment_id=manifest.experiment_id,
        name=name,
        submitted_at=manifest.submitted_at,
        doc=doc,
        file_mtime_ns=state[0],
        file_size=state[1],
    )


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    if size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {size!r}")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class PostgresStore:
    """A FileStore whose records are also indexed in PostgreSQL.

    Implements :class:`~metalab.store.abc.Store` and every capability of the
    FileStore (working directory, logs, structured results, experiment manifests,
    experiments, artifact streaming, bulk put, delete) plus ``SupportsIndexRebuild``
    and ``SupportsIndexSync``. Connect it with
    :meth:`PostgresStoreConfig.connect() <metalab.store.PostgresStoreConfig.connect>`
    or wrap an existing FileStore with :meth:`from_filestore`.

    A store scoped to one experiment only ever returns that experiment's runs.
    Every method may be called from several threads.

    Args:
        config: The config the store was opened with.
        files: The FileStore holding the files (the source of truth).
        index: The index of those files.
        stale: Whether the index is known to lag behind the files.
    """

    def __init__(
        self,
        config: PostgresStoreConfig,
        files: FileStore,
        index: RecordIndex,
        *,
        stale: bool = False,
    ) -> None:
        self._config = config
        self._files = files
        self._index = index
        self._filter = files.experiment_id
        self._lock = threading.Lock()
        self._stale = stale
        self._warned_write = False
        self._warned_read = False
        self._marked: set[str] = set()
        self._layouts: dict[str, FileStoreLayout] = {}
        self._closed = False

    @classmethod
    def open(cls, config: PostgresStoreConfig, files: FileStore | None = None) -> Self:
        """Open the files and the index of ``config`` (what ``config.connect()`` does).

        Args:
            config: The store's config.
            files: An open FileStore on ``config.file_root`` to use instead of
                opening one.

        Raises:
            IndexUnavailableError: The server cannot be reached and
                ``config.on_index_error`` is ``"raise"``.
            ExperimentMismatchError: The experiment directory belongs to another
                experiment.
        """
        if files is None:
            files = FileStoreConfig(
                root=config.file_root, experiment_id=config.experiment_id
            ).connect()
        index = PostgresIndex(
            config.connection_string,
            schema=config.schema,
            min_size=config.pool_min_size,
            max_size=config.pool_max_size,
            connect_timeout=config.connect_timeout,
            pool_timeout=config.pool_timeout,
            file_root=config.file_root,
            pending_on_create=functools.partial(_pending_experiments, config.file_root),
        )
        store = cls(config, files, index)
        try:
            index.open()
            state = index.ensure_schema()
        except IndexUnavailableError as exc:
            if config.on_index_error == "raise":
                store.close()
                raise
            _log.warning("%s; reading from the files until sync_index() succeeds", exc)
            store._stale = True
        except BaseException:
            store.close()
            raise
        else:
            if state.file_root != config.file_root:
                _log.warning(
                    "index schema %r was created for the files under %r, not %r; "
                    "use a schema per file root (?schema=...)",
                    config.schema,
                    state.file_root,
                    config.file_root,
                )
            store._stale = store._needs_sync(state) or store._marked_on_disk()
        if store._stale:
            _log.info("%r: the index lags behind the files; sync_index() updates it", store)
        return store

    @classmethod
    def from_filestore(
        cls,
        url: str | PostgresStoreConfig,
        filestore: FileStore,
        *,
        rebuild: bool = True,
        **options: Any,
    ) -> PostgresStore:
        """Index an existing FileStore (scoped, standalone or a whole collection).

        Args:
            url: A ``postgresql://`` locator (``file_root`` may be left out; if
                given it must be the FileStore's root) or a config.
            filestore: The FileStore to wrap; it becomes the store's files.
            rebuild: Index its existing records now (``rebuild_index()``).
            **options: Other :class:`PostgresStoreConfig` fields (``schema``, ...).

        Raises:
            ConfigError: ``url`` names another file root or is not a Postgres locator.
            IndexUnavailableError: The server cannot be reached.
        """
        root = filestore.config.root
        fields: dict[str, Any] = {"experiment_id": filestore.config.experiment_id, **options}
        if isinstance(url, PostgresStoreConfig):
            config = dataclasses.replace(url, **fields)
        else:
            info = parse_locator(url)
            if "file_root" not in info.params:
                fields.setdefault("file_root", root)
            config = PostgresStoreConfig.from_locator(info, **fields)
        if config.file_root != root:
            raise ConfigError(
                f"the locator's file_root {config.file_root!r} is not the FileStore's root "
                f"{root!r}; leave file_root out of the locator"
            )
        store = cls.open(config, files=filestore)
        if rebuild:
            try:
                store.rebuild_index()
            except BaseException:
                store.close()
                raise
        return store

    def to_filestore(self, path: str | os.PathLike[str]) -> FileStore:
        """Copy this store's files to a new directory and open them as a FileStore.

        A scoped store becomes a standalone store of its experiment, a collection
        a collection. Only the files are copied (they hold everything).

        Raises:
            ConfigError: ``path`` exists and is not an empty directory.
        """
        target = Path(path).expanduser().absolute()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ConfigError(
                f"cannot export to {str(target)!r}: it exists and is not an empty directory; "
                "choose a new directory"
            )
        source = self._files.get_working_directory()
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(".*"), dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            if self._files.experiment_id is not None:
                meta = StoreMeta(experiment_id=self._files.experiment_id)
                atomic_write(target / "_meta.json", _codec.STORE_META.encode(meta))
        for meta_path in [target / "_meta.json", *target.glob("*/_meta.json")]:
            _set_meta_flag(meta_path, stale=False)
        return FileStoreConfig(root=str(target)).connect()

    @property
    def config(self) -> PostgresStoreConfig:
        """The config this store was opened with."""
        return self._config

    @property
    def files(self) -> FileStore:
        """The FileStore holding the files (the source of truth)."""
        return self._files

    @property
    def files_config(self) -> FileStoreConfig:
        """The config of :attr:`files` (:class:`~metalab.store.abc.SupportsIndexedFiles`)."""
        return self._files.config

    @property
    def index(self) -> RecordIndex:
        """The index of the files."""
        return self._index

    def __repr__(self) -> str:
        return (
            f"PostgresStore({self._config.redacted_connection_string!r}, "
            f"schema={self._config.schema!r}, file_root={self._config.file_root!r}, "
            f"experiment_id={self._config.experiment_id!r})"
        )

    def __getstate__(self) -> object:
        raise TypeError(
            "a PostgresStore holds a connection pool and cannot be pickled; "
            "pickle its config (store.config) and connect() again"
        )

    def is_index_stale(self) -> bool:
        """Whether the index may lag behind the files (until ``sync_index()``)."""
        return self._stale

    def _needs_sync(self, state: IndexState) -> bool:
        if self._filter is None:
            return bool(state.needs_sync)
        return self._filter in state.needs_sync or None in state.needs_sync

    def _sources(self) -> list[_Source]:
        """The directories whose documents this store indexes."""
        if self._files.mode != "collection":
            return [_Source(self._files.layout, self._files.experiment_id)]
        config = self._files.config
        sources = []
        for experiment_id in self._files.list_experiments():
            with config.for_experiment(experiment_id).connect() as child:
                sources.append(_Source(child.layout, experiment_id))
        return sources

    def _layout_for(self, experiment_id: str) -> FileStoreLayout:
        """The directory a record of ``experiment_id`` is written to."""
        if self._files.mode != "collection":
            return self._files.layout
        layout = self._layouts.get(experiment_id)
        if layout is None:
            directory = Path(self._files.config.root) / safe_experiment_id(experiment_id)
            layout = self._layouts[experiment_id] = FileStoreLayout(directory)
        return layout

    def _marked_on_disk(self) -> bool:
        for source in self._sources():
            meta = _read_meta(source.layout.meta_path)
            if meta is not None and meta.index_stale:
                return True
        return False

    def _mark_stale(self, experiments: Iterable[str] | None, exc: IndexUnavailableError) -> None:
        """Record that the index missed a write, in memory and in ``_meta.json``."""
        if experiments is None or self._files.mode != "collection":
            layouts = [s.layout for s in self._sources()]
        else:
            layouts = [self._layout_for(e) for e in set(experiments)]
        with self._lock:
            self._stale = True
            first = not self._warned_write
            self._warned_write = True
            todo = [layout for layout in layouts if str(layout.directory) not in self._marked]
            self._marked.update(str(layout.directory) for layout in todo)
        for layout in todo:
            _set_meta_flag(layout.meta_path, stale=True, durable=self._files.config.durable)
        if first:
            _log.warning("%s; the write went to the files and the index is marked stale", exc)
            warnings.warn(
                f"{exc}; the write went to the files, and the index is marked stale "
                "until store.sync_index()",
                IndexStaleWarning,
                stacklevel=4,
            )

    def _write_index(self, write: Callable[[], object], experiments: Iterable[str] | None) -> None:
        try:
            write()
        except IndexUnavailableError as exc:
            self._mark_stale(experiments, exc)

    def _read(self, from_index: Callable[[], T], from_files: Callable[[], T]) -> T:
        """Answer from the index, or follow ``on_index_error`` when it cannot."""
        self._check_open()
        if not self._stale:
            try:
                return from_index()
            except IndexUnavailableError as exc:
                return self._fall_back(from_files, exc)
        return self._fall_back(from_files, None)

    def _fall_back(self, from_files: Callable[[], T], exc: IndexUnavailableError | None) -> T:
        problem = (
            str(exc)
            if exc is not None
            else (
                f"the postgres index at {self._index.redacted_conninfo!r} is stale "
                "(writes reached the files but not the index, or the index was created "
                "after the files); store.sync_index() brings it up to date"
            )
        )
        if self._config.on_index_error == "raise":
            if exc is not None:
                raise exc
            raise IndexUnavailableError(problem)
        with self._lock:
            first = not self._warned_read
            self._warned_read = True
        if first:
            warnings.warn(
                f"{problem}; reading from the files instead (on_index_error='fallback')",
                IndexStaleWarning,
                stacklevel=4,
            )
        return from_files()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self!r} is closed; connect again with its config.connect()")

    def _check_experiment(self, experiment_id: str) -> None:
        if self._filter is not None and experiment_id != self._filter:
            raise ExperimentMismatchError(
                str(self._files.layout.directory), experiment_id, self._filter
            )

    def _query_filter(self, experiment_id: str | None) -> tuple[bool, str | None]:
        """Combine a caller's experiment filter with the store's scope."""
        if experiment_id is None:
            return True, self._filter
        if self._filter is not None and experiment_id != self._filter:
            return False, None
        return True, experiment_id

    def _decode_run(self, doc: bytes, run_id: str) -> RunRecord:
        source = f"postgres index {self._config.schema!r}.runs, run {run_id!r}"
        record = _codec.RUN_RECORD.decode(doc, source=source)
        if record.run_id != run_id:
            raise CorruptRecordError(source, f"the document holds run {record.run_id!r}")
        return record

    def put_run_record(self, record: RunRecord) -> None:
        """Write a record to the files, then index it.

        A ``running`` record never replaces a finished one, in the files or in the
        index. If the index cannot be reached the record is still written; see the
        module docstring.

        Raises:
            ConfigError: The run id cannot be a file name.
            ValueError: A timestamp of the record is naive.
            ExperimentMismatchError: The record belongs to another experiment than
                this scoped store.
        """
        self._check_open()
        self._files.put_run_record(record)
        doc = _codec.RUN_RECORD.encode(record)
        path = str(self._layout_for(record.experiment_id).run_path(record.run_id))
        row = _run_row(record, doc, _stat(path, len(doc)))
        self._write_index(lambda: self._index.put_run(row), (record.experiment_id,))

    def put_run_records(
        self, records: Iterable[RunRecord], *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> int:
        """Write many records to the files and index them with ``COPY``, batch by batch.

        Each batch is validated and encoded before any of it is written, so a bad
        record stores none of its batch. Records are streamed: an iterator of any
        length is fine.

        Args:
            records: The records, with the same rules as :meth:`put_run_record`.
            batch_size: Records per batch (one file chunk and one index merge).

        Returns:
            How many records were stored.
        """
        self._check_open()
        count = 0
        for batch in _batched(records, batch_size):
            for record in batch:
                validate_run_id(record.run_id)
                self._check_experiment(record.experiment_id)
            docs = [_codec.RUN_RECORD.encode(record) for record in batch]
            self._files.put_run_records(batch)
            rows = [
                _run_row(
                    record,
                    doc,
                    _stat(
                        str(self._layout_for(record.experiment_id).run_path(record.run_id)),
                        len(doc),
                    ),
                )
                for record, doc in zip(batch, docs, strict=True)
            ]
            self._write_index(
                functools.partial(self._index.put_runs, rows, batch_size=len(rows)),
                {record.experiment_id for record in batch},
            )
            count += len(batch)
        return count

    def get_run_record(self, run_id: str) -> RunRecord | None:
        """Return a run's record from the index, or ``None`` if there is none.

        Raises:
            ConfigError: The run id is invalid.
            CorruptRecordError: The stored document cannot be decoded.
            IndexUnavailableError: The index is unreachable or stale and
                ``on_index_error`` is ``"raise"``.
        """
        validate_run_id(run_id)

        def from_index() -> RunRecord | None:
            doc = self._index.get_run_doc(run_id, self._filter)
            return None if doc is None else self._decode_run(doc, run_id)

        return self._read(from_index, lambda: self._files.get_run_record(run_id))

    def run_exists(self, run_id: str) -> bool:
        """Return whether a record of ``run_id`` is indexed (see :meth:`get_run_record`)."""
        validate_run_id(run_id)
        return self._read(
            lambda: self._index.run_exists(run_id, self._filter),
            lambda: self._files.run_exists(run_id),
        )

    def list_run_records(self, experiment_id: str | None = None) -> list[RunRecord]:
        """Return every record (of one experiment, if given) from the index.

        Raises:
            CorruptRecordError: A stored document cannot be decoded.
            IndexUnavailableError: The index is unreachable or stale and
                ``on_index_error`` is ``"raise"``.
        """
        matches, wanted = self._query_filter(experiment_id)
        if not matches:
            self._check_open()
            return []

        def from_index() -> list[RunRecord]:
            decode = self._decode_run
            return [decode(doc, run_id) for run_id, doc in self._index.list_run_docs(wanted)]

        return self._read(from_index, lambda: self._files.list_run_records(experiment_id))

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
        """Store an artifact in the files (see :meth:`FileStore.put_artifact`)."""
        self._check_open()
        return self._files.put_artifact(
            run_id, name, data, kind=kind, format=format, metadata=metadata
        )

    def get_artifact(self, run_id: str, name: str) -> bytes:
        """Return an artifact's bytes from the files.

        Raises:
            ArtifactNotFoundError: The run has no such artifact.
        """
        self._check_open()
        return self._files.get_artifact(run_id, name)

    def open_artifact(self, run_id: str, name: str) -> IO[bytes]:
        """Open an artifact in the files for binary reading.

        Raises:
            ArtifactNotFoundError: The run has no such artifact.
        """
        self._check_open()
        return self._files.open_artifact(run_id, name)

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        """Return the descriptors of a run's artifacts, from the files."""
        self._check_open()
        return self._files.list_artifacts(run_id)

    def put_derived(self, run_id: str, metrics: Mapping[str, MetricValue]) -> None:
        """Write a run's derived metrics to the files, then index them."""
        self._check_open()
        self._files.put_derived(run_id, metrics)
        derived = DerivedMetrics(metrics=dict(metrics))
        doc = _codec.DERIVED.encode(derived)
        state: tuple[int | None, int | None] = (None, None)
        experiment_id: str | None = None
        # In a collection the FileStore found the run's experiment; the index
        # looks it up itself, and the next sync reads the file to learn its state.
        if self._files.mode != "collection":
            experiment_id = self._filter
            state = _stat(str(self._files.layout.derived_path(run_id)), len(doc))
        row = _derived_row(run_id, experiment_id, derived, doc, state)
        self._write_index(lambda: self._index.put_derived(row), None)

    def get_derived(self, run_id: str) -> DerivedMetrics | None:
        """Return a run's derived metrics from the index, or ``None``.

        Raises:
            CorruptRecordError: The stored document cannot be decoded.
            IndexUnavailableError: See :meth:`get_run_record`.
        """
        validate_run_id(run_id)
        source = f"postgres index {self._config.schema!r}.derived, run {run_id!r}"

        def from_index() -> DerivedMetrics | None:
            doc = self._index.get_derived_doc(run_id, self._filter)
            return None if doc is None else _codec.DERIVED.decode(doc, source=source)

        return self._read(from_index, lambda: self._files.get_derived(run_id))

    def list_derived(self, experiment_id: str | None = None) -> dict[str, DerivedMetrics]:
        """Return run id -> derived metrics of every indexed run that has them, in one query.

        Raises:
            CorruptRecordError: A stored document cannot be decoded.
            IndexUnavailableError: See :meth:`get_run_record`.
        """
        matches, wanted = self._query_filter(experiment_id)
        if not matches:
            self._check_open()
            return {}
        table = f"postgres index {self._config.schema!r}.derived"

        def from_index() -> dict[str, DerivedMetrics]:
            decode = _codec.DERIVED.decode
            return {
                run_id: decode(doc, source=f"{table}, run {run_id!r}")
                for run_id, doc in self._index.list_derived_docs(wanted)
            }

        return self._read(from_index, lambda: self._files.list_derived(experiment_id))

    def derived_exists(self, run_id: str) -> bool:
        """Return whether derived metrics of ``run_id`` are indexed."""
        validate_run_id(run_id)
        return self._read(
            lambda: self._index.get_derived_doc(run_id, self._filter) is not None,
            lambda: self._files.derived_exists(run_id),
        )

    def put_log(self, run_id: str, name: str, text: str) -> None:
        """Store (replace) a log in the files."""
        self._check_open()
        self._files.put_log(run_id, name, text)

    def get_log(self, run_id: str, name: str) -> str | None:
        """Return a log's text from the files, or ``None``."""
        self._check_open()
        return self._files.get_log(run_id, name)

    def list_logs(self, run_id: str) -> list[str]:
        """Return the names of a run's logs, from the files."""
        self._check_open()
        return self._files.list_logs(run_id)

    def log_path(self, run_id: str, name: str) -> Path:
        """Return the file a log is streamed to."""
        self._check_open()
        return self._files.log_path(run_id, name)

    def put_result(self, run_id: str, name: str, result: ResultDocument) -> None:
        """Store (replace) a structured result in the files."""
        self._check_open()
        self._files.put_result(run_id, name, result)

    def get_result(self, run_id: str, name: str) -> ResultDocument | None:
        """Return a structured result from the files, or ``None``."""
        self._check_open()
        return self._files.get_result(run_id, name)

    def list_results(self, run_id: str) -> list[str]:
        """Return the names of a run's structured results, from the files."""
        self._check_open()
        return self._files.list_results(run_id)

    def put_experiment_manifest(self, manifest: ExperimentManifest) -> None:
        """Write a submission manifest to the files, then index it.

        Raises:
            ExperimentMismatchError: The manifest belongs to another experiment
                than this scoped store.
        """
        self._check_open()
        self._files.put_experiment_manifest(manifest)
        doc = _codec.EXPERIMENT_MANIFEST.encode(manifest)
        layout = self._layout_for(manifest.experiment_id)
        name, state = _find_manifest(
            str(layout.experiments_dir),
            manifest_file_name(manifest.experiment_id, manifest.submitted_at),
            doc,
        )
        row = _manifest_row(name, manifest, doc, state)
        self._write_index(lambda: self._index.put_manifest(row), (manifest.experiment_id,))

    def list_experiment_manifests(
        self, experiment_id: str | None = None
    ) -> list[ExperimentManifest]:
        """Return the submission manifests from the index, oldest first."""
        matches, wanted = self._query_filter(experiment_id)
        if not matches:
            self._check_open()
            return []
        source = f"postgres index {self._config.schema!r}.manifests"

        def from_index() -> list[ExperimentManifest]:
            decode = _codec.EXPERIMENT_MANIFEST.decode
            return [decode(doc, source=source) for doc in self._index.list_manifest_docs(wanted)]

        return self._read(from_index, lambda: self._files.list_experiment_manifests(experiment_id))

    def list_experiments(self) -> list[str]:
        """Return the ids of the experiments in the index (only its own, when scoped)."""
        return self._read(
            lambda: self._index.list_experiments(self._filter),
            self._files.list_experiments,
        )

    def query_runs(self, query: Query) -> list[RunRecord]:
        """Return the runs matching ``query``, filtered, sorted and windowed in SQL.

        A scoped store only ever returns its own experiment's runs.

        Raises:
            CorruptRecordError: A stored document cannot be decoded.
            IndexUnavailableError: See :meth:`get_run_record`.
        """

        def from_index() -> list[RunRecord]:
            decode = self._decode_run
            docs = self._index.query_run_docs(query, self._filter)
            return [decode(doc, run_id) for run_id, doc in docs]

        return self._read(from_index, lambda: self._files.query_runs(query))

    def fields(self, experiment_id: str | None = None) -> list[FieldInfo]:
        """Return the field catalog of an experiment, kept in the index.

        The catalog is recomputed in the database the first time it is read after
        writes changed the experiment.

        Args:
            experiment_id: The experiment; defaults to the store's own.

        Raises:
            ConfigError: No experiment was given to an unscoped store.
            IndexUnavailableError: See :meth:`get_run_record`.
        """
        self._check_open()
        wanted = experiment_id or self._filter
        if wanted is None:
            raise ConfigError(
                "fields() of an unscoped store needs an experiment id; pass fields('my_exp:1.0')"
            )
        return self._read(
            lambda: self._index.field_catalog(wanted), lambda: self._files.fields(wanted)
        )

    def delete_run(self, run_id: str) -> bool:
        """Delete everything of a run from the files, then from the index.

        Returns:
            Whether the files held anything of the run.
        """
        self._check_open()
        removed = self._files.delete_run(run_id)
        experiments = None if self._filter is None else (self._filter,)
        self._write_index(lambda: self._index.delete_run(run_id, self._filter), experiments)
        return removed

    def get_working_directory(self) -> Path:
        """Return the directory holding the files (the collection root for a collection)."""
        return self._files.get_working_directory()

    def rebuild_index(self, progress: ProgressCallback | None = None) -> int:
        """Rebuild the index from the files, atomically.

        The files are streamed (memory does not grow with the number of runs) into
        tables beside the live index, which are swapped in within one transaction:
        readers see the old index until then, never an empty or partial one, and an
        interrupted rebuild leaves the old index as it was. A scoped store rebuilds
        its experiment only; an unscoped one the whole index.

        Args:
            progress: Called as ``progress(done, total)`` while records are copied.

        Returns:
            The number of run records indexed.

        Raises:
            CorruptRecordError: A file cannot be decoded (nothing is changed).
            StoreError: Two experiment directories hold the same run id.
            IndexUnavailableError: The index cannot be reached.
        """
        self._check_open()
        sources = self._sources()
        marked = self._clear_marks(sources)
        try:
            self._index.ensure_schema()
            listings = [(s, _json_names(str(s.layout.runs_dir))) for s in sources]
            experiments: set[str] = set()
            count = self._index.rebuild(
                runs=self._scan_runs(listings, experiments),
                derived=self._scan_derived(sources),
                manifests=self._scan_manifests(sources, experiments),
                experiments=lambda: (
                    experiments | {s.experiment_id for s in sources if s.experiment_id}
                ),
                scope=self._config.experiment_id,
                total=sum(len(names) for _, names in listings),
                progress=progress,
            )
        except BaseException:
            self._restore_marks(marked)
            raise
        with self._lock:
            self._stale = False
        return count

    def sync_index(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> SyncReport:
        """Index what changed in the files since they were last indexed.

        New and modified files (by modification time and size) are read and
        indexed, documents whose file is gone are dropped, and the stale mark is
        cleared. A scoped store syncs its experiment only.

        Args:
            batch_size: Rows per ``COPY`` + merge transaction.

        Returns:
            What was indexed, removed and left as it was.

        Raises:
            CorruptRecordError: A changed file cannot be decoded (nothing of that
                batch is indexed; the stale mark stays).
            IndexUnavailableError: The index cannot be reached.
        """
        self._check_open()
        sources = self._sources()
        marked = self._clear_marks(sources)
        try:
            self._index.ensure_schema()
            report = self._sync(sources, batch_size)
        except BaseException:
            self._restore_marks(marked)
            raise
        with self._lock:
            self._stale = False
        return report

    def _sync(self, sources: list[_Source], batch_size: int) -> SyncReport:
        scope = self._config.experiment_id
        index_filter = self._filter if scope is None else scope
        removed: dict[str, list[tuple[str, str | None]]] = {}
        changed: dict[str, list[_FileState]] = {}
        unchanged = 0
        subdirs: dict[str, Callable[[FileStoreLayout], Path]] = {
            "runs": lambda layout: layout.runs_dir,
            "derived": lambda layout: layout.derived_dir,
            "manifests": lambda layout: layout.experiments_dir,
        }
        for kind, subdir in subdirs.items():
            files: dict[str, _FileState] = {}
            for source in sources:
                found = _stat_documents(str(subdir(source.layout)), source.experiment_id)
                clash = files.keys() & found.keys()
                if clash and kind != "manifests":
                    key = min(clash)
                    raise StoreError(
                        f"run {key!r} is in two experiment directories "
                        f"({files[key].path!r} and {found[key].path!r}); remove one"
                    )
                files.update(found)
            indexed = self._index.file_states(kind, index_filter)
            changed[kind] = [
                state
                for key, state in files.items()
                if indexed.get(key) != (state.mtime_ns, state.size)
            ]
            unchanged += len(files) - len(changed[kind])
            removed[kind] = [(key, index_filter) for key in indexed.keys() - files.keys()]
        experiments = {s.experiment_id for s in sources if s.experiment_id is not None}
        self._index.apply_sync(
            runs=self._read_runs(changed["runs"], experiments),
            derived=self._read_derived(changed["derived"]),
            manifests=self._read_manifests(changed["manifests"], experiments),
            removed=removed,
            scope=scope,
            experiments=experiments,
            batch_size=batch_size,
        )
        return SyncReport(
            indexed=sum(len(v) for v in changed.values()),
            removed=sum(len(v) for v in removed.values()),
            unchanged=unchanged,
        )

    def _clear_marks(self, sources: list[_Source]) -> list[Path]:
        """Clear the stale marks before a rebuild or sync reads the files.

        Clearing first is what makes it safe against concurrent writers: a writer
        that marks a directory after this will be seen by the next sync, and one
        that marked it before wrote its file before the scan reads it.
        """
        cleared = []
        durable = self._files.config.durable
        for source in sources:
            if _set_meta_flag(source.layout.meta_path, stale=False, durable=durable):
                cleared.append(source.layout.meta_path)
        with self._lock:
            self._marked.clear()
        return cleared

    def _restore_marks(self, paths: list[Path]) -> None:
        durable = self._files.config.durable
        for path in paths:
            _set_meta_flag(path, stale=True, durable=durable)

    def _scan_runs(
        self, listings: list[tuple[_Source, list[str]]], experiments: set[str]
    ) -> Iterator[RunRow]:
        # File names are unique within a directory: only several directories (a
        # collection) can hold one run twice, so only then are the ids remembered.
        seen: dict[str, str] | None = {} if len(listings) > 1 else None
        for source, names in listings:
            directory = str(source.layout.runs_dir)
            for name in names:
                path = f"{directory}/{name}"
                row = self._read_run(path, name[:-5], experiments)
                if row is None:
                    continue
                if seen is not None:
                    other = seen.setdefault(row.run_id, directory)
                    if other != directory:
                        raise StoreError(
                            f"run {row.run_id!r} is in two experiment directories "
                            f"({other!r} and {directory!r}); remove one"
                        )
                yield row

    def _read_run(self, path: str, run_id: str, experiments: set[str]) -> RunRow | None:
        found = _read_file(path)
        if found is None:
            return None  # deleted since it was listed
        data, mtime, size = found
        row = _indexed_run(data, (mtime, size))
        if row is None:
            record = _codec.RUN_RECORD.decode(data, source=path)
            doc = data if data.startswith(_CURRENT_PREFIX) else _codec.RUN_RECORD.encode(record)
            row = _run_row(record, doc, (mtime, size))
        if row.run_id != run_id:
            raise CorruptRecordError(path, f"the file holds run {row.run_id!r}")
        experiments.add(row.experiment_id)
        return row

    def _read_runs(self, states: list[_FileState], experiments: set[str]) -> Iterator[RunRow]:
        for state in states:
            row = self._read_run(state.path, Path(state.path).stem, experiments)
            if row is not None:
                yield row

    def _scan_derived(self, sources: list[_Source]) -> Iterator[DerivedRow]:
        for source in sources:
            directory = str(source.layout.derived_dir)
            for name in _json_names(directory):
                row = _read_derived(f"{directory}/{name}", source.experiment_id)
                if row is not None:
                    yield row

    def _read_derived(self, states: list[_FileState]) -> Iterator[DerivedRow]:
        for state in states:
            row = _read_derived(state.path, state.experiment_id)
            if row is not None:
                yield row

    def _scan_manifests(
        self, sources: list[_Source], experiments: set[str]
    ) -> Iterator[ManifestRow]:
        for source in sources:
            directory = str(source.layout.experiments_dir)
            for name in _json_names(directory):
                row = _read_manifest(f"{directory}/{name}", experiments)
                if row is not None:
                    yield row

    def _read_manifests(
        self, states: list[_FileState], experiments: set[str]
    ) -> Iterator[ManifestRow]:
        for state in states:
            row = _read_manifest(state.path, experiments)
            if row is not None:
                yield row

    def close(self) -> None:
        """Close the connection pool and the files; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self._index.close()
        finally:
            self._files.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _read_derived(path: str, experiment_id: str | None) -> DerivedRow | None:
    found = _read_file(path)
    if found is None:
        return None
    data, mtime, size = found
    run_id = validate_run_id(path.rpartition("/")[2][:-5])
    metrics = _indexed_metrics(data)
    if metrics is not None:
        return DerivedRow(run_id, experiment_id, metrics, data, mtime, size)
    derived = _codec.DERIVED.decode(data, source=path)
    doc = data if data.startswith(_CURRENT_PREFIX) else _codec.DERIVED.encode(derived)
    return _derived_row(run_id, experiment_id, derived, doc, (mtime, size))


def _read_manifest(path: str, experiments: set[str]) -> ManifestRow | None:
    found = _read_file(path)
    if found is None:
        return None
    data, mtime, size = found
    manifest = _codec.EXPERIMENT_MANIFEST.decode(data, source=path)
    experiments.add(manifest.experiment_id)
    doc = data if data.startswith(_CURRENT_PREFIX) else _codec.EXPERIMENT_MANIFEST.encode(manifest)
    return _manifest_row(Path(path).stem, manifest, doc, (mtime, size))


def _find_manifest(
    directory: str, base: str, doc: bytes
) -> tuple[str, tuple[int | None, int | None]]:
    """Find which file the FileStore wrote a manifest to (``base`` or ``base_N``)."""
    for name in sorted(_json_names(directory)):
        stem = name[:-5]
        if stem != base and not (stem.startswith(base + "_") and stem[len(base) + 1 :].isdigit()):
            continue
        found = _read_file(f"{directory}/{name}")
        if found is not None and found[0] == doc:
            return stem, (found[1], found[2])
    return base, (None, None)


def _read_meta(path: Path) -> StoreMeta | None:
    found = _read_file(str(path))
    if found is None:
        return None
    return _codec.STORE_META.decode(found[0], source=str(path))


def _set_meta_flag(path: Path, *, stale: bool, durable: bool = False) -> bool:
    """Set ``index_stale`` in a ``_meta.json`` if it exists; return whether it changed."""
    meta = _read_meta(path)
    if meta is None or meta.index_stale == stale:
        return False
    updated = msgspec.structs.replace(meta, index_stale=stale)
    atomic_write(path, _codec.STORE_META.encode(updated), durable=durable)
    return True
