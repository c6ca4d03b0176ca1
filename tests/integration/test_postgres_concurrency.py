"""Several processes writing to one PostgresStore at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from metalab import _codec
from metalab.store import PostgresStoreConfig
from metalab.testing.postgres import PostgresStoreBackdoor
from metalab.testing.store import make_record

EXP = "parallel:1"
WORKERS = 4
OWN_RUNS = 150
SHARED_RUNS = 20

WRITER = textwrap.dedent(
    """
    import sys
    from metalab.store import parse_to_config
    from metalab.testing.store import make_record

    locator, worker, own, shared = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    with parse_to_config(locator).connect() as store:
        for i in range(own):
            store.put_run_record(make_record("parallel:1", f"w{worker}-{i}"))
            run_id = shared[i % len(shared)]
            if (i + worker) % 2:
                store.put_run_record(make_record("parallel:1", run_id, status="running"))
            else:
                store.put_run_record(make_record("parallel:1", run_id, status="success"))
        for run_id in shared:
            store.put_run_record(make_record("parallel:1", run_id, status="success"))
            store.put_run_record(make_record("parallel:1", run_id, status="running"))
    """
)


class TestProcessesWritingConcurrently:
    def test_four_processes_lose_nothing_and_never_move_a_record_backwards(
        self, postgres_config: PostgresStoreConfig, postgres_url: str
    ) -> None:
        config = postgres_config.scoped(EXP)
        with config.connect():
            pass  # create the schema and the experiment directory once, up front
        shared = [f"shared-{i}" for i in range(SHARED_RUNS)]
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, config.to_locator(), str(w), str(OWN_RUNS), *shared],
                stderr=subprocess.PIPE,
                text=True,
            )
            for w in range(WORKERS)
        ]
        for worker in workers:
            _, errors = worker.communicate(timeout=600)
            assert worker.returncode == 0, errors
        expected = {f"w{w}-{i}" for w in range(WORKERS) for i in range(OWN_RUNS)} | set(shared)
        with config.connect() as store:
            assert not store.is_index_stale()
            records = {r.run_id: r for r in store.list_run_records()}
            assert set(records) == expected
            for run_id in shared:
                assert records[run_id] == make_record(EXP, run_id, status="success")
            backdoor = PostgresStoreBackdoor(
                postgres_url, config.schema, store.get_working_directory(), EXP
            )
            try:
                assert backdoor.run_ids() == expected
                files, index = backdoor.file_docs("runs"), backdoor.index_docs("runs")
                assert {k: _codec.RUN_RECORD.decode(v) for k, v in files.items()} == {
                    k: _codec.RUN_RECORD.decode(v) for k, v in index.items()
                }
            finally:
                backdoor.close()
