"""Any record or derived document comes out of the records snapshot as the codec reads it.

Chunks of current documents decode in one call, the others one by one (escaped
non-finite floats, for one): both give what decoding the file gives.
"""

from __future__ import annotations

import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from metalab import _codec
from metalab.records import DerivedMetrics, RunRecord
from metalab.store._fileio import FileKey
from metalab.store._records_snapshot import SnapshotWriter, open_snapshot, write_part
from metalab.testing import assert_same_document
from metalab.testing import strategies as mst

_OLD: FileKey = (10, 1_000_000_000, 1)  # a file written long before the snapshot


@settings(max_examples=60, deadline=None)
@given(
    st.lists(mst.run_records(), max_size=5, unique_by=lambda r: r.run_id),
    st.lists(mst.derived_metrics(), max_size=5),
)
def test_documents_survive_the_snapshot(
    records: list[RunRecord], derived: list[DerivedMetrics]
) -> None:
    runs = {r.run_id: r for r in records}
    metrics = {f"d{i}": d for i, d in enumerate(derived)}
    with tempfile.TemporaryDirectory() as directory:
        writer = SnapshotWriter(directory)
        write_part(
            writer,
            "runs",
            dict.fromkeys(runs, _OLD),
            None,
            lambda n: (_codec.RUN_RECORD.encode(runs[n]), _OLD),
        )
        write_part(
            writer,
            "derived",
            dict.fromkeys(metrics, _OLD),
            None,
            lambda n: (_codec.DERIVED.encode(metrics[n]), _OLD),
        )
        writer.commit()
        snapshot = open_snapshot(f"{directory}/.records-snapshot")
        assert snapshot is not None
        with snapshot:
            back_runs = dict(snapshot.runs(dict.fromkeys(runs, _OLD)))
            back_derived = dict(snapshot.derived(dict.fromkeys(metrics, _OLD)))
    assert sorted(back_runs) == sorted(runs)
    for run_id, record in back_runs.items():
        assert_same_document(record, runs[run_id])
        assert record.started_at.tzinfo is not None
    assert sorted(back_derived) == sorted(metrics)
    for name, document in back_derived.items():
        assert_same_document(document, metrics[name])
