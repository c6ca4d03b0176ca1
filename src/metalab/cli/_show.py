"""``metalab runs show`` and ``metalab artifacts ls|get``: one run, looked up by a prefix of its id."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from metalab._display import shown
from metalab.cli._output import emit_json, emit_rows, non_negative_int
from metalab.cli._session import open_store, require_readable, write_notes
from metalab.errors import CapabilityError, ConfigError, StoreError
from metalab.records import ArtifactDescriptor, MetricValue, RunRecord
from metalab.series import MetricSeries
from metalab.store import (
    Store,
    StoreConfig,
    SupportsArtifactStreaming,
    SupportsLogs,
    SupportsRunEdits,
    SupportsSeries,
    coerce_store_config,
)

__all__ = ["add_artifacts_parser", "add_edit_parsers", "add_show_parser", "find_run"]

_CHUNK: Final = 1 << 20
_FOLLOW_SECONDS: Final = 0.5
_LOCATOR_HELP: Final = "a path, file:// or postgresql:// locator"
_RUN_HELP: Final = "the run id, or a prefix of it that only one run has (like git)"


def add_show_parser(runs: Any) -> None:
    """Add ``runs show`` to the ``runs`` subcommands."""
    show = runs.add_parser(
        "show",
        help="one run: params, metrics, error, artifacts and the end of its logs",
        description="Show one run: status and timing, params, metrics, derived metrics, "
        "tags and notes, the error with its traceback, each metric series (points, last, "
        "smallest and largest value), its artifacts with their sizes and the last lines "
        "of each log. --follow then prints the points a running run logs until it ends.",
        epilog="Example: metalab runs show ./experiments 3f9c2a1b --lines 20 --follow",
    )
    show.add_argument("locator", help=_LOCATOR_HELP)
    show.add_argument("run", help=_RUN_HELP)
    show.add_argument("--experiment", metavar="ID", help="look in this experiment only")
    show.add_argument(
        "--lines", type=non_negative_int, default=10, metavar="N", help="log lines (default 10)"
    )
    show.add_argument("--json", action="store_true", help="print JSON (logs whole)")
    show.add_argument(
        "--follow",
        action="store_true",
        help="keep printing the new points of the run's series until the run ends",
    )
    show.set_defaults(handler=_show)


class _LabelArguments(argparse.ArgumentParser):
    """A parser that reads ``-label`` as a value unless it is one of its own options.

    argparse takes any word starting with ``-`` for an option, so ``runs tag RUN
    -draft`` would be refused as an unknown option.
    """

    def _parse_optional(self, arg_string: str) -> Any:
        if (
            arg_string.startswith("-")
            and not arg_string.startswith("--")
            and arg_string not in self._option_string_actions
        ):
            return None  # a positional: the label to remove
        return super()._parse_optional(arg_string)


def add_edit_parsers(runs: Any) -> None:
    """Add ``runs tag`` and ``runs note`` to the ``runs`` subcommands."""
    tag = runs.add_parser(
        "tag",
        help="add and remove tags of a run",
        description="Add (+label) and remove (-label) tags of a recorded run. The stored "
        "record keeps the edit: a run still going keeps it when it ends, and two edits "
        'at once both land. Queries see the tags at once (tags contains "label").',
        epilog="Example: metalab runs tag ./experiments 3f9c2a1b +baseline -draft",
    )
    # "-draft" is a label here, not an option: see _LabelArguments.
    tag.__class__ = type("LabelParser", (_LabelArguments, type(tag)), {})
    tag.add_argument("locator", help=_LOCATOR_HELP)
    tag.add_argument("run", help=_RUN_HELP)
    tag.add_argument("labels", nargs="+", metavar="+LABEL|-LABEL", help="tags to add or remove")
    tag.add_argument("--experiment", metavar="ID", help="look in this experiment only")
    tag.add_argument("--json", action="store_true", help="print the run's tags as JSON")
    tag.set_defaults(handler=_tag)
    note = runs.add_parser(
        "note",
        help="set the notes of a run",
        description="Set (or with --clear, remove) the notes of a recorded run.",
        epilog='Example: metalab runs note ./experiments 3f9c2a1b "diverged after the lr drop"',
    )
    note.add_argument("locator", help=_LOCATOR_HELP)
    note.add_argument("run", help=_RUN_HELP)
    text = note.add_mutually_exclusive_group(required=True)
    text.add_argument("text", nargs="?", help="the notes")
    text.add_argument("--clear", action="store_true", help="remove the notes")
    note.add_argument("--experiment", metavar="ID", help="look in this experiment only")
    note.add_argument("--json", action="store_true", help="print the run's notes as JSON")
    note.set_defaults(handler=_note)


def add_artifacts_parser(commands: Any) -> None:
    """Add ``artifacts ls`` and ``artifacts get``."""
    artifacts = commands.add_parser("artifacts", help="list and fetch the artifacts of a run")
    sub = artifacts.add_subparsers(dest="artifacts_command", metavar="SUBCOMMAND", required=True)
    ls = sub.add_parser(
        "ls",
        help="a run's artifacts with their sizes and hashes",
        epilog="Example: metalab artifacts ls ./experiments 3f9c2a1b",
    )
    ls.add_argument("locator", help=_LOCATOR_HELP)
    ls.add_argument("run", help=_RUN_HELP)
    ls.add_argument("--experiment", metavar="ID", help="look in this experiment only")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=_artifacts_ls)
    get = sub.add_parser(
        "get",
        help="copy an artifact out, checked against its sha256",
        description="Copy an artifact to a file (or stdout with -o -). The bytes are "
        "checked against the sha256 recorded when the artifact was stored; on a mismatch "
        "nothing is left behind and the exit code is 1.",
        epilog="Example: metalab artifacts get ./experiments 3f9c2a1b model -o model.pt",
    )
    get.add_argument("locator", help=_LOCATOR_HELP)
    get.add_argument("run", help=_RUN_HELP)
    get.add_argument("name", help="the artifact's name")
    get.add_argument("--experiment", metavar="ID", help="look in this experiment only")
    get.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="where to write it (default: the artifact's file name in this directory; "
        "'-' for stdout)",
    )
    get.add_argument("--force", action="store_true", help="replace an existing file")
    get.set_defaults(handler=_artifacts_get)


def find_run(store: Store, prefix: str, experiment_id: str | None) -> RunRecord:
    """The one run whose id starts with ``prefix`` (an exact id always wins).

    Raises:
        StoreError: No run has such an id.
        ConfigError: Several runs do (the message lists some).
    """
    if not prefix:
        raise ConfigError("a run id (or a prefix of one) is needed")
    exact = store.get_run_record(prefix) if _plausible_id(prefix) else None
    if exact is not None and (experiment_id is None or exact.experiment_id == experiment_id):
        return exact
    found = [r for r in store.list_run_records(experiment_id) if r.run_id.startswith(prefix)]
    if not found:
        raise StoreError(f"no run id starts with {prefix!r}; 'metalab runs ls' lists the runs")
    if len(found) > 1:
        ids = sorted(r.run_id for r in found)
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise ConfigError(f"{len(ids)} runs start with {prefix!r} ({shown}); give more of the id")
    return found[0]


def _plausible_id(text: str) -> bool:
    # get_run_record() validates ids; a prefix with other characters is no id.
    return all(c.isalnum() or c in "-_." for c in text)


@contextmanager
def _opened(args: argparse.Namespace) -> Iterator[tuple[Store, RunRecord]]:
    config: StoreConfig = coerce_store_config(args.locator, experiment_id=args.experiment)
    with open_store(config) as session:
        yield session.store, find_run(session.store, args.run, config.experiment_id)
    write_notes(sys.stderr, session.index, [])


@contextmanager
def _editing(args: argparse.Namespace) -> Iterator[tuple[SupportsRunEdits, RunRecord]]:
    config: StoreConfig = coerce_store_config(args.locator, experiment_id=args.experiment)
    require_readable(config)
    with config.connect() as store:
        if not isinstance(store, SupportsRunEdits):
            raise CapabilityError(type(store).__qualname__, "SupportsRunEdits", "metalab runs tag")
        yield store, find_run(store, args.run, config.experiment_id)


def _labels(given: list[str]) -> tuple[list[str], list[str]]:
    add: list[str] = []
    remove: list[str] = []
    for label in given:
        sign, name = label[:1], label[1:]
        if sign not in ("+", "-") or not name:
            raise ConfigError(f"{label!r} is not +LABEL or -LABEL (e.g. +baseline -draft)")
        (add if sign == "+" else remove).append(name)
    return add, remove


def _tag(args: argparse.Namespace) -> int:
    add, remove = _labels(args.labels)
    with _editing(args) as (store, record):
        edited = store.set_tags(record.run_id, add=add, remove=remove)
    if args.json:
        emit_json({"run_id": edited.run_id, "tags": list(edited.tags)})
    else:
        sys.stdout.write(f"{edited.run_id[:12]}  tags: {', '.join(edited.tags) or '(none)'}\n")
    return 0


def _note(args: argparse.Namespace) -> int:
    with _editing(args) as (store, record):
        edited = store.set_notes(record.run_id, None if args.clear else args.text)
    if args.json:
        emit_json({"run_id": edited.run_id, "notes": edited.notes})
    else:
        sys.stdout.write(f"{edited.run_id[:12]}  notes: {edited.notes or '(none)'}\n")
    return 0


def _describe(
    record: RunRecord, store: Store, lines: int | None, series: dict[str, MetricSeries]
) -> dict[str, Any]:
    derived = store.get_derived(record.run_id)
    logs: dict[str, str] = {}
    if isinstance(store, SupportsLogs):
        for name in store.list_logs(record.run_id):
            text = store.get_log(record.run_id, name) or ""
            logs[name] = text if lines is None else _tail(text, lines)
    error = record.error
    return {
        "run_id": record.run_id,
        "experiment_id": record.experiment_id,
        "status": record.status,
        "started_at": record.started_at.isoformat(),
        "finished_at": None if record.finished_at is None else record.finished_at.isoformat(),
        "duration_ms": record.duration_ms,
        "params": record.params,
        "metrics": record.metrics,
        "derived": {} if derived is None else derived.metrics,
        "tags": list(record.tags),
        "notes": record.notes,
        "series": {name: _series_summary(found) for name, found in series.items()},
        "error": None
        if error is None
        else {"type": error.type, "message": error.message, "traceback": error.traceback},
        "artifacts": [_artifact(a) for a in store.list_artifacts(record.run_id)],
        "logs": logs,
    }


def _series_of(store: Store, record: RunRecord) -> dict[str, MetricSeries]:
    return store.get_series(record.run_id) if isinstance(store, SupportsSeries) else {}


def _series_summary(series: MetricSeries) -> dict[str, Any]:
    low, high = series.best("min"), series.best("max")
    return {
        "points": len(series),
        "first_step": series.steps[0] if series.steps else None,
        "last_step": series.steps[-1] if series.steps else None,
        "last": series.last,
        "min": None if low is None else {"step": low[0], "value": low[1]},
        "max": None if high is None else {"step": high[0], "value": high[1]},
    }


def _artifact(descriptor: ArtifactDescriptor) -> dict[str, Any]:
    return {
        "name": descriptor.name,
        "kind": descriptor.kind,
        "format": descriptor.format,
        "size_bytes": descriptor.size_bytes,
        "sha256": descriptor.content_hash,
    }


def _tail(text: str, lines: int) -> str:
    if lines == 0:
        return ""
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) + ("\n" if kept else "")


def _show(args: argparse.Namespace) -> int:
    with _opened(args) as (store, record):
        series = _series_of(store, record)
        info = _describe(record, store, None if args.json else args.lines, series)
        if args.follow and not args.json:
            _write(info, args.lines)
            # The same store, and the points the summary counted: none is missed.
            _follow(store, record, _points(series))
            return 0
    if args.json:
        emit_json(info)
    else:
        _write(info, args.lines)
    return 0


def _write(info: dict[str, Any], lines: int) -> None:
    out = sys.stdout
    out.write(f"run         {info['run_id']}\n")
    out.write(f"experiment  {info['experiment_id']}\n")
    out.write(f"status      {info['status']}\n")
    out.write(f"started     {info['started_at']}\n")
    if info["finished_at"] is not None:
        out.write(f"finished    {info['finished_at']}  ({info['duration_ms']} ms)\n")
    if info["tags"]:
        out.write(f"tags        {', '.join(info['tags'])}\n")
    if info["notes"]:
        out.write(f"notes       {info['notes']}\n")
    for section in ("params", "metrics", "derived"):
        if info[section]:
            out.write(f"\n{section}\n")
            width = max(map(len, info[section]))
            for key, value in sorted(info[section].items()):
                out.write(f"  {key.ljust(width)}  {value!r}\n")
    if info["error"] is not None:
        error = info["error"]
        out.write(f"\nerror  {error['type']}: {error['message']}\n")
        if error["traceback"]:
            out.write("".join(f"  {line}\n" for line in error["traceback"].splitlines()))
    if info["artifacts"]:
        out.write("\nartifacts\n")
        rows = [[a["name"], a["format"], _size(a["size_bytes"])] for a in info["artifacts"]]
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        for name, fmt, size in rows:
            out.write(f"  {name.ljust(widths[0])}  {fmt.ljust(widths[1])}  {size}\n")
    if info["series"]:
        out.write("\nseries\n")
        width = max(map(len, info["series"]))
        for name, summary in info["series"].items():
            out.write(f"  {name.ljust(width)}  {_series_line(summary)}\n")
    for name, text in info["logs"].items():
        out.write(f"\nlog {name} (last {lines} lines)\n")
        out.write("".join(f"  {line}\n" for line in text.splitlines()))


_Key = tuple[str, int, MetricValue, dt.datetime | None]


def _points(found: dict[str, MetricSeries]) -> Counter[_Key]:
    # NaN is not equal to itself: as a key it would be new on every read.
    return Counter(
        (name, step, value if value == value else "NaN", when)  # noqa: PLR0124
        for name, series in found.items()
        for step, value, when in zip(series.steps, series.values, series.timestamps, strict=True)
    )


def _by_step(key: _Key) -> int:
    return key[1]


def _series_line(summary: dict[str, Any]) -> str:
    text = (
        f"{summary['points']} points, steps {summary['first_step']}..{summary['last_step']}, "
        f"last {shown(summary['last'])}"
    )
    for end in ("min", "max"):
        if summary[end] is not None:
            text += f", {end} {shown(summary[end]['value'])} at {summary[end]['step']}"
    return text


def _follow(store: Store, record: RunRecord, seen: Counter[_Key]) -> None:
    """Print each new point of the run's series until its record says it ended."""
    out = sys.stdout
    out.write("\nfollowing (Ctrl-C stops)\n")
    out.flush()
    while True:
        time.sleep(_FOLLOW_SECONDS)
        record = store.get_run_record(record.run_id) or record
        now = _points(_series_of(store, record))
        # Series come sorted by step, so a late point of an early step lands in the
        # middle: what is new is what was not there before, point for point.
        for name, step, value, _when in sorted((now - seen).elements(), key=_by_step):
            out.write(f"  step {step}  {name} {shown(value)}\n")
        seen = now
        out.flush()
        if record.status != "running":
            out.write(f"run {record.run_id} {record.status}\n")
            return


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def _file_name(descriptor: ArtifactDescriptor) -> str:
    """The artifact's name, with its format as the extension if it has none."""
    name = Path(descriptor.name).name
    if "." in name or not descriptor.format:
        return name
    return f"{name}.{descriptor.format}"


