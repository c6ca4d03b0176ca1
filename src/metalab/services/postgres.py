"""A PostgreSQL server of your own, for the PostgresStore: ``metalab postgres``.

:func:`start` makes a server directory on first use, starts PostgreSQL in the
background, waits until it answers, makes the database ``metalab`` with a login role
of the same name, and returns the locator to use. :func:`stop`, :func:`status`,
:func:`logs` and :func:`locator` do what they say. The server directory holds::

    DIR/pgdata/          the database cluster (initdb's data directory)
    DIR/run/             the server's Unix socket (private to its user)
    DIR/server.log       the server's log
    DIR/passfile         the role's password, in libpq's passfile format (mode 0600)
    DIR/service.json     how it was started: binaries, host, port, user
    DIR/lock             held while a command changes the server

``DIR`` is ``--data``, else ``$METALAB_POSTGRES_DATA``, else the user's data directory
(``~/.local/share/metalab/postgres``; ``/var/lib/metalab/postgres`` for root).

The locator names the password file, never the password:
``postgresql://metalab@127.0.0.1:5432/metalab?passfile=DIR/passfile`` (append
``&file_root=...`` for a store). Connections over TCP need that password
(SCRAM); the Unix socket, in a directory only the server's user can enter, lets
that user in as the administrator ``postgres``.

Binaries: ``--bin-dir``, else ``pg_ctl`` on ``PATH``, else ``pg_config --bindir``,
else those of the ``pgserver`` wheel (``metalab[server]``). PostgreSQL refuses to
run as root; run as root, :func:`start` needs ``run_as`` (``--run-as USER``), and
makes that system user when it does not exist; the server directory and the
binaries must be reachable by that user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.util
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import quote

from metalab._optional import require
from metalab.errors import ConfigError, ServiceError
from metalab.store.locator import redact

__all__ = [
    "DATABASE",
    "DATA_ENV",
    "DEFAULT_PORT",
    "ROLE",
    "ServerStatus",
    "StopMode",
    "default_data_dir",
    "locator",
    "logs",
    "start",
    "status",
    "stop",
]

DATA_ENV: Final = "METALAB_POSTGRES_DATA"
"""The environment variable naming the server directory."""
DEFAULT_PORT: Final = 5432
ROLE: Final = "metalab"
"""The login role the locator names (owner of :data:`DATABASE`, not a superuser)."""
DATABASE: Final = "metalab"
_ADMIN: Final = "postgres"
_STATE: Final = "service.json"
_SOCKET_LIMIT: Final = 107  # sun_path, less its NUL
_PORT_TRIES: Final = 100
# A URI, or libpq's key=value form: a connection string given where a directory goes.
_LOOKS_LIKE_LOCATOR: Final = re.compile(r"://|\b(?:password|host|dbname|user|port)\s*=")

StopMode = Literal["smart", "fast", "immediate"]


@dataclass(frozen=True)
class ServerStatus:
    """What :func:`status` (and :func:`start`) report.

    Attributes:
        data_dir: The server directory.
        initialised: Whether it holds a database cluster.
        running: Whether the server answers.
        pid: The server's process id, when running.
        version: The PostgreSQL version (``"15.4"``), when known.
        locator: The locator to connect with, when initialised.
        host: The address it listens on.
        port: Its TCP port.
        size_bytes: The size of the server directory.
        log_file: Where the server logs.
        notes: What :func:`start` did on the way (a stale pid file removed, ...).
    """

    data_dir: Path
    initialised: bool
    running: bool
    pid: int | None
    version: str | None
    locator: str | None
    host: str | None
    port: int | None
    size_bytes: int
    log_file: Path
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """The status as JSON-ready values."""
        data = dataclasses.asdict(self)
        data["data_dir"] = str(self.data_dir)
        data["log_file"] = str(self.log_file)
        data["notes"] = list(self.notes)
        return data


@dataclass(frozen=True)
class _Service:
    """``service.json``: how the server was last started."""

    bin_dir: str
    host: str
    port: int
    run_as: str | None

    @classmethod
    def read(cls, path: Path) -> _Service | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(str(data["bin_dir"]), str(data["host"]), int(data["port"]), data["run_as"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ServiceError(
                f"{path} cannot be read ({exc}); remove it and start again"
            ) from None

    def write(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


class _Layout:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.pgdata = directory / "pgdata"
        self.run = directory / "run"
        self.log = directory / "server.log"
        self.passfile = directory / "passfile"
        self.state = directory / _STATE
        self.lock = directory / "lock"


def default_data_dir() -> Path:
    """The server directory when none is given: ``$METALAB_POSTGRES_DATA`` or the default."""
    configured = os.environ.get(DATA_ENV)
    if configured:
        return Path(configured).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/metalab/postgres")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "metalab" / "postgres"


def _resolve(data_dir: str | os.PathLike[str] | None) -> _Layout:
    if data_dir is not None and _LOOKS_LIKE_LOCATOR.search(os.fspath(data_dir)):
        raise ConfigError(
            f"the server directory must be a directory, not a locator: "
            f"{redact(os.fspath(data_dir))!r} (the locator is what 'start' prints)"
        )
    directory = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    directory = directory.absolute()
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{str(directory)!r} is a file, not a directory for the server")
    if (directory / "PG_VERSION").exists():
        raise ConfigError(
            f"{str(directory)!r} is a PostgreSQL data directory itself; metalab keeps its "
            "cluster in DIR/pgdata beside its socket, log and password: pass another "
            "directory (a new one, or one made by 'metalab postgres start')"
        )
    return _Layout(directory)


# -- binaries -----------------------------------------------------------------------


def _find_bin_dir(bin_dir: str | os.PathLike[str] | None) -> Path:
    """The directory of ``pg_ctl``, ``initdb`` and ``postgres`` (see the module doc)."""
    if bin_dir is not None:
        found = Path(bin_dir)
        if not (found / "pg_ctl").is_file():
            raise ConfigError(f"--bin-dir {str(found)!r} holds no pg_ctl")
        return found
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        return Path(os.path.realpath(on_path)).parent
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=30
        )
        candidate = Path(out.stdout.strip())
        if out.returncode == 0 and (candidate / "pg_ctl").is_file():
            return candidate
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "pginstall" / "bin"
        if (candidate / "pg_ctl").is_file():
            return candidate
    require("pgserver", extra="server", feature="metalab postgres (PostgreSQL's binaries)")
    raise ServiceError(
        "no PostgreSQL binaries: none on PATH, none from pg_config, and the pgserver "
        "wheel holds none; pass --bin-dir or pip install 'metalab[server]'"
    )


def _major(version: str) -> str:
    return version.split(".", maxsplit=1)[0]


def _binary_version(bin_dir: Path) -> str:
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    found = re.search(r"(\d+(?:\.\d+)?)", out.stdout)
    if out.returncode != 0 or found is None:
        raise ServiceError(f"{bin_dir / 'postgres'} --version failed: {out.stderr.strip()}")
    return found.group(1)


# -- users --------------------------------------------------------------------------


def _server_user(run_as: str | None) -> pwd.struct_passwd | None:
    """The user the server runs as (``None``: this process's user)."""
    if os.geteuid() != 0:
        if run_as is not None and run_as != pwd.getpwuid(os.geteuid()).pw_name:
            raise ConfigError(f"--run-as {run_as!r} needs root; without it the server runs as you")
        return None
    if run_as is None:
        raise ConfigError(
            "PostgreSQL does not run as root: pass --run-as USER (run_as=) to run the "
            "server as that system user (made if it does not exist), e.g. --run-as metalab"
        )
    try:
        return pwd.getpwnam(run_as)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise ServiceError(f"there is no user {run_as!r}, and no useradd to make one")
    made = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", run_as],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if made.returncode != 0:
        raise ServiceError(f"cannot make the system user {run_as!r}: {made.stderr.strip()}")
    return pwd.getpwnam(run_as)


def _barrier(directories: Iterable[Path], user: pwd.struct_passwd) -> Path | None:
    """The first of ``directories`` that ``user`` cannot enter (no ``x`` for it), if any."""
    for directory in directories:
        info = directory.stat()
        if info.st_uid == user.pw_uid:
            allowed = info.st_mode & 0o100
        elif info.st_gid == user.pw_gid:
            allowed = info.st_mode & 0o010
        else:
            allowed = info.st_mode & 0o001
        if not allowed:
            return directory
    return None


def _mode(path: Path) -> str:
    return f"{path.stat().st_mode & 0o777:o}"


def _check_reachable(directory: Path, user: pwd.struct_passwd) -> None:
    """Refuse a directory whose parents the server's user cannot enter."""
    parent = _barrier(directory.parents, user)
    if parent is not None:
        raise ConfigError(
            f"the server's user {user.pw_name!r} cannot enter {str(parent)!r} (mode "
            f"{_mode(parent)}), a parent of {str(directory)!r}: choose a "
            "--data directory it can reach"
        )


def _check_bins_reachable(bins: Path, user: pwd.struct_passwd) -> None:
    """Refuse binaries the server's user cannot run: a directory on their way it cannot enter.

    Both the path as found and the real one (past symlinks) are walked: the
    server's user runs ``pg_ctl`` by the one, and the kernel follows the other.
    """
    for path in dict.fromkeys((bins, Path(os.path.realpath(bins)))):
        blocked = _barrier((*reversed(path.parents), path), user)
        if blocked is not None:
            raise ConfigError(
                f"the server's user {user.pw_name!r} cannot enter {str(blocked)!r} (mode "
                f"{_mode(blocked)}), on the way to PostgreSQL's binaries in {str(bins)!r} "
                "(the pgserver wheel of a virtual environment under /root, say): pass "
                "--bin-dir with binaries it can reach (a system PostgreSQL's, such as "
                "/usr/lib/postgresql/16/bin), install metalab[server] where it can reach "
                f"it, or let it in (chmod o+x {blocked})"
            )


def _run(
    args: list[str], user: pwd.struct_passwd | None, *, timeout: float
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    if user is not None:
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env,
        user=None if user is None else user.pw_uid,
        group=None if user is None else user.pw_gid,
        extra_groups=None if user is None else [],
        cwd="/",
    )


# -- locking, pid files, ports ---------------------------------------------------------


@contextlib.contextmanager
def _locked(layout: _Layout, timeout: float) -> Iterator[None]:
    """Hold ``DIR/lock`` (two starts at once take turns; the second finds it running)."""
    try:
        layout.dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot make the server directory {str(layout.dir)!r}: {exc}") from None
    if not os.access(layout.dir, os.W_OK | os.X_OK):
        raise ConfigError(f"the server directory {str(layout.dir)!r} is not writable")
    with layout.lock.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"another metalab postgres command holds {layout.lock} for over "
                        f"{timeout:g} s"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid(layout: _Layout) -> int | None:
    """The pid in ``postmaster.pid`` when that process is a live postgres, else ``None``."""
    try:
        first = (layout.pgdata / "postmaster.pid").read_text().splitlines()[0]
        pid = int(first)
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return pid  # no /proc: trust the live pid
    return pid if command.endswith((b"postgres", b"postmaster")) else None


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _next_free(host: str, port: int) -> int | None:
    for candidate in range(port + 1, min(port + _PORT_TRIES, 65536)):
        if _port_free(host, candidate):
            return candidate
    return None


# -- the commands ---------------------------------------------------------------------


def start(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    port: int | None = None,
    host: str | None = None,
    bin_dir: str | os.PathLike[str] | None = None,
    run_as: str | None = None,
    timeout: float = 60.0,
) -> ServerStatus:
    """Start the server of ``data_dir`` (made on first use); return its status.

    Idempotent: a running server is reported as it is (``port``, ``host`` and
    ``bin_dir`` apply when it starts). A ``postmaster.pid`` left by a server that
    died is removed first, and said so in the status's notes.

    Args:
        data_dir: The server directory (see :func:`default_data_dir`).
        port: TCP port (default: the last one used, else 5432).
        host: Address to listen on (default: the last one used, else 127.0.0.1).
        bin_dir: Directory of PostgreSQL's binaries (default: found, see the module).
        run_as: The system user the server runs as; required (and only allowed)
            when running as root.
        timeout: Seconds to wait for the lock and for the server to answer.

    Raises:
        ConfigError: A bad directory (a file, not writable, from another major
            version of PostgreSQL, unreachable by ``run_as``), binaries ``run_as``
            cannot reach, a port in use (with the next free one), root without
            ``run_as``.
        ServiceError: initdb or the server failed (the message quotes its log).
        MissingDependencyError: No binaries anywhere, and no pgserver.
    """
    layout = _resolve(data_dir)
    previous = _Service.read(layout.state)
    # Before anything is made: root without a user to run as is refused.
    user = _server_user(run_as if run_as is not None else _previous_user(previous))
    with _locked(layout, timeout):
        notes: list[str] = []
        previous = _Service.read(layout.state)  # again: another start may have finished
        if _pid(layout) is not None:
            return _status(layout, notes=("already running",))
        bins = _find_bin_dir(bin_dir if bin_dir is not None else _previous_bins(previous))
        version = _binary_version(bins)
        _check_version(layout, version, bins)  # before anything is changed
        stale = [
            path
            for path in (layout.pgdata / "postmaster.pid", *layout.run.glob(".s.PGSQL.*.lock"))
            if path.exists()
        ]
        for path in stale:
            path.unlink()
            notes.append(f"removed {path}, left by a server that is gone")
        chosen_host = host or (previous.host if previous else "127.0.0.1")
        chosen_port = port or (previous.port if previous else DEFAULT_PORT)
        if not _port_free(chosen_host, chosen_port):
            free = _next_free(chosen_host, chosen_port)
            hint = f"; the next free one is {free}: --port {free}" if free else ""
            raise ConfigError(f"port {chosen_port} on {chosen_host} is in use{hint}")
        socket_path = layout.run / f".s.PGSQL.{chosen_port}"
        if len(str(socket_path)) > _SOCKET_LIMIT:
            raise ConfigError(
                f"the server's socket path {str(socket_path)!r} would be longer than "
                f"{_SOCKET_LIMIT} characters; choose a shorter --data directory"
            )
        if user is not None:
            _check_reachable(layout.dir, user)
            _check_bins_reachable(bins, user)
        if not (layout.pgdata / "PG_VERSION").exists():
            _initialise(layout, bins, user, timeout)
            notes.append(f"initialised a PostgreSQL {version} cluster in {layout.pgdata}")
        _prepare_run_dir(layout, user)
        _Service(str(bins), chosen_host, chosen_port, None if user is None else user.pw_name).write(
            layout.state
        )
        command = [
            str(bins / "pg_ctl"),
            "start",
            "--wait",
            f"--timeout={max(1, round(timeout))}",
            "-D",
            str(layout.pgdata),
            "-l",
            str(layout.log),
            "-o",
            f"-p {chosen_port} -h {chosen_host} -k {layout.run}",
        ]
        deadline = time.monotonic() + min(timeout, 15)
        started = _run(command, user, timeout=timeout + 10)
        # The processes of a killed server take a moment to go; until then the new
        # one finds their shared memory in use and stops at once.
        while started.returncode != 0 and stale and time.monotonic() < deadline:
            time.sleep(0.5)
            started = _run(command, user, timeout=timeout + 10)
        if started.returncode != 0:
            raise ServiceError(
                f"PostgreSQL did not start: {started.stderr.strip() or started.stdout.strip()}"
                f"\n{_tail_text(layout.log, 15)}"
            )
        _ensure_database(layout, chosen_port, timeout)
        return _status(layout, notes=tuple(notes))


def _previous_user(previous: _Service | None) -> str | None:
    return None if previous is None or os.geteuid() != 0 else previous.run_as


def _previous_bins(previous: _Service | None) -> str | None:
    if previous is None or not (Path(previous.bin_dir) / "pg_ctl").is_file():
        return None
    return previous.bin_dir


def _check_version(layout: _Layout, version: str, bins: Path) -> None:
    marker = layout.pgdata / "PG_VERSION"
    if marker.exists():
        cluster = marker.read_text().strip()
        if _major(cluster) != _major(version):
            raise ConfigError(
                f"{str(layout.pgdata)!r} holds a PostgreSQL {cluster} cluster, and the "
                f"binaries in {bins} are PostgreSQL {version}: pass --bin-dir with "
                f"PostgreSQL {cluster}'s binaries, or another --data directory (the "
                "cluster is left as it is)"
            )
    elif layout.pgdata.exists() and any(layout.pgdata.iterdir()):
        raise ConfigError(
            f"{str(layout.pgdata)!r} is not empty and holds no PostgreSQL cluster; "
            "nothing was changed: move it away or choose another --data directory"
        )


def _initialise(
    layout: _Layout, bins: Path, user: pwd.struct_passwd | None, timeout: float
) -> None:
    password = secrets.token_urlsafe(24)
    layout.pgdata.mkdir(mode=0o700, exist_ok=True)
    pwfile = layout.dir / ".initdb-password"
    # The administrator's password is never used (the socket lets its user in); initdb
    # wants one for SCRAM on TCP, and gets a random one.
    pwfile.write_text(secrets.token_urlsafe(24) + "\n")
    if user is not None:
        for path in (layout.dir, layout.pgdata, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
    try:
        made = _run(
            [
                str(bins / "initdb"),
                "-D",
                str(layout.pgdata),
                "-U",
                _ADMIN,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],
            user,
            timeout=max(timeout, 120),
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if made.returncode != 0:
        shutil.rmtree(layout.pgdata, ignore_errors=True)  # ours, and half made
        raise ServiceError(f"initdb failed: {made.stderr.strip() or made.stdout.strip()}")
    # initdb lets in the loopback addresses only; a server started with --host on
    # another address serves other machines too, always with the password.
    with (layout.pgdata / "pg_hba.conf").open("a") as hba:
        hba.write(
            "\n# metalab postgres: any address (the listening address decides), by password\n"
            "host    all    all    0.0.0.0/0    scram-sha-256\n"
            "host    all    all    ::/0         scram-sha-256\n"
        )
    _write_passfile(layout, password)


def _write_passfile(layout: _Layout, password: str) -> None:
    tmp = layout.passfile.with_name(".passfile.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"*:*:{DATABASE}:{ROLE}:{password}\n")
    tmp.replace(layout.passfile)


def _password(layout: _Layout) -> str:
    try:
        line = layout.passfile.read_text().splitlines()[0]
    except (OSError, IndexError):
        raise ServiceError(
            f"{layout.passfile} is missing: the role's password is lost; stop the server, "
            "and start it again to set a new one"
        ) from None
    return line.split(":", 4)[4]


def _prepare_run_dir(layout: _Layout, user: pwd.struct_passwd | None) -> None:
    layout.run.mkdir(mode=0o700, exist_ok=True)
    layout.run.chmod(0o700)
    if user is not None:
        os.chown(layout.run, user.pw_uid, user.pw_gid)
        if not layout.log.exists():
            layout.log.touch()
        os.chown(layout.log, user.pw_uid, user.pw_gid)


def _ensure_database(layout: _Layout, port: int, timeout: float) -> None:
    """Make the role and database ``metalab`` if missing; set the role's password."""
    require("psycopg", extra="postgres", feature="metalab postgres")
    import psycopg  # noqa: PLC0415 -- optional (postgres extra), required above
    from psycopg import sql  # noqa: PLC0415 -- optional (postgres extra), required above

    if not layout.passfile.exists():
        _write_passfile(layout, secrets.token_urlsafe(24))
    password = _password(layout)
    with psycopg.connect(
        host=str(layout.run),
        port=port,
        user=_ADMIN,
        dbname="postgres",
        autocommit=True,
        connect_timeout=max(1, round(timeout)),
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(password)
            )
        )
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            return
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(DATABASE), sql.Identifier(ROLE)
            )
        )


def stop(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    mode: StopMode = "fast",
    timeout: float = 60.0,
) -> bool:
    """Stop the server; return whether one was running.

    Args:
        data_dir: The server directory.
        mode: ``"smart"`` (wait for clients), ``"fast"`` (disconnect them, the
            default) or ``"immediate"`` (no clean shutdown; recovery on next start).
        timeout: Seconds to wait for it to stop.

    Raises:
        ServiceError: The server did not stop in time.
    """
    layout = _resolve(data_dir)
    if not layout.dir.is_dir():
        return False
    with _locked(layout, timeout):
        pid = _pid(layout)
        if pid is None:
            return False
        previous = _Service.read(layout.state)
        user = None
        if previous is not None and previous.run_as is not None and os.geteuid() == 0:
            user = pwd.getpwnam(previous.run_as)
        bins = _find_bin_dir(_previous_bins(previous))
        stopped = _run(
            [
                str(bins / "pg_ctl"),
                "stop",
                "--wait",
                f"--timeout={max(1, round(timeout))}",
                "-m",
                mode,
                "-D",
                str(layout.pgdata),
            ],
            user,
            timeout=timeout + 10,
        )
        if stopped.returncode != 0 and _pid(layout) is not None:
            raise ServiceError(
                f"the server (pid {pid}) did not stop: {stopped.stderr.strip()}; try "
                "--immediate, or kill it"
            )
        return True


def status(data_dir: str | os.PathLike[str] | None = None) -> ServerStatus:
    """Report the server of ``data_dir`` (running or not); never changes anything."""
    return _status(_resolve(data_dir))


def _status(layout: _Layout, notes: tuple[str, ...] = ()) -> ServerStatus:
    service = _Service.read(layout.state) if layout.dir.is_dir() else None
    initialised = (layout.pgdata / "PG_VERSION").exists()
    pid = _pid(layout)
    version: str | None = None
    if service is not None and (Path(service.bin_dir) / "postgres").is_file():
        with contextlib.suppress(ServiceError, OSError, subprocess.SubprocessError):
            version = _binary_version(Path(service.bin_dir))
    if version is None and initialised:
        version = (layout.pgdata / "PG_VERSION").read_text().strip()
    return ServerStatus(
        data_dir=layout.dir,
        initialised=initialised,
        running=pid is not None,
        pid=pid,
        version=version,
        locator=_locator(layout, service) if initialised and service else None,
        host=service.host if service else None,
        port=service.port if service else None,
        size_bytes=_size(layout.dir),
        log_file=layout.log,
        notes=notes,
    )


def _locator(layout: _Layout, service: _Service) -> str:
    host = f"[{service.host}]" if ":" in service.host else service.host
    if host in ("0.0.0.0", "[::]", "*", ""):
        host = socket.getfqdn()
    passfile = quote(str(layout.passfile), safe="/")
    return f"postgresql://{ROLE}@{host}:{service.port}/{DATABASE}?passfile={passfile}"


def locator(data_dir: str | os.PathLike[str] | None = None) -> str:
    """The locator of the running server, for ``PostgresStore`` (add ``&file_root=...``).

    Raises:
        ServiceError: No server runs from ``data_dir``.
    """
    found = status(data_dir)
    if not found.running or found.locator is None:
        raise ServiceError(
            f"no server runs from {found.data_dir}: start one with 'metalab postgres start'"
        )
    return found.locator


def logs(data_dir: str | os.PathLike[str] | None = None, lines: int = 50) -> list[str]:
    """The last ``lines`` lines of the server's log (empty when it has none)."""
    return _tail(_resolve(data_dir).log, lines)


def _tail(path: Path, lines: int) -> list[str]:
    if lines <= 0:
        return []
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            chunk = min(size, max(4096, lines * 200))
            while True:
                handle.seek(size - chunk)
                found = handle.read(chunk).decode("utf-8", "replace").splitlines()
                if len(found) > lines or chunk == size:
                    return found[-lines:]
                chunk = min(size, chunk * 4)
    except FileNotFoundError:
        return []


def _tail_text(path: Path, lines: int) -> str:
    found = _tail(path, lines)
    return f"the end of {path}:\n" + "\n".join(found) if found else f"({path} is empty)"


def _size(directory: Path) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total
