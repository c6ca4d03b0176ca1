"""The RecordIndex protocol: what an IndexedStore needs from the index over its files.

An index never reads the files itself: it takes :class:`~metalab.store._documents.Document` s
(exact bytes and file state) from the FileStore and hands the bytes back. The Postgres
index implements it (:class:`~metalab.store.PostgresIndex`); another database would
implement the same thirteen members.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from metalab.query import FieldInfo, Query, RunSummary
from metalab.series import MetricSeries, SeriesArrays
from metalab.store._documents import (
    Document,
    DocumentKey,
    DocumentKind,
    FileState,
    SeriesAppend,
)
from metalab.store.abc import ProgressCallback

__all__ = ["DEFAULT_BATCH_SIZE", "IndexErrorPolicy", "IndexState", "RecordIndex", "SyncReport"]

DEFAULT_BATCH_SIZE: Final = 5_000
"""Documents per bulk write (one ``COPY`` + merge transaction in Postgres)."""

IndexErrorPolicy = Literal["raise", "fallback"]
"""What reads do while the index is unreachable or stale: raise, or read the files."""


@dataclass(frozen=True)
class IndexState:
    """What an index found when it was opened.

    Attributes:
        created: The index was created (or re-created for a new layout version) now.
        needs_sync: Experiments (``None``: the whole index) whose files were there
            when the index was created and are not indexed yet.
        file_root: The file root the index was created for.
    """

    created: bool
    needs_sync: frozenset[str | None]
    file_root: str


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`IndexedStore.sync_index` did.

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
    """An index of the documents of a FileStore (implemented by ``PostgresIndex``).

    Documents go in as the FileStore wrote them (:class:`Document`: exact bytes and
    file state) and come out as those bytes. An ``experiment_id`` argument restricts
    a read to one experiment; ``None`` means every experiment. The index keeps the
    store's rules: a record never moves backwards (:mod:`metalab.store._rules`), in a
    single write as in a batch. Every method raises
    :class:`~metalab.errors.IndexUnavailableError` when the index cannot be reached,
    and a ``CorruptRecordError`` for a document it cannot index.
    """

    def open(self) -> IndexState:
        """Connect, create the index if it is missing, and report its state."""
        ...

    def close(self) -> None:
        """Disconnect; idempotent."""
        ...

    def write(
        self,
        documents: Iterable[Document],
        *,
        removed: Iterable[DocumentKey] = (),
        synced: tuple[str | None, Sequence[str]] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """Index documents and forget removed ones.

        Args:
            documents: Documents as written or read, in the order they were put.
            removed: Documents whose files are gone.
            synced: After a sync, ``(scope, experiments)``: the experiment synced
                (``None``: the whole index, whose "needs sync" marks are cleared) and
                the experiments that have a directory in the files (those of the
                documents written are added).
            batch_size: Documents per bulk transaction.
        """
        ...

    def get(
        self, kind: Literal["runs", "derived"], key: str, experiment_id: str | None
    ) -> bytes | None:
        """Return one run record or derived-metrics document, by run id, or ``None``."""
        ...

    def append_series(self, append: SeriesAppend) -> bool:
        """Index lines appended to a series file, if it holds the file up to their offset.

        Returns ``False`` (changing nothing) when it does not: it missed an append,
        and the caller indexes the whole file.
        """
        ...

    def series(
        self, run_ids: Sequence[str], experiment_id: str | None
    ) -> dict[str, dict[str, MetricSeries]]:
        """Return the series of the runs whose series file is indexed, by run id and name."""
        ...

    def series_arrays(
        self, run_ids: Sequence[str], experiment_id: str | None
    ) -> dict[str, dict[str, SeriesArrays]]:
        """Like :meth:`series`, each series as NumPy columns (for frames)."""
        ...

    def documents(self, kind: DocumentKind, experiment_id: str | None) -> list[tuple[str, bytes]]:
        """Return ``(key, document)`` of every document of ``kind`` (manifests oldest first)."""
        ...

    def experiments(self, experiment_id: str | None) -> list[str]:
        """Return the indexed experiments (only ``experiment_id``, if given), sorted."""
        ...

    def query(self, query: Query, experiment_id: str | None) -> list[tuple[str, bytes]]:
        """Return ``(run_id, record)`` of the runs matching ``query``, in its order."""
        ...

    def fields(self, experiment_id: str) -> list[FieldInfo]:
        """Return an experiment's field catalog."""
        ...

    def summary(self, experiment_id: str | None) -> dict[str, RunSummary]:
        """Return the run counts by status of the indexed experiments (only one, if given).

        A given experiment is in the answer even when no run of it is indexed.
        """
        ...

    def states(self, kind: DocumentKind, experiment_id: str | None) -> dict[str, FileState | None]:
        """Return ``key -> state`` of the files the indexed documents came from.

        ``None`` for a document whose file state is unknown (a later sync reads it).
        """
        ...

    def rebuild(
        self,
        read: Callable[[DocumentKind], Iterable[Document]],
        *,
        scope: str | None,
        experiments: Iterable[str],
        progress: ProgressCallback | None = None,
        file_root: str | None = None,
    ) -> int:
        """Replace the index (or one experiment's part of it) atomically.

        Args:
            read: The documents of a kind, as read from the files; called (so the
                files are listed) only once the index has noted when the rebuild
                started, so that a document indexed by a writer after the listing
                is carried over. A sized result gives ``progress`` its total.
            scope: The experiment rebuilt, or ``None`` for the whole index.
            experiments: The experiments that have a directory in the files (those
                of the documents read are added).
            progress: Called as ``progress(done, total)`` while records are copied.
            file_root: Record this as the root of the files the index covers (they
                moved there); only with ``scope`` ``None``.

        Returns:
            The number of run records indexed.
        """
        ...
