"""``metalab store gc``: what crashes leave behind, and runs whose process is gone.

Five kinds of leftovers, each only when older than the cutoff:

- temp files (``.*.partial``) of writes that never finished;
- records snapshots (``.records-snapshot``) that are stale: unreadable, or holding
  documents whose files changed or are gone since (they are derived, and the next
  sweep or ``FileStore.snapshot_records()`` writes a current one);
- frame and query caches (``.frame-cache``, ``.query-cache``) written before the
  runs or derived metrics last changed (never served again; the next whole frame or
  query writes a current one);
- artifact files that no manifest names (a crash while an artifact was put or
  replaced);
- ``running`` runs whose process is known to be gone (:mod:`metalab._liveness`).

A ``running`` run of another host, or one whose record names no process (written by
metalab 0.1 or an older metalab), cannot be judged from here: it is reported and left
alone unless ``include_unknown`` says that such runs are abandoned. A run is deleted
with the store's conditional delete, which removes it only if its stored record is
still the one judged, so a run that finished or was started again meanwhile is kept.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalab._liveness import Liveness, writer_liveness
from metalab.cli._session import files_of
from metalab.errors import CapabilityError, CorruptRecordError
from metalab.records import RunRecord, utc_now
from metalab.store import Store, SupportsDelete
from metalab.store.abc import ProgressCallback

__all__ = ["GcReport", "RunVerdict", "collect_garbage", "delete_if_unchanged"]

Delete = Callable[[SupportsDelete, RunRecord], bool]
"""Deletes a run if its stored record is still the one given; says whether it did."""


_STEPS = 4


def _no_progress(done: int, total: int | None) -> None:
    """Report nowhere."""


def delete_if_unchanged(store: SupportsDelete, record: RunRecord) -> bool:
    """Delete ``record``'s run only if the store still holds exactly ``record``."""
    return store.delete_run(record.run_id, expected=record)


def judge_writer(record: RunRecord) -> Liveness:
    """Say whether the process named by a running record's provenance is alive."""
    provenance = record.provenance
    return writer_liveness(provenance.host, provenance.pid, record.started_at)


@dataclass(frozen=True)
class RunVerdict:
    """A ``running`` run older than the cutoff, and what its writer was found to be."""

    record: RunRecord
    writer: Liveness

    def as_json(self) -> dict[str, Any]:
        """The run as one entry of the ``--json`` output."""
        record = self.record
        return {
            "experiment_id": record.experiment_id,
            "run_id": record.run_id,
            "started_at": record.started_at.isoformat(),
            "host": record.provenance.host,
            "pid": record.provenance.pid,
            "writer": self.writer,
        }


