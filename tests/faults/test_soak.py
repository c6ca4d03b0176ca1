"""The randomized soak: writers killed at random moments while the server comes and goes.

Each round starts three writers (``soakworker.py``) doing random puts, bulk puts,
artifact replacements, deletes, syncs and rebuilds on one PostgresStore, stops and
restarts the server at a random moment in some rounds, and SIGKILLs every writer at a
random time. Then it checks what the deterministic suite checks, against the writers'
journals: every document decodes, every acknowledged write is there as written (an
operation in flight may have happened or not), every artifact matches its manifest,
and the index equals the files or says it is stale, and equals them once synced.

CI runs a few rounds; by hand, ``METALAB_SOAK_ROUNDS=200 METALAB_SOAK_SEED=7 pytest
tests/faults/test_soak.py`` runs a long one (the seed makes a failing round replayable
as far as timing allows).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metalab.errors import ArtifactNotFoundError
from metalab.store import FileStore, FileStoreConfig, PostgresStore, PostgresStoreConfig
from metalab.testing import comparable
from metalab.testing.postgres import RestartablePostgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

EXP = "soak:1"
HERE = Path(__file__).parent
ABSENT = "absent"


@pytest.fixture
def server(restartable_postgres: RestartablePostgres) -> Iterator[RestartablePostgres]:
    yield restartable_postgres
    restartable_postgres.start()


class Expected:
    """What the journals say each run must look like."""

    def __init__(self) -> None:
        self.record: dict[str, Any] = {}  # run -> acknowledged record (builtins) or ABSENT
        self.maybe: dict[str, list[Any]] = {}  # run -> outcomes of operations in flight
        self.artifacts: dict[tuple[str, str], str] = {}  # acknowledged sha256
        self.artifact_maybe: dict[tuple[str, str], str] = {}

    def read(self, journal: Path) -> None:
        pending: dict[str, Any] = {}
        for line in journal.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry["kind"] == "settled":  # what was in flight is acknowledged above
                pending.clear()
                continue
            key = (entry["op"], entry["run"], entry.get("name"))
            if entry["kind"] == "pending":
                pending[json.dumps(key)] = entry
                continue
            pending.pop(json.dumps(key), None)
            self._apply(entry, self.record, self.artifacts)
        for entry in pending.values():  # in flight when the writer was killed
            run = entry["run"]
            if entry["op"] == "artifact":
                self.artifact_maybe[(run, entry["name"])] = entry["sha256"]
            else:
                outcome = ABSENT if entry["op"] == "delete" else entry["record"]
                self.maybe.setdefault(run, []).append(outcome)

    @staticmethod
    def _apply(
        entry: dict[str, Any], records: dict[str, Any], artifacts: dict[tuple[str, str], str]
    ) -> None:
        run = entry["run"]
        if entry["op"] == "put":
            records[run] = entry["record"]
        elif entry["op"] in ("delete", "artifacts"):
            records[run] = ABSENT if entry["op"] == "delete" else records[run]
            for key in [k for k in artifacts if k[0] == run]:
                del artifacts[key]
            for name, sha in entry.get("present", {}).items():
                artifacts[(run, name)] = sha
        else:
            artifacts[(run, entry["name"])] = entry["sha256"]


def check_files(files: FileStore, expected: Expected) -> int:
    """Check the files against the journals; return how many runs were checked."""
    scan = files.scan_run_records()
    assert not scan.problems, f"undecodable documents: {scan.problems}"
    found = {record.run_id: comparable(record) for record in scan.records}
    for run, acknowledged in expected.record.items():
        actual = found.get(run, ABSENT)
        allowed = [acknowledged, *expected.maybe.get(run, [])]
        assert actual in allowed, f"run {run}: {actual!r} is none of {allowed!r}"
    for run, outcomes in expected.maybe.items():
        if run not in expected.record:
            assert found.get(run, ABSENT) in [ABSENT, *outcomes], f"run {run} in flight"
    deleting = {run for run, outcomes in expected.maybe.items() if ABSENT in outcomes}
    for run in found:
        if run in deleting:
            continue  # a delete killed midway may have taken some files before the record
        for descriptor in files.list_artifacts(run):
            try:
                data = files.get_artifact(run, descriptor.name)
            except ArtifactNotFoundError:
                pytest.fail(f"run {run}: the manifest names {descriptor.name!r}; no file")
            assert hashlib.sha256(data).hexdigest() == descriptor.content_hash, (run, descriptor)
            key = (run, descriptor.name)
            allowed_sha = {expected.artifacts.get(key), expected.artifact_maybe.get(key)}
            assert descriptor.content_hash in allowed_sha, (
                f"{key}: {descriptor.content_hash} unexpected"
            )
    for (run, name), sha in expected.artifacts.items():
        if run in found and run not in deleting and (run, name) not in expected.artifact_maybe:
            names = {d.name: d.content_hash for d in files.list_artifacts(run)}
            assert names.get(name) == sha, f"acknowledged artifact {run}/{name} lost"
    return len(found)


def index_difference(store: PostgresStore) -> dict[str, tuple[Any, Any]]:
    """Run id -> (index's record, files' record), for every run on which they differ."""
    index = {r.run_id: comparable(r) for r in store.list_run_records()}
    files = {r.run_id: comparable(r) for r in store.files.list_run_records()}
    return {
        run: (index.get(run, ABSENT), files.get(run, ABSENT))
        for run in index.keys() | files.keys()
        if index.get(run, ABSENT) != files.get(run, ABSENT)
    }


def test_writers_killed_at_random_while_the_server_comes_and_goes(
    server: RestartablePostgres, tmp_path: Path
) -> None:
    rounds = int(os.environ.get("METALAB_SOAK_ROUNDS", "3"))
    seed = int(os.environ.get("METALAB_SOAK_SEED", "1"))
    rng = random.Random(seed)
    config = PostgresStoreConfig(
        connection_string=server.url,
        file_root=str(tmp_path / "files"),
        experiment_id=EXP,
        on_index_error="fallback",
        pool_timeout=1.0,
        connect_timeout=1.0,
    )
    expected = Expected()
    journals: list[Path] = []
    stale_rounds = outages = 0
    for round_ in range(rounds):
        writers = []
        for w in range(3):
            journal = tmp_path / f"journal-{round_}-{w}.jsonl"
            journal.touch()
            journals.append(journal)
            writers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(HERE / "soakworker.py"),
                        json.dumps(config.to_dict()),
                        str(journal),
                        str(rng.randrange(2**32)),
                    ],
                    stderr=subprocess.PIPE,
                )
            )
        # The kills are timed from when every writer is at work (it journaled an
        # operation): on a loaded machine, starting Python and connecting can take longer
        # than a deadline, and a writer killed before its first operation tests nothing.
        _wait_until_journaling(journals[-len(writers) :], writers)
        deadlines = sorted(rng.uniform(0.5, 3.0) for _ in writers)
        outage = rng.uniform(0.2, deadlines[-1]) if rng.random() < 0.4 else None
        start = time.monotonic()
        for writer, deadline in zip(writers, deadlines, strict=True):
            if outage is not None and outage < deadline:
                time.sleep(max(0.0, outage - (time.monotonic() - start)))
                server.stop()
                outages += 1
                time.sleep(rng.uniform(0.1, 0.6))
                server.start()
                outage = None
            time.sleep(max(0.0, deadline - (time.monotonic() - start)))
            if writer.poll() is not None:
                assert writer.stderr is not None
                pytest.fail(f"round {round_}: a writer died on its own:\n{writer.stderr.read()!r}")
            writer.send_signal(signal.SIGKILL)
            writer.wait()
            assert writer.stderr is not None
            writer.stderr.close()

        expected = Expected()
        for journal in journals:
            expected.read(journal)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            files = FileStoreConfig(root=str(tmp_path / "files"), experiment_id=EXP).connect()
            with files:
                check_files(files, expected)
            with config.connect() as store:
                if store.is_index_stale():
                    stale_rounds += 1
                else:
                    difference = index_difference(store)
                    assert not difference, f"round {round_}: not stale, but {difference}"
                store.sync_index()
                assert not store.is_index_stale()
                difference = index_difference(store)
                assert not difference, f"round {round_}: after a sync, {difference}"
        # Operations in flight are settled now (a killed delete is finished, as its
        # user would), so later rounds check exactly what the files hold.
        with config.connect() as store:
            settle(journals, store)
    acks: dict[str, int] = {}
    for journal in journals:
        for line in journal.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry["kind"] == "ack" and "present" not in entry:
                acks[entry["op"]] = acks.get(entry["op"], 0) + 1
    assert acks.get("put", 0) > 0, "the writers acknowledged nothing"
    print(
        f"soak: {rounds} rounds (seed {seed}), {outages} outages, stale after {stale_rounds}, "
        f"{len(expected.record)} runs; acknowledged {acks}"
    )


def settle(journals: list[Path], store: PostgresStore) -> None:
    """Append acks for what the operations in flight left behind."""
    for journal in journals:
        pending: dict[str, Any] = {}
        for line in journal.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry["kind"] == "settled":
                pending.clear()
                continue
            key = json.dumps((entry["op"], entry["run"], entry.get("name")))
            if entry["kind"] == "pending":
                pending[key] = entry
            else:
                pending.pop(key, None)
        with journal.open("a", encoding="utf-8") as out:
            for entry in pending.values():
                run = entry["run"]
                if entry["op"] == "delete":
                    store.delete_run(run)
                    settled = {"op": "delete", "run": run}
                elif (record := store.files.get_run_record(run)) is None:
                    settled = {"op": "delete", "run": run}
                else:
                    present = {d.name: d.content_hash for d in store.files.list_artifacts(run)}
                    settled = {"op": "put", "run": run, "record": comparable(record)}
                    out.write(json.dumps({"kind": "ack", **settled}) + "\n")
                    settled = {"op": "artifacts", "run": run, "present": present}
                out.write(json.dumps({"kind": "ack", **settled}) + "\n")
            out.write(json.dumps({"kind": "settled"}) + "\n")


def _wait_until_journaling(
    journals: list[Path], writers: list[subprocess.Popen[bytes]], timeout: float = 120.0
) -> None:
    """Wait until each writer has written its first journal line (or fail if one died)."""
    deadline = time.monotonic() + timeout
    for journal, writer in zip(journals, writers, strict=True):
        while journal.stat().st_size == 0:
            if writer.poll() is not None:
                assert writer.stderr is not None
                pytest.fail(f"a writer died before its first operation:\n{writer.stderr.read()!r}")
            if time.monotonic() > deadline:
                pytest.fail(f"a writer did not start within {timeout} s")
            time.sleep(0.01)
