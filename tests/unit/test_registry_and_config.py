from __future__ import annotations

import pickle
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from metalab.errors import ConfigError, RegistryError, UnknownSchemeError
from metalab.store import StoreConfig, create_store, parse_to_config
from metalab.store import registry as registry_module
from metalab.store.locator import LocatorInfo
from metalab.store.registry import ConfigRegistry


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> ConfigRegistry:
    """A private copy of the registry, so schemes registered here do not leak."""
    fresh = registry_module.registry.copy()
    monkeypatch.setattr(registry_module, "registry", fresh)
    return fresh


class _Handle:
    def __init__(self, config: Any) -> None:
        self.config = config


def _define_bucket_config() -> type[StoreConfig]:
    @dataclass(frozen=True, kw_only=True)
    class BucketConfig(StoreConfig):
        scheme: ClassVar[str] = "bucket"
        aliases: ClassVar[tuple[str, ...]] = ("bkt",)
        endpoint: str
        bucket: str
        retries: int = 3
        experiment_id: str | None = None

        def connect(self) -> Any:
            return _Handle(self)

        @classmethod
        def from_locator(cls, info: LocatorInfo, **kwargs: Any) -> BucketConfig:
            return cls(endpoint=info.host, bucket=info.path.lstrip("/"), **kwargs)

        def to_locator(self) -> str:
            return f"bucket://{self.endpoint}/{self.bucket}"

    return BucketConfig


class TestAutoRegistration:
    def test_subclassing_registers_scheme_and_aliases(self, fresh_registry: ConfigRegistry) -> None:
        cls = _define_bucket_config()
        assert fresh_registry.get("bucket") is cls
        assert fresh_registry.get("bkt") is cls
        config = parse_to_config("bucket://host/b1")
        assert isinstance(config, cls)
        assert isinstance(create_store("bkt://host/b2"), _Handle)

    def test_a_second_class_cannot_take_a_scheme(self) -> None:
        _define_bucket_config()

        with pytest.raises(RegistryError, match="already registered"):

            @dataclass(frozen=True, kw_only=True)
            class Other(StoreConfig):
                scheme: ClassVar[str] = "bucket"
                experiment_id: str | None = None

    def test_clobber_replaces_on_purpose(self, fresh_registry: ConfigRegistry) -> None:
        cls = _define_bucket_config()
        fresh_registry.register("bucket", "json:JSONDecoder", clobber=True)
        assert fresh_registry.entries["bucket"] == "json:JSONDecoder"
        assert fresh_registry.get("bkt") is cls

    def test_re_registering_the_same_class_is_allowed(self, fresh_registry: ConfigRegistry) -> None:
        cls = _define_bucket_config()
        fresh_registry.register("bucket", cls)
        assert fresh_registry.get("bucket") is cls

    def test_entries_view_is_read_only(self, fresh_registry: ConfigRegistry) -> None:
        with pytest.raises(TypeError):
            fresh_registry.entries["x"] = "a:b"  # type: ignore[index]


class TestUnknownAndBrokenSchemes:
    def test_unknown_scheme_lists_known_ones(self) -> None:
        with pytest.raises(UnknownSchemeError) as info:
            parse_to_config("s3://bucket/key")
        assert info.value.scheme == "s3"
        assert "file" in info.value.known
        assert "postgresql" in info.value.known
        assert "metalab.stores" in str(info.value)

    def test_unknown_scheme_message_hides_passwords(self) -> None:
        with pytest.raises(UnknownSchemeError) as info:
            parse_to_config("nosuch://user:hunter2@host/x")
        assert "hunter2" not in str(info.value)

    def test_broken_plugin_is_a_registry_error_naming_it(
        self, fresh_registry: ConfigRegistry
    ) -> None:
        fresh_registry.register("broken", "metalab_no_such_plugin.mod:Config")
        with pytest.raises(RegistryError, match="broken") as info:
            fresh_registry.get("broken")
        assert isinstance(info.value.__cause__, ImportError)

    def test_plugin_that_is_not_a_config(self, fresh_registry: ConfigRegistry) -> None:
        fresh_registry.register("notconfig", "json:JSONDecoder")
        with pytest.raises(RegistryError, match="not a StoreConfig"):
            fresh_registry.get("notconfig")

    def test_invalid_scheme_names_are_refused(self, fresh_registry: ConfigRegistry) -> None:
        with pytest.raises(RegistryError, match="invalid store scheme"):
            fresh_registry.register("bad scheme", "json:JSONDecoder")


