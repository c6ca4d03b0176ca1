"""DaskExecutor on a real LocalCluster: two worker processes on loopback.

One cluster serves the whole module (starting one takes seconds). It is created with
``allowed-failures = 1``: a batch whose worker dies once runs again elsewhere, and one
that kills a second worker ends the sweep with ``KilledWorker``. Operations are built
inside functions so that Dask pickles them by value: the test module itself cannot be
imported by the workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import dask
import pytest
from distributed import Client, KilledWorker, LocalCluster
from distributed import Future as DaskFuture
from distributed.client import FutureState

import metalab
from metalab import runner
from metalab.errors import ConfigError
from metalab.executors import SupportsBatchSeconds, _dask
from metalab.store import (
    PostgresStore,
    PostgresStoreConfig,
    SupportsLogs,
    SupportsWorkingDirectory,
)
from metalab.testing.postgres import PostgresStoreBackdoor

N_RUNS = 240
NOWHERE = "tcp://127.0.0.1:9"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as local,
    ):
        yield local


@pytest.fixture(scope="module")
def module_client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster, set_as_default=False) as connected:
        yield connected


@pytest.fixture
def client(module_client: Client) -> Client:
    # A test that killed workers leaves the nannies restarting them.
    module_client.wait_for_workers(2, timeout=60)
    return module_client


def worker_pids(client: Client) -> set[int]:
    return set(client.run(os.getpid).values())


def recording_operation() -> metalab.Operation:
    """Records a metric, a log line, structured data and an artifact, and its pid."""

    def record(params: dict[str, Any], capture: metalab.Capture) -> None:
        i = params["i"]
        capture.metric("square", i * i)
        capture.metric("pid", os.getpid())
        if i % 40 == 0:
            for step in range(3):
                capture.metric("loss", 1.0 / (step + 1), step=step)
            capture.log(f"run {i}")
            capture.data("curve", [i, i + 1])
            capture.artifact("blob", f"bytes of {i}".encode())

    return metalab.operation(record)


def deterministic_operation() -> metalab.Operation:
    def compute(
        params: dict[str, Any], seeds: metalab.SeedBundle, capture: metalab.Capture
    ) -> None:
        capture.metrics({"score": params["lr"] * params["depth"], "seed": seeds.seed})

    return metalab.operation(compute)


def experiment(operation: metalab.Operation, name: str = "dask", **axes: Any) -> metalab.Experiment:
    return metalab.Experiment(
        name=name,
        version="1",
        operation=operation,
        params=metalab.grid(**(axes or {"i": list(range(N_RUNS))})),
        seeds=metalab.seeds(base=7),
    )


def record_files(root: Path, directory: str = "dask_1") -> list[Path]:
    return sorted((root / directory / "runs").glob("*.json"))


def backdoor_for(
    handle: metalab.RunHandle, url: str, config: PostgresStoreConfig
) -> PostgresStoreBackdoor:
    store = handle.store
    assert isinstance(store, SupportsWorkingDirectory)
    return PostgresStoreBackdoor(
        url, config.schema, store.get_working_directory(), handle.experiment_id
    )


@dataclass(frozen=True)
class LostBatch:
    """A batch whose worker was killed just after its outcome arrived."""

    key: str
    pid: int  # the killed worker's
    run_ids: frozenset[str]  # the runs its first outcome recorded (for the index)


def kill_the_holder_of_the_first_batch_fetched(
    client: Client, monkeypatch: pytest.MonkeyPatch, *, fail_its_second_fetch: bool = False
) -> list[LostBatch]:
    """Make the worker holding a finished batch die just after this process fetched it.

    ``Client._gather`` is wrapped: once the first batch's outcome has arrived, the
    worker that holds the batch is killed, and the fetch returns only after the client
    has heard from the scheduler that the batch is lost (the scheduler then runs it
    again). Returns the batches so lost, filled in as the sweep runs. With
    ``fail_its_second_fetch``, the next fetch of that batch waits for its second
    execution and then raises, as if that execution had failed.

    The loss is seen by wrapping ``FutureState.lose``, not by polling the future's
    status: the batch may run again and finish between two polls.
    """
    pids: dict[str, int] = client.run(os.getpid)
    gather = cast("Callable[..., Awaitable[Any]]", Client._gather)
    lose = cast("Callable[[FutureState], None]", FutureState.lose)
    lost: list[LostBatch] = []
    claimed: list[str] = []
    reported: set[str] = set()

    def lose_and_report(self: FutureState) -> None:
        reported.add(str(self.key))
        lose(self)

    async def gather_then_kill_the_holder(
        self: Client, futures: object, *args: Any, **kwargs: Any
    ) -> Any:
        gathered = await gather(self, futures, *args, **kwargs)
        # One batch's future, alone or in a list of one.
        future = futures[0] if isinstance(futures, list) and len(futures) == 1 else futures
        if (
            fail_its_second_fetch
            and lost
            and isinstance(future, DaskFuture)
            and str(future.key) == lost[0].key
        ):
            raise RuntimeError("the second execution failed (the test says so)")
        if (
            claimed
            or not isinstance(future, DaskFuture)
            or not str(future.key).startswith("metalab-batch-")
        ):
            return gathered
        # Claimed before the first await: fetches run concurrently on the loop, and a
        # second one finishing meanwhile must not kill another worker.
        key = str(future.key)
        claimed.append(key)
        assert self.scheduler is not None
        (holder,) = (await self.scheduler.who_has(keys=[future.key]))[future.key]
        os.kill(pids[holder], signal.SIGKILL)
        assert isinstance(gathered, _dask._BatchResult)
        run_ids = frozenset(record.run_id for record in gathered.records)
        lost.append(LostBatch(key, pids[holder], run_ids))
        deadline = time.monotonic() + 60
        while key not in reported:
            assert time.monotonic() < deadline, "the scheduler never reported the loss"
            await asyncio.sleep(0.01)
        return gathered

    monkeypatch.setattr(FutureState, "lose", lose_and_report)
    monkeypatch.setattr(Client, "_gather", gather_then_kill_the_holder)
    return lost


class TestDaskSweepToFileStore:
    def test_every_run_executes_on_the_workers_and_is_recorded_in_the_files(
        self, tmp_path: Path, client: Client
    ) -> None:
        executor = metalab.DaskExecutor(client)
        handle = metalab.run(
            experiment(recording_operation()),
            store=str(tmp_path),
            executor=executor,
            progress=False,
        )
        seen = set()
        while not handle.wait(0.01):
            seen.add(handle.counts.finished)
        results = handle.result(timeout=120)

        assert any(0 < finished < N_RUNS for finished in seen), "the counts were not live"

        assert (handle.done, handle.failed, handle.cancelled) == (N_RUNS, 0, 0)
        assert [r.status for r in results] == ["success"] * N_RUNS
        assert {r.metrics["pid"] for r in results} <= worker_pids(client)
        assert {r.provenance.executor_id for r in results} == {"dask"}
        assert len(record_files(tmp_path)) == N_RUNS
        store = handle.store
        assert isinstance(store, SupportsLogs)
        for run in (r for r in results if r.params["i"] in range(0, N_RUNS, 40)):
            assert store.get_log(run.run_id, "run") is not None
            assert store.get_artifact(run.run_id, "blob") == f"bytes of {run.params['i']}".encode()
        assert executor.max_workers == 2

    def test_results_are_those_of_the_process_executor(
        self, tmp_path: Path, client: Client
    ) -> None:
        exp = experiment(deterministic_operation(), lr=[0.1, 0.01, 0.001], depth=list(range(60)))
        on_dask = metalab.run(
            exp, store=str(tmp_path / "dask"), executor=metalab.DaskExecutor(client), progress=False
        ).result(timeout=120)
        on_processes = metalab.run(
            exp,
            store=str(tmp_path / "processes"),
            executor=metalab.ProcessExecutor(2),
            progress=False,
        ).result(timeout=120)

        def essence(results: metalab.Results) -> list[tuple[str, str, object, object]]:
            return [(r.run_id, r.status, r.params, r.metrics) for r in results]

        assert len(on_dask) == 180
        assert essence(on_dask) == essence(on_processes)

    def test_a_second_run_skips_every_run_that_succeeded(
        self, tmp_path: Path, client: Client
    ) -> None:
        exp = experiment(deterministic_operation(), lr=[0.5], depth=list(range(20)))
        executor = metalab.DaskExecutor(client)
        metalab.run(exp, store=str(tmp_path), executor=executor, progress=False).result(timeout=60)
        again = metalab.run(exp, store=str(tmp_path), executor=executor, progress=False)
        again.result(timeout=60)
        assert (again.skipped, again.done) == (20, 0)

    def test_a_scheduler_address_is_connected_for_the_sweep(
        self, tmp_path: Path, cluster: LocalCluster
    ) -> None:
        exp = experiment(deterministic_operation(), lr=[0.5], depth=list(range(10)))
        executor = metalab.DaskExecutor(cluster.scheduler_address)
        results = metalab.run(exp, store=str(tmp_path), executor=executor, progress=False).result(
            timeout=60
        )
        assert len(results.successful) == 10
        assert executor.max_workers == 2


class TestDaskSweepToPostgresStore:
    def test_workers_write_only_files_and_the_coordinator_indexes_every_run(
        self,
        client: Client,
        postgres_config: PostgresStoreConfig,
        postgres_url: str,
    ) -> None:
        exp = experiment(recording_operation())
        handle = metalab.run(
            exp, store=postgres_config, executor=metalab.DaskExecutor(client), progress=False
        )
        results = handle.result(timeout=120)

        assert [r.status for r in results] == ["success"] * N_RUNS
        # The points workers appended to the files reach the index too (a sync at the end).
        stepped = [r.run_id for r in results if r.params["i"] in range(0, N_RUNS, 40)]
        assert isinstance(handle.store, PostgresStore)
        indexed = handle.store.index.series(stepped, handle.experiment_id)
        assert sorted(indexed) == sorted(stepped)
        assert all(s["loss"].values == (1.0, 0.5, 1 / 3) for s in indexed.values())
        backdoor = backdoor_for(handle, postgres_url, postgres_config)
        try:
            assert backdoor.run_ids() == set(handle.run_ids)  # the files and the index agree
            for run_id in handle.run_ids[:: N_RUNS // 8]:
                record = backdoor.read_run_record(run_id)
                assert record is not None
                assert record.status == "success"
        finally:
            backdoor.close()
        # A worker that had opened a database connection would have imported psycopg.
        assert set(client.run(lambda: "psycopg" in sys.modules).values()) == {False}

        def configs_received() -> list[str]:
            return [json.dumps(sweep.config) for sweep in _dask._worker_sweeps.values()]

        received = [c for configs in client.run(configs_received).values() for c in configs]
        assert received
        assert all(json.loads(c)["_type"] == "file" for c in received)
        assert not any(postgres_config.connection_string in c for c in received)


class TestDaskFailures:
    def test_a_failing_run_is_recorded_and_the_others_still_run(
        self, tmp_path: Path, client: Client
    ) -> None:
        def diverges(params: dict[str, Any], capture: metalab.Capture) -> None:
            capture.metric("before_error", 1.0)
            if params["lr"] > 0.5:
                raise ValueError(f"diverged: lr {params['lr']} too high")

        exp = experiment(metalab.operation(diverges), lr=[0.1, 0.9, 0.2, 0.95])
        handle = metalab.run(
            exp, store=str(tmp_path), executor=metalab.DaskExecutor(client), progress=False
        )
        results = handle.result(timeout=60)
        assert (handle.done, handle.failed) == (2, 2)
        for run in results.failed:
            assert run.error is not None
            assert run.error.type == "ValueError"
            assert run.error.message == f"diverged: lr {run.params['lr']} too high"
            assert "diverges" in run.error.traceback
            assert run.metrics == {"before_error": 1.0}

    def test_system_exit_in_an_operation_ends_the_sweep_and_the_worker_lives_on(
        self, tmp_path: Path, client: Client
    ) -> None:
        def exits(params: dict[str, Any]) -> None:
            if params["i"] == 1:
                raise SystemExit(3)

        pids = worker_pids(client)
        exp = experiment(metalab.operation(exits), i=[0, 1, 2])
        handle = metalab.run(
            exp, store=str(tmp_path), executor=metalab.DaskExecutor(client), progress=False
        )
        with pytest.raises(SystemExit):
            handle.result(timeout=60)
        statuses = {r.params["i"]: r.status for r in metalab.load_results(handle.store).records}
        assert statuses[1] == "cancelled"
        assert worker_pids(client) == pids

    def test_a_worker_that_dies_mid_run_is_replaced_and_the_sweep_completes(
        self, tmp_path: Path, client: Client
    ) -> None:
        marker = tmp_path / "died"

        def dies_once(params: dict[str, Any], capture: metalab.Capture) -> None:
            if params["i"] == 30 and not marker.exists():
                marker.touch()
                os._exit(1)
            capture.metric("i", params["i"])

        exp = experiment(metalab.operation(dies_once), i=list(range(60)))
        handle = metalab.run(
            exp, store=str(tmp_path / "runs"), executor=metalab.DaskExecutor(client), progress=False
        )
        results = handle.result(timeout=120)
        assert marker.exists()
        assert [r.status for r in results] == ["success"] * 60
        assert [p.stem for p in record_files(tmp_path / "runs")] == sorted(results.run_ids)

    def test_a_batch_whose_worker_dies_once_its_outcome_arrived_is_not_failed(
        self, tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """This once failed a sweep with a ``TypeError`` from distributed's bridge."""
        lost = kill_the_holder_of_the_first_batch_fetched(client, monkeypatch)
        exp = experiment(recording_operation(), i=list(range(40)))
        handle = metalab.run(
            exp, store=str(tmp_path), executor=metalab.DaskExecutor(client), progress=False
        )
        results = handle.result(timeout=120)
        assert len(lost) == 1
        assert [r.status for r in results] == ["success"] * 40
        assert [p.stem for p in record_files(tmp_path)] == sorted(results.run_ids)

    @pytest.mark.parametrize(
        "second_fetch_fails", [False, True], ids=["run-again", "second-execution-fails"]
    )
    def test_the_index_matches_the_files_when_a_batch_is_lost_after_its_outcome_arrived(
        self,
        second_fetch_fails: bool,
        client: Client,
        monkeypatch: pytest.MonkeyPatch,
        postgres_config: PostgresStoreConfig,
        postgres_url: str,
    ) -> None:
        """Batches lost with the killed worker run again and write their runs once more.

        Each run records the pid of its worker, so a second execution changes its
        record; the index must hold the records the files hold when the sweep returns.
        The batch fetched just before the kill is indexed as it ran again, or, if that
        execution fails, as it first ran: the coordinating process writes the records
        it settles to the files as it indexes them, over what the failed one wrote.
        """
        lost = kill_the_holder_of_the_first_batch_fetched(
            client, monkeypatch, fail_its_second_fetch=second_fetch_fails
        )
        exp = experiment(recording_operation(), i=list(range(40)))
        handle = metalab.run(
            exp, store=postgres_config, executor=metalab.DaskExecutor(client), progress=False
        )
        results = handle.result(timeout=120)
        assert len(lost) == 1
        assert [r.status for r in results] == ["success"] * 40
        (batch,) = lost
        assert batch.run_ids
        backdoor = backdoor_for(handle, postgres_url, postgres_config)
        try:
            assert backdoor.index_docs("runs") == backdoor.file_docs("runs")
            records = [backdoor.read_run_record(run_id) for run_id in batch.run_ids]
        finally:
            backdoor.close()
        pids = {record.metrics["pid"] for record in records if record is not None}
        assert len(pids) == 1
        assert (pids == {batch.pid}) == second_fetch_fails

    def test_a_run_that_keeps_killing_workers_is_rerun_by_the_next_resume(
        self,
        tmp_path: Path,
        client: Client,
        postgres_config: PostgresStoreConfig,
        postgres_url: str,
    ) -> None:
        deaths = tmp_path / "deaths"
        deaths.mkdir()

        def kills_twice(params: dict[str, Any], capture: metalab.Capture) -> None:
            if params["i"] == 20 and len(list(deaths.iterdir())) < 2:
                (deaths / str(time.monotonic_ns())).touch()
                os._exit(1)
            capture.metric("i", params["i"])

        exp = experiment(metalab.operation(kills_twice), i=list(range(40)))
        handle = metalab.run(
            exp, store=postgres_config, executor=metalab.DaskExecutor(client), progress=False
        )
        with pytest.raises(KilledWorker):
            handle.result(timeout=120)
        backdoor = backdoor_for(handle, postgres_url, postgres_config)
        try:
            # What the lost batches wrote is indexed too (by sync_index() at shutdown).
            killer = backdoor.read_run_record(handle.run_ids[20])
            assert killer is not None
            assert (killer.params, killer.status) == ({"i": 20}, "running")
            client.wait_for_workers(2, timeout=60)

            again = metalab.run(
                exp, store=postgres_config, executor=metalab.DaskExecutor(client), progress=False
            )
            results = again.result(timeout=120)
            assert [r.status for r in results] == ["success"] * 40
            assert again.skipped + again.done == 40
            assert again.skipped > 0
            assert backdoor.run_ids() == set(handle.run_ids)
            assert len(list((tmp_path / "files" / "dask_1" / "runs").glob("*.json"))) == 40
            rerun = backdoor.read_run_record(handle.run_ids[20])
            assert rerun is not None
            assert rerun.status == "success"
        finally:
            backdoor.close()


