"""The store rules of _rules.py at their edges: who is refused, and what the refusal says.

Written against the survivors of a mutation run (docs/testing.md): the scope check on an
unbound store, the attributes the errors carry, and the messages that must name the bad
value, the rule broken and the fix.
"""

from __future__ import annotations

import pytest

from metalab.errors import ConfigError, CorruptRecordError, ExperimentMismatchError
from metalab.store._rules import (
    batch_winner,
    check_filed_under,
    check_scope,
    validate_experiment_id,
    validate_format,
    validate_name,
    validate_run_id,
)


class TestCheckScope:
    def test_an_unbound_store_takes_any_experiment(self) -> None:
        check_scope(None, "exp", "/root")

    def test_a_bound_store_takes_its_own_experiment(self) -> None:
        check_scope("exp", "exp", "/root")

    def test_a_bound_store_refuses_another_experiment_and_names_both(self) -> None:
        with pytest.raises(ExperimentMismatchError) as info:
            check_scope("mine", "theirs", "/root/mine")
        assert (info.value.path, info.value.expected, info.value.found) == (
            "/root/mine",
            "theirs",
            "mine",
        )


class TestCheckFiledUnder:
    def test_the_run_it_is_filed_under_passes(self) -> None:
        check_filed_under("r1", "r1", "/x/r1.json")

    def test_another_run_is_corrupt_and_the_error_says_which(self) -> None:
        with pytest.raises(CorruptRecordError) as info:
            check_filed_under("r2", "r1", "/x/r1.json")
        assert info.value.path == "/x/r1.json"
        assert info.value.reason == "the document holds run 'r2'"


class TestBatchWinner:
    def test_an_empty_batch_is_refused_with_a_message(self) -> None:
        with pytest.raises(ValueError, match=r"^a batch of puts of one run is never empty$"):
            batch_winner([])


class TestMessagesShowTheBadValue:
    def test_a_bad_run_id_is_shown(self) -> None:
        with pytest.raises(ConfigError, match=r"^invalid run id 'a_b': a run id must be 1 to 128"):
            validate_run_id("a_b")

    def test_a_bad_name_is_shown_with_the_default_kind(self) -> None:
        with pytest.raises(ConfigError, match=r"^invalid name '\.hidden': it must be 1 to 128"):
            validate_name(".hidden")

    def test_a_bad_format_says_it_is_an_artifact_format(self) -> None:
        with pytest.raises(ConfigError, match=r"^invalid artifact format 'a/b': it must be"):
            validate_format("a/b")

    def test_a_non_string_experiment_id_names_its_type(self) -> None:
        with pytest.raises(ConfigError, match=r"^experiment id must be a string, got int$"):
            validate_experiment_id(3)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("bad", "problem"),
        [
            ("", "it is empty"),
            ("a/b", "it contains a path separator ('/' or '\\\\')"),
            ("a\x7fb", "it contains NUL or another control character"),
            ("..", "it names the current or parent directory"),
            ("e\u0301", "it is not in Unicode NFC form (write it as unicodedata.normalize("),
        ],
    )
    def test_a_bad_experiment_id_is_shown_with_its_problem_and_the_fix(
        self, bad: str, problem: str
    ) -> None:
        with pytest.raises(ConfigError) as info:
            validate_experiment_id(bad)
        message = str(info.value)
        assert message.startswith(f"invalid experiment id {bad!r}: {problem}")
        assert message.endswith(
            "; use a name like 'my_exp:1.0' (not '.' or '..', no '/', '\\\\' or control "
            "characters, at most 200 characters)"
        )


class TestLongValuesAreShortened:
    """A value's repr is shown whole up to 80 characters, else as head ... tail (length)."""

    def test_a_repr_of_exactly_80_characters_is_shown_whole(self) -> None:
        bad = "_" * 78  # repr adds two quotes
        with pytest.raises(ConfigError) as info:
            validate_run_id(bad)
        assert f"invalid run id {bad!r}:" in str(info.value)

    def test_a_repr_of_81_characters_keeps_60_then_12(self) -> None:
        bad = "_" + "".join(chr(ord("a") + i % 26) for i in range(78))
        text = repr(bad)
        assert len(text) == 81
        with pytest.raises(ConfigError) as info:
            validate_run_id(bad)
        assert f"invalid run id {text[:60]}...{text[-12:]} (81 chars):" in str(info.value)
