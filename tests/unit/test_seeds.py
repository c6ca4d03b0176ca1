"""Seed plans and bundles: reproducible, independent random streams."""

from __future__ import annotations

import pickle
import random

import pytest

import metalab
from metalab.errors import ConfigError
from metalab.seeds import SeedBundle, SeedPlan


class TestSeedPlan:
    def test_plan_yields_one_bundle_per_replicate(self) -> None:
        plan = metalab.seeds(base=7, replicates=3)
        assert len(plan) == 3
        assert [b.replicate for b in plan] == [0, 1, 2]
        assert {b.base for b in plan} == {7}

    def test_plan_is_indexable(self) -> None:
        plan = metalab.seeds(base=7, replicates=3)
        assert plan[1] == SeedBundle(7, 1)
        assert plan[-1] == SeedBundle(7, 2)
        with pytest.raises(IndexError):
            plan[3]

    def test_manifest_matches_the_0_1_format(self) -> None:
        assert metalab.seeds(base=7).to_manifest() == {
            "type": "SeedPlan",
            "base": 7,
            "replicates": 1,
        }

    @pytest.mark.parametrize("replicates", [0, -1, 1.5, True])
    def test_bad_replicate_counts_are_refused(self, replicates: object) -> None:
        with pytest.raises(ConfigError, match="replicates"):
            metalab.seeds(base=1, replicates=replicates)  # type: ignore[arg-type]

    @pytest.mark.parametrize("base", ["1", 1.0, None, False])
    def test_non_int_bases_are_refused(self, base: object) -> None:
        with pytest.raises(ConfigError, match="base"):
            metalab.seeds(base=base)  # type: ignore[arg-type]


class TestSeedBundleStreams:
    def test_same_bundle_gives_same_numbers(self) -> None:
        a, b = SeedBundle(123, 1), SeedBundle(123, 1)
        assert [a.rng().random() for _ in range(3)] == [b.rng().random() for _ in range(3)]

    def test_each_call_returns_a_fresh_generator(self) -> None:
        bundle = SeedBundle(123)
        assert bundle.rng().random() == bundle.rng().random()

    def test_replicates_get_different_streams(self) -> None:
        values = {SeedBundle(123, i).rng().random() for i in range(10)}
        assert len(values) == 10

    def test_bases_get_different_streams(self) -> None:
        assert SeedBundle(1).rng().random() != SeedBundle(2).rng().random()

    def test_seed_is_pinned(self) -> None:
        # Pinned: changing the derivation would change every user's numbers.
        assert SeedBundle(123, 0).seed == 0xAAE690C94059FFDF
        assert SeedBundle(123, 0).rng().random() == random.Random(0xAAE690C94059FFDF).random()

    def test_seed_is_64_bit(self) -> None:
        assert 0 <= SeedBundle(-5, 3).seed < 2**64

    def test_numpy_generator_is_reproducible(self) -> None:
        bundle = SeedBundle(9, 2)
        assert bundle.numpy().random() == bundle.numpy().random()
        assert bundle.numpy().random() != SeedBundle(9, 3).numpy().random()


class TestDerive:
    def test_derive_is_deterministic(self) -> None:
        bundle = SeedBundle(5, 1)
        assert bundle.derive("init") == bundle.derive("init")
        assert bundle.derive("init").seed == SeedBundle(5, 1).derive("init").seed

    def test_derived_streams_are_independent(self) -> None:
        bundle = SeedBundle(5, 1)
        seeds = {bundle.seed, bundle.derive("a").seed, bundle.derive("b").seed}
        assert len(seeds) == 3

    def test_derivation_path_matters(self) -> None:
        bundle = SeedBundle(5)
        assert bundle.derive("a").derive("b").seed != bundle.derive("b").derive("a").seed

    def test_named_rng_is_the_derived_bundles_rng(self) -> None:
        bundle = SeedBundle(5)
        assert bundle.rng("noise").random() == bundle.derive("noise").rng().random()
        assert bundle.numpy("noise").random() == bundle.derive("noise").numpy().random()

    @pytest.mark.parametrize("name", ["", 3, None])
    def test_bad_names_are_refused(self, name: object) -> None:
        with pytest.raises(ConfigError, match="non-empty string"):
            SeedBundle(5).derive(name)  # type: ignore[arg-type]


class TestIdentity:
    def test_fingerprint_differs_by_replicate_and_path(self) -> None:
        fps = {SeedBundle(1, 0).fingerprint, SeedBundle(1, 1).fingerprint}
        fps.add(SeedBundle(1, 0).derive("x").fingerprint)
        assert len(fps) == 3

    def test_bundles_and_plans_pickle(self) -> None:
        bundle = SeedBundle(3, 2).derive("x")
        assert pickle.loads(pickle.dumps(bundle)) == bundle
        plan = SeedPlan(3, 4)
        assert pickle.loads(pickle.dumps(plan)) == plan

    def test_to_dict_is_json(self) -> None:
        assert SeedBundle(3, 2).derive("x").to_dict() == {
            "base": 3,
            "replicate": 2,
            "path": ["x"],
        }


class TestMetalab01Seeds:
    """The values below were computed with metalab 0.1's own SeedBundle (its
    seeds/bundle.py, run by hand): a 0.1 user's preprocessing must come out the same."""

    def test_preprocessing_seeds_give_0_1_numbers(self) -> None:
        prep = SeedBundle.for_preprocessing(42)
        assert prep.root_seed == 5875625451538769114
        assert prep.derive("train_test_split") == 10722952159750637889
        assert prep.numpy_seed("train_test_split") == 963758401
        assert prep.rng("shuffle").random() == 0.7615324404616396
        np = pytest.importorskip("numpy")
        draws = prep.numpy("train_test_split").random(3).tolist()
        assert draws == [0.9298788673404441, 0.4094112905444337, 0.28506555704454795]
        assert isinstance(np.random.default_rng(prep.numpy_seed()), np.random.Generator)

    def test_0_1_names_of_a_bundle(self) -> None:
        bundle = SeedBundle(42, 3)
        assert bundle.replicate_index == 3
        assert 0 <= bundle.numpy_seed() < 2**32
        assert bundle.numpy_seed("init") == bundle.derive("init").seed % 2**32
        assert SeedBundle.from_dict({"root_seed": 7, "replicate_index": 2}) == SeedBundle(7, 2)
        assert SeedBundle.from_dict({"root_seed": 7, "replicate_index": None}) == SeedBundle(7)
        derived = SeedBundle(1, 2).derive("a")
        assert SeedBundle.from_dict(derived.to_dict()) == derived

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"seed": 1}, "not a seed bundle"),
            ({"root_seed": "7"}, "root_seed must be an int"),
            ({"base": 1, "path": "ab"}, "path must be a list of names"),
            ({"base": True}, "seed base must be an int"),
        ],
    )
    def test_a_bad_dict_is_refused(self, data: dict[str, object], message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            SeedBundle.from_dict(data)