class TestDaskWarnings:
    def test_a_warning_emitted_on_a_worker_reaches_the_caller_once_per_message(
        self, tmp_path: Path, client: Client
    ) -> None:
        # Worker processes outlive sweeps, and Python shows a warning once per text and
        # place in each of them: a text of this test's own keeps other tests out of it.
        tag = tmp_path.name

        def warns(params: dict[str, Any]) -> None:
            warnings.warn(f"{tag}: run {params['i'] % 2} looks odd", RuntimeWarning, stacklevel=1)

        exp = experiment(metalab.operation(warns), i=list(range(8)))
        with pytest.warns(RuntimeWarning) as caught:
            results = metalab.run(
                exp, store=str(tmp_path), executor=metalab.DaskExecutor(client), progress=False
            ).result(timeout=60)

        assert len(results.successful) == 8
        ours = sorted(str(w.message) for w in caught if str(w.message).startswith(tag))
        assert ours == [f"{tag}: run 0 looks odd", f"{tag}: run 1 looks odd"]


def waits_for_cancel(marks: Path) -> metalab.Operation:
    """Marks its start, then waits for the cancel (or for a ``release`` file)."""

    def waits(params: dict[str, Any], runtime: metalab.Runtime, capture: metalab.Capture) -> None:
        (marks / str(params["i"])).touch()
        deadline = time.monotonic() + 60
        while not runtime.cancel_requested and not (marks / "release").exists():
            assert time.monotonic() < deadline, "never cancelled nor released"
            time.sleep(0.01)
        capture.metric("saw_cancel", runtime.cancel_requested)

    return metalab.operation(waits)


