from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

from metalab.errors import (
    ConfigError,
    LocatorError,
    MissingDependencyError,
)
from metalab.store import PostgresStoreConfig, StoreConfig, parse_to_config
from metalab.store.locator import parse_locator

SECRET = "s3cr:t@pw"
URI_WITH_PASSWORD = "postgresql://me:s3cr%3At%40pw@db.example:5433/lab"


def config(**fields: object) -> PostgresStoreConfig:
    values: dict[str, object] = {
        "connection_string": "postgresql://me@localhost/lab",
        "file_root": "/data/runs",
        **fields,
    }
    return PostgresStoreConfig(**values)  # type: ignore[arg-type]


class TestPostgresStoreConfigFromLocator:
    @pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
    def test_both_schemes_parse_to_the_postgres_config(self, scheme: str) -> None:
        parsed = parse_to_config(f"{scheme}://me@db:5432/lab?file_root=/data")
        assert isinstance(parsed, PostgresStoreConfig)
        assert parsed.connection_string == f"{scheme}://me@db:5432/lab"
        assert parsed.file_root == "/data"

    def test_metalab_parameters_are_removed_and_libpq_ones_kept(self) -> None:
        parsed = parse_to_config(
            "postgresql://me@db/lab?sslmode=require&file_root=/data&schema=ml"
            "&experiment_id=exp:1&host=/run/sock&pool_max_size=8&on_index_error=fallback"
        )
        assert isinstance(parsed, PostgresStoreConfig)
        assert parsed.connection_string == "postgresql://me@db/lab?sslmode=require&host=/run/sock"
        assert (parsed.schema, parsed.experiment_id) == ("ml", "exp:1")
        assert (parsed.pool_max_size, parsed.on_index_error) == (8, "fallback")

    def test_timeouts_and_pool_sizes_are_typed(self) -> None:
        parsed = parse_to_config(
            "postgresql://db/lab?file_root=/d&connect_timeout=2.5&pool_timeout=7&pool_min_size=0"
        )
        assert isinstance(parsed, PostgresStoreConfig)
        assert (parsed.connect_timeout, parsed.pool_timeout, parsed.pool_min_size) == (2.5, 7.0, 0)

    def test_keywords_supply_and_override_the_locator(self) -> None:
        parsed = parse_to_config(
            "postgresql://localhost/db?schema=a", file_root="/path/to/files", schema="b"
        )
        assert isinstance(parsed, PostgresStoreConfig)
        assert (parsed.file_root, parsed.schema) == ("/path/to/files", "b")

    def test_percent_encoded_values_are_decoded(self) -> None:
        parsed = parse_to_config("postgresql://db/lab?file_root=/my%20runs/a%2Bb&schema=x%26y")
        assert isinstance(parsed, PostgresStoreConfig)
        assert (parsed.file_root, parsed.schema) == ("/my runs/a+b", "x&y")

    @pytest.mark.parametrize(
        "locator", ["postgresql://localhost/db", "postgres://me:pw@db/lab?schema=x"]
    )
    def test_a_locator_without_file_root_says_how_to_add_it(self, locator: str) -> None:
        with pytest.raises(LocatorError) as info:
            parse_to_config(locator)
        message = str(info.value)
        assert "?file_root=" in message
        assert "file_root=" in message.replace("?file_root=", "")

    def test_an_unknown_keyword_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="unknown PostgresStoreConfig option"):
            parse_to_config("postgresql://db/lab?file_root=/d", fileroot="/x")

    @pytest.mark.parametrize(
        ("param", "value"), [("pool_max_size", "many"), ("pool_timeout", "soon")]
    )
    def test_a_value_of_the_wrong_type_is_a_locator_error(self, param: str, value: str) -> None:
        with pytest.raises(LocatorError, match=param):
            parse_to_config(f"postgresql://db/lab?file_root=/d&{param}={value}")

    def test_a_non_postgres_locator_is_refused(self) -> None:
        with pytest.raises(LocatorError, match="not a PostgreSQL locator"):
            PostgresStoreConfig.from_locator(parse_locator("memory://x"), file_root="/d")


class TestPostgresStoreConfigValidation:
    def test_file_root_is_made_absolute(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        assert config(file_root="runs/../files").file_root == str(tmp_path / "files")
        assert config(file_root="~/x").file_root == str(Path.home() / "x")

    def test_a_config_without_file_root_says_how_to_add_it(self) -> None:
        with pytest.raises(LocatorError, match=r"\?file_root=.*file_root="):
            PostgresStoreConfig(connection_string="postgresql://db/lab")

    @pytest.mark.parametrize(
        "conninfo", ["host=db dbname=lab", "mysql://db/lab", "", "postgresql://db/lab#x"]
    )
    def test_the_connection_string_must_be_a_postgres_uri(self, conninfo: str) -> None:
        with pytest.raises(LocatorError):
            config(connection_string=conninfo)

    def test_metalab_parameters_inside_the_connection_string_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="file_root"):
            config(connection_string="postgresql://db/lab?file_root=/elsewhere")

    @pytest.mark.parametrize("schema", ["", "x" * 64, "a\x00b"])
    def test_an_invalid_schema_name_is_refused(self, schema: str) -> None:
        with pytest.raises(ConfigError, match="schema"):
            config(schema=schema)

    def test_any_other_schema_name_is_allowed(self) -> None:
        assert config(schema='Robert"); DROP TABLE runs;--').schema.startswith("Robert")

    @pytest.mark.parametrize(
        "sizes",
        [{"pool_min_size": -1}, {"pool_max_size": 0}, {"pool_min_size": 5, "pool_max_size": 2}],
    )
    def test_invalid_pool_sizes_are_refused(self, sizes: dict[str, int]) -> None:
        with pytest.raises(ConfigError, match="pool sizes"):
            config(**sizes)

    @pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "10"])
    def test_invalid_timeouts_are_refused(self, value: object) -> None:
        with pytest.raises(ConfigError, match="pool_timeout"):
            config(pool_timeout=value)

    def test_an_unknown_index_error_policy_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="on_index_error"):
            config(on_index_error="ignore")

    def test_an_invalid_experiment_id_is_refused(self) -> None:
        with pytest.raises(ConfigError):
            config(experiment_id="../escape")


