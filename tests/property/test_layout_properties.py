"""Properties of the id-to-path mapping and of FileStoreConfig serialisation."""

from __future__ import annotations

import pickle
import tempfile
import unicodedata
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from metalab.errors import ConfigError, ExperimentMismatchError
from metalab.records import RunRecord
from metalab.store import StoreConfig, parse_to_config
from metalab.store._file import FileStoreConfig
from metalab.store._layout import safe_experiment_id
from metalab.store._rules import validate_name, validate_run_id
from metalab.testing.strategies import experiment_ids

# Any printable text: unicode, ':' and '_' (the colliding pair), dots, spaces, '%', '&'.
_ID_CHARS = st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="/\\")
# Stores keep one spelling of a name: ids are in Unicode NFC form.
valid_experiment_ids = (
    st.text(_ID_CHARS, min_size=1, max_size=200)
    .map(lambda s: unicodedata.normalize("NFC", s))
    .filter(lambda s: s not in {".", ".."} and len(s) <= 200)
    | experiment_ids()
)
roots = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40
).map(lambda s: "/" + s)


class TestSafeExperimentIdProperties:
    @given(valid_experiment_ids)
    def test_every_valid_id_maps_to_one_plain_path_component(self, eid: str) -> None:
        name = safe_experiment_id(eid)
        assert name not in {"", ".", ".."}
        assert "/" not in name
        assert "\\" not in name
        assert "\x00" not in name
        assert PurePosixPath(name).name == name
        assert len(PurePosixPath("/root", name).relative_to("/root").parts) == 1

    @given(valid_experiment_ids, valid_experiment_ids)
    def test_the_mapping_merges_only_ids_that_differ_in_colon_versus_underscore(
        self, a: str, b: str
    ) -> None:
        same_dir = safe_experiment_id(a) == safe_experiment_id(b)
        assert same_dir == (a.replace(":", "_") == b.replace(":", "_"))

    @given(st.text(max_size=300))
    def test_any_text_is_either_mapped_safely_or_rejected(self, text: str) -> None:
        try:
            name = safe_experiment_id(text)
        except ConfigError as exc:
            message = str(exc)
        else:
            assert PurePosixPath(name).name == name
            assert not any(ord(c) < 32 for c in name)
            return
        assert "invalid experiment id" in message

    @settings(max_examples=30)
    @given(st.text(st.sampled_from("ab:_1"), min_size=1, max_size=6), st.data())
    def test_colliding_ids_are_caught_by_the_meta_file(self, eid: str, data: st.DataObject) -> None:
        assume(":" in eid or "_" in eid)
        other = "".join(
            ({":": "_", "_": ":"}[c] if c in ":_" and data.draw(st.booleans()) else c) for c in eid
        )
        assume(other != eid)
        with tempfile.TemporaryDirectory() as tmp:
            with FileStoreConfig(root=tmp, experiment_id=eid).connect() as store:
                store.put_run_record(RunRecord.running(run_id="r1", experiment_id=eid))
            with pytest.raises(ExperimentMismatchError):
                FileStoreConfig(root=tmp, experiment_id=other).connect()


class TestNameProperties:
    @given(st.text(max_size=200))
    def test_an_accepted_name_or_run_id_is_one_visible_path_component(self, text: str) -> None:
        for check in (validate_name, validate_run_id):
            try:
                check(text)
            except ConfigError:
                continue
            assert PurePosixPath(text).name == text
            assert not text.startswith(".")
            assert len(text) <= 128


class TestFileStoreConfigRoundTrips:
    @given(roots, st.none() | valid_experiment_ids, st.booleans())
    def test_locator_dict_and_pickle_round_trips(
        self, root: str, eid: str | None, durable: bool
    ) -> None:
        config = FileStoreConfig(root=root, experiment_id=eid, durable=durable)
        assert parse_to_config(config.to_locator()) == config
        assert StoreConfig.from_dict(config.to_dict()) == config
        assert pickle.loads(pickle.dumps(config)) == config

    @given(
        st.text(
            st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
            min_size=1,
            max_size=30,
        )
    )
    def test_a_relative_root_is_made_absolute(self, root: str) -> None:
        assume(root.strip())
        config = FileStoreConfig(root=root)
        assert Path(config.root).is_absolute()
        assert FileStoreConfig(root=config.root) == config
