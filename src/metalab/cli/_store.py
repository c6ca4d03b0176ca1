"""``metalab store ...``: export, ls, info, verify, rebuild-index, sync-index, gc."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from metalab import _codec
from metalab._progress import Progress, progress_bar
from metalab.cli._gc import GcReport, RunVerdict, collect_garbage
from metalab.cli._output import emit_json, emit_rows
from metalab.cli._session import Session, files_of, open_store, require_readable, write_notes
from metalab.errors import (
    ArtifactNotFoundError,
    CapabilityError,
    ConfigError,
    CorruptRecordError,
)
from metalab.interop.parquet import export_parquet
from metalab.records import RunRecord
from metalab.results import frame_cache_matches
from metalab.series import MetricSeries
from metalab.store import (
    FileStore,
    PostgresStore,
    PostgresStoreConfig,
    Store,
    StoreConfig,
    SupportsArtifactStreaming,
    SupportsExperiments,
    SupportsIndexRebuild,
    SupportsIndexSync,
    SupportsWorkingDirectory,
    coerce_store_config,
)
from metalab.store.locator import redact
from metalab.store.transfer import KINDS, export_store, sha256_matches

__all__ = ["add_parser"]

_STATUSES: Final = ("success", "failed", "cancelled", "running")
_DURATION: Final = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhd])$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CHUNK: Final = 1 << 20
_PARQUET: Final = "parquet://"


_EXIT_STATUS: Final = (
    "Exit status: 0 when the command did its job, also when an index could not answer "
    "and the files (the source of truth) answered instead: that is reported on stderr "
    "and as 'index' and 'index_problem' in --json. 1 when the store needs attention: a "
    "record that cannot be decoded (listed with its path and the reason, while every "
    "other record is still used), a problem found by verify (a stale or unreachable "
    "index is one), or a failed operation. 2 for usage errors."
)


def add_parser(commands: Any) -> None:
    """Add ``store`` and its subcommands."""
    store = commands.add_parser("store", help="inspect, copy and repair stores")
    sub = store.add_subparsers(dest="store_command", metavar="SUBCOMMAND", required=True)

    export = sub.add_parser(
        "export",
        help="copy experiments from one store to another, or write them as Parquet files",
        description="Copy experiments from one store to another.\n\n"
        "With --to parquet:///DIR (or parquet://DIR, relative), write each experiment as\n"
        "Parquet files instead: DIR/<experiment>/runs.parquet, one row per run, and\n"
        "series.parquet, one row per series point (when its runs have series). Each\n"
        "export replaces the files; the store stays the source of truth.",
        epilog="Example: metalab store export --from ./experiments "
        "--to 'postgresql://lab@db/metalab?file_root=/data/experiments' --experiment mnist:1.0\n"
        "Example: metalab store export --from ./experiments --to parquet:///data/exports\n"
        "Example: metalab store export --from ./experiments --to parquet://exports  (relative)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--from", dest="source", required=True, metavar="SRC", help="source")
    export.add_argument(
        "--to",
        dest="destination",
        required=True,
        metavar="DST",
        help="target: a store locator, or parquet://DIR for Parquet files",
    )
    export.add_argument("--experiment", metavar="ID", help="only this experiment")
    export.add_argument(
        "--no-artifacts", action="store_true", help="do not copy artifacts (store targets)"
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace destination items that differ (store targets)",
    )
    export.add_argument("--json", action="store_true", help="print the report as JSON")
    export.set_defaults(handler=_export)

    ls = sub.add_parser(
        "ls",
        help="experiments with run counts by status",
        epilog="Example: metalab store ls ./experiments --json\n\n" + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ls.add_argument("locator", help="a path, file:// or postgresql:// locator")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=_ls)

    info = sub.add_parser(
        "info",
        help="backend, layout version, sizes, index state",
        epilog="Example: metalab store info ./experiments\n\n" + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("locator")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=_info)

    verify = sub.add_parser(
        "verify",
        help="check every record, artifact hash, records snapshot, cache and the index; "
        "changes nothing",
        epilog="Example: metalab store verify ./experiments --experiment mnist:1.0\n\n"
        + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("locator")
    verify.add_argument("--experiment", metavar="ID", help="only this experiment")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(handler=_verify)

    rebuild = sub.add_parser(
        "rebuild-index",
        help="rebuild the index from the files",
        epilog="Example: metalab store rebuild-index "
        "'postgresql://lab@db/metalab?file_root=/data/experiments' --json",
    )
    rebuild.add_argument("locator")
    rebuild.add_argument(
        "--file-root-moved",
        action="store_true",
        help="the files were moved from the root the index was built from to the "
        "locator's file_root: index them there and record the new root",
    )
    rebuild.add_argument("--json", action="store_true", help="print JSON")
    rebuild.set_defaults(handler=_rebuild)

    sync = sub.add_parser(
        "sync-index",
        help="index what changed in the files",
        epilog="Example: metalab store sync-index "
        "'postgresql://lab@db/metalab?file_root=/data/experiments'",
    )
    sync.add_argument("locator")
    sync.add_argument("--json", action="store_true", help="print JSON")
    sync.set_defaults(handler=_sync)

    snapshot = sub.add_parser(
        "snapshot",
        help="write the snapshots that repeat reads of the files use (derived)",
        description="Write each experiment directory's records snapshot (run records and "
        "derived metrics in one file, read by listings instead of one file per document) "
        "and series snapshot (float series as arrays, read by series frames). A sweep "
        "writes both when it ends; this is for runs written otherwise (an import, your "
        "own puts). Only new or changed files are read; files changed in the last two "
        "seconds are left out (readers read those files). Both are derived: the files "
        "stay the truth, and deleting them loses nothing.",
        epilog="Example: metalab store snapshot ./experiments --experiment mnist:1.0\n\n"
        + _EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    snapshot.add_argument("locator")
    snapshot.add_argument("--experiment", metavar="ID", help="only this experiment")
    snapshot.add_argument("--json", action="store_true", help="print JSON")
    snapshot.set_defaults(handler=_snapshot)

    gc = sub.add_parser(
        "gc",
        help="remove leftover temp and artifact files, stale snapshots, and runs whose "
        "process is gone (dry run by default)",
        description="Remove what crashes leave behind, if older than --older-than: temp "
        "files of unfinished writes, records snapshots that are stale (unreadable, or "
        "holding documents whose files changed since; they are derived), frame and query "
        "caches of runs that changed since they were written, artifact files "
        "that no manifest names, and runs "
        "stuck in 'running' whose process is gone. A run counts as stuck only when its "
        "record names a process on this host and that process no longer exists (or its "
        "pid now belongs to a newer process). A running run of another host, or one "
        "whose record names no process (written by metalab 0.1 or an older metalab), is "
        "reported as 'cannot tell whether it is alive' and left alone unless "
        "--include-unknown is given. A run that finishes, or is started again, while gc "
        "runs is kept. Nothing is removed without --apply.",
        epilog="Example: metalab store gc ./experiments --older-than 7d (then again with "
        "--apply). " + _EXIT_STATUS,
    )
    gc.add_argument("locator")
    gc.add_argument(
        "--older-than",
        default="24h",
        metavar="AGE",
        help="only runs started (and files written) longer ago than AGE, e.g. 30m, 24h, 7d "
        "(default: 24h)",
    )
    gc.add_argument(
        "--include-unknown",
        action="store_true",
        help="also remove running runs older than AGE whose process cannot be checked from "
        "this host (another host's runs, records without a pid); only when you know that "
        "none of them is still at work",
    )
    gc.add_argument("--apply", action="store_true", help="really remove (default: dry run)")
    gc.add_argument("--json", action="store_true", help="print JSON")
    gc.set_defaults(handler=_gc)


@contextmanager
def _connected(config: StoreConfig, *, file_root_moved: bool = False) -> Iterator[Store]:
    require_readable(config)  # a rebuild from a mistyped file_root would empty the index
    if file_root_moved and not isinstance(config, PostgresStoreConfig):
        raise ConfigError(
            "--file-root-moved is for a store with an index (a postgresql:// locator); "
            f"a {type(config).__name__.removesuffix('Config')} keeps no file root"
        )
    store = config.connect()
    try:
        foreign = getattr(store, "foreign_file_root", None)
        if foreign is not None and not file_root_moved:
            raise ConfigError(
                f"the index was built from the files under {foreign!r}, not "
                f"{getattr(config, 'file_root', '?')!r}; if the files moved there, "
                "'metalab store rebuild-index LOCATOR --file-root-moved' rebuilds the index "
                "from them and records their new root"
            )
        yield store
    finally:
        store.close()


def _missing(store: object, capability: str, operation: str) -> CapabilityError:
    return CapabilityError(type(store).__qualname__, capability, operation)


def _experiment_ids(session: Session, config: StoreConfig) -> list[str]:
    if config.experiment_id is not None:
        return [config.experiment_id]
    return session.experiments()


def _exit_code(problems: list[str]) -> int:
    return 1 if problems else 0


def _export(args: argparse.Namespace) -> int:
    if args.destination[: len(_PARQUET)].lower() == _PARQUET:
        return _export_parquet(args)
    with progress_bar("exporting", enabled=not args.json) as progress:
        report = export_store(
            args.source,
            args.destination,
            args.experiment,
            artifacts=not args.no_artifacts,
            overwrite=args.overwrite,
            progress=progress,
        )
    counts = {kind: dataclasses.asdict(report.counts[kind]) for kind in KINDS}
    if args.json:
        emit_json(
            {
                "experiments": report.experiments,
                "counts": counts,
                "problems": report.problems,
                "repaired": report.repaired,
            }
        )
    else:
        rows = [[kind, *counts[kind].values()] for kind in KINDS]
        emit_rows(["kind", "copied", "skipped", "conflicts", "failed"], rows)
        for line in report.repaired:
            sys.stderr.write(f"metalab: {line}\n")
        for problem in report.problems:
            sys.stderr.write(f"metalab: {problem}\n")
    return 0 if report.ok else 1


def _export_parquet(args: argparse.Namespace) -> int:
    directory = args.destination[len(_PARQUET) :]
    if not directory:
        raise ConfigError(
            f"--to {args.destination!r} names no directory: use parquet:///absolute/dir "
            "or parquet://relative/dir"
        )
    flags = [
        f
        for f, on in (("--no-artifacts", args.no_artifacts), ("--overwrite", args.overwrite))
        if on
    ]
    if flags:
        raise ConfigError(
            f"{' and '.join(flags)} apply to store targets only, not to a parquet:// "
            "target (whose files every export replaces)"
        )
    with progress_bar("exporting", enabled=not args.json) as progress:
        report = export_parquet(
            args.source, directory, experiment_id=args.experiment, progress=progress
        )
    if args.json:
        emit_json(
            {
                "directory": str(report.directory),
                "experiments": report.experiments,
                "files": [str(path) for path in report.files],
                "runs": report.runs,
                "series_points": report.series_points,
                "notes": report.notes,
            }
        )
    else:
        rows = [
            [
                detail.experiment_id,
                detail.runs,
                detail.series_points,
                ", ".join(str(path.relative_to(report.directory)) for path in detail.files),
            ]
            for detail in report.details
        ]
        emit_rows(["experiment", "runs", "series points", "files"], rows)
        for note in report.notes:
            sys.stderr.write(f"metalab: {note}\n")
    return 0


def _ls(args: argparse.Namespace) -> int:
    config = coerce_store_config(args.locator)
    rows = []
    problems: list[str] = []
    with open_store(config) as session:
        for eid in _experiment_ids(session, config):
            records, found = session.records(eid)
            problems.extend(found)
            counts = Counter(r.status for r in records)
            rows.append([eid, len(records), *(counts.get(s, 0) for s in _STATUSES)])
    columns = ["experiment", "runs", *_STATUSES]
    if args.json:
        emit_json(
            {
                "experiments": [dict(zip(columns, row, strict=True)) for row in rows],
                **session.index.as_json(),
                "problems": problems,
            }
        )
    else:
        emit_rows(columns, rows)
        write_notes(sys.stderr, session.index, problems)
    return _exit_code(problems)


def _directory_size(path: Path, progress: Progress) -> tuple[int, int]:
    files = size = 0
    for base, _dirs, names in os.walk(path):
        for name in names:
            try:
                size += (Path(base) / name).stat().st_size
            except FileNotFoundError:
                continue
            files += 1
        progress(files)
    return files, size


def _info(args: argparse.Namespace) -> int:
    config = coerce_store_config(args.locator)
    info: dict[str, Any] = {
        "locator": redact(args.locator),
        "backend": type(config).__name__.removesuffix("Config"),
        "scheme": config.scheme,
        "experiment_id": config.experiment_id,
    }
    with (
        open_store(config) as session,
        progress_bar("counting files", enabled=not args.json) as bar,
    ):
        store = session.store
        experiments = session.experiments() if isinstance(store, SupportsExperiments) else []
        info["experiments"] = experiments
        records, problems = session.records(config.experiment_id)
        info["runs"] = len(records)
        if isinstance(store, SupportsWorkingDirectory):
            directory = store.get_working_directory()
            info["directory"] = str(directory)
            files, size = _directory_size(directory, bar)
            info["files"], info["bytes"] = files, size
            meta_path = directory / "_meta.json"
            try:
                meta = _codec.STORE_META.decode(meta_path.read_bytes(), source=str(meta_path))
            except FileNotFoundError:
                info["layout"] = "collection" if experiments else "empty"
            else:
                info["layout"] = f"schema version {_codec.CURRENT_VERSION}"
                info["created_at"] = meta.created_at.isoformat() if meta.created_at else None
    info.update(session.index.as_json())
    info["problems"] = problems
    if args.json:
        emit_json(info)
    else:
        rows = {k: v for k, v in info.items() if k not in ("index_problem", "problems")}
        if rows["index"] is None:
            del rows["index"]  # a store without an index
        rows["problems"] = len(problems)
        width = max(len(k) for k in rows)
        for key, value in rows.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            sys.stdout.write(f"{key.ljust(width)}  {shown}\n")
        write_notes(sys.stderr, session.index, problems)
    return _exit_code(problems)


def _sha256(store: Store, run_id: str, name: str) -> str:
    digest = hashlib.sha256()
    if isinstance(store, SupportsArtifactStreaming):
        with store.open_artifact(run_id, name) as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    else:
        digest.update(store.get_artifact(run_id, name))
    return digest.hexdigest()


def _verify(args: argparse.Namespace) -> int:
    config = coerce_store_config(args.locator)
    if args.experiment is not None:
        config = config.scoped(args.experiment)
    problems: list[str] = []
    checked: Counter[str] = Counter()
    with open_store(config) as session, progress_bar("verifying", enabled=not args.json) as bar:
        bar(0, None)
        listed = []
        for eid in _experiment_ids(session, config):
            records, found = session.records(eid)
            problems.extend(found)
            checked["records"] += len(records) + len(found)
            listed.append((eid, records))
        total = sum(len(records) for _eid, records in listed)
        start = 0
        for eid, records in listed:
            problems.extend(_verify_runs(session.store, eid, records, checked, bar, total, start))
            problems.extend(_verify_snapshots(session.store, eid, checked))
            problems.extend(_verify_frame_cache(session.store, eid, checked))
            start += len(records)
            if session.index.state == "up to date":
                problems.extend(_verify_index(session, eid, records, checked))
    if session.index.problem is not None:
        # An index that could not answer was not compared with the files.
        problems.insert(0, session.index.problem)
    if args.json:
        emit_json(
            {
                "checked": dict(checked),
                **session.index.as_json(),
                "problems": problems,
                "ok": not problems,
            }
        )
    else:
        for problem in problems:
            sys.stdout.write(f"PROBLEM  {problem}\n")
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(checked.items()))
        sys.stdout.write(f"checked {summary}: {len(problems)} problem(s)\n")
    return _exit_code(problems)


def _verify_runs(
    store: Store,
    eid: str,
    records: list[RunRecord],
    checked: Counter[str],
    progress: Progress,
    total: int,
    start: int,
) -> list[str]:
    problems: list[str] = []
    files = files_of(store)
    for done, record in enumerate(records, start=start + 1):
        progress(done, total)
        if files is not None:
            problems.extend(_verify_series(files, eid, record.run_id, checked))
        try:
            store.get_derived(record.run_id)
        except CorruptRecordError as exc:
            problems.append(str(exc))
        for descriptor in store.list_artifacts(record.run_id):
            checked["artifacts"] += 1
            what = f"artifact {descriptor.name!r} of run {record.run_id} ({eid})"
            try:
                found = _sha256(store, record.run_id, descriptor.name)
            except ArtifactNotFoundError:
                problems.append(f"{what} is missing")
                continue
            if not sha256_matches(found, descriptor.content_hash):
                problems.append(
                    f"{what} does not match its sha256 (recorded {descriptor.content_hash}, "
                    f"found {found})"
                )
    return problems


def _verify_snapshots(store: Store, eid: str, checked: Counter[str]) -> list[str]:
    """Problems of the experiment's records snapshot: unreadable, or holding wrong documents."""
    files = files_of(store)
    if files is None:
        return []
    problems = []
    for check in files.check_records_snapshots(eid, compare=True):
        checked["snapshot documents"] += check.held
        fix = "it is derived: `metalab store gc --apply` removes it, the next sweep rewrites it"
        if not check.readable:
            problems.append(f"records snapshot {check.path} cannot be read ({fix})")
        if check.differing:
            shown = ", ".join(check.differing[:5])
            more = f" and {len(check.differing) - 5} more" if len(check.differing) > 5 else ""
            problems.append(
                f"records snapshot {check.path} holds other documents than the unchanged "
                f"files {shown}{more} ({fix})"
            )
    return problems


