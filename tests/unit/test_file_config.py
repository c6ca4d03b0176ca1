"""FileStoreConfig: normalisation, serialisation, locators and the collection API."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from metalab.errors import ConfigError, ExperimentMismatchError
from metalab.records import RunRecord
from metalab.store import StoreConfig, create_store, parse_to_config
from metalab.store._file import FileStore, FileStoreConfig


def _record(eid: str, run_id: str = "r1") -> RunRecord:
    return RunRecord.running(run_id=run_id, experiment_id=eid).succeeded()


class TestFileStoreConfigNormalisation:
    def test_relative_root_becomes_absolute(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        assert FileStoreConfig(root="./experiments").root == str(tmp_path / "experiments")

    def test_tilde_is_expanded(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HOME", str(tmp_path))
        assert FileStoreConfig(root="~/exp").root == str(tmp_path / "exp")

    def test_a_path_object_is_accepted(self, tmp_path: Path) -> None:
        config = FileStoreConfig(root=tmp_path)  # type: ignore[arg-type]
        assert config.root == str(tmp_path)

    @pytest.mark.parametrize("root", ["", "   ", "a\x00b"])
    def test_empty_or_nul_roots_are_rejected(self, root: str) -> None:
        with pytest.raises(ConfigError, match="root"):
            FileStoreConfig(root=root)

    def test_an_unsafe_experiment_id_is_rejected_up_front(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="invalid experiment id"):
            FileStoreConfig(root=str(tmp_path), experiment_id="../x")

    def test_durable_must_be_a_bool(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="durable"):
            FileStoreConfig(root=str(tmp_path), durable="yes")  # type: ignore[arg-type]


class TestFileStoreConfigSerialisation:
    def test_to_dict_is_exactly_the_spec_shape(self, tmp_path: Path) -> None:
        config = FileStoreConfig(root=str(tmp_path), experiment_id="my_exp:1.0")
        assert config.to_dict() == {
            "root": str(tmp_path),
            "experiment_id": "my_exp:1.0",
            "_type": "file",
        }
        assert list(config.to_dict()) == ["root", "experiment_id", "_type"]

    def test_durable_appears_only_when_set(self, tmp_path: Path) -> None:
        config = FileStoreConfig(root=str(tmp_path), durable=True)
        assert config.to_dict() == {"root": str(tmp_path), "durable": True, "_type": "file"}

    @pytest.mark.parametrize("durable", [False, True])
    @pytest.mark.parametrize("eid", [None, "my_exp:1.0"])
    def test_dict_and_pickle_round_trip(
        self, tmp_path: Path, eid: str | None, durable: bool
    ) -> None:
        config = FileStoreConfig(root=str(tmp_path), experiment_id=eid, durable=durable)
        assert StoreConfig.from_dict(config.to_dict()) == config
        assert pickle.loads(pickle.dumps(config)) == config

    def test_from_dict_with_a_wrong_type_names_the_field(self) -> None:
        with pytest.raises(ConfigError, match="root"):
            StoreConfig.from_dict({"root": 5, "_type": "file"})

    def test_from_dict_validates_the_experiment_id(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="invalid experiment id"):
            StoreConfig.from_dict({"root": str(tmp_path), "experiment_id": "a/b", "_type": "file"})


class TestFileStoreConfigLocators:
    def test_a_plain_path_parses_to_a_file_config(self, tmp_path: Path) -> None:
        assert parse_to_config(str(tmp_path)) == FileStoreConfig(root=str(tmp_path))

    def test_query_parameters_set_experiment_and_durability(self) -> None:
        config = parse_to_config("file:///shared/experiments?experiment_id=my_exp:1.0&durable=true")
        assert config == FileStoreConfig(
            root="/shared/experiments", experiment_id="my_exp:1.0", durable=True
        )

    def test_keywords_override_query_parameters(self) -> None:
        config = parse_to_config("file:///data?durable=true", durable=False, experiment_id="e:1")
        assert config == FileStoreConfig(root="/data", experiment_id="e:1")

    def test_an_unknown_keyword_is_named_with_the_accepted_ones(self) -> None:
        with pytest.raises(ConfigError, match="file_root") as info:
            parse_to_config("./experiments", file_root="/x")
        assert "durable, experiment_id" in str(info.value)

    def test_an_unknown_query_parameter_is_named(self) -> None:
        with pytest.raises(ConfigError, match="colour"):
            parse_to_config("file:///data?colour=red")

    def test_a_bad_boolean_is_rejected(self) -> None:
        with pytest.raises(ConfigError, match="durable must be a boolean"):
            parse_to_config("file:///data?durable=maybe")

    @pytest.mark.parametrize(
        "root", ["/plain", "/with space/and?question#hash", "/unicodé/ü", "/per%cent", "//two"]
    )
    def test_to_locator_round_trips(self, root: str) -> None:
        for config in (
            FileStoreConfig(root=root),
            FileStoreConfig(root=root, experiment_id="a b:1&x=2", durable=True),
        ):
            assert parse_to_config(config.to_locator()) == config

    def test_to_locator_leaves_defaults_out(self) -> None:
        assert FileStoreConfig(root="/data").to_locator() == "file:///data"

    def test_create_store_connects_a_file_store(self, tmp_path: Path) -> None:
        store = create_store(str(tmp_path / "exp"))
        assert isinstance(store, FileStore)
        assert store.mode == "collection"


class TestFileStoreConfigCollections:
    def test_list_experiments_of_a_missing_root_is_empty_and_creates_nothing(
        self, tmp_path: Path
    ) -> None:
        assert FileStoreConfig(root=str(tmp_path / "missing")).list_experiments() == []
        assert not (tmp_path / "missing").exists()

    def test_list_experiments_reads_every_meta_file(self, tmp_path: Path) -> None:
        collection = FileStoreConfig(root=str(tmp_path))
        for eid in ("b:2", "a:1", "a:2"):
            with collection.for_experiment(eid).connect() as store:
                store.put_run_record(_record(eid))
        (tmp_path / "not-an-experiment").mkdir()
        (tmp_path / "README").write_text("hello")
        assert collection.list_experiments() == ["a:1", "a:2", "b:2"]

    def test_list_experiments_on_a_scoped_config_says_what_to_use(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="unscoped collection config"):
            FileStoreConfig(root=str(tmp_path), experiment_id="e:1").list_experiments()

    def test_a_standalone_root_lists_its_own_experiment(self, tmp_path: Path) -> None:
        with FileStoreConfig(root=str(tmp_path), experiment_id="e:1").connect() as store:
            store.put_run_record(_record("e:1"))
        standalone = FileStoreConfig(root=str(tmp_path / "e_1"))
        assert standalone.list_experiments() == ["e:1"]

    def test_for_experiment_scopes_the_config(self, tmp_path: Path) -> None:
        scoped = FileStoreConfig(root=str(tmp_path)).for_experiment("my_exp:1.0")
        assert scoped == FileStoreConfig(root=str(tmp_path), experiment_id="my_exp:1.0")
        assert scoped.connect().get_working_directory() == tmp_path / "my_exp_1.0"

    def test_a_scoped_config_pointing_at_its_own_directory_uses_it(self, tmp_path: Path) -> None:
        with FileStoreConfig(root=str(tmp_path)).for_experiment("e:1").connect() as store:
            store.put_run_record(_record("e:1"))
        inner = FileStoreConfig(root=str(tmp_path / "e_1"), experiment_id="e:1").connect()
        assert inner.get_working_directory() == tmp_path / "e_1"
        assert inner.get_run_record("r1") is not None

    def test_scoping_an_experiment_directory_to_another_experiment_fails(
        self, tmp_path: Path
    ) -> None:
        with FileStoreConfig(root=str(tmp_path)).for_experiment("e:1").connect() as store:
            store.put_run_record(_record("e:1"))
        with pytest.raises(ExperimentMismatchError, match="'e:1'"):
            FileStoreConfig(root=str(tmp_path / "e_1"), experiment_id="f:1").connect()
        assert not (tmp_path / "e_1" / "f_1").exists()
