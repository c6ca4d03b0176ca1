"""Defining experiments and operations."""

from __future__ import annotations

import pickle
import unicodedata
from typing import Any

import pytest

import metalab
from metalab.errors import ConfigError
from metalab.experiment import Operation, Runtime
from metalab.seeds import SeedBundle


@metalab.operation
def declares_params_and_capture(params: dict[str, Any], capture: object) -> object:
    return (params, capture)


@metalab.operation(name="renamed")
def takes_everything(**kwargs: Any) -> object:
    return sorted(kwargs)


def _invoke(op: Operation) -> object:
    return op.invoke(
        context={"c": 1},
        params={"p": 2},
        seeds=SeedBundle(0),
        capture="CAPTURE",  # type: ignore[arg-type]
        runtime=Runtime("r" * 64, "e:1", "thread"),
    )


class TestOperationInjection:
    def test_only_declared_arguments_are_passed(self) -> None:
        assert _invoke(declares_params_and_capture) == ({"p": 2}, "CAPTURE")

    def test_kwargs_receives_every_argument(self) -> None:
        assert _invoke(takes_everything) == ["capture", "context", "params", "runtime", "seeds"]

    def test_an_operation_without_arguments_is_allowed(self) -> None:
        assert _invoke(metalab.operation(lambda: 42)) == 42

    def test_parameters_with_defaults_are_left_alone(self) -> None:
        def op(params: dict[str, Any], scale: float = 2.0) -> float:
            return float(params["p"]) * scale

        assert _invoke(metalab.operation(op)) == 4.0

    def test_an_unknown_parameter_is_refused_with_the_choices(self) -> None:
        def op(params: object, data: object) -> None: ...

        with pytest.raises(ConfigError, match=r"'data'.*context, params, seeds, capture, runtime"):
            metalab.operation(op)

    def test_the_decorated_function_can_still_be_called_directly(self) -> None:
        assert declares_params_and_capture({"x": 1}, None) == ({"x": 1}, None)

    def test_name_and_ref(self) -> None:
        assert declares_params_and_capture.name == "declares_params_and_capture"
        assert takes_everything.name == "renamed"
        assert declares_params_and_capture.ref.endswith(":declares_params_and_capture")

    def test_code_hash_is_the_sha256_of_the_source(self) -> None:
        assert len(declares_params_and_capture.code_hash) == 64
        assert declares_params_and_capture.code_hash != takes_everything.code_hash

    def test_module_level_operations_pickle_by_reference(self) -> None:
        assert (
            pickle.loads(pickle.dumps(declares_params_and_capture)) is declares_params_and_capture
        )


def _experiment(**overrides: Any) -> metalab.Experiment:
    fields: dict[str, Any] = {
        "name": "exp",
        "version": "1.0",
        "operation": declares_params_and_capture,
        "params": metalab.grid(a=[1, 2, 3]),
        "seeds": metalab.seeds(base=1, replicates=2),
    }
    fields.update(overrides)
    return metalab.Experiment(**fields)


class TestExperiment:
    def test_experiment_id_is_name_colon_version(self) -> None:
        assert _experiment().experiment_id == "exp:1.0"

    def test_a_name_spelled_in_any_unicode_form_is_one_experiment(self) -> None:
        nfd = unicodedata.normalize("NFD", "café")
        composed = metalab.Experiment(
            name="café", version="1", operation=declares_params_and_capture, params=metalab.grid()
        )
        decomposed = composed.replace(name=nfd)
        assert decomposed.experiment_id == composed.experiment_id == "café:1"
        assert unicodedata.is_normalized("NFC", decomposed.experiment_id)

    def test_total_runs_is_combinations_times_replicates(self) -> None:
        assert _experiment().total_runs == 6

    def test_defaults(self) -> None:
        exp = metalab.Experiment(
            name="e", version="1", operation=declares_params_and_capture, params=metalab.grid()
        )
        assert exp.context == {}
        assert exp.seeds == metalab.seeds(base=0, replicates=1)
        assert exp.tags == ()

    def test_a_plain_function_is_wrapped_as_an_operation(self) -> None:
        def plain(params: object) -> None: ...

        exp = _experiment(operation=plain)
        assert isinstance(exp.operation, Operation)
        assert exp.operation.func is plain

    def test_tags_become_a_tuple(self) -> None:
        assert _experiment(tags=["a", "b"]).tags == ("a", "b")

    def test_replace_changes_a_field(self) -> None:
        assert _experiment().replace(version="2").experiment_id == "exp:2"

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("name", "", "name"),
            ("name", "a:b", "must not contain ':'"),
            ("version", 1, "version"),
            ("operation", 42, "must be a function"),
            ("params", [{"a": 1}], "parameter source"),
            ("seeds", 7, r"metalab\.seeds"),
            ("tags", "abc", "list of strings"),
        ],
    )
    def test_bad_fields_are_refused(self, field: str, value: object, message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            _experiment(**{field: value})


class TestRuntime:
    def test_scratch_dir_is_created_on_use_and_removed_by_cleanup(self) -> None:
        runtime = Runtime("r" * 64, "e:1", "thread")
        scratch = runtime.scratch_dir
        (scratch / "tmp.txt").write_text("x")
        assert runtime.scratch_dir == scratch
        runtime.cleanup()
        assert not scratch.exists()

    def test_cancel_requested_follows_the_callback(self) -> None:
        flag = [False]
        runtime = Runtime("r" * 64, "e:1", "thread", lambda: flag[0])
        seen = [runtime.cancel_requested]
        flag[0] = True
        seen.append(runtime.cancel_requested)
        assert seen == [False, True]
        assert not Runtime("r" * 64, "e:1", "process").cancel_requested
