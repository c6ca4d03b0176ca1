"""A FileStore plus a RecordIndex: files for truth, an index for speed.

:class:`IndexedStore` is the storage logic of a store that indexes its files
elsewhere (a :class:`~metalab.store.PostgresStore`); it does not care which database
holds the index, which it reaches only through the :class:`RecordIndex` protocol, and
it never touches a file itself: every write goes to the FileStore first, which hands
back the document it wrote (bytes and file state) for the index; sync and rebuild
read the files through the FileStore's document API.

**When the index cannot be reached**, a write still lands in the files; the store is
marked stale (``index_stale`` in the ``_meta.json`` of the directories written, so
other processes see it when they connect) and one
:class:`~metalab.errors.IndexStaleWarning` is emitted. While the index is stale or
unreachable, reads follow ``on_index_error``: ``"raise"`` an
:class:`~metalab.errors.IndexUnavailableError`, or ``"fallback"`` to reading the files
(with one warning). ``sync_index()`` repairs the index and clears the mark.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeVar

from metalab import _codec
from metalab.errors import (
    ConfigError,
    CorruptRecordError,
    IndexStaleWarning,
    IndexUnavailableError,
    StoreError,
)
from metalab.query import FieldCatalog, Query, RunSummary
from metalab.records import (
    ArtifactDescriptor,
    DerivedMetrics,
    ExperimentManifest,
    JSONValue,
    MetricValue,
    ResultDocument,
    RunRecord,
)
from metalab.series import MetricSeries, SeriesArrays, SeriesPoint
from metalab.store._documents import (
    DOCUMENT_KINDS,
    Document,
    DocumentKey,
    DocumentKind,
    DocumentRef,
)
from metalab.store._file import DocumentScan, FileStore, FileStoreConfig
from metalab.store._index import (
    DEFAULT_BATCH_SIZE,
    IndexErrorPolicy,
    IndexState,
    RecordIndex,
    SyncReport,
)
from metalab.store._intents import Landing
from metalab.store._rules import check_filed_under, notes_change, tags_change, validate_run_id
from metalab.store.abc import ArtifactSource, ProgressCallback

__all__ = ["IndexedStore"]

_log = logging.getLogger(__name__)

T = TypeVar("T")


def _in_two_directories(
    kind: DocumentKind, key: str, first: str | None, second: str | None
) -> StoreError:
    what = {
        "runs": "run",
        "derived": "derived metrics of run",
        "manifests": "manifest",
        "series": "series of run",
    }[kind]
    return StoreError(
        f"{what} {key!r} is in two experiment directories ({first!r} and {second!r}); remove one"
    )


_PROGRESS_EVERY = 256


def same_path(a: str, b: str) -> bool:
    """Whether two paths name one place (a symlink and its target do)."""
    return a == b or os.path.realpath(a) == os.path.realpath(b)


def check_files_exist(state: IndexState, file_root: str, name: str) -> None:
    """Refuse an index whose files are gone (checked before they are opened).

    Opening the files would lay down an empty store where they were, and the index
    would go on answering for runs that no longer have files.

    Raises:
        ConfigError: The index was built from ``file_root``, which does not exist.
    """
    if state.created or not same_path(state.file_root, file_root) or Path(file_root).is_dir():
        return
    raise ConfigError(
        f"{name} was built from the files under {file_root!r}, which do not exist: mount "
        "or restore them there; if they moved, rebuilding the index with their new "
        "file_root indexes them where they are ('metalab store rebuild-index LOCATOR "
        "--file-root-moved')"
    )


def _counted(
    documents: Iterable[Document], total: int, progress: ProgressCallback
) -> Iterator[Document]:
    """Pass ``documents`` through, reporting how many went by."""
    done = 0
    progress(done, total)
    for document in documents:
        yield document
        done += 1
        if done % _PROGRESS_EVERY == 0:
            progress(done, total)
    progress(done, total)


class _Unique:
    """Documents passed through, refusing one key in two experiment directories.

    The index keys runs and derived metrics by run id, and a manifest's file name
    names its experiment, so a key in two directories is a copy by hand. Sized like
    the listing it wraps, so a rebuild can report progress against it.
    """

    def __init__(self, documents: DocumentScan, kind: DocumentKind) -> None:
        self._documents = documents
        self._kind: DocumentKind = kind

    def __len__(self) -> int:
        return len(self._documents)

    def __iter__(self) -> Iterator[Document]:
        seen: dict[str, str | None] = {}
        for doc in self._documents:
            other = seen.setdefault(doc.key, doc.experiment_id)
            if other != doc.experiment_id:
                raise _in_two_directories(self._kind, doc.key, other, doc.experiment_id)
            yield doc


class IndexedStore:
    """The Store contract over a FileStore and its RecordIndex.

    What differs from the contract of :class:`~metalab.store.abc.Store` and its
    capabilities, which the methods follow:

    - Every write goes to the files first, then to the index; a write the index
      misses marks it stale (see the module docstring) and is not an error.
    - Reads that the index can answer (records, derived metrics, manifests,
      experiments, queries, field catalogs) never touch the files; while the index
      is unreachable or stale they raise
      :class:`~metalab.errors.IndexUnavailableError` (``on_index_error="raise"``) or
      read the files (``"fallback"``). Artifacts, logs and structured results live
      only in the files.
    - A store bound to one experiment only ever returns that experiment's
      documents; a closed store raises :class:`~metalab.errors.StoreError`.

    Every method may be called from several threads.

    Args:
        files: The FileStore holding the files (the source of truth).
        index: The index of those files.
        on_index_error: What reads do while the index is unreachable or stale.
        name: How documents read from the index are named in errors
            (``"postgres index 'public'"``).
        stale: Whether the index is known to lag behind the files.
    """

    def __init__(
        self,
        files: FileStore,
        index: RecordIndex,
        *,
        on_index_error: IndexErrorPolicy,
        name: str,
        stale: bool = False,
    ) -> None:
        self._files = files
        self._index = index
        self._policy = on_index_error
        self._name = name
        self._scope = files.experiment_id
        self._lock = threading.Lock()
        self._stale = stale
        self._warned_write = False
        self._warned_read = False
        self._misses = 0
        self._closed = False
        # The root the index was built from, when it is another (see _learn_index_state).
        self._foreign_root: str | None = None

    @property
    def files(self) -> FileStore:
        """The FileStore holding the files (the source of truth)."""
        return self._files

    @property
    def files_config(self) -> FileStoreConfig:
        """The config of the FileStore holding the files."""
        return self._files.config

    @property
    def index(self) -> RecordIndex:
        """The index of the files."""
        return self._index

    def is_index_stale(self) -> bool:
        """Whether the index may lag behind the files (until ``sync_index()``)."""
        return self._stale

    def _learn_index_state(self, state: IndexState | None, *, file_root: str) -> None:
        """Learn, from what opening the index found, whether it lags behind the files.

        An index built from the files of another root stays shut (see
        :attr:`foreign_file_root`) until :meth:`rebuild_index` indexes these files.

        Args:
            state: What the index's ``open()`` reported; ``None`` if it could not be
                reached (the store then reads the files, or raises, by its policy).
            file_root: The files this store indexes.
        """
        if state is None:
            self._stale = True
        elif not same_path(state.file_root, file_root):
            self._foreign_root = state.file_root
            self._stale = True
        else:
            pending = state.needs_sync
            lagging = bool(pending) if self._scope is None else bool(pending & {self._scope, None})
            self._stale = lagging or self._files.is_index_marked_stale()
        if self._stale:
            _log.info("%r: the index lags behind the files; sync_index() updates it", self)

    @property
    def foreign_file_root(self) -> str | None:
        """The root the index was built from, when it is not this store's files.

        Such an index would answer with another root's runs: until
        :meth:`rebuild_index` indexes this store's files (and records their root),
        reads and writes raise ``ConfigError`` and so does :meth:`sync_index`.
        """
        return self._foreign_root

    def _check_index_root(self) -> None:
        if self._foreign_root is None:
            return
        raise ConfigError(
            f"{self._name} was built from the files under {self._foreign_root!r}, not "
            f"{str(self._files.get_working_directory())!r}: give the file_root it was built "
            "from, or another schema for these files; if the files moved here, rebuilding "
            "the index records their new root ('metalab store rebuild-index LOCATOR "
            "--file-root-moved', or store.rebuild_index())"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self!r} is closed; connect again with its config.connect()")

    def _mark_stale(
        self, experiments: Iterable[str] | None, exc: IndexUnavailableError, *, stacklevel: int
    ) -> None:
        """Record that the index missed a write, in memory and in ``_meta.json``.

        Args:
            experiments: The experiments written (``None``: any of the store's).
            exc: Why the index missed it.
            stacklevel: The warning's ``stacklevel`` from here to the user's call.
        """
        with self._lock:
            self._stale = True
            self._misses += 1
            first = not self._warned_write
            self._warned_write = True
        # Marked again on every miss, even if marked before: another process's sync
        # may have cleared the mark since, and a new token keeps a running sync from
        # clearing this one.
        self._files.mark_index_stale(experiments)
        if first:
            _log.warning("%s; the write went to the files and the index is marked stale", exc)
            warnings.warn(
                f"{exc}; the write went to the files, and the index is marked stale "
                "until store.sync_index()",
                IndexStaleWarning,
                stacklevel=stacklevel,
            )

    def _index_landed(
        self,
        landing: Landing,
        *,
        removed: Sequence[DocumentKey] = (),
        experiments: Iterable[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        depth: int = 1,
    ) -> None:
        """Index what a write placed in (or removed from) the files, or mark the miss.

        Called after the file write whether it succeeded or not: what landed before
        a failure is indexed all the same. The write's intents go only once the
        index has the change or the miss is marked in ``_meta.json``; if even
        marking fails, they stay, and are taken for abandoned once this process is
        gone.

        Args:
            landing: The documents placed, and the intents covering them.
            removed: Documents whose files were deleted.
            experiments: The experiments to mark on a miss (default: those of the
                documents placed).
            batch_size: Documents per bulk transaction.
            depth: Frames between the user's call and this one (a warning about a
                miss names the user's line).
        """
        documents = landing.documents
        if not documents and not removed:
            landing.release()
            return
        if experiments is None:
            experiments = {doc.experiment_id for doc in documents if doc.experiment_id} or None
        self._land(
            landing,
            lambda: self._index.write(documents, removed=removed, batch_size=batch_size),
            experiments,
            depth=depth + 1,
        )

    def _land(
        self,
        landing: Landing,
        index: Callable[[], None],
        experiments: Iterable[str] | None,
        *,
        depth: int,
    ) -> None:
        """Run ``index`` (what gives the index a write), or mark the miss; then release.

        See :meth:`_index_landed`; ``depth`` counts the frames from the user's call.
        """
        try:
            index()
        except IndexUnavailableError as exc:
            self._mark_stale(experiments, exc, stacklevel=depth + 3)
        except BaseException:
            # Interrupted, or an error the index did not foresee: the files are ahead.
            self._files.mark_index_stale(experiments)
            landing.release()
            raise
        landing.release()

    def _read(self, from_index: Callable[[], T], from_files: Callable[[], T]) -> T:
        """Answer from the index, or follow ``on_index_error`` when it cannot."""
        self._check_open()
        self._check_index_root()
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
                f"{self._name} is stale (writes reached the files but not the index, or "
                "the index was created after the files); store.sync_index() brings it "
                "up to date"
            )
        )
        if self._policy == "raise":
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

    def _wanted(self, experiment_id: str | None) -> tuple[bool, str | None]:
        """Combine a caller's experiment filter with the store's scope."""
        if experiment_id is None:
            return True, self._scope
        if self._scope is not None and experiment_id != self._scope:
            return False, None
        return True, experiment_id

    def _decode_run(self, doc: bytes, run_id: str) -> RunRecord:
        source = f"{self._name}, run {run_id!r}"
        record = _codec.RUN_RECORD.decode(doc, source=source)
        check_filed_under(record.run_id, run_id, source)
        return record

    def put_run_record(self, record: RunRecord) -> None:
        """Write a record to the files, then index it."""
        self._check_open()
        self._check_index_root()
        landing = Landing()
        try:
            self._files.write_run(record, into=landing)
        finally:
            self._index_landed(landing)

    def put_run_records(
        self, records: Iterable[RunRecord], *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> int:
        """Write records to the files and index them in bulk, ``batch_size`` at a time.

        A batch is checked before any of it is written, so a bad record stores none
        of its batch; one batch is one bulk merge into the index.
        """
        self._check_open()
        self._check_index_root()
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size!r}")
        count = 0
        batch: list[RunRecord] = []
        for record in records:
            batch.append(record)
            if len(batch) == batch_size:
                count += self._put_batch(batch)
                batch = []
        if batch:
            count += self._put_batch(batch)
        return count

    def _put_batch(self, batch: list[RunRecord]) -> int:
        # The FileStore checks the whole batch before it writes any of it; what it
        # placed before a later failure (a corrupt stored record, a full disk) is
        # indexed all the same, so the index never misses a record the files hold.
        landing = Landing()
        try:
            self._files.write_runs(batch, into=landing)
        finally:
            self._index_landed(landing, batch_size=len(batch), depth=2)
        return len(batch)

    def get_run_record(self, run_id: str) -> RunRecord | None:
        """Return a run's record from the index, or ``None``."""
        validate_run_id(run_id)

        def from_index() -> RunRecord | None:
            doc = self._index.get("runs", run_id, self._scope)
            return None if doc is None else self._decode_run(doc, run_id)

        return self._read(from_index, lambda: self._files.get_run_record(run_id))

    def run_exists(self, run_id: str) -> bool:
        """Return whether a record of ``run_id`` is indexed."""
        validate_run_id(run_id)
        return self._read(
            lambda: self._index.get("runs", run_id, self._scope) is not None,
            lambda: self._files.run_exists(run_id),
        )

    def list_run_records(self, experiment_id: str | None = None) -> list[RunRecord]:
        """Return every record (of one experiment, if given), from the index."""
        matches, wanted = self._wanted(experiment_id)
        if not matches:
            self._check_open()
            return []

        def from_index() -> list[RunRecord]:
            decode = self._decode_run
            return [decode(doc, run_id) for run_id, doc in self._index.documents("runs", wanted)]

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
        """Store an artifact in the files."""
        self._check_open()
        return self._files.put_artifact(
            run_id, name, data, kind=kind, format=format, metadata=metadata
        )

    def get_artifact(self, run_id: str, name: str) -> bytes:
        """Return an artifact's bytes, from the files."""
        self._check_open()
        return self._files.get_artifact(run_id, name)

    def open_artifact(self, run_id: str, name: str) -> IO[bytes]:
        """Open an artifact in the files for reading."""
        self._check_open()
        return self._files.open_artifact(run_id, name)

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        """Return the descriptors of a run's artifacts, from the files."""
        self._check_open()
        return self._files.list_artifacts(run_id)

    def put_derived(self, run_id: str, metrics: Mapping[str, MetricValue]) -> None:
        """Write a run's derived metrics to the files, then index them."""
        self._check_open()
        self._check_index_root()
        landing = Landing()
        try:
            self._files.write_derived(run_id, metrics, into=landing)
        finally:
            self._index_landed(landing)

    def set_tags(
        self, run_id: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> RunRecord:
        """Add and remove a run's tags in its record file, then index the record."""
        return self._edit(run_id, tags_change(add, remove))

    def set_notes(self, run_id: str, text: str | None) -> RunRecord:
        """Set (``None``: clear) a run's notes in its record file, then index it."""
        return self._edit(run_id, notes_change(text))

    def _edit(self, run_id: str, change: Callable[[RunRecord], RunRecord]) -> RunRecord:
        self._check_open()
        self._check_index_root()
        landing = Landing()
        indexed = False

        def index_now() -> None:
            # Under the files' lock: edits reach the index in the order they landed.
            nonlocal indexed
            indexed = True
            self._index_landed(landing)

        try:
            return self._files.write_edit(run_id, change, into=landing, after=index_now)
        finally:
            if not indexed:
                self._index_landed(landing)

    def get_derived(self, run_id: str) -> DerivedMetrics | None:
        """Return a run's derived metrics from the index, or ``None``."""
        validate_run_id(run_id)
        source = f"{self._name}, derived metrics of run {run_id!r}"

        def from_index() -> DerivedMetrics | None:
            doc = self._index.get("derived", run_id, self._scope)
            return None if doc is None else _codec.DERIVED.decode(doc, source=source)

        return self._read(from_index, lambda: self._files.get_derived(run_id))

    def list_derived(self, experiment_id: str | None = None) -> dict[str, DerivedMetrics]:
        """Return run id -> derived metrics of an experiment's runs, in one index query."""
        matches, wanted = self._wanted(experiment_id)
        if not matches:
            self._check_open()
            return {}

        def from_index() -> dict[str, DerivedMetrics]:
            decode = _codec.DERIVED.decode
            return {
                run_id: decode(doc, source=f"{self._name}, derived metrics of run {run_id!r}")
                for run_id, doc in self._index.documents("derived", wanted)
            }

        return self._read(from_index, lambda: self._files.list_derived(experiment_id))

    def derived_exists(self, run_id: str) -> bool:
        """Return whether derived metrics of ``run_id`` are indexed."""
        validate_run_id(run_id)
        return self._read(
            lambda: self._index.get("derived", run_id, self._scope) is not None,
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

    def append_series(
        self, run_id: str, points: Sequence[SeriesPoint], *, restart: bool = False
    ) -> None:
        """Append points to a run's series file, then to the index.

        The index takes the appended lines as they are when it holds the file up to
        where they were appended; one that missed an earlier append (it was
        unreachable) indexes the whole file instead.
        """
        self._check_open()
        self._check_index_root()
        landing = Landing()
        experiments = None if self._scope is None else (self._scope,)
        try:
            appended = self._files.write_series(run_id, points, restart=restart, into=landing)
        except BaseException:
            if landing.covering:  # lines may have landed before the failure
                self._files.mark_index_stale(experiments)
            landing.release()
            raise
        if appended.experiment_id is not None:
            experiments = (appended.experiment_id,)

        def index() -> None:
            if self._index.append_series(appended):
                return
            ref = DocumentRef("series", run_id, appended.experiment_id, appended.state)
            self._index.write(list(self._files.read_documents([ref])))

        self._land(landing, index, experiments, depth=1)

    def get_series(self, run_id: str) -> dict[str, MetricSeries]:
        """Return a run's metric series by name, from the index.

        A run without an indexed series file is looked up in the files, where a
        store of metalab 0.1 keeps stepped metrics as structured results.
        """
        validate_run_id(run_id)
        return self.get_series_many([run_id])[run_id]

    def get_series_many(self, run_ids: Sequence[str]) -> dict[str, dict[str, MetricSeries]]:
        """Return the series of several runs (by run id, then name) in one index query."""
        wanted = [validate_run_id(run_id) for run_id in run_ids]
        files = self._files

        def from_index() -> dict[str, dict[str, MetricSeries]]:
            found = self._index.series(wanted, self._scope)
            return {r: found[r] if r in found else files.get_series(r) for r in wanted}

        return self._read(from_index, lambda: {r: files.get_series(r) for r in wanted})

    def get_series_arrays(self, run_ids: Sequence[str]) -> dict[str, dict[str, SeriesArrays]]:
        """The series of several runs as NumPy columns, for frames (needs NumPy).

        Read from the index in one query, without a Python object per point; runs
        without an indexed series file are read from the files (as
        :meth:`get_series_many` does) and converted.
        """
        wanted = [validate_run_id(run_id) for run_id in run_ids]
        files = self._files

        def from_index() -> dict[str, dict[str, SeriesArrays]]:
            found = self._index.series_arrays(wanted, self._scope)
            rest = files.get_series_arrays([r for r in wanted if r not in found])
            return {r: found[r] if r in found else rest[r] for r in wanted}

        return self._read(from_index, lambda: files.get_series_arrays(wanted))

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
        """Write a submission manifest to the files, then index it."""
        self._check_open()
        self._check_index_root()
        landing = Landing()
        try:
            self._files.write_manifest(manifest, into=landing)
        finally:
            self._index_landed(landing)

    def list_experiment_manifests(
        self, experiment_id: str | None = None
    ) -> list[ExperimentManifest]:
        """Return the submission manifests from the index, oldest first."""
        matches, wanted = self._wanted(experiment_id)
        if not matches:
            self._check_open()
            return []
        source = f"{self._name}, manifests"

        def from_index() -> list[ExperimentManifest]:
            decode = _codec.EXPERIMENT_MANIFEST.decode
            return [
                decode(doc, source=source) for _, doc in self._index.documents("manifests", wanted)
            ]

        return self._read(from_index, lambda: self._files.list_experiment_manifests(experiment_id))

    def list_experiments(self) -> list[str]:
        """Return the ids of the experiments in the index (only its own, when scoped)."""
        return self._read(
            lambda: self._index.experiments(self._scope), self._files.list_experiments
        )

    def query_runs(self, query: Query) -> list[RunRecord]:
        """Return the runs matching ``query``, filtered, sorted and windowed by the index."""

        def from_index() -> list[RunRecord]:
            decode = self._decode_run
            return [decode(doc, run_id) for run_id, doc in self._index.query(query, self._scope)]

        return self._read(from_index, lambda: self._files.query_runs(query))

    def summarize_runs(self, experiment_id: str | None = None) -> dict[str, RunSummary]:
        """Return the run counts by status of each experiment, counted by the index alone.

        No record is read: the index answers from its own columns.
        """
        matches, wanted = self._wanted(experiment_id)
        if not matches:
            self._check_open()
            assert experiment_id is not None  # only another experiment than the scope
            return {experiment_id: RunSummary(experiment_id)}
        return self._read(
            lambda: self._index.summary(wanted), lambda: self._files.summarize_runs(wanted)
        )

    def fields(self, experiment_id: str | None = None) -> FieldCatalog:
        """Return the field catalog of an experiment, kept in the index.

        The index recomputes it the first time it is read after writes changed the
        experiment.

        Raises:
            ConfigError: No experiment was given to an unscoped store.
        """
        self._check_open()
        wanted = experiment_id or self._scope
        if wanted is None:
            raise ConfigError(
                "fields() of an unscoped store needs an experiment id; pass fields('my_exp:1.0')"
            )
        found = self._read(lambda: self._index.fields(wanted), lambda: self._files.fields(wanted))
        return FieldCatalog(found, experiment_id=wanted)

    def delete_run(self, run_id: str, *, expected: RunRecord | None = None) -> bool:
        """Delete everything of a run from the files, then from the index.

        An intent covers the run's directory meanwhile, so a process killed in
        between leaves a mark for the next sync, not an index that lists a run the
        files no longer hold.
        """
        self._check_open()
        self._check_index_root()
        files = self._files
        try:
            owner = expected if expected is not None else files.get_run_record(run_id)
        except CorruptRecordError:
            owner = None  # still deleted: which experiment it is in is unknown
        experiments = None if owner is None else (owner.experiment_id,)
        if experiments is None and self._scope is not None:
            experiments = (self._scope,)
        landing = Landing()
        try:
            removed = files.delete_run(run_id, expected=expected, into=landing)
        except BaseException:
            files.mark_index_stale(experiments)  # some files may be gone
            landing.release()
            raise
        if expected is not None and not removed:
            landing.release()
            return False
        gone = [DocumentKey(kind, run_id, self._scope) for kind in ("runs", "derived", "series")]
        self._index_landed(landing, removed=gone, experiments=experiments)
        return removed

    def get_working_directory(self) -> Path:
        """Return the directory holding the files (the collection root for a collection)."""
        return self._files.get_working_directory()

    def rebuild_index(self, progress: ProgressCallback | None = None) -> int:
        """Rebuild the index from the files, atomically.

        The files are read one at a time (memory holds the file names of one kind,
        never the documents) into an index built beside the live one and swapped in
        at once: readers see the old index until then, never an empty or partial
        one, and an interrupted rebuild leaves the old index as it was. A scoped store rebuilds its
        experiment only; an unscoped one the whole index. An index built from the
        files of another root (:attr:`foreign_file_root`: the files moved) is
        rebuilt from this store's files, whose root it records from then on (by an
        unscoped store only).

        Args:
            progress: Called as ``progress(done, total)`` while records are copied.

        Returns:
            The number of run records indexed.

        Raises:
            CorruptRecordError: A file cannot be decoded (nothing is changed).
            StoreError: Two experiment directories hold the same run id (or a
                copy of one manifest).
            IndexUnavailableError: The index cannot be reached.
        """
        self._check_open()
        files = self._files
        new_root = None
        if self._foreign_root is not None:
            new_root = str(files.get_working_directory())
            if self._scope is not None:
                raise ConfigError(
                    f"{self._name} was built from the files under {self._foreign_root!r}: "
                    f"to index those under {new_root!r} instead, rebuild the whole index "
                    "from a store bound to no experiment"
                )
            # The index answers for this root from now on, so the root exists.
            Path(new_root).mkdir(parents=True, exist_ok=True)
        marks, misses = self._before_reading()

        def read(kind: DocumentKind) -> Iterable[Document]:
            # Listed only when the index asks, inside its transaction: a run indexed
            # by a writer after the listing is carried over by the index.
            scan = files.scan_documents(kind)
            # File names are unique in a directory: only a listing of several can hold
            # one key twice.
            return _Unique(scan, kind) if scan.directories > 1 else scan

        count = self._index.rebuild(
            read,
            scope=self._scope,
            experiments=files.experiment_directories(),
            progress=progress,
            file_root=new_root,
        )
        self._foreign_root = None
        self._after_reading(marks, misses)
        return count

    def sync_index(
        self, *, batch_size: int = DEFAULT_BATCH_SIZE, progress: ProgressCallback | None = None
    ) -> SyncReport:
        """Index what changed in the files since they were last indexed.

        New and modified files (by modification time and size) are read and
        indexed, documents whose file is gone are dropped, and the stale mark is
        cleared. A scoped store syncs its experiment only.

        Args:
            batch_size: Documents per bulk transaction.
            progress: Called as ``progress(done, total)`` while changed files are
                indexed (``total`` is ``None`` while the files are listed).

        Returns:
            What was indexed, removed and left as it was.

        Raises:
            CorruptRecordError: A changed file cannot be decoded (nothing of that
                batch is indexed; the stale mark stays).
            IndexUnavailableError: The index cannot be reached (the mark stays).
        """
        self._check_open()
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size!r}")
        self._check_index_root()
        marks, misses = self._before_reading()
        report = self._sync(batch_size, progress)
        self._after_reading(marks, misses)
        return report

    def _sync(self, batch_size: int, progress: ProgressCallback | None) -> SyncReport:
        files = self._files
        changed: list[DocumentRef] = []
        removed: list[DocumentKey] = []
        unchanged = 0
        if progress is not None:
            progress(0, None)
        for kind in DOCUMENT_KINDS:
            # The index first: a document indexed after this is absent here, so it is
            # never taken for one whose file is gone; its file, written before it was
            # indexed, is either listed below (and indexed again, harmlessly) or not.
            indexed = self._index.states(kind, self._scope)
            on_disk: dict[str, DocumentRef] = {}
            for ref in files.document_states(kind):
                other = on_disk.setdefault(ref.key, ref)
                if other is not ref:
                    raise _in_two_directories(kind, ref.key, other.experiment_id, ref.experiment_id)
            for key, ref in on_disk.items():
                if indexed.get(key) == ref.state:
                    unchanged += 1
                else:
                    changed.append(ref)
            gone = indexed.keys() - on_disk.keys()
            removed.extend(DocumentKey(kind, key, self._scope) for key in gone)
        documents = files.read_documents(changed)
        self._index.write(
            documents if progress is None else _counted(documents, len(changed), progress),
            removed=removed,
            synced=(self._scope, files.experiment_directories()),
            batch_size=batch_size,
        )
        return SyncReport(indexed=len(changed), removed=len(removed), unchanged=unchanged)

    def _before_reading(self) -> tuple[dict[str | None, str], int]:
        """The stale marks and misses a sync or rebuild will cover, taken before it reads.

        A writer that marks after this wrote its file after too, so the sync may not
        have seen it: its mark stays (see :meth:`_after_reading`). One that marked
        before wrote its file before the sync reads the files.
        """
        with self._lock:
            misses = self._misses
        return self._files.index_stale_marks(), misses

    def _after_reading(self, marks: dict[str | None, str], misses: int) -> None:
        """Clear the marks a successful sync or rebuild covered, and only those.

        A sync that fails or is killed clears nothing, so the files keep saying that
        the index lags behind them.
        """
        self._files.clear_index_stale(marks)
        with self._lock:
            if self._misses == misses:
                self._stale = False

    def close(self) -> None:
        """Close the index and the files; calling it again does nothing."""
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
