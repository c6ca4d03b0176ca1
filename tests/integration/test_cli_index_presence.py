"""Readers create no index, and an index answers only for the files it was built from.

The real ``metalab`` command in subprocesses, against a real PostgreSQL server.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

import metalab
from metalab.errors import ConfigError, IndexMissingError
from metalab.store import FileStoreConfig, PostgresStore, PostgresStoreConfig
from metalab.testing import run_cli

EXP = "presence:1"


def _locator(config: PostgresStoreConfig, file_root: Path | str) -> str:
    joiner = "&" if "?" in config.connection_string else "?"
    return (
        f"{config.connection_string}{joiner}file_root={quote(str(file_root))}"
        f"&schema={config.schema}"
    )


def _schema_exists(config: PostgresStoreConfig) -> bool:
    with psycopg.connect(config.connection_string) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (config.schema,)
        ).fetchone()
    return row is not None


def _file_root_recorded(config: PostgresStoreConfig) -> str:
    with psycopg.connect(config.connection_string) as conn:
        row = conn.execute(
            psycopg.sql.SQL("SELECT file_root FROM {}").format(
                psycopg.sql.Identifier(config.schema, "metalab_meta")
            )
        ).fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A FileStore with three runs of one experiment, and no index anywhere."""
    root = tmp_path / "files"
    op = metalab.operation(lambda params, capture: capture.metric("x", params["i"]))
    exp = metalab.Experiment(
        name="presence", version="1", operation=op, params=metalab.grid(i=[1, 2, 3])
    )
    metalab.run(exp, store=root, progress=False).result()
    return root


@pytest.fixture
def fresh(postgres_config: PostgresStoreConfig) -> Iterator[PostgresStoreConfig]:
    """A config whose schema does not exist yet (dropped afterwards if made)."""
    config = PostgresStoreConfig(
        connection_string=postgres_config.connection_string,
        file_root=postgres_config.file_root,
        schema=f"fresh_{uuid.uuid4().hex[:12]}",
    )
    yield config
    with psycopg.connect(config.connection_string, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                psycopg.sql.Identifier(config.schema)
            )
        )


class TestReadersCreateNothing:
    @pytest.mark.parametrize(
        ("command", "code"),
        [
            (["store", "ls"], 0),
            (["store", "info"], 0),
            (["runs", "ls"], 0),
            (["store", "verify"], 1),  # a missing index is a problem verify reports
        ],
    )
    def test_on_an_empty_schema_a_reader_says_there_is_no_index_and_creates_none(
        self, fresh: PostgresStoreConfig, files: Path, command: list[str], code: int
    ) -> None:
        locator = _locator(fresh, files)
        if command[0] == "runs":
            command = [*command, "--experiment", EXP]
        result = run_cli(*command, locator, "--json")
        assert result.returncode == code, result.stderr
        assert not _schema_exists(fresh)  # not even the schema
        data = json.loads(result.stdout)
        if command[0] == "runs":
            assert len(data) == 3  # the files answered
            assert "no metalab index in schema" in result.stderr
        else:
            assert data["index"] == "missing"
            assert data["index_problem"].startswith(
                f"there is no metalab index in schema {fresh.schema!r} of "
            )
            assert "'metalab store rebuild-index LOCATOR' builds it" in data["index_problem"]

    def test_the_plain_output_says_how_to_build_it_then_rebuild_index_does(
        self, fresh: PostgresStoreConfig, files: Path
    ) -> None:
        locator = _locator(fresh, files)
        ls = run_cli("store", "ls", locator)
        assert ls.returncode == 0
        assert f"{EXP}  3" in ls.stdout.replace("   ", "  ")
        assert ls.stderr.startswith("metalab: warning: there is no metalab index in schema")
        assert len(ls.stderr.splitlines()) == 1
        built = run_cli("store", "rebuild-index", locator, "--json")
        assert built.returncode == 0, built.stderr
        assert json.loads(built.stdout)["indexed"] == 3
        after = run_cli("store", "ls", locator, "--json")
        assert json.loads(after.stdout)["index"] == "up to date"

    def test_an_index_of_another_layout_is_left_as_it_is(
        self, fresh: PostgresStoreConfig, files: Path
    ) -> None:
        config = PostgresStoreConfig(
            connection_string=fresh.connection_string, file_root=str(files), schema=fresh.schema
        )
        config.connect().close()  # a writer creates the index
        with psycopg.connect(config.connection_string, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("UPDATE {} SET schema_version = 0").format(
                    psycopg.sql.Identifier(config.schema, "metalab_meta")
                )
            )
        info = run_cli("store", "info", _locator(config, files), "--json")
        assert info.returncode == 0
        assert "an index of layout version 0" in json.loads(info.stdout)["index_problem"]
        with psycopg.connect(config.connection_string) as conn:
            row = conn.execute(
                psycopg.sql.SQL("SELECT schema_version FROM {}").format(
                    psycopg.sql.Identifier(config.schema, "metalab_meta")
                )
            ).fetchone()
        assert row == (0,)  # not dropped by a reader

    def test_the_library_reader_mode_raises_by_its_policy(
        self, fresh: PostgresStoreConfig, files: Path
    ) -> None:
        config = PostgresStoreConfig(
            connection_string=fresh.connection_string, file_root=str(files), schema=fresh.schema
        )
        with pytest.raises(IndexMissingError, match="nothing was created"):
            PostgresStore.open(config, create_index=False)
        assert not _schema_exists(config)