class TestPostgresStoreConfigRoundTrips:
    def test_the_locator_parses_back_to_the_same_config(self) -> None:
        original = config(
            connection_string="postgres://me:pw@db:5433/lab?sslmode=require",
            file_root="/data/my runs+more",
            schema="ml&co",
            experiment_id="exp:1.0",
            pool_max_size=9,
            pool_timeout=2.5,
            on_index_error="fallback",
        )
        assert parse_to_config(original.to_locator()) == original

    def test_dict_and_pickle_round_trip(self) -> None:
        original = config(schema="ml", experiment_id="e:1", connect_timeout=3)
        assert StoreConfig.from_dict(original.to_dict()) == original
        assert pickle.loads(pickle.dumps(original)) == original

    def test_to_dict_leaves_defaults_out(self) -> None:
        assert config().to_dict() == {
            "connection_string": "postgresql://me@localhost/lab",
            "file_root": "/data/runs",
            "_type": "postgresql",
        }

    def test_a_dict_without_file_root_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="file_root"):
            StoreConfig.from_dict({"_type": "postgres", "connection_string": "postgresql://db/x"})


class TestPostgresStoreConfigCollections:
    def test_for_experiment_scopes_the_collection_config(self) -> None:
        scoped = config().for_experiment("exp:1")
        assert scoped.experiment_id == "exp:1"
        assert scoped.is_scoped

    def test_a_scoped_config_cannot_list_experiments_or_rescope(self) -> None:
        scoped = config(experiment_id="exp:1")
        with pytest.raises(ConfigError, match="unscoped"):
            scoped.list_experiments()
        with pytest.raises(ConfigError, match="unscoped"):
            scoped.for_experiment("exp:2")


class TestPasswordsNeverShown:
    def test_repr_hides_the_password_of_the_uri(self) -> None:
        shown = repr(config(connection_string=URI_WITH_PASSWORD))
        assert SECRET not in shown
        assert "s3cr%3At%40pw" not in shown
        assert "me:***@db.example" in shown

    def test_repr_hides_a_password_parameter(self) -> None:
        shown = repr(config(connection_string="postgresql://db/lab?password=hunter2"))
        assert "hunter2" not in shown

    def test_errors_about_the_locator_hide_the_password(self) -> None:
        with pytest.raises(LocatorError) as info:
            parse_to_config(URI_WITH_PASSWORD)
        assert "s3cr%3At%40pw" not in str(info.value)
        with pytest.raises(ConfigError) as refused:
            config(connection_string=URI_WITH_PASSWORD + "?schema=x")
        assert "s3cr%3At%40pw" not in str(refused.value)

    def test_the_locator_keeps_the_password_for_reconnecting(self) -> None:
        original = config(connection_string=URI_WITH_PASSWORD)
        assert parse_to_config(original.to_locator()) == original


class TestMissingDriver:
    def test_connect_without_psycopg_names_the_extra(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "psycopg", None)
        with pytest.raises(MissingDependencyError) as info:
            config().connect()
        assert info.value.extra == "postgres"
        assert "metalab[postgres]" in str(info.value)


class TestConnectionStringsLibpqWouldEcho:
    @pytest.mark.parametrize(
        ("conninfo", "problem"),
        [
            ("postgresql://me:Secret/Pass@db/lab", "port is not a number"),
            ("postgresql://me:Secret@Pass@db/lab", "raw '@'"),
            ("postgresql://me:Secret%zz@db/lab", "%XX"),
            ("postgresql://me:Secret%00@db/lab", "%00"),
        ],
    )
    def test_a_password_libpq_would_misread_is_refused_redacted(
        self, conninfo: str, problem: str
    ) -> None:
        with pytest.raises(LocatorError, match=problem) as info:
            config(connection_string=conninfo)
        assert "Secret" not in str(info.value)
        assert "Pass" not in str(info.value)
        assert "percent-encode" in str(info.value)

    @pytest.mark.parametrize(
        "conninfo",
        [
            "postgresql://me:s%2Fp%40w@db1:5432,db2:5433/lab",
            "postgresql://me@[::1]:5432/lab",
            "postgresql://:pw@/lab?host=/run/pg",
            "postgresql://db:/lab",
        ],
    )
    def test_valid_uris_are_still_accepted(self, conninfo: str) -> None:
        assert config(connection_string=conninfo).connection_string == conninfo

    def test_a_connection_string_of_another_type_is_not_shown(self) -> None:
        with pytest.raises(LocatorError, match="of type bytes") as info:
            config(connection_string=b"postgresql://me:s3cret@db/lab")
        assert "s3cret" not in str(info.value)

    def test_a_string_libpq_cannot_parse_is_refused_before_the_pool_logs_it(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level("DEBUG")
        upper = config(connection_string="POSTGRESQL://me:s3cret@127.0.0.1:1/lab")
        with pytest.raises(ConfigError, match="cannot parse") as info:  # no wait will help
            upper.connect()
        assert "s3cret" not in str(info.value)
        assert info.value.__cause__ is None
        assert "s3cret" not in caplog.text
