"""metalab: reproducible experiments with a fast, typed, pluggable storage layer.

Define an :class:`Experiment` around an :func:`operation`, sweep its parameters
(:func:`grid`, :func:`manual`, :func:`random`) and seeds (:func:`seeds`), and
:func:`run` it into a store; :func:`load_results` reads the runs back for analysis.
"""

import importlib
from typing import TYPE_CHECKING, Any

from metalab._version import __version__
from metalab.capture import Capture
from metalab.context import DirPath, FilePath, context_spec, dir_hash, file_hash
from metalab.events import Event, EventCallback, EventKind
from metalab.executors import DaskExecutor, Executor, ProcessExecutor, ThreadExecutor
from metalab.experiment import Experiment, Operation, Runtime, operation
from metalab.params import (
    ParamSource,
    choice,
    grid,
    loguniform,
    loguniform_int,
    manual,
    randint,
    random,
    uniform,
    with_resolver,
)
from metalab.progress import MetricDisplay, Progress
from metalab.reconnect import ReconnectedHandle, reconnect

# Names metalab 0.1 users import from the top level. Records and the file store are
# loaded by ``import metalab`` anyway; the Postgres config only on first use (PEP 562),
# behind TYPE_CHECKING so that type checkers still flag a misspelt ``metalab.name``.
from metalab.records import ArtifactDescriptor, Provenance, RunRecord
from metalab.records import RunState as Status
from metalab.results import Results, Run, load_results
from metalab.runner import RunCounts, RunHandle, run
from metalab.seeds import SeedBundle, SeedPlan, seeds
from metalab.series import MetricSeries
from metalab.store import FileStore, FileStoreConfig, Store, StoreConfig

if TYPE_CHECKING:
    from metalab.store import PostgresStoreConfig
else:

    def __getattr__(name: str) -> Any:
        if name != "PostgresStoreConfig":
            raise AttributeError(f"module 'metalab' has no attribute {name!r}")
        value = importlib.import_module("metalab.store").PostgresStoreConfig
        globals()[name] = value
        return value


__all__ = [
    "ArtifactDescriptor",
    "Capture",
    "DaskExecutor",
    "DirPath",
    "Event",
    "EventCallback",
    "EventKind",
    "Executor",
    "Experiment",
    "FilePath",
    "FileStore",
    "FileStoreConfig",
    "MetricDisplay",
    "MetricSeries",
    "Operation",
    "ParamSource",
    "PostgresStoreConfig",
    "ProcessExecutor",
    "Progress",
    "Provenance",
    "ReconnectedHandle",
    "Results",
    "Run",
    "RunCounts",
    "RunHandle",
    "RunRecord",
    "Runtime",
    "SeedBundle",
    "SeedPlan",
    "Status",
    "Store",
    "StoreConfig",
    "ThreadExecutor",
    "__version__",
    "choice",
    "context_spec",
    "dir_hash",
    "file_hash",
    "grid",
    "load_results",
    "loguniform",
    "loguniform_int",
    "manual",
    "operation",
    "randint",
    "random",
    "reconnect",
    "run",
    "seeds",
    "uniform",
    "with_resolver",
]
