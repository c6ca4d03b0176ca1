"""Sweeps through dask-jobqueue on a running SLURM (the one-node cluster of ``conftest.py``).

Every worker here is a SLURM job that ``sbatch`` submitted: the operations record
``$SLURM_JOB_ID`` of the job they ran in, and a thread watches ``squeue`` while the
sweeps run. Runs count their starts in a file of their own (``counts/<i>``), which is
how the tests tell that nothing that finished ran twice.

The Dask scheduler runs in this process (dask-jobqueue starts it), on the loopback
interface; the workers connect to it from their jobs. Operations are built inside
functions so that Dask pickles them by value: the workers cannot import this module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import dask
import pytest
from dask_jobqueue.slurm import SLURMCluster
from distributed import Client, KilledWorker

import metalab
from metalab.store import PostgresStore, PostgresStoreConfig, SupportsWorkingDirectory
from metalab.testing.postgres import PostgresStoreBackdoor

if TYPE_CHECKING:
    from tests.slurm.slurm_cluster import LocalSlurm

REPO = Path(__file__).resolve().parents[2]


def options(tmp_path: Path, name: str) -> dict[str, Any]:
    """SLURMCluster arguments for a test: its own job name, logs in ``tmp_path``, loopback."""
    return {
        "job_name": name,
        "log_directory": str(tmp_path / "slurm-logs"),
        "interface": "lo",
        "scheduler_options": {"dashboard_address": ":0"},
    }


@dataclass
class QueueWatch:
    """Samples ``squeue`` for the jobs named ``name`` in a thread, every 0.2 s.

    Attributes:
        samples: ``(monotonic time, {job id: state})`` for each sample.
    """

    slurm: LocalSlurm
    name: str
    samples: list[tuple[float, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="squeue-watch", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            out = self.slurm.run("squeue", "-h", "-n", self.name, "-o", "%i %T", check=False)
            jobs = dict(line.split() for line in out.splitlines() if line.strip())
            self.samples.append((time.monotonic(), jobs))
            self._stop.wait(0.2)

    def seen(self, state: str = "RUNNING", until: float = float("inf")) -> set[str]:
        """The ids of the jobs seen in ``state`` (in the samples taken by ``until``)."""
        return {
            job for t, jobs in self.samples if t <= until for job, s in jobs.items() if s == state
        }

    def counts(self, since: float = -1.0, until: float = float("inf")) -> list[int]:
        """How many jobs were pending or running, sample by sample, in a time window."""
        return [len(jobs) for t, jobs in self.samples if since <= t <= until]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.2)


def counting_operation(
    counts: Path, *, sleep: float = 0.0, slow_run: int | None = None
) -> metalab.Operation:
    """Counts each start of a run in ``counts/<i>``, records its SLURM job, then works.

    Run ``slow_run``, the first time it starts, writes the id of its job to the file
    ``slow-job`` beside ``counts`` and sleeps 10 minutes: until SLURM kills its job.
    """

    def work(params: dict[str, Any], capture: metalab.Capture) -> None:
        i = params["i"]
        mine = counts / str(i)
        with mine.open("a") as f:
            f.write(f"{os.getpid()}\n")
        if i == slow_run and len(mine.read_text().splitlines()) == 1:
            (counts.parent / "slow-job").write_text(os.environ["SLURM_JOB_ID"])
            time.sleep(600)
        time.sleep(sleep)
        capture.metric("slurm_job", int(os.environ["SLURM_JOB_ID"]))
        capture.metric("psycopg_loaded", "psycopg" in sys.modules)
        capture.metric("square", i * i)

    return metalab.operation(work)


def experiment(operation: metalab.Operation, n: int, name: str = "slurm") -> metalab.Experiment:
    return metalab.Experiment(
        name=name, version="1", operation=operation, params=metalab.grid(i=list(range(n)))
    )


def starts(counts: Path) -> dict[int, int]:
    """How many times each run started."""
    return {int(p.name): len(p.read_text().splitlines()) for p in counts.iterdir()}


def statuses(handle: metalab.RunHandle) -> dict[int, str]:
    """The status of each run recorded so far, by its ``i``."""
    return {int(str(r.params["i"])): r.status for r in metalab.load_results(handle.store).records}


class TestSweeps:
    def test_a_few_hundred_runs_execute_in_slurm_jobs_into_a_file_store(
        self, slurm: LocalSlurm, tmp_path: Path
    ) -> None:
        counts = tmp_path / "counts"
        counts.mkdir()
        exp = experiment(counting_operation(counts, sleep=0.01), 300)
        with (
            QueueWatch(slurm, "ml-file") as watch,
            metalab.executors.slurm(
                cores=1, memory="512MB", walltime="00:10:00", jobs=2, **options(tmp_path, "ml-file")
            ) as executor,
        ):
            assert "#SBATCH -J ml-file" in executor.job_script()
            handle = metalab.run(
                exp, store=str(tmp_path / "store"), executor=executor, progress=False
            )
            results = handle.result(timeout=180)
            running_during_sweep = watch.seen("RUNNING")
        wait_until(lambda: not slurm.job_ids(name="ml-file"), 30, "the jobs were not cancelled")

        assert (handle.done, handle.failed) == (300, 0)
        assert [r.status for r in results] == ["success"] * 300
        assert [r.metrics["square"] for r in results] == [i * i for i in range(300)]
        used = {str(int(r.metrics["slurm_job"])) for r in results}
        # Both jobs ran runs, and squeue showed each of them running.
        assert len(used) == 2
        assert used <= running_during_sweep
        assert {r.provenance.executor_id for r in results} == {"dask"}
        assert set(starts(counts).values()) == {1}

    def test_a_few_hundred_runs_into_a_postgres_store_indexed_by_the_coordinator(
        self,
        slurm: LocalSlurm,
        tmp_path: Path,
        postgres_config: PostgresStoreConfig,
        postgres_url: str,
    ) -> None:
        counts = tmp_path / "counts"
        counts.mkdir()
        exp = experiment(counting_operation(counts, sleep=0.01), 300, name="slurm_pg")
        with (
            QueueWatch(slurm, "ml-pg") as watch,
            metalab.executors.slurm(
                cores=1, memory="512MB", walltime="00:10:00", jobs=2, **options(tmp_path, "ml-pg")
            ) as executor,
        ):
            handle = metalab.run(exp, store=postgres_config, executor=executor, progress=False)
            results = handle.result(timeout=180)

        assert [r.status for r in results] == ["success"] * 300
        assert {str(int(r.metrics["slurm_job"])) for r in results} <= watch.seen("RUNNING")
        # The workers wrote files only: none of them imported the database driver.
        assert {r.metrics["psycopg_loaded"] for r in results} == {False}
        store = handle.store
        assert isinstance(store, PostgresStore)
        assert isinstance(store, SupportsWorkingDirectory)
        backdoor = PostgresStoreBackdoor(
            postgres_url,
            postgres_config.schema,
            store.get_working_directory(),
            handle.experiment_id,
        )
        try:
            assert backdoor.run_ids() == set(handle.run_ids)  # the index has every run
            for run_id in handle.run_ids[::50]:
                record = backdoor.read_run_record(run_id)
                assert record is not None
                assert record.status == "success"
        finally:
            backdoor.close()


COORDINATOR = textwrap.dedent(
    """
    import os
    import sys

    import metalab

    @metalab.operation
    def where(params, capture):
        capture.metric("slurm_job", int(os.environ["SLURM_JOB_ID"]))

    exp = metalab.Experiment(
        name="coordinated", version="1", operation=where, params=metalab.grid(i=range(50))
    )
    with metalab.executors.slurm(
        cores=1,
        memory="512MB",
        walltime="00:10:00",
        job_name="ml-worker",
        interface="lo",
        log_directory=sys.argv[2],
        scheduler_options={"dashboard_address": ":0"},
    ) as executor:
        handle = metalab.run(exp, store=sys.argv[1], executor=executor, progress=False)
        results = handle.result(timeout=300)
    workers = sorted({int(r.metrics["slurm_job"]) for r in results})
    print(os.environ["SLURM_JOB_ID"], len(results.successful), *workers)
    """
)


class TestCoordinatorJob:
    def test_the_coordinating_process_runs_as_a_batch_job_that_submits_the_workers(
        self, slurm: LocalSlurm, tmp_path: Path
    ) -> None:
        # docs/dask.md: where the login node may not run long processes.
        script = tmp_path / "sweep.py"
        script.write_text(COORDINATOR)
        out = tmp_path / "coordinator.out"
        submitted = slurm.run(
            "sbatch",
            "--parsable",
            "-J",
            "ml-coordinator",
            "-c",
            "1",
            "--mem=1G",
            "-t",
            "00:10:00",
            "-o",
            str(out),
            f"--chdir={tmp_path}",
            "--wrap",
            f"{sys.executable} {script} {tmp_path / 'store'} {tmp_path / 'logs'}",
        )
        coordinator = submitted.strip().split(";")[0]
        with QueueWatch(slurm, "ml-worker") as watch:
            wait_until(
                lambda: not slurm.job_ids(name="ml-coordinator"), 240, "the sweep job never ended"
            )
        text = out.read_text()
        job, successful, *workers = text.strip().splitlines()[-1].split()
        assert (job, successful) == (coordinator, "50"), text
        assert workers
        assert coordinator not in workers
        assert set(workers) <= watch.seen("RUNNING")
        wait_until(lambda: not slurm.job_ids(name="ml-worker"), 30, "the worker job stayed")


class TestInterruptions:
    def test_a_job_cancelled_mid_sweep_leaves_running_records_that_resume_runs_again(
        self, slurm: LocalSlurm, tmp_path: Path
    ) -> None:
        counts = tmp_path / "counts"
        counts.mkdir()
        n = 300
        exp = experiment(
            counting_operation(counts, sleep=0.05, slow_run=60), n, name="slurm_cancel"
        )
        store = str(tmp_path / "store")
        # A batch lost with its job ends the sweep (KilledWorker) instead of running
        # again on the other job: what a resume must then pick up.
        with (
            dask.config.set({"distributed.scheduler.allowed-failures": 0}),
            QueueWatch(slurm, "ml-cancel") as watch,
            metalab.executors.slurm(
                cores=1,
                memory="512MB",
                walltime="00:10:00",
                jobs=2,
                **options(tmp_path, "ml-cancel"),
            ) as executor,
        ):
            handle = metalab.run(exp, store=store, executor=executor, progress=False)
            slow_job = tmp_path / "slow-job"
            wait_until(slow_job.exists, 120, "run 60 did not start")
            # The job that runs run 60, while the other job goes on with the sweep.
            victim = slow_job.read_text()
            assert victim in slurm.job_ids(name="ml-cancel", states="RUNNING")
            slurm.run("scancel", victim)
            with pytest.raises(KilledWorker):
                handle.result(timeout=120)
            assert victim not in slurm.job_ids(name="ml-cancel")

            before = statuses(handle)
            interrupted = {i for i, status in before.items() if status == "running"}
            succeeded = {i for i, status in before.items() if status == "success"}
            # SLURM sends SIGTERM, the worker waits for its run, and SIGKILL comes 5 s
            # later (KillWait): run 60 was killed mid-run and says so.
            assert interrupted == {60}
            assert set(range(60)) <= succeeded
            assert len(succeeded) < n - 1
            assert all(starts(counts)[i] == 1 for i in succeeded)

            again = metalab.run(exp, store=store, executor=executor, progress=False)
            results = again.result(timeout=180)

        assert [r.status for r in results] == ["success"] * n
        assert (again.skipped, again.done) == (len(succeeded), n - len(succeeded))
        # The interrupted run ran twice, every other run once.
        assert starts(counts) == {i: 2 if i == 60 else 1 for i in range(n)}
        jobs = {r.params["i"]: str(int(r.metrics["slurm_job"])) for r in results}
        assert jobs[60] != victim
        assert set(jobs.values()) <= watch.seen("RUNNING")

    def test_a_job_that_hits_its_walltime_ends_the_sweep_and_resume_finishes_it(
        self, slurm: LocalSlurm, tmp_path: Path
    ) -> None:
        counts = tmp_path / "counts"
        counts.mkdir()
        n = 8
        exp = experiment(counting_operation(counts, slow_run=3), n, name="slurm_walltime")
        store = str(tmp_path / "store")
        logs = tmp_path / "slurm-logs"
        with (
            dask.config.set({"distributed.scheduler.allowed-failures": 0}),
            QueueWatch(slurm, "ml-walltime") as watch,
            metalab.executors.slurm(
                cores=1,
                memory="512MB",
                walltime="00:01:00",
                jobs=1,
                **options(tmp_path, "ml-walltime"),
            ) as executor,
        ):
            assert "#SBATCH -t 00:01:00" in executor.job_script()
            handle = metalab.run(exp, store=store, executor=executor, progress=False)
            began = time.monotonic()
            # SLURM checks time limits every 30 s and kills 5 s (KillWait) after
            # SIGTERM: the job ends 60 to 95 s after it started.
            with pytest.raises(KilledWorker):
                handle.result(timeout=240)
            elapsed = time.monotonic() - began
            job = (tmp_path / "slow-job").read_text()
            # While the slow job ran, it ran alone (jobs=1). dask-jobqueue submits its
            # replacement as soon as the worker is lost, which may be running already.
            ran = [t for t, jobs in watch.samples if jobs.get(job) == "RUNNING"]
            assert ran, f"job {job} never seen running"
            assert watch.seen("RUNNING", until=max(ran)) == {job}
            wait_until(
                lambda: "DUE TO TIME LIMIT" in _job_stderr(logs, job), 30, "no time-limit note"
            )

            # Several batches wait on the worker, and Dask need not run them in the
            # order they were submitted: which runs finished before run 3 took the
            # job's one core varies. Each of them finished, and none started twice.
            before = statuses(handle)
            assert before[3] == "running"
            finished = {i for i, status in before.items() if status == "success"}
            assert set(before) == finished | {3}
            # Counted by the coordinator: the runs whose batches came back (a run may
            # have shared the lost batch of run 3).
            assert handle.done <= len(finished)
            assert starts(counts) == dict.fromkeys(before, 1)

            # The executor keeps its one job: dask-jobqueue submits another.
            again = metalab.run(exp, store=store, executor=executor, progress=False)
            results = again.result(timeout=180)

        assert 55 < elapsed < 200
        assert [r.status for r in results] == ["success"] * n
        assert (again.skipped, again.done) == (len(finished), n - len(finished))
        assert starts(counts) == {i: 2 if i == 3 else 1 for i in range(n)}
        rerun = next(r for r in results if r.params["i"] == 3)
        assert str(int(rerun.metrics["slurm_job"])) != job  # on the job that replaced it


def _job_stderr(logs: Path, job: str) -> str:
    return "".join(p.read_text(errors="replace") for p in logs.glob(f"*-{job}.err"))


class TestAdaptive:
    def test_adaptive_scaling_grows_to_two_jobs_and_shrinks_while_the_sweep_runs(
        self, slurm: LocalSlurm, tmp_path: Path
    ) -> None:
        counts = tmp_path / "counts"
        counts.mkdir()
        exp = experiment(_tail_operation(counts), 41, name="slurm_adapt")
        with (
            QueueWatch(slurm, "ml-adapt") as watch,
            SLURMCluster(
                cores=1,
                processes=1,
                memory="512MB",
                walltime="00:10:00",
                **options(tmp_path, "ml-adapt"),
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            cluster.adapt(minimum=0, maximum=2)
            time.sleep(2)
            idle = watch.counts()
            began = time.monotonic()
            handle = metalab.run(
                exp,
                store=str(tmp_path / "store"),
                executor=metalab.DaskExecutor(client, max_workers=8),
                progress=False,
            )
            results = handle.result(timeout=180)
            ended = time.monotonic()
            wait_until(lambda: not slurm.job_ids(name="ml-adapt"), 60, "the jobs were not retired")

        assert set(idle) == {0}, "jobs were submitted before there was work"
        assert [r.status for r in results] == ["success"] * 41
        during = watch.counts(began, ended)
        peak = during.index(max(during))
        assert max(during) == 2
        # The long last run keeps one job busy; the idle one is retired before it ends.
        assert 1 in during[peak:], f"no shrink while the sweep ran: {during}"
        assert len(watch.seen("RUNNING")) >= 2


def _tail_operation(counts: Path) -> metalab.Operation:
    """Runs 0-39 take 0.5 s each; run 40, the last, takes 15 s."""

    def work(params: dict[str, Any], capture: metalab.Capture) -> None:
        (counts / str(params["i"])).touch()
        time.sleep(15 if params["i"] == 40 else 0.5)
        capture.metric("slurm_job", int(os.environ["SLURM_JOB_ID"]))

    return metalab.operation(work)


class TestBenchmark:
    def test_the_slurm_benchmark_times_500_runs_next_to_a_local_cluster(
        self, slurm: LocalSlurm, tmp_path: Path
    ) -> None:
        out = tmp_path / "bench.json"
        command = ["-m", "benchmarks.bench_slurm", "--n", "500", "--repeat", "1"]
        proc = subprocess.run(
            [sys.executable, *command, "--json", str(out)],
            cwd=REPO,
            env=slurm.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        print(proc.stdout)
        assert "SLURMCluster" in proc.stdout
        assert "LocalCluster" in proc.stdout
        assert out.exists()