class TestAnIndexAnswersForItsOwnFiles:
    def test_another_file_root_is_an_error_of_one_line_with_the_fix(
        self, fresh: PostgresStoreConfig, files: Path, tmp_path: Path
    ) -> None:
        config = PostgresStoreConfig(
            connection_string=fresh.connection_string, file_root=str(files), schema=fresh.schema
        )
        PostgresStore.from_filestore(config, FileStoreConfig(root=str(files)).connect()).close()
        other = tmp_path / "other"
        other.mkdir()
        for command in (["store", "ls"], ["store", "info"], ["store", "verify"]):
            result = run_cli(*command, _locator(config, other))
            assert result.returncode == 2, result.stderr
            assert result.stdout == ""
            (line,) = result.stderr.splitlines()
            assert line.startswith("metalab: error: the postgres index")
            assert f"built from the files under {str(files)!r}, not {str(other)!r}" in line
            assert "--file-root-moved" in line

    def test_moved_files_are_indexed_where_they_are_now(
        self, fresh: PostgresStoreConfig, files: Path, tmp_path: Path
    ) -> None:
        config = PostgresStoreConfig(
            connection_string=fresh.connection_string, file_root=str(files), schema=fresh.schema
        )
        assert run_cli("store", "rebuild-index", _locator(config, files)).returncode == 0
        moved = tmp_path / "moved"
        files.rename(moved)
        locator = _locator(config, moved)
        refused = run_cli("store", "ls", locator)
        assert refused.returncode == 2
        # A scoped store cannot record the new root of every experiment.
        scoped = run_cli(
            "store", "rebuild-index", f"{locator}&experiment_id={quote(EXP)}", "--file-root-moved"
        )
        assert scoped.returncode == 2
        assert "rebuild the whole index" in scoped.stderr
        rebuilt = run_cli("store", "rebuild-index", locator, "--file-root-moved", "--json")
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert json.loads(rebuilt.stdout)["indexed"] == 3
        assert _file_root_recorded(config) == str(moved)
        ls = run_cli("store", "ls", locator, "--json")
        assert ls.returncode == 0, ls.stderr
        data = json.loads(ls.stdout)
        assert data["index"] == "up to date"
        assert data["experiments"][0]["runs"] == 3
        # The old root is now the other one.
        files.mkdir()
        assert run_cli("store", "ls", _locator(config, files)).returncode == 2

    def test_sync_index_names_the_rebuild_that_adopts_a_moved_root(
        self, fresh: PostgresStoreConfig, files: Path, tmp_path: Path
    ) -> None:
        config = PostgresStoreConfig(
            connection_string=fresh.connection_string, file_root=str(files), schema=fresh.schema
        )
        config.connect().close()
        moved = tmp_path / "moved"
        files.rename(moved)
        result = run_cli("store", "sync-index", _locator(config, moved))
        assert result.returncode == 2
        assert "'metalab store rebuild-index LOCATOR --file-root-moved'" in result.stderr
        assert _file_root_recorded(config) == str(files)

    def test_files_gone_from_under_their_index_are_an_error(
        self, fresh: PostgresStoreConfig, files: Path
    ) -> None:
        config = PostgresStoreConfig(
            connection_string=fresh.connection_string, file_root=str(files), schema=fresh.schema
        )
        config.connect().close()
        files.rename(files.with_name("elsewhere"))
        with pytest.raises(ConfigError, match="which do not exist: mount or restore them"):
            config.connect()
        assert not files.exists()  # not laid down again as an empty store

    def test_file_root_moved_is_for_stores_with_an_index(self, files: Path) -> None:
        result = run_cli("store", "rebuild-index", str(files), "--file-root-moved")
        assert result.returncode == 2
        assert "--file-root-moved is for a store with an index" in result.stderr