def _verify_frame_cache(store: Store, eid: str, checked: Counter[str]) -> list[str]:
    """Cached frames and query answers that would be served but differ from the files'."""
    fix = "it is derived: delete it"
    problems = []
    matches = frame_cache_matches(store, eid)
    if matches is not None:
        checked["frame caches"] += 1
        if not matches:
            problems.append(
                f"the frame cache of {eid!r} is not the frame its runs build (a record or "
                f"derived file edited in place?); {fix} (.frame-cache in its directory)"
            )
    files = files_of(store)
    wrong = None if files is None else files.check_query_cache(eid)
    if wrong is not None:
        checked["query caches"] += 1
        if wrong:
            shown = "; ".join(str(query.where) for query in wrong[:3])
            problems.append(
                f"the query cache of {eid!r} holds {len(wrong)} answer(s) the files do not "
                f"give now ({shown}); {fix} (.query-cache in its directory)"
            )
    return problems


def _verify_series(files: FileStore, eid: str, run_id: str, checked: Counter[str]) -> list[str]:
    try:
        scan = files.scan_series(run_id)
    except CorruptRecordError as exc:
        return [str(exc)]
    if scan is None:
        return []
    checked["series points"] += scan.points
    if not scan.torn:
        return []
    problem = (
        f"the series of run {run_id} ({eid}) ends in a torn line of {scan.torn} byte(s), "
        "left out when it is read (a flush cut short, by a kill or a full disk); the "
        "points before it are whole"
    )
    return [problem]


