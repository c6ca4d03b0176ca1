"""Passwords in connection strings never reach reprs, errors or logs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from metalab.errors import IndexStaleWarning, IndexUnavailableError, LocatorError
from metalab.store import PostgresStoreConfig, create_store, parse_to_config
from metalab.testing.postgres import login_role
from metalab.testing.store import make_record

PASSWORD = "hunter2-Tr0ub4dor"
EXP = "secret:1"


@pytest.fixture
def password_url(postgres_url: str) -> Iterator[str]:
    """The server's URL as a role of the test's own that logs in with ``PASSWORD``."""
    with login_role(postgres_url, PASSWORD) as url:
        assert urlsplit(url).password == PASSWORD
        yield url


def assert_hidden(*texts: object) -> None:
    for text in texts:
        assert PASSWORD not in str(text)


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records]


class TestPasswordsNeverLeak:
    def test_a_working_store_never_shows_its_password(
        self, password_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        joiner = "&" if "?" in password_url else "?"
        locator = f"{password_url}{joiner}schema=metalab_test_{uuid.uuid4().hex}"
        config = parse_to_config(locator, file_root=str(tmp_path), experiment_id=EXP)
        assert isinstance(config, PostgresStoreConfig)
        with config.connect() as store:
            store.put_run_record(make_record(EXP))
            store.rebuild_index()
            store.sync_index()
            assert_hidden(repr(config), str(config), repr(store), store.index)
        assert PASSWORD in config.to_locator()
        assert_hidden(*logged(caplog))

    @pytest.mark.parametrize(
        "url",
        [
            f"postgresql://me:{PASSWORD}@127.0.0.1:1/lab",
            f"postgresql://me@127.0.0.1:1/lab?password={PASSWORD}",
        ],
    )
    def test_an_unreachable_server_reports_without_the_password(
        self, url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        config = PostgresStoreConfig(
            connection_string=url, file_root=str(tmp_path), pool_timeout=0.5, connect_timeout=1
        )
        with pytest.raises(IndexUnavailableError) as info:
            config.connect()
        error = info.value
        assert_hidden(str(error), repr(error), error.args, error.__cause__, repr(config))
        assert_hidden(*logged(caplog))

    def test_the_fallback_warning_and_logs_hide_the_password(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        config = PostgresStoreConfig(
            connection_string=f"postgresql://me:{PASSWORD}@127.0.0.1:1/lab",
            file_root=str(tmp_path),
            experiment_id=EXP,
            pool_timeout=0.5,
            connect_timeout=1,
            on_index_error="fallback",
        )
        with config.connect() as store:
            with pytest.warns(IndexStaleWarning) as caught:
                store.put_run_record(make_record(EXP))
            assert_hidden(*(w.message for w in caught))
            with pytest.warns(IndexStaleWarning) as read_warning:
                assert len(store.list_run_records()) == 1
            assert_hidden(*(w.message for w in read_warning))
        assert_hidden(*logged(caplog))

    def test_a_locator_error_hides_the_password(self) -> None:
        with pytest.raises(LocatorError) as info:
            create_store(f"postgresql://me:{PASSWORD}@db/lab")
        assert_hidden(str(info.value), info.value.args)
