"""A canary password, pushed through every path that handles a locator or a config.

Two distinctive passwords go everywhere a locator, connection string or config can
go wrong (or right): one in URI form with every character that breaks URI parsing
(``/``, ``@``, ``:``, a ``%`` escape), one in libpq's key=value form (quoted, with a
blank and an escaped quote). Neither, nor any recognisable piece of either, may show
up in an exception (its ``str``, ``repr`` and whole chained traceback), a warning, a
log record (metalab's, psycopg's and psycopg_pool's, at DEBUG), a ``repr``, or the
output of any ``metalab`` subcommand. The subcommands are read from the CLI's own
parser, so a new one is covered (or fails here until it is given a locator).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import subprocess
import sys
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import quote, urlsplit

import pytest

from metalab import load_results
from metalab.cli import build_parser
from metalab.errors import ExperimentMismatchError, IndexUnavailableError
from metalab.executors._base import RunJob
from metalab.experiment import Operation
from metalab.store import (
    FileStoreConfig,
    PostgresStore,
    PostgresStoreConfig,
    StoreConfig,
    coerce_store_config,
    create_store,
    parse_locator,
    parse_to_config,
)
from metalab.store.transfer import export_store
from metalab.testing.postgres import login_role
from metalab.testing.store import make_record

URI_CANARY: Final = "Canary/Pa@ss:w%3Drd-7f3"
"""Raw '/', '@' and ':' end a URI's user information early; '%3D' is an escape."""
KV_CANARY: Final = "Kv-Can4ry sEcr3t'Qx9"
"""A blank and a quote: in key=value form it must be quoted and escaped."""
KV_QUOTED: Final = "'" + KV_CANARY.replace("'", "\\'") + "'"

FORBIDDEN: Final = (
    URI_CANARY,
    quote(URI_CANARY, safe=""),
    "Canary/Pa@ss:w=rd-7f3",  # percent-decoded
    "Canary",  # what urllib calls the port of ``me:Canary/...``
    "Pa@ss",
    "ss:w",
    "3Drd-7f3",
    "rd-7f3",
    KV_CANARY,
    KV_QUOTED,
    "Kv-Can4ry",
    "sEcr3t",
    "Qx9",
)
"""The canaries and every piece of them that a misparse could show."""

EXP: Final = "secrets:1"
CLOSED: Final = "127.0.0.1:1"
"""A local port nobody listens on: connection refused at once."""
FAST: Final = "connect_timeout=1&pool_timeout=1"


def leaks(text: str) -> list[str]:
    return [secret for secret in FORBIDDEN if secret in text]


def assert_hidden(where: str, *texts: object) -> None:
    found = {secret for text in texts for secret in leaks(str(text))}
    shown = "\n".join(str(t) for t in texts if leaks(str(t)))
    assert not found, f"{where} shows {sorted(found)}:\n{shown}"


def exception_texts(exc: BaseException) -> list[str]:
    return [
        str(exc),
        repr(exc),
        repr(exc.args),
        "".join(traceback.format_exception(exc)),
        *(repr(value) for value in vars(exc).values()),
    ]


@dataclass
class Outcome:
    """What one action produced besides its return value."""

    error: BaseException | None = None
    warnings: list[str] = field(default_factory=list)
    value: object = None