@dataclass
class GcReport:
    """What gc removed (or, in a dry run, would remove) and what it left alone.

    Attributes:
        applied: Whether anything was removed (``False``: a dry run).
        temp_files: Temp files of writes that never finished.
        stale_snapshots: Records snapshots that are unreadable or outdated.
        stale_caches: Frame and query caches of runs that changed since.
        unreferenced_artifacts: Artifact files that no manifest names.
        stuck_runs: Runs whose writer is gone (or cannot be judged, with
            ``include_unknown``).
        changed_runs: Stuck runs whose record changed between the listing and the
            delete (the run finished, or was started again): kept.
        alive_runs: Runs whose process is still at work: kept.
        unknown_runs: Runs whose writer cannot be judged from this host: kept.
        problems: What could not be read or removed, one line each.
    """

    applied: bool
    temp_files: list[Path] = field(default_factory=list)
    stale_snapshots: list[Path] = field(default_factory=list)
    stale_caches: list[Path] = field(default_factory=list)
    unreferenced_artifacts: list[Path] = field(default_factory=list)
    stuck_runs: list[RunVerdict] = field(default_factory=list)
    changed_runs: list[RunVerdict] = field(default_factory=list)
    alive_runs: list[RunVerdict] = field(default_factory=list)
    unknown_runs: list[RunVerdict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _remove_old(
    paths: list[Path], horizon: float, apply: bool, what: str, problems: list[str]
) -> list[Path]:
    """The ``paths`` last modified before ``horizon``, removed if ``apply``.

    A file gone meanwhile is skipped; one that cannot be checked or removed is a
    problem naming ``what`` it is.
    """
    old: list[Path] = []
    for path in paths:
        try:
            if path.stat().st_mtime < horizon:
                if apply:
                    path.unlink(missing_ok=True)
                old.append(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"cannot remove {what} {str(path)!r}: {exc}")
    return old


def collect_garbage(
    store: Store,
    *,
    older_than: dt.timedelta,
    apply: bool,
    include_unknown: bool = False,
    delete: Delete = delete_if_unchanged,
    progress: ProgressCallback | None = None,
) -> GcReport:
    """Find (and with ``apply``, remove) what crashes left in a store's files.

    Args:
        store: A store with files (a FileStore, or an index over one).
        older_than: Only what was written (runs: started) longer ago than this.
        apply: Remove; otherwise only report.
        include_unknown: Treat a run whose writer cannot be judged as stuck.
        delete: Deletes a run if its stored record is still the one given; a test
            puts a writer's record in between here.
        progress: Called as ``progress(step, 4)`` as the steps finish: temp files
            and snapshots, artifact files, run records, removals.

    Raises:
        CapabilityError: The store has no files, or cannot delete runs.
    """
    files = files_of(store)
    if files is None:
        raise CapabilityError(
            type(store).__qualname__, "SupportsWorkingDirectory", "metalab store gc"
        )
    step = progress if progress is not None else _no_progress
    step(0, _STEPS)
    report = GcReport(applied=apply)
    horizon = time.time() - older_than.total_seconds()
    cutoff = utc_now() - older_than
    temp_files = sorted(files.get_working_directory().rglob(".*.partial"))
    report.temp_files = _remove_old(temp_files, horizon, apply, "temp file", report.problems)
    stale = [Path(check.path) for check in files.check_records_snapshots() if check.stale]
    report.stale_snapshots = _remove_old(stale, horizon, apply, "snapshot", report.problems)
    caches = [Path(path) for path in files.stale_caches()]
    report.stale_caches = _remove_old(caches, horizon, apply, "cache", report.problems)
    step(1, _STEPS)

    def unreadable(exc: CorruptRecordError) -> None:
        report.problems.append(f"{exc} (its run's artifact files were left alone)")

    report.unreferenced_artifacts = (
        files.remove_unreferenced_artifacts(horizon, on_error=unreadable)
        if apply
        else files.unreferenced_artifacts(horizon, on_error=unreadable)
    )
    step(2, _STEPS)
    scan = files.scan_run_records()
    report.problems.extend(str(problem) for problem in scan.problems)
    stuck: list[RunVerdict] = []
    for record in sorted(scan.records, key=lambda r: (r.experiment_id, r.run_id)):
        if record.status != "running" or record.started_at >= cutoff:
            continue
        verdict = RunVerdict(record, judge_writer(record))
        if verdict.writer == "alive":
            report.alive_runs.append(verdict)
        elif verdict.writer == "unknown" and not include_unknown:
            report.unknown_runs.append(verdict)
        else:
            stuck.append(verdict)
    step(3, _STEPS)
    if not (apply and stuck):
        report.stuck_runs = stuck
        step(_STEPS, _STEPS)
        return report
    if not isinstance(store, SupportsDelete):
        raise CapabilityError(
            type(store).__qualname__, "SupportsDelete", "metalab store gc --apply"
        )
    for verdict in stuck:
        try:
            deleted = delete(store, verdict.record)
        except OSError as exc:
            report.problems.append(f"cannot remove run {verdict.record.run_id}: {exc}")
            continue
        (report.stuck_runs if deleted else report.changed_runs).append(verdict)
    step(_STEPS, _STEPS)
    return report
