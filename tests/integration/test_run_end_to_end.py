"""``metalab.run`` end to end, on real stores, with threads and with processes."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

import metalab
from metalab import runner
from metalab.executors import BatchOutcome, Executor, RunJob, RunTask, execute_batch
from metalab.records import RunRecord
from metalab.seeds import SeedBundle
from metalab.store import (
    FileStoreConfig,
    MemoryStoreConfig,
    Store,
    StoreConfig,
    SupportsExperimentManifests,
    SupportsWorkingDirectory,
)


@metalab.operation
def train(params: dict[str, Any], seeds: SeedBundle, capture: metalab.Capture) -> None:
    rng = seeds.rng()
    capture.metric("score", rng.random() * params["scale"])
    capture.metric("pid", os.getpid())
    capture.data("curve", [params["scale"], params["scale"] / 2])
    capture.artifact("config", dict(params))
    capture.log(f"scale={params['scale']}")


EXPERIMENT = metalab.Experiment(
    name="mvp",
    version="0.1",
    context={},
    operation=train,
    params=metalab.grid(scale=[0.1, 1.0, 10.0]),
    seeds=metalab.seeds(base=123, replicates=2),
    tags=("e2e",),
)


def _expected_scores() -> dict[tuple[float, int], float]:
    return {
        (scale, bundle.replicate): bundle.rng().random() * scale
        for scale in (0.1, 1.0, 10.0)
        for bundle in EXPERIMENT.seeds
    }


@pytest.fixture(
    params=[
        ("file", "thread"),
        ("file", "threads"),
        ("file", "process"),
        ("memory", "thread"),
        ("memory", "threads"),
    ],
    ids="-".join,
)
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[StoreConfig, Executor]:
    store_kind, executor_kind = request.param
    config: StoreConfig = (
        FileStoreConfig(root=str(tmp_path))
        if store_kind == "file"
        else MemoryStoreConfig(name=f"e2e-{uuid.uuid4().hex}")
    )
    executors: dict[str, Executor] = {
        "thread": metalab.ThreadExecutor(),
        "threads": metalab.ThreadExecutor(max_workers=3),
        "process": metalab.ProcessExecutor(max_workers=2),
    }
    return config, executors[executor_kind]


class TestRunEndToEnd:
    def test_every_run_succeeds_with_its_seeded_metrics(
        self, setup: tuple[StoreConfig, Executor]
    ) -> None:
        config, executor = setup
        with metalab.run(EXPERIMENT, store=config, executor=executor, progress=False) as handle:
            results = handle.result(timeout=60)
            assert len(results) == 6
            assert [r.status for r in results] == ["success"] * 6
            expected = _expected_scores()
            for run in results:
                replicate = [b.fingerprint for b in EXPERIMENT.seeds].index(
                    run.record.seed_fingerprint
                )
                assert run.metrics["score"] == expected[(run.params["scale"], replicate)]  # type: ignore[index]
                assert run.data("curve") == [run.params["scale"], run.params["scale"] / 2]  # type: ignore[operator]
                assert run.artifact("config") == run.params
                assert json.loads(run.artifact_bytes("config")) == run.params
                assert run.log() is not None
                assert f"scale={run.params['scale']}" in (run.log() or "")
                assert run.tags == ("e2e",)
                assert run.record.provenance.executor_id == executor.executor_id
            counts = handle.counts
            assert (counts.total, counts.done, counts.failed, counts.skipped) == (6, 6, 0, 0)

    def test_the_order_of_results_is_the_definition_order(
        self, setup: tuple[StoreConfig, Executor]
    ) -> None:
        config, executor = setup
        with metalab.run(EXPERIMENT, store=config, executor=executor, progress=False) as handle:
            results = handle.result(timeout=60)
            assert [r.run_id for r in results] == list(handle.run_ids)
            assert [r.params["scale"] for r in results] == [0.1, 0.1, 1.0, 1.0, 10.0, 10.0]

    def test_load_results_sees_the_same_runs(self, setup: tuple[StoreConfig, Executor]) -> None:
        config, executor = setup
        with metalab.run(EXPERIMENT, store=config, executor=executor, progress=False) as handle:
            ran = handle.result(timeout=60)
            loaded = metalab.load_results(handle.store)
            assert sorted(loaded.run_ids) == sorted(ran.run_ids)


class TestProcessWorkers:
    def test_processes_run_in_other_processes_and_connect_their_own_store(
        self, tmp_path: Path
    ) -> None:
        handle = metalab.run(
            EXPERIMENT,
            store=str(tmp_path),
            executor=metalab.ProcessExecutor(max_workers=2),
            progress=False,
        )
        results = handle.result(timeout=60)
        pids = {run.metrics["pid"] for run in results}
        assert os.getpid() not in pids
        assert 1 <= len(pids) <= 2


class TestSubmission:
    def test_store_is_scoped_to_the_experiment(self, tmp_path: Path) -> None:
        handle = metalab.run(EXPERIMENT, store=str(tmp_path / "experiments"), progress=False)
        handle.result()
        assert isinstance(handle.store, SupportsWorkingDirectory)
        assert handle.store.get_working_directory() == tmp_path / "experiments" / "mvp_0.1"
        assert handle.config.experiment_id == "mvp:0.1"
        assert (tmp_path / "experiments" / "mvp_0.1" / "_meta.json").is_file()

    def test_run_accepts_a_path_object(self, tmp_path: Path) -> None:
        handle = metalab.run(EXPERIMENT, store=tmp_path, progress=False)
        assert len(handle.result()) == 6

    def test_a_manifest_is_written_per_submission(self, tmp_path: Path) -> None:
        for _ in range(2):
            metalab.run(EXPERIMENT, store=str(tmp_path), progress=False).result()
        store = FileStoreConfig(root=str(tmp_path), experiment_id="mvp:0.1").connect()
        assert isinstance(store, SupportsExperimentManifests)
        manifests = store.list_experiment_manifests()
        assert len(manifests) == 2
        manifest = manifests[0]
        assert manifest.total_runs == 6
        assert len(manifest.run_ids) == 6
        assert manifest.params == {
            "type": "GridSource",
            "spec": {"scale": [0.1, 1.0, 10.0]},
            "total_cases": 3,
        }
        assert manifest.seeds == {"type": "SeedPlan", "base": 123, "replicates": 2}
        assert manifest.operation is not None
        assert manifest.operation.name == "train"
        assert manifest.tags == ("e2e",)

    def test_run_ids_do_not_depend_on_the_store_or_executor(self, tmp_path: Path) -> None:
        a = metalab.run(EXPERIMENT, store=str(tmp_path), progress=False)
        b = metalab.run(EXPERIMENT, store="memory://", progress=False)
        assert a.run_ids == b.run_ids
        a.result()
        b.result()

    def test_records_carry_fingerprints_and_provenance(self, tmp_path: Path) -> None:
        results = metalab.run(EXPERIMENT, store=str(tmp_path), progress=False).result()
        record: RunRecord = results[0].record
        assert len(record.run_id) == 64
        assert record.context_fingerprint
        assert record.params_fingerprint
        assert record.seed_fingerprint
        assert record.provenance.python_version
        assert record.provenance.code_hash == train.code_hash
        assert record.duration_ms is not None
        assert record.finished_at is not None
        assert record.finished_at >= record.started_at

    def test_duplicate_combinations_run_once(self, tmp_path: Path) -> None:
        exp = EXPERIMENT.replace(params=metalab.manual([{"scale": 1.0}, {"scale": 1.0}]))
        handle = metalab.run(exp, store=str(tmp_path), progress=False)
        assert handle.total == 2
        assert len(handle.result()) == 2

    def test_params_without_a_json_form_are_refused_before_anything_runs(
        self, tmp_path: Path
    ) -> None:
        exp = EXPERIMENT.replace(params=metalab.manual([{"scale": {1, 2}}]))
        with pytest.raises(metalab.errors.ConfigError, match=r"params 0\['scale'\]"):
            metalab.run(exp, store=str(tmp_path), progress=False)
        assert not (tmp_path / "mvp_0.1" / "runs").exists() or not any(
            (tmp_path / "mvp_0.1" / "runs").iterdir()
        )

    def test_a_config_scoped_to_another_experiment_is_refused(self, tmp_path: Path) -> None:
        config = FileStoreConfig(root=str(tmp_path), experiment_id="other:1")
        with pytest.raises(metalab.errors.ConfigError, match="already scoped"):
            metalab.run(EXPERIMENT, store=config, progress=False)

    def test_the_operation_receives_a_copy_of_its_params(self, tmp_path: Path) -> None:
        @metalab.operation
        def mutate(params: dict[str, Any]) -> None:
            params["scale"] = "changed"

        results = metalab.run(
            EXPERIMENT.replace(operation=mutate), store=str(tmp_path), progress=False
        ).result()
        assert {r.params["scale"] for r in results} == {0.1, 1.0, 10.0}

    def test_the_context_is_passed_to_operations(self, tmp_path: Path) -> None:
        @metalab.operation
        def use_context(context: dict[str, Any], capture: metalab.Capture) -> None:
            capture.metric("offset", context["offset"])

        exp = EXPERIMENT.replace(operation=use_context, context={"offset": 5})
        results = metalab.run(exp, store=str(tmp_path), progress=False).result()
        assert {r.metrics["offset"] for r in results} == {5}
        other = EXPERIMENT.replace(operation=use_context, context={"offset": 6})
        assert set(metalab.run(other, store="memory://", progress=False).run_ids).isdisjoint(
            results.run_ids
        )


class InlineExecutor:
    """A third-party executor: runs each batch at once, on a store it connects itself.

    Each hand-off costs ``hand_off_seconds`` more, as a round trip to a cluster would.
    """

    def __init__(self, hand_off_seconds: float = 0.0) -> None:
        self.job: RunJob | None = None
        self.store: Store | None = None
        self.hand_off_seconds = hand_off_seconds
        self.outcomes: list[BatchOutcome] = []

    @property
    def executor_id(self) -> str:
        return "inline"

    @property
    def max_workers(self) -> int:
        return 1

    def start(self, job: RunJob, store: Store) -> None:
        del store
        self.job = job
        self.store = StoreConfig.from_dict(job.store_config).connect()

    def submit(self, tasks: Sequence[RunTask]) -> Future[BatchOutcome]:
        assert self.job is not None
        assert self.store is not None
        time.sleep(self.hand_off_seconds)
        outcome = execute_batch(self.job, self.store, tasks, executor_id="inline")
        self.outcomes.append(outcome)
        future: Future[BatchOutcome] = Future()
        future.set_result(outcome)
        return future

    def cancel(self) -> None:
        pass

    def shutdown(self, *, cancel_pending: bool = False) -> None:
        del cancel_pending
        if self.store is not None:
            self.store.close()


@metalab.operation
def nap(params: dict[str, Any], capture: metalab.Capture) -> None:
    time.sleep(0.01)
    capture.metric("i", params["i"])


NAPS = metalab.Experiment(name="naps", version="1", operation=nap, params=metalab.grid(i=range(40)))


class LongBatchExecutor(InlineExecutor):
    """An executor whose hand-off is costly: it asks for batches of a second of work."""

    @property
    def batch_seconds(self) -> float:
        return 1.0


class StallingExecutor(InlineExecutor):
    """Holds the batches it receives until the runner stops sending, then runs them all.

    ``held`` notes how many batches were in flight each time the runner stopped.
    """

    def __init__(self, workers: int) -> None:
        super().__init__()
        self.workers = workers
        self.held: list[int] = []
        self._batches: list[tuple[tuple[RunTask, ...], Future[BatchOutcome]]] = []
        self._last_submit = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._release, daemon=True)

    @property
    def max_workers(self) -> int:
        return self.workers

    def start(self, job: RunJob, store: Store) -> None:
        super().start(job, store)
        self._thread.start()

    def submit(self, tasks: Sequence[RunTask]) -> Future[BatchOutcome]:
        future: Future[BatchOutcome] = Future()
        with self._lock:
            self._batches.append((tuple(tasks), future))
            self._last_submit = time.monotonic()
        return future

    def _release(self) -> None:
        while not self._stop.wait(0.02):
            with self._lock:
                if not self._batches or time.monotonic() - self._last_submit < 0.2:
                    continue
                batches, self._batches = self._batches, []
            self.held.append(len(batches))
            assert self.job is not None
            assert self.store is not None
            for tasks, future in batches:
                future.set_result(execute_batch(self.job, self.store, tasks, executor_id="inline"))

    def shutdown(self, *, cancel_pending: bool = False) -> None:
        self._stop.set()
        self._thread.join()
        super().shutdown(cancel_pending=cancel_pending)


class TestExecutors:
    def test_a_custom_executor_runs_batches_with_execute_batch(self, tmp_path: Path) -> None:
        executor = InlineExecutor()
        handle = metalab.run(EXPERIMENT, store=str(tmp_path), executor=executor, progress=False)
        results = handle.result(timeout=60)
        assert [r.status for r in results] == ["success"] * 6
        assert {r.provenance.executor_id for r in results} == {"inline"}
        assert sum(len(o.statuses) for o in executor.outcomes) == 6
        assert all(o.seconds > 0 for o in executor.outcomes)

    def test_an_executor_that_asks_for_longer_batches_gets_them(self, tmp_path: Path) -> None:
        default, longer = InlineExecutor(), LongBatchExecutor()
        for name, executor in (("default", default), ("longer", longer)):
            handle = metalab.run(
                NAPS, store=str(tmp_path / name), executor=executor, progress=False
            )
            assert len(handle.result(timeout=60).successful) == 40
        # Runs of 10 ms or more: at most 5 to a batch of the runner's 0.05 s, and far
        # more to a batch of 1 s (every run left once the first batches are back).
        assert max(len(o.statuses) for o in default.outcomes) <= 5
        assert max(len(o.statuses) for o in longer.outcomes) >= 20

    def test_several_batches_per_worker_are_in_flight(self, tmp_path: Path) -> None:
        # A worker that ends a batch has the next ones queued, whatever the round trip.
        executor = StallingExecutor(workers=2)
        handle = metalab.run(NAPS, store=str(tmp_path), executor=executor, progress=False)
        assert len(handle.result(timeout=60).successful) == 40
        assert executor.held[0] == runner._IN_FLIGHT_PER_WORKER * 2
        assert runner._IN_FLIGHT_PER_WORKER > 2

    def test_batches_grow_from_the_work_time_of_runs_however_slow_the_hand_off(
        self, tmp_path: Path
    ) -> None:
        # Sized from wall time, a 0.1 s hand-off would keep batches at one run.
        executor = InlineExecutor(hand_off_seconds=0.1)
        handle = metalab.run(EXPERIMENT, store=str(tmp_path), executor=executor, progress=False)
        assert len(handle.result(timeout=60).successful) == 6
        assert len(executor.outcomes) < 6

    def test_execute_batch_times_the_runs_it_executes_and_not_those_it_skips(
        self, tmp_path: Path
    ) -> None:
        job = RunJob(
            experiment_id=EXPERIMENT.experiment_id,
            operation=train,
            context={},
            context_fingerprint="",
            seed_base=123,
        )
        tasks = [RunTask(run_id, {"scale": 1.0}, "", 0, "") for run_id in ("a" * 64, "b" * 64)]
        config = FileStoreConfig(root=str(tmp_path), experiment_id=job.experiment_id)
        with config.connect() as store:
            ran = execute_batch(job, store, tasks, executor_id="inline")
            skipped = execute_batch(job, store, tasks, executor_id="inline", stop=lambda: True)
        assert ran.statuses == ("success", "success")
        assert ran.seconds > 0
        assert skipped == BatchOutcome.not_started(2)

    @pytest.mark.parametrize(
        "executor",
        [metalab.ThreadExecutor(2), metalab.ProcessExecutor(2)],
        ids=["thread", "process"],
    )
    def test_an_executor_can_run_several_experiments_one_after_another(
        self, tmp_path: Path, executor: Executor
    ) -> None:
        for version in ("1", "2"):
            exp = EXPERIMENT.replace(version=version)
            results = metalab.run(exp, store=str(tmp_path), executor=executor, progress=False)
            assert len(results.result(timeout=60).successful) == 6

    @pytest.mark.parametrize("workers", [0, -1, 1.5, True])
    def test_bad_worker_counts_are_refused(self, workers: object) -> None:
        with pytest.raises(metalab.errors.ConfigError, match="max_workers"):
            metalab.ThreadExecutor(workers)  # type: ignore[arg-type]
        with pytest.raises(metalab.errors.ConfigError, match="max_workers"):
            metalab.ProcessExecutor(workers)  # type: ignore[arg-type]

    def test_worker_counts(self) -> None:
        assert metalab.ThreadExecutor().max_workers == 1
        assert metalab.ProcessExecutor(3).max_workers == 3
        assert metalab.ProcessExecutor().max_workers == (os.cpu_count() or 1)
