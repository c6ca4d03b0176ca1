"""Run experiments on SLURM: a :class:`DaskExecutor` on a dask-jobqueue cluster it owns.

:func:`slurm` starts a ``dask_jobqueue.SLURMCluster`` (its Dask scheduler runs in this
process), submits the jobs with ``sbatch`` and returns the executor; closing the
executor cancels the jobs. ``docs/dask.md`` has the recipe and what the cluster's
filesystem and database must provide.
"""

from __future__ import annotations

from typing import Any

from metalab import _optional
from metalab.errors import ConfigError
from metalab.executors._dask import DaskExecutor

__all__ = ["slurm"]


def _positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"slurm({name}=...) must be a positive integer, got {value!r}")
    return value


def _text(value: object, name: str, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"slurm({name}=...) must be a string such as {example!r}, got {value!r}")
    return value


def slurm(
    *,
    cores: int,
    memory: str,
    walltime: str,
    jobs: int = 1,
    **kwargs: Any,
) -> DaskExecutor:
    """A :class:`DaskExecutor` on SLURM jobs that it submits, for ``metalab.run``.

    >>> with metalab.executors.slurm(  # doctest: +SKIP
    ...     cores=32, memory="120GB", walltime="04:00:00", jobs=8, queue="compute"
    ... ) as executor:
    ...     metalab.run(exp, store="/scratch/me/experiments", executor=executor).result()

    It starts a ``dask_jobqueue.SLURMCluster(cores=..., memory=..., walltime=...,
    **kwargs)``, whose Dask scheduler runs in this process, and keeps ``jobs`` jobs
    of it in SLURM's queue: a job that ends (its walltime ran out, it was cancelled)
    is submitted again, so a sweep longer than the walltime goes on. Each job runs
    one single-threaded worker process per core unless ``processes`` says
    otherwise, and the executor keeps ``jobs * cores`` runs in flight from the
    start, before the jobs leave the queue. The store's files must be on a
    filesystem that this process and the compute nodes share.

    Closing the executor (``executor.close()``, or leaving its ``with`` block)
    cancels the jobs and stops the scheduler; so does the end of the process.

    Args:
        cores: Cores per job (``#SBATCH --cpus-per-task``).
        memory: Memory per job, such as ``"4GB"`` (``#SBATCH --mem``).
        walltime: Time limit per job, ``"HH:MM:SS"`` (``#SBATCH -t``).
        jobs: How many jobs to keep in the queue.
        **kwargs: More arguments of ``SLURMCluster``: ``queue``, ``account``,
            ``processes``, ``job_script_prologue`` (to activate the environment on
            the nodes), ``job_extra_directives``, ``log_directory``,
            ``worker_extra_args``, ``interface``, ``scheduler_options`` ... (see
            dask-jobqueue's documentation; the same settings can come from its
            ``jobqueue.yaml``).

    Returns:
        The executor; :meth:`DaskExecutor.job_script` shows the script each job
        runs.

    Raises:
        MissingDependencyError: ``dask-jobqueue`` is not installed
            (``pip install 'metalab[slurm]'``).
        ConfigError: ``cores``, ``jobs``, ``memory`` or ``walltime`` is invalid.
        ValueError: dask-jobqueue refused an argument.
    """
    _optional.require("dask_jobqueue", extra="slurm", feature="metalab.executors.slurm()")
    from dask_jobqueue.slurm import SLURMCluster  # noqa: PLC0415 -- optional (slurm extra)
    from distributed import Client  # noqa: PLC0415 -- optional (dask extra)

    cores = _positive(cores, "cores")
    jobs = _positive(jobs, "jobs")
    memory = _text(memory, "memory", "4GB")
    walltime = _text(walltime, "walltime", "01:00:00")
    kwargs.setdefault("processes", cores)
    cluster = SLURMCluster(cores=cores, memory=memory, walltime=walltime, **kwargs)
    try:
        # adapt() with a fixed size, not scale(): it submits a job again when one
        # ends, which scale() does not.
        cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)
        client = Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    executor = DaskExecutor(client, max_workers=jobs * cores)
    executor._adopt(cluster)  # the executor closes what it owns
    return executor
