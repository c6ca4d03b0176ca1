"""The frame of metalab 0.1's ``to_dataframe(include_*=, derived_metrics=, artifact_reducers=)``.

Built when a 0.1 script passes one of those options, so that it keeps reading the
columns it was written for: ``param_<name>`` for params, each metric under its bare
name, ``derived_<name>`` for stored derived metrics, and the columns that the
functions it passes return. Everything else about metalab's own frame (typed
columns, ``params.x`` names) is in :mod:`metalab.results._frames`.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from metalab._optional import require
from metalab._progress import progress_bar
from metalab.errors import ArtifactNotFoundError, MetalabWarning
from metalab.results._derived import DerivedFn, name_of, resolve_derived

if TYPE_CHECKING:
    import pandas as pd

    from metalab.results._results import Results
    from metalab.results._run import Run

__all__ = ["ArtifactReducer", "frame_0_1"]

ArtifactReducer: TypeAlias = Callable[..., Mapping[str, Any]]
"""``reducer(artifact)`` or ``reducer(artifact, run)``: columns from a loaded artifact."""


def _wants_run(reducer: ArtifactReducer) -> bool:
    """Whether a reducer takes the run too (two or more required parameters), as in 0.1."""
    try:
        parameters = inspect.signature(reducer).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: one argument
        return False
    required = [
        p
        for p in parameters
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(required) >= 2


def _warn(what: str, run: Run, exc: Exception) -> None:
    warnings.warn(
        f"{what} failed on run {run.run_id[:12]}: {type(exc).__name__}: {exc}",
        MetalabWarning,
        stacklevel=4,
    )


def frame_0_1(
    results: Results,
    *,
    include_params: bool,
    include_metrics: bool,
    include_record: bool,
    include_derived: bool,
    derived_metrics: Sequence[DerivedFn | str],
    artifact_reducers: Mapping[str, ArtifactReducer],
    progress: bool,
) -> pd.DataFrame:
    """One row per run with 0.1's column names; see ``Results.to_dataframe``.

    A derived metric or reducer that raises is reported as a ``MetalabWarning``
    naming it and the run, and leaves that run's columns missing (as in 0.1); a run
    without the artifact a reducer reads leaves them missing silently.
    """
    require("pandas", extra="pandas", feature="Results.to_dataframe()")
    import pandas as pd  # noqa: PLC0415 -- optional (pandas extra), required above

    functions = [resolve_derived(fn) for fn in derived_metrics]
    reducers = [(name, reducer, _wants_run(reducer)) for name, reducer in artifact_reducers.items()]
    rows: list[dict[str, object]] = []
    with progress_bar("Loading runs", len(results), enabled=progress) as bar:
        for run in results:
            row: dict[str, object] = {}
            if include_record:
                finished = run.finished_at
                row |= {
                    "run_id": run.run_id,
                    "experiment_id": run.experiment_id,
                    "status": run.status,
                    "duration_ms": run.duration_ms,
                    "started_at": run.started_at.isoformat(),
                    "finished_at": None if finished is None else finished.isoformat(),
                }
            if include_params:
                row |= {f"param_{name}": value for name, value in run.params.items()}
            if include_metrics:
                row |= run.metrics
            if include_derived:
                row |= {f"derived_{name}": value for name, value in run.derived.items()}
            for fn in functions:
                try:
                    row |= fn(run)
                except Exception as exc:  # noqa: BLE001 -- 0.1's meaning: warn, go on
                    _warn(f"derived metric {name_of(fn)}", run, exc)
            for name, reducer, wants_run in reducers:
                try:
                    artifact = run.artifact(name)
                except ArtifactNotFoundError:
                    continue
                try:
                    row |= reducer(artifact, run) if wants_run else reducer(artifact)
                except Exception as exc:  # noqa: BLE001 -- 0.1's meaning: warn, go on
                    _warn(f"artifact reducer {name_of(reducer)} of {name!r}", run, exc)
            rows.append(row)
            bar(len(rows), len(results))
    return pd.DataFrame(rows)
