"""Run summaries: how many runs an experiment has in each status, and when it last moved."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from metalab.records import RunRecord

__all__ = ["RunSummary", "SummaryGroup", "summarize_groups", "summarize_runs"]


@dataclass(frozen=True)
class RunSummary:
    """The runs of one experiment at a glance, without reading a single record.

    What a store that summarises itself (``SupportsRunSummary``) answers from its
    index, and what the Python engine computes from the records for the others.

    Attributes:
        experiment_id: The experiment.
        counts: How many runs are in each status (only the statuses that occur).
        last_activity: The latest start or finish of any of its runs, or ``None``
            when it has none.
        tags: Every tag some run carries, sorted in code-point order.
    """

    experiment_id: str
    counts: dict[str, int] = field(default_factory=dict)
    last_activity: dt.datetime | None = None
    tags: list[str] = field(default_factory=list)

    @property
    def runs(self) -> int:
        """How many runs the experiment has."""
        return sum(self.counts.values())


SummaryGroup = tuple[str, str, Sequence[str], int, dt.datetime | None]
"""``(experiment id, status, tags, runs, last activity)``: runs that share those values."""


def summarize_runs(
    records: Iterable[RunRecord], experiment_id: str | None = None
) -> dict[str, RunSummary]:
    """Summarise records by experiment.

    Args:
        records: Run records of any experiments.
        experiment_id: Summarise only this experiment; it is in the answer even
            when no record belongs to it (with no runs).

    Returns:
        ``experiment id -> RunSummary``, sorted by experiment id: every experiment
        that has a record among ``records`` (or only ``experiment_id``).
    """
    return summarize_groups(
        (
            (
                r.experiment_id,
                r.status,
                r.tags,
                1,
                r.started_at if r.finished_at is None else max(r.started_at, r.finished_at),
            )
            for r in records
        ),
        experiment_id,
    )


def summarize_groups(
    groups: Iterable[SummaryGroup], experiment_id: str | None = None
) -> dict[str, RunSummary]:
    """Fold groups of runs (as an index counts them) into one summary per experiment.

    Args:
        groups: ``(experiment id, status, tags, runs, last activity)`` tuples; an
            experiment may have any number of them.
        experiment_id: Keep only this experiment, present even without groups.

    Returns:
        ``experiment id -> RunSummary``, sorted by experiment id; times in UTC.
    """
    counts: dict[str, dict[str, int]] = {}
    latest: dict[str, dt.datetime] = {}
    tags: dict[str, set[str]] = {}
    if experiment_id is not None:
        counts[experiment_id], tags[experiment_id] = {}, set()
    for eid, status, run_tags, runs, last in groups:
        if experiment_id is not None and eid != experiment_id:
            continue
        by_status = counts.setdefault(eid, {})
        by_status[status] = by_status.get(status, 0) + runs
        tags.setdefault(eid, set()).update(run_tags)
        if last is not None and (eid not in latest or last > latest[eid]):
            latest[eid] = last
    return {
        eid: RunSummary(
            experiment_id=eid,
            counts=dict(sorted(counts[eid].items())),
            last_activity=None if eid not in latest else latest[eid].astimezone(dt.UTC),
            tags=sorted(tags[eid]),
        )
        for eid in sorted(counts)
    }
