"""Documents as a FileStore holds them: what an index consumes.

An index over a FileStore (the Postgres index of a PostgresStore) never reads the
files itself: the FileStore hands it :class:`Document` s, each with the exact bytes on
disk and the state of the file they came from (modification time and size), both
when it writes them and when it scans its directories. The state is how a later sync
tells which files changed since they were indexed.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple

__all__ = [
    "DOCUMENT_KINDS",
    "Document",
    "DocumentKey",
    "DocumentKind",
    "DocumentRef",
    "FileState",
    "SeriesAppend",
]

DocumentKind = Literal["runs", "derived", "manifests", "series"]
"""Run records (keyed by run id), derived metrics (by run id), experiment manifests
(by file name without ``.json``), metric series files (by run id; JSON lines)."""

DOCUMENT_KINDS: Final[tuple[DocumentKind, ...]] = ("runs", "derived", "manifests", "series")


class FileState(NamedTuple):
    """The state of a document's file when it was written or read.

    Attributes:
        mtime_ns: Modification time in nanoseconds.
        size: Size in bytes.
    """

    mtime_ns: int
    size: int


class DocumentKey(NamedTuple):
    """Which document: what an index forgets when the file is gone.

    Attributes:
        kind: What the document is.
        key: The run id, or a manifest's file name without ``.json``.
        experiment_id: Only the document of this experiment; ``None`` for any.
    """

    kind: DocumentKind
    key: str
    experiment_id: str | None


class DocumentRef(NamedTuple):
    """A document's identity and file state, without its bytes.

    Attributes:
        kind: What the document is.
        key: The run id, or a manifest's file name without ``.json``.
        experiment_id: The experiment of the directory holding it; ``None`` for a
            standalone store bound to no experiment.
        state: The state of its file.
    """

    kind: DocumentKind
    key: str
    experiment_id: str | None
    state: FileState


class Document(NamedTuple):
    """A document as it is on disk.

    Attributes:
        kind: What the document is.
        key: The run id, or a manifest's file name without ``.json``.
        experiment_id: The experiment of the directory holding it; ``None`` for a
            standalone store bound to no experiment.
        data: The file's bytes, exactly (the codec's encoding).
        state: The state of the file these bytes were read from or written to.
        source: The file's path, to name it in errors.
    """

    kind: DocumentKind
    key: str
    experiment_id: str | None
    data: bytes
    state: FileState
    source: str


class SeriesAppend(NamedTuple):
    """Points appended to a run's series file: what an index appends in turn.

    A series file only grows while its run goes (:mod:`metalab.store._series_file`),
    so an index that holds the file up to ``offset`` takes these bytes as they are;
    one that holds less (it missed an append) indexes the whole file instead.

    Attributes:
        key: The run id.
        experiment_id: The experiment of the directory holding the file.
        offset: The file's size before the append; 0 when the file was created (or
            replaced, for a run run again), and then ``data`` starts with the header.
        data: The bytes appended: whole lines.
        state: The state of the file after the append.
        source: The file's path, to name it in errors.
    """

    key: str
    experiment_id: str | None
    offset: int
    data: bytes
    state: FileState
    source: str
