"""A real PostgreSQL server for test suites, as a pytest plugin.

Register it in a ``conftest.py`` with ``pytest_plugins = ["metalab.testing.postgres"]``.
The server comes from, in order:

1. ``$METALAB_TEST_POSTGRES_URL``, any reachable server;
2. testcontainers' ``PostgresContainer``, when a Docker engine answers;
3. an embedded, throwaway server from the ``pgserver`` wheel, in a temporary
   directory (no Docker, no root, no system PostgreSQL needed).

When none can be had, a test that needs it is skipped with the reason, except under
``CI=true``, where it fails: a CI run never passes by skipping its database tests.

Fixtures: ``postgres_server`` (session: URL, origin and version), ``postgres_url``
(session: the URL), ``postgres_schema`` (a fresh schema name per test, dropped on
teardown), ``postgres_config`` (an unscoped store config on that schema, with its
files in the test's ``tmp_path``), ``restartable_postgres`` (a private embedded server a test may stop and
start), and ``postgres_collated`` / ``postgres_collated_config`` (a database whose
default collation is not code-point order, see :func:`postgres_collated`). Tests using them get the ``postgres`` marker automatically, and the session
header shows which server runs. psycopg, pgserver and testcontainers are imported only
when a fixture needs them, so suites without the ``postgres`` extra still load this
plugin.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import pytest

from metalab import _codec
from metalab.records import DerivedMetrics, RunRecord
from metalab.store import PostgresStoreConfig
from metalab.store.locator import redact
from metalab.testing import comparable, unavailable

if TYPE_CHECKING:
    import psycopg
    from pgserver.postgres_server import PostgresServer as PgServer

__all__ = [
    "ENV_URL",
    "CollatedDatabase",
    "PostgresServerInfo",
    "PostgresStoreBackdoor",
    "RestartablePostgres",
    "login_role",
    "postgres_collated",
    "postgres_collated_config",
    "postgres_config",
    "postgres_schema",
    "postgres_server",
    "postgres_url",
    "restartable_postgres",
]

ENV_URL: Final = "METALAB_TEST_POSTGRES_URL"
"""The environment variable naming a server to test against."""

_IMAGE: Final = "postgres:16-alpine"
_DOCKER_SOCKET: Final = Path("/var/run/docker.sock")
_FIXTURES: Final = frozenset(
    {
        "postgres_server",
        "postgres_url",
        "postgres_schema",
        "postgres_config",
        "restartable_postgres",
        "postgres_collated",
        "postgres_collated_config",
    }
)
#: The ICU locale and the OS (libc) locale of the collated database, in that order.
_ICU_LOCALE: Final = "en-US"
_OS_LOCALE: Final = "en_US.UTF-8"
_PG15: Final = 150000
"""``server_version_num`` of PostgreSQL 15, the first with ``LOCALE_PROVIDER``."""
_OS_LOCALE_COMMAND: Final = (
    "apt-get install locales && localedef -i en_US -c -f UTF-8 "
    "-A /usr/share/locale/locale.alias en_US.UTF-8"
)


@dataclass(frozen=True)
class PostgresServerInfo:
    """The server the tests of this session use.

    Attributes:
        url: A libpq URI (it may hold a password: show it with ``redact``).
        origin: ``"env"``, ``"testcontainers"`` or ``"pgserver"``.
        version: ``SELECT version()`` of the server.
    """

    url: str
    origin: str
    version: str


def _no_server(reason: str) -> NoReturn:
    unavailable(f"no PostgreSQL server: {reason} (set {ENV_URL} to use one)")


def _server_version(url: str) -> str:
    """``SELECT version()`` of the server at ``url``.

    Raises:
        ConnectionError: The server does not answer (the message is redacted).
    """
    import psycopg  # noqa: PLC0415 -- optional (postgres extra)

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SELECT version()").fetchone()
    except psycopg.OperationalError as exc:
        raise ConnectionError(f"{redact(url)!r} does not answer: {redact(str(exc))}") from None
    return "" if row is None else str(row[0])


def _docker_answers() -> bool:
    """Whether a Docker engine answers; cheap when there is none (no socket, no import)."""
    if "DOCKER_HOST" not in os.environ and not _DOCKER_SOCKET.exists():
        return False
    try:
        import docker  # type: ignore[import-untyped]  # noqa: PLC0415 -- optional (Docker)
        import requests  # noqa: PLC0415 -- optional (Docker)
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (docker.errors.DockerException, requests.RequestException, OSError):
        return False


def _start_pgserver() -> PgServer:
    """Start an embedded server in a new temporary directory (deleted by ``cleanup()``).

    The directory is not under pytest's ``tmp_path``: run as root, pgserver runs the
    server as an unprivileged user, and pytest keeps its own temporary root private
    (it resets the permissions whenever a session starts), which would lock that
    user out of its data directory.
    """
    directory = Path(tempfile.mkdtemp(prefix="metalab-pg-"))
    # pgserver warns at import when XDG_RUNTIME_DIR is unset; that is its business,
    # and a suite running with warnings as errors must not fail on it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server  # noqa: PLC0415 -- optional (pgserver)

        server = get_server(directory, cleanup_mode="delete")
    _throwaway_settings(server.get_uri())
    return server


def _throwaway_settings(url: str) -> None:
    """Trade durability for speed on a throwaway server: nothing on it must survive."""
    import psycopg  # noqa: PLC0415 -- optional (postgres extra)
    from psycopg import sql  # noqa: PLC0415 -- optional (postgres extra)

    with psycopg.connect(url, autocommit=True) as conn:
        for name in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(name)))
        conn.execute("SELECT pg_reload_conf()")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServerInfo]:
    """The session's PostgreSQL server (see the module docstring for where it comes from)."""
    url = os.environ.get(ENV_URL)
    if url:
        try:
            version = _server_version(url)
        except ImportError as exc:
            _no_server(f"psycopg is not installed ({exc})")
        except ConnectionError as exc:
            _no_server(str(exc))
        yield PostgresServerInfo(url, "env", version)
        return
    if _docker_answers():
        from testcontainers.community.postgres import PostgresContainer  # noqa: PLC0415 -- optional

        with PostgresContainer(_IMAGE, driver=None) as container:
            url = container.get_connection_url()
            yield PostgresServerInfo(url, "testcontainers", _server_version(url))
        return
    try:
        server = _start_pgserver()
    except (ImportError, OSError, subprocess.SubprocessError) as exc:
        _no_server(f"no Docker engine, and the embedded pgserver did not start: {exc!r}")
    try:
        url = server.get_uri()
        yield PostgresServerInfo(url, "pgserver", _server_version(url))
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServerInfo) -> str:
    """The libpq URI of the session's server."""
    return postgres_server.url


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name, ``metalab_test_<uuid hex>``, dropped after the test.

    The schema is not created: the code under test creates it (as a store does).
    """
    import psycopg  # noqa: PLC0415 -- optional (postgres extra)
    from psycopg import sql  # noqa: PLC0415 -- optional (postgres extra)

    name = f"metalab_test_{uuid.uuid4().hex}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def postgres_config(postgres_url: str, postgres_schema: str, tmp_path: Path) -> PostgresStoreConfig:
    """An unscoped store config on the test's schema, with its files under ``tmp_path``."""
    return PostgresStoreConfig(
        connection_string=postgres_url,
        file_root=str(tmp_path / "files"),
        schema=postgres_schema,
    )