def _artifacts_ls(args: argparse.Namespace) -> int:
    with _opened(args) as (store, record):
        artifacts = [_artifact(a) for a in store.list_artifacts(record.run_id)]
    if args.json:
        emit_json({"run_id": record.run_id, "artifacts": artifacts})
        return 0
    columns = ["name", "kind", "format", "size_bytes", "sha256"]
    emit_rows(columns, [[a[c] for c in columns] for a in artifacts])
    return 0


def _artifacts_get(args: argparse.Namespace) -> int:
    with _opened(args) as (store, record):
        descriptor = next(
            (a for a in store.list_artifacts(record.run_id) if a.name == args.name), None
        )
        if descriptor is None:
            names = ", ".join(a.name for a in store.list_artifacts(record.run_id)) or "none"
            raise StoreError(
                f"run {record.run_id!r} has no artifact {args.name!r} (it has: {names})"
            )
        target = args.output or _file_name(descriptor)
        if target == "-":
            return _copy_checked(store, record.run_id, descriptor, sys.stdout.buffer)
        path = Path(target)
        if path.exists() and not args.force:
            raise ConfigError(f"{str(path)!r} exists; --force replaces it")
        partial = path.with_name(f".{path.name}.part")
        try:
            with partial.open("wb") as out:
                code = _copy_checked(store, record.run_id, descriptor, out)
            if code != 0:
                return code
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
    sys.stderr.write(f"metalab: {descriptor.size_bytes} bytes written to {str(path)!r}\n")
    return 0


def _copy_checked(store: Store, run_id: str, descriptor: ArtifactDescriptor, out: Any) -> int:
    """Copy an artifact's bytes to ``out``; 1 (and a message) if its sha256 differs."""
    digest = hashlib.sha256()
    if isinstance(store, SupportsArtifactStreaming):
        with store.open_artifact(run_id, descriptor.name) as source:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    else:
        data = store.get_artifact(run_id, descriptor.name)
        digest.update(data)
        out.write(data)
    if digest.hexdigest() != descriptor.content_hash:
        sys.stderr.write(
            f"metalab: error: artifact {descriptor.name!r} of run {run_id!r} does not match "
            f"its recorded sha256 (the file changed since it was stored); nothing was kept\n"
        )
        return 1
    return 0
