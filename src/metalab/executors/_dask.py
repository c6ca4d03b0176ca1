"""Run experiments on a Dask ``distributed`` cluster.

A :class:`DaskExecutor` hands batches of runs to the workers of a ``distributed``
cluster: a ``LocalCluster``, a cluster that ``dask-jobqueue`` starts on SLURM, PBS,
SGE or LSF, or one on Kubernetes. Workers never receive a live store: the job (the
operation, the context and the store config as a dict) becomes one task of the
cluster, and each worker process connects its own store from that config once and
keeps it. The store's files must be on a filesystem that every worker and the
coordinating process (the one that calls ``run()``) share.

**Index writes do not scale with the workers.** With a store that indexes files
another store holds (:class:`~metalab.store.abc.SupportsIndexedFiles`: a PostgresStore
over its FileStore), workers connect only the files' store:
no worker opens a database connection, and the connection string never leaves the
coordinating process. Each batch sends the final records of its runs back, and the
coordinating process writes them to the index in bulk (``put_run_records``), at most
once per ``index_interval`` seconds whatever the number of workers. What a lost
batch wrote to the files is indexed by ``sync_index()`` at the end of the sweep, and
so are the metric series the workers appended to the files.

**Cancellation** sets a Dask ``Event`` on the scheduler. A thread of each worker process
polls it every 0.1 s while the process runs the sweep's batches, and each run checks
the answer before it starts (as does an operation that reads
``runtime.cancel_requested``): runs that have not started are recorded ``cancelled``
and running ones finish, as with the local executors.

**Warnings** that runs emit on a worker (from the operation or the store) travel back
with their batch's outcome, and the coordinating process emits each distinct one
once per sweep, where the caller of ``run()`` sees it.

**When a worker dies**, Dask runs its batches again on another worker, up to the
scheduler's ``distributed.scheduler.allowed-failures``; a batch whose outcome has
already reached the coordinating process counts as done, even when its worker dies
afterwards and the scheduler reports it lost. If that report is in when the outcome is
settled, the batch's next execution (which rewrites its runs) is waited for and its
outcome is the one indexed; a report that comes later, while the batch is released,
can still let the scheduler start it again, and then its runs are written twice
(``sync_index()`` brings the index up to such a rewrite). A run that keeps killing its
workers ends the sweep with Dask's ``KilledWorker``; its ``running`` record stays, and
the next resume runs it again.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import multiprocessing.util
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, Self, runtime_checkable

from metalab import _optional
from metalab.errors import ConfigError, IndexUnavailableError
from metalab.executors._base import BatchOutcome, RunJob, RunTask, _execute_tasks
from metalab.executors._thread import _check_workers
from metalab.experiment import Operation
from metalab.records import RunRecord
from metalab.store import (
    Store,
    StoreConfig,
    SupportsBulkPut,
    SupportsIndexedFiles,
    SupportsIndexSync,
    SupportsWorkingDirectory,
)

if TYPE_CHECKING:
    from distributed import Client, Event
    from distributed import Future as DaskFuture

__all__ = ["DaskExecutor"]

logger = logging.getLogger(__name__)

_EXECUTOR_ID: Final = "dask"
# How often a worker process asks the scheduler whether its sweep was cancelled, while
# it runs batches of that sweep; it stops asking after a pause this long.
_CANCEL_POLL_SECONDS: Final = 0.1
_CANCEL_IDLE_SECONDS: Final = 2.0
# A worker process keeps what it connected for this many recent sweeps.
_MAX_WORKER_SWEEPS: Final = 8
# Seconds of work per batch (the runner's default is 0.05 s). Each batch is a task
# that the scheduler places, ships and tracks, and whose outcome the coordinating
# process fetches: a few milliseconds of CPU, on the machine that runs the
# scheduler (with a LocalCluster, the workers' own), per batch. Longer batches keep
# that a small share of the work, at the cost of coarser live counts and of a
# run reaching the index up to one batch later.
_BATCH_SECONDS: Final = 0.2


# Worker side. These functions run in the worker processes, which import this module.


def _cancel_event_name(token: str) -> str:
    return f"metalab-cancel-{token}"


class _WorkerSweep:
    """What a worker process keeps for one sweep: its store and its cancel flag.

    Attributes:
        config: The store config the worker received (a dict, never a live store).
        store: The store connected from it, once per process and sweep.
        cancelled: The sweep's cancel flag, as this process sees it.
    """

    def __init__(self, token: str, config: dict[str, Any]) -> None:
        self.config = config
        self.store = StoreConfig.from_dict(config).connect()
        self.cancelled = _CancelFlag(_cancel_event_name(token))


_worker_lock = threading.Lock()
_worker_sweeps: dict[str, _WorkerSweep] = {}


def _worker_sweep(token: str, config: dict[str, Any]) -> _WorkerSweep:
    """The worker state of a sweep, created by its first batch in this process.

    Each sweep connects its own store: worker processes outlive sweeps, and a store
    kept from an earlier sweep could describe a directory deleted since.
    """
    with _worker_lock:
        sweep = _worker_sweeps.pop(token, None)
        if sweep is None:
            if not _worker_sweeps:
                # Runs when the worker process exits normally (multiprocessing's hook).
                multiprocessing.util.Finalize(None, _close_worker_sweeps, exitpriority=10)
            sweep = _WorkerSweep(token, config)
            while len(_worker_sweeps) >= _MAX_WORKER_SWEEPS:
                _worker_sweeps.pop(next(iter(_worker_sweeps))).store.close()
        _worker_sweeps[token] = sweep  # last: the most recently used
    return sweep


def _close_worker_sweeps() -> None:
    with _worker_lock:
        sweeps = list(_worker_sweeps.values())
        _worker_sweeps.clear()
    for sweep in sweeps:
        sweep.store.close()


class _CancelFlag:
    """A sweep's cancel event as one worker process sees it.

    Asking the scheduler is a round trip; doing it before every run would put it on
    every batch's path. Instead, a thread keeps the answer fresh (one question every
    0.1 s) while this process runs batches of the sweep, and stops when they stop
    coming; a run that finds the answer stale (the first of the process, or after a
    pause) asks itself.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._event: Event | None = None
        self._set = False
        self._fresh_until = -math.inf
        self._last_used = -math.inf
        self._polling = False

    def __call__(self) -> bool:
        if self._set:
            return True
        now = time.monotonic()
        self._last_used = now
        if now >= self._fresh_until:
            with self._lock:
                if time.monotonic() >= self._fresh_until:
                    self._refresh()
                if not self._polling and not self._set:
                    self._polling = True
                    threading.Thread(
                        target=self._poll, name=f"metalab-{self._name}", daemon=True
                    ).start()
        return self._set

    def _refresh(self) -> bool:
        """Ask the scheduler; return ``False`` if this worker's client is closing."""
        if self._event is None:
            from distributed import Event, get_client  # noqa: PLC0415 -- optional (dask extra)

            # Bound to this worker's client here, in a task's thread, where
            # get_client() knows the worker; the polling thread reuses it.
            self._event = Event(self._name, client=get_client())
        if self._event.client.status != "running":
            return False
        try:
            self._set = bool(self._event.is_set())
        except OSError:
            # The scheduler did not answer (Dask's comm errors are OSErrors). Runs go
            # on: if the scheduler is gone for good, Dask stops this worker anyway.
            logger.debug("cannot read cancel event %s", self._name, exc_info=True)
        self._fresh_until = time.monotonic() + 2 * _CANCEL_POLL_SECONDS
        return True

    def _poll(self) -> None:
        while True:
            time.sleep(_CANCEL_POLL_SECONDS)
            with self._lock:
                idle = time.monotonic() - self._last_used > _CANCEL_IDLE_SECONDS
                if self._set or idle or not self._refresh():
                    self._polling = False
                    return


