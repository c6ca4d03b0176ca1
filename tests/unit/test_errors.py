from __future__ import annotations

import pickle

import pytest

from metalab import errors
from metalab.errors import (
    ArtifactNotFoundError,
    CapabilityError,
    ConfigError,
    CorruptRecordError,
    ExperimentMismatchError,
    IndexUnavailableError,
    LocatorError,
    MetalabError,
    MissingDependencyError,
    QueryError,
    QuerySyntaxError,
    RegistryError,
    StoreError,
    UnknownSchemeError,
    UnsupportedSchemaVersionError,
)

EXAMPLES: list[MetalabError] = [
    MetalabError("boom"),
    ConfigError("bad value 'x' for field 'root'"),
    LocatorError("cannot parse 'postgresql://'"),
    UnknownSchemeError("s3", "s3://bucket/x", ["file", "memory"]),
    RegistryError("plugin 'x' failed"),
    MissingDependencyError("psycopg", "postgres", "PostgresStore"),
    CapabilityError("MyStore", "SupportsLogs", "capture.log()"),
    StoreError("cannot write"),
    ArtifactNotFoundError("abc", "model"),
    CorruptRecordError("/x/runs/a.json", "Expected `str`, got `int` - at `$.run_id`"),
    UnsupportedSchemaVersionError("/x/runs/a.json", 7, (1, "0.1")),
    ExperimentMismatchError("/x/a_1", "a:1", "a_1"),
    IndexUnavailableError("connection refused"),
    QueryError("unknown field 'foo'"),
    QuerySyntaxError("params.lr <", 12, "a value", "end of query"),
]


class TestExceptionPickling:
    @pytest.mark.parametrize("exc", EXAMPLES, ids=lambda e: type(e).__name__)
    def test_round_trip_keeps_type_message_and_attributes(self, exc: MetalabError) -> None:
        restored = pickle.loads(pickle.dumps(exc))
        assert type(restored) is type(exc)
        assert str(restored) == str(exc)
        assert vars(restored) == vars(exc)


class TestExceptionHierarchy:
    def test_every_public_error_derives_from_the_root(self) -> None:
        for name in errors.__all__:
            cls = getattr(errors, name)
            if name.endswith("Error"):
                assert issubclass(cls, MetalabError), name
            assert cls.__module__ == "metalab.errors"

    def test_families_keep_their_builtin_meaning(self) -> None:
        assert issubclass(ConfigError, ValueError)
        assert issubclass(MissingDependencyError, ImportError)
        assert issubclass(CapabilityError, TypeError)
        assert issubclass(ArtifactNotFoundError, FileNotFoundError)
        assert issubclass(UnsupportedSchemaVersionError, CorruptRecordError)
        assert not issubclass(MetalabError, ValueError)


class TestMessages:
    def test_unknown_scheme_lists_known_schemes_and_how_to_register(self) -> None:
        msg = str(UnknownSchemeError("s3", "s3://b/x", ["memory", "file"]))
        assert "'s3'" in msg
        assert "file, memory" in msg
        assert "metalab.stores" in msg

    def test_missing_dependency_gives_the_install_command(self) -> None:
        exc = MissingDependencyError("pandas", "pandas", "Results.to_dataframe()")
        assert "pip install 'metalab[pandas]'" in str(exc)
        assert exc.name == "pandas"

    def test_unsupported_version_names_found_and_supported(self) -> None:
        msg = str(UnsupportedSchemaVersionError("f.json", 9, (1, "0.1")))
        assert "9" in msg
        assert "1, '0.1'" in msg
        assert "f.json" in msg

    def test_capability_error_names_store_and_protocol(self) -> None:
        msg = str(CapabilityError("MyStore", "SupportsLogs", "capture.log()"))
        assert "MyStore" in msg
        assert "SupportsLogs" in msg
