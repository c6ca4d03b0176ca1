"""Opening a store for a command that reports on it (``store ls``, ``info``, ``verify``, ``gc``).

These commands answer from the files whenever an index cannot, and never create one:
a PostgresStore is opened with ``create_index=False`` (a schema without an index is
reported as ``"missing"``) and with ``on_index_error="fallback"``: the store
then connects even while its index is unreachable, after one connection attempt (not
a failed one and then a second), and every read the index cannot answer is answered
by the files, which are the source of truth. What the index could not do is reported
beside the answer (:class:`IndexReport`) instead of ending the command.

Records are read with the FileStore's tolerant scan (a PostgresStore's through its
``files``), so a file that cannot be decoded is listed as a problem, with its path
and the reason, and every other record is still used.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from metalab.errors import (
    CapabilityError,
    CorruptRecordError,
    ExperimentNotFoundError,
    IndexMissingError,
    IndexStaleWarning,
    IndexUnavailableError,
)
from metalab.records import RunRecord
from metalab.store import (
    FileStore,
    FileStoreConfig,
    PostgresStore,
    PostgresStoreConfig,
    Store,
    StoreConfig,
    SupportsExperiments,
    SupportsIndexSync,
)
from metalab.store.locator import redact

__all__ = [
    "IndexReport",
    "Session",
    "files_of",
    "open_store",
    "require_readable",
    "write_notes",
]

IndexState = Literal["up to date", "stale", "unreachable", "missing"]

_STALE: str = (
    "the index is stale (it lags behind the files: writes it missed, or files older than "
    "the index); the files answered instead, and 'metalab store sync-index' brings it up "
    "to date"
)


@dataclass
class IndexReport:
    """What the index of a store did during a command.

    Attributes:
        state: ``None`` for a store without an index; ``"up to date"`` when it
            answered; ``"stale"``, ``"unreachable"`` or ``"missing"`` (never built:
            a reporting command does not create it) when the files answered instead.
        problem: One line saying what happened and what to do, or ``None``.
    """

    state: IndexState | None = None
    problem: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The report as the ``index`` and ``index_problem`` fields of ``--json`` output."""
        return {"index": self.state, "index_problem": self.problem}


@dataclass
class Session:
    """An open store, with what its index did (final once the session is closed).

    Attributes:
        store: The store, opened so that the files answer when the index cannot.
        files: The FileStore holding its files (itself, or the one its index wraps),
            or ``None`` for a store without files.
        index: What the index did.
    """

    store: Store
    files: FileStore | None
    index: IndexReport = field(default_factory=IndexReport)

    def records(self, experiment_id: str | None) -> tuple[list[RunRecord], list[str]]:
        """Return the records that decode (of one experiment, if given) and the problems.

        Each problem names a file that cannot be decoded and why; the scan goes on
        past it. A store without files can only say that its listing failed.
        """
        if self.files is not None:
            scan = self.files.scan_run_records(experiment_id)
            return scan.records, [str(problem) for problem in scan.problems]
        try:
            return self.store.list_run_records(experiment_id), []
        except CorruptRecordError as exc:
            return [], [str(exc)]

    def experiments(self) -> list[str]:
        """Return the experiments of the (unscoped) store.

        A directory bound to no experiment names those of its records; a corrupt
        record among them is left to :meth:`records` to report.

        Raises:
            CapabilityError: The store cannot list its experiments.
        """
        store = self.store
        if not isinstance(store, SupportsExperiments):
            raise CapabilityError(
                type(store).__qualname__, "SupportsExperiments", "listing the experiments"
            )
        try:
            return store.list_experiments()
        except CorruptRecordError:
            if self.files is None:
                raise
            return sorted({r.experiment_id for r in self.files.scan_run_records().records})


def files_of(store: object) -> FileStore | None:
    """The FileStore holding a store's files: the store itself, or the one it indexes."""
    files = getattr(store, "files", store)
    return files if isinstance(files, FileStore) else None


def require_readable(config: StoreConfig, experiment_id: str | None = None) -> None:
    """Refuse a locator that names no store, or an experiment the store does not hold.

    Checked in the files before the store is opened, so that a typo neither reads as
    an empty store nor lays down a directory: a FileStore's root (a PostgresStore's
    ``file_root``) must be a metalab store, a collection or an empty directory, and
    the experiment (``experiment_id``, else the config's scope) one the files hold.

    Raises:
        StoreNotFoundError: The root names no store.
        ExperimentNotFoundError: The store holds no such experiment (the message
            lists those it holds and suggests the closest).
    """
    root = getattr(config, "root", None) or getattr(config, "file_root", None)
    if not isinstance(root, str):
        return  # no files to look at (a MemoryStore): the store itself is the truth
    files = FileStoreConfig(root=root)
    files.require_store()
    wanted = experiment_id or config.experiment_id
    if wanted is None:
        return
    # The files are the truth, and reading their _meta.json files needs no connection
    # to an index (which may lag behind them anyway).
    known = files.list_experiments()
    if wanted not in known:
        where = root if isinstance(config, FileStoreConfig) else redact(config.to_locator())
        raise ExperimentNotFoundError(wanted, known, repr(where))


def _connect_to_read(config: StoreConfig) -> Store:
    """Connect so that the files answer when the index cannot, and create nothing."""
    if isinstance(config, PostgresStoreConfig):
        reading = dataclasses.replace(config, on_index_error="fallback")
        return PostgresStore.open(reading, create_index=False)
    return config.connect()


@contextmanager
def open_store(config: StoreConfig) -> Iterator[Session]:
    """Open ``config`` for a reporting command; close it when the block ends.

    A locator that names no store, or an experiment the store does not hold, is
    refused first (:func:`require_readable`).

    The index's :class:`~metalab.errors.IndexStaleWarning` s are turned into the
    session's :class:`IndexReport` rather than printed; other warnings pass through.
    """
    require_readable(config)
    caught: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always", IndexStaleWarning)
        shown = warnings.showwarning

        def keep(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if issubclass(category, IndexStaleWarning):
                caught.append(str(message))
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = keep
        store = _connect_to_read(config)
        session = Session(store, files_of(store))
        try:
            session.index = _index_when_opened(session)
            yield session
        finally:
            store.close()
    if caught and session.index.state == "up to date":
        # The index answered when the store was opened and failed later on (a read
        # fell back to the files, or a write reached only the files).
        session.index = IndexReport("unreachable", caught[0])


def _index_when_opened(session: Session) -> IndexReport:
    store = session.store
    if not isinstance(store, SupportsIndexSync):
        return IndexReport()
    if not store.is_index_stale():
        return IndexReport("up to date")
    # A store opened while its index could not be reached counts as stale too; one
    # question to the index tells the two apart (and fails at once after a failed
    # open: the pool does not retry a server that just did not answer).
    ask = getattr(getattr(store, "index", None), "experiments", None)
    if ask is not None:
        try:
            ask(None)
        except IndexMissingError as exc:
            return IndexReport("missing", f"{exc}; the files answered instead")
        except IndexUnavailableError as exc:
            return IndexReport("unreachable", f"{exc}; the files answered instead")
    return IndexReport("stale", _STALE)


def write_notes(out: TextIO, index: IndexReport, problems: list[str]) -> None:
    """Write the index's problem and each problem found as one line each (for stderr)."""
    if index.problem is not None:
        out.write(f"metalab: warning: {index.problem}\n")
    out.writelines(f"metalab: problem: {problem}\n" for problem in problems)