class TestEntryPoints:
    def test_schemes_load_lazily_from_the_entry_point_group(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "ml_plugin_demo.py").write_text(
            textwrap.dedent(
                """
                from dataclasses import dataclass
                from typing import Any, ClassVar
                from metalab.store import StoreConfig

                @dataclass(frozen=True, kw_only=True)
                class DemoConfig(StoreConfig):
                    scheme: ClassVar[str] = "demo"
                    where: str = ""
                    experiment_id: str | None = None

                    def connect(self) -> Any:
                        return self

                    @classmethod
                    def from_locator(cls, info: Any, **kwargs: Any) -> "DemoConfig":
                        return cls(where=info.host, **kwargs)
                """
            )
        )
        dist = tmp_path / "ml_plugin_demo-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: ml-plugin-demo\nVersion: 1.0\n"
        )
        (dist / "entry_points.txt").write_text(
            "[metalab.stores]\ndemo = ml_plugin_demo:DemoConfig\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, "ml_plugin_demo", raising=False)
        fresh = ConfigRegistry()
        monkeypatch.setattr(registry_module, "registry", fresh)

        assert "ml_plugin_demo" not in sys.modules
        assert "demo" in fresh.known()
        assert "ml_plugin_demo" not in sys.modules  # listed, not imported
        config = parse_to_config("demo://there")
        assert type(config).__name__ == "DemoConfig"
        assert config.to_dict() == {"where": "there", "_type": "demo"}


class TestStoreConfigDefaults:
    def test_scoped_returns_a_new_scoped_config(self) -> None:
        cls = _define_bucket_config()
        config = cls(endpoint="e", bucket="b")  # type: ignore[call-arg]
        scoped = config.scoped("exp:1")
        assert scoped.experiment_id == "exp:1"
        assert scoped.is_scoped
        assert not config.is_scoped
        assert scoped.scoped("exp:1") == scoped

    def test_rescoping_to_another_experiment_is_an_error(self) -> None:
        cls = _define_bucket_config()
        scoped = cls(endpoint="e", bucket="b", experiment_id="a:1")  # type: ignore[call-arg]
        with pytest.raises(ConfigError, match=r"'a:1'.*'b:1'"):
            scoped.scoped("b:1")

    @pytest.mark.parametrize("bad", ["", None, 3])
    def test_scoping_needs_a_non_empty_string(self, bad: Any) -> None:
        cls = _define_bucket_config()
        with pytest.raises(ConfigError, match="non-empty string"):
            cls(endpoint="e", bucket="b").scoped(bad)  # type: ignore[call-arg]

    def test_to_dict_omits_defaults_and_names_the_scheme(self) -> None:
        cls = _define_bucket_config()
        config = cls(endpoint="e", bucket="b", experiment_id="x:1")  # type: ignore[call-arg]
        assert config.to_dict() == {
            "endpoint": "e",
            "bucket": "b",
            "experiment_id": "x:1",
            "_type": "bucket",
        }
        assert StoreConfig.from_dict(config.to_dict()) == config

    def test_config_dicts_survive_pickling(self) -> None:
        cls = _define_bucket_config()
        original = cls(endpoint="e", bucket="b", retries=5)  # type: ignore[call-arg]
        # Locally defined classes cannot pickle by reference; round-trip via to_dict instead.
        assert StoreConfig.from_dict(pickle.loads(pickle.dumps(original.to_dict()))) == original

    def test_a_config_is_shareable_across_processes_unless_it_says_otherwise(self) -> None:
        cls = _define_bucket_config()
        assert not cls.process_local
        assert not parse_to_config("file:///tmp/x").process_local
        assert not parse_to_config("postgresql://db/lab?file_root=/tmp/x").process_local
        assert parse_to_config("memory://").process_local


class TestFromDictValidation:
    def test_missing_type(self) -> None:
        with pytest.raises(ConfigError, match="_type"):
            StoreConfig.from_dict({"root": "/x"})

    def test_unknown_type(self) -> None:
        with pytest.raises(UnknownSchemeError):
            StoreConfig.from_dict({"_type": "nosuch"})

    def test_wrong_field_type_names_the_field(self) -> None:
        _define_bucket_config()
        with pytest.raises(ConfigError, match=r"\$\.retries"):
            StoreConfig.from_dict(
                {"_type": "bucket", "endpoint": "e", "bucket": "b", "retries": "x"}
            )

    def test_missing_required_field(self) -> None:
        _define_bucket_config()
        with pytest.raises(ConfigError, match="bucket"):
            StoreConfig.from_dict({"_type": "bucket", "endpoint": "e"})

    def test_not_a_mapping(self) -> None:
        with pytest.raises(ConfigError, match="mapping"):
            StoreConfig.from_dict(["file"])  # type: ignore[arg-type]


class TestFromDictWithUnresolvableAnnotations:
    def test_a_config_class_made_in_a_function_round_trips(self) -> None:
        def notebook_cell() -> type[StoreConfig]:
            # As in a notebook cell: the typing names exist only here, and this module
            # uses `from __future__ import annotations`, so the annotations are strings
            # that the module's globals cannot resolve.
            from typing import Any as CellAny  # noqa: PLC0415 -- the point of the test
            from typing import ClassVar as CellClassVar  # noqa: PLC0415 -- the point of the test

            @dataclass(frozen=True, kw_only=True)
            class CellConfig(StoreConfig):
                scheme: CellClassVar[str] = "cellstore"
                endpoint: str
                options: CellAny = None
                experiment_id: str | None = None

                def connect(self) -> Any:
                    raise NotImplementedError

                @classmethod
                def from_locator(cls, info: LocatorInfo, **kwargs: Any) -> CellConfig:
                    raise NotImplementedError

            return CellConfig

        cls = notebook_cell()
        config = cls(endpoint="e", options={"a": 1}, experiment_id="x:1")  # type: ignore[call-arg]
        assert StoreConfig.from_dict(config.to_dict()) == config

    def test_a_bad_field_of_such_a_class_is_still_a_config_error(self) -> None:
        def notebook_cell() -> type[StoreConfig]:
            from typing import ClassVar as CellClassVar  # noqa: PLC0415 -- the point of the test

            @dataclass(frozen=True, kw_only=True)
            class OtherCellConfig(StoreConfig):
                scheme: CellClassVar[str] = "othercell"
                endpoint: str
                experiment_id: str | None = None

                def connect(self) -> Any:
                    raise NotImplementedError

                @classmethod
                def from_locator(cls, info: LocatorInfo, **kwargs: Any) -> OtherCellConfig:
                    raise NotImplementedError

            return OtherCellConfig

        notebook_cell()
        with pytest.raises(ConfigError, match="OtherCellConfig"):
            StoreConfig.from_dict({"_type": "othercell", "nope": 1})
