"""Results: ``load_results(...).to_dataframe()`` of ``n`` workload runs on a FileStore.

The store is prepared untimed: the workload records are written with the FileStore's
bulk put, and three derived metrics per run with ``put_derived``. Measured,
alternating in every repeat (files warm in the page cache, as after a sweep):

- ``load_results(...).to_dataframe()``: the whole path a user takes;
- its parts: ``load_results`` (the store's scan of every record), then
  ``to_dataframe()`` of the loaded results (reading every run's derived metrics and
  building the frame), and ``to_dataframe()`` again (derived metrics cached: the frame
  build alone);
- ``to_polars()``, ``to_arrow()`` and ``to_parquet()`` with derived metrics cached;
- the physical anchor: reading every record and derived file bare (open/read/close).

The original metalab 0.1 measured 7.3 s for ``to_dataframe()`` of 100,000 runs on
this machine.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import metalab
from benchmarks import _workload
from benchmarks._anchors import bare_read_dirs
from benchmarks._harness import Measurement, Report, time_interleaved
from metalab.store._file import FileStoreConfig

TOTAL = "load_results().to_dataframe()"
LOAD = "load_results()"
FRAME = "to_dataframe() incl. derived read"
FRAME_ONLY = "to_dataframe() (derived cached)"
POLARS = "to_polars() (derived cached)"
ARROW = "to_arrow() (derived cached)"
PARQUET = "to_parquet() (derived cached)"
BARE = "bare read of record + derived files"
NOTE = "original metalab 0.1: 7.3 s at 100,000 runs"


def _prepare(root: Path, n: int) -> FileStoreConfig:
    config = FileStoreConfig(root=str(root), experiment_id=_workload.EXPERIMENT_ID)
    with config.connect() as store:
        store.put_run_records(_workload.records(n))
        for i in range(n):
            store.put_derived(_workload.run_id(i), _workload.derived(i).metrics)
    return config


def run(report: Report, *, n: int, repeat: int) -> None:
    """Measure the results path for ``n`` runs."""
    root = Path(tempfile.mkdtemp(prefix="metalab-bench-results-"))
    try:
        config = _prepare(root, n)
        directory = root / "bench_1.0"
        loaded = metalab.load_results(config)
        # Warm: derived metrics cached in ``loaded`` from here on, and pandas and
        # polars imported.
        loaded.to_dataframe()
        loaded.to_polars()
        parquet = root / "runs.parquet"

        def frame_with_derived_read() -> object:
            return metalab.Results(loaded.records, loaded.store).to_dataframe()

        subjects: dict[str, Callable[[], object]] = {
            BARE: lambda: bare_read_dirs(f"{directory}/runs", f"{directory}/derived"),
            TOTAL: lambda: metalab.load_results(config).to_dataframe(),
            LOAD: lambda: metalab.load_results(config),
            FRAME: frame_with_derived_read,
            FRAME_ONLY: loaded.to_dataframe,
            POLARS: loaded.to_polars,
            ARROW: loaded.to_arrow,
            PARQUET: lambda: loaded.to_parquet(parquet),
        }
        timings = time_interleaved(subjects, repeat=repeat)
        for name, seconds in timings.items():
            notes = NOTE if name == TOTAL else ""
            report.add(Measurement("results.frame", name, n, seconds, notes=notes))
    finally:
        shutil.rmtree(root, ignore_errors=True)
