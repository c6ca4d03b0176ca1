"""metalab: reproducible experiments with a fast, typed, pluggable storage layer.

Define an :class:`Experiment` around an :func:`operation`, sweep its parameters
(:func:`grid`, :func:`manual`, :func:`random`) and seeds (:func:`seeds`), and
:func:`run` it into a store; :func:`load_results` reads the runs back for analysis.
"""

from metalab._version import __version__
from metalab.capture import Capture
from metalab.executors import DaskExecutor, Executor, ProcessExecutor, ThreadExecutor
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
from metalab.series import MetricSeries

__all__ = [
    "Capture",
    "DaskExecutor",
    "Executor",
    "Experiment",
    "MetricSeries",
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