@dataclass(frozen=True)
class _BatchResult:
    """What a batch sends back to the coordinating process.

    Attributes:
        outcome: The status of each task and the seconds the runs took, or
            ``None`` when ``interrupted``.
        records: The final records of the runs that ran, as they were written to
            the files, when the coordinating process indexes them.
        interrupted: ``KeyboardInterrupt`` or ``SystemExit`` raised by an operation.
    """

    outcome: BatchOutcome | None
    records: tuple[RunRecord, ...] = ()
    interrupted: BaseException | None = None


def _provide_job(job: RunJob) -> RunJob:
    """The job's task: its result stays on the workers, and Dask recomputes it if lost."""
    return job


def _run_batch(
    job: RunJob, token: str, send_records: bool, tasks: tuple[RunTask, ...]
) -> _BatchResult:
    sweep = _worker_sweep(token, job.store_config)
    try:
        outcome, finals = _execute_tasks(
            job,
            sweep.store,
            tasks,
            executor_id=_EXECUTOR_ID,
            stop=sweep.cancelled,
            record_warnings=True,
        )
    except (KeyboardInterrupt, SystemExit) as exc:
        # Raised out of a task, these two would shut the Dask worker down. The run
        # has recorded itself as cancelled; the sweep ends with the exception, as it
        # does with the other executors.
        return _BatchResult(None, (), exc)
    return _BatchResult(outcome, tuple(finals) if send_records else ())