def attempt(action: Callable[[], object]) -> Outcome:
    """Run ``action``, keeping its exception (if any) and every warning it emits."""
    outcome = Outcome()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome.value = action()
        except Exception as exc:  # noqa: BLE001 - every error is inspected, none is expected
            outcome.error = exc
    outcome.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
    return outcome


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record at DEBUG, metalab's and the driver's."""
    caplog.set_level(logging.DEBUG)
    for name in ("metalab", "psycopg", "psycopg.pool"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    texts = [caplog.text]
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), record.exc_text or ""]
        if record.exc_info and record.exc_info[1] is not None:
            texts.append("".join(traceback.format_exception(record.exc_info[1])))
    return texts


def check(where: str, outcome: Outcome, caplog: pytest.LogCaptureFixture) -> None:
    texts: list[object] = [*outcome.warnings, *log_texts(caplog)]
    if outcome.error is not None:
        texts += exception_texts(outcome.error)
    if outcome.value is not None:
        texts.append(repr(outcome.value))
    assert_hidden(where, *texts)


def encoded(password: str = URI_CANARY) -> str:
    return quote(password, safe="")


def kv_conninfo() -> str:
    return f"host=127.0.0.1 port=1 user=me password={KV_QUOTED} dbname=lab"


def locators(root: Path) -> dict[str, str]:
    """Every shape of locator that carries a canary, by name."""
    files = quote(str(root))
    return {
        "uri-raw": f"postgresql://me:{URI_CANARY}@{CLOSED}/lab?file_root={files}&{FAST}",
        "uri-raw-no-user": f"postgres://:{URI_CANARY}@{CLOSED}/lab?file_root={files}&{FAST}",
        "uri-encoded": f"postgresql://me:{encoded()}@{CLOSED}/lab?file_root={files}&{FAST}",
        "uri-upper-scheme": f"POSTGRESQL://me:{encoded()}@{CLOSED}/lab?file_root={files}&{FAST}",
        "query-raw": f"postgresql://me@{CLOSED}/lab?password={URI_CANARY}&file_root={files}&{FAST}",
        "query-encoded": (
            f"postgresql://me@{CLOSED}/lab?password={encoded()}&file_root={files}&{FAST}"
        ),
        "query-encoded-key": (
            f"postgresql://me@{CLOSED}/lab?%70assword={encoded()}&file_root={files}&{FAST}"
        ),
        "raw-at-in-host": f"postgresql://me:Pa@ss@{CLOSED}/lab?file_root={files}&{FAST}",
        "bad-escape": f"postgresql://me:Canary%zz@{CLOSED}/lab?file_root={files}&{FAST}",
        "query-hash": (
            f"postgresql://me@{CLOSED}/lab?password={URI_CANARY.replace(':', '#')}"
            f"&file_root={files}&{FAST}"
        ),
        "kv-conninfo": kv_conninfo(),
        "kv-conninfo-unquoted": "host=127.0.0.1 password=Kv-Can4ry dbname=lab",
        "file-uri-user": f"file://me:{encoded()}@host/data",
        "file-uri-query": f"file://{files}?password={encoded()}",
        "memory-user": f"memory://me:{encoded()}@lab",
        "unknown-scheme": f"s3://me:{encoded()}@bucket/x",
        "unknown-param": f"postgresql://me:{encoded()}@{CLOSED}/lab?file_root={files}&bogus=1&{FAST}",
        "no-file-root": f"postgresql://me:{encoded()}@{CLOSED}/lab",
        "bad-pool-sizes": (
            f"postgresql://me:{encoded()}@{CLOSED}/lab?file_root={files}"
            "&pool_min_size=5&pool_max_size=2"
        ),
        "bad-pool-type": f"postgresql://me:{encoded()}@{CLOSED}/lab?file_root={files}&pool_max_size=x",
        "bad-timeout": f"postgresql://me:{encoded()}@{CLOSED}/lab?file_root={files}&pool_timeout=0",
        "bad-policy": (
            f"postgresql://me:{encoded()}@{CLOSED}/lab?file_root={files}&on_index_error=ignore"
        ),
        "bad-experiment": (
            f"postgresql://me:{encoded()}@{CLOSED}/lab?file_root={files}&experiment_id=../x"
        ),
        "bad-port": f"postgresql://me:{encoded()}@db:port/lab?file_root={files}",
        "ipv6-junk": f"postgresql://me:{encoded()}@[not-an-ip]/lab?file_root={files}",
    }


SHAPES: Final = tuple(locators(Path("/x")))


def connection_strings() -> dict[str, str]:
    """Connection strings (no metalab parameters) that carry a canary."""
    return {
        "uri-raw": f"postgresql://me:{URI_CANARY}@{CLOSED}/lab",
        "uri-encoded": f"postgresql://me:{encoded()}@{CLOSED}/lab",
        "query-raw": f"postgresql://me@{CLOSED}/lab?password={URI_CANARY}",
        "raw-at-in-host": f"postgresql://me:Pa@ss@{CLOSED}/lab",
        "bad-escape": f"postgresql://me:Canary%zz@{CLOSED}/lab",
        "kv-conninfo": kv_conninfo(),
        "with-file-root": f"postgresql://me:{encoded()}@{CLOSED}/lab?file_root=/x",
        "hash-in-password": f"postgresql://me:x#{encoded()}@{CLOSED}/lab",
    }


def unreachable(root: Path, **fields: Any) -> PostgresStoreConfig:
    values: dict[str, Any] = {
        "connection_string": f"postgresql://me:{encoded()}@{CLOSED}/lab",
        "file_root": str(root),
        "connect_timeout": 1,
        "pool_timeout": 1,
        **fields,
    }
    return PostgresStoreConfig(**values)


def file_source(root: Path) -> Path:
    """A FileStore collection holding one run of ``EXP``."""
    with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as store:
        store.put_run_record(make_record(EXP))
    return root


class TestLocators:
    @pytest.mark.parametrize("shape", SHAPES)
    @pytest.mark.parametrize(
        "entry",
        [
            "parse_locator",
            "parse_to_config",
            "coerce_store_config",
            "create_store",
            "load_results",
            "export_from",
            "export_to",
            "from_filestore",
            "unknown_keyword",
        ],
    )
    def test_no_entry_point_shows_the_password(
        self,
        entry: str,
        shape: str,
        tmp_path: Path,
        logs: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # A locator mistaken for a relative path must not land in the working tree.
        monkeypatch.chdir(tmp_path)
        locator = locators(tmp_path / "files")[shape]
        source = tmp_path / "source"
        actions: dict[str, Callable[[], object]] = {
            "parse_locator": lambda: parse_locator(locator),
            "parse_to_config": lambda: parse_to_config(locator),
            "coerce_store_config": lambda: coerce_store_config(locator, experiment_id=EXP),
            "create_store": lambda: create_store(locator).close(),
            "load_results": lambda: load_results(locator, EXP),
            "export_from": lambda: export_store(locator, str(tmp_path / "out"), EXP),
            "export_to": lambda: export_store(str(file_source(source)), locator, EXP),
            "from_filestore": lambda: PostgresStore.from_filestore(
                locator, FileStoreConfig(root=str(file_source(source))).connect()
            ).close(),
            "unknown_keyword": lambda: parse_to_config(locator, fileroot="/x"),
        }
        check(f"{entry}({shape})", attempt(actions[entry]), logs)

    @pytest.mark.parametrize("shape", SHAPES)
    def test_a_parsed_locator_never_shows_the_password(self, shape: str, tmp_path: Path) -> None:
        outcome = attempt(lambda: parse_locator(locators(tmp_path)[shape]))
        if outcome.error is None:
            assert_hidden(shape, repr(outcome.value), str(outcome.value))
            assert_hidden(shape, parse_locator(locators(tmp_path)[shape]).redacted())


class TestConfigs:
    @pytest.mark.parametrize("shape", list(connection_strings()))
    def test_a_refused_connection_string_is_not_shown(
        self, shape: str, tmp_path: Path, logs: pytest.LogCaptureFixture
    ) -> None:
        conninfo = connection_strings()[shape]
        outcome = attempt(lambda: unreachable(tmp_path, connection_string=conninfo))
        check(shape, outcome, logs)
        if outcome.error is None:  # accepted: the connection attempt must not show it either
            config = outcome.value
            assert isinstance(config, PostgresStoreConfig)
            check(f"connect({shape})", attempt(lambda: config.connect().close()), logs)

    @pytest.mark.parametrize(
        "fields",
        [
            {"file_root": ""},
            {"pool_min_size": 5, "pool_max_size": 2},
            {"pool_max_size": "4"},
            {"connect_timeout": -1},
            {"schema": ""},
            {"experiment_id": "../x"},
            {"on_index_error": "ignore"},
            {"connection_string": f"postgresql://me:{encoded()}@{CLOSED}/lab".encode()},
        ],
        ids="-".join,
    )
    def test_an_invalid_field_is_reported_without_the_password(
        self, fields: dict[str, object], tmp_path: Path, logs: pytest.LogCaptureFixture
    ) -> None:
        outcome = attempt(lambda: unreachable(tmp_path, **fields))
        assert outcome.error is not None
        check(str(fields), outcome, logs)

    @pytest.mark.parametrize(
        "change",
        [
            {"_type": "nope"},
            {"_type": None},
            {"file_root": 5},
            {"file_root": None},
            {"pool_min_size": "x"},
            {"connection_string": f"postgresql://me:{URI_CANARY}@{CLOSED}/lab"},
            {"connection_string": kv_conninfo()},
            {"connection_string": 5},
        ],
        ids=[
            "unknown-type",
            "no-type",
            "file-root-int",
            "no-file-root",
            "pool-size-str",
            "raw-uri",
            "kv-conninfo",
            "conninfo-int",
        ],
    )
    def test_from_dict_failures_hide_the_password(
        self, change: dict[str, object], tmp_path: Path, logs: pytest.LogCaptureFixture
    ) -> None:
        data = {**unreachable(tmp_path).to_dict(), **change}
        data = {k: v for k, v in data.items() if v is not None}
        outcome = attempt(lambda: StoreConfig.from_dict(data))
        assert outcome.error is not None
        check(f"from_dict({change})", outcome, logs)

    def test_reprs_hide_the_password_but_the_dict_keeps_it(self, tmp_path: Path) -> None:
        for conninfo in (
            f"postgresql://me:{encoded()}@{CLOSED}/lab",
            f"postgresql://me@{CLOSED}/lab?password={URI_CANARY}",
            f"postgresql://me@{CLOSED}/lab?password={encoded()}&sslmode=disable",
        ):
            config = unreachable(tmp_path, connection_string=conninfo, experiment_id=EXP)
            assert_hidden(conninfo, repr(config), str(config), config.redacted_connection_string)
            assert_hidden(conninfo, repr(parse_locator(config.to_locator())))
            # Workers need it: the dict and the locator are complete (README, to_dict()).
            assert StoreConfig.from_dict(config.to_dict()) == config
            assert parse_to_config(config.to_locator()) == config
            job = RunJob(
                experiment_id=EXP,
                operation=cast("Operation", None),
                context={},
                context_fingerprint="",
                seed_base=0,
                store_config=config.to_dict(),
            )
            assert_hidden("RunJob", repr(job))

    def test_an_unreachable_server_and_the_fallback_hide_the_password(
        self, tmp_path: Path, logs: pytest.LogCaptureFixture
    ) -> None:
        config = unreachable(tmp_path, experiment_id=EXP)
        refused = attempt(config.connect)
        assert isinstance(refused.error, IndexUnavailableError)
        check("connect()", refused, logs)
        check("list_experiments()", attempt(unreachable(tmp_path).list_experiments), logs)
        fallback = dataclasses.replace(config, on_index_error="fallback")

        def use_the_files() -> object:
            with fallback.connect() as store:
                store.put_run_record(make_record(EXP))
                assert_hidden("store", repr(store), store.index)
                return store.list_run_records()

        outcome = attempt(use_the_files)
        assert outcome.error is None
        assert outcome.warnings, "the fallback warns"
        check("fallback", outcome, logs)

    def test_an_export_mismatch_hides_the_password(
        self, tmp_path: Path, logs: pytest.LogCaptureFixture
    ) -> None:
        source = str(file_source(tmp_path / "source"))
        destination = unreachable(tmp_path / "files", experiment_id="other:1")
        for target in (destination, destination.to_locator()):
            outcome = attempt(functools.partial(export_store, source, target))
            assert isinstance(outcome.error, ExperimentMismatchError)
            check("export_store mismatch", outcome, logs)


@pytest.fixture(scope="module")
def canary_url(postgres_url: str) -> Iterator[str]:
    """The server's URL as a role of the module's own whose password is the canary."""
    with login_role(postgres_url, URI_CANARY) as url:
        assert urlsplit(url).password == encoded()
        yield url


def live_locator(canary: str, schema: str, root: Path) -> str:
    joiner = "&" if "?" in canary else "?"
    return f"{canary}{joiner}file_root={quote(str(root))}&schema={schema}"


class TestWorkingStore:
    def test_a_working_store_shows_no_password_anywhere(
        self, canary_url: str, tmp_path: Path, logs: pytest.LogCaptureFixture
    ) -> None:
        schema = f"metalab_test_{uuid.uuid4().hex}"
        locator = live_locator(canary_url, schema, tmp_path / "files")
        config = parse_to_config(locator, experiment_id=EXP)
        assert isinstance(config, PostgresStoreConfig)

        def work() -> object:
            with config.connect() as store:
                store.put_run_record(make_record(EXP))
                store.rebuild_index()
                store.sync_index()
                assert_hidden("store", repr(config), str(config), repr(store), repr(store.index))
                return store.list_run_records()

        outcome = attempt(work)
        assert outcome.error is None, outcome.error
        check("a working store", outcome, logs)
        unscoped = parse_to_config(locator)
        assert isinstance(unscoped, PostgresStoreConfig)
        check("list_experiments()", attempt(unscoped.list_experiments), logs)
        out = tmp_path / "out"
        check("export out", attempt(lambda: export_store(locator, str(out))), logs)
        check("export in", attempt(lambda: export_store(str(out), locator)), logs)
        mismatch = attempt(lambda: export_store(str(out), f"{locator}&experiment_id=other:1"))
        assert isinstance(mismatch.error, ExperimentMismatchError)
        check("export mismatch", mismatch, logs)

        def load() -> object:
            results = load_results(locator, EXP)
            results.close()
            return results

        check("load_results", attempt(load), logs)


def metalab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metalab", "-v", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def leaf_commands() -> list[tuple[str, ...]]:
    """Every runnable ``metalab`` subcommand, read from the CLI's parser."""

    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups:
            yield prefix
        for group in groups:
            for name, child in group.choices.items():
                yield from walk(child, (*prefix, name))

    return sorted(set(walk(build_parser(), ())))


