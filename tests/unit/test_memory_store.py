"""What is particular to MemoryStore: names, sharing, configs, log files, closing."""

from __future__ import annotations

import pickle
import threading
import uuid
from pathlib import Path

import pytest

from metalab.errors import (
    CapabilityError,
    ConfigError,
    ExperimentMismatchError,
    LocatorError,
    StoreError,
)
from metalab.records import RunRecord
from metalab.store import (
    MemoryStore,
    MemoryStoreConfig,
    StoreConfig,
    SupportsArtifactStreaming,
    SupportsBulkPut,
    SupportsDelete,
    SupportsExperimentManifests,
    SupportsExperiments,
    SupportsLogs,
    SupportsStructuredResults,
    SupportsWorkingDirectory,
    create_store,
    parse_to_config,
    require_capability,
)
from metalab.testing.store import make_record, new_run_id

EID = "my_exp:1.0"


@pytest.fixture
def name() -> str:
    """A store name no other test uses (named stores live as long as the process)."""
    return f"lab-{uuid.uuid4().hex[:12]}"


def _record(experiment_id: str = EID) -> RunRecord:
    return make_record(experiment_id)


class TestMemoryStoreConfigFromLocator:
    def test_memory_without_a_name_is_anonymous_and_unscoped(self) -> None:
        assert parse_to_config("memory://") == MemoryStoreConfig()

    def test_a_name_keeps_its_case(self) -> None:
        assert parse_to_config("memory://My-Lab.2") == MemoryStoreConfig(name="My-Lab.2")

    def test_experiment_id_comes_from_the_query_or_a_keyword(self) -> None:
        expected = MemoryStoreConfig(name="lab", experiment_id=EID)
        assert parse_to_config("memory://lab?experiment_id=my_exp%3A1.0") == expected
        assert parse_to_config("memory://lab", experiment_id=EID) == expected

    def test_an_unknown_keyword_is_named_in_the_error(self) -> None:
        with pytest.raises(ConfigError, match="'root'"):
            parse_to_config("memory://lab", root="/tmp")

    def test_an_unknown_query_parameter_is_named_in_the_error(self) -> None:
        with pytest.raises(LocatorError, match="'durable'"):
            parse_to_config("memory://lab?durable=true")

    def test_a_path_after_the_name_is_refused(self) -> None:
        with pytest.raises(LocatorError, match="has a path"):
            parse_to_config("memory://lab/sub")

    @pytest.mark.parametrize("locator", ["memory://me@lab", "memory://lab:5432", "memory://_x"])
    def test_a_name_that_is_not_a_plain_word_is_refused(self, locator: str) -> None:
        with pytest.raises(ConfigError, match="invalid memory store name"):
            parse_to_config(locator)


class TestMemoryStoreConfigRoundTrips:
    CONFIGS = (
        MemoryStoreConfig(),
        MemoryStoreConfig(name="lab"),
        MemoryStoreConfig(experiment_id=EID),
        MemoryStoreConfig(name="Lab_2", experiment_id="a b+c&=?#%:9"),
    )

    @pytest.mark.parametrize("config", CONFIGS)
    def test_to_locator_parses_back_to_the_same_config(self, config: MemoryStoreConfig) -> None:
        assert parse_to_config(config.to_locator()) == config

    @pytest.mark.parametrize("config", CONFIGS)
    def test_to_dict_and_from_dict_round_trip(self, config: MemoryStoreConfig) -> None:
        assert StoreConfig.from_dict(config.to_dict()) == config

    @pytest.mark.parametrize("config", CONFIGS)
    def test_pickle_round_trips(self, config: MemoryStoreConfig) -> None:
        assert pickle.loads(pickle.dumps(config)) == config

    def test_to_dict_leaves_out_defaults_and_names_the_scheme(self) -> None:
        assert MemoryStoreConfig(name="lab").to_dict() == {"name": "lab", "_type": "memory"}
        assert MemoryStoreConfig(experiment_id=EID).to_dict() == {
            "experiment_id": EID,
            "_type": "memory",
        }

    def test_from_dict_refuses_an_invalid_name(self) -> None:
        with pytest.raises(ConfigError, match="invalid memory store name"):
            StoreConfig.from_dict({"name": "a/b", "_type": "memory"})

    @pytest.mark.parametrize("experiment_id", ["..", "a/b", "x\x00"])
    def test_an_invalid_experiment_id_is_refused(self, experiment_id: str) -> None:
        with pytest.raises(ConfigError, match="invalid experiment id"):
            MemoryStoreConfig(experiment_id=experiment_id)

    def test_scoped_binds_the_experiment(self) -> None:
        scoped = MemoryStoreConfig(name="lab").scoped(EID)
        assert scoped == MemoryStoreConfig(name="lab", experiment_id=EID)
        assert scoped.is_scoped