class TestDaskCancel:
    def test_running_runs_finish_the_others_are_cancelled_and_resume_runs_them(
        self, tmp_path: Path, client: Client
    ) -> None:
        marks = tmp_path / "marks"
        marks.mkdir()
        exp = experiment(waits_for_cancel(marks), i=list(range(12)))
        store = str(tmp_path / "runs")
        handle = metalab.run(
            exp, store=store, executor=metalab.DaskExecutor(client), progress=False
        )
        deadline = time.monotonic() + 60
        while len(list(marks.iterdir())) < 2:
            assert time.monotonic() < deadline, "the workers never started two runs"
            time.sleep(0.01)
        handle.cancel()
        results = handle.result(timeout=60)

        assert len(list(marks.iterdir())) == 2, "a run started after the cancel"
        assert [r.metrics for r in results.successful] == [{"saw_cancel": True}] * 2
        assert len(results.filter(status="cancelled")) == 10
        assert all(r.finished_at is not None for r in results)
        assert (handle.done, handle.cancelled, handle.counts.pending) == (2, 10, 0)

        (marks / "release").touch()
        again = metalab.run(exp, store=store, executor=metalab.DaskExecutor(client), progress=False)
        assert [r.status for r in again.result(timeout=60)] == ["success"] * 12
        assert (again.skipped, again.done) == (2, 10)


