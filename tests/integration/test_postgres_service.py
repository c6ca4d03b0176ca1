"""``metalab postgres``: a real server started, stopped, killed and restarted.

Every test runs PostgreSQL's real binaries (those on PATH, or the pgserver wheel's),
never a mock. Run as root (CI), the server runs as the system user ``metalab-pg``,
which ``start --run-as`` makes when missing. Server directories live in a
world-readable temporary directory: the server's user must be able to enter it,
and pytest keeps its own temporary root private.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import pickle
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import metalab
from metalab.errors import ConfigError, ServiceError
from metalab.services import postgres
from metalab.store import FileStoreConfig, PostgresStore, create_store
from metalab.testing import run_cli, unavailable

pytestmark = pytest.mark.postgres

RUN_AS = "metalab-pg"
_CLI = (sys.executable, "-m", "metalab")
ROOT = os.geteuid() == 0


def _binaries_or_fail() -> None:
    if shutil.which("pg_ctl") or importlib.util.find_spec("pgserver"):
        return
    unavailable("no PostgreSQL binaries (pg_ctl on PATH, or the pgserver wheel)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A fresh server directory its server's user can reach; its server stopped after."""
    _binaries_or_fail()
    base = Path(tempfile.mkdtemp(prefix="metalab-pg-"))
    base.chmod(0o755)
    directory = base / "server"
    try:
        yield directory
    finally:
        if (directory / "pgdata").exists():
            with contextlib.suppress(ServiceError, ConfigError):
                postgres.stop(directory, mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def running_server() -> Iterator[postgres.ServerStatus]:
    """One server for the tests that only look at it (one start, not one per test)."""
    _binaries_or_fail()
    base = Path(tempfile.mkdtemp(prefix="metalab-pg-shared-"))
    base.chmod(0o755)
    try:
        yield _start(base / "server")
    finally:
        with contextlib.suppress(ServiceError, ConfigError):
            postgres.stop(base / "server", mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


def _start_args(directory: Path, port: int) -> list[str]:
    args = ["postgres", "start", "--data", str(directory), "--port", str(port)]
    return [*args, "--run-as", RUN_AS] if ROOT else args


def _start(directory: Path, port: int | None = None, **kwargs: object) -> postgres.ServerStatus:
    return postgres.start(
        directory,
        port=port or _free_port(),
        run_as=RUN_AS if ROOT else None,
        **kwargs,  # type: ignore[arg-type]
    )


@metalab.operation
def _double(params: dict[str, int], capture: metalab.Capture) -> None:
    capture.metric("y", params["x"] * 2)


_EXP = metalab.Experiment(
    name="service", version="1", operation=_double, params=metalab.grid(x=[1, 2, 3])
)


def test_start_write_stop_start_read(server_dir: Path, tmp_path: Path) -> None:
    port = _free_port()
    started = run_cli(*_start_args(server_dir, port), "--json")
    assert started.returncode == 0, started.stderr
    first = json.loads(started.stdout)
    assert first["running"] is True
    assert first["port"] == port
    locator = first["locator"]
    assert locator == (
        f"postgresql://metalab@127.0.0.1:{port}/metalab?passfile={server_dir / 'passfile'}"
    )
    assert "password" not in locator
    assert (server_dir / "passfile").stat().st_mode & 0o077 == 0
    store = f"{locator}&file_root={tmp_path / 'files'}"
    assert len(metalab.run(_EXP, store=store, progress=False).result()) == 3

    url = run_cli("postgres", "url", "--data", str(server_dir))
    assert (url.returncode, url.stdout) == (0, locator + "\n")
    shown = run_cli("postgres", "status", "--data", str(server_dir))
    assert shown.returncode == 0
    assert f"pid      {first['pid']}" in shown.stdout
    assert "state    running" in shown.stdout
    stopped = run_cli("postgres", "stop", "--data", str(server_dir))
    assert (stopped.returncode, stopped.stderr) == (0, "metalab: the server stopped\n")
    down = run_cli("postgres", "status", "--data", str(server_dir), "--json")
    assert down.returncode == 3
    assert json.loads(down.stdout)["running"] is False
    assert run_cli("postgres", "url", "--data", str(server_dir)).returncode == 1
    again = run_cli("postgres", "stop", "--data", str(server_dir))
    assert (again.returncode, again.stderr) == (0, "metalab: no server was running\n")
    logs = run_cli("postgres", "logs", "--data", str(server_dir), "-n", "2")
    assert logs.returncode == 0
    assert "database system is shut down" in logs.stdout
    assert len(logs.stdout.splitlines()) == 2

    # Started again without --port: the port, and the data, are those of before.
    restarted = run_cli(*_start_args(server_dir, port)[:4], "--json")
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout)["locator"] == locator
    with metalab.load_results(store, "service:1") as results:
        assert sorted(results.to_dataframe()["metrics.y"]) == [2, 4, 6]


def test_logs_follow_prints_what_the_server_logs_next(server_dir: Path) -> None:
    import psycopg  # noqa: PLC0415 -- optional (postgres extra)

    started = _start(server_dir)
    follower = subprocess.Popen(
        [*_CLI, "postgres", "logs", "--data", str(server_dir), "-n", "0", "--follow"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let it reach the end of the log before the server writes
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(
                host="127.0.0.1",
                port=started.port,
                user="nobody-here",
                dbname="metalab",
                password="wrong",
                connect_timeout=10,
            )
        assert follower.stdout is not None
        deadline = time.monotonic() + 30
        seen = ""
        while "nobody-here" not in seen and time.monotonic() < deadline:
            seen += follower.stdout.readline()
        assert 'password authentication failed for user "nobody-here"' in seen
    finally:
        follower.kill()
        follower.communicate()


def test_a_second_start_reports_the_running_server(server_dir: Path) -> None:
    first = _start(server_dir)
    # Connections over TCP always need the password, from any address.
    hba = [
        line.split()
        for line in (server_dir / "pgdata" / "pg_hba.conf").read_text().splitlines()
        if line.startswith("host")
    ]
    assert hba
    assert all(line[-1] == "scram-sha-256" for line in hba)
    assert {line[3] for line in hba} >= {"0.0.0.0/0", "::/0"}
    second = postgres.start(server_dir)
    assert second.running
    assert second.pid == first.pid
    assert second.notes == ("already running",)


def test_two_starts_at_once_share_one_server(server_dir: Path) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "metalab", *_start_args(server_dir, port), "--json"]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=180) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    reports = [json.loads(out) for out, _ in outputs]
    assert reports[0]["pid"] == reports[1]["pid"]
    assert sorted(r["notes"] == ["already running"] for r in reports) == [False, True]
    assert postgres.status(server_dir).running


def test_a_killed_server_starts_again_with_its_data(server_dir: Path, tmp_path: Path) -> None:
    first = _start(server_dir)
    assert first.pid is not None
    store = f"{first.locator}&file_root={tmp_path / 'files'}"
    metalab.run(_EXP, store=store, progress=False).result()
    os.kill(first.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while postgres.status(server_dir).running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not postgres.status(server_dir).running
    assert (server_dir / "pgdata" / "postmaster.pid").exists()  # left behind

    again = postgres.start(server_dir)
    assert again.running
    assert again.pid != first.pid
    assert any("postmaster.pid, left by a server that is gone" in n for n in again.notes)
    with metalab.load_results(store, "service:1") as results:
        assert len(results) == 3


def test_a_port_in_use_names_the_next_free_one(server_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        proc = run_cli(*_start_args(server_dir, port))
    assert proc.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use; the next free one is" in proc.stderr
    suggested = int(proc.stderr.rsplit("--port ", 1)[1])
    assert suggested > port
    assert not (server_dir / "pgdata").exists()  # refused before initdb


def test_bad_server_directories_are_refused_untouched(server_dir: Path) -> None:
    server_dir.parent.joinpath("a-file").write_text("mine")
    as_file = run_cli(*_start_args(server_dir.parent / "a-file", _free_port()))
    assert as_file.returncode == 2
    assert "is a file, not a directory" in as_file.stderr
    assert server_dir.parent.joinpath("a-file").read_text() == "mine"

    unwritable = run_cli(*_start_args(Path("/proc/metalab-server"), _free_port()))
    assert unwritable.returncode == 2
    assert "cannot make the server directory '/proc/metalab-server'" in unwritable.stderr

    foreign = server_dir.parent / "foreign"
    (foreign / "pgdata").mkdir(parents=True)
    (foreign / "pgdata" / "notes.txt").write_text("not a cluster")
    refused = run_cli(*_start_args(foreign, _free_port()))
    assert refused.returncode == 2
    assert "is not empty and holds no PostgreSQL cluster; nothing was changed" in refused.stderr
    assert [p.name for p in (foreign / "pgdata").iterdir()] == ["notes.txt"]

    itself = server_dir.parent / "cluster"
    itself.mkdir()
    (itself / "PG_VERSION").write_text("15\n")
    direct = run_cli(*_start_args(itself, _free_port()))
    assert direct.returncode == 2
    assert "is a PostgreSQL data directory itself" in direct.stderr


def _snapshot(directory: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every entry under ``directory``: its mode, size, mtime and content's digest."""
    found: dict[str, tuple[int, int, int, str]] = {}
    for path in [directory, *sorted(directory.rglob("*"))]:
        info = path.lstat()
        digest = ""
        if path.is_file() and not path.is_symlink():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        found[str(path.relative_to(directory))] = (
            info.st_mode,
            info.st_size,
            info.st_mtime_ns,
            digest,
        )
    return found


def test_a_cluster_of_another_major_version_is_left_alone(server_dir: Path) -> None:
    _start(server_dir)
    postgres.stop(server_dir)
    # What a cluster made by PostgreSQL 9.6 says of itself; the binaries here are newer.
    (server_dir / "pgdata" / "PG_VERSION").write_text("9.6\n")
    # As a crash would leave it: a stale pid file, which is not removed either.
    (server_dir / "pgdata" / "postmaster.pid").write_text("999999999\n")
    before = _snapshot(server_dir)
    proc = run_cli(*_start_args(server_dir, _free_port()))
    assert proc.returncode == 2, proc.stderr
    assert f"'{server_dir / 'pgdata'}' holds a PostgreSQL 9.6 cluster, and the binaries" in (
        proc.stderr
    )
    assert "pass --bin-dir with PostgreSQL 9.6's binaries" in proc.stderr
    assert "the cluster is left as it is" in proc.stderr
    assert _snapshot(server_dir) == before
    assert not postgres.status(server_dir).running


def test_the_pgserver_wheel_serves_when_path_has_no_postgres(
    server_dir: Path, tmp_path: Path
) -> None:
    if importlib.util.find_spec("pgserver") is None:
        pytest.skip("the pgserver wheel is not installed")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # python only
    proc = subprocess.run(
        [sys.executable, "-m", "metalab", *_start_args(server_dir, _free_port()), "--json"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    service = json.loads((server_dir / "service.json").read_text())
    assert "pgserver" in service["bin_dir"]
    store = f"{report['locator']}&file_root={tmp_path / 'files'}"
    assert len(metalab.run(_EXP, store=store, progress=False).result()) == 3


@pytest.mark.skipif(not ROOT, reason="the root rules apply to root")
def test_root_needs_run_as(server_dir: Path) -> None:
    proc = run_cli("postgres", "start", "--data", str(server_dir), "--port", str(_free_port()))
    assert proc.returncode == 2
    assert "PostgreSQL does not run as root: pass --run-as USER" in proc.stderr
    assert not (server_dir / "pgdata").exists()


def _as_user(user: str | None, home: Path, call: Callable[[], object]) -> object:
    """Run ``call`` in a forked child as ``user`` (``None``: as this user), with ``home``.

    A fork, not a new interpreter: run as root, this interpreter may live where a
    plain user cannot execute it (``/root/.pyenv``), while the modules it loaded
    stay usable. The child sends back what ``call`` returned, or its error.
    """
    import psycopg  # noqa: PLC0415 -- loaded before the child loses root
    import psycopg.sql  # noqa: F401, PLC0415

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            os.close(read)
            if user is not None:
                entry = pwd.getpwnam(user)
                os.setgroups([])
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)
            os.environ.pop(postgres.DATA_ENV, None)
            os.environ.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"))
            result: object = ("ok", call())
        except BaseException as exc:  # noqa: BLE001 -- sent to the parent, which raises
            result = ("error", f"{type(exc).__name__}: {exc}")
            code = 1
        with os.fdopen(write, "wb") as pipe:
            pipe.write(pickle.dumps(result))
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        kind, value = pickle.loads(pipe.read())
    os.waitpid(pid, 0)
    if kind == "error":
        raise AssertionError(f"in the child as {user or 'this user'}: {value}")
    return value


def test_as_a_plain_user_in_its_default_directory(server_dir: Path) -> None:
    """No data directory, no run_as: the user's data directory, the server as the user."""
    home = server_dir.parent / "home"
    home.mkdir()
    user = None
    if ROOT:  # become a plain user: the one the other tests run their servers as
        _start(server_dir)  # makes the user
        postgres.stop(server_dir)
        user = RUN_AS
        shutil.chown(home, RUN_AS, RUN_AS)
    port = _free_port()
    report = _as_user(user, home, lambda: postgres.start(port=port).to_dict())
    try:
        assert isinstance(report, dict)
        assert report["data_dir"] == str(home / "data" / "metalab" / "postgres")
        assert report["running"]
        assert report["notes"][-1].startswith("initialised a PostgreSQL")
        store = create_store(f"{report['locator']}&file_root={home / 'files'}")
        with store:
            assert store.list_run_records() == []
    finally:
        assert _as_user(user, home, postgres.stop) is True


def test_run_as_another_user_needs_root(server_dir: Path) -> None:
    home = server_dir.parent / "home"
    home.mkdir()
    user = None
    if ROOT:
        _start(server_dir)  # makes the plain user
        postgres.stop(server_dir)
        user = RUN_AS
    port = _free_port()
    with pytest.raises(AssertionError, match="ConfigError: --run-as 'nobody' needs root"):
        _as_user(user, home, lambda: postgres.start(home / "pg", port=port, run_as="nobody"))
    assert not (home / "pg").exists()  # refused before anything was made


def test_from_files_to_postgres_in_two_commands(server_dir: Path, tmp_path: Path) -> None:
    """The README's recipe: files written first, then a server, then an index of them."""
    files = tmp_path / "experiments"
    metalab.run(_EXP, store=str(files), progress=False).result()
    _start(server_dir)
    url = run_cli("postgres", "url", "--data", str(server_dir)).stdout.strip()
    store = f"{url}&file_root={files}"
    rebuilt = run_cli("store", "rebuild-index", store, "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    with metalab.load_results(store, "service:1") as results:
        assert isinstance(results.store, PostgresStore)
        assert sorted(r.metrics["y"] for r in results.filter(where="metrics.y >= 4")) == [4, 6]


def test_the_dashboard_and_the_runner_take_the_printed_locator(
    server_dir: Path, tmp_path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette 1.x's TestClient asks for httpx2
        from starlette.testclient import TestClient  # noqa: PLC0415 -- optional (ui extra)
    from metalab.ui import create_app  # noqa: PLC0415 -- optional (ui extra)

    started = _start(server_dir)
    store = f"{started.locator}&file_root={tmp_path / 'files'}"
    metalab.run(_EXP, store=store, progress=False).result()
    with TestClient(create_app(store), base_url="http://127.0.0.1:8765") as client:
        answer = client.get("/api/experiments")
    assert answer.status_code == 200, answer.text
    assert "service:1" in answer.text


def test_status_json_reports_every_field_of_a_running_server(
    running_server: postgres.ServerStatus,
) -> None:
    directory = running_server.data_dir
    proc = run_cli("postgres", "status", "--data", str(directory), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    pid_file = (directory / "pgdata" / "postmaster.pid").read_text().splitlines()
    assert report["pid"] == int(pid_file[0]) == running_server.pid
    major = (directory / "pgdata" / "PG_VERSION").read_text().strip()
    assert re.fullmatch(rf"{major}\.\d+", report["version"]), report["version"]
    assert report["data_dir"] == str(directory)
    assert report["locator"] == running_server.locator
    assert report["locator"].endswith(f"?passfile={directory / 'passfile'}")
    assert 1_000_000 < report["size_bytes"] < 1_000_000_000  # an empty cluster: some 40 MB
    assert report["log_file"] == str(directory / "server.log")
    assert (report["running"], report["initialised"]) == (True, True)
    assert (report["host"], report["port"]) == ("127.0.0.1", running_server.port)


def test_the_data_environment_variable_is_the_default_directory(
    running_server: postgres.ServerStatus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(postgres.DATA_ENV, str(running_server.data_dir))
    url = run_cli("postgres", "url")  # no --data
    assert (url.returncode, url.stdout) == (0, f"{running_server.locator}\n"), url.stderr
    shown = run_cli("postgres", "status", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["data_dir"] == str(running_server.data_dir)
    monkeypatch.setenv(postgres.DATA_ENV, "~/elsewhere")
    assert postgres.default_data_dir() == Path.home() / "elsewhere"


def test_the_readme_from_filestore_takes_the_printed_locator(
    running_server: postgres.ServerStatus, tmp_path: Path
) -> None:
    """README: ``PostgresStore.from_filestore(url, FileStoreConfig(root=DIR).connect())``."""
    files = tmp_path / "experiments"
    metalab.run(_EXP, store=str(files), progress=False).result()
    url = run_cli("postgres", "url", "--data", str(running_server.data_dir)).stdout.strip()
    assert url == running_server.locator  # no file_root: from_filestore adds its root
    with PostgresStore.from_filestore(url, FileStoreConfig(root=str(files)).connect()) as store:
        assert store.config.file_root == str(files)
        assert sorted(r.metrics["y"] for r in store.list_run_records()) == [2, 4, 6]


def test_stop_immediate_from_the_cli(server_dir: Path) -> None:
    first = _start(server_dir)
    stopped = run_cli("postgres", "stop", "--data", str(server_dir), "--immediate")
    assert (stopped.returncode, stopped.stderr) == (0, "metalab: the server stopped\n")
    assert "received immediate shutdown request" in (server_dir / "server.log").read_text()
    down = run_cli("postgres", "status", "--data", str(server_dir), "--json")
    assert down.returncode == 3, down.stderr
    report = json.loads(down.stdout)
    assert (report["running"], report["pid"], report["initialised"]) == (False, None, True)
    # No clean shutdown: the next start recovers, with the same locator.
    again = postgres.start(server_dir)
    assert again.running
    assert again.locator == first.locator
    assert "automatic recovery in progress" in (server_dir / "server.log").read_text()


@pytest.mark.skipif(not ROOT, reason="the root rules apply to root")
def test_binaries_the_server_user_cannot_reach_are_refused(server_dir: Path) -> None:
    """A bin directory behind a directory of mode 0700 (a venv under /root, say)."""
    on_path = shutil.which("pg_ctl")
    spec = importlib.util.find_spec("pgserver")
    if on_path is not None:
        real = Path(os.path.realpath(on_path)).parent
    else:
        assert spec is not None
        assert spec.origin is not None
        real = Path(spec.origin).parent / "pginstall" / "bin"
    private = server_dir.parent / "private"
    private.mkdir(mode=0o700)
    bins = private / "bin"
    bins.mkdir()
    for name in ("pg_ctl", "postgres", "initdb"):
        (bins / name).symlink_to(real / name)
    proc = run_cli(*_start_args(server_dir, _free_port()), "--bin-dir", str(bins))
    assert proc.returncode == 2, proc.stderr
    flat = " ".join(proc.stderr.split())
    assert (
        f"the server's user '{RUN_AS}' cannot enter '{private}' (mode 700), on the way to "
        f"PostgreSQL's binaries in '{bins}'"
    ) in flat
    assert "pass --bin-dir with binaries it can reach" in flat
    assert not (server_dir / "pgdata").exists()  # refused before initdb
