"""Whether the process that wrote a ``running`` record is still at work.

A run record names its writer (``Provenance.host`` and ``Provenance.pid``). Only the
writer's own host can look at that process: there, a pid that no longer exists, or a
zombie, or (on Linux) a pid that now belongs to a process started after the run
began (the pid was reused) means the writer is gone and the run will never finish.
Anything else, a record from another host, or one without a pid (written by
metalab 0.1 or an older metalab), cannot be judged from here.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
from pathlib import Path
from typing import Final, Literal, TypeAlias

__all__ = ["Liveness", "process_liveness", "writer_liveness"]

Liveness: TypeAlias = Literal["alive", "dead", "unknown"]
"""``dead``: the writer is known to be gone; ``unknown``: it cannot be checked from here."""

_START_SLACK: Final = 2.0
"""Seconds a process may seem to have started after its run began, and still be its writer.

The start time read from ``/proc`` is the boot time (whole seconds) plus clock ticks,
and the wall clock may have been stepped since boot; the writer started before it
wrote ``started_at``, so a reused pid shows up as a start well after it.
"""


def writer_liveness(host: str | None, pid: int | None, started_at: dt.datetime) -> Liveness:
    """Say whether the process that wrote a ``running`` record is alive.

    Args:
        host: The host that ran it (``RunRecord.provenance.host``).
        pid: Its process id (``RunRecord.provenance.pid``).
        started_at: When the run started (``RunRecord.started_at``).

    Returns:
        ``"unknown"`` unless the record names a pid on this host; otherwise what
        :func:`process_liveness` finds.
    """
    if host is None or pid is None or host != socket.gethostname():
        return "unknown"
    return process_liveness(pid, started_at)


def process_liveness(pid: int, started_at: dt.datetime) -> Liveness:
    """Say whether process ``pid`` of this host is the live writer of a run begun at ``started_at``.

    Returns:
        ``"dead"`` if there is no such process, it is a zombie, or (on Linux) it
        started after ``started_at`` (a new process that reuses the pid);
        ``"alive"`` if it exists and nothing says it is another process;
        ``"unknown"`` for a pid that cannot name one process, or on Windows.
    """
    # os.kill() with 0 or a negative pid signals a process group, and on Windows any
    # signal terminates the process: neither may be used to look.
    if pid <= 0 or sys.platform == "win32":
        return "unknown"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        pass  # it exists, and belongs to another user
    except (OverflowError, OSError):
        return "unknown"
    found = _linux_process_start(pid)
    if found is None:
        return "alive"
    state, started = found
    if state in ("Z", "X"):
        return "dead"
    if started > started_at.timestamp() + _START_SLACK:
        return "dead"
    return "alive"


def _linux_process_start(pid: int) -> tuple[str, float] | None:
    """The state and start time (POSIX seconds) of process ``pid``, read from ``/proc``.

    ``None`` where there is no ``/proc`` (not Linux) or the process is gone by now.
    """
    try:
        line = Path(f"/proc/{pid}/stat").read_bytes().decode("ascii", errors="replace")
        system = Path("/proc/stat").read_bytes().splitlines()
        boot = next(float(row.split()[1]) for row in system if row.startswith(b"btime "))
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError):
        return None
    # Field 2 (the command name) is in parentheses and may hold spaces or ')': the
    # fields from 3 on start after the last ')'. Field 3 is the state, 22 the start
    # time in clock ticks after boot.
    fields = line[line.rfind(")") + 2 :].split()
    try:
        return fields[0], boot + int(fields[19]) / ticks
    except (IndexError, ValueError):
        return None