class RestartablePostgres:
    """A private embedded server that a test may stop and start again.

    Its URL stays the same across restarts (it listens on a socket in its own
    directory), so clients reconnect to it.
    """

    def __init__(self, server: PgServer) -> None:
        self._server = server
        self.url = server.get_uri()

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut)."""
        from pgserver._commands import POSTGRES_BIN_PATH  # noqa: PLC0415 -- optional (pgserver)

        pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
        subprocess.run(
            [pg_ctl, "-D", str(self._server.pgdata), "-w", "-m", "fast", "stop"],
            user=self._server.system_user,
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        """Start the stopped server again, on the same socket."""
        self._server.ensure_postgres_running()
        self.url = self._server.get_uri()

    def cleanup(self) -> None:
        """Stop the server and delete its data directory."""
        self._server.cleanup()


@pytest.fixture
def restartable_postgres() -> Iterator[RestartablePostgres]:
    """A private embedded server for tests that stop and restart PostgreSQL."""
    try:
        server = _start_pgserver()
    except (ImportError, OSError, subprocess.SubprocessError) as exc:
        _no_server(f"the embedded pgserver did not start: {exc!r}")
    instance = RestartablePostgres(server)
    try:
        yield instance
    finally:
        instance.cleanup()


@contextlib.contextmanager
def login_role(url: str, password: str) -> Iterator[str]:
    """A new role that logs in with ``password``, and ``url`` rewritten to log in as it.

    The role may connect to the database of ``url`` and create schemas in it. On
    exit, whatever it owns there and the role itself are dropped (connections still
    open as the role are ended first). A server that trusts local connections does
    not check the password, but the URL holds it all the same: tests of secrets use
    it to check that the password shows nowhere.

    Args:
        url: A libpq URI of a superuser (the test server's).
        password: The role's password (any characters: it is percent-encoded).

    Yields:
        The URI of the same server and database, as the role, with its password.
    """
    import psycopg  # noqa: PLC0415 -- optional (postgres extra)
    from psycopg import sql  # noqa: PLC0415 -- optional (postgres extra)

    role = f"metalab_test_role_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(conn.info.dbname), sql.Identifier(role)
            )
        )
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    secret = urllib.parse.quote(password, safe="")
    # A user or password in the query would override the ones before the host.
    query = [
        (k, v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("user", "password")
    ]
    as_role = parts._replace(
        netloc=f"{role}:{secret}@{host}", query=urllib.parse.urlencode(query, safe="/")
    ).geturl()
    try:
        with psycopg.connect(as_role) as conn:
            who = conn.execute("SELECT current_user").fetchone()
        assert who is not None
        assert who[0] == role, f"{redact(as_role)!r} logs in as {who[0]!r}, not {role!r}"
        yield as_role
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@dataclass(frozen=True)
class CollatedDatabase:
    """A database whose default collation sorts text in en-US order, not code points.

    In it ``'a' < 'B'`` and ``'_' < 'a'`` hold, as neither does under ``C``: a query
    that compares or sorts strings without ``COLLATE "C"`` answers otherwise than
    the Python engine.

    Attributes:
        url: A libpq URI of the database.
        collation: How it was made: ``"icu en-US"`` or ``"libc en_US.UTF-8"``.
    """

    url: str
    collation: str


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _with_database(url: str, dbname: str) -> str:
    """``url`` (a libpq URI) naming the database ``dbname`` instead of its own."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(dbname)))


def _create_collated(url: str, dbname: str) -> tuple[str | None, list[str]]:
    """Create ``dbname`` with an en-US default collation: ICU if the server has it, else libc.

    Returns:
        How the database collates (``None`` if it could not be created) and why each
        way failed.
    """
    import psycopg  # noqa: PLC0415 -- optional (postgres extra)
    from psycopg import sql  # noqa: PLC0415 -- optional (postgres extra)

    failures: list[str] = []
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT datcollate, datctype, current_setting('server_version_num')::int "
            "FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert row is not None
        collate, ctype, version = str(row[0]), str(row[1]), int(row[2])
        create = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' ").format(
            sql.Identifier(dbname)
        )
        ways: list[tuple[str, sql.Composable]] = []
        if version >= _PG15:
            ways.append(
                (
                    f"icu {_ICU_LOCALE}",
                    sql.SQL("LOCALE_PROVIDER icu ICU_LOCALE {} LC_COLLATE {} LC_CTYPE {}").format(
                        sql.Literal(_ICU_LOCALE), sql.Literal(collate), sql.Literal(ctype)
                    ),
                )
            )
        libc = sql.SQL("LOCALE_PROVIDER libc " if version >= _PG15 else "")
        ways.append(
            (
                f"libc {_OS_LOCALE}",
                sql.SQL("{}LC_COLLATE {} LC_CTYPE {}").format(
                    libc, sql.Literal(_OS_LOCALE), sql.Literal(_OS_LOCALE)
                ),
            )
        )
        for name, options in ways:
            try:
                conn.execute(sql.Composed([create, options]))
            except psycopg.Error as exc:
                failures.append(f"{name}: {str(exc).strip()}")
                continue
            return name, failures
    return None, failures


