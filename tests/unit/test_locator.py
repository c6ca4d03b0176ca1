from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import assume, given
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

    @pytest.mark.parametrize(
        "locator",
        [
            "postgresql://metalab@127.0.0.1:5432/metalab?passfile=/srv/pg/passfile?file_root=/d",
            "postgresql://me:s3cret@db/lab?file_root=/data?schema=x",
            "memory://lab?experiment_id=a?b",
        ],
    )
    def test_a_second_question_mark_is_refused(self, locator: str) -> None:
        # Appended with '?' to a locator holding one, file_root would silently
        # become the end of the passfile's name.
        with pytest.raises(LocatorError, match="second '\\?' in its query") as info:
            parse_locator(locator)
        assert "join its parameters with '&'" in str(info.value)
        assert "%3F" in str(info.value)
        assert "s3cret" not in str(info.value)

    def test_a_percent_encoded_question_mark_is_a_value(self) -> None:
        info = parse_locator(
            "postgresql://metalab@127.0.0.1:5432/metalab"
            "?passfile=/srv/why%3F/passfile&file_root=/data/a%3Fb"
        )
        assert dict(info.params) == {"passfile": "/srv/why?/passfile", "file_root": "/data/a?b"}

    def test_a_question_mark_in_a_plain_path_is_a_name(self) -> None:
        assert parse_locator("/data/why?/runs?x").path == "/data/why?/runs?x"

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


class TestRedactEveryShape:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("postgresql://me:ab/cd@db/lab", "postgresql://me:***@db/lab"),
            ("postgresql://me:a@b:c%3D@db:5432/lab", "postgresql://me:***@db:5432/lab"),
            ("postgres://:pw@db/lab", "postgres://:***@db/lab"),
            ("POSTGRESQL://me:pw@db/lab", "POSTGRESQL://me:***@db/lab"),
            ("postgresql://me:a b'c@db/lab", "postgresql://me:***@db/lab"),
            ("postgresql://db/lab?sslpassword=pw", "postgresql://db/lab?sslpassword=***"),
            ("postgresql://db/lab?%70assword=p/w@x&a=1", "postgresql://db/lab?%70assword=***&a=1"),
            ("host=db password=pw dbname=lab", "host=db password=*** dbname=lab"),
            ("host=db password = 'a b\\' c' dbname=lab", "host=db password = *** dbname=lab"),
            ("host=db password=a\\ b dbname=lab", "host=db password=*** dbname=lab"),
            ("password='unterminated dbname=lab", "password=***"),
            ("postgresql://host:5432/db", "postgresql://host:5432/db"),
        ],
    )
    def test_a_locator_or_conninfo_loses_its_password(self, raw: str, expected: str) -> None:
        assert redact(raw) == expected

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                "cannot reach 'postgresql://me:ab/c@d@db/lab': refused; ask admin@example.org",
                "cannot reach 'postgresql://me:***@db/lab': refused; ask admin@example.org",
            ),
            (
                "invalid value: \"host=db password='a\\\\'b' x=1\"",
                'invalid value: "host=db password=*** x=1"',
            ),
            (
                "see postgresql://db/lab?password=pw&sslmode=require for details",
                "see postgresql://db/lab?password=***&sslmode=require for details",
            ),
        ],
    )
    def test_text_quoting_a_locator_loses_the_password_only(self, text: str, expected: str) -> None:
        assert redact(text) == expected

    @given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1))
    def test_any_password_is_hidden_whole_in_both_uri_forms(self, password: str) -> None:
        # A password that itself spells "password=" makes redact hide even more.
        assume("password" not in unquote(password).lower())
        assert redact(f"postgresql://user:{password}@host/db") == "postgresql://user:***@host/db"
        value = password.replace("&", "")  # a raw '&' ends a query value, for libpq too
        assert (
            redact(f"postgresql://user@host/db?password={value}")
            == "postgresql://user@host/db?password=***"
        )

    def test_redacting_twice_changes_nothing(self) -> None:
        once = redact("postgresql://me:a/b@c@db/lab?password=x host=a password='b c'")
        assert redact(once) == once


class TestLocatorsNeverShowPasswords:
    def test_a_parse_error_quotes_neither_the_password_nor_urllib(self) -> None:
        with pytest.raises(LocatorError) as info:
            parse_locator("postgresql://me:Secret/Pass@db/lab")
        assert "Secret" not in str(info.value)
        assert "%2F" in str(info.value)  # says how to write it
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__

    def test_a_file_locator_with_a_user_hides_the_password(self) -> None:
        with pytest.raises(LocatorError, match="three slashes") as info:
            parse_locator("file://me:s3cret@server/share")
        assert "s3cret" not in str(info.value)

    @pytest.mark.parametrize(
        "conninfo", ["host=db password=s3cret dbname=lab", "dbname=lab password='s3 cret'"]
    )
    def test_a_conninfo_given_as_a_path_is_refused(self, conninfo: str) -> None:
        with pytest.raises(LocatorError, match="not a URI") as info:
            parse_locator(conninfo)
        assert "s3" not in str(info.value)

    def test_repr_hides_a_password_parameter(self) -> None:
        info = parse_locator("postgresql://me@db/lab?password=s3cret&sslmode=require")
        assert "s3cret" not in repr(info)
        assert "'sslmode': 'require'" in repr(info)
