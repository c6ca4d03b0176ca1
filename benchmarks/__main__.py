"""``python -m benchmarks [--n N ...] [--repeat R] [--only NAME ...] [--json PATH]``."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import (
    bench_codec,
    bench_context,
    bench_dask,
    bench_e2e,
    bench_file_store,
    bench_peers,
    bench_postgres_index,
    bench_query,
    bench_results,
    bench_series,
    bench_ui,
)
from benchmarks._harness import Report

Suite = Callable[..., None]

#: name -> (function, default sizes). Sizes follow shared/bench/WORKLOAD.md.
SUITES: dict[str, tuple[Suite, tuple[int, ...]]] = {
    "codec": (bench_codec.run, (100_000,)),
    "file": (bench_file_store.run, (10_000, 100_000)),
    "e2e": (bench_e2e.run, (1_000,)),
    "results": (bench_results.run, (10_000, 100_000)),
    "postgres": (bench_postgres_index.run, (10_000, 100_000)),
    "query": (bench_query.run, (10_000, 100_000)),
    "peers": (bench_peers.run, (10_000, 100_000)),
    "dask": (bench_dask.run, (2_000,)),
    "series": (bench_series.run, (100_000, 1_000_000)),
    "context": (bench_context.run, (10_000,)),
    "ui": (bench_ui.run, (10_000, 100_000)),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmark suites and print a Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--n", type=int, action="append", help="record counts (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per measurement (>= 3)")
    parser.add_argument("--only", action="append", choices=sorted(SUITES), help="suites to run")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    report = Report()
    for name in args.only or list(SUITES):
        fn, default_sizes = SUITES[name]
        for n in args.n or default_sizes:
            print(f"[{name}] n={n:,}", file=sys.stderr, flush=True)
            fn(report, n=n, repeat=args.repeat)

    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"metalab benchmarks, {stamp}, repeat={args.repeat}\n")
    print(report.markdown())
    if args.json is not None:
        report.write_json(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