def _verify_index(
    session: Session, eid: str, records: list[RunRecord], checked: Counter[str]
) -> list[str]:
    if session.files is None or session.files is session.store:
        return []
    from_files = {r.run_id: _codec.RUN_RECORD.encode(r) for r in records}
    from_index = {
        r.run_id: _codec.RUN_RECORD.encode(r) for r in session.store.list_run_records(eid)
    }
    checked["index entries"] += len(from_index)
    problems: list[str] = []
    for run_id in sorted(from_files.keys() - from_index.keys()):
        problems.append(f"run {run_id} ({eid}) is in the files but not in the index")
    for run_id in sorted(from_index.keys() - from_files.keys()):
        problems.append(f"run {run_id} ({eid}) is in the index but not in the files")
    for run_id in sorted(from_files.keys() & from_index.keys()):
        if from_files[run_id] != from_index[run_id]:
            problems.append(f"run {run_id} ({eid}) differs between the index and the files")
    if isinstance(session.store, PostgresStore):
        problems.extend(_verify_index_series(session.store, eid, sorted(from_files), checked))
    return problems


_SERIES_BATCH: Final = 1_000


def _verify_index_series(
    store: PostgresStore, eid: str, run_ids: list[str], checked: Counter[str]
) -> list[str]:
    """Compare the series the index holds with the series files, a batch of runs at a time."""
    problems: list[str] = []
    for start in range(0, len(run_ids), _SERIES_BATCH):
        part = run_ids[start : start + _SERIES_BATCH]
        indexed = store.index.series(part, eid)
        checked["index series"] += len(indexed)
        for run_id in part:
            try:
                scan = store.files.scan_series(run_id)
            except CorruptRecordError:
                continue  # reported with the files
            in_index = indexed.get(run_id)
            if scan is None and in_index is not None:
                problems.append(f"the series of run {run_id} ({eid}) is in the index only")
            elif scan is not None and in_index is None:
                problems.append(
                    f"the series of run {run_id} ({eid}) is in the files but not in the index"
                )
            elif (
                scan is not None
                and in_index is not None
                and _series_points(scan.series) != _series_points(in_index)
            ):
                problems.append(
                    f"the series of run {run_id} ({eid}) differs between the index and the files"
                )
    return problems


