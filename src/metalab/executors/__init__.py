"""Executors: where the runs of an experiment execute.

``metalab.run(exp, executor=...)`` accepts any :class:`Executor`. Two are built in,
both on :mod:`concurrent.futures`: :class:`ThreadExecutor` (the default, with one
worker: runs one after another) and :class:`ProcessExecutor`. :class:`DaskExecutor`
runs on a Dask ``distributed`` cluster (the ``dask`` extra; imported on first use). A
custom executor (a cluster, a job queue) implements the protocol and runs each batch
it receives with :func:`execute_batch` against a store it connects from
``job.store_config``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metalab.executors._base import BatchOutcome, Executor, RunJob, RunTask, execute_batch
from metalab.executors._process import ProcessExecutor
from metalab.executors._thread import ThreadExecutor

if TYPE_CHECKING:
    from metalab.executors._dask import DaskExecutor

__all__ = [
    "BatchOutcome",
    "DaskExecutor",
    "Executor",
    "ProcessExecutor",
    "RunJob",
    "RunTask",
    "ThreadExecutor",
    "execute_batch",
]


def __getattr__(name: str) -> object:
    # PEP 562: the Dask executor's module is imported only when it is asked for.
    if name == "DaskExecutor":
        from metalab.executors._dask import DaskExecutor

        return DaskExecutor
    raise AttributeError(f"module 'metalab.executors' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"DaskExecutor"})
