"""Analysing what an experiment produced: :func:`load_results`, :class:`Results`, :class:`Run`.

``Results`` is a read-only sequence of :class:`Run` s loaded from a store (a path, a
locator, a config or a connected store). Each run exposes its record (params,
metrics, status, timings, error) and reads its derived metrics, artifacts, logs and
structured data from the store when asked. ``to_dataframe()`` and ``to_polars()``
give one row per run with flattened ``params.*``, ``metrics.*`` and ``derived.*``
columns; they build the columns straight from the records (no per-row dicts, no
per-cell Python calls), and ``benchmarks/bench_results.py`` measures them. A FileStore
keeps the whole frame of an experiment (``.frame-cache``) and serves it again, without
reading a record, while the experiment's runs and derived metrics are unchanged
(:func:`frame_cache_matches` checks one).
"""

from metalab.results._derived import DerivedFn, resolve_derived
from metalab.results._results import Results, frame_cache_matches, load_results
from metalab.results._run import Run

__all__ = ["DerivedFn", "Results", "Run", "frame_cache_matches", "load_results", "resolve_derived"]