def _series_points(found: dict[str, MetricSeries]) -> dict[str, list[tuple[object, ...]]]:
    """Series as comparable lists: a NaN by its text, each value with its type."""
    return {
        name: [
            (step, type(value), repr(value), seconds)
            for step, value, seconds in zip(s.steps, s.values, s.seconds, strict=True)
        ]
        for name, s in found.items()
    }


def _rebuild(args: argparse.Namespace) -> int:
    config = coerce_store_config(args.locator)
    with _connected(config, file_root_moved=args.file_root_moved) as store:
        if not isinstance(store, SupportsIndexRebuild):
            raise _missing(store, "SupportsIndexRebuild", "metalab store rebuild-index")
        start = time.perf_counter()
        with progress_bar("rebuilding index", enabled=not args.json) as progress:
            count = store.rebuild_index(progress=progress)
    seconds = time.perf_counter() - start
    if args.json:
        emit_json({"indexed": count, "seconds": round(seconds, 3)})
    else:
        sys.stdout.write(f"indexed {count} record(s) in {seconds:.1f} s\n")
    return 0


def _sync(args: argparse.Namespace) -> int:
    config = coerce_store_config(args.locator)
    with _connected(config) as store:
        if not isinstance(store, SupportsIndexSync):
            raise _missing(store, "SupportsIndexSync", "metalab store sync-index")
        with progress_bar("syncing index", enabled=not args.json) as progress:
            report = store.sync_index(progress=progress)
    data: dict[str, Any] = (
        dataclasses.asdict(report)
        if dataclasses.is_dataclass(report) and not isinstance(report, type)
        else {"report": str(report)}
    )
    if args.json:
        emit_json(data)
    else:
        sys.stdout.write(", ".join(f"{k}: {v}" for k, v in data.items()) + "\n")
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    config = coerce_store_config(args.locator)
    if args.experiment is not None:
        config = config.scoped(args.experiment)
    with open_store(config) as session:
        files = files_of(session.store)
        if files is None:
            raise CapabilityError(
                type(session.store).__qualname__,
                "SupportsWorkingDirectory",
                "metalab store snapshot (snapshots are of files)",
            )
        documents = files.snapshot_records(config.experiment_id)
        series = files.snapshot_series(config.experiment_id)
    if args.json:
        emit_json({"documents": documents, "series_runs": series})
    else:
        sys.stdout.write(
            f"records snapshot: {documents} document(s); series snapshot: {series} run(s)\n"
        )
    return 0


