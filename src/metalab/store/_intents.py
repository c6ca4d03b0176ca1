"""Index intents: what a writer leaves while its files are ahead of the index.

An indexed store writes a document to the files and then to the index. A process
killed between the two (SIGKILL, the OOM killer, a batch system's time limit) leaves
a document the index lacks, and nobody to mark the index stale. So before it places
the first document of a write in a directory, an indexed store creates an *intent*
there, an empty file ``.index-intents/{host}.{pid}.{n}``, and removes it once the
index has the documents (or the miss is marked in ``_meta.json``).

An intent outliving its writer is *abandoned*: its process is known dead (on this
host: no such pid, a zombie, or a pid reused by a newer process), or, for a writer
this host cannot look at, it is older than :data:`ABANDONED_AFTER`, far longer than
any write takes. Whoever reads a directory's stale mark turns its abandoned intents
into a mark first (:meth:`StoreDirectory.index_stale_mark`), so a sync that starts
after the writer died covers its documents, and one that started before leaves the
mark for the next.

Creating and removing an intent is two file-system calls per write (one per batch
for a bulk write); a plain FileStore, which has no index, never makes one.
"""

# A hot path (two calls per write): str paths and os functions, as in _fileio.
# ruff: noqa: PTH103, PTH108, PTH116

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import socket
import time
from typing import Final

from metalab._liveness import process_liveness
from metalab.store._documents import Document

__all__ = ["ABANDONED_AFTER", "INTENTS_DIR", "Landing", "abandoned_intents"]

INTENTS_DIR: Final = ".index-intents"
"""The directory of intents inside a store directory (hidden: scans ignore it)."""

ABANDONED_AFTER: Final = 60.0
"""Seconds after which the intent of a writer on another host counts as abandoned.

A write takes milliseconds; one stuck longer (an index that does not answer) is
marked stale by its writer anyway, so taking its intent for abandoned only marks
the index stale a little early.
"""

_HOST: Final = socket.gethostname()
_sequence = itertools.count()
_FLAGS: Final = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)


class Landing:
    """The documents one write placed for an index, and the intents covering them.

    A store directory calls :meth:`cover` before it places a document and
    :meth:`add` after; the indexed store indexes :attr:`documents`, or marks the
    miss, and then calls :meth:`release`.
    """

    __slots__ = ("_intents", "documents")

    def __init__(self) -> None:
        self.documents: list[Document] = []
        self._intents: dict[str, str] = {}

    def cover(self, directory: str) -> None:
        """Leave an intent in ``directory`` (once per write) before a document goes there."""
        if directory in self._intents:
            return
        intents = f"{directory}/{INTENTS_DIR}"
        path = f"{intents}/{_HOST}.{os.getpid()}.{next(_sequence)}"
        try:
            fd = os.open(path, _FLAGS, 0o644)
        except FileNotFoundError:
            os.makedirs(intents, exist_ok=True)
            fd = os.open(path, _FLAGS, 0o644)
        os.close(fd)
        self._intents[directory] = path

    @property
    def covering(self) -> bool:
        """Whether an intent was left: the write got as far as a directory's files."""
        return bool(self._intents)

    def add(self, document: Document) -> None:
        """Note a document placed in the files."""
        self.documents.append(document)

    def release(self) -> None:
        """Remove the intents: the index has the documents, or the miss is marked."""
        for path in self._intents.values():
            # Gone already if it was taken for abandoned (and turned into a mark).
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._intents.clear()


def abandoned_intents(directory: str) -> list[str]:
    """The paths of the intents in ``directory`` whose writers are gone.

    An intent that cannot be parsed (not written by metalab) counts as abandoned
    once it is old, like one from another host.
    """
    intents = f"{directory}/{INTENTS_DIR}"
    try:
        with os.scandir(intents) as entries:
            found = [(entry.name, entry.path) for entry in entries]
    except (FileNotFoundError, NotADirectoryError):
        return []
    now = time.time()
    abandoned = []
    for name, path in found:
        try:
            created = os.stat(path).st_mtime
        except FileNotFoundError:
            continue  # released since it was listed
        if _writer_gone(name, created, now):
            abandoned.append(path)
    return abandoned


def _writer_gone(name: str, created: float, now: float) -> bool:
    host, _, pid = name.rpartition(".")[0].rpartition(".")
    if host == _HOST and pid.isdigit():
        started = dt.datetime.fromtimestamp(created, dt.UTC)
        liveness = process_liveness(int(pid), started)
        if liveness != "unknown":
            return liveness == "dead"
    return now - created > ABANDONED_AFTER
