"""How the coordinating process of a Dask sweep paces its bulk writes to the index."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable

from metalab.executors._dask import _Indexer
from metalab.records import RunRecord
from metalab.testing.store import make_record

EXP = "indexer:1"


class SlowBulkStore:
    """Takes ``write_seconds`` per bulk write; notes when each began and ended."""

    def __init__(self, write_seconds: float) -> None:
        self.write_seconds = write_seconds
        self.writes: list[tuple[float, float, int]] = []
        self.first_write = threading.Event()

    def put_run_records(self, records: Iterable[RunRecord]) -> int:
        began = time.monotonic()
        count = len(list(records))
        self.first_write.set()
        time.sleep(self.write_seconds)
        self.writes.append((began, time.monotonic(), count))
        return count


class TestIndexPace:
    def test_records_after_a_quiet_spell_are_written_at_once(self) -> None:
        store = SlowBulkStore(write_seconds=0.0)
        indexer = _Indexer(store, interval=60.0)
        sent = time.monotonic()
        indexer.put([make_record(EXP)])
        assert store.first_write.wait(10)
        indexer.close()
        assert store.writes[0][0] - sent < 30

    def test_writes_begin_at_most_once_per_interval(self) -> None:
        store = SlowBulkStore(write_seconds=0.0)
        indexer = _Indexer(store, interval=0.2)
        until = time.monotonic() + 0.7
        while time.monotonic() < until:
            indexer.put([make_record(EXP)])
            time.sleep(0.01)
        indexer.close()
        starts = [began for began, _, _ in store.writes]
        assert len(starts) >= 3
        # The last write is close()'s, which writes what is left at once.
        assert all(b - a >= 0.2 for a, b in itertools.pairwise(starts[:-1]))
        assert sum(count for _, _, count in store.writes) > len(starts)

    def test_a_write_longer_than_the_interval_is_followed_at_once_by_the_next(self) -> None:
        # Waiting a further interval after each slow write would let a backlog grow.
        store = SlowBulkStore(write_seconds=1.2)
        indexer = _Indexer(store, interval=1.0)
        indexer.put([make_record(EXP)])
        assert store.first_write.wait(10)
        indexer.put([make_record(EXP), make_record(EXP)])  # arrive during the first write
        while len(store.writes) < 2:
            time.sleep(0.01)
        indexer.close()
        (_, first_ended, _), (second_began, _, second_count) = store.writes
        assert second_count == 2
        assert second_began - first_ended < 0.5  # the old pace waited 1.0 s here
