"""Run experiments on threads of the current process."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from metalab.errors import ConfigError
from metalab.executors._base import BatchOutcome, RunJob, RunTask, execute_batch
from metalab.store.abc import Store

__all__ = ["ThreadExecutor"]


def _check_workers(max_workers: object, kind: str) -> int:
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ConfigError(f"{kind}(max_workers=...) must be a positive int, got {max_workers!r}")
    return max_workers


class ThreadExecutor:
    """Runs on a pool of threads that share the runner's connected store.

    Threads suit operations that release the GIL (NumPy, I/O, subprocesses) and
    need no pickling: the operation and context may be anything. ``cancel()`` is
    seen before every run, and by operations through ``runtime.cancel_requested``.

    Args:
        max_workers: How many runs execute at once (1 runs them one by one).

    Raises:
        ConfigError: ``max_workers`` is not a positive int.
    """

    def __init__(self, max_workers: int = 1) -> None:
        self._max_workers = _check_workers(max_workers, "ThreadExecutor")
        self._pool: ThreadPoolExecutor | None = None
        self._job: RunJob | None = None
        self._store: Store | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"ThreadExecutor(max_workers={self._max_workers})"

    @property
    def executor_id(self) -> str:
        """``"thread"``."""
        return "thread"

    @property
    def max_workers(self) -> int:
        """How many runs execute at once."""
        return self._max_workers

    def start(self, job: RunJob, store: Store) -> None:
        """Create the thread pool for ``job``.

        Raises:
            ConfigError: The executor is already running an experiment.
        """
        if self._pool is not None:
            raise ConfigError(f"{self!r} is already running an experiment; use another executor")
        self._stop.clear()
        self._job, self._store = job, store
        self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="metalab-run")

    def submit(self, tasks: Sequence[RunTask]) -> Future[BatchOutcome]:
        """Schedule a batch on the pool."""
        if self._pool is None or self._job is None or self._store is None:
            raise ConfigError(f"{self!r} was not started; the runner calls start() first")
        return self._pool.submit(
            execute_batch,
            self._job,
            self._store,
            tuple(tasks),
            executor_id=self.executor_id,
            stop=self._stop.is_set,
        )

    def cancel(self) -> None:
        """Start no more runs; each batch checks before every run."""
        self._stop.set()

    def shutdown(self, *, cancel_pending: bool = False) -> None:
        """Wait for the running batches and stop the threads."""
        if cancel_pending:
            self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel_pending)
        self._pool, self._job, self._store = None, None, None
