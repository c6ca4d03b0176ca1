"""The executor contract and the code every executor runs for each run.

The runner turns an experiment into one :class:`RunJob` (what is shared by all runs:
the operation, the context, the store config) and many :class:`RunTask` s (one run
each), and hands batches of tasks to an :class:`Executor`. Wherever a batch lands --
a thread of this process, a worker process, a machine of a cluster -- it is executed
by :func:`execute_batch`, the per-run boundary: it writes the ``running`` record,
calls the operation, and records success or failure. One failing run never stops
the others in its batch. Where the batch runs in another process than the runner,
it also records the warnings the runs emit (:class:`RecordedWarning`) and sends
them back in the :class:`BatchOutcome`, for the runner to emit where its caller
sees them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO, runtime_checkable

import msgspec

from metalab.capture import Capture
from metalab.experiment import Operation, Runtime
from metalab.records import JSONValue, Provenance, RunRecord, Status
from metalab.seeds import SeedBundle
from metalab.store.abc import Store

__all__ = [
    "BatchOutcome",
    "Executor",
    "RecordedWarning",
    "RunJob",
    "RunTask",
    "SupportsBatchSeconds",
    "execute_batch",
]


class RecordedWarning(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A warning a run emitted in a worker process, sent back to be emitted again.

    The class travels by name, not by reference: unpickling a class that the
    coordinating process cannot import would lose the whole batch's outcome.

    Attributes:
        message: The warning's text.
        categories: ``"module:qualname"`` of the warning's class and of each of its
            bases that is a warning, most derived first.
        filename: The file the warning was emitted from.
        lineno: The line it was emitted from.
    """

    message: str
    categories: tuple[str, ...]
    filename: str
    lineno: int

    @classmethod
    def from_warning(
        cls, message: Warning | str, category: type[Warning], filename: str, lineno: int
    ) -> RecordedWarning:
        """Record a warning as ``warnings.showwarning`` receives it."""
        names = tuple(
            f"{c.__module__}:{c.__qualname__}" for c in category.__mro__ if issubclass(c, Warning)
        )
        return cls(str(message), names, filename, lineno)

    def resolve_category(self) -> type[Warning]:
        """The warning's class, or its nearest base that this process has imported.

        Only modules already imported are searched (a warning never imports one):
        a filter or ``except`` clause can only name a class that was imported.
        """
        for name in self.categories:
            module, _, qualname = name.partition(":")
            found: object = sys.modules.get(module)
            for part in qualname.split("."):
                found = getattr(found, part, None)
            if isinstance(found, type) and issubclass(found, Warning):
                return found
        return Warning


