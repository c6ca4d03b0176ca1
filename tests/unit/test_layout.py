"""Ids and names become paths only through the checks of _rules.py and the layout of _layout.py."""

from __future__ import annotations

import datetime as dt
import unicodedata
from pathlib import Path

import pytest

from metalab.errors import ConfigError
from metalab.store import FileStoreConfig
from metalab.store._layout import FileStoreLayout, safe_experiment_id
from metalab.store._rules import (
    validate_experiment_id,
    validate_format,
    validate_name,
    validate_run_id,
)
from metalab.testing.store import make_record

HEX64 = "ab" * 32


class TestSafeExperimentId:
    def test_colon_becomes_underscore_as_in_the_spec(self) -> None:
        assert safe_experiment_id("my_exp:1.0") == "my_exp_1.0"

    def test_ids_without_colon_are_kept(self) -> None:
        assert safe_experiment_id("golden_0.1") == "golden_0.1"

    def test_colliding_ids_share_a_directory_name(self) -> None:
        # The collision is caught by _meta.json, not by the mapping (see test_file_store).
        assert safe_experiment_id("a:1") == safe_experiment_id("a_1")

    @pytest.mark.parametrize(
        ("bad", "fragment"),
        [
            ("", "empty"),
            (".", "current or parent"),
            ("..", "current or parent"),
            ("../escape", "separator"),
            ("a/b", "separator"),
            ("a\\b", "separator"),
            ("a\x00b", "control"),
            ("a\nb", "control"),
            ("a\x1fb", "control"),  # the last of C0
            ("a\x7fb", "control"),  # DEL
            ("x" * 201, "longer than 200"),
            ("x" * 10_000, "longer than 200"),
        ],
    )
    def test_unsafe_ids_are_rejected_with_the_reason(self, bad: str, fragment: str) -> None:
        with pytest.raises(ConfigError, match=fragment) as info:
            safe_experiment_id(bad)
        assert "my_exp:1.0" in str(info.value)

    def test_a_huge_id_is_shortened_in_the_message(self) -> None:
        with pytest.raises(ConfigError) as info:
            safe_experiment_id("y" * 10_000)
        assert len(str(info.value)) < 400

    def test_a_non_string_is_rejected(self) -> None:
        with pytest.raises(ConfigError, match="must be a string"):
            safe_experiment_id(17)  # type: ignore[arg-type]

    def test_two_hundred_characters_are_allowed(self) -> None:
        assert safe_experiment_id("x" * 200) == "x" * 200


class TestValidateRunId:
    @pytest.mark.parametrize("good", [HEX64, "101136d379f26e81", "run-1", "A.b-9"])
    def test_valid_ids_are_returned(self, good: str) -> None:
        assert validate_run_id(good) == good

    @pytest.mark.parametrize(
        "bad",
        ["", ".", "..", "../x", "a/b", "a\\b", "a\x00", ".hidden", "-x", "a_b", "x" * 129, 5],
    )
    def test_unsafe_ids_are_rejected(self, bad: str) -> None:
        with pytest.raises(ConfigError, match="invalid run id") as info:
            validate_run_id(bad)
        assert "letters, digits" in str(info.value)

    def test_underscore_is_refused_because_it_ends_the_run_id_in_log_names(self) -> None:
        with pytest.raises(ConfigError, match=r"'\.' or '-'"):
            validate_run_id("run_1")


class TestValidateName:
    @pytest.mark.parametrize("good", ["config", "model.v2", "train_log", "a-b", "9"])
    def test_valid_names_are_returned(self, good: str) -> None:
        assert validate_name(good, "artifact name") == good

    @pytest.mark.parametrize(
        "bad", ["", "_manifest", "_x", ".x", "..", "a/b", "a\\b", "a\x00b", "a b", "n" * 129]
    )
    def test_unsafe_or_reserved_names_are_rejected(self, bad: str) -> None:
        with pytest.raises(ConfigError, match="invalid log name") as info:
            validate_name(bad, "log name")
        assert "reserved" in str(info.value)

    def test_formats_follow_the_same_rule(self) -> None:
        assert validate_format("tar.gz") == "tar.gz"
        with pytest.raises(ConfigError, match="artifact format"):
            validate_format("../json")


class TestFileStoreLayout:
    def test_every_path_is_under_the_directory(self, tmp_path: Path) -> None:
        layout = FileStoreLayout(tmp_path)
        assert layout.run_path(HEX64) == tmp_path / "runs" / f"{HEX64}.json"
        assert layout.derived_path(HEX64) == tmp_path / "derived" / f"{HEX64}.json"
        assert layout.artifact_dir(HEX64) == tmp_path / "artifacts" / HEX64
        assert layout.artifact_path(HEX64, "model", "npy") == (
            tmp_path / "artifacts" / HEX64 / "model.npy"
        )
        assert layout.artifact_manifest_path(HEX64) == (
            tmp_path / "artifacts" / HEX64 / "_manifest.json"
        )
        assert layout.log_path(HEX64, "run") == tmp_path / "logs" / f"{HEX64}_run.log"
        assert layout.result_path(HEX64, "curve") == tmp_path / "results" / HEX64 / "curve.json"
        assert layout.meta_path == tmp_path / "_meta.json"
        assert layout.experiments_dir == tmp_path / "experiments"

    def test_artifact_uri_is_relative(self, tmp_path: Path) -> None:
        assert (
            FileStoreLayout(tmp_path).artifact_uri("r1", "cfg", "json") == "artifacts/r1/cfg.json"
        )

    def test_manifest_file_name_uses_utc_with_microseconds(self, tmp_path: Path) -> None:
        when = dt.datetime(2026, 1, 2, 4, 5, 6, 7, tzinfo=dt.timezone(dt.timedelta(hours=1)))
        path = FileStoreLayout(tmp_path).experiment_manifest_path("my_exp:1.0", when)
        assert path == tmp_path / "experiments" / "my_exp_1.0_20260102_030506_000007.json"

    def test_paths_validate_ids_before_building(self, tmp_path: Path) -> None:
        layout = FileStoreLayout(tmp_path)
        with pytest.raises(ConfigError):
            layout.run_path("../../etc/passwd")
        with pytest.raises(ConfigError):
            layout.log_path(HEX64, "../x")
        with pytest.raises(ConfigError):
            layout.result_path(HEX64, "_hidden")

    def test_ensure_skeleton_creates_every_directory(self, tmp_path: Path) -> None:
        layout = FileStoreLayout(tmp_path / "a" / "b")
        layout.ensure_skeleton()
        layout.ensure_skeleton(durable=True)
        names = sorted(p.name for p in layout.directory.iterdir())
        assert names == ["artifacts", "derived", "experiments", "logs", "results", "runs"]


class TestExperimentIdsHaveOneSpelling:
    def test_an_id_not_in_nfc_form_is_refused_with_its_nfc_spelling(self) -> None:
        nfd = unicodedata.normalize("NFD", "café:1")
        with pytest.raises(ConfigError, match="NFC") as info:
            validate_experiment_id(nfd)
        assert repr("café:1") in str(info.value)

    def test_a_record_of_such_an_id_is_refused_by_a_collection(self, tmp_path: Path) -> None:
        store = FileStoreConfig(root=str(tmp_path)).connect()
        with pytest.raises(ConfigError, match="NFC"):
            store.put_run_record(make_record(unicodedata.normalize("NFD", "café:1")))
        assert list(tmp_path.iterdir()) == []
