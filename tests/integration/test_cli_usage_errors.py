"""Usage mistakes on the command line: exit code 2, one line that speaks CLI, a hint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metalab.store import FileStoreConfig
from metalab.testing.store import make_record


def metalab_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metalab", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    with FileStoreConfig(root=str(tmp_path), experiment_id="u:1").connect() as files:
        files.put_run_record(make_record("u:1", "r1"))
    return tmp_path


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["stor", "ls"],
            "invalid choice: 'stor' (choose from 'store', 'runs'); did you mean 'store'?",
        ),
        (["store", "lss"], "did you mean 'ls'?"),
        (["store", "verfy"], "did you mean 'verify'?"),
        (["runs", "lst"], "did you mean 'ls'?"),
    ],
)
def test_a_mistyped_subcommand_suggests_the_closest(args: list[str], expected: str) -> None:
    proc = metalab_cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert last_line(proc).endswith(expected)


def test_a_subcommand_nothing_like_any_gets_no_guess() -> None:
    proc = metalab_cli("frobnicate")
    assert proc.returncode == 2
    assert "did you mean" not in proc.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1", "argument --limit: expected 0 or more, got -1"),
        ("ten", "argument --limit: expected a whole number, got 'ten'"),
    ],
)
def test_a_bad_limit_speaks_cli(store: Path, value: str, expected: str) -> None:
    proc = metalab_cli("runs", "ls", str(store), "--limit", value)
    assert proc.returncode == 2
    assert last_line(proc) == f"metalab runs ls: error: {expected}"


def test_a_limit_of_zero_lists_nothing(store: Path) -> None:
    proc = metalab_cli("runs", "ls", str(store), "--limit", "0", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_rebuilding_a_filestores_index_says_which_store_has_one(store: Path) -> None:
    proc = metalab_cli("store", "rebuild-index", str(store))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "metalab: error: metalab store rebuild-index needs a store that implements "
        "SupportsIndexRebuild, but FileStore does not; only an indexed store has it: a "
        "PostgresStore over the same files"
    )


def test_a_missing_driver_is_one_line_with_the_command_that_installs_it(store: Path) -> None:
    # psycopg made unimportable in the child, as on a machine without the extra.
    code = (
        "import sys; sys.modules['psycopg'] = None; sys.modules['psycopg_pool'] = None\n"
        "from metalab.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    locator = f"postgresql://me@127.0.0.1:1/db?file_root={store}"
    proc = subprocess.run(
        [sys.executable, "-c", code, "store", "ls", locator],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        "metalab: error: PostgresStore needs 'psycopg', which is not installed: "
        "pip install 'metalab[postgres]'\n"
    )
