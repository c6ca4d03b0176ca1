"""Documents as a FileStore holds them: what an index consumes.

An index over a FileStore (the Postgres index of a PostgresStore) never reads the
files itself: the FileStore hands it :class:`Document` s, each with the exact bytes on
disk and the state of the file they came from (modification time and size), both
when it writes them and when it scans its directories. The state is how a later sync
tells which files changed since they were indexed.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple

__all__ = ["DOCUMENT_KINDS", "Document", "DocumentKey", "DocumentKind", "DocumentRef", "FileState"]

DocumentKind = Literal["runs", "derived", "manifests"]
"""Run records (keyed by run id), derived metrics (by run id), experiment manifests
(by file name without ``.json``)."""

DOCUMENT_KINDS: Final[tuple[DocumentKind, ...]] = ("runs", "derived", "manifests")


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
