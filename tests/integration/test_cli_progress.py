"""Long CLI commands draw a progress bar on a terminal, and only there."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import metalab
from metalab.cli._gc import collect_garbage
from metalab.store import FileStoreConfig, PostgresStoreConfig
from metalab.testing import run_cli


def _run_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run ``metalab ARGS`` with stderr on a pseudo-terminal; return (code, stdout, stderr)."""
    leader, follower = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "metalab", *args],
            stdout=subprocess.PIPE,
            stderr=follower,
            env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
        )
    finally:
        os.close(follower)
    drawn = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: every writer of the terminal is gone
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=60), out, drawn.decode(errors="replace")


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("progress")

    @metalab.operation
    def op(params: dict[str, Any], capture: metalab.Capture) -> None:
        capture.artifact("blob", b"x" * params["i"])
        capture.metric("i", params["i"])

    exp = metalab.Experiment(
        name="bars", version="1", operation=op, params=metalab.grid(i=list(range(1, 30)))
    )
    metalab.run(exp, store=root, progress=False).result()
    return root


@pytest.mark.parametrize(
    ("title", "command"),
    [
        ("verifying", ["store", "verify"]),
        ("counting files", ["store", "info"]),
        ("gc", ["store", "gc"]),
    ],
)
def test_long_file_store_commands_draw_a_bar_on_a_terminal(
    store_root: Path, title: str, command: list[str]
) -> None:
    code, out, drawn = _run_on_a_terminal(*command, str(store_root))
    assert code == 0, drawn
    assert title in drawn
    assert title not in out  # the bar goes to the terminal, the answer to stdout
    piped = run_cli(*command, str(store_root))
    assert piped.returncode == 0
    assert piped.stderr == ""  # no terminal: no bar
    assert piped.stdout == out


def test_export_draws_a_bar_on_a_terminal(store_root: Path, tmp_path: Path) -> None:
    code, out, drawn = _run_on_a_terminal(
        "store", "export", "--from", str(store_root), "--to", str(tmp_path / "copy")
    )
    assert code == 0, drawn
    assert "exporting" in drawn
    assert "copied" in out


def test_json_output_draws_no_bar_even_on_a_terminal(store_root: Path) -> None:
    code, _out, drawn = _run_on_a_terminal("store", "verify", str(store_root), "--json")
    assert code == 0
    assert drawn == ""


def test_sync_index_draws_a_bar_on_a_terminal(
    postgres_config: PostgresStoreConfig, store_root: Path
) -> None:
    config = postgres_config
    locator = (
        f"{config.connection_string}{'&' if '?' in config.connection_string else '?'}"
        f"file_root={store_root}&schema={config.schema}"
    )
    code, out, drawn = _run_on_a_terminal("store", "sync-index", locator)
    assert code == 0, drawn
    assert "syncing index" in drawn
    assert "indexed: " in out


def test_sync_index_reports_each_changed_file_it_indexes(
    postgres_config: PostgresStoreConfig, store_root: Path
) -> None:
    config = PostgresStoreConfig(
        connection_string=postgres_config.connection_string,
        file_root=str(store_root),
        schema=postgres_config.schema,
    )
    calls: list[tuple[int, int | None]] = []
    with config.connect() as store:
        report = store.sync_index(progress=lambda done, total: calls.append((done, total)))
    assert report.indexed > 29  # records, derived documents and the manifest
    assert calls[0] == (0, None)  # listing the files: no total yet
    assert calls[-1] == (report.indexed, report.indexed)
    assert [done for done, _ in calls[1:]] == sorted(done for done, _ in calls[1:])


def test_gc_reports_its_steps(store_root: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    with FileStoreConfig(root=str(store_root)).connect() as store:
        collect_garbage(
            store,
            older_than=dt.timedelta(hours=1),
            apply=False,
            progress=lambda done, total: calls.append((done, total)),
        )
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