class TestDaskExecutorArguments:
    @pytest.mark.parametrize("target", [42, None, "", "  "])
    def test_anything_but_a_client_or_an_address_is_refused(self, target: object) -> None:
        with pytest.raises(ConfigError, match="scheduler address"):
            metalab.DaskExecutor(target)  # type: ignore[arg-type]

    @pytest.mark.parametrize("workers", [0, -1, 1.5, True])
    def test_bad_worker_counts_are_refused(self, workers: object) -> None:
        with pytest.raises(ConfigError, match="max_workers"):
            metalab.DaskExecutor(NOWHERE, max_workers=workers)  # type: ignore[arg-type]

    @pytest.mark.parametrize("seconds", [0, -1.0, float("nan"), float("inf"), True, "1"])
    def test_bad_intervals_are_refused(self, seconds: object) -> None:
        with pytest.raises(ConfigError, match="index_interval"):
            metalab.DaskExecutor(NOWHERE, index_interval=seconds)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="worker_timeout"):
            metalab.DaskExecutor(NOWHERE, worker_timeout=seconds)  # type: ignore[arg-type]

    def test_a_memory_store_is_refused_and_nothing_runs(
        self, client: Client, tmp_path: Path
    ) -> None:
        marks = tmp_path / "marks"
        marks.mkdir()
        exp = experiment(waits_for_cancel(marks), i=[0, 1])
        handle = metalab.run(
            exp, store="memory://", executor=metalab.DaskExecutor(client), progress=False
        )
        with pytest.raises(ConfigError, match=r"memory://.*FileStore or PostgresStore"):
            handle.result(timeout=60)
        assert list(marks.iterdir()) == []

    def test_max_workers_overrides_the_cluster_threads(self) -> None:
        # Nothing connects before a sweep starts: the address is never dialled.
        assert metalab.DaskExecutor(NOWHERE, max_workers=7).max_workers == 7

    def test_it_asks_for_longer_batches_than_the_local_executors(self) -> None:
        executor = metalab.DaskExecutor(NOWHERE)
        assert isinstance(executor, SupportsBatchSeconds)
        assert executor.batch_seconds > runner._BATCH_SECONDS
        for local in (metalab.ThreadExecutor(2), metalab.ProcessExecutor(2)):
            assert not isinstance(local, SupportsBatchSeconds)