class TestNamedMemoryStores:
    def test_every_connect_of_a_name_shares_one_store(self, name: str) -> None:
        record = _record()
        with create_store(f"memory://{name}", experiment_id=EID) as first:
            first.put_run_record(record)
        with create_store(f"memory://{name}", experiment_id=EID) as second:
            assert second.get_run_record(record.run_id) == record

    def test_threads_of_the_process_share_a_named_store(self, name: str) -> None:
        config = MemoryStoreConfig(name=name, experiment_id=EID)
        records = [_record() for _ in range(8)]

        def put(record: RunRecord) -> None:
            with config.connect() as store:
                store.put_run_record(record)

        threads = [threading.Thread(target=put, args=(r,)) for r in records]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with config.connect() as store:
            assert {r.run_id for r in store.list_run_records()} == {r.run_id for r in records}

    def test_different_names_are_different_stores(self, name: str) -> None:
        with MemoryStoreConfig(name=name, experiment_id=EID).connect() as store:
            store.put_run_record(_record())
        with MemoryStoreConfig(name=f"{name}-other", experiment_id=EID).connect() as other:
            assert other.list_run_records() == []

    def test_each_experiment_of_a_named_store_is_kept_apart(self, name: str) -> None:
        a = MemoryStoreConfig(name=name, experiment_id="a:1").connect()
        b = MemoryStoreConfig(name=name, experiment_id="b:1").connect()
        record = _record("a:1")
        a.put_run_record(record)
        a.put_derived(record.run_id, {"m": 1})
        assert b.get_run_record(record.run_id) is None
        assert b.get_derived(record.run_id) is None
        assert b.list_run_records() == []

    def test_the_unscoped_store_lists_every_experiment(self, name: str) -> None:
        for eid in ("b:1", "a:2"):
            with MemoryStoreConfig(name=name, experiment_id=eid).connect() as store:
                store.put_run_record(_record(eid))
        with MemoryStoreConfig(name=name).connect() as collection:
            assert collection.list_experiments() == ["a:2", "b:1"]
        with MemoryStoreConfig(name=name, experiment_id="a:2").connect() as scoped:
            assert scoped.list_experiments() == ["a:2"]


class TestAnonymousMemoryStores:
    def test_every_connect_is_a_fresh_store(self) -> None:
        config = MemoryStoreConfig(experiment_id=EID)
        first = config.connect()
        first.put_run_record(_record())
        assert config.connect().list_run_records() == []

    def test_the_default_store_is_anonymous_and_unscoped(self) -> None:
        store = MemoryStore()
        assert store.config == MemoryStoreConfig()
        for eid in ("x:1", "y:1"):
            store.put_run_record(_record(eid))
        assert [r.experiment_id for r in store.list_run_records("y:1")] == ["y:1"]
        assert store.list_experiments() == ["x:1", "y:1"]


class TestMemoryStoreCapabilities:
    @pytest.mark.parametrize(
        "capability",
        [
            SupportsLogs,
            SupportsStructuredResults,
            SupportsExperimentManifests,
            SupportsExperiments,
            SupportsArtifactStreaming,
            SupportsBulkPut,
            SupportsDelete,
        ],
    )
    def test_it_implements_the_in_memory_capabilities(self, capability: type) -> None:
        assert isinstance(MemoryStore(), capability)

    def test_it_has_no_working_directory(self) -> None:
        store = MemoryStore()
        assert not isinstance(store, SupportsWorkingDirectory)
        with pytest.raises(CapabilityError, match="SupportsWorkingDirectory"):
            # mypy refuses a Protocol class for type[C] (python/mypy#4717).
            require_capability(
                store,
                SupportsWorkingDirectory,  # type: ignore[type-abstract]
                "handle.store.get_working_directory()",
            )


class TestMemoryStoreScoping:
    def test_a_record_of_another_experiment_names_both_experiments(self) -> None:
        store = MemoryStoreConfig(name="", experiment_id=EID).connect()
        with pytest.raises(ExperimentMismatchError) as info:
            store.put_run_record(_record("other:2"))
        assert (info.value.expected, info.value.found) == ("other:2", EID)
        assert "other:2" in str(info.value)
        assert store.list_run_records() == []


class TestTheUnscopedMemoryStore:
    def test_it_files_a_record_under_its_experiment(self, name: str) -> None:
        record = _record("a:1")
        collection = MemoryStoreConfig(name=name).connect()
        collection.put_run_record(record)
        collection.put_derived(record.run_id, {"m": 1})
        scoped = MemoryStoreConfig(name=name, experiment_id="a:1").connect()
        assert scoped.get_run_record(record.run_id) == record
        derived = scoped.get_derived(record.run_id)
        assert derived is not None
        assert derived.metrics == {"m": 1}
        assert collection.get_run_record(record.run_id) == record

    def test_it_finds_runs_written_through_scoped_stores(self, name: str) -> None:
        records = [_record("a:1"), _record("b:1")]
        for record in records:
            scoped = MemoryStoreConfig(name=name, experiment_id=record.experiment_id).connect()
            scoped.put_run_record(record)
            scoped.put_artifact(record.run_id, "model", record.experiment_id.encode())
        collection = MemoryStoreConfig(name=name).connect()
        listed = sorted(collection.list_run_records(), key=lambda r: r.experiment_id)
        assert listed == sorted(records, key=lambda r: r.experiment_id)
        assert collection.list_run_records("b:1") == [records[1]]
        assert collection.get_artifact(records[0].run_id, "model") == b"a:1"

    def test_a_document_of_an_unknown_run_needs_its_record_first(self) -> None:
        store = MemoryStore()
        run_id = new_run_id()
        with pytest.raises(StoreError, match="put the run record first"):
            store.put_derived(run_id, {"m": 1})
        with pytest.raises(StoreError, match="put the run record first"):
            store.log_path(run_id, "run")
        assert store.get_derived(run_id) is None
        assert store.list_artifacts(run_id) == []
        assert store.list_experiments() == []

    def test_a_record_with_an_invalid_experiment_id_is_refused(self) -> None:
        store = MemoryStore()
        with pytest.raises(ConfigError, match="invalid experiment id"):
            store.put_run_record(_record("a/b"))
        assert store.list_run_records() == []