class BatchOutcome(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What a batch of runs came to, as :func:`execute_batch` returns it.

    The runner counts the statuses, and sizes later batches from ``seconds``: a
    batch should keep a worker busy for a fraction of a second of *work*, however
    long the hand-off to the executor takes (a round trip to a cluster's scheduler
    can cost more than a short run). Cheap to pickle, so workers send it back.

    Attributes:
        statuses: The final status of each task, in the order of the batch;
            ``None`` for a task that never started.
        seconds: Wall time the runs spent executing where they ran, hand-off and
            queueing excluded; ``0.0`` when not measured (the runner then sizes
            batches from the sweep's elapsed time).
        warnings: The distinct warnings the runs emitted, when they ran in another
            process (``execute_batch(..., record_warnings=True)``); the runner
            emits each distinct one once per sweep.
    """

    statuses: tuple[Status | None, ...]
    seconds: float = 0.0
    warnings: tuple[RecordedWarning, ...] = ()

    @classmethod
    def not_started(cls, count: int) -> BatchOutcome:
        """The outcome of a batch of ``count`` tasks none of which started."""
        return cls((None,) * count)


class RunTask(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One run to execute: cheap to pickle, so process executors ship many of them.

    Attributes:
        run_id: The run's id.
        params: The run's parameters as JSON builtins.
        params_fingerprint: Fingerprint of ``params``.
        replicate: The replicate index of the run's seed bundle.
        seed_fingerprint: Fingerprint of the seed bundle.
    """

    run_id: str
    params: dict[str, JSONValue]
    params_fingerprint: str
    replicate: int
    seed_fingerprint: str


@dataclass(frozen=True, kw_only=True)
class RunJob:
    """What every run of one ``run()`` call shares.

    It crosses process boundaries once per worker: its store is described by
    ``store_config`` (``StoreConfig.to_dict()`` output), never a live store.

    Attributes:
        experiment_id: ``"name:version"``.
        operation: The operation each run executes.
        context: The experiment's context, passed to operations that declare it.
        context_fingerprint: Fingerprint of ``context``.
        seed_base: The base of the seed plan; a task adds its replicate index.
        tags: Tags stored with every run.
        code_hash: Hash of the operation's source, for provenance.
        store_config: The scoped store config as a dict, for workers to connect.
    """

    experiment_id: str
    operation: Operation
    context: Any
    context_fingerprint: str
    seed_base: int
    tags: tuple[str, ...] = ()
    code_hash: str = ""
    # Not in the repr: a PostgresStoreConfig's dict holds the password.
    store_config: dict[str, Any] = field(default_factory=dict, repr=False)


class Executor(Protocol):
    """Where the runs of an experiment execute.

    The runner calls :meth:`start` once, then :meth:`submit` for each batch of
    tasks (keeping a few batches in flight), then :meth:`shutdown`; :meth:`cancel`
    may come at any time in between. A batch's future resolves to a
    :class:`BatchOutcome` (one status per task, how long the runs took and, from
    another process, the warnings they emitted), as returned by
    :func:`execute_batch`; it fails only if the store itself fails, which ends the
    sweep.

    **Thread and process safety**

    An executor runs one experiment at a time; ``start`` again only after
    ``shutdown``. Implementations that leave the process must not send the live
    store: workers connect from ``job.store_config`` (``StoreConfig.from_dict``).
    """

    @property
    def executor_id(self) -> str:
        """A short name recorded in each run's provenance (``"thread"``)."""
        ...

    @property
    def max_workers(self) -> int:
        """How many runs may execute at once."""
        ...

    def start(self, job: RunJob, store: Store) -> None:
        """Prepare workers for ``job``; ``store`` is the runner's connected store."""
        ...

    def submit(self, tasks: Sequence[RunTask]) -> Future[BatchOutcome]:
        """Schedule a batch of runs."""
        ...

    def cancel(self) -> None:
        """Start no more runs: pending batches report theirs as not started.

        Called from any thread while the sweep goes on; it must not block. Runs
        already executing finish.
        """
        ...

    def shutdown(self, *, cancel_pending: bool = False) -> None:
        """Wait for running batches and release the workers.

        Args:
            cancel_pending: Do not start runs that have not started yet; their
                batches report them as ``None`` (or their futures are cancelled).
        """
        ...


@runtime_checkable
class SupportsBatchSeconds(Protocol):
    """The executor says how much work each batch should hold (optional).

    The runner sizes batches to hold about 0.05 s of work (measured where the runs
    execute), enough to amortise a cheap hand-off such as a local process pool's.
    An executor whose every batch costs more (a cluster's scheduler, which
    schedules, ships and tracks each batch as a task) asks for longer batches, so
    that this cost stays a small share of the work.
    """

    @property
    def batch_seconds(self) -> float:
        """Seconds of work that each batch should hold."""
        ...


def execute_batch(
    job: RunJob,
    store: Store,
    tasks: Sequence[RunTask],
    *,
    executor_id: str,
    stop: Callable[[], bool] | None = None,
    record_warnings: bool = False,
) -> BatchOutcome:
    """Execute runs one after another, record each of them in ``store``, and time them.

    Args:
        job: What the runs share.
        store: The connected store to record them in.
        tasks: The runs.
        executor_id: Recorded in each run's provenance.
        stop: Checked before each run; once it returns true, the remaining runs
            are not started (reported as ``None``).
        record_warnings: Record the warnings emitted in this thread while the runs
            execute (by operations or by the store), instead of showing them
            here, and return them in the outcome. Executors whose batches run in
            another process set it, so that the caller of ``run()`` sees them.

    Returns:
        The final status of each run (``None`` for runs not started), the
        seconds the runs took and, if asked, the warnings they emitted.

    Raises:
        StoreError: The store failed to record a run (the run's user code never
            raises out of here).
    """
    return _execute_tasks(
        job, store, tasks, executor_id=executor_id, stop=stop, record_warnings=record_warnings
    )[0]


def _execute_tasks(
    job: RunJob,
    store: Store,
    tasks: Sequence[RunTask],
    *,
    executor_id: str,
    stop: Callable[[], bool] | None = None,
    record_warnings: bool = False,
) -> tuple[BatchOutcome, list[RunRecord]]:
    """:func:`execute_batch`, which also returns the final record of each run that ran."""
    if not record_warnings:
        return _run_tasks(job, store, tasks, executor_id, stop)
    with _recording_warnings() as recorded:
        outcome, finals = _run_tasks(job, store, tasks, executor_id, stop)
    if recorded:
        # Under the "always" filter every run may repeat the same warning.
        distinct = tuple(dict.fromkeys(recorded))
        outcome = msgspec.structs.replace(outcome, warnings=distinct)
    return outcome, finals


def _run_tasks(
    job: RunJob,
    store: Store,
    tasks: Sequence[RunTask],
    executor_id: str,
    stop: Callable[[], bool] | None,
) -> tuple[BatchOutcome, list[RunRecord]]:
    provenance = _provenance(executor_id, job.code_hash)
    bundles: dict[int, SeedBundle] = {}
    statuses: list[Status | None] = []
    finals: list[RunRecord] = []
    seconds = 0.0
    for task in tasks:
        # Outside the timed part: asking whether to stop can be a round trip (Dask),
        # a cost of the hand-off, not of the run.
        if stop is not None and stop():
            statuses.append(None)
            continue
        began = time.perf_counter()
        seeds = bundles.get(task.replicate)
        if seeds is None:
            seeds = bundles[task.replicate] = SeedBundle(job.seed_base, task.replicate)
        final = _execute_one(job, store, task, seeds, provenance, executor_id, stop)
        seconds += time.perf_counter() - began
        statuses.append(final.status)
        finals.append(final)
    return BatchOutcome(tuple(statuses), seconds), finals


class _ShowWarning:
    """Stands in for ``warnings.showwarning``: records what recording threads emit.

    ``warnings.catch_warnings(record=True)`` would be simpler, but it swaps global
    state on entry and restores it on exit: batches that run side by side in the
    threads of one process (a Dask worker) would restore each other's state and
    lose or misroute warnings. This hook is installed once per process and asks
    the emitting thread whether it records; other threads' warnings pass through.
    """

    def __init__(self, previous: Callable[..., None]) -> None:
        self.previous = previous

    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        log: list[RecordedWarning] | None = getattr(_recording, "log", None)
        if log is None:
            self.previous(message, category, filename, lineno, file, line)
        else:
            log.append(RecordedWarning.from_warning(message, category, filename, lineno))


_recording = threading.local()
_install_lock = threading.Lock()


@contextlib.contextmanager
def _recording_warnings() -> Iterator[list[RecordedWarning]]:
    """Record the warnings this thread emits in the block, as the filters let them through.

    The filters still decide: an ignored warning is not recorded, one under the
    ``"default"`` action is recorded once per place per process (as Python shows
    it once), and one under ``"error"`` raises as usual.
    """
    with _install_lock:
        # Installed again if a catch_warnings() block has restored another one since.
        if not isinstance(warnings.showwarning, _ShowWarning):
            warnings.showwarning = _ShowWarning(warnings.showwarning)
    log: list[RecordedWarning] = []
    outer: list[RecordedWarning] | None = getattr(_recording, "log", None)
    _recording.log = log
    try:
        yield log
    finally:
        _recording.log = outer


def _provenance(executor_id: str, code_hash: str) -> Provenance:
    # Keyed by the process too: a forked worker must not report its parent's pid.
    return _cached_provenance(executor_id, code_hash, os.getpid())


@functools.lru_cache(maxsize=8)
def _cached_provenance(executor_id: str, code_hash: str, pid: int) -> Provenance:
    # Host and interpreter do not change while a process lives; asking the system
    # for the host name on every batch is measurable on slow machines.
    del pid  # part of the cache key only
    return Provenance.current(executor_id=executor_id, code_hash=code_hash)


def _execute_one(
    job: RunJob,
    store: Store,
    task: RunTask,
    seeds: SeedBundle,
    provenance: Provenance,
    executor_id: str,
    stop: Callable[[], bool] | None,
) -> RunRecord:
    running = RunRecord.running(
        run_id=task.run_id,
        experiment_id=job.experiment_id,
        params=task.params,
        tags=job.tags,
        provenance=provenance,
        context_fingerprint=job.context_fingerprint,
        params_fingerprint=task.params_fingerprint,
        seed_fingerprint=task.seed_fingerprint,
    )
    store.put_run_record(running)
    capture = Capture(store, task.run_id)
    runtime = Runtime(task.run_id, job.experiment_id, executor_id, stop)
    try:
        job.operation.invoke(
            context=job.context,
            # A copy, so an operation that edits its params cannot change the record.
            params=dict(task.params),
            seeds=seeds,
            capture=capture,
            runtime=runtime,
        )
    except Exception as exc:  # noqa: BLE001 -- the per-run boundary: user code may raise anything
        final = running.failed(
            exc, metrics=capture.captured_metrics, artifacts=capture.captured_artifacts
        )
    except BaseException:
        # KeyboardInterrupt, SystemExit: the run did not finish on its own.
        capture.close()
        runtime.cleanup()
        store.put_run_record(
            _annotated(
                running.cancelled(
                    metrics=capture.captured_metrics, artifacts=capture.captured_artifacts
                ),
                capture,
            )
        )
        raise
    else:
        final = running.succeeded(
            metrics=capture.captured_metrics, artifacts=capture.captured_artifacts
        )
    capture.close()  # flushes the series before the record says the run is over
    runtime.cleanup()
    final = _annotated(final, capture)
    store.put_run_record(final)
    return final


def _annotated(record: RunRecord, capture: Capture) -> RunRecord:
    """The record with the tags and notes the operation gave its capture."""
    tags, notes = capture.captured_tags, capture.captured_notes
    if not tags and notes is None:
        return record
    merged = tuple(dict.fromkeys((*record.tags, *tags)))
    return msgspec.structs.replace(
        record, tags=merged, notes=record.notes if notes is None else notes
    )
