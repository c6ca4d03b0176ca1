"""Executors: where the runs of an experiment execute.

``metalab.run(exp, executor=...)`` accepts any :class:`Executor`. Two are built in,
both on :mod:`concurrent.futures`: :class:`ThreadExecutor` (the default, with one
worker: runs one after another) and :class:`ProcessExecutor`. :class:`DaskExecutor`
runs on a Dask ``distributed`` cluster (the ``dask`` extra, imported only when one is
created), and :func:`slurm` returns one on SLURM jobs that it submits through
dask-jobqueue (the ``slurm`` extra). A custom executor (a cluster, a job queue)
implements the protocol and runs each batch it receives with :func:`execute_batch`
against a store it connects from ``job.store_config`` (with ``record_warnings=True``
where the batch runs in another process, so that the runner can emit the runs'
warnings to the caller). One whose hand-off of a batch is costly also implements
:class:`SupportsBatchSeconds`, to receive longer batches.
"""

from __future__ import annotations

from metalab.executors._base import (
    BatchOutcome,
    Executor,
    RecordedWarning,
    RunJob,
    RunTask,
    SupportsBatchSeconds,
    execute_batch,
)
from metalab.executors._dask import DaskExecutor
from metalab.executors._process import ProcessExecutor
from metalab.executors._slurm import slurm
from metalab.executors._thread import ThreadExecutor

__all__ = [
    "BatchOutcome",
    "DaskExecutor",
    "Executor",
    "ProcessExecutor",
    "RecordedWarning",
    "RunJob",
    "RunTask",
    "SupportsBatchSeconds",
    "ThreadExecutor",
    "execute_batch",
    "slurm",
]
