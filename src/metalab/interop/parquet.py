"""Every experiment of a store as Parquet files: :func:`export_parquet`.

The files are derived from the store, which stays the source of truth: each export
replaces them. The layout, one directory per experiment::

    DIR/<experiment dir>/runs.parquet     one row per run: the columns of
                                          Results.to_arrow() (to_dataframe())
    DIR/<experiment dir>/series.parquet   one row per series point: the table of
                                          Results.series_arrow(), only when the
                                          experiment's runs have series

``<experiment dir>`` is the experiment id with ``:`` replaced by ``_``, the name a
FileStore gives its directory (``mnist:1.0`` -> ``mnist_1.0``). Each file carries the
real experiment id and the metalab version that wrote it in its schema metadata
(:data:`EXPERIMENT_ID_KEY`, :data:`VERSION_KEY`). pyarrow and pandas are needed
(``metalab[arrow,pandas]``). ``metalab store export --to parquet:///DIR`` is the
command line of this module.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from metalab._optional import require
from metalab._version import __version__
from metalab.errors import CapabilityError, ConfigError, MetalabWarning
from metalab.results import Results, load_results
from metalab.store import (
    FileStoreConfig,
    ProgressCallback,
    StoreConfig,
    StoreLike,
    SupportsExperiments,
    coerce_store_config,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "EXPERIMENT_ID_KEY",
    "RUNS_FILE",
    "SERIES_FILE",
    "VERSION_KEY",
    "ExperimentExport",
    "ParquetExport",
    "export_parquet",
]

RUNS_FILE: Final = "runs.parquet"
"""The file of an experiment's runs, in its directory."""
SERIES_FILE: Final = "series.parquet"
"""The file of an experiment's metric series, in its directory."""
EXPERIMENT_ID_KEY: Final = "metalab.experiment_id"
"""The key of the experiment id in each file's Parquet schema metadata."""
VERSION_KEY: Final = "metalab.version"
"""The key of the metalab version that wrote a file, in its schema metadata."""

_FEATURE: Final = "export_parquet()"


@dataclass(frozen=True)
class ExperimentExport:
    """What :func:`export_parquet` wrote for one experiment.

    Attributes:
        experiment_id: The experiment.
        directory: Its directory under the export directory.
        runs: Rows of its ``runs.parquet``.
        series_points: Rows of its ``series.parquet`` (0: no such file).
        files: The files written, ``runs.parquet`` first.
    """

    experiment_id: str
    directory: Path
    runs: int
    series_points: int
    files: list[Path]


@dataclass(frozen=True)
class ParquetExport:
    """The outcome of :func:`export_parquet`.

    Attributes:
        directory: The export directory.
        experiments: The experiments exported, in order.
        files: Every file written.
        runs: Runs written, all experiments together.
        series_points: Series points written, all experiments together.
        notes: One line per file in which columns of mixed types were turned into
            strings, naming the experiment, the file and the columns.
        details: The same, experiment by experiment.
    """

    directory: Path
    experiments: list[str]
    files: list[Path]
    runs: int
    series_points: int
    notes: list[str]
    details: list[ExperimentExport] = field(default_factory=list)


def export_parquet(
    source: StoreLike,
    directory: str | os.PathLike[str],
    *,
    experiment_id: str | None = None,
    progress: ProgressCallback | None = None,
) -> ParquetExport:
    """Write every experiment of a store (or one) as Parquet files under ``directory``.

    Each experiment gets ``directory/<experiment dir>/runs.parquet`` and, when its runs
    have series, ``series.parquet`` (see the module docstring). Each file is written
    to a temporary file beside it and then renamed over the old one, so a reader
    never sees half a file. Running the export again replaces the files, and removes
    a ``series.parquet`` whose experiment no longer has series. Directories of
    experiments the store no longer holds are left alone.

    Args:
        source: The store to read: a path, a locator (``postgresql://...``) or a
            ``StoreConfig``, scoped to one experiment or not.
        directory: The export directory; made if missing.
        experiment_id: Export only this experiment (default: every experiment of
            ``source``).
        progress: Called as ``progress(experiments_done, experiments_total)``.

    Returns:
        What was written, with a note for each file that has columns of mixed types
        (turned into strings) instead of a ``MetalabWarning``.

    Raises:
        MissingDependencyError: pyarrow (``metalab[arrow]``) or pandas
            (``metalab[pandas]``) is not installed.
        ConfigError: ``directory`` is a file or lies inside the source's files; two
            experiments would share a directory (``a:1`` and ``a_1``); the
            locator is invalid or ``experiment_id`` conflicts with its scope.
        StoreNotFoundError: A path that holds no metalab store.
        ExperimentNotFoundError: The store holds no experiment ``experiment_id``.
        TypeError: ``source`` is not a path, locator or ``StoreConfig``.
    """
    require("pyarrow", extra="arrow", feature=_FEATURE)
    require("pandas", extra="pandas", feature=_FEATURE)  # for the series
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"cannot export to {str(target)!r}: it is a file, not a directory")
    config = coerce_store_config(source)
    _refuse_inside_store(config, target)
    experiments = _experiments(config, experiment_id)
    folders = _folders(target, experiments)
    details: list[ExperimentExport] = []
    notes: list[str] = []
    for done, eid in enumerate(experiments, start=1):
        with load_results(config, eid) as results:
            runs, series, found = _tables(results, eid)
        details.append(_write_experiment(folders[eid], eid, runs, series))
        notes.extend(found)
        if progress is not None:
            progress(done, len(experiments))
    if not experiments:
        target.mkdir(parents=True, exist_ok=True)
    return ParquetExport(
        directory=target,
        experiments=[d.experiment_id for d in details],
        files=[path for d in details for path in d.files],
        runs=sum(d.runs for d in details),
        series_points=sum(d.series_points for d in details),
        notes=notes,
        details=details,
    )


