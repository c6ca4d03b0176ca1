from __future__ import annotations

import pickle

import pytest

import metalab.store as stores
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
        assert msg.endswith("FileStore and PostgresStore have it")

    @pytest.mark.parametrize("capability", ["SupportsIndexRebuild", "SupportsIndexSync"])
    def test_an_index_capability_is_not_said_to_be_everywhere(self, capability: str) -> None:
        # The FileStore has no index: the hint must not claim it has the capability.
        msg = str(CapabilityError("FileStore", capability, "rebuilding the index"))
        assert msg == (
            f"rebuilding the index needs a store that implements {capability}, but "
            "FileStore does not; only an indexed store has it: a PostgresStore over the "
            "same files"
        )


def test_the_capability_hint_says_which_of_metalabs_stores_have_it() -> None:
    # Held against the stores themselves, so the hint cannot go out of date.
    for name in dir(stores):
        protocol = getattr(stores, name)
        if not name.startswith("Supports") or name == "SupportsIndexedFiles":
            continue  # (SupportsIndexedFiles has attributes: no issubclass)
        msg = str(CapabilityError("X", name, "it"))
        both = issubclass(stores.FileStore, protocol) and issubclass(stores.PostgresStore, protocol)
        assert ("FileStore and PostgresStore have it" in msg) is both, name
