"""Queries over a store that has no engine of its own, answered in Python.

The query package evaluates a query over records it is handed; reading those records
(and their derived metrics) out of a store is the store side's job, so it lives here
and the query package stays free of any store import.
"""

from __future__ import annotations

from collections.abc import Mapping

from metalab.query import DerivedLookup, Query, select
from metalab.records import DerivedMetrics, MetricValue, RunRecord
from metalab.store.abc import Store, SupportsBulkDerived

__all__ = ["derived_lookup", "select_runs"]


def derived_lookup(store: Store, experiment_id: str | None = None) -> DerivedLookup:
    """Read runs' derived metrics from ``store`` (for queries on ``derived.*``).

    A store that can list them (:class:`~metalab.store.abc.SupportsBulkDerived`) is
    asked once, at the first lookup, for those of ``experiment_id`` (``None``: all
    it holds); any other store is asked run by run.

    Args:
        store: The store holding the derived metrics.
        experiment_id: The experiment whose runs will be looked up (``None``: any).

    Returns:
        A function from a run record to its derived metrics, or ``None`` for a run
        that has none.
    """
    if not isinstance(store, SupportsBulkDerived):

        def per_run(record: RunRecord) -> Mapping[str, MetricValue] | None:
            doc = store.get_derived(record.run_id)
            return None if doc is None else doc.metrics

        return per_run
    bulk = store
    listed: dict[str, DerivedMetrics] | None = None

    def from_listing(record: RunRecord) -> Mapping[str, MetricValue] | None:
        nonlocal listed
        if listed is None:
            listed = bulk.list_derived(experiment_id)
        doc = listed.get(record.run_id)
        return None if doc is None else doc.metrics

    return from_listing


def select_runs(store: Store, query: Query, experiment_id: str | None) -> list[RunRecord]:
    """Answer ``query`` over a store's records in Python (for stores without an index).

    Args:
        store: Any store.
        query: What to select.
        experiment_id: The experiment to read (``None``: every run the store holds).

    Returns:
        The matching runs, in the query's order and window.
    """
    return select(
        store.list_run_records(experiment_id), query, derived_lookup(store, experiment_id)
    )