Argv = Callable[[str, Path], list[list[str]]]
"""Given a locator and a FileStore collection holding ``EXP``: the argument lists."""

LIVE_RUN: Final = "canary0000000001"
"""The run of the live store, with an artifact ``model``."""

LOCATOR_ARGS: Final[dict[tuple[str, ...], Argv]] = {
    ("artifacts", "get"): lambda loc, files: [
        [loc, LIVE_RUN, "model", "-o", "-"],
        [str(files), LIVE_RUN, loc],
    ],
    ("artifacts", "ls"): lambda loc, _files: [[loc, LIVE_RUN], [loc, LIVE_RUN, "--json"]],
    ("runs", "show"): lambda loc, files: [
        [loc, LIVE_RUN],
        [loc, LIVE_RUN[:8], "--json"],
        [str(files), LIVE_RUN, "--lines", loc],
    ],
    ("runs", "ls"): lambda loc, files: [
        [loc],
        [loc, "--experiment", EXP, "--format", "json"],
        [str(files), "--limit", loc],  # a locator in the wrong place: argparse quotes it
    ],
    ("runs", "note"): lambda loc, _files: [[loc, LIVE_RUN, "noted"], [loc, LIVE_RUN, "--clear"]],
    ("runs", "tag"): lambda loc, _files: [[loc, LIVE_RUN, "+seen", "-seen2", "--json"]],
    ("store", "export"): lambda loc, files: [
        ["--from", loc, "--to", str(files.parent / f"out-{uuid.uuid4().hex}")],
        ["--from", str(files), "--to", loc, "--experiment", EXP],
    ],
    ("store", "gc"): lambda loc, files: [[loc], [str(files), "--older-than", loc]],
    ("import", "mlflow"): lambda loc, files: [
        [str(mlruns(files.parent)), "--to", loc],
        [loc, "--to", str(files)],  # a locator where the MLflow store goes
    ],
    # metalab postgres takes no locator (it prints one, without a password): a locator
    # given where its directory goes is refused, and quoted without the password.
    ("postgres", "start"): lambda loc, files: [
        ["--data", loc],
        ["--data", str(files.parent / "pg"), "--port", loc],
    ],
    ("postgres", "stop"): lambda loc, _files: [["--data", loc]],
    ("postgres", "status"): lambda loc, _files: [["--data", loc, "--json"]],
    ("postgres", "logs"): lambda loc, _files: [["--data", loc]],
    ("postgres", "url"): lambda loc, _files: [["--data", loc]],
    # metalab ui serves until interrupted: here only with a store it cannot open, or a
    # locator in the wrong place; test_ui_serving_a_working_store_shows_no_password
    # serves a working one.
    ("ui",): lambda loc, _files: [[loc], [".", "--port", loc]],
    ("store", "info"): lambda loc, _files: [[loc], [loc, "--json"]],
    ("store", "ls"): lambda loc, _files: [[loc], [loc, "--json"]],
    ("store", "rebuild-index"): lambda loc, _files: [[loc]],
    ("store", "snapshot"): lambda loc, _files: [[loc, "--json"]],
    ("store", "sync-index"): lambda loc, _files: [[loc, "--json"]],
    ("store", "verify"): lambda loc, _files: [[loc, "--json"]],
}
"""How each subcommand receives a locator. A new subcommand needs an entry here."""