def _os_has_locale() -> bool:
    try:
        listed = subprocess.run(
            ["locale", "-a"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    wanted = _OS_LOCALE.lower().replace("-", "")
    return any(line.strip().lower().replace("-", "") == wanted for line in listed.splitlines())


def _install_os_locale() -> str | None:
    """Generate the ``en_US.UTF-8`` OS locale (as root, with apt if its sources are missing).

    Returns:
        ``None`` when it is installed, else why not.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "installing a locale needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps: list[list[str]] = []
    if not Path("/usr/share/i18n/locales/en_US").exists():
        if shutil.which("apt-get") is None:
            return (
                "the locale sources (Debian package 'locales') are missing and there is no apt-get"
            )
        steps += [
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "locales"],
        ]
    alias = "/usr/share/locale/locale.alias"
    steps.append(["localedef", "-i", "en_US", "-c", "-f", "UTF-8", "-A", alias, _OS_LOCALE])
    for step in steps:
        try:
            done = subprocess.run(
                step, check=False, capture_output=True, text=True, env=env, timeout=600
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{' '.join(step)!r} failed: {exc!r}"
        # localedef -c exits 1 on warnings and still writes the locale: judge by the result.
        if done.returncode != 0 and step[0] != "localedef":
            return f"{' '.join(step)!r} exited {done.returncode}: {done.stderr.strip()[-500:]}"
    return None if _os_has_locale() else f"localedef did not install {_OS_LOCALE}"


@pytest.fixture(scope="session")
def postgres_collated(postgres_url: str) -> Iterator[CollatedDatabase]:
    """A database whose default collation is en-US (ICU or libc), dropped after the session.

    On the session's server, with ICU when the server has it (Debian's PostgreSQL,
    the postgres Docker images), else with the OS locale ``en_US.UTF-8``. The
    embedded pgserver has no ICU: when the OS lacks the locale and ``CI=true`` (run
    as root), the locale is generated (``localedef``, after ``apt-get install
    locales`` if its sources are missing) and a private embedded server, which sees
    it, holds the database. Without such a database the test is skipped, except
    under ``CI=true``, where it fails.
    """
    import psycopg  # noqa: PLC0415 -- optional (postgres extra)
    from psycopg import sql  # noqa: PLC0415 -- optional (postgres extra)

    dbname = f"metalab_collated_{uuid.uuid4().hex}"
    server_url = postgres_url
    private: PgServer | None = None
    how, failures = _create_collated(server_url, dbname)
    if how is None:
        # A running server keeps the locales it loaded at its start: a new locale
        # needs a new server.
        problem = None
        if not _os_has_locale():
            if os.environ.get("CI") == "true":
                problem = _install_os_locale()
            else:
                problem = f"the OS lacks the locale {_OS_LOCALE} (as root: {_OS_LOCALE_COMMAND})"
        if problem is None:
            try:
                private = _start_pgserver()
            except (ImportError, OSError, subprocess.SubprocessError) as exc:
                problem = f"the embedded pgserver did not start: {exc!r}"
            else:
                server_url = private.get_uri()
                how, more = _create_collated(server_url, dbname)
                failures += more
        if how is None:
            if private is not None:
                private.cleanup()
            tried = "; ".join(failures + ([problem] if problem else []))
            _unavailable(f"no database with a non-C collation could be created ({tried})")
    url = _with_database(server_url, dbname)
    try:
        with psycopg.connect(url) as conn:
            order = conn.execute("SELECT 'a' < 'B' AND '_' < 'a'").fetchone()
        assert order is not None
        assert order[0] is True, f"the {how} database sorts text in code-point order"
        yield CollatedDatabase(url, str(how))
    finally:
        try:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(dbname)
                    )
                )
        finally:
            if private is not None:
                private.cleanup()


@pytest.fixture
def postgres_collated_config(
    postgres_collated: CollatedDatabase, tmp_path: Path
) -> Iterator[PostgresStoreConfig]:
    """An unscoped store config on a fresh schema of the collated database (dropped after)."""
    import psycopg  # noqa: PLC0415 -- optional (postgres extra)
    from psycopg import sql  # noqa: PLC0415 -- optional (postgres extra)

    schema = f"metalab_test_{uuid.uuid4().hex}"
    yield PostgresStoreConfig(
        connection_string=postgres_collated.url,
        file_root=str(tmp_path / "files"),
        schema=schema,
    )
    with psycopg.connect(postgres_collated.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``postgres`` marker."""
    config.addinivalue_line(
        "markers", "postgres: needs a real PostgreSQL server (provided by metalab.testing.postgres)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a PostgreSQL fixture with ``postgres``."""
    for item in items:
        if _FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


def pytest_report_header() -> list[str]:
    """Say which PostgreSQL server the session's ``postgres`` tests use."""
    url = os.environ.get(ENV_URL)
    if url:
        try:
            return [f"postgres: {redact(url)} ({_server_version(url)})"]
        except (ImportError, ConnectionError) as exc:
            return [f"postgres: {redact(url)} is not usable ({redact(str(exc))})"]
    if _docker_answers():
        return [f"postgres: testcontainers ({_IMAGE})"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH  # noqa: PLC0415 -- optional (pgserver)
        version = subprocess.run(
            [str(POSTGRES_BIN_PATH / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (ImportError, OSError, subprocess.SubprocessError) as exc:
        return [f"postgres: none available ({exc!r})"]
    return [f"postgres: embedded pgserver ({version})"]


class PostgresStoreBackdoor:
    """Direct access to both media of a PostgresStore: its files and its index tables.

    It implements the conformance suite's ``Backdoor`` and checks, on every read,
    that the files and the index agree: a record present in one and missing (or
    different) in the other fails the test.

    Args:
        url: The server's URL.
        schema: The schema of the store's index.
        directory: The store's working directory (where its files are).
        experiment_id: The experiment planted rows belong to.
    """

    def __init__(self, url: str, schema: str, directory: Path, experiment_id: str) -> None:
        import psycopg  # noqa: PLC0415 -- optional (postgres extra)

        self.directory = directory
        self.schema = schema
        self.experiment_id = experiment_id
        self._conn: psycopg.Connection[tuple[object, ...]] = psycopg.connect(url, autocommit=True)

    def close(self) -> None:
        """Close the backdoor's connection."""
        self._conn.close()

    def _table(self, name: str) -> psycopg.sql.Identifier:
        from psycopg import sql  # noqa: PLC0415 -- optional (postgres extra)

        return sql.Identifier(self.schema, name)

    def index_docs(self, table: str) -> dict[str, bytes]:
        """``key -> doc`` of an index table (``runs``, ``derived`` or ``manifests``)."""
        from psycopg import sql  # noqa: PLC0415 -- optional (postgres extra)

        key = sql.SQL("name" if table == "manifests" else "run_id")
        found = self._conn.execute(
            sql.SQL("SELECT to_regclass({})").format(
                sql.Literal(self._table(table).as_string(self._conn))
            )
        ).fetchone()
        if found is None or found[0] is None:
            return {}
        rows = self._conn.execute(
            sql.SQL("SELECT {}, doc FROM {}").format(key, self._table(table))
        ).fetchall()
        return {str(k): bytes(doc) for k, doc in rows if isinstance(doc, bytes | memoryview)}

    def file_docs(self, subdir: str) -> dict[str, bytes]:
        """``stem -> bytes`` of the documents in ``runs``, ``derived`` or ``experiments``."""
        directory = self.directory / subdir
        if not directory.is_dir():
            return {}
        return {
            p.stem: p.read_bytes() for p in directory.glob("*.json") if not p.name.startswith(".")
        }

    def snapshot(self) -> dict[str, bytes]:
        """Every file (``_meta.json`` aside) and every indexed document."""
        files = {}
        if self.directory.exists():
            files = {
                str(path.relative_to(self.directory)): path.read_bytes()
                for path in self.directory.rglob("*")
                if path.is_file() and path.name != "_meta.json" and not path.name.startswith(".")
            }
        for table in ("runs", "derived", "manifests"):
            files.update({f"index:{table}/{k}": v for k, v in self.index_docs(table).items()})
        return files

    def run_ids(self) -> set[str]:
        """The runs with a record, checking that the files and the index agree."""
        in_files = set(self.file_docs("runs"))
        in_index = set(self.index_docs("runs"))
        assert in_files == in_index, f"files hold {in_files}, the index {in_index}"
        return in_files

    def read_run_record(self, run_id: str) -> RunRecord | None:
        """A run's record, from the files and from the index, which must agree."""
        file_doc = self.file_docs("runs").get(run_id)
        index_doc = self.index_docs("runs").get(run_id)
        assert (file_doc is None) == (index_doc is None), (
            f"run {run_id}: in files: {file_doc is not None}, in index: {index_doc is not None}"
        )
        if file_doc is None or index_doc is None:
            return None
        from_file = _codec.RUN_RECORD.decode(file_doc, source="file")
        from_index = _codec.RUN_RECORD.decode(index_doc, source="index")
        assert comparable(from_file) == comparable(from_index), "files and index differ"
        return from_file

    def write_raw_run_record(self, run_id: str, data: bytes) -> None:
        """Plant ``data`` as the record of ``run_id`` in the files and in the index."""
        from psycopg import sql  # noqa: PLC0415 -- optional (postgres extra)

        self._write(self.directory / "runs" / f"{run_id}.json", data)
        self._conn.execute(
            sql.SQL(
                "INSERT INTO {} (run_id, experiment_id, status, started_at, doc) "
                "VALUES (%s, %s, 'running', now(), %s) "
                "ON CONFLICT (run_id) DO UPDATE SET doc = EXCLUDED.doc"
            ).format(self._table("runs")),
            (run_id, self.experiment_id, data),
        )

    def read_derived(self, run_id: str) -> DerivedMetrics | None:
        """A run's derived metrics, from the files and from the index, which must agree."""
        file_doc = self.file_docs("derived").get(run_id)
        index_doc = self.index_docs("derived").get(run_id)
        assert (file_doc is None) == (index_doc is None), f"derived of {run_id} disagree"
        if file_doc is None or index_doc is None:
            return None
        from_file = _codec.DERIVED.decode(file_doc, source="file")
        assert comparable(from_file) == comparable(_codec.DERIVED.decode(index_doc))
        return from_file

    def write_raw_derived(self, run_id: str, data: bytes) -> None:
        """Plant ``data`` as the derived metrics of ``run_id`` in the files and the index."""
        from psycopg import sql  # noqa: PLC0415 -- optional (postgres extra)

        self._write(self.directory / "derived" / f"{run_id}.json", data)
        self._conn.execute(
            sql.SQL(
                "INSERT INTO {} (run_id, experiment_id, doc) VALUES (%s, %s, %s) "
                "ON CONFLICT (run_id) DO UPDATE SET doc = EXCLUDED.doc"
            ).format(self._table("derived")),
            (run_id, self.experiment_id, data),
        )

    def read_artifact(self, run_id: str, name: str) -> bytes | None:
        """An artifact's bytes, from the files (artifacts are not indexed)."""
        manifest_path = self.directory / "artifacts" / run_id / "_manifest.json"
        try:
            manifest = _codec.ARTIFACT_MANIFEST.decode(manifest_path.read_bytes())
        except FileNotFoundError:
            return None
        for descriptor in manifest.artifacts:
            if descriptor.name == name:
                try:
                    return (self.directory / descriptor.uri).read_bytes()
                except FileNotFoundError:
                    return None
        return None

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