class _ScriptOperation(Operation):
    """An operation defined in ``__main__`` (a script, a notebook), sent by value.

    An :class:`Operation` pickles by reference, but a worker's ``__main__`` is Dask's,
    not the user's script. Reduced to its function instead, a reference into
    ``__main__``, it makes Dask pickle the job again with cloudpickle, which sends
    ``__main__`` functions by value.
    """

    def __reduce__(self) -> tuple[Callable[..., Operation], tuple[Any, ...]]:
        return _script_operation, (self.func, self.name)


def _script_operation(func: Callable[..., object], name: str) -> Operation:
    return _ScriptOperation(func, name=name)


def _portable(operation: Operation) -> Operation:
    if operation.ref.partition(":")[0] != "__main__":
        return operation
    return _ScriptOperation(operation.func, name=operation.name)


# Coordinating side.


@runtime_checkable
class _IndexedFiles(SupportsIndexedFiles, SupportsBulkPut, SupportsIndexSync, Protocol):
    """A store whose files workers may write while this process indexes them."""


class _Indexer:
    """Writes the final records of finished runs to an indexed store, in bulk, from one thread.

    Records that arrive after a quiet spell are written at once; later ones are
    gathered until ``interval`` seconds after the previous write *began*, so the index
    gets at most one bulk write per interval however many workers finish runs, and a
    write that takes longer than the interval is followed at once by the next one
    (instead of by a further interval, which would let a backlog grow: records would
    wait ever longer while runs finish faster than they are indexed).
    """

    def __init__(self, store: SupportsBulkPut, interval: float) -> None:
        self._store = store
        self._interval = interval
        self._pending: list[RunRecord] = []
        self._closing = False
        self._cond = threading.Condition()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="metalab-dask-index", daemon=True)
        self._thread.start()

    def put(self, records: Sequence[RunRecord]) -> None:
        if records:
            with self._cond:
                self._pending.extend(records)
                self._cond.notify()

    def close(self) -> None:
        """Write what is pending and stop; raise the error that stopped the writes, if any."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._closing)
                batch, self._pending = self._pending, []
                if not batch:
                    return  # closing, and nothing left to write
            began = time.monotonic()
            try:
                self._store.put_run_records(batch)
            except Exception as exc:  # noqa: BLE001 -- handed over: close() and the next batches raise it
                self.error = exc
                return
            with self._cond:
                rest = began + self._interval - time.monotonic()
                if rest > 0:
                    self._cond.wait_for(lambda: self._closing, timeout=rest)


@dataclass(eq=False)
class _Sweep:
    """What one ``start()`` ... ``shutdown()`` of a DaskExecutor holds."""

    client: Client
    owns_client: bool
    job: DaskFuture[RunJob]
    token: str
    threads: int
    indexed: _IndexedFiles | None
    indexer: _Indexer | None
    outstanding: set[Future[BatchOutcome]] = field(default_factory=set)
    # The Dask futures of the batches not yet settled, for _release() to wait on if
    # shutdown() is interrupted while they run.
    batches: dict[str, DaskFuture[_BatchResult]] = field(default_factory=dict)
    serial: itertools.count[int] = field(default_factory=itertools.count)
    cancelled: bool = False
    lost: bool = False
    cancelling: threading.Thread | None = None


class DaskExecutor:
    """Runs on the workers of a Dask ``distributed`` cluster.

    ``DaskExecutor(client)`` uses a connected ``distributed.Client`` (and leaves it
    open); ``DaskExecutor("tcp://host:8786")`` connects to that scheduler for each
    sweep and disconnects afterwards. Each worker thread runs one batch of runs at a
    time; the sweep keeps a few more batches per thread in flight, queued on the
    cluster, so that no worker waits for a round trip to this process between two
    batches.

    Workers connect their own store from the job's config, on a filesystem they
    share with this process (a ``memory://`` store is refused). With a
    PostgresStore, workers write only the files and this process indexes the
    finished runs in bulk (see the module docstring). Operations defined in a
    script or notebook (``__main__``) are sent by value; operations in a module are
    sent by reference, so the module must be importable on every worker.

    :func:`metalab.executors.slurm` returns one that owns its client and cluster:
    :meth:`close` (or the end of a ``with`` block) closes them. A client or address
    given here is the caller's, and ``close()`` leaves it alone.

    Args:
        client: A ``distributed.Client``, or the address of a scheduler
            (``"tcp://10.0.0.5:8786"``, ``cluster.scheduler_address``).
        max_workers: How many runs execute at once; default: the number of worker
            threads when the sweep starts. Set it for a cluster that scales up
            later (adaptive, or dask-jobqueue jobs still queued).
        index_interval: Seconds from the start of one bulk index write of an indexed
            store to the start of the next, at least.
        worker_timeout: Seconds to wait for a first worker when the cluster has
            none and ``max_workers`` is not given; ``None`` waits as long as it takes.

    Raises:
        MissingDependencyError: ``distributed`` is not installed
            (``pip install 'metalab[dask]'``).
        ConfigError: An argument is invalid.
    """

    def __init__(
        self,
        client: Client | str,
        *,
        max_workers: int | None = None,
        index_interval: float = 0.1,
        worker_timeout: float | None = None,
    ) -> None:
        _optional.require("distributed", extra="dask", feature="DaskExecutor")
        from distributed import Client  # noqa: PLC0415 -- optional (dask extra)

        if isinstance(client, str):
            if not client.strip():
                raise ConfigError(
                    "DaskExecutor needs a scheduler address such as 'tcp://127.0.0.1:8786', got ''"
                )
        elif not isinstance(client, Client):
            raise ConfigError(
                f"DaskExecutor takes a distributed.Client or a scheduler address such as "
                f"'tcp://127.0.0.1:8786', got {client!r}"
            )
        self._target = client
        self._max_workers = (
            None if max_workers is None else _check_workers(max_workers, "DaskExecutor")
        )
        self._index_interval = _check_seconds(index_interval, "index_interval")
        self._worker_timeout = (
            None if worker_timeout is None else _check_seconds(worker_timeout, "worker_timeout")
        )
        self._threads = 1
        self._lock = threading.Lock()
        self._starting = False
        self._sweep: _Sweep | None = None
        # A cluster this executor started (metalab.executors.slurm()): close() closes it
        # and the client on it.
        self._cluster: _JobQueueCluster | None = None

    def __repr__(self) -> str:
        target = repr(self._target) if isinstance(self._target, str) else "<distributed.Client>"
        return f"DaskExecutor({target}, max_workers={self.max_workers})"

    @property
    def executor_id(self) -> str:
        """``"dask"``."""
        return _EXECUTOR_ID

    @property
    def max_workers(self) -> int:
        """How many runs execute at once (the cluster's threads when the last sweep started)."""
        return self._threads if self._max_workers is None else self._max_workers

    @property
    def batch_seconds(self) -> float:
        """Seconds of work per batch: longer than the runner's default, to amortise the scheduler."""
        return _BATCH_SECONDS

    def job_script(self) -> str:
        """The batch script that each job of the cluster runs, from ``dask-jobqueue``.

        The cluster is the one :func:`metalab.executors.slurm` started, or the cluster
        object of the client given (a ``dask_jobqueue.SLURMCluster``, ``PBSCluster``
        ...). Its worker command names a placeholder worker (``dummy-name``); each job
        gets its own name.

        Returns:
            The script: the ``#SBATCH`` (or ``#PBS`` ...) directives, the prologue and
            the command that starts the workers.

        Raises:
            ConfigError: The executor's cluster submits no jobs (a scheduler address,
                or a cluster that is not a dask-jobqueue one).
        """
        cluster: object = self._cluster
        if cluster is None and not isinstance(self._target, str):
            cluster = getattr(self._target, "cluster", None)
        script = getattr(cluster, "job_script", None)
        if not callable(script):
            raise ConfigError(
                f"{self!r} has no job script: its cluster is not a dask-jobqueue cluster"
            )
        return str(script())

    def start(self, job: RunJob, store: Store) -> None:
        """Connect to the cluster and send it the job.

        Raises:
            ConfigError: The executor is already running an experiment, or the
                store cannot be shared with workers (``memory://``, no config).
            TimeoutError: No worker joined within ``worker_timeout``.
            OSError: The scheduler cannot be reached.
        """
        with self._lock:
            if self._sweep is not None or self._starting:
                raise ConfigError(
                    f"{self!r} is already running an experiment; use another executor"
                )
            self._starting = True
        try:
            sweep = self._open(job, store)
        finally:
            with self._lock:
                self._starting = False
        with self._lock:
            self._sweep = sweep

    def _open(self, job: RunJob, store: Store) -> _Sweep:
        if not job.store_config:
            raise ConfigError(
                "a DaskExecutor needs the job's store config: workers connect their own"
            )
        config = StoreConfig.from_dict(job.store_config)
        shipped_config = job.store_config
        indexed = store if isinstance(store, _IndexedFiles) else None
        if indexed is not None:
            # Workers write the files only; this process indexes what they finish.
            config = indexed.files_config
            shipped_config = config.to_dict()
        if config.process_local:
            raise ConfigError(
                "the workers of a DaskExecutor run in other processes, which cannot see a "
                f"{config.scheme}:// store (it lives in this process's memory); use a "
                "FileStore or PostgresStore on a filesystem they share"
            )
        shipped = dataclasses.replace(
            job, operation=_portable(job.operation), store_config=shipped_config
        )
        client, owns_client = self._connect()
        try:
            threads = self._max_workers or self._cluster_threads(client)
            token = uuid.uuid4().hex
            job_future: DaskFuture[RunJob] = client.submit(
                _provide_job, shipped, key=f"metalab-job-{token}", pure=False
            )
        except BaseException:
            if owns_client:
                client.close()
            raise
        self._threads = threads
        return _Sweep(
            client=client,
            owns_client=owns_client,
            job=job_future,
            token=token,
            threads=threads,
            indexed=indexed,
            indexer=None if indexed is None else _Indexer(indexed, self._index_interval),
        )

    def _connect(self) -> tuple[Client, bool]:
        if not isinstance(self._target, str):
            return self._target, False
        from distributed import Client  # noqa: PLC0415 -- optional (dask extra)

        # Not the default client: a sweep must not change what the user's own
        # dask code talks to.
        return Client(self._target, set_as_default=False), True

    def _cluster_threads(self, client: Client) -> int:
        threads: dict[str, int] = client.nthreads()
        if not threads:
            logger.info("waiting for a worker to join the dask cluster of %r", client)
            client.wait_for_workers(1, timeout=self._worker_timeout)
            threads = client.nthreads()
        return max(1, sum(threads.values()))

    def submit(self, tasks: Sequence[RunTask]) -> Future[BatchOutcome]:
        """Send a batch to the cluster (after :meth:`cancel`, report it as not started)."""
        with self._lock:
            sweep = self._sweep
            if sweep is None:
                raise ConfigError(f"{self!r} was not started; the runner calls start() first")
            if sweep.cancelled:
                skipped: Future[BatchOutcome] = Future()
                skipped.set_result(BatchOutcome.not_started(len(tasks)))
                return skipped
            key = f"metalab-batch-{sweep.token}-{next(sweep.serial)}"
            outer: Future[BatchOutcome] = Future()
            sweep.outstanding.add(outer)
        # Outside the lock, which _settle() takes: nothing here may wait for Dask's
        # event loop while holding it.
        try:
            batch: DaskFuture[_BatchResult] = sweep.client.submit(
                _run_batch,
                sweep.job,
                sweep.token,
                sweep.indexer is not None,
                tuple(tasks),
                key=key,
                pure=False,
                retries=0,
            )
            with self._lock:
                sweep.batches[key] = batch
            loop = sweep.client.loop
            assert loop is not None, "a connected client has an event loop"
            loop.add_callback(self._fetch, sweep, outer, key, batch)
        except BaseException:
            with self._lock:
                sweep.outstanding.discard(outer)
                sweep.batches.pop(key, None)
            raise
        return outer

    async def _fetch(
        self,
        sweep: _Sweep,
        outer: Future[BatchOutcome],
        key: str,
        batch: DaskFuture[_BatchResult],
    ) -> None:
        """Wait for a batch on Dask's event loop, fetch its outcome and settle it.

        What settles the batch is an outcome the fetch returned, never the future's
        status read afterwards: the worker that holds a finished batch can die just
        after its outcome arrived, and the scheduler then reports the batch lost and
        runs it again, which must not turn an outcome in hand into a failure. That
        execution rewrites the batch's runs, so while the loss is known the batch is
        fetched again and settled from its latest outcome, which holds the records the
        files now hold. A batch lost before its outcome arrived is fetched once it has
        run again.
        """
        result: _BatchResult | None = None
        error: BaseException | None = None
        try:
            result = await sweep.client.gather(batch, asynchronous=True)
        except BaseException as exc:  # noqa: BLE001 -- the batch's error ends the sweep
            error = exc
            if batch.cancelled():
                error = CancelledError(
                    f"dask cancelled batch {key!r} (its client was closed or restarted, or "
                    "lost the scheduler); runs it did not finish run again on resume"
                )
        while result is not None and batch.status == "lost":
            try:
                result = await sweep.client.gather(batch, asynchronous=True)
            except BaseException:  # the outcome in hand stands
                # Settling writes its records over what the failed execution wrote;
                # that execution's series, logs and artifacts are re-read from the
                # files into the index by shutdown().
                logger.debug("dask batch %s failed when it ran again", key, exc_info=True)
                with self._lock:
                    sweep.lost = True
                break
        self._settle(sweep, outer, key, result, error)

    def _settle(
        self,
        sweep: _Sweep,
        outer: Future[BatchOutcome],
        key: str,
        result: _BatchResult | None,
        error: BaseException | None,
    ) -> None:
        """Pass a batch's outcome on to the runner; called on Dask's event loop, so quick."""
        if result is not None:
            error = result.interrupted
        with self._lock:
            sweep.batches.pop(key, None)
        if error is not None or result is None or result.outcome is None:
            logger.debug("dask batch %s ended with %r", key, error)
            with self._lock:
                sweep.lost = True
                sweep.outstanding.discard(outer)
            outer.set_exception(error or CancelledError(f"dask batch {key!r} sent no outcome"))
            return
        if sweep.indexer is not None:
            sweep.indexer.put(result.records)
            error = sweep.indexer.error
        with self._lock:
            sweep.outstanding.discard(outer)
        if error is not None:
            outer.set_exception(error)
        else:
            outer.set_result(result.outcome)

    def cancel(self) -> None:
        """Start no more runs: workers see the cancel before their next run."""
        with self._lock:
            sweep = self._sweep
            if sweep is None or sweep.cancelled:
                return
            sweep.cancelled = True
            # Setting the event is a round trip to the scheduler; cancel() must not block.
            sweep.cancelling = threading.Thread(
                target=_set_event, args=(sweep,), name="metalab-dask-cancel", daemon=True
            )
            sweep.cancelling.start()

    def shutdown(self, *, cancel_pending: bool = False) -> None:
        """Wait for the batches sent, index what they finished, and leave the cluster.

        Raises:
            StoreError: Indexing the finished runs failed (they are in the files;
                ``sync_index()`` indexes them).
        """
        if cancel_pending:
            self.cancel()
        with self._lock:
            sweep = self._sweep
        if sweep is None:
            return
        try:
            if sweep.cancelling is not None:
                sweep.cancelling.join()
            with self._lock:
                outstanding = list(sweep.outstanding)
            futures.wait(outstanding)
            if sweep.indexer is not None:
                sweep.indexer.close()
            if sweep.indexed is not None and (sweep.lost or _series_written(sweep.indexed)):
                _sync_index(sweep.indexed)
        finally:
            with self._lock:
                self._sweep = None
            _release(sweep)

    def close(self) -> None:
        """Close the client and the cluster that this executor started; idempotent.

        An executor from :func:`metalab.executors.slurm` owns its dask-jobqueue
        cluster: closing it cancels the cluster's jobs (``scancel``) and stops its
        scheduler. A client given to ``DaskExecutor(client)`` belongs to the caller and
        stays open. A sweep still running is cancelled first, and the batches it has
        on the cluster are lost (the runs they did not finish run again on resume):
        close after ``handle.result()``.
        """
        with self._lock:
            cluster, self._cluster = self._cluster, None
        if cluster is None:
            return
        self.cancel()
        try:
            if not isinstance(self._target, str):
                self._target.close()
        finally:
            cluster.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _adopt(self, cluster: _JobQueueCluster) -> None:
        """Own ``cluster`` and the client on it: :meth:`close` closes both."""
        self._cluster = cluster


class _JobQueueCluster(Protocol):
    """What :class:`DaskExecutor` uses of a cluster it owns (a dask-jobqueue cluster)."""

    def job_script(self) -> str: ...

    def close(self) -> object: ...


def _check_seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(
            f"DaskExecutor({name}=...) must be a positive number of seconds, got {value!r}"
        )
    return float(value)


def _set_event(sweep: _Sweep) -> None:
    from distributed import Event  # noqa: PLC0415 -- optional (dask extra)

    try:
        Event(_cancel_event_name(sweep.token), client=sweep.client).set()
    except OSError:
        logger.warning(
            "could not tell the dask scheduler to cancel; the batches already sent will run",
            exc_info=True,
        )


def _sync_index(store: _IndexedFiles) -> None:
    """Index what lost batches wrote to the files (runs finished, ``running`` records)."""
    try:
        store.sync_index()
    except IndexUnavailableError as exc:
        logger.warning("%s; the runs of lost dask batches are in the files, not yet indexed", exc)


def _series_written(store: _IndexedFiles) -> bool:
    """Whether the sweep's directory holds series files, which reach the index by a sync.

    Workers write them to the files only: the records of their runs come back to be
    indexed, the points do not.
    """
    if not isinstance(store, SupportsWorkingDirectory):
        return False
    try:
        with os.scandir(store.get_working_directory() / "series") as entries:
            return any(entry.name.endswith(".jsonl") for entry in entries)
    except FileNotFoundError:
        return False


def _release(sweep: _Sweep) -> None:
    """Free what the sweep holds on the cluster and leave it."""
    from distributed import wait  # noqa: PLC0415 -- optional (dask extra)

    # Batches still on the cluster (the wait for them was interrupted) finish first,
    # so that none of them writes after the sweep has ended.
    batches = list(sweep.batches.values())
    if batches:
        wait(batches)
    sweep.job.release()
    if sweep.cancelled:
        from distributed import Event  # noqa: PLC0415 -- optional (dask extra)

        try:
            # A cleared event is forgotten by the scheduler.
            Event(_cancel_event_name(sweep.token), client=sweep.client).clear()
        except OSError:
            logger.debug("could not clear the cancel event of %s", sweep.token, exc_info=True)
    if sweep.owns_client:
        sweep.client.close()
