"""Usage mistakes on the command line: exit code 2, one line that speaks CLI, a hint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from metalab._display import short_ids
from metalab.store import FileStoreConfig
from metalab.testing import run_cli
from metalab.testing.store import make_record


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
        (["stor", "ls"], "did you mean 'store'?"),
        (["store", "lss"], "did you mean 'ls'?"),
        (["store", "verfy"], "did you mean 'verify'?"),
        (["runs", "lst"], "did you mean 'ls'?"),
    ],
)
def test_a_mistyped_subcommand_suggests_the_closest(args: list[str], expected: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "invalid choice: " in last_line(proc)
    assert last_line(proc).endswith(expected)


def test_a_subcommand_nothing_like_any_gets_no_guess() -> None:
    proc = run_cli("frobnicate")
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
    proc = run_cli("runs", "ls", str(store), "--limit", value)
    assert proc.returncode == 2
    assert last_line(proc) == f"metalab runs ls: error: {expected}"


def test_a_limit_of_zero_lists_nothing(store: Path) -> None:
    proc = run_cli("runs", "ls", str(store), "--limit", "0", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_rebuilding_a_filestores_index_says_which_store_has_one(store: Path) -> None:
    proc = run_cli("store", "rebuild-index", str(store))
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


class TestRunsLs:
    """What a person looks for in ``runs ls``: short ids, seconds, chosen columns, a limit."""

    @pytest.fixture
    def sweep(self, tmp_path: Path) -> Path:
        config = FileStoreConfig(root=str(tmp_path / "sweep"), experiment_id="s:1")
        with config.connect() as files:
            records = []
            for i in range(60):
                base = make_record("s:1", f"{i:04x}" + "ab" * 6)
                params = {"lr": [0.1, 0.01][i % 2], "opt": "adam", "i": i}
                record = msgspec.structs.replace(base, params=params)
                if i == 7:
                    record = record.failed(ValueError("diverged"), finished_at=record.started_at)
                records.append(record)
            files.put_run_records(records)
        return tmp_path / "sweep"

    def test_a_table_shows_short_ids_seconds_and_the_params_that_vary(self, sweep: Path) -> None:
        proc = run_cli("runs", "ls", str(sweep), "--experiment", "s:1", "--sort", "params.i")
        assert proc.returncode == 0, proc.stderr
        header, first, *rest = proc.stdout.splitlines()
        assert header.split() == [
            "run_id", "status", "started_at", "duration_ms", "error", "params.i", "params.lr",
            "metrics.loss", "metrics.ok", "metrics.steps",
        ]  # fmt: skip
        # 'opt' is the same in every run: not a column. Ids: 8 characters.
        assert first.split()[:4] == ["0000abab", "success", "2024-05-06", "07:08:09"]
        failed = next(line for line in rest if line.startswith("0007abab"))
        assert failed.split()[1] == "failed"
        assert "ValueError" in failed.split()
        assert len(rest) == 49  # the default limit, 50
        assert proc.stderr == "metalab: 50 of 60 runs shown; --limit N or --all shows more\n"

    def test_all_and_limit(self, sweep: Path) -> None:
        every = run_cli("runs", "ls", str(sweep), "--experiment", "s:1", "--all")
        assert len(every.stdout.splitlines()) == 61
        assert every.stderr == ""
        three = run_cli("runs", "ls", str(sweep), "--experiment", "s:1", "--limit", "3")
        assert len(three.stdout.splitlines()) == 4
        assert "3 of 60 runs shown" in three.stderr
        both = run_cli("runs", "ls", str(sweep), "--limit", "3", "--all")
        assert both.returncode == 2

    def test_chosen_columns_and_json_keep_ids_and_times_whole(self, sweep: Path) -> None:
        proc = run_cli(
            "runs", "ls", str(sweep), "--experiment", "s:1", "--columns", "status,params.lr",
            "--where", "params.i == 7", "--format", "json",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == [
            {"run_id": "0007" + "ab" * 6, "status": "failed", "params.lr": 0.01,
             "error": "ValueError"},
        ]  # fmt: skip

    def test_an_unknown_column_is_a_usage_error(self, sweep: Path) -> None:
        proc = run_cli("runs", "ls", str(sweep), "--columns", "status,lr")
        assert proc.returncode == 2
        assert "--columns: unknown column 'lr'; use params.NAME" in proc.stderr

    def test_a_closed_pipe_ends_quietly(self, sweep: Path) -> None:
        command = f"{sys.executable} -m metalab runs ls {sweep} --all | head -1"
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        assert proc.stdout.startswith("run_id")


def test_short_ids_grow_only_where_they_must() -> None:
    ids = ["abcdef0123", "abcdef0199", "ffff00001111", "abcdef01"]
    assert short_ids(ids) == {
        "abcdef0123": "abcdef012",
        "abcdef0199": "abcdef019",
        "ffff00001111": "ffff0000",
        "abcdef01": "abcdef01",
    }


def leaf_commands() -> list[list[str]]:
    """Every subcommand, read from the parser (a new one is covered without a change here)."""
    import argparse  # noqa: PLC0415 -- only the parser walk needs it

    from metalab.cli import build_parser  # noqa: PLC0415

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [prefix]
        return [
            command
            for name, child in subs[0].choices.items()
            for command in walk(child, [*prefix, name])
        ]

    return walk(build_parser(), [])


@pytest.mark.parametrize("command", leaf_commands(), ids=" ".join)
def test_every_subcommand_has_an_example_in_its_help(command: list[str]) -> None:
    proc = run_cli(*command, "--help")
    assert proc.returncode == 0
    flat = " ".join(proc.stdout.split())
    assert f"Example: metalab {' '.join(command)} " in flat, proc.stdout


def test_rebuild_index_speaks_json(store: Path) -> None:
    # A FileStore has no index: the JSON flag is accepted, and the error is the usual one.
    proc = run_cli("store", "rebuild-index", str(store), "--json")
    assert proc.returncode == 2
    assert "SupportsIndexRebuild" in proc.stderr
