"""A writer for the randomized soak: random store operations until it is killed.

``python soakworker.py CONFIG_JSON JOURNAL SEED`` connects to the store described by
the config and does random writes, deletes, syncs and rebuilds on runs of its own.
Before each operation it appends a ``pending`` line to the journal, and after the
store returns an ``ack`` line (flushed and fsynced), so the test that kills it knows
what was acknowledged and what was in flight.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sys
import warnings
from pathlib import Path
from typing import IO, Any

import msgspec

from metalab.errors import IndexUnavailableError
from metalab.store import PostgresStore, StoreConfig
from metalab.testing import comparable
from metalab.testing.store import make_record


class Journal:
    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def write(self, **entry: Any) -> None:
        self._out.write(json.dumps(entry) + "\n")
        self._out.flush()
        os.fsync(self._out.fileno())


def main(config_json: str, journal_path: str, seed: int) -> None:
    rng = random.Random(seed)
    config = StoreConfig.from_dict(json.loads(config_json))
    experiment_id = config.to_dict()["experiment_id"]
    warnings.simplefilter("ignore")  # outages warn on every write
    store = config.connect()
    assert isinstance(store, PostgresStore)
    with Path(journal_path).open("a", encoding="utf-8") as out, store:
        journal = Journal(out)
        mine: dict[str, str] = {}  # run id -> status
        while True:
            step(store, rng, journal, mine, experiment_id)


def step(
    store: PostgresStore,
    rng: random.Random,
    journal: Journal,
    mine: dict[str, str],
    experiment_id: str,
) -> None:
    op = rng.choices(
        ["put", "finish", "bulk", "artifact", "delete", "sync", "rebuild"],
        weights=[30, 15, 15, 15, 8, 8, 4],
    )[0]
    if op in ("finish", "artifact", "delete") and not mine:
        op = "put"
    if op == "put":
        record = make_record(experiment_id, status=rng.choice(["running", "success"]))
        entry = {"run": record.run_id, "record": comparable(record)}
        journal.write(kind="pending", op="put", **entry)
        store.put_run_record(record)
        journal.write(kind="ack", op="put", **entry)
        mine[record.run_id] = record.status
    elif op == "finish":
        run_id = rng.choice(sorted(mine))
        record = make_record(experiment_id, run_id, status="success", metrics={"x": rng.random()})
        entry = {"run": run_id, "record": comparable(record)}
        journal.write(kind="pending", op="put", **entry)
        store.put_run_record(record)
        journal.write(kind="ack", op="put", **entry)
        mine[run_id] = "success"
    elif op == "bulk":
        records = [make_record(experiment_id) for _ in range(rng.randint(5, 40))]
        for record in records:
            journal.write(kind="pending", op="put", run=record.run_id, record=comparable(record))
        store.put_run_records(records)
        for record in records:
            journal.write(kind="ack", op="put", run=record.run_id, record=comparable(record))
            mine[record.run_id] = "success"
    elif op == "artifact":
        run_id = rng.choice(sorted(mine))
        name = rng.choice(["weights", "plot"])
        data = rng.randbytes(rng.randint(1, 64 * 1024))
        entry = {"run": run_id, "name": name, "sha256": hashlib.sha256(data).hexdigest()}
        journal.write(kind="pending", op="artifact", **entry)
        store.put_artifact(run_id, name, data)
        journal.write(kind="ack", op="artifact", **entry)
    elif op == "delete":
        run_id = rng.choice(sorted(mine))
        journal.write(kind="pending", op="delete", run=run_id)
        store.delete_run(run_id)
        journal.write(kind="ack", op="delete", run=run_id)
        del mine[run_id]
    else:
        with contextlib.suppress(IndexUnavailableError):  # the server is away
            store.sync_index() if op == "sync" else store.rebuild_index()


if __name__ == "__main__":
    msgspec.json.decode(sys.argv[1])  # fail early on a malformed config
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