def _refuse_inside_store(config: StoreConfig, target: Path) -> None:
    """Keep the export out of the store's own files, which it would litter."""
    root = getattr(config, "root", None) or getattr(config, "file_root", None)
    if not isinstance(root, str):
        return
    files = Path(os.path.realpath(root))
    where = Path(os.path.realpath(target))
    if where == files or files in where.parents:
        raise ConfigError(
            f"cannot export to {str(target)!r}: it is inside the store's files "
            f"({str(files)!r}); choose a directory outside the store"
        )


def _experiments(config: StoreConfig, experiment_id: str | None) -> list[str]:
    """The experiments to export: the one asked for, the config's, or all of the store's."""
    if experiment_id is not None:
        return [experiment_id]  # load_results says whether the store holds it
    if config.experiment_id is not None:
        return [config.experiment_id]
    if isinstance(config, FileStoreConfig):
        config.require_store()  # a mistyped path is an error, not an empty export
        return config.list_experiments()  # from the _meta.json files, creates nothing
    with config.connect() as store:
        if isinstance(store, SupportsExperiments):
            return store.list_experiments()
        return sorted({r.experiment_id for r in store.list_run_records()})


def _folder_name(experiment_id: str) -> str:
    """The directory of an experiment, named as a FileStore names it."""
    name = experiment_id.replace(":", "_")
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise ConfigError(f"experiment id {experiment_id!r} cannot name a directory")
    return name


def _folders(target: Path, experiments: Sequence[str]) -> dict[str, Path]:
    """Each experiment's directory; refused, before anything is written, if two share one."""
    owner: dict[str, str] = {}
    for eid in experiments:
        name = _folder_name(eid)
        other = owner.setdefault(name, eid)
        if other != eid:
            raise ConfigError(
                f"experiments {other!r} and {eid!r} would both be exported to "
                f"{str(target / name)!r}; export them one at a time (experiment_id, "
                "--experiment) to different directories"
            )
        folder = target / name
        if folder.exists() and not folder.is_dir():
            raise ConfigError(
                f"cannot export {eid!r} to {str(folder)!r}: it is a file, not a directory"
            )
    return {eid: target / name for name, eid in owner.items()}


def _tables(results: Results, experiment_id: str) -> tuple[pa.Table, pa.Table | None, list[str]]:
    """The runs and series tables (``None``: no series) and the notes on mixed columns.

    ``to_arrow`` and ``series_arrow`` warn about columns turned into strings; here
    those warnings become notes of the report. Other warnings are passed on.
    """
    notes: list[str] = []
    runs = _quiet(results.to_arrow, notes, f"experiment {experiment_id!r}, {RUNS_FILE}")
    try:
        series: pa.Table | None = _quiet(
            results.series_arrow, notes, f"experiment {experiment_id!r}, {SERIES_FILE}"
        )
    except CapabilityError:
        series = None  # the store keeps no series
    if series is not None and series.num_rows == 0:
        series = None  # no run has series
    return runs, series, notes


def _quiet(build: Callable[[], pa.Table], notes: list[str], what: str) -> pa.Table:
    """Call ``build``, turning its warnings about mixed columns into ``notes``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = build()
    for found in caught:
        if found.category is MetalabWarning:
            notes.append(f"{what}: {found.message}")
        else:
            warnings.warn_explicit(found.message, found.category, found.filename, found.lineno)
    return table


def _write_experiment(
    folder: Path, experiment_id: str, runs: pa.Table, series: pa.Table | None
) -> ExperimentExport:
    """Write one experiment's files; remove a ``series.parquet`` it no longer has."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [_write(runs, folder / RUNS_FILE, experiment_id)]
    if series is None:
        (folder / SERIES_FILE).unlink(missing_ok=True)  # from an earlier export
    else:
        files.append(_write(series, folder / SERIES_FILE, experiment_id))
    return ExperimentExport(
        experiment_id=experiment_id,
        directory=folder,
        runs=runs.num_rows,
        series_points=0 if series is None else series.num_rows,
        files=files,
    )


def _write(table: pa.Table, path: Path, experiment_id: str) -> Path:
    """Write ``table`` to ``path`` with metalab's schema metadata, atomically."""
    import pyarrow.parquet as pq  # noqa: PLC0415 -- optional (arrow extra), required above

    metadata = {
        **(table.schema.metadata or {}),
        EXPERIMENT_ID_KEY.encode(): experiment_id.encode(),
        VERSION_KEY.encode(): __version__.encode(),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        pq.write_table(table.replace_schema_metadata(metadata), tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
