"""Run experiments on a pool of worker processes.

Each worker receives the job once, when it starts, with the store described by its
config dict; it connects its own store from that dict and keeps it for its lifetime
(closing it when the worker exits). Batches of tasks are all that travel afterwards,
and their outcomes come back with the warnings the runs emitted.

A worker whose coordinating process dies without shutting the pool down (SIGKILL,
the OOM killer) exits on its own within a second, abandoning the run it was
executing: that run keeps its ``running`` record and runs again on resume.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.context
import multiprocessing.util
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Final

from metalab.errors import ConfigError
from metalab.executors._base import BatchOutcome, RunJob, RunTask, execute_batch
from metalab.executors._thread import _check_workers
from metalab.store.abc import Store, StoreConfig

__all__ = ["ProcessExecutor"]

# How often a worker checks that the process that started it is still alive.
_PARENT_POLL_SECONDS: Final = 0.5

# Per worker process: the job it serves and the stores it has connected, by config.
_worker_jobs: list[RunJob] = []
_worker_stores: dict[str, Store] = {}


def _connect_cached(config: dict[str, Any]) -> Store:
    key = json.dumps(config, sort_keys=True)
    store = _worker_stores.get(key)
    if store is None:
        store = StoreConfig.from_dict(config).connect()
        _worker_stores[key] = store
        # Runs when the worker process exits normally (atexit does not, after fork).
        multiprocessing.util.Finalize(store, store.close, exitpriority=10)
    return store


def _init_worker(job: RunJob) -> None:
    # Ctrl-C in a terminal signals the whole process group. The coordinator turns it
    # into a cancel (runs at work finish, the others are recorded cancelled); a worker
    # dying of it would instead break the pool and lose that bookkeeping.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_exit_when_orphaned,
        args=(os.getppid(),),
        name="metalab-parent-watch",
        daemon=True,
    ).start()
    _worker_jobs[:] = [job]
    _connect_cached(job.store_config)


def _exit_when_orphaned(parent: int) -> None:
    """End this worker once the process that started it is gone.

    An orphaned worker would otherwise wait for work forever: the pool's call queue
    is a pipe whose write end every worker holds too, so reading it never ends.
    Nor is ``multiprocessing.parent_process().sentinel`` enough under ``fork``:
    every process the coordinating process forks afterwards (the next workers, or
    any other child) inherits the write end of this worker's sentinel pipe and
    keeps it open. A process whose parent dies is adopted by another, so
    ``getppid()`` changes, whatever the start method.
    """
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_SECONDS)
    # Not sys.exit(): the main thread may be inside a run or blocked on the call
    # queue. Nor a log record first: a handler writing to a pipe nobody reads any
    # more could block the exit.
    os._exit(1)


def _run_batch(tasks: Sequence[RunTask]) -> BatchOutcome:
    if not _worker_jobs:
        raise ConfigError("this worker process was started without a job")
    job = _worker_jobs[0]
    return execute_batch(
        job,
        _connect_cached(job.store_config),
        tasks,
        executor_id="process",
        record_warnings=True,
    )


class ProcessExecutor:
    """Runs on a pool of worker processes (``concurrent.futures.ProcessPoolExecutor``).

    Processes suit CPU-bound pure-Python operations. Workers connect their own store
    from the config (so use a store that several processes can share, such as a
    FileStore or PostgresStore; a ``memory://`` store is private to each process).
    With the ``fork`` start method (Linux's default) workers inherit the operation
    and context; with ``spawn`` or ``forkserver`` they are pickled, so the operation
    must be importable (defined at the top level of a module). A batch that has
    already reached a worker finishes even after ``cancel()``. Warnings that runs
    emit in a worker are emitted again in this process; a worker whose
    coordinating process was killed exits within a second.

    Args:
        max_workers: How many worker processes (default: the number of CPUs).
        mp_context: The multiprocessing context (start method) to use.

    Raises:
        ConfigError: ``max_workers`` is not a positive int.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        mp_context: multiprocessing.context.BaseContext | None = None,
    ) -> None:
        workers = (os.cpu_count() or 1) if max_workers is None else max_workers
        self._max_workers = _check_workers(workers, "ProcessExecutor")
        self._mp_context = mp_context
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._cancelled = False

    def __repr__(self) -> str:
        return f"ProcessExecutor(max_workers={self._max_workers})"

    @property
    def executor_id(self) -> str:
        """``"process"``."""
        return "process"

    @property
    def max_workers(self) -> int:
        """How many worker processes."""
        return self._max_workers

    def start(self, job: RunJob, store: Store) -> None:
        """Start the worker pool; each worker connects from ``job.store_config``.

        Raises:
            ConfigError: The executor is already running an experiment, or the job
                carries no store config.
        """
        del store  # never sent: workers connect their own
        if self._pool is not None:
            raise ConfigError(f"{self!r} is already running an experiment; use another executor")
        if not job.store_config:
            raise ConfigError("a process executor needs the job's store config to connect")
        self._cancelled = False
        self._pool = ProcessPoolExecutor(
            self._max_workers,
            mp_context=self._mp_context,
            initializer=_init_worker,
            initargs=(job,),
        )

    def submit(self, tasks: Sequence[RunTask]) -> Future[BatchOutcome]:
        """Send a batch to the pool (after :meth:`cancel`, report it as not started)."""
        with self._lock:
            if self._pool is None:
                raise ConfigError(f"{self!r} was not started; the runner calls start() first")
            if not self._cancelled:
                return self._pool.submit(_run_batch, tuple(tasks))
        skipped: Future[BatchOutcome] = Future()
        skipped.set_result(BatchOutcome.not_started(len(tasks)))
        return skipped

    def cancel(self) -> None:
        """Drop the batches that have not reached a worker, without waiting."""
        with self._lock:
            self._cancelled = True
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, *, cancel_pending: bool = False) -> None:
        """Wait for the batches that reached a worker and stop the workers."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=cancel_pending)