def _age(text: str) -> dt.timedelta:
    match = _DURATION.match(text.strip())
    if match is None:
        raise ConfigError(f"invalid age {text!r}; use a number and a unit: 30s, 15m, 24h, 7d")
    return dt.timedelta(seconds=float(match["n"]) * _UNITS[match["unit"]])


def _gc(args: argparse.Namespace) -> int:
    config = coerce_store_config(args.locator)
    age = _age(args.older_than)
    with open_store(config) as session, progress_bar("gc", enabled=not args.json) as progress:
        report = collect_garbage(
            session.store,
            older_than=age,
            apply=args.apply,
            include_unknown=args.include_unknown,
            progress=progress,
        )
    if args.json:
        emit_json(
            {
                "applied": report.applied,
                "older_than": args.older_than,
                "include_unknown": args.include_unknown,
                "temp_files": [str(p) for p in report.temp_files],
                "stale_snapshots": [str(p) for p in report.stale_snapshots],
                "stale_caches": [str(p) for p in report.stale_caches],
                "unreferenced_artifacts": [str(p) for p in report.unreferenced_artifacts],
                "stuck_runs": [v.as_json() for v in report.stuck_runs],
                "changed_runs": [v.as_json() for v in report.changed_runs],
                "alive_runs": [v.as_json() for v in report.alive_runs],
                "unknown_runs": [v.as_json() for v in report.unknown_runs],
                **session.index.as_json(),
                "problems": report.problems,
            }
        )
    else:
        _print_gc(report)
        write_notes(sys.stderr, session.index, report.problems)
    return _exit_code(report.problems)


