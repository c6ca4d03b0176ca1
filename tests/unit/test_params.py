"""Parameter sources: grid, manual and random, and their distributions."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any, Final

import pytest

import metalab
from metalab.errors import ConfigError
from metalab.params import Distribution, ParamSource, RandomSource


class TestGrid:
    def test_grid_is_the_cartesian_product_last_axis_fastest(self) -> None:
        source = metalab.grid(a=[1, 2], b=["x", "y", "z"])
        assert len(source) == 6
        assert list(source) == [
            {"a": 1, "b": "x"},
            {"a": 1, "b": "y"},
            {"a": 1, "b": "z"},
            {"a": 2, "b": "x"},
            {"a": 2, "b": "y"},
            {"a": 2, "b": "z"},
        ]

    def test_grid_accepts_any_iterable_and_iterates_twice(self) -> None:
        source = metalab.grid(n=range(3), m=(v for v in [True]))
        assert (
            list(source)
            == list(source)
            == [
                {"n": 0, "m": True},
                {"n": 1, "m": True},
                {"n": 2, "m": True},
            ]
        )

    def test_empty_grid_is_one_empty_combination(self) -> None:
        source = metalab.grid()
        assert len(source) == 1
        assert list(source) == [{}]

    def test_a_single_string_is_refused_with_a_fix(self) -> None:
        with pytest.raises(ConfigError, match=r"opt=\['adam'\]"):
            metalab.grid(opt="adam")

    def test_an_empty_axis_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="has no values"):
            metalab.grid(a=[])

    def test_a_scalar_axis_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="must be a list"):
            metalab.grid(a=3)  # type: ignore[arg-type]

    def test_manifest_matches_the_0_1_format(self) -> None:
        assert metalab.grid(lr=[0.1, 0.2], opt=("adam",)).to_manifest() == {
            "type": "GridSource",
            "spec": {"lr": [0.1, 0.2], "opt": ["adam"]},
            "total_cases": 2,
        }


class TestManual:
    def test_manual_yields_its_cases_in_order(self) -> None:
        cases = [{"lr": 0.1}, {"lr": 0.01, "warmup": True}]
        source = metalab.manual(cases)
        assert len(source) == 2
        assert list(source) == cases

    def test_editing_a_yielded_dict_does_not_change_the_source(self) -> None:
        source = metalab.manual([{"a": 1}])
        next(iter(source))["a"] = 2
        assert list(source) == [{"a": 1}]

    def test_non_dict_cases_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="manual case 1 must be a dict"):
            metalab.manual([{"a": 1}, [("a", 2)]])  # type: ignore[list-item]

    def test_non_string_keys_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="key of manual case 0"):
            metalab.manual([{1: "a"}])  # type: ignore[dict-item]

    def test_manifest_lists_the_cases(self) -> None:
        manifest = metalab.manual([{"a": (1, 2)}]).to_manifest()
        assert manifest == {"type": "ManualSource", "cases": [{"a": [1, 2]}], "total_cases": 1}


PINNED_U: Final = 0.9387005001609459
SPACE: Final[dict[str, Distribution]] = {
    "lr": metalab.loguniform(1e-5, 1e-1),
    "momentum": metalab.uniform(0.5, 0.99),
    "layers": metalab.randint(1, 4),
    "act": metalab.choice(["relu", "tanh"]),
}


class TestRandom:
    def test_random_draws_n_trials_within_their_distributions(self) -> None:
        trials = list(metalab.random(SPACE, n_trials=200, seed=3))
        assert len(trials) == 200
        for trial in trials:
            assert list(trial) == list(SPACE)
            assert 1e-5 <= trial["lr"] <= 1e-1
            assert 0.5 <= trial["momentum"] <= 0.99
            assert trial["layers"] in {1, 2, 3, 4}
            assert trial["act"] in {"relu", "tanh"}
        assert {t["layers"] for t in trials} == {1, 2, 3, 4}

    def test_same_seed_same_trials(self) -> None:
        a = list(metalab.random(SPACE, n_trials=5, seed=3))
        b = list(metalab.random(SPACE, n_trials=5, seed=3))
        assert a == b

    def test_different_seeds_differ(self) -> None:
        a = list(metalab.random(SPACE, n_trials=5, seed=3))
        b = list(metalab.random(SPACE, n_trials=5, seed=4))
        assert a != b

    def test_trial_i_does_not_depend_on_earlier_draws_or_space_order(self) -> None:
        source = metalab.random(SPACE, n_trials=5, seed=3)
        reordered = RandomSource(dict(reversed(list(SPACE.items()))), 5, 3)
        assert source.trial(4) == list(source)[4]
        assert {k: reordered.trial(4)[k] for k in SPACE} == source.trial(4)

    def test_first_trial_is_pinned(self) -> None:
        # Pinned: changing the derivation would change every random sweep's params.
        trial = metalab.random({"u": metalab.uniform(0, 1)}, n_trials=1, seed=0).trial(0)
        assert trial == {"u": PINNED_U}

    def test_loguniform_is_uniform_in_log_space(self) -> None:
        trials = list(metalab.random({"x": metalab.loguniform(1e-4, 1.0)}, 2000, seed=1))
        below = sum(math.log10(t["x"]) < -2 for t in trials)
        assert 850 < below < 1150

    def test_manifest_describes_the_space(self) -> None:
        manifest = metalab.random({"a": metalab.choice([1, "x"])}, 3, seed=9).to_manifest()
        assert manifest == {
            "type": "RandomSource",
            "space": {"a": {"type": "Choice", "options": [1, "x"]}},
            "n_trials": 3,
            "seed": 9,
        }

    def test_trial_out_of_range_is_an_index_error(self) -> None:
        with pytest.raises(IndexError):
            metalab.random(SPACE, n_trials=2).trial(2)

    @pytest.mark.parametrize("n_trials", [-1, 1.5, "3"])
    def test_bad_trial_counts_are_refused(self, n_trials: object) -> None:
        with pytest.raises(ConfigError, match="n_trials"):
            metalab.random(SPACE, n_trials=n_trials)  # type: ignore[arg-type]

    def test_non_distributions_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="must be a distribution"):
            metalab.random({"a": [1, 2]}, n_trials=2)  # type: ignore[dict-item]


class TestDistributions:
    def test_uniform_needs_ordered_finite_bounds(self) -> None:
        with pytest.raises(ConfigError, match="low <= high"):
            metalab.uniform(1, 0)
        with pytest.raises(ConfigError, match="finite"):
            metalab.uniform(0, math.inf)

    def test_loguniform_needs_positive_bounds(self) -> None:
        with pytest.raises(ConfigError, match="positive"):
            metalab.loguniform(0, 1)

    def test_randint_needs_ints_and_includes_both_ends(self) -> None:
        with pytest.raises(ConfigError, match="ints"):
            metalab.randint(0, 1.5)  # type: ignore[arg-type]
        rng = random.Random(0)
        assert {metalab.randint(3, 4).sample(rng) for _ in range(50)} == {3, 4}

    def test_choice_needs_options(self) -> None:
        with pytest.raises(ConfigError, match="at least one"):
            metalab.choice([])
        with pytest.raises(ConfigError, match="list of options"):
            metalab.choice("abc")


class TestProtocol:
    @pytest.mark.parametrize(
        "source",
        [
            metalab.grid(a=[1]),
            metalab.manual([{"a": 1}]),
            metalab.random({"a": metalab.uniform(0, 1)}, n_trials=1),
        ],
    )
    def test_builtin_sources_satisfy_the_protocol(self, source: ParamSource) -> None:
        assert isinstance(source, ParamSource)
        assert len(list(source)) == len(source)
        json.dumps(source.to_manifest())

    def test_a_custom_source_satisfies_the_protocol(self) -> None:
        class Halving:
            def __iter__(self):  # type: ignore[no-untyped-def]
                return iter([{"n": 8}, {"n": 4}])

            def __len__(self) -> int:
                return 2

            def to_manifest(self) -> dict[str, object]:
                return {"type": "Halving"}

        assert isinstance(Halving(), ParamSource)


class TestResolvers:
    """with_resolver and Experiment(param_resolver=...) (metalab 0.1 names)."""

    def test_a_resolver_derives_parameters_and_the_run_ids_follow(self) -> None:
        def batch_for_width(context: Any, params: dict[str, Any]) -> dict[str, Any]:
            return {**params, "batch": context["memory"] // params["width"]}

        source = metalab.with_resolver(metalab.grid(width=[1, 2]), batch_for_width)
        assert len(source) == 2
        resolved = source.with_context({"memory": 8})
        assert list(resolved) == [{"width": 1, "batch": 8}, {"width": 2, "batch": 4}]
        manifest = resolved.to_manifest()
        assert manifest["type"] == "ResolvedSource"
        assert str(manifest["resolver"]).endswith("batch_for_width")

        op = metalab.operation(lambda: None)
        exp = metalab.Experiment(
            name="r",
            version="1",
            operation=op,
            params=metalab.grid(width=[1, 2]),
            context={"memory": 8},
            param_resolver=batch_for_width,
        )
        assert [dict(p) for p in exp.params] == [
            {"width": 1, "batch": 8},
            {"width": 2, "batch": 4},
        ]
        again = exp.replace(version="2")  # resolved once, not twice
        assert list(again.params) == list(exp.params)

    def test_a_resolver_object_with_resolve_works_too(self) -> None:
        class Doubler:
            def resolve(self, _context_meta: Any, params_raw: dict[str, Any]) -> dict[str, Any]:
                return {"x": params_raw["x"] * 2}

        assert list(metalab.with_resolver(metalab.grid(x=[1, 2]), Doubler())) == [
            {"x": 2},
            {"x": 4},
        ]

    def test_bad_resolvers_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="a resolver is a function"):
            metalab.with_resolver(metalab.grid(x=[1]), 3)  # type: ignore[arg-type]
        source = metalab.with_resolver(metalab.grid(x=[1, 2]), lambda _c, p: [p])  # type: ignore[arg-type,return-value]
        with pytest.raises(ConfigError, match="at position 0; it must return a dict"):
            list(source)

    def test_a_resolver_refusing_a_combination_stops_the_sweep_before_it_starts(
        self, tmp_path: Path
    ) -> None:
        def only_small(_context: Any, params: dict[str, Any]) -> dict[str, Any]:
            if params["n"] > 2:
                raise ValueError(f"n={params['n']} is too large")
            return params

        exp = metalab.Experiment(
            name="r",
            version="1",
            operation=metalab.operation(lambda: None),
            params=metalab.grid(n=[1, 3]),
            param_resolver=only_small,
        )
        with pytest.raises(ValueError, match="n=3 is too large"):
            metalab.run(exp, store=tmp_path / "s")
        assert not (tmp_path / "s").exists()
