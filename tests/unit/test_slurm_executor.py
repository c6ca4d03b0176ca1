"""``metalab.executors.slurm()`` without SLURM: stand-in ``sbatch`` and ``scancel`` commands.

The stand-ins, first on ``PATH``, keep each script they are given and answer as SLURM
does (``Submitted batch job N``); ``scancel`` notes the ids it was asked to cancel. So
the executor's jobs are really submitted through dask-jobqueue, and never start. The
sweeps on a running SLURM are in ``tests/slurm`` (``nox -s slurm``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster

import metalab
from metalab.errors import ConfigError

SBATCH = textwrap.dedent(
    """\
    #!/bin/sh
    # Keeps the job script and answers like sbatch. dask-jobqueue submits jobs
    # concurrently: the counter is read and bumped under a mkdir lock.
    dir="$FAKE_SLURM_DIR"
    until mkdir "$dir/lock" 2>/dev/null; do sleep 0.01; done
    n=$(( $(cat "$dir/next" 2>/dev/null || echo 100) + 1 ))
    echo "$n" > "$dir/next"
    rmdir "$dir/lock"
    cp "$1" "$dir/job-$n.sh"
    echo "Submitted batch job $n"
    """
)
SCANCEL = textwrap.dedent(
    """\
    #!/bin/sh
    echo "$@" >> "$FAKE_SLURM_DIR/scancel.log"
    """
)


@pytest.fixture(autouse=True)
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory where the stand-in ``sbatch`` leaves the scripts it was given.

    Used by every test here: nothing may reach a real SLURM that the machine has.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", SBATCH), ("scancel", SCANCEL)):
        command = bin_dir / name
        command.write_text(text)
        command.chmod(0o755)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(jobs))
    return jobs


def submitted(jobs: Path) -> dict[str, str]:
    """The scripts submitted so far, by job id."""
    return {p.stem.removeprefix("job-"): p.read_text() for p in sorted(jobs.glob("job-*.sh"))}


def cancelled(jobs: Path) -> list[str]:
    log = jobs / "scancel.log"
    return log.read_text().split() if log.exists() else []


def wait_for(jobs: Path, count: int) -> dict[str, str]:
    deadline = time.monotonic() + 30
    while len(found := submitted(jobs)) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} jobs submitted"
        time.sleep(0.05)
    return found


LOCAL: dict[str, Any] = {"interface": "lo", "scheduler_options": {"dashboard_address": ":0"}}


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[metalab.DaskExecutor]:
    with metalab.executors.slurm(
        cores=2,
        memory="3GB",
        walltime="00:20:00",
        jobs=2,
        queue="compute",
        account="lab",
        job_name="metalab-unit",
        job_extra_directives=["--constraint=cpu"],
        job_script_prologue=["source /project/venv/bin/activate"],
        log_directory=str(tmp_path / "logs"),
        **LOCAL,
    ) as made:
        yield made


class TestJobScript:
    def test_the_script_asks_slurm_for_what_was_given(self, executor: metalab.DaskExecutor) -> None:
        script = executor.job_script()
        lines = script.splitlines()
        for directive in (
            "#SBATCH -J metalab-unit",
            "#SBATCH -p compute",
            "#SBATCH -A lab",
            "#SBATCH -n 1",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --mem=3G",
            "#SBATCH -t 00:20:00",
            "#SBATCH --constraint=cpu",
        ):
            assert directive in lines, f"{directive!r} not in\n{script}"
        assert "source /project/venv/bin/activate" in lines
        (command,) = [line for line in lines if "distributed.cli.dask_worker" in line]
        # This interpreter, one single-threaded worker process per core.
        assert command.startswith(
            f"{sys.executable} -m distributed.cli.dask_worker tcp://127.0.0.1:"
        )
        assert "--nthreads 1" in command
        assert "--nworkers 2" in command

    def test_runs_in_flight_cover_every_core_of_every_job(
        self, executor: metalab.DaskExecutor
    ) -> None:
        assert executor.max_workers == 4

    def test_processes_may_be_given(self) -> None:
        with metalab.executors.slurm(
            cores=4, memory="1GB", walltime="00:05:00", processes=1, **LOCAL
        ) as made:
            script = made.job_script()
        assert "--nthreads 4" in script
        assert "--nworkers" not in script
        assert made.max_workers == 4

    def test_an_executor_without_a_job_queue_cluster_has_no_script(self) -> None:
        with pytest.raises(ConfigError, match="not a dask-jobqueue cluster"):
            metalab.DaskExecutor("tcp://127.0.0.1:9").job_script()
        with (
            LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            borrowed = metalab.DaskExecutor(client)
            with pytest.raises(ConfigError, match="not a dask-jobqueue cluster"):
                borrowed.job_script()
            borrowed.close()  # not its client: left open
            assert client.status == "running"


class TestJobs:
    def test_the_jobs_are_submitted_and_closing_cancels_them(self, fake_slurm: Path) -> None:
        executor = metalab.executors.slurm(
            cores=1, memory="1GB", walltime="00:05:00", jobs=2, **LOCAL
        )
        try:
            scripts = wait_for(fake_slurm, 2)
            time.sleep(0.5)
            assert len(submitted(fake_slurm)) == 2, "more jobs than asked for"
            template = executor.job_script()
            for script in scripts.values():
                # Each job names its own worker; the rest is the script shown.
                assert script.replace(_worker_name(script), "dummy-name") == template
        finally:
            executor.close()
        assert sorted(cancelled(fake_slurm)) == sorted(scripts)
        executor.close()  # again: nothing left to close
        assert sorted(cancelled(fake_slurm)) == sorted(scripts)

    def test_bad_arguments_are_refused_before_anything_is_submitted(self, fake_slurm: Path) -> None:
        good: dict[str, Any] = {"cores": 1, "memory": "1GB", "walltime": "00:05:00"}
        for name, value in [
            ("cores", 0),
            ("cores", 1.5),
            ("cores", True),
            ("jobs", 0),
            ("jobs", -2),
            ("memory", ""),
            ("memory", 4),
            ("walltime", " "),
            ("walltime", None),
        ]:
            with pytest.raises(ConfigError, match=rf"slurm\({name}=\.\.\.\)"):
                metalab.executors.slurm(**{**good, name: value})
        assert submitted(fake_slurm) == {}


def _worker_name(script: str) -> str:
    words = script.split()
    return words[words.index("--name") + 1]


class TestOptionalDependency:
    def test_without_dask_jobqueue_the_error_names_the_slurm_extra(self) -> None:
        code = (
            "import sys\n"
            "sys.modules['dask_jobqueue'] = None  # what a missing package looks like\n"
            "import metalab\n"
            "try:\n"
            "    metalab.executors.slurm(cores=1, memory='1GB', walltime='00:01:00')\n"
            "except metalab.errors.MissingDependencyError as exc:\n"
            "    print(exc.module, exc.extra, 'metalab[slurm]' in str(exc))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["dask_jobqueue", "slurm", "True"]

    def test_naming_the_function_imports_neither_dask_nor_dask_jobqueue(self) -> None:
        code = (
            "import sys, metalab, metalab.executors\n"
            "assert callable(metalab.executors.slurm)\n"
            "print(','.join(m for m in ('dask', 'distributed', 'dask_jobqueue') if m in sys.modules))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == ""