def _run_line(verdict: RunVerdict) -> str:
    record = verdict.record
    host, pid = record.provenance.host or "an unnamed host", record.provenance.pid
    since = f"running since {record.started_at:%Y-%m-%d %H:%M} UTC"
    if verdict.writer == "dead":
        why = f"its process {pid} on {host} is gone"
    elif verdict.writer == "alive":
        why = f"its process {pid} on {host} is still running"
    elif pid is None:
        why = "cannot tell whether it is alive: its record names no process"
    else:
        why = f"cannot tell whether it is alive: its process {pid} ran on {host}, not here"
    return f"run {record.run_id} of {record.experiment_id!r} ({since}): {why}"


def _print_gc(report: GcReport) -> None:
    verb = "removed" if report.applied else "would remove"
    out = sys.stdout
    for path in report.temp_files:
        out.write(f"{verb} temp file {path}\n")
    for path in report.stale_snapshots:
        out.write(f"{verb} stale records snapshot {path} (derived: rewritten by the next sweep)\n")
    for path in report.stale_caches:
        out.write(f"{verb} stale cache {path} (derived: rewritten by the next read)\n")
    for path in report.unreferenced_artifacts:
        out.write(f"{verb} artifact file {path} (no manifest names it)\n")
    for verdict in report.stuck_runs:
        out.write(f"{verb} {_run_line(verdict)}\n")
    for verdict in report.changed_runs:
        out.write(
            f"kept run {verdict.record.run_id} of {verdict.record.experiment_id!r}: it "
            "finished or was started again while gc ran\n"
        )
    for verdict in report.alive_runs:
        out.write(f"left alone {_run_line(verdict)}\n")
    for verdict in report.unknown_runs:
        out.write(f"left alone {_run_line(verdict)}; --include-unknown removes it\n")
    kept = len(report.changed_runs) + len(report.alive_runs) + len(report.unknown_runs)
    out.write(
        f"{verb} {len(report.temp_files)} temp file(s), "
        f"{len(report.stale_snapshots)} stale snapshot(s), "
        f"{len(report.stale_caches)} stale cache(s), "
        f"{len(report.unreferenced_artifacts)} unreferenced artifact file(s) and "
        f"{len(report.stuck_runs)} stuck run(s); left {kept} running run(s) alone"
        + ("" if report.applied else "; pass --apply to act")
        + "\n"
    )
