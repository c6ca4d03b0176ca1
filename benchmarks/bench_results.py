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
- the same ``load_results(...).to_dataframe()`` and ``load_results()`` with the
  experiment's records snapshot current (``FileStore.snapshot_records()``, which a
  sweep writes when it ends), and refreshing that snapshot when nothing changed; the
  other subjects run with the snapshot moved aside;
- ``load_results(...).to_dataframe()`` when nothing changed since the last such read
  (the frame cache current); every other subject runs with the frame cache moved
  aside, and what it writes removed;
- the physical anchor: reading every record and derived file bare (open/read/close).

Then, where this process may drop the kernel's page cache (root on Linux), the same
three with the page cache dropped before each call (``operation`` ``results.cold``):
the files as a cluster filesystem or a first read after a reboot serves them.

The original metalab 0.1 measured 7.3 s for ``to_dataframe()`` of 100,000 runs on
this machine.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import metalab
from benchmarks import _workload
from benchmarks._anchors import bare_read_dirs
from benchmarks._harness import Measurement, Report, time_interleaved, without_files
from metalab.store._file import FileStoreConfig
from metalab.store._frame_cache import CACHE_NAME
from metalab.store._records_snapshot import RACY_SECONDS, SNAPSHOT_NAME

TOTAL = "load_results().to_dataframe()"
LOAD = "load_results()"
FRAME = "to_dataframe() incl. derived read"
FRAME_ONLY = "to_dataframe() (derived cached)"
POLARS = "to_polars() (derived cached)"
ARROW = "to_arrow() (derived cached)"
PARQUET = "to_parquet() (derived cached)"
SNAP_TOTAL = "load_results().to_dataframe(), records snapshot current"
SNAP_LOAD = "load_results(), records snapshot current"
SNAP_REFRESH = "snapshot_records(), nothing changed"
CACHED_TOTAL = "load_results().to_dataframe(), frame cache current (nothing changed)"
BARE = "bare read of record + derived files"
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
NOTE = "original metalab 0.1: 7.3 s at 100,000 runs"


def _prepare(root: Path, n: int) -> FileStoreConfig:
    config = FileStoreConfig(root=str(root), experiment_id=_workload.EXPERIMENT_ID)
    with config.connect() as store:
        store.put_run_records(_workload.records(n))
        for i in range(n):
            store.put_derived(_workload.run_id(i), _workload.derived(i).metrics)
    return config


def _drop_caches() -> None:
    """Write dirty pages out and drop the page cache, dentries and inodes."""
    os.sync()
    DROP_CACHES.write_text("3")


def _can_drop_caches() -> bool:
    return sys.platform == "linux" and os.access(DROP_CACHES, os.W_OK)


def run(report: Report, *, n: int, repeat: int) -> None:
    """Measure the results path for ``n`` runs."""
    root = Path(tempfile.mkdtemp(prefix="metalab-bench-results-"))
    try:
        config = _prepare(root, n)
        directory = root / "bench_1.0"
        time.sleep(RACY_SECONDS)  # files this young stay out of a snapshot (and cache)
        with config.connect() as files:
            files.snapshot_records()
        metalab.load_results(config).to_dataframe()  # writes the frame cache
        if not (directory / CACHE_NAME).is_file():
            raise RuntimeError(f"no frame cache was written in {directory}")
        cacheless = (CACHE_NAME,)
        neither = (CACHE_NAME, SNAPSHOT_NAME)
        # Results made of records (not loaded) cache no frame, so the frame
        # subjects below build theirs every time.
        records = metalab.load_results(config)
        loaded = metalab.Results(records.records, records.store)
        # Warm: derived metrics cached in ``loaded`` from here on, and pandas and
        # polars imported.
        loaded.to_dataframe()
        loaded.to_polars()
        parquet = root / "runs.parquet"

        def frame_with_derived_read() -> object:
            return metalab.Results(loaded.records, loaded.store).to_dataframe()

        def refresh() -> object:
            with config.connect() as files:
                return files.snapshot_records()

        subjects: dict[str, Callable[[], object]] = {
            BARE: lambda: bare_read_dirs(f"{directory}/runs", f"{directory}/derived"),
            TOTAL: without_files(
                directory, neither, lambda: metalab.load_results(config).to_dataframe()
            ),
            SNAP_TOTAL: without_files(
                directory, cacheless, lambda: metalab.load_results(config).to_dataframe()
            ),
            CACHED_TOTAL: lambda: metalab.load_results(config).to_dataframe(),
            LOAD: without_files(directory, neither, lambda: metalab.load_results(config)),
            SNAP_LOAD: without_files(directory, cacheless, lambda: metalab.load_results(config)),
            SNAP_REFRESH: refresh,
            FRAME: without_files(directory, neither, frame_with_derived_read),
            FRAME_ONLY: loaded.to_dataframe,
            POLARS: loaded.to_polars,
            ARROW: loaded.to_arrow,
            PARQUET: lambda: loaded.to_parquet(parquet),
        }
        timings = time_interleaved(subjects, repeat=repeat)
        for name, seconds in timings.items():
            notes = NOTE if name == TOTAL else ""
            report.add(Measurement("results.frame", name, n, seconds, notes=notes))
        if not _can_drop_caches():
            print(
                "  results.cold: skipped (cannot drop the page cache: needs root on Linux)",
                file=sys.stderr,
            )
            return
        cold = {name: subjects[name] for name in (BARE, TOTAL, SNAP_TOTAL, CACHED_TOTAL)}
        for name, seconds in time_interleaved(cold, repeat=repeat, setup=_drop_caches).items():
            report.add(Measurement("results.cold", name, n, seconds))
    finally:
        shutil.rmtree(root, ignore_errors=True)
