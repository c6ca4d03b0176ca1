"""metalab: reproducible experiments with a fast, typed, pluggable storage layer.

Define an :class:`Experiment` around an :func:`operation`, sweep its parameters
(:func:`grid`, :func:`manual`, :func:`random`) and seeds (:func:`seeds`), and
:func:`run` it into a store; :func:`load_results` reads the runs back for analysis.
"""

from typing import TYPE_CHECKING

from metalab._version import __version__
from metalab.capture import Capture
from metalab.executors import Executor, ProcessExecutor, ThreadExecutor
from metalab.experiment import Experiment, Operation, Runtime, operation
from metalab.params import (
    ParamSource,
    choice,
    grid,
    loguniform,
    manual,
    randint,
    random,
    uniform,
)
from metalab.results import Results, Run, load_results
from metalab.runner import RunCounts, RunHandle, run
from metalab.seeds import SeedBundle, SeedPlan, seeds

if TYPE_CHECKING:
    from metalab.executors import DaskExecutor

__all__ = [
    "Capture",
    "DaskExecutor",
    "Executor",
    "Experiment",
    "Operation",
    "ParamSource",
    "ProcessExecutor",
    "Results",
    "Run",
    "RunCounts",
    "RunHandle",
    "Runtime",
    "SeedBundle",
    "SeedPlan",
    "ThreadExecutor",
    "__version__",
    "choice",
    "grid",
    "load_results",
    "loguniform",
    "manual",
    "operation",
    "randint",
    "random",
    "run",
    "seeds",
    "uniform",
]


def __getattr__(name: str) -> object:
    # PEP 562: DaskExecutor's module is imported only when it is asked for.
    if name == "DaskExecutor":
        from metalab.executors._dask import DaskExecutor

        return DaskExecutor
    raise AttributeError(f"module 'metalab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"DaskExecutor"})
