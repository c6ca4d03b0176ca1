"""``metalab runs ls``: list the runs of an experiment, filtered and sorted."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from metalab.cli._output import emit_rows, non_negative_int
from metalab.cli._session import files_of, require_readable
from metalab.errors import CorruptRecordError
from metalab.query import build_query, select
from metalab.records import RunRecord
from metalab.store import SupportsQuery, coerce_store_config, derived_lookup, select_runs

__all__ = ["add_parser"]

_FIXED = ("run_id", "status", "started_at", "duration_ms")


def add_parser(commands: Any) -> None:
    """Add ``runs`` and its subcommands."""
    runs = commands.add_parser("runs", help="list and filter runs")
    sub = runs.add_subparsers(dest="runs_command", metavar="SUBCOMMAND", required=True)
    ls = sub.add_parser(
        "ls",
        help="list the runs of an experiment",
        description="List runs. --where takes the query language of metalab.query, e.g. "
        '"params.lr < 0.01 and metrics.acc >= 0.9".',
        epilog="Exit status: 0 on success; 1 when a record cannot be decoded (each such "
        "file is named on stderr with the reason, and the other runs are listed) or the "
        "command failed; 2 for usage errors.",
    )
    ls.add_argument("locator", help="a path, file:// or postgresql:// locator")
    ls.add_argument(
        "--experiment",
        metavar="ID",
        help="only this experiment (default: every one, with an experiment_id column)",
    )
    ls.add_argument("--where", metavar="EXPR", help="filter, e.g. 'status == \"success\"'")
    ls.add_argument(
        "--sort",
        metavar="KEY",
        action="append",
        help="sort key, e.g. 'metrics.acc desc' or --sort=-metrics.acc (repeatable)",
    )
    ls.add_argument("--limit", type=non_negative_int, metavar="N", help="at most N runs")
    ls.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output format"
    )
    ls.set_defaults(handler=_ls)


def _row(
    record: RunRecord, params: list[str], metrics: list[str], *, experiment: bool
) -> list[Any]:
    return [
        record.run_id,
        *([record.experiment_id] if experiment else []),
        record.status,
        record.started_at.isoformat(),
        record.duration_ms,
        *(record.params.get(k) for k in params),
        *(record.metrics.get(k) for k in metrics),
    ]


def _ls(args: argparse.Namespace) -> int:
    query = build_query(args.where, order_by=args.sort, limit=args.limit)
    config = coerce_store_config(args.locator, experiment_id=args.experiment)
    require_readable(config)
    problems: list[str] = []
    with config.connect() as store:
        try:
            if isinstance(store, SupportsQuery) and config.is_scoped:
                records = store.query_runs(query)  # the store's own engine (an index: SQL)
            else:
                records = select_runs(store, query, config.experiment_id)
        except CorruptRecordError:
            # Read again, listing every file that cannot be decoded and querying the
            # rest, instead of stopping at the first.
            files = files_of(store)
            if files is None:
                raise
            scan = files.scan_run_records(config.experiment_id)
            records = select(scan.records, query, derived_lookup(store, config.experiment_id))
            problems = [str(problem) for problem in scan.problems]
    params = sorted({k for r in records for k in r.params})
    metrics = sorted({k for r in records for k in r.metrics})
    # Runs of a whole collection: which experiment each belongs to is a column.
    experiment = not config.is_scoped
    fixed = [_FIXED[0], *(["experiment_id"] if experiment else []), *_FIXED[1:]]
    columns = [*fixed, *(f"params.{k}" for k in params), *(f"metrics.{k}" for k in metrics)]
    rows = [_row(r, params, metrics, experiment=experiment) for r in records]
    emit_rows(columns, rows, args.format)
    sys.stderr.writelines(f"metalab: problem: {problem}\n" for problem in problems)
    return 1 if problems else 0
