"""One store directory: the documents of one experiment (or of a standalone store).

A :class:`StoreDirectory` reads and writes the layout of :mod:`metalab.store._layout`
inside one directory; it knows nothing of other experiments (routing between the
directories of a collection is :class:`~metalab.store.FileStore`'s). Writes are atomic
(:mod:`metalab.store._fileio`), reads never create anything, and the writes that an
index follows (records, derived metrics, manifests) return the
:class:`~metalab.store._documents.Document` they produced, with its file state.
"""

# Hot paths work on str paths with os functions: a Path object per file costs more
# than the system call it wraps.
# ruff: noqa: PTH105, PTH108, PTH120

from __future__ import annotations

import functools
import heapq
import itertools
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Final

import msgspec

from metalab import _codec
from metalab.errors import (
    ConfigError,
    CorruptRecordError,
    ExperimentMismatchError,
    StoreError,
)
from metalab.query import Query
from metalab.records import (
    ArtifactDescriptor,
    DerivedMetrics,
    ExperimentManifest,
    JSONValue,
    MetricValue,
    ResultDocument,
    RunRecord,
    StoreMeta,
    utc_now,
)
from metalab.series import MetricSeries, SeriesArrays, SeriesPoint
from metalab.store._artifacts import Artifacts
from metalab.store._documents import (
    Document,
    DocumentKind,
    DocumentRef,
    FileState,
    SeriesAppend,
)
from metalab.store._fileio import (
    FileKey,
    StoreLock,
    atomic_write,
    discard,
    exists,
    file_keys,
    fsync_directory,
    link_into_place,
    list_names,
    read_bytes,
    read_with_key,
    read_with_state,
    remove_file,
    remove_tree,
    replace_into,
    stat_entries,
    stat_key,
    write_temp,
    write_temp_with_state,
)
from metalab.store._frame_cache import CACHE_NAME as FRAME_CACHE
from metalab.store._frame_cache import directory_key, is_stale, read_cached, write_cached
from metalab.store._intents import Landing, abandoned_intents
from metalab.store._layout import FileStoreLayout, manifest_file_name
from metalab.store._query_cache import QUERY_CACHE_NAME, cached_answer, cached_queries, store_answer
from metalab.store._records_snapshot import SNAPSHOT_NAME as RECORDS_SNAPSHOT
from metalab.store._records_snapshot import (
    Kind,
    SnapshotCheck,
    SnapshotWriter,
    check_snapshot,
    open_snapshot,
    write_part,
)
from metalab.store._rules import (
    REFUSABLE,
    check_filed_under,
    check_scope,
    must_read_stored,
    to_place,
    validate_run_id,
)
from metalab.store._series_file import (
    SeriesScan,
    decode_series,
    encode_header,
    encode_points,
    legacy_series_points,
)
from metalab.store._series_snapshot import (
    SNAPSHOT_NAME,
    encodable,
    encode_arrays,
    encode_snapshot,
    read_snapshot,
)
from metalab.store.abc import ArtifactSource

__all__ = ["ErrorHandler", "Keys", "StoreDirectory", "read_meta"]

ErrorHandler = Callable[[CorruptRecordError], None]

_SCAN_BATCH: Final = 256
_SNAPSHOT_KINDS: Final[tuple[Kind, ...]] = ("runs", "derived")
_SNAPSHOT_PARTS: Final[dict[DocumentKind, Kind]] = {"runs": "runs", "derived": "derived"}
_FROM_SNAPSHOT: Final = 4096
"""Documents asked for at once from which ``read_documents`` reads the records snapshot."""


def read_meta(path: Path) -> StoreMeta | None:
    """Return the ``_meta.json`` at ``path``, or ``None`` if there is none.

    Raises:
        ConfigError: The directory meant to hold it is a file.
        CorruptRecordError: It cannot be decoded.
    """
    try:
        data = read_bytes(str(path))
    except NotADirectoryError as exc:
        raise ConfigError(
            f"store path {str(path.parent)!r} is not a directory; "
            "give the directory that holds (or will hold) the store"
        ) from exc
    if data is None:
        return None
    return _codec.STORE_META.decode(data, source=str(path))


def _cut(pack: str) -> Iterator[str]:
    """The keys of a pack, one at a time."""
    start = 0
    while (end := pack.find("\n", start)) >= 0:
        yield pack[start:end]
        start = end + 1
    yield pack[start:]


class Keys:
    """Document keys packed into a few strings of 4,096 keys each, in listing order.

    A million 64-character keys take 65 MB this way, against 121 MB as a list of
    strings (each ``str`` costs 49 bytes besides its characters, and the list a
    pointer): a rebuild holds a kind's keys while it reads them. Iterating unpacks
    one pack at a time. metalab never names a file with a newline; a key holding one
    (a file another program put there) is kept aside as it is.
    """

    _PACK: Final = 4096

    def __init__(self) -> None:
        self._packs: list[str] = []
        self._pending: list[str] = []
        self._aside: list[str] = []
        self._count = 0

    def add(self, key: str) -> None:
        """Append a key."""
        self._count += 1
        if "\n" in key:
            self._aside.append(key)
            return
        self._pending.append(key)
        if len(self._pending) == self._PACK:
            self._packs.append("\n".join(self._pending))
            self._pending = []

    def __len__(self) -> int:
        return self._count

    def ordered(self) -> Iterator[str]:
        """The keys in sorted order (those held aside, with a newline, last).

        Each pack is sorted in place, then the packs are merged as they are cut:
        memory holds a key per pack, never all of them as strings.
        """
        for i, pack in enumerate(self._packs):
            self._packs[i] = "\n".join(sorted(pack.split("\n")))
        self._pending.sort()
        merged = heapq.merge(*map(_cut, self._packs), list(self._pending))
        return itertools.chain(merged, list(self._aside))

    def __iter__(self) -> Iterator[str]:
        for pack in self._packs:
            yield from pack.split("\n")
        yield from self._pending
        yield from self._aside


