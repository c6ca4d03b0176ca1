"""A PostgreSQL locator that cannot work fails fast, in one line, with the right exit code.

Against the session's real server: a database and a role that do not exist, an
option misspelt, a port nothing listens on. Each locator sets ``pool_timeout=600``:
a command that waited for the pool instead of failing at once would outlive the
subprocess timeout of these tests. (What libpq says for a refused password or an
unknown host is classified in ``test_what_waiting_cannot_fix``, from its own words:
the test server trusts local connections and the tests have no DNS to ask.)
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from metalab.errors import ConfigError, IndexUnavailableError, LocatorError
from metalab.store import FileStoreConfig, PostgresStoreConfig, parse_to_config
from metalab.store._postgres_pool import _permanent_reason
from metalab.testing import run_cli
from metalab.testing.store import make_record

EXP = "fail:1"
PATIENT = "pool_timeout=600&connect_timeout=2"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    with FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect() as store:
        store.put_run_record(make_record(EXP, "r1"))
    return tmp_path


def locator(url: str, files: Path, *, user: str | None = None, dbname: str | None = None) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        netloc = f"{user}@{netloc.rpartition('@')[2]}"
    path = f"/{dbname}" if dbname is not None else parts.path
    query = "&".join(filter(None, [parts.query, f"file_root={files}", PATIENT]))
    return parts._replace(netloc=netloc, path=path, query=query).geturl()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"dbname": "metalab_no_such_database"},
            "database 'metalab_no_such_database' does not exist",
        ),
        ({"user": "metalab_no_such_role"}, "role 'metalab_no_such_role' does not exist"),
    ],
)
@pytest.mark.parametrize("command", [["store", "ls"], ["store", "info"], ["runs", "ls"]])
def test_what_waiting_cannot_fix_is_a_usage_error_at_once(
    postgres_url: str, files: Path, change: dict[str, str], reason: str, command: list[str]
) -> None:
    proc = run_cli(*command, locator(postgres_url, files, **change))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("metalab: error: the postgres index at ")
    assert lines[0].endswith(f"cannot be used: {reason}; waiting will not help, fix the locator")


def test_the_library_raises_a_config_error_too(postgres_url: str, files: Path) -> None:
    config = parse_to_config(locator(postgres_url, files, dbname="metalab_no_such_database"))
    with pytest.raises(ConfigError, match="does not exist"):
        config.connect()
    # Whatever the policy: falling back to the files would hide the typo.
    with pytest.raises(ConfigError, match="does not exist"):
        parse_to_config(config.to_locator() + "&on_index_error=fallback").connect()


@pytest.mark.parametrize(("typo", "meant"), [("shema", "schema"), ("sslmod", "sslmode")])
def test_a_misspelt_option_is_named_with_the_closest(
    postgres_url: str, files: Path, typo: str, meant: str
) -> None:
    proc = run_cli("store", "ls", locator(postgres_url, files) + f"&{typo}=x")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"metalab: error: unknown option {typo!r} in the locator")
    assert proc.stderr.endswith(f"did you mean {meant!r}?\n")
    with pytest.raises(LocatorError, match=f"did you mean {meant!r}"):
        parse_to_config(locator(postgres_url, files) + f"&{typo}=x")


def test_an_option_libpq_knows_is_passed_on(postgres_url: str, files: Path) -> None:
    config = parse_to_config(locator(postgres_url, files) + "&application_name=lab")
    assert isinstance(config, PostgresStoreConfig)
    assert "application_name=lab" in config.connection_string


def test_a_server_that_does_not_answer_falls_back_to_the_files_in_one_line(
    files: Path,
) -> None:
    # Nothing listens on port 1: refused at once, so the files answer (exit 0).
    url = f"postgresql://metalab@127.0.0.1:1/db?file_root={files}&{PATIENT}"
    as_json = run_cli("store", "ls", url, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["index"] == "unreachable"
    assert as_json.stderr == ""
    proc = run_cli("store", "ls", url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split()[:2] == [EXP, "1"]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr  # no pool or library log records
    assert lines[0].startswith("metalab: warning: the postgres index at ")
    assert "Connection refused" in lines[0]
    assert "'metalab store sync-index LOCATOR'" in lines[0]
    with pytest.raises(IndexUnavailableError, match="Connection refused"):
        parse_to_config(url).connect()


@pytest.mark.parametrize(
    ("libpq_says", "reason"),
    [
        (
            (
                'connection to server at "db" (10.0.0.5), port 5432 failed: FATAL:  password '
                'authentication failed for user "me"'
            ),
            "the password was refused",
        ),
        (
            (
                'connection to server on socket "/run/.s.PGSQL.5432" failed: fe_sendauth: no '
                "password supplied"
            ),
            "the server wants a password and none was given",
        ),
        (
            (
                'connection to server at "db", port 5432 failed: FATAL:  no pg_hba.conf entry for '
                'host "10.0.0.9", user "me", database "lab", no encryption'
            ),
            "the server's pg_hba.conf refuses this connection",
        ),
        (
            "failed to resolve host 'db.invalid': [Errno -2] Name or service not known",
            "host 'db.invalid' is not known (DNS)",
        ),
        (
            'could not translate host name "db.invalid" to address: Name or service not known',
            "host 'db.invalid' is not known (DNS)",
        ),
    ],
)
def test_what_waiting_cannot_fix(libpq_says: str, reason: str) -> None:
    assert _permanent_reason(libpq_says) == reason


@pytest.mark.parametrize(
    "libpq_says",
    [
        'connection to server at "127.0.0.1", port 1 failed: Connection refused',
        "failed to resolve host 'db': [Errno -3] Temporary failure in name resolution",
        (
            'connection to server at "db", port 5432 failed: FATAL:  the database system is '
            "starting up"
        ),
        'connection to server at "db", port 5432 failed: timeout expired',
        "FATAL:  sorry, too many clients already",
    ],
)
def test_what_waiting_may_fix(libpq_says: str) -> None:
    assert _permanent_reason(libpq_says) is None
