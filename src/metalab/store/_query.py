"""Queries evaluated in Python against any Store (the stores without an index of their own)."""

from __future__ import annotations

from collections.abc import Mapping

from metalab.query import Query, select
from metalab.query._python import DerivedLookup
from metalab.records import DerivedMetrics, MetricValue, RunRecord
from metalab.store.abc import Store, SupportsBulkDerived

__all__ = ["derived_lookup", "select_runs"]


def derived_lookup(store: Store, experiment_id: str | None = None) -> DerivedLookup:
    """Read runs' derived metrics from ``store`` (for queries on ``derived.*``).

    A store that can list them (:class:`~metalab.store.abc.SupportsBulkDerived`) is
    asked once, at the first lookup, for those of ``experiment_id`` (``None``: all
    it holds); any other store is asked run by run.
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
    """Answer ``query`` over a store's records in Python (stores without an index)."""
    return select(
        store.list_run_records(experiment_id), query, derived_lookup(store, experiment_id)
    )