NEVER_EXIT_0: Final = {
    ("postgres", "start"),
    ("postgres", "stop"),
    ("postgres", "status"),
    ("postgres", "logs"),
    ("postgres", "url"),
}
"""Subcommands a locator never makes succeed: they take none. (``ui`` serves a working
store until stopped: test_ui_serving_a_working_store_shows_no_password covers it.)"""


def mlruns(where: Path) -> Path:
    """A one-run MLflow file store under ``where`` (made once), for ``import mlflow``."""
    root = where / "mlruns"
    run = root / "1" / "0123456789abcdef0123456789abcdef"
    if not run.exists():
        run.mkdir(parents=True)
        (root / "1" / "meta.yaml").write_text("experiment_id: '1'\nname: canary\n")
        (run / "meta.yaml").write_text(
            f"run_id: {run.name}\nstart_time: 1780000000000\nend_time: 1780000001000\n"
            "status: 3\nlifecycle_stage: active\n"
        )
    return root


CLI_SHAPES: Final = ("uri-raw", "uri-encoded", "query-raw", "kv-conninfo", "raw-at-in-host")
COMMANDS: Final = leaf_commands()


def test_every_subcommand_has_a_way_to_receive_a_locator() -> None:
    missing = [" ".join(c) for c in COMMANDS if c not in LOCATOR_ARGS]
    assert not missing, (
        f"'metalab {missing[0]}' (and {len(missing) - 1} more) has no entry in LOCATOR_ARGS "
        f"of {__file__}: add how it receives a locator, so that its output is checked "
        "for passwords"
    )
    stale = [" ".join(c) for c in LOCATOR_ARGS if c not in COMMANDS]
    assert not stale, f"LOCATOR_ARGS names subcommands the CLI no longer has: {stale}"


