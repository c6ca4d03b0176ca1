from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metalab.errors import LocatorError
from metalab.store.locator import parse_locator, redact


class TestParseLocatorPaths:
    @pytest.mark.parametrize("path", ["./experiments", "experiments", "/abs/dir", "../up"])
    def test_plain_paths_are_file_locators(self, path: str) -> None:
        info = parse_locator(path)
        assert info.scheme == "file"
        assert info.path == path

    def test_home_is_expanded(self) -> None:
        assert parse_locator("~/runs").path == str(Path.home() / "runs")

    def test_path_objects_are_accepted(self, tmp_path: Path) -> None:
        assert parse_locator(tmp_path).path == str(tmp_path)

    def test_windows_drive_paths_are_not_schemes(self) -> None:
        info = parse_locator("C:\\data\\runs")
        assert info.scheme == "file"
        assert info.path == "C:\\data\\runs"

    def test_file_uri_gives_the_decoded_path(self) -> None:
        info = parse_locator("file:///shared/my%20experiments")
        assert info.scheme == "file"
        assert info.path == "/shared/my experiments"

    def test_file_uri_with_localhost(self) -> None:
        assert parse_locator("file://localhost/x").path == "/x"


class TestParseLocatorUris:
    def test_parts_of_a_postgres_uri(self) -> None:
        info = parse_locator("postgresql://me:s3cret@db.example:5433/lab?file_root=/data&schema=x")
        assert (info.scheme, info.host, info.port, info.username) == (
            "postgresql",
            "db.example",
            5433,
            "me",
        )
        assert info.password == "s3cret"
        assert info.path == "/lab"
        assert dict(info.params) == {"file_root": "/data", "schema": "x"}

    def test_scheme_is_lower_cased(self) -> None:
        assert parse_locator("MyScheme://host/b").scheme == "myscheme"

    def test_password_is_hidden_from_repr(self) -> None:
        info = parse_locator("postgresql://me:s3cret@db/lab")
        assert "s3cret" not in repr(info)
        assert info.redacted() == "postgresql://me:***@db/lab"

    def test_custom_scheme_host_and_path(self) -> None:
        info = parse_locator("myscheme://my-endpoint/my-bucket")
        assert info.host == "my-endpoint"
        assert info.path.lstrip("/") == "my-bucket"


class TestParseLocatorErrors:
    @pytest.mark.parametrize("bad", ["", "   "])
    def test_empty_locator(self, bad: str) -> None:
        with pytest.raises(LocatorError, match="empty store locator"):
            parse_locator(bad)

    def test_nul_byte(self) -> None:
        with pytest.raises(LocatorError, match="NUL"):
            parse_locator("runs\x00/x")

    def test_file_uri_with_a_remote_host(self) -> None:
        with pytest.raises(LocatorError, match="three slashes"):
            parse_locator("file://server/share")

    def test_bad_port_hides_the_password(self) -> None:
        with pytest.raises(LocatorError) as info:
            parse_locator("postgresql://me:s3cret@db:notaport/lab")
        assert "s3cret" not in str(info.value)


class TestRedact:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
            ("postgresql://u@h/db", "postgresql://u@h/db"),
            ("postgresql://h/db?password=pw&x=1", "postgresql://h/db?password=***&x=1"),
            ("./plain/path", "./plain/path"),
        ],
    )
    def test_passwords_are_replaced(self, raw: str, expected: str) -> None:
        assert redact(raw) == expected

    @given(
        st.text(
            alphabet=st.characters(blacklist_characters="@/:?&#*", min_codepoint=33), min_size=1
        )
    )
    def test_any_password_disappears(self, password: str) -> None:
        assert redact(f"postgresql://user:{password}@host/db") == "postgresql://user:***@host/db"


def test_relative_paths_are_kept_relative_for_the_config_to_resolve() -> None:
    assert not Path(parse_locator("runs/x").path).is_absolute()
