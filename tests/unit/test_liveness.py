"""Telling a live writer of a ``running`` record from one that is gone."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys

import pytest

from metalab._liveness import process_liveness, writer_liveness
from metalab.records import utc_now

HOST = socket.gethostname()


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that this test started, killed and reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.kill()
    proc.wait()
    return proc.pid


class TestWriterLiveness:
    def test_this_process_is_alive(self) -> None:
        assert writer_liveness(HOST, os.getpid(), utc_now()) == "alive"

    def test_a_killed_process_is_dead(self, dead_pid: int) -> None:
        assert writer_liveness(HOST, dead_pid, utc_now()) == "dead"

    def test_another_host_cannot_be_judged(self, dead_pid: int) -> None:
        assert writer_liveness(HOST + ".elsewhere", dead_pid, utc_now()) == "unknown"

    @pytest.mark.parametrize(("host", "pid"), [(None, None), (HOST, None), (None, 1)])
    def test_a_record_without_host_or_pid_cannot_be_judged(
        self, host: str | None, pid: int | None
    ) -> None:
        assert writer_liveness(host, pid, utc_now()) == "unknown"


class TestProcessLiveness:
    @pytest.mark.parametrize("pid", [0, -1, 2**70])
    def test_a_pid_that_names_no_single_process_cannot_be_judged(self, pid: int) -> None:
        # 0 and -1 would name process groups for os.kill(): never signalled.
        assert process_liveness(pid, utc_now()) == "unknown"

    @pytest.mark.skipif(sys.platform != "linux", reason="start times come from /proc")
    def test_a_pid_reused_by_a_process_started_after_the_run_is_dead(self) -> None:
        begun = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # long before this process started
        assert process_liveness(os.getpid(), begun) == "dead"

    @pytest.mark.skipif(sys.platform != "linux", reason="process states come from /proc")
    def test_a_zombie_is_dead(self) -> None:
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
            assert process_liveness(proc.pid, utc_now()) == "dead"
        finally:
            proc.wait()