def run_all(jobs: dict[str, list[str]], cwd: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the CLI once per job, a few at a time (most wait on a refused connection)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = {name: pool.submit(metalab, *argv, cwd=cwd) for name, argv in jobs.items()}
        return {name: future.result() for name, future in done.items()}


def argv_lists(command: tuple[str, ...], locator: str, files: Path) -> list[list[str]]:
    if command not in LOCATOR_ARGS:
        pytest.fail(
            f"'metalab {' '.join(command)}' has no entry in LOCATOR_ARGS: add how it "
            "receives a locator",
            pytrace=False,
        )
    return [[*command, *args] for args in LOCATOR_ARGS[command](locator, files)]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_no_subcommand_shows_the_password_of_a_bad_or_unreachable_locator(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    files = file_source(tmp_path / "collection")
    all_locators = locators(tmp_path / "files")
    jobs = {
        f"{shape} #{i}": argv
        for shape in CLI_SHAPES
        for i, argv in enumerate(argv_lists(command, all_locators[shape], files))
    }
    for name, proc in run_all(jobs, tmp_path).items():
        where = f"metalab {' '.join(command)} ({name}), exit {proc.returncode}"
        if proc.returncode == 0:
            # Reporting commands (ls, info, gc) answer from the files when the index
            # cannot, and say so; nothing else may succeed with such a locator.
            said = proc.stdout + proc.stderr
            assert "the files answered instead" in said, f"{where} succeeded:\n{proc.stdout}"
        assert "Traceback" not in proc.stderr, f"{where}:\n{proc.stderr}"
        assert_hidden(where, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def live_collection(canary_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A locator with the canary as password on the real server, and a file collection.

    The schema belongs to the canary's role and goes with it.
    """
    schema = f"metalab_test_{uuid.uuid4().hex}"
    root = tmp_path_factory.mktemp("live")
    locator = live_locator(canary_url, schema, root / "files")
    with parse_to_config(locator, experiment_id=EXP).connect() as store:
        store.put_run_record(make_record(EXP, LIVE_RUN))
        store.put_artifact(LIVE_RUN, "model", b"weights")
    return locator, file_source(root / "collection")


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != ("ui",)], ids=" ".join)
def test_no_subcommand_shows_the_password_of_a_working_store(
    command: tuple[str, ...], live_collection: tuple[str, Path]
) -> None:
    locator, files = live_collection
    codes = []
    for i, argv in enumerate(argv_lists(command, locator, files)):
        proc = metalab(*argv, cwd=files)
        where = f"metalab {' '.join(command)} #{i}, exit {proc.returncode}"
        assert "Traceback" not in proc.stderr, f"{where}:\n{proc.stderr}"
        assert_hidden(where, proc.stdout, proc.stderr)
        codes.append(proc.returncode)
    if command not in NEVER_EXIT_0:
        assert 0 in codes, f"metalab {' '.join(command)} never worked on the live store: {codes}"


def test_ui_serving_a_working_store_shows_no_password(live_collection: tuple[str, Path]) -> None:
    import urllib.request  # noqa: PLC0415

    locator, files = live_collection
    server = subprocess.Popen(
        [sys.executable, "-m", "metalab", "-v", "ui", locator, "--port", "0"],
        cwd=files,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        url = first.split()[-1] if first.split() else ""
        assert url.startswith("http://127.0.0.1:"), first
        answers = [
            urllib.request.urlopen(f"{url.rstrip('/')}/api/{path}", timeout=30).read().decode()
            for path in ("info", "experiments")
        ]
        assert EXP in answers[1]
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert_hidden("metalab ui on a working store", first, *answers, out, err)