class StoreDirectory:
    """The documents of one store directory.

    Args:
        directory: The directory (it need not exist until the first write).
        experiment_id: The experiment it belongs to; ``None`` for a standalone store
            bound to no experiment (it then takes records of any experiment).
        durable: fsync every written file and its directory.

    **Concurrency.** Every write is a temp file moved into place, so readers never see
    a torn file. A record that a stored one may refuse (:data:`_rules.REFUSABLE`)
    is placed with an exclusive link when no record exists yet; otherwise the
    directory's one lock (``.lock``, held only around a rename) orders it against
    other writers, so a record never moves backwards, also with many processes
    writing the same run.
    """

    def __init__(self, directory: Path, experiment_id: str | None, *, durable: bool) -> None:
        self._experiment_id = experiment_id
        self._durable = durable
        self._layout = FileStoreLayout(directory)
        self._dir = str(directory)
        self._runs = str(self._layout.runs_dir)
        self._derived = str(self._layout.derived_dir)
        self._records_snapshot = f"{self._dir}/{RECORDS_SNAPSHOT}"
        self._ready = False
        self._lock = StoreLock(self._layout.lock_path)
        self._artifacts = Artifacts(self._layout, self._lock, durable=durable)

    @property
    def experiment_id(self) -> str | None:
        """The experiment the directory belongs to (``None``: a store of no one experiment)."""
        return self._experiment_id

    @property
    def layout(self) -> FileStoreLayout:
        """The paths inside the directory."""
        return self._layout

    def close(self) -> None:
        """Release the lock file's descriptor."""
        self._lock.close()

    def prepare(self) -> None:
        """Lay down the skeleton and ``_meta.json`` before the first write."""
        if self._ready:
            return
        self._layout.ensure_skeleton(durable=self._durable)
        if self._experiment_id is not None:
            meta = StoreMeta(experiment_id=self._experiment_id, created_at=utc_now())
            meta_path = str(self._layout.meta_path)
            if self._create_new(meta_path, _codec.STORE_META.encode(meta)) is None:
                found = read_meta(self._layout.meta_path)
                if found is None or found.experiment_id != self._experiment_id:
                    raise ExperimentMismatchError(
                        self._dir, self._experiment_id, found.experiment_id if found else None
                    )
        self._ready = True

    def _create_new(self, target: str, data: bytes) -> FileState | None:
        """Move ``data`` into ``target`` only if nothing is there; its state if it was."""
        directory = os.path.dirname(target)
        tmp, state = write_temp_with_state(directory, data, durable=self._durable)
        try:
            placed = link_into_place(tmp, target)
            if placed is None:
                with self._lock:
                    placed = not exists(target)
                    if placed:
                        os.replace(tmp, target)
            if not placed:
                os.unlink(tmp)
        except BaseException:
            discard(tmp)
            raise
        if placed and self._durable:
            fsync_directory(directory)
        return state if placed else None

    def _place_record(
        self,
        tmp: str,
        target: str,
        record: RunRecord,
        placed: tuple[bytes, FileState | None],
        *,
        locked: bool,
    ) -> tuple[bytes, FileState | None] | None:
        """Move a record's temp file into place unless the stored record wins.

        Returns the bytes placed and their file state (``None`` if not known), which
        differ from ``placed`` when the stored record carried edits that the new one
        keeps (:func:`~metalab.store._rules.keep_edits`); ``None`` if the stored
        record was kept.
        """
        if record.status in REFUSABLE and link_into_place(tmp, target):
            return placed  # nothing was there
        if locked:
            return self._replace_checked(tmp, target, record, placed)
        with self._lock:
            return self._replace_checked(tmp, target, record, placed)

    def _replace_checked(
        self, tmp: str, target: str, record: RunRecord, placed: tuple[bytes, FileState | None]
    ) -> tuple[bytes, FileState | None] | None:
        """Replace the stored record (under the lock) by the rules of ``_rules``."""
        data = read_bytes(target)
        if data is not None and must_read_stored(record.status, data):
            # A stored record that cannot be read raises rather than being replaced:
            # it may be a finished record written by a newer metalab.
            kept = to_place(record, _codec.RUN_RECORD.decode(data, source=target))
            if kept is None:
                os.unlink(tmp)
                return None
            if kept is not record:
                os.unlink(tmp)
                encoded = _codec.RUN_RECORD.encode(kept)
                tmp, state = write_temp_with_state(
                    os.path.dirname(target), encoded, durable=self._durable
                )
                placed = (encoded, state)
        os.replace(tmp, target)
        return placed

    def edit_run(
        self,
        run_id: str,
        change: Callable[[RunRecord], RunRecord],
        into: Landing | None = None,
        after: Callable[[], None] | None = None,
    ) -> RunRecord:
        """Replace a run's record by ``change(stored)``, atomically under the lock.

        Every writer of a finished record takes the same lock, so two edits, or an
        edit and the runner finishing the run, never lose one another. ``after`` runs
        before the lock is released, once ``into`` holds the document (an index
        learns of edits in the order they were made).

        Raises:
            StoreError: There is no record of ``run_id``.
        """
        validate_run_id(run_id)
        target = f"{self._runs}/{run_id}.json"
        with self._lock:
            stored = self.get_run_record(run_id)
            if stored is None:
                raise StoreError(f"no run {run_id!r} in {self._dir!r} to edit")
            changed = change(stored)
            data = _codec.RUN_RECORD.encode(changed)
            if into is not None:
                into.cover(self._dir)
            tmp, state = write_temp_with_state(self._runs, data, durable=self._durable)
            try:
                os.replace(tmp, target)
            except BaseException:
                discard(tmp)
                raise
            if self._durable:
                fsync_directory(self._runs)
            if into is not None:
                into.add(Document("runs", run_id, self._experiment_id, data, state, target))
            if after is not None:
                after()
        return changed

    def _check_record(self, record: RunRecord) -> str:
        run_id = validate_run_id(record.run_id)
        check_scope(self._experiment_id, record.experiment_id, self._dir)
        return run_id

    def write_run(self, record: RunRecord, into: Landing | None = None) -> Document | None:
        """Store a record atomically and return it as written.

        Args:
            record: The record.
            into: The landing of an indexed write: it is covered by an intent before
                the record is placed, and given the document after.

        Returns:
            The document, or ``None`` if the stored record was kept (a record never
            moves backwards).

        Raises:
            ConfigError: The run id cannot be a file name.
            ExperimentMismatchError: The record belongs to another experiment.
            CorruptRecordError: A record that may be refused meets a stored record
                that cannot be decoded (it is left untouched).
        """
        landing = Landing() if into is None else into
        before = len(landing.documents)
        self._put_run(record, landing)
        return landing.documents[-1] if len(landing.documents) > before else None

    def put_run_record(self, record: RunRecord) -> None:
        """Store a record atomically (see :meth:`write_run`)."""
        self._put_run(record, None)

    def _put_run(self, record: RunRecord, into: Landing | None) -> None:
        run_id = validate_run_id(record.run_id)
        check_scope(self._experiment_id, record.experiment_id, self._dir)
        if not self._ready:
            self.prepare()
        data = _codec.RUN_RECORD.encode(record)
        runs = self._runs
        target = f"{runs}/{run_id}.json"
        state: FileState | None = None
        if into is None:
            tmp = write_temp(runs, data, durable=self._durable)
        else:
            tmp, state = write_temp_with_state(runs, data, durable=self._durable)
        try:
            if into is not None:
                into.cover(self._dir)
            placed = self._place_record(tmp, target, record, (data, state), locked=False)
        except BaseException:
            discard(tmp)
            raise
        if self._durable:
            fsync_directory(runs)
        if placed is not None and into is not None and placed[1] is not None:
            into.add(Document("runs", run_id, self._experiment_id, placed[0], placed[1], target))

    def write_runs(
        self, records: Sequence[RunRecord], into: Landing | None = None
    ) -> list[Document]:
        """Store many records with the rules of :meth:`write_run`; return those placed.

        Every record is validated and encoded before any is written; the temp files
        are written outside the lock, which is then taken once to move them all into
        place (with ``durable``, the directory is fsynced once).

        Args:
            records: The records.
            into: The landing of an indexed write (see :meth:`write_run`); each
                placed document is added as soon as it is placed, so that a caller
                knows what landed even when a later record fails.
        """
        landing = Landing() if into is None else into
        before = len(landing.documents)
        self._write_many(records, landing)
        return landing.documents[before:]

    def put_run_records(self, records: Sequence[RunRecord]) -> int:
        """Store many records (see :meth:`write_runs`); return how many were given."""
        self._write_many(records, None)
        return len(records)

    def _write_many(self, records: Sequence[RunRecord], into: Landing | None) -> None:
        for record in records:
            self._check_record(record)
        if not records:
            return
        if not self._ready:
            self.prepare()
        encoded = [_codec.RUN_RECORD.encode(record) for record in records]
        runs = self._runs
        eid = self._experiment_id
        durable = self._durable
        temps: list[str] = []
        states: list[FileState] = []
        done = 0
        try:
            if into is None:
                temps.extend(write_temp(runs, data, durable=durable) for data in encoded)
            else:
                for data in encoded:
                    tmp, state = write_temp_with_state(runs, data, durable=durable)
                    temps.append(tmp)
                    states.append(state)
                into.cover(self._dir)
            with self._lock:
                for i, (record, tmp) in enumerate(zip(records, temps, strict=True)):
                    target = f"{runs}/{record.run_id}.json"
                    known = states[i] if states else None
                    placed = self._place_record(
                        tmp, target, record, (encoded[i], known), locked=True
                    )
                    done += 1
                    if placed is not None and into is not None and placed[1] is not None:
                        into.add(Document("runs", record.run_id, eid, placed[0], placed[1], target))
        finally:
            for tmp in temps[done:]:
                discard(tmp)
        if durable:
            fsync_directory(runs)

    def get_run_record(self, run_id: str) -> RunRecord | None:
        """Return the record of ``run_id``, or ``None`` if there is none.

        Raises:
            ConfigError: The run id cannot be a file name.
            CorruptRecordError: The stored record cannot be decoded or holds another run.
        """
        validate_run_id(run_id)
        path = f"{self._runs}/{run_id}.json"
        data = read_bytes(path)
        if data is None:
            return None
        record = _codec.RUN_RECORD.decode(data, source=path)
        check_filed_under(record.run_id, run_id, path)
        return record

    def run_exists(self, run_id: str) -> bool:
        """Return whether a record of ``run_id`` is stored."""
        validate_run_id(run_id)
        return exists(f"{self._runs}/{run_id}.json")

    def list_run_records(self, experiment_id: str | None = None) -> list[RunRecord]:
        """Return every record (of one experiment, if given)."""
        return list(self.iter_run_records(experiment_id))

    def iter_run_records(
        self,
        experiment_id: str | None = None,
        *,
        batch_size: int = _SCAN_BATCH,
        on_error: ErrorHandler | None = None,
    ) -> Iterator[RunRecord]:
        """Stream the records (of one experiment, if given), ``batch_size`` files at a time.

        Reading in a helper thread while this one decodes was measured slower on
        CPython 3.11 (every finished read waits for the decoding thread to drop the
        GIL), so reads and decodes alternate in one thread.
        """
        if experiment_id is not None and self._experiment_id not in (None, experiment_id):
            return
        snapshot = open_snapshot(self._records_snapshot)
        if snapshot is None:
            names = list_names(self._runs, ".json")
        else:
            with snapshot:
                current = file_keys(self._runs, ".json")
                for name, record in snapshot.runs(current):
                    del current[name]
                    if experiment_id is None or record.experiment_id == experiment_id:
                        yield record
            names = [f"{name}.json" for name in current]
        yield from self._read_records(names, experiment_id, batch_size, on_error)

    def _read_records(
        self,
        names: list[str],
        experiment_id: str | None,
        batch_size: int,
        on_error: ErrorHandler | None,
    ) -> Iterator[RunRecord]:
        """Read and decode the record files ``names`` of ``runs/``, ``batch_size`` at a time."""
        directory = self._runs
        decode = _codec.RUN_RECORD.decode
        for start in range(0, len(names), batch_size):
            batch = names[start : start + batch_size]
            contents = [read_bytes(f"{directory}/{name}") for name in batch]
            for name, data in zip(batch, contents, strict=True):
                if data is None:
                    continue  # deleted since it was listed: no longer a record
                path = f"{directory}/{name}"
                try:
                    record = decode(data, source=path)
                    check_filed_under(record.run_id, name[:-5], path)
                except CorruptRecordError as exc:
                    if on_error is None:
                        raise
                    on_error(exc)
                    continue
                if experiment_id is None or record.experiment_id == experiment_id:
                    yield record

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
        """Store an artifact (see :meth:`Artifacts.put_artifact`)."""
        self.prepare()
        return self._artifacts.put_artifact(
            run_id, name, data, kind=kind, format=format, metadata=metadata
        )

    def open_artifact(self, run_id: str, name: str) -> IO[bytes]:
        """Open an artifact for binary reading (see :meth:`Artifacts.open_artifact`)."""
        return self._artifacts.open_artifact(run_id, name)

    def get_artifact(self, run_id: str, name: str) -> bytes:
        """Return an artifact's bytes."""
        return self._artifacts.get_artifact(run_id, name)

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        """Return the descriptors in a run's manifest (empty if it has none)."""
        return self._artifacts.list_artifacts(run_id)

    def write_derived(
        self, run_id: str, metrics: Mapping[str, MetricValue], into: Landing | None = None
    ) -> Document:
        """Store (replace) the derived metrics of a run and return them as written.

        Args:
            run_id: The run.
            metrics: The metrics.
            into: The landing of an indexed write (see :meth:`write_run`).
        """
        validate_run_id(run_id)
        if not self._ready:
            self.prepare()
        data = _codec.DERIVED.encode(DerivedMetrics(metrics=dict(metrics)))
        target = f"{self._derived}/{run_id}.json"
        tmp, state = write_temp_with_state(self._derived, data, durable=self._durable)
        if into is not None:
            try:
                into.cover(self._dir)
            except BaseException:
                discard(tmp)
                raise
        replace_into(tmp, target, durable=self._durable)
        document = Document("derived", run_id, self._experiment_id, data, state, target)
        if into is not None:
            into.add(document)
        return document

    def put_derived(self, run_id: str, metrics: Mapping[str, MetricValue]) -> None:
        """Store (replace) the derived metrics of a run."""
        self.write_derived(run_id, metrics)

    def get_derived(self, run_id: str) -> DerivedMetrics | None:
        """Return the derived metrics of a run, or ``None`` if there are none."""
        validate_run_id(run_id)
        path = f"{self._derived}/{run_id}.json"
        data = read_bytes(path)
        return None if data is None else _codec.DERIVED.decode(data, source=path)

    def derived_exists(self, run_id: str) -> bool:
        """Return whether derived metrics of ``run_id`` are stored."""
        validate_run_id(run_id)
        return exists(f"{self._derived}/{run_id}.json")

    def list_derived(self, experiment_id: str | None = None) -> dict[str, DerivedMetrics]:
        """Return run id -> derived metrics of every run (of one experiment) that has them."""
        if experiment_id is not None and self._experiment_id not in (None, experiment_id):
            return {}
        wanted: set[str] | None = None
        if experiment_id is not None and self._experiment_id is None:
            # Derived documents do not name their experiment; the run records do.
            wanted = {r.run_id for r in self.iter_run_records(experiment_id)}
        found: dict[str, DerivedMetrics] = {}
        snapshot = open_snapshot(self._records_snapshot)
        if snapshot is None:
            run_ids = [name[:-5] for name in list_names(self._derived, ".json")]
        else:
            with snapshot:
                current = file_keys(self._derived, ".json")
                for run_id, document in snapshot.derived(current):
                    del current[run_id]
                    if wanted is None or run_id in wanted:
                        found[run_id] = document
            run_ids = list(current)
        decode = _codec.DERIVED.decode
        for run_id in run_ids:
            if wanted is not None and run_id not in wanted:
                continue
            path = f"{self._derived}/{run_id}.json"
            data = read_bytes(path)
            if data is not None:  # None: deleted since it was listed
                found[run_id] = decode(data, source=path)
        return found

    def put_log(self, run_id: str, name: str, text: str) -> None:
        """Store (replace) the log ``name`` of a run (``logs/{run_id}_{name}.log``)."""
        path = self._layout.log_path(run_id, name)
        if not isinstance(text, str):
            raise TypeError(f"log text must be a str, got {type(text).__name__}")
        self.prepare()
        atomic_write(path, text.encode("utf-8"), durable=self._durable)

    def get_log(self, run_id: str, name: str) -> str | None:
        """Return a log's text, or ``None``; bytes that are not UTF-8 read as U+FFFD."""
        data = read_bytes(str(self._layout.log_path(run_id, name)))
        return None if data is None else data.decode("utf-8", errors="replace")

    def list_logs(self, run_id: str) -> list[str]:
        """Return the names of a run's logs, sorted."""
        validate_run_id(run_id)
        return sorted(
            name.removesuffix(".log").removeprefix(f"{run_id}_")
            for name in list_names(str(self._layout.logs_dir), ".log")
            if name.startswith(f"{run_id}_")
        )

    def log_path(self, run_id: str, name: str) -> Path:
        """Return the file a log is streamed to; its directory exists afterwards."""
        path = self._layout.log_path(run_id, name)
        self.prepare()
        return path

    def put_result(self, run_id: str, name: str, result: ResultDocument) -> None:
        """Store (replace) the structured result ``name`` of a run."""
        path = self._layout.result_path(run_id, name)
        self.prepare()
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, _codec.RESULT.encode(result), durable=self._durable)

    def get_result(self, run_id: str, name: str) -> ResultDocument | None:
        """Return a structured result, or ``None`` if there is no such result."""
        path = str(self._layout.result_path(run_id, name))
        data = read_bytes(path)
        return None if data is None else _codec.RESULT.decode(data, source=path)

    def list_results(self, run_id: str) -> list[str]:
        """Return the names of a run's structured results, sorted."""
        directory = str(self._layout.result_dir(run_id))
        return sorted(name.removesuffix(".json") for name in list_names(directory, ".json"))

    def append_series(
        self,
        run_id: str,
        points: Sequence[SeriesPoint],
        *,
        restart: bool = False,
        into: Landing | None = None,
    ) -> SeriesAppend:
        """Append points to a run's series file (``series/{run_id}.jsonl``).

        The points go in one ``write``; a kill in the middle leaves one torn line at
        the end, which readers ignore. ``restart`` replaces what the file held (a
        run that is run again starts its series afresh). ``into`` is the landing of
        an indexed write: an intent covers the directory before the file changes.

        Returns:
            What was appended, where, and the file's state after.
        """
        path = self._layout.series_path(run_id)
        self.prepare()
        if into is not None:
            into.cover(self._dir)
        body = encode_points(points)
        if not restart:
            try:
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            except FileNotFoundError:
                path.parent.mkdir(exist_ok=True)
            else:
                try:
                    offset = _drop_torn_tail(fd, os.fstat(fd).st_size)
                    if offset == 0:
                        body = encode_header(run_id) + body  # a new (or emptied) file
                    rest = memoryview(body)
                    while rest:  # a short write (a signal, a nearly full disk) goes on
                        rest = rest[os.write(fd, rest) :]
                    stat = os.fstat(fd)
                finally:
                    os.close(fd)
                state = FileState(stat.st_mtime_ns, stat.st_size)
                return SeriesAppend(run_id, self._experiment_id, offset, body, state, str(path))
        else:
            path.parent.mkdir(exist_ok=True)
        # A new series: header and points land together, replacing any older file.
        data = encode_header(run_id) + body
        atomic_write(path, data, durable=False)
        stat = path.stat()
        state = FileState(stat.st_mtime_ns, stat.st_size)
        return SeriesAppend(run_id, self._experiment_id, 0, data, state, str(path))

    def scan_series(self, run_id: str) -> SeriesScan | None:
        """Read a run's series file, or ``None`` if it has none.

        Raises:
            CorruptRecordError: The file cannot be decoded (a torn last line is not
                an error: it is left out and counted).
        """
        path = str(self._layout.series_path(run_id))
        data = read_bytes(path)
        return None if data is None else decode_series(data, source=path, run_id=run_id)

    def get_series(self, run_id: str) -> dict[str, MetricSeries]:
        """Return a run's metric series by name (empty if it logged none).

        A run of a metalab 0.1 store kept each stepped metric as a structured result
        marked ``stepped_metric``; those are read as series (without timestamps).
        """
        scan = self.scan_series(run_id)
        if scan is not None:
            return scan.series
        return self._legacy_series(run_id)

    def series_arrays(self, run_ids: Sequence[str]) -> dict[str, dict[str, SeriesArrays]]:
        """The series of runs as NumPy columns: from the snapshot where it is current.

        A run whose series file changed since the snapshot (or that it does not
        hold) is read from its file.
        """
        directory = str(self._layout.series_dir)
        keys = file_keys(directory, ".jsonl")
        snapshot = read_snapshot(f"{directory}/{SNAPSHOT_NAME}") if keys else None
        found: dict[str, dict[str, SeriesArrays]] = {}
        for run_id in run_ids:
            arrays = None if snapshot is None else snapshot.arrays(run_id, keys.get(run_id))
            if arrays is None:
                arrays = {n: SeriesArrays.of(s) for n, s in self.get_series(run_id).items()}
            found[run_id] = arrays
        return found

    def snapshot_series(self) -> int:
        """Write the series snapshot of this directory; return the runs it holds.

        Runs whose file is unchanged since the last snapshot are carried over as
        they are; the others are read. A run with values other than floats, or whose
        file cannot be decoded, is left out (frames read its file).
        """
        directory = str(self._layout.series_dir)
        keys = file_keys(directory, ".jsonl")  # before reading: later growth misses
        path = f"{directory}/{SNAPSHOT_NAME}"
        if not keys:
            remove_file(Path(path))
            return 0
        previous = read_snapshot(path)
        runs: list[tuple[str, FileKey, list[tuple[str, int]], bytes]] = []
        for run_id, key in sorted(keys.items()):
            carried = None if previous is None else previous.raw(run_id, key)
            if carried is None:
                try:
                    scan = self.scan_series(run_id)
                except CorruptRecordError:
                    continue  # verify reports it; frames raise reading the file
                if scan is None or not encodable(scan.series):
                    continue
                carried = encode_arrays(scan.series)
            runs.append((run_id, key, *carried))
        atomic_write(path, encode_snapshot(runs), durable=False)
        return len(runs)

    def snapshot_records(self) -> int:
        """Write the records snapshot of this directory; return the documents it holds.

        Documents whose file is unchanged since the last snapshot are carried over
        as they are; the others are read. A file that cannot be decoded is left out
        (readers read it, and report it, as without a snapshot), and so is one changed
        in the last :data:`~metalab.store._records_snapshot.RACY_SECONDS` seconds.
        """
        path = self._records_snapshot
        previous = open_snapshot(path)
        writer: SnapshotWriter | None = None
        try:
            # Kind by kind, so that one kind's listing is held at a time (at a
            # million runs some 300 MB each).
            for kind in _SNAPSHOT_KINDS:
                keys = file_keys(self._kind_directory(kind), ".json")  # before reading
                if keys and writer is None:
                    writer = SnapshotWriter(self._dir)
                if writer is not None:
                    write_part(writer, kind, keys, previous, functools.partial(self._keyed, kind))
                del keys
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            if previous is not None:
                previous.close()
        if writer is None:  # no record and no derived metrics
            remove_file(Path(path))
            return 0
        writer.commit()
        return writer.documents

    def check_records_snapshot(self, *, compare: bool) -> SnapshotCheck | None:
        """Check the records snapshot against the files; ``None`` if there is none.

        Args:
            compare: Also read every file the snapshot holds as unchanged and compare
                its bytes with the snapshot's (what ``metalab store verify`` does).
        """

        def read(kind: Kind, name: str) -> bytes | None:
            return read_bytes(f"{self._kind_directory(kind)}/{name}.json")

        parts = self._snapshot_keys()
        return check_snapshot(self._records_snapshot, parts, read if compare else None)

    def frame_key(self, experiment_id: str | None) -> bytes | None:
        """The key of a frame of ``experiment_id`` built from the files now.

        ``None`` if none can be trusted (see :mod:`~metalab.store._frame_cache`).
        """
        if experiment_id is not None and self._experiment_id not in (None, experiment_id):
            return None
        return directory_key((self._runs, self._derived), experiment_id or "")

    def read_frame(self, key: bytes) -> bytes | None:
        """The frame cached under ``key``, if that is the cache's key."""
        return read_cached(f"{self._dir}/{FRAME_CACHE}", key)

    def write_frame(self, key: bytes, payload: bytes) -> bool:
        """Cache a frame under ``key``; ``False`` if it could not be written."""
        return write_cached(f"{self._dir}/{FRAME_CACHE}", key, payload)

    def stale_caches(self) -> list[str]:
        """The frame and query caches that can no longer be served (their paths)."""
        paths = (f"{self._dir}/{FRAME_CACHE}", f"{self._dir}/{QUERY_CACHE_NAME}")
        return [path for path in paths if is_stale(path, (self._runs, self._derived))]

    def cached_query(self, key: bytes, query: Query) -> list[RunRecord] | None:
        """The answer to ``query`` kept under ``key``, read from the records; ``None``: none."""
        run_ids = cached_answer(f"{self._dir}/{QUERY_CACHE_NAME}", key, query)
        if run_ids is None:
            return None
        records = []
        for run_id in run_ids:
            record = self.get_run_record(run_id)
            if record is None:  # gone: the key cannot have matched (an outside delete)
                return None
            records.append(record)
        return records

    def cache_query(self, key: bytes, query: Query, records: Sequence[RunRecord]) -> None:
        """Keep the answer to ``query`` under ``key`` (a small one; never an error)."""
        path = f"{self._dir}/{QUERY_CACHE_NAME}"
        store_answer(path, key, query, [record.run_id for record in records])

    def cached_queries(self, key: bytes) -> list[tuple[Query, list[str]]]:
        """The queries kept under ``key`` with their answers' run ids."""
        return cached_queries(f"{self._dir}/{QUERY_CACHE_NAME}", key)

    def _snapshot_keys(self) -> dict[Kind, dict[str, FileKey]]:
        """The key of each record and derived file, by kind and name: what a snapshot holds."""
        return {kind: file_keys(self._kind_directory(kind), ".json") for kind in _SNAPSHOT_KINDS}

    def _keyed(self, kind: Kind, key: str) -> tuple[bytes, FileKey] | None:
        """A record or derived file's bytes and key, if it decodes (a record: as its run)."""
        path = f"{self._kind_directory(kind)}/{key}.json"
        found = read_with_key(path)
        if found is None:
            return None
        try:
            if kind == "runs":
                record = _codec.RUN_RECORD.decode(found[0], source=path)
                check_filed_under(record.run_id, key, path)
            else:
                _codec.DERIVED.decode(found[0], source=path)
        except CorruptRecordError:
            return None
        return found

    def _legacy_series(self, run_id: str) -> dict[str, MetricSeries]:
        found: dict[str, MetricSeries] = {}
        for name in self.list_results(run_id):
            result = self.get_result(run_id, name)
            points = None if result is None else legacy_series_points(name, result)
            if points is not None:
                found[name] = MetricSeries.from_points(name, points)
        return found

    def write_manifest(self, manifest: ExperimentManifest, into: Landing | None = None) -> Document:
        """Store a submission manifest and return it as written (or as found).

        The file is ``experiments/{safe_experiment_id}_{UTC submitted_at}.json``, or
        that name with ``_1``, ``_2``, ... when another manifest has it; the very same
        manifest put twice is stored once. ``into`` is the landing of an indexed
        write (see :meth:`write_run`).

        Raises:
            ExperimentMismatchError: The manifest belongs to another experiment.
        """
        base = manifest_file_name(manifest.experiment_id, manifest.submitted_at)
        check_scope(self._experiment_id, manifest.experiment_id, self._dir)
        self.prepare()
        data = _codec.EXPERIMENT_MANIFEST.encode(manifest)
        directory = str(self._layout.experiments_dir)
        if into is not None:
            into.cover(self._dir)
        attempt = 0
        while True:
            stem = base if attempt == 0 else f"{base}_{attempt}"
            path = f"{directory}/{stem}.json"
            state = self._create_new(path, data)
            if state is None:
                found = read_with_state(path)
                if found is None or found[0] != data:
                    attempt += 1
                    continue
                state = found[1]
            document = Document("manifests", stem, self._experiment_id, data, state, path)
            if into is not None:
                into.add(document)
            return document

    def put_experiment_manifest(self, manifest: ExperimentManifest) -> None:
        """Store a submission manifest (see :meth:`write_manifest`)."""
        self.write_manifest(manifest)

    def list_experiment_manifests(
        self, experiment_id: str | None = None
    ) -> list[ExperimentManifest]:
        """Return the submission manifests (of one experiment, if given), oldest first."""
        directory = str(self._layout.experiments_dir)
        manifests: list[tuple[ExperimentManifest, str]] = []
        for name in list_names(directory, ".json"):
            path = f"{directory}/{name}"
            data = read_bytes(path)
            if data is None:
                continue
            manifest = _codec.EXPERIMENT_MANIFEST.decode(data, source=path)
            if experiment_id in (None, manifest.experiment_id):
                manifests.append((manifest, name))
        manifests.sort(key=lambda pair: (pair[0].submitted_at, pair[1]))
        return [m for m, _ in manifests]

    def experiments(self) -> list[str]:
        """Return the experiments with data here, sorted.

        A directory bound to an experiment names it once its ``_meta.json`` exists;
        one bound to none names the experiments of its records.
        """
        if self._experiment_id is not None:
            return [self._experiment_id] if self._layout.meta_path.exists() else []
        return sorted({rec.experiment_id for rec in self.iter_run_records()})

    def delete_run(
        self, run_id: str, *, expected: RunRecord | None = None, into: Landing | None = None
    ) -> bool:
        """Delete a run's record, derived metrics, artifacts, logs, series and results.

        With ``expected``, only if the stored record is still that one, checked under
        the directory's lock, which every finished record takes to land. ``into`` is
        the landing of an indexed delete: an intent covers the directory before
        anything is removed.
        """
        validate_run_id(run_id)
        if not self._layout.directory.is_dir():
            return False
        removed = False
        layout = self._layout
        with self._lock:
            if expected is not None and self.get_run_record(run_id) != expected:
                return False
            if into is not None:
                into.cover(self._dir)
            # The record goes last: a delete that is killed half way leaves the run
            # listed, so that deleting it again finds (and removes) what is left.
            for directory in (layout.artifact_dir(run_id), layout.result_dir(run_id)):
                removed |= remove_tree(directory)
            prefix = f"{run_id}_"
            for name in list_names(str(layout.logs_dir), ".log"):
                if name.startswith(prefix):
                    removed |= remove_file(layout.logs_dir / name)
            removed |= remove_file(layout.series_path(run_id))
            for path in (layout.derived_path(run_id), layout.run_path(run_id)):
                removed |= remove_file(path)
        return removed

    def unreferenced_artifacts(
        self, modified_before: float, on_error: ErrorHandler | None = None
    ) -> list[Path]:
        """The artifact files no manifest names (see :meth:`Artifacts.unreferenced_artifacts`)."""
        return self._artifacts.unreferenced_artifacts(modified_before, on_error)

    def remove_unreferenced_artifacts(
        self, modified_before: float, on_error: ErrorHandler | None = None
    ) -> list[Path]:
        """Remove the artifact files no manifest names; return those removed."""
        return self._artifacts.remove_unreferenced_artifacts(modified_before, on_error)

    def _kind_directory(self, kind: DocumentKind) -> str:
        if kind == "runs":
            return self._runs
        if kind == "derived":
            return self._derived
        if kind == "series":
            return str(self._layout.series_dir)
        return str(self._layout.experiments_dir)

    def document_keys(self, kind: DocumentKind) -> Keys:
        """The keys of the documents of ``kind`` (file names without the suffix), packed."""
        suffix = _SUFFIXES[kind]
        cut = -len(suffix)
        keys = Keys()
        try:
            with os.scandir(self._kind_directory(kind)) as entries:
                for entry in entries:
                    name = entry.name
                    if name.endswith(suffix) and name[0] != ".":
                        keys.add(name[:cut])
        except FileNotFoundError:
            pass
        return keys

    def read_documents(self, kind: DocumentKind, keys: Keys | Sequence[str]) -> Iterator[Document]:
        """Read documents of ``kind`` with their file state; those gone since are skipped.

        For many run records or derived metrics (a rebuild's), those whose file is, by
        one ``stat``, in the very state the records snapshot recorded come from the
        snapshot: one sequential read instead of a million small ones. The others
        are read. Documents come in no particular order.
        """
        directory = self._kind_directory(kind)
        suffix = _SUFFIXES[kind]
        eid = self._experiment_id
        snapshot = None
        part = _SNAPSHOT_PARTS.get(kind)
        if part is not None and len(keys) >= _FROM_SNAPSHOT:
            snapshot = open_snapshot(self._records_snapshot)
            if snapshot is not None and snapshot.held(part) > 2 * len(keys):
                snapshot.close()  # it holds far more than asked for: reading it costs more
                snapshot = None
        if snapshot is None or part is None:
            for key in keys:
                found = self._read_document(kind, directory, key, suffix)
                if found is not None:
                    yield found
            return
        ordered = keys.ordered() if isinstance(keys, Keys) else iter(sorted(keys))
        with snapshot:
            # Both in name order: one pass over each, nothing held but a chunk.
            entries = snapshot.entries(part)
            held = next(entries, None)
            for key in ordered:
                while held is not None and held[0].name < key:
                    held = next(entries, None)
                if held is not None and held[0].name == key:
                    entry, data = held
                    path = f"{directory}/{key}{suffix}"
                    if stat_key(path) == entry.key:
                        state = FileState(entry.key[1], entry.key[0])
                        yield Document(kind, key, eid, data, state, path)
                        continue
                found = self._read_document(kind, directory, key, suffix)
                if found is not None:
                    yield found

    def _read_document(
        self, kind: DocumentKind, directory: str, key: str, suffix: str
    ) -> Document | None:
        path = f"{directory}/{key}{suffix}"
        found = read_with_state(path)
        if found is None:
            return None  # deleted since it was listed
        return Document(kind, key, self._experiment_id, found[0], found[1], path)

    def document_states(self, kind: DocumentKind) -> list[DocumentRef]:
        """Return the documents of ``kind`` with their file state, without reading them."""
        eid = self._experiment_id
        entries = stat_entries(self._kind_directory(kind), _SUFFIXES[kind])
        return [
            DocumentRef(kind, key, eid, FileState(stat.st_mtime_ns, stat.st_size))
            for key, stat in entries
        ]

    def has_documents(self) -> bool:
        """Whether the directory holds any record, derived metrics or manifest."""
        return any(
            list_names(self._kind_directory(kind), ".json")
            for kind in ("runs", "derived", "manifests")
        )

    def index_stale_mark(self) -> str | None:
        """The index-stale mark in ``_meta.json``: its token, or ``None`` if unmarked.

        Abandoned index intents (:mod:`metalab.store._intents`: a writer died between
        files and index) are turned into a mark first. A mark written by an older
        metalab has no token and reads as ``""``.
        """
        abandoned = abandoned_intents(self._dir)
        if abandoned:
            self.mark_index_stale()
            for path in abandoned:
                remove_file(Path(path))
        meta = read_meta(self._layout.meta_path)
        if meta is None or not meta.index_stale:
            return None
        return meta.index_stale_token or ""

    def mark_index_stale(self, *, only_if_unmarked: bool = False) -> str | None:
        """Mark (again) in ``_meta.json`` that an index missed a write of this directory.

        Every mark gets a new token, also over an existing mark. A directory without
        ``_meta.json`` holds no document an index could have missed, and gets none.

        Args:
            only_if_unmarked: Leave an existing mark (and its token) as it is.

        Returns:
            The token of the mark set, or ``None`` if none was.
        """
        with self._lock:
            meta = read_meta(self._layout.meta_path)
            if meta is None or (only_if_unmarked and meta.index_stale):
                return None
            token = uuid.uuid4().hex
            self._write_meta(
                msgspec.structs.replace(meta, index_stale=True, index_stale_token=token)
            )
            return token

    def clear_index_stale(self, seen: str) -> bool:
        """Clear the mark if it is still the one ``seen`` (a token from before a sync).

        Returns:
            Whether the mark was cleared; a mark made since is left for the next sync.
        """
        with self._lock:
            meta = read_meta(self._layout.meta_path)
            if meta is None or not meta.index_stale or (meta.index_stale_token or "") != seen:
                return False
            self._write_meta(
                msgspec.structs.replace(meta, index_stale=False, index_stale_token=None)
            )
            return True

    def _write_meta(self, meta: StoreMeta) -> None:
        atomic_write(self._layout.meta_path, _codec.STORE_META.encode(meta), durable=self._durable)


_SUFFIXES: Final[dict[DocumentKind, str]] = {
    "runs": ".json",
    "derived": ".json",
    "manifests": ".json",
    "series": ".jsonl",
}


def _drop_torn_tail(fd: int, size: int) -> int:
    """Cut a series file back to its last whole line; return its size after.

    A write that failed half way leaves a torn line; appending after it would bury it
    mid-file, where it is corruption. The one writer of a run's series cuts it off
    instead (its points are written again).
    """
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    chunk = 1 << 16
    end = size
    while end > 0:
        start = max(0, end - chunk)
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            os.ftruncate(fd, start + found + 1)
            return start + found + 1
        end = start
    os.ftruncate(fd, 0)
    return 0
