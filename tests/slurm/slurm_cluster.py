"""A one-node SLURM on localhost, for the slurm tests (``conftest.py``) and by hand.

    python tests/slurm/slurm_cluster.py up [--dir DIR]   # then: export SLURM_CONF=DIR/slurm.conf
    python tests/slurm/slurm_cluster.py status [--dir DIR]
    python tests/slurm/slurm_cluster.py down [--dir DIR]

Everything the cluster has lives under one directory (``DIR``, default
``/tmp/metalab-slurm`` or ``$METALAB_SLURM_DIR``): its ``slurm.conf``, the controller's
state and the node's spool directories, the daemons' logs and pid files, and a MUNGE
daemon of its own, with its own key and socket. The machine's ``/etc`` is left alone:
the clients (``sinfo``, ``squeue``, ``sbatch``, ``scancel``) find the cluster through
``SLURM_CONF``. The controller and the node daemon listen on two free ports of the
loopback interface; nothing leaves localhost.

The node is this machine (``NodeName=localhost``, all its CPUs, its memory less 1 GiB)
in a single default partition. Jobs run as root, like the daemons (``SlurmUser=root``),
with the process tracking and task plugins that need no cgroups
(``proctrack/linuxproc``, ``task/none``): a container has no cgroup to delegate.

SLURM and MUNGE come from Debian's packages (``slurmctld slurmd slurm-client munge``),
installed when missing; installing needs root, and so does running the daemons this
way. :class:`SlurmUnavailableError` says why a cluster cannot be had.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_DIR", "LocalSlurm", "SlurmUnavailableError", "ensure_installed"]

DEFAULT_DIR = Path(os.environ.get("METALAB_SLURM_DIR", "/tmp/metalab-slurm"))
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
COMMANDS = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "scontrol")
MUNGE_COMMANDS = ("munged", "mungekey")
PARTITION = "debug"
NODE = "localhost"
# The daemons, in the order they start; they stop in the reverse order.
DAEMONS = ("munged", "slurmctld", "slurmd")


class SlurmUnavailableError(RuntimeError):
    """SLURM cannot be installed or started here; the message says why."""


def _missing_commands() -> list[str]:
    # munged and mungekey live in /usr/sbin, which a non-login PATH may lack.
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [c for c in (*COMMANDS, *MUNGE_COMMANDS) if shutil.which(c, path=search) is None]


def _command(name: str) -> str:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=search)
    if found is None:
        raise SlurmUnavailableError(f"{name} is not installed")
    return found


def ensure_installed() -> None:
    """Install Debian's SLURM and MUNGE packages when a command of theirs is missing.

    Raises:
        SlurmUnavailableError: Something is missing and this process is not root, or
            ``apt-get`` failed (its output is in the message).
    """
    missing = _missing_commands()
    if not missing:
        return
    if os.geteuid() != 0:
        raise SlurmUnavailableError(
            f"SLURM is not installed ({', '.join(missing)} missing) and installing it needs "
            f"root: apt-get install {' '.join(PACKAGES)}"
        )
    if shutil.which("apt-get") is None:
        raise SlurmUnavailableError(f"{', '.join(missing)} missing and there is no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        # A fresh machine has no package lists yet.
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or _missing_commands():
        raise SlurmUnavailableError(
            f"apt-get install {' '.join(PACKAGES)} failed ({done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _memory_mib() -> int:
    with Path("/proc/meminfo").open() as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise SlurmUnavailableError("no MemTotal in /proc/meminfo")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is gone for every purpose here.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _stop(pids: list[int], *, grace: float) -> None:
    """SIGTERM each process, and SIGKILL those still alive ``grace`` seconds later."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class LocalSlurm:
    """A one-node SLURM whose every file is under ``root``.

    Attributes:
        root: The cluster's directory.
    """

    root: Path

    @property
    def conf(self) -> Path:
        """The cluster's ``slurm.conf``."""
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """This process's environment with ``SLURM_CONF`` pointing at the cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _pid_file(self, daemon: str) -> Path:
        return self.root / "run" / f"{daemon}.pid"

    def pid(self, daemon: str) -> int | None:
        """The pid of a daemon of this cluster that is alive, else ``None``."""
        try:
            pid = int(self._pid_file(daemon).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def run(self, *command: str, check: bool = True, timeout: float = 30) -> str:
        """Run a SLURM client command against this cluster; return its stdout.

        Raises:
            subprocess.CalledProcessError: It failed and ``check`` is true.
        """
        done = subprocess.run(
            [_command(command[0]), *command[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr)
        return done.stdout

    # Starting.

    def up(self, *, timeout: float = 60) -> None:
        """Start MUNGE, the controller and the node daemon, and wait for the node to be idle.

        A cluster already up in ``root`` is left as it is.

        Raises:
            SlurmUnavailableError: A daemon did not start, or the node never became
                idle within ``timeout`` seconds (the logs are quoted).
        """
        if all(self.pid(d) is not None for d in DAEMONS):
            self.wait_idle(timeout=timeout)
            return
        self.down()
        ensure_installed()
        for sub in ("munge", "state", "spool", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        # munged wants its socket directory searchable by all (the key stays 0600).
        (self.root / "munge").chmod(0o755)
        self.root.chmod(0o700)
        self._start_munge()
        self.conf.write_text(self.config_text())
        self._start(
            "slurmctld",
            [_command("slurmctld"), "-f", str(self.conf)],
        )
        self._start(
            "slurmd",
            [_command("slurmd"), "-f", str(self.conf), "-N", NODE],
        )
        self.wait_idle(timeout=timeout)

    def config_text(self) -> str:
        """The ``slurm.conf`` of this cluster (fresh ports each time it is written)."""
        cpus = os.cpu_count() or 1
        memory = max(256, _memory_mib() - 1024)
        r = self.root
        lines = {
            "ClusterName": "metalab",
            "SlurmctldHost": NODE,
            "SlurmctldPort": _free_port(),
            "SlurmdPort": _free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={r / 'munge' / 'munge.socket'}",
            "StateSaveLocation": r / "state",
            "SlurmdSpoolDir": r / "spool",
            "SlurmctldPidFile": self._pid_file("slurmctld"),
            "SlurmdPidFile": self._pid_file("slurmd"),
            "SlurmctldLogFile": r / "log" / "slurmctld.log",
            "SlurmdLogFile": r / "log" / "slurmd.log",
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "SchedulerType": "sched/backfill",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core_Memory",
            "MpiDefault": "none",
            "MailProg": "/bin/true",
            "ReturnToService": 2,
            # A job over its time limit (or cancelled) gets SIGTERM, then SIGKILL 5 s later.
            "KillWait": 5,
            "InactiveLimit": 0,
            "SlurmdTimeout": 30,
        }
        text = [f"{key}={value}" for key, value in lines.items()]
        text.append(
            f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN"
        )
        text.append(f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP")
        return "\n".join(text) + "\n"

    def _start_munge(self) -> None:
        munge = self.root / "munge"
        key = munge / "munge.key"
        if not key.exists():
            subprocess.run(
                [_command("mungekey"), "--create", f"--keyfile={key}"],
                check=True,
                capture_output=True,
            )
        key.chmod(0o600)
        self._start(
            "munged",
            [
                _command("munged"),
                "--force",
                f"--key-file={key}",
                f"--socket={munge / 'munge.socket'}",
                f"--pid-file={self._pid_file('munged')}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
        )

    def _start(self, daemon: str, command: list[str]) -> None:
        """Start a daemon (it forks into the background) and wait for its pid file."""
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)
        deadline = time.monotonic() + 15
        while self.pid(daemon) is None:
            if time.monotonic() > deadline or done.returncode != 0:
                raise SlurmUnavailableError(
                    f"{daemon} did not start ({done.returncode}): {done.stderr.strip()}\n"
                    f"{self.logs(daemon)}"
                )
            time.sleep(0.1)

    def logs(self, *daemons: str, lines: int = 30) -> str:
        """The last lines of the daemons' logs (all of them by default)."""
        out = []
        for daemon in daemons or DAEMONS:
            path = self.root / "log" / f"{daemon}.log"
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                tail = ["(no log)"]
            out.append(f"--- {path}\n" + "\n".join(tail))
        return "\n".join(out)

    def node_state(self) -> str:
        """The node's state as ``sinfo`` says it (``idle``, ``mixed``, ``down*`` ...)."""
        try:
            return self.run("sinfo", "-h", "-N", "-n", NODE, "-o", "%T", timeout=10).strip()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            return f"unknown ({exc})"

    def wait_idle(self, *, timeout: float = 60) -> None:
        """Wait until the node is idle.

        Raises:
            SlurmUnavailableError: It was not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        state = self.node_state()
        while state != "idle":
            if time.monotonic() > deadline:
                raise SlurmUnavailableError(
                    f"the node is {state!r}, not idle, after {timeout:g} s\n{self.logs()}"
                )
            time.sleep(0.5)
            state = self.node_state()

    # Jobs.

    def job_ids(self, *, name: str | None = None, states: str = "PENDING,RUNNING") -> list[str]:
        """The ids of the jobs ``squeue`` shows in ``states`` (those named ``name``)."""
        command = ["squeue", "-h", "-o", "%i", "-t", states]
        if name is not None:
            command += ["-n", name]
        return self.run(*command, timeout=10).split()

    def cancel_all(self, *, timeout: float = 30) -> None:
        """Cancel every job and wait until ``squeue`` shows none."""
        ids = self.job_ids(states="all")
        if ids:
            self.run("scancel", *ids, check=False)
        deadline = time.monotonic() + timeout
        while self.job_ids(states="PENDING,RUNNING,COMPLETING,SUSPENDED"):
            if time.monotonic() > deadline:
                raise SlurmUnavailableError(f"jobs still in squeue after {timeout:g} s")
            time.sleep(0.2)

    # Stopping.

    def job_processes(self) -> list[int]:
        """The pids of processes that jobs of this cluster started, still alive.

        ``proctrack/linuxproc`` follows a job's processes by their parents, so one
        whose parent died first (a Dask worker whose nanny was killed) leaves the
        job's process tree and outlives the job. Each has the job's environment:
        ``SLURM_JOB_ID``, and ``SLURM_CONF`` naming this cluster.
        """
        conf = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if conf in env and any(v.startswith(b"SLURM_JOB_ID=") for v in env):
                found.append(int(entry.name))
        return [pid for pid in found if _alive(pid)]

    def clean(self) -> None:
        """Cancel every job and stop the processes that jobs left behind."""
        self.cancel_all(timeout=20)
        _stop(self.job_processes(), grace=10)

    def down(self) -> None:
        """Cancel the jobs, stop what they left and the daemons, and keep the directory."""
        if self.pid("slurmctld") is not None:
            with contextlib.suppress(SlurmUnavailableError, subprocess.SubprocessError, OSError):
                self.cancel_all(timeout=20)
        _stop(self.job_processes(), grace=10)
        for daemon in reversed(DAEMONS):
            pid = self.pid(daemon)
            if pid is not None:
                _stop([pid], grace=15)

    def status(self) -> Mapping[str, object]:
        """What runs: the daemons' pids, the node's state and the jobs in the queue."""
        pids = {daemon: self.pid(daemon) for daemon in DAEMONS}
        up = all(pid is not None for pid in pids.values())
        return {
            "dir": str(self.root),
            "daemons": pids,
            "node": self.node_state() if up else "down",
            "jobs": self.run("squeue", check=False, timeout=10) if up else "",
        }


@contextlib.contextmanager
def local_slurm(root: Path, *, timeout: float = 60) -> Iterator[LocalSlurm]:
    """A cluster up in ``root`` for the duration, then down (its jobs cancelled)."""
    cluster = LocalSlurm(root)
    try:
        cluster.up(timeout=timeout)
        yield cluster
    finally:
        cluster.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the cluster's directory")
    args = parser.parse_args(argv)
    cluster = LocalSlurm(args.dir.resolve())
    try:
        if args.action == "up":
            cluster.up()
            print(f"SLURM is up: node {NODE} {cluster.node_state()}")
            print(f"export SLURM_CONF={cluster.conf}")
        elif args.action == "down":
            cluster.down()
            print(f"SLURM in {cluster.root} is down")
        else:
            for key, value in cluster.status().items():
                print(f"{key}: {value}")
    except SlurmUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
