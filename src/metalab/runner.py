"""Running experiments: :func:`run` and the :class:`RunHandle` it returns.

``run(exp, store=...)`` scopes the store to the experiment, writes the experiment
manifest, works out every run (parameter combination x replicate) and its id, skips
the runs already recorded as ``success`` (``resume=True``), and hands the rest to an
executor from a background dispatcher thread. It returns at once; the handle shows
live counts, and ``handle.result()`` waits and returns the :class:`Results`.

Life of a run: a ``running`` record is written when it starts; when it ends, its
``success``, ``failed`` (exception type, message and traceback) or ``cancelled``
record replaces it. A failing run never stops the others. ``handle.cancel()`` stops
starting new runs: runs already executing finish and are recorded as usual, and every
run that had not started is recorded as ``cancelled``, so the results show it and a
later ``run(exp)`` (resume) runs it. A run whose process died (killed, power loss)
keeps its ``running`` record and is run again on resume, like failed and cancelled
runs. Warnings that runs emit in other processes (a ``ProcessExecutor``'s workers, a
Dask cluster) are emitted again in this one, each distinct one once per sweep.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

from metalab._identity import fingerprint, run_id_for, to_json, to_json_object
from metalab._progress import Progress, open_progress
from metalab.errors import ConfigError, MetalabWarning, SweepInterrupted
from metalab.events import Event, EventCallback, EventKind
from metalab.executors import (
    BatchOutcome,
    Executor,
    RecordedWarning,
    RunJob,
    RunTask,
    SupportsBatchSeconds,
    ThreadExecutor,
)
from metalab.experiment import Experiment
from metalab.progress import MetricDisplay
from metalab.progress import Progress as ProgressOptions
from metalab.records import (
    ExperimentManifest,
    MetricValue,
    Provenance,
    RunRecord,
    Status,
    utc_now,
)
from metalab.results import Results, resolve_derived
from metalab.store import (
    FileStore,
    ProgressCallback,
    Store,
    StoreConfig,
    StoreLike,
    SupportsBulkPut,
    SupportsExperimentManifests,
    coerce_store_config,
)

if TYPE_CHECKING:
    from metalab.results import DerivedFn

__all__ = ["RunCounts", "RunHandle", "run"]

logger = logging.getLogger(__name__)

# A batch should keep a worker busy for about this long (of work, hand-off excluded):
# long enough to amortise the hand-off to the executor, short enough for live counts,
# a prompt cancel and an even spread of the runs over the workers. An executor whose
# hand-off costs more says how long its batches should be (SupportsBatchSeconds).
_BATCH_SECONDS: Final = 0.05
_MAX_BATCH: Final = 64
# Batches handed to the executor and not yet back, per worker: one running and the
# others queued where it runs, so that a worker that finishes a batch starts the next
# at once, however long its outcome takes to come back and the next batch to reach it
# (a round trip through a cluster's scheduler can take longer than a batch).
_IN_FLIGHT_PER_WORKER: Final = 4
_POLL_SECONDS: Final = 0.1


@dataclass(frozen=True)
class RunCounts:
    """A snapshot of a sweep's progress.

    Attributes:
        total: Runs the experiment defines.
        done: Runs that succeeded in this sweep.
        failed: Runs that failed in this sweep.
        skipped: Runs already recorded as ``success`` before the sweep (resume).
        cancelled: Runs cancelled before or while running.
    """

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0

    @property
    def finished(self) -> int:
        """Runs that need no more work: done, failed, skipped or cancelled."""
        return self.done + self.failed + self.skipped + self.cancelled

    @property
    def pending(self) -> int:
        """Runs not finished yet (queued or executing)."""
        return self.total - self.finished


class _Pace:
    """How long runs take, from the batches that came back; sizes the next batches.

    Batches are sized from the *work* time of runs, measured where they ran
    (:attr:`BatchOutcome.seconds`), not from the wall time of the sweep: when each
    hand-off to the executor costs a round trip (a cluster's scheduler), wall time
    per run stays high while batches are small, and batches would stay small. The
    wall time stands in until a batch with a measured work time has come back.

    Args:
        workers: How many runs the executor executes at once.
        batch_seconds: Seconds of work a batch should hold: the executor's
            :attr:`~metalab.executors.SupportsBatchSeconds.batch_seconds`, or
            :data:`_BATCH_SECONDS`.
    """

    def __init__(self, workers: int, batch_seconds: float = _BATCH_SECONDS) -> None:
        self._workers = workers
        self._batch_seconds = batch_seconds
        self._ran = 0
        self._timed_ran = 0
        self._timed_seconds = 0.0

    def add(self, outcome: BatchOutcome) -> None:
        """Count the runs of a batch that came back, and the time they took."""
        ran = sum(status is not None for status in outcome.statuses)
        self._ran += ran
        if outcome.seconds > 0:
            self._timed_ran += ran
            self._timed_seconds += outcome.seconds

    def batch_size(self, remaining: int, elapsed: float) -> int:
        """How many of the ``remaining`` runs to hand over next, ``elapsed`` s into the sweep.

        About ``batch_seconds`` of work, at most :data:`_MAX_BATCH` runs, and
        never more than a fair share of what remains, so that the last runs still
        spread over the workers. One run until the first batch comes back.
        """
        if self._timed_ran:
            seconds_per_run = self._timed_seconds / self._timed_ran
        elif self._ran:
            seconds_per_run = elapsed * self._workers / self._ran
        else:
            return 1
        size = int(self._batch_seconds / seconds_per_run) if seconds_per_run > 0 else _MAX_BATCH
        return max(1, min(size, _MAX_BATCH, math.ceil(remaining / self._workers)))


def _plan(experiment: Experiment) -> tuple[str, list[RunTask], int]:
    """Return the context fingerprint, one task per distinct run, and duplicates seen."""
    context_fp = fingerprint(to_json(experiment.context, "context"))
    bundles = [(bundle.replicate, bundle.fingerprint) for bundle in experiment.seeds]
    experiment_id = experiment.experiment_id
    tasks: list[RunTask] = []
    seen: set[str] = set()
    duplicates = 0
    for index, params in enumerate(experiment.params):
        if not isinstance(params, Mapping):
            raise ConfigError(
                f"parameter source yielded {params!r} at position {index}; "
                "each parameter combination must be a dict"
            )
        params_json = to_json_object(params, f"params {index}")
        params_fp = fingerprint(params_json)
        for replicate, seed_fp in bundles:
            run_id = run_id_for(experiment_id, context_fp, params_fp, seed_fp)
            if run_id in seen:
                duplicates += 1
                continue
            seen.add(run_id)
            tasks.append(RunTask(run_id, params_json, params_fp, replicate, seed_fp))
    return context_fp, tasks, duplicates


class RunHandle:
    """A running (or finished) sweep: live counts, cancellation and its results.

    Use it as a context manager to cancel on error and close the store at the end::

        with metalab.run(exp, store="./experiments") as handle:
            results = handle.result()
            df = results.to_dataframe()
    """

    def __init__(
        self,
        *,
        experiment_id: str,
        config: StoreConfig,
        store: Store,
        run_ids: Sequence[str],
        pending: list[RunTask],
        skipped: int,
        executor: Executor,
        job: RunJob,
        progress: Progress,
        derived: Sequence[DerivedFn] = (),
        on_event: EventCallback | None = None,
        displays: Sequence[MetricDisplay] = (),
        skipped_ids: Sequence[str] = (),
    ) -> None:
        self._experiment_id = experiment_id
        self._config = config
        self._store = store
        self._run_ids = tuple(run_ids)
        self._pending = pending
        self._executor = executor
        self._job = job
        self._progress = progress
        self._derived = tuple(derived)
        self._on_event = on_event
        self._event_failed = False
        self._displays = tuple(displays)
        self._shown = ""  # the display metrics of the latest successful run
        self._skipped_ids = tuple(skipped_ids)
        self._lock = threading.Lock()
        self._counts = RunCounts(total=len(self._run_ids), skipped=skipped)
        self._never_started = 0  # cancelled before they began: not progress
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._warned: set[tuple[type[Warning], str]] = set()
        # Not a daemon: a script that never calls result() still finishes its sweep.
        self._thread = threading.Thread(
            target=self._drive, name=f"metalab-run[{experiment_id}]", daemon=False
        )

    def _start(self) -> None:
        self._report()
        self._thread.start()

    def __repr__(self) -> str:
        c = self.counts
        state = "finished" if self.is_finished else "running"
        return (
            f"<RunHandle {self._experiment_id!r} {state}: {c.finished}/{c.total} "
            f"(done={c.done}, failed={c.failed}, skipped={c.skipped}, cancelled={c.cancelled})>"
        )

    @property
    def experiment_id(self) -> str:
        """The id of the experiment being run."""
        return self._experiment_id

    @property
    def store(self) -> Store:
        """The connected store the runs are recorded in (scoped to the experiment)."""
        return self._store

    @property
    def config(self) -> StoreConfig:
        """The scoped config of :attr:`store`."""
        return self._config

    @property
    def run_ids(self) -> tuple[str, ...]:
        """The ids of every run of the experiment, in definition order."""
        return self._run_ids

    @property
    def counts(self) -> RunCounts:
        """A consistent snapshot of the live counts."""
        with self._lock:
            return self._counts

    @property
    def total(self) -> int:
        """Runs the experiment defines."""
        return self.counts.total

    @property
    def done(self) -> int:
        """Runs that succeeded in this sweep."""
        return self.counts.done

    @property
    def failed(self) -> int:
        """Runs that failed in this sweep."""
        return self.counts.failed

    @property
    def skipped(self) -> int:
        """Runs skipped because they had already succeeded."""
        return self.counts.skipped

    @property
    def cancelled(self) -> int:
        """Runs recorded as cancelled."""
        return self.counts.cancelled

    @property
    def is_finished(self) -> bool:
        """Whether the sweep is over (every run finished, or cancelled)."""
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the sweep is over; return whether it is (``False`` on timeout)."""
        return self._finished.wait(timeout)

    def cancel(self) -> None:
        """Stop starting runs; running ones finish, unstarted ones are recorded cancelled.

        Returns at once; :meth:`wait` or :meth:`result` wait for the running ones.
        """
        self._cancel.set()
        self._executor.cancel()

    def result(self, timeout: float | None = None) -> Results:
        """Wait for the sweep and return the runs of the experiment, in definition order.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Raises:
            TimeoutError: The sweep is still running after ``timeout`` seconds.
            StoreError: The store failed during the sweep (runs recorded before the
                failure are kept; run again to finish).
            SweepInterrupted: Ctrl-C came while waiting: the sweep was cancelled
                (the runs at work finished, the others are recorded ``cancelled``;
                a second Ctrl-C stops waiting for the runs at work).
        """
        try:
            finished = self._finished.wait(timeout)
        except KeyboardInterrupt:
            raise self._interrupted() from None
        if not finished:
            raise TimeoutError(f"{self!r} is still running after {timeout} s")
        if self._error is not None:
            raise self._error
        wanted = set(self._run_ids)
        found = {
            r.run_id: r
            for r in self._store.list_run_records(self._experiment_id)
            if r.run_id in wanted
        }
        recorded = self.counts.finished
        if len(found) < recorded:
            warnings.warn(
                f"{recorded} runs of {self._experiment_id!r} finished but only {len(found)} "
                f"are in {self._store!r}; workers in other processes must share the store "
                "(use a FileStore or PostgresStore, not memory://, with a ProcessExecutor)",
                MetalabWarning,
                stacklevel=2,
            )
        return Results((found[i] for i in self._run_ids if i in found), self._store)

    def _interrupted(self) -> SweepInterrupted:
        """Cancel after Ctrl-C and wait for the runs at work; a second Ctrl-C stops waiting."""
        self.cancel()
        with contextlib.suppress(KeyboardInterrupt):
            self._finished.wait()
        c = self.counts
        # After a second Ctrl-C the sweep is still ending: count the unfinished runs.
        not_started = self._never_started if self._finished.is_set() else c.total - c.finished
        _OneLineInterrupts.install()
        return SweepInterrupted(self._experiment_id, not_started, c.total)

    def close(self) -> None:
        """Wait for the sweep to end, then close the store."""
        self._finished.wait()
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.cancel()
        self.close()

    def _stop_requested(self) -> bool:
        return self._cancel.is_set() or self._error is not None

    def _report(self) -> None:
        with self._lock:
            c, never_started = self._counts, self._never_started
        failed = f"{c.failed} failed" if c.failed else ""
        self._progress.note("  ".join(part for part in (failed, self._shown) if part))
        self._progress(c.finished - never_started, c.total)

    def _emit(self, kind: EventKind, run_id: str | None = None, **payload: object) -> None:
        """Hand an event to the user's ``on_event`` callback; one that raises is reported once."""
        if self._on_event is None:
            return
        try:
            self._on_event(Event(kind, run_id, payload=payload))
        except Exception as exc:  # noqa: BLE001 -- a callback never stops a sweep
            if not self._event_failed:
                self._event_failed = True
                warnings.warn(
                    f"on_event callback {_name_of(self._on_event)} raised on {kind.value} "
                    f"({type(exc).__name__}: {exc}); later errors of it are not reported",
                    MetalabWarning,
                    stacklevel=1,
                )

    def _emit_progress(self) -> None:
        if self._on_event is None:
            return
        c = self.counts
        self._emit(
            EventKind.PROGRESS,
            current=c.finished,
            total=c.total,
            done=c.done,
            failed=c.failed,
            skipped=c.skipped,
            cancelled=c.cancelled,
        )

    def _drive(self) -> None:
        try:
            for run_id in self._skipped_ids:
                self._emit(EventKind.RUN_SKIPPED, run_id, reason="already succeeded")
            self._executor.start(self._job, self._store)
            not_started = self._dispatch()
            if not_started and self._error is None:
                self._record_cancelled(not_started)
            self._write_snapshots()
        except BaseException as exc:  # handed to result(), which raises it: not swallowed
            self._error = self._error or exc
            logger.debug("sweep of %s stopped by an error", self._experiment_id, exc_info=True)
        finally:
            self._report()
            self._emit_progress()
            c = self.counts
            logger.info(
                "%s: %d succeeded, %d failed, %d cancelled, %d skipped of %d runs%s",
                self._experiment_id,
                c.done,
                c.failed,
                c.cancelled,
                c.skipped,
                c.total,
                f" (stopped by {self._error!r})" if self._error is not None else "",
            )
            stopped = "stopped by an error" if self._error is not None else None
            if self._never_started and stopped is None:
                stopped = "cancelled"
            self._progress.close(stopped=stopped)
            self._finished.set()

    def _write_snapshots(self) -> None:
        """Write the FileStore's series and records snapshots, which later reads use.

        They are derived (the files are the truth), so failing to write one, for
        whatever reason, only costs the reads of the sweep's files one by one: it is
        logged, and the sweep's result stands.
        """
        if not isinstance(self._store, FileStore):
            return
        for what, write in (
            ("series", self._store.snapshot_series),
            ("records", self._store.snapshot_records),
        ):
            try:
                write(self._experiment_id)
            except Exception as exc:  # derived: it never fails a sweep
                logger.warning(
                    "%s: the %s snapshot was not written (%r); reads use the files",
                    self._experiment_id,
                    what,
                    exc,
                    exc_info=not isinstance(exc, OSError),
                )

    def _dispatch(self) -> list[RunTask]:
        """Feed the executor in batches; return the tasks that never started."""
        executor = self._executor
        queue = deque(self._pending)
        in_flight: dict[Future[BatchOutcome], tuple[RunTask, ...]] = {}
        window = _IN_FLIGHT_PER_WORKER * executor.max_workers
        pace = _Pace(
            executor.max_workers,
            executor.batch_seconds
            if isinstance(executor, SupportsBatchSeconds)
            else _BATCH_SECONDS,
        )
        began = time.monotonic()
        not_started: list[RunTask] = []
        stopping = True
        try:
            while (queue or in_flight) and not self._stop_requested():
                while queue and len(in_flight) < window:
                    size = pace.batch_size(len(queue), time.monotonic() - began)
                    batch = tuple(queue.popleft() for _ in range(min(size, len(queue))))
                    in_flight[executor.submit(batch)] = batch
                    for task in batch:
                        self._emit(EventKind.RUN_STARTED, task.run_id, params=task.params)
                done, _ = futures.wait(
                    in_flight, timeout=_POLL_SECONDS, return_when=futures.FIRST_COMPLETED
                )
                for future in done:
                    self._collect(future, in_flight.pop(future), not_started, pace)
            stopping = self._stop_requested()
        finally:
            executor.shutdown(cancel_pending=stopping)
        for future, batch in in_flight.items():
            self._collect(future, batch, not_started, pace)
        not_started.extend(queue)
        return not_started

    def _collect(
        self,
        future: Future[BatchOutcome],
        batch: tuple[RunTask, ...],
        not_started: list[RunTask],
        pace: _Pace,
    ) -> None:
        if future.cancelled():
            not_started.extend(batch)
            return
        error = future.exception()
        if error is not None:
            self._error = self._error or error
            self._executor.cancel()
            return
        outcome = future.result()
        pace.add(outcome)
        done = failed = cancelled = 0
        for task, status in zip(batch, outcome.statuses, strict=True):
            if status is None:
                not_started.append(task)
            elif status == "success":
                done += 1
            elif status == "failed":
                failed += 1
            else:
                cancelled += 1
        with self._lock:
            c = self._counts
            self._counts = RunCounts(
                c.total, c.done + done, c.failed + failed, c.skipped, c.cancelled + cancelled
            )
        if self._on_event is not None or self._displays:
            self._tell(batch, outcome.statuses)
        self._report()
        self._emit_progress()
        if self._derived:
            self._derive(
                [t for t, s in zip(batch, outcome.statuses, strict=True) if s == "success"]
            )
        if outcome.warnings:
            self._warn(outcome.warnings)

    def _tell(self, batch: Sequence[RunTask], statuses: Sequence[Status | None]) -> None:
        """Emit the outcome of each run of a batch, and note the display metrics."""
        latest: RunRecord | None = None
        for task, status in zip(batch, statuses, strict=True):
            if status is None:
                continue  # never started: recorded (and told) as cancelled at the end
            if status == "cancelled":
                self._emit(EventKind.RUN_CANCELLED, task.run_id)
                continue
            record = self._store.get_run_record(task.run_id)
            duration = None if record is None else record.duration_ms
            if status == "success":
                latest = record or latest
                self._emit(EventKind.RUN_FINISHED, task.run_id, duration_ms=duration)
            else:
                error = None if record is None else record.error
                self._emit(
                    EventKind.RUN_FAILED,
                    task.run_id,
                    error="" if error is None else f"{error.type}: {error.message}",
                    error_type=None if error is None else error.type,
                    duration_ms=duration,
                )
        if latest is not None and self._displays:
            shown = (d.render(latest.metrics) for d in self._displays)
            self._shown = " ".join(text for text in shown if text)

    def _derive(self, tasks: Sequence[RunTask]) -> None:
        """Compute and store the derived metrics of runs that just succeeded."""
        for task in tasks:
            record = self._store.get_run_record(task.run_id)
            if record is None:
                continue
            run = Results([record], self._store)[0]
            values: dict[str, MetricValue] = {}
            for fn in self._derived:
                try:
                    values.update(fn(run))
                except Exception as exc:  # noqa: BLE001 -- a derived metric never stops a sweep
                    warnings.warn(
                        f"derived metric {_name_of(fn)} failed on run {task.run_id[:12]}: "
                        f"{type(exc).__name__}: {exc}",
                        MetalabWarning,
                        stacklevel=1,
                    )
            if values:
                self._store.put_derived(task.run_id, values)

    def _warn(self, recorded: Sequence[RecordedWarning]) -> None:
        """Emit the warnings that runs emitted in another process, each distinct one once."""
        for item in recorded:
            category = item.resolve_category()
            if (category, item.message) in self._warned:
                continue
            self._warned.add((category, item.message))
            try:
                # Where the run emitted it, as a run in this process would have.
                warnings.warn_explicit(item.message, category, item.filename, item.lineno)
            except Warning as exc:
                # An "error" filter: the sweep ends with it, as it does with a store error.
                self._error = self._error or exc
                self._executor.cancel()
                return

    def _record_cancelled(self, tasks: list[RunTask]) -> None:
        job = self._job
        provenance = Provenance.current(
            executor_id=self._executor.executor_id, code_hash=job.code_hash
        )
        records = [
            RunRecord.running(
                run_id=t.run_id,
                experiment_id=job.experiment_id,
                params=t.params,
                tags=job.tags,
                provenance=provenance,
                context_fingerprint=job.context_fingerprint,
                params_fingerprint=t.params_fingerprint,
                seed_fingerprint=t.seed_fingerprint,
            ).cancelled()
            for t in tasks
        ]
        if isinstance(self._store, SupportsBulkPut):
            self._store.put_run_records(records)
        else:
            for record in records:
                self._store.put_run_record(record)
        with self._lock:
            c = self._counts
            self._counts = RunCounts(c.total, c.done, c.failed, c.skipped, c.cancelled + len(tasks))
            self._never_started += len(tasks)
        for task in tasks:
            self._emit(EventKind.RUN_CANCELLED, task.run_id)


def _name_of(fn: object) -> str:
    return repr(getattr(fn, "__qualname__", fn))


def _progress_for(
    progress: bool | ProgressCallback | ProgressOptions | None, experiment: Experiment, total: int
) -> Progress:
    """The display of a sweep for ``run(progress=...)``."""
    if isinstance(progress, ProgressOptions):
        return open_progress(
            progress.title or experiment.name, total, enabled=True, style=progress.style
        )
    if callable(progress):
        return _Reporting(progress)
    return open_progress(experiment.experiment_id, total, enabled=progress)


def _log_to_stderr() -> None:
    """Send the ``metalab`` logger's INFO records to stderr, unless logging is set up.

    Nothing is added when the ``metalab`` logger or the root logger has a handler
    already: the application decides where records go.
    """
    package = logging.getLogger("metalab")
    if package.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    package.addHandler(handler)
    if package.getEffectiveLevel() > logging.INFO:
        package.setLevel(logging.INFO)


class _Reporting(Progress):
    """A user's ``progress(done, total)`` callable in the place of a bar."""

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback

    def __call__(self, done: int, total: int | None = None) -> None:
        self._callback(done, total)


class _OneLineInterrupts:
    """``sys.excepthook`` that reports an uncaught :class:`SweepInterrupted` in one line.

    A script stopped with Ctrl-C during ``handle.result()`` then ends with
    ``metalab: cancelled: ...`` instead of a traceback through ``threading``; every
    other exception goes to the hook that was there before.
    """

    def __init__(self, previous: Callable[..., object]) -> None:
        self.previous = previous

    def __call__(
        self, kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if isinstance(value, SweepInterrupted):
            sys.stderr.write(f"metalab: {value}\n")
            sys.stderr.flush()
        else:
            self.previous(kind, value, tb)

    @classmethod
    def install(cls) -> None:
        if not isinstance(sys.excepthook, cls):
            sys.excepthook = cls(sys.excepthook)


def run(
    experiment: Experiment,
    store: StoreLike = "./experiments",
    *,
    executor: Executor | None = None,
    resume: bool = True,
    progress: bool | ProgressCallback | ProgressOptions | None = None,
    file_root: str | os.PathLike[str] | None = None,
    derived_metrics: Sequence[DerivedFn | str] = (),
    on_event: EventCallback | None = None,
    verbose: bool = False,
) -> RunHandle:
    """Run every run of an experiment that has not succeeded yet, in the background.

    >>> handle = metalab.run(exp, store="./experiments")  # doctest: +SKIP
    >>> handle.store.get_working_directory()  # doctest: +SKIP
    PosixPath('/abs/experiments/my_exp_1.0')
    >>> results = handle.result()  # doctest: +SKIP

    Args:
        experiment: What to run.
        store: A collection root path, a locator (``"file:///..."``,
            ``"postgresql://...?file_root=..."``, ``"memory://"``) or a
            ``StoreConfig``; it is scoped to ``experiment.experiment_id``.
        executor: Where runs execute; default ``ThreadExecutor(max_workers=1)``
            (one after another, in a background thread).
        resume: Skip runs already recorded as ``success``; failed, cancelled and
            interrupted (``running``) runs are run again. ``False`` runs everything.
        progress: ``False`` hides the progress bar; otherwise it is shown when
            stderr is a terminal, or in a Jupyter notebook. A callable (a
            ``metalab.store.ProgressCallback``, or a bar of your own) is called as
            ``progress(done, total)`` instead. A :class:`metalab.Progress` sets the
            bar's title, style and the metrics shown beside the counts.
        file_root: Where a ``postgresql://`` locator's files live, when the
            locator does not say (``?file_root=``).
        derived_metrics: Functions (or ``"module:function"`` references) called with
            each run that succeeds, as a :class:`~metalab.Run`, in this process;
            the metrics they return are stored as its derived metrics. One that
            raises is reported as a ``MetalabWarning`` and the sweep goes on.
        on_event: Called with each :class:`metalab.Event` of the sweep (runs
            started, finished, failed, cancelled, skipped, and progress), in the
            thread that drives the sweep; see :mod:`metalab.events`.
        verbose: Log the sweep's plan and outcome (store, executor, counts) to
            stderr through the ``metalab`` logger, unless logging is configured
            already (then the records go where it sends them).

    Returns:
        The handle of the sweep, which is already running.

    Raises:
        ConfigError: The store locator or config is invalid, it is scoped to another
            experiment, or the experiment's params or context have no JSON form.
        CorruptRecordError: With ``resume``, an existing record cannot be read.
    """
    if not isinstance(experiment, Experiment):
        raise TypeError(f"run() takes a metalab.Experiment, got {type(experiment).__qualname__}")
    experiment_id = experiment.experiment_id
    derived = [resolve_derived(fn) for fn in derived_metrics]
    if on_event is not None and not callable(on_event):
        raise ConfigError(f"on_event must be a callable taking an Event, got {on_event!r}")
    if verbose:
        _log_to_stderr()
    options = {} if file_root is None else {"file_root": os.fspath(file_root)}
    config = coerce_store_config(store, experiment_id=experiment_id, **options)
    context_fp, tasks, duplicates = _plan(experiment)
    if duplicates:
        logger.info("%s: %d duplicate runs left out", experiment_id, duplicates)
    connected = config.connect()
    try:
        operation = experiment.operation
        if isinstance(connected, SupportsExperimentManifests):
            connected.put_experiment_manifest(
                ExperimentManifest(
                    experiment_id=experiment_id,
                    name=experiment.name,
                    version=experiment.version,
                    submitted_at=utc_now(),
                    description=experiment.description,
                    tags=experiment.tags,
                    metadata=to_json_object(experiment.metadata, "metadata"),
                    context_fingerprint=context_fp,
                    operation=operation.to_ref(),
                    params=experiment.params.to_manifest(),
                    seeds=experiment.seeds.to_manifest(),
                    run_ids=tuple(t.run_id for t in tasks),
                    total_runs=len(tasks),
                )
            )
        pending = tasks
        if resume:
            succeeded = {
                r.run_id for r in connected.list_run_records(experiment_id) if r.status == "success"
            }
            pending = [t for t in tasks if t.run_id not in succeeded]
        pending_ids = {t.run_id for t in pending}
        chosen = executor if executor is not None else ThreadExecutor(max_workers=1)
        logger.info(
            "%s: %d runs, %d to run (%d already succeeded), store %r, executor %s",
            experiment_id,
            len(tasks),
            len(pending),
            len(tasks) - len(pending),
            connected,
            chosen.executor_id,
        )
        job = RunJob(
            experiment_id=experiment_id,
            operation=operation,
            context=experiment.context,
            context_fingerprint=context_fp,
            seed_base=experiment.seeds.base,
            tags=experiment.tags,
            code_hash=operation.code_hash,
            store_config=config.to_dict(),
        )
        handle = RunHandle(
            experiment_id=experiment_id,
            config=config,
            store=connected,
            run_ids=[t.run_id for t in tasks],
            pending=pending,
            skipped=len(tasks) - len(pending),
            executor=chosen,
            job=job,
            progress=_progress_for(progress, experiment, len(tasks)),
            derived=derived,
            on_event=on_event,
            displays=progress.displays() if isinstance(progress, ProgressOptions) else (),
            skipped_ids=[t.run_id for t in tasks if t.run_id not in pending_ids],
        )
    except BaseException:
        connected.close()
        raise
    handle._start()
    return handle