class TestMemoryStoreStreamedLogs:
    def test_the_log_file_lives_in_a_private_directory_removed_on_close(self) -> None:
        store = MemoryStoreConfig(experiment_id=EID).connect()
        path = store.log_path(new_run_id(), "run")
        assert path.parent.is_dir()
        store.close()
        assert not path.parent.exists()

    def test_streamed_text_is_kept_in_memory_after_close(self, name: str) -> None:
        config = MemoryStoreConfig(name=name, experiment_id=EID)
        run_id = new_run_id()
        with config.connect() as store:
            store.log_path(run_id, "run").write_text("streamed\n", encoding="utf-8")
        with config.connect() as again:
            assert again.get_log(run_id, "run") == "streamed\n"
            assert again.list_logs(run_id) == ["run"]

    def test_another_connection_sees_a_log_while_it_is_streamed(self, name: str) -> None:
        config = MemoryStoreConfig(name=name, experiment_id=EID)
        run_id = new_run_id()
        writer = config.connect()
        reader = config.connect()
        writer.log_path(run_id, "run").write_text("live\n", encoding="utf-8")
        assert reader.get_log(run_id, "run") == "live\n"
        writer.close()
        assert reader.get_log(run_id, "run") == "live\n"

    def test_put_log_replaces_a_streamed_log(self) -> None:
        store = MemoryStoreConfig(experiment_id=EID).connect()
        run_id = new_run_id()
        path = store.log_path(run_id, "run")
        path.write_text("streamed\n", encoding="utf-8")
        store.put_log(run_id, "run", "replaced\n")
        assert store.get_log(run_id, "run") == "replaced\n"
        assert path.read_text(encoding="utf-8") == "replaced\n"

    def test_a_path_nobody_wrote_to_is_not_a_log(self) -> None:
        store = MemoryStoreConfig(experiment_id=EID).connect()
        run_id = new_run_id()
        store.log_path(run_id, "run")
        assert store.get_log(run_id, "run") is None
        assert store.list_logs(run_id) == []

    def test_deleting_the_run_removes_its_streamed_file(self) -> None:
        store = MemoryStoreConfig(experiment_id=EID).connect()
        run_id = new_run_id()
        path = store.log_path(run_id, "run")
        path.write_text("x", encoding="utf-8")
        assert store.delete_run(run_id) is True
        assert not path.exists()
        assert store.get_log(run_id, "run") is None


class TestMemoryStoreArtifacts:
    def test_a_path_given_as_a_plain_string_is_refused(self, tmp_path: Path) -> None:
        source = tmp_path / "a.bin"
        source.write_bytes(b"x")
        store = MemoryStoreConfig(experiment_id=EID).connect()
        with pytest.raises(TypeError, match=r"pathlib\.Path"):
            store.put_artifact(new_run_id(), "a", str(source))  # type: ignore[arg-type]


class TestClosingAMemoryStore:
    def test_an_anonymous_store_stays_readable_after_close(self) -> None:
        store = MemoryStore()
        record = _record()
        with store:
            store.put_run_record(record)
        assert store.get_run_record(record.run_id) == record

    def test_a_log_streamed_after_close_gets_a_new_directory(self) -> None:
        store = MemoryStoreConfig(experiment_id=EID).connect()
        run_id = new_run_id()
        first = store.log_path(run_id, "a")
        store.close()
        second = store.log_path(run_id, "b")
        assert second.parent.is_dir()
        assert second.parent != first.parent
        second.write_text("after\n", encoding="utf-8")
        assert store.get_log(run_id, "b") == "after\n"
        store.close()

    def test_a_store_cannot_be_pickled_but_its_config_can(self) -> None:
        store = MemoryStoreConfig(name="lab").connect()
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(store)
        assert pickle.loads(pickle.dumps(store.config)) == store.config

    def test_repr_shows_the_locator(self) -> None:
        assert repr(MemoryStoreConfig(name="lab", experiment_id=EID).connect()) == (
            "MemoryStore('memory://lab?experiment_id=my_exp%3A1.0')"
        )