SCRIPT = textwrap.dedent(
    """
    import sys
    import metalab

    @metalab.operation
    def in_the_script(params, capture):
        capture.metric("twice", 2 * params["i"])

    exp = metalab.Experiment(
        name="script", version="1", operation=in_the_script, params=metalab.grid(i=range(8))
    )
    handle = metalab.run(
        exp, store=sys.argv[2], executor=metalab.DaskExecutor(sys.argv[1]), progress=False
    )
    print(sorted(r.metrics["twice"] for r in handle.result(timeout=120)))
    """
)


class TestScriptOperations:
    def test_an_operation_defined_in_a_script_reaches_workers_that_cannot_import_it(
        self, tmp_path: Path, cluster: LocalCluster
    ) -> None:
        # The script runs as ``python -c``: no worker can import its __main__.
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, cluster.scheduler_address, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str([2 * i for i in range(8)])


class TestOptionalDependency:
    def test_importing_metalab_and_naming_the_executor_loads_no_dask(self) -> None:
        code = (
            "import sys, metalab, metalab.executors\n"
            "assert metalab.DaskExecutor is metalab.executors.DaskExecutor\n"
            "assert 'DaskExecutor' in dir(metalab) and 'DaskExecutor' in dir(metalab.executors)\n"
            "print(','.join(m for m in ('dask', 'distributed', 'tornado', 'cloudpickle')"
            " if m in sys.modules))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == ""

    def test_without_distributed_the_error_names_the_extra_to_install(self) -> None:
        code = (
            "import sys\n"
            "sys.modules['distributed'] = None  # what a missing package looks like to import\n"
            "import metalab\n"
            "try:\n"
            f"    metalab.DaskExecutor({NOWHERE!r})\n"
            "except metalab.errors.MissingDependencyError as exc:\n"
            "    print(exc.module, exc.extra, 'metalab[dask]' in str(exc))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["distributed", "dask", "True"]


class TestExample:
    def test_the_dask_example_runs_its_sweep_on_a_local_cluster(self, tmp_path: Path) -> None:
        example = Path(__file__).resolve().parents[2] / "examples" / "dask_sweep.py"
        proc = subprocess.run(
            [sys.executable, str(example), str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "done 24, skipped 0" in proc.stdout
        assert len(list((tmp_path / "dask_sweep_1.0" / "runs").glob("*.json"))) == 24
