"""``metalab runs ls``: list the runs of an experiment, filtered and sorted."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from metalab._display import SHORT_ID, differing_params, short_ids, shown
from metalab.cli._output import emit_rows, non_negative_int
from metalab.cli._session import files_of, open_store, write_notes
from metalab.cli._show import add_edit_parsers, add_show_parser
from metalab.errors import ConfigError, CorruptRecordError
from metalab.query import build_query, select
from metalab.records import MetricValue, RunRecord
from metalab.store import SupportsQuery, coerce_store_config, derived_lookup, select_runs

__all__ = ["add_parser"]

DEFAULT_LIMIT: Final = 50
"""Runs listed when neither ``--limit`` nor ``--all`` is given."""

_RECORD_FIELDS: Final = (
    "run_id",
    "experiment_id",
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "error",
    "tags",
    "notes",
)

Derived = Callable[[RunRecord], Mapping[str, MetricValue] | None]


def add_parser(commands: Any) -> None:
    """Add ``runs`` and its subcommands."""
    runs = commands.add_parser("runs", help="list and filter runs")
    sub = runs.add_subparsers(dest="runs_command", metavar="SUBCOMMAND", required=True)
    ls = sub.add_parser(
        "ls",
        help="list the runs of an experiment",
        description="List runs, in the order of --sort (else as the store lists them). "
        "--where takes the query language of metalab.query, e.g. "
        '"params.lr < 0.01 and metrics.acc >= 0.9". A table shows run ids by their '
        f"first {SHORT_ID} characters (more where needed to tell them apart) and times "
        "in UTC to the second; csv and json keep them whole.",
        epilog="Example: metalab runs ls ./experiments --experiment mnist:1.0 "
        "--where 'status == \"success\"' --sort=-metrics.acc --columns params.lr,metrics.acc"
        "\n\nExit status: 0 on success; 1 when a record cannot be decoded (each such "
        "file is named on stderr with the reason, and the other runs are listed) or the "
        "command failed; 2 for usage errors.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    ls.add_argument(
        "--columns",
        metavar="COLS",
        help="comma-separated columns after the run id, e.g. status,params.lr,metrics.acc "
        "(default: status, start, duration, the error type if a run failed, the params "
        "that differ between the runs listed, and the metrics)",
    )
    count = ls.add_mutually_exclusive_group()
    count.add_argument(
        "--limit",
        type=non_negative_int,
        metavar="N",
        help=f"at most N runs (default: {DEFAULT_LIMIT}; a note on stderr says how many "
        "were left out)",
    )
    count.add_argument("--all", action="store_true", help="every matching run")
    shape = ls.add_mutually_exclusive_group()
    shape.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output format"
    )
    shape.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )
    ls.set_defaults(handler=_ls)
    add_show_parser(sub)
    add_edit_parsers(sub)


def _value(record: RunRecord, column: str, derived: Derived) -> Any:
    namespace, _, key = column.partition(".")
    if namespace == "params" and key:
        return record.params.get(key)
    if namespace == "metrics" and key:
        return record.metrics.get(key)
    if namespace == "derived" and key:
        found = derived(record)
        return None if found is None else found.get(key)
    if column == "error":
        return None if record.error is None else record.error.type
    if column == "tags":
        return list(record.tags)
    return getattr(record, column)


def _default_columns(records: Sequence[RunRecord], *, experiment: bool) -> list[str]:
    params = differing_params([r.params for r in records])
    metrics = sorted({k for r in records for k in r.metrics})
    return [
        *(["experiment_id"] if experiment else []),
        "status",
        "started_at",
        "duration_ms",
        *(["error"] if any(r.error is not None for r in records) else []),
        *(f"params.{k}" for k in params),
        *(f"metrics.{k}" for k in metrics),
    ]


def _chosen_columns(text: str) -> list[str]:
    columns = [c.strip() for c in text.split(",") if c.strip()]
    if not columns:
        raise ConfigError("--columns needs at least one column, e.g. --columns status,metrics.acc")
    for column in columns:
        namespace, dot, key = column.partition(".")
        if dot and namespace in ("params", "metrics", "derived") and key:
            continue
        if not dot and column in _RECORD_FIELDS:
            continue
        raise ConfigError(
            f"--columns: unknown column {column!r}; use params.NAME, metrics.NAME, "
            f"derived.NAME or one of {', '.join(_RECORD_FIELDS)}"
        )
    return [c for c in columns if c != "run_id"]


def _ls(args: argparse.Namespace) -> int:
    query = build_query(args.where, order_by=args.sort)
    config = coerce_store_config(args.locator, experiment_id=args.experiment)
    chosen = _chosen_columns(args.columns) if args.columns is not None else None
    problems: list[str] = []
    with open_store(config) as session:
        store = session.store
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
        limit = None if args.all else (DEFAULT_LIMIT if args.limit is None else args.limit)
        shown = records if limit is None else records[:limit]
        columns = chosen or _default_columns(shown, experiment=not config.is_scoped)
        if any(c.startswith("derived.") for c in columns):
            derived = derived_lookup(store, config.experiment_id)
        else:
            derived = _no_derived
        rows = [[r.run_id, *(_value(r, c, derived) for c in columns)] for r in shown]
    if args.format == "table":
        rows = _for_the_eye(rows, ["run_id", *columns])
    if args.format == "json" and "error" not in columns:
        columns.append("error")  # json always says why a run failed
        for row, record in zip(rows, shown, strict=True):
            row.append(_value(record, "error", _no_derived))
    emit_rows(["run_id", *columns], rows, args.format)
    left_out = len(records) - len(shown)
    if left_out:
        sys.stderr.write(
            f"metalab: {len(shown)} of {len(records)} runs shown; --limit N or --all shows more\n"
        )
    write_notes(sys.stderr, session.index, problems)
    return 1 if problems else 0


def _no_derived(_record: RunRecord) -> None:
    return None


def _for_the_eye(rows: list[list[Any]], columns: list[str]) -> list[list[Any]]:
    """Short run ids and times to the second, for a table read by a person."""
    short = short_ids([row[0] for row in rows])
    times = {i for i, c in enumerate(columns) if c in ("started_at", "finished_at")}
    out = []
    for row in rows:
        cells = list(row)
        cells[0] = short[cells[0]]
        for i in times:
            cells[i] = shown(cells[i])
        out.append(cells)
    return out
