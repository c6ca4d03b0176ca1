"""Canonical encoding, fingerprints and run ids."""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict

import msgspec
import numpy as np
import pytest

from metalab._identity import canonical_bytes, fingerprint, run_id_for, to_json, to_json_object
from metalab.errors import ConfigError


class TestCanonicalEncodingIgnoresRepresentation:
    def test_dict_key_order_does_not_change_the_fingerprint(self) -> None:
        assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})

    def test_nested_dict_key_order_does_not_change_the_fingerprint(self) -> None:
        left = {"outer": {"x": 1.5, "y": {"p": None, "q": True}}}
        right = {"outer": {"y": {"q": True, "p": None}, "x": 1.5}}
        assert fingerprint(left) == fingerprint(right)

    def test_nfc_and_nfd_spellings_of_a_string_are_one_value(self) -> None:
        assert fingerprint("caf\u00e9") == fingerprint("cafe\u0301")

    def test_nfc_and_nfd_spellings_of_a_key_are_one_key(self) -> None:
        assert fingerprint({"caf\u00e9": 1}) == fingerprint({"cafe\u0301": 1})

    def test_negative_zero_is_zero(self) -> None:
        assert fingerprint(-0.0) == fingerprint(0.0)

    def test_every_nan_is_the_same_nan(self) -> None:
        other_nan = np.frombuffer(np.array([0x7FF8000000000001], dtype=np.uint64).tobytes())[0]
        assert math.isnan(other_nan)
        assert fingerprint(float("nan")) == fingerprint(float(other_nan))

    def test_tuples_and_lists_are_the_same_sequence(self) -> None:
        assert fingerprint((1, (2.0, "x"))) == fingerprint([1, [2.0, "x"]])

    def test_numpy_scalars_equal_their_python_values(self) -> None:
        assert fingerprint({"n": np.int64(3), "x": np.float64(0.25)}) == fingerprint(
            {"n": 3, "x": 0.25}
        )

    def test_mapping_subclasses_equal_plain_dicts(self) -> None:
        assert fingerprint(OrderedDict([("b", 1), ("a", 2)])) == fingerprint({"a": 2, "b": 1})

    def test_dataclasses_and_structs_encode_as_their_fields(self) -> None:
        @dataclasses.dataclass
        class Point:
            x: int
            y: float

        class PointStruct(msgspec.Struct):
            x: int
            y: float

        expected = fingerprint({"x": 1, "y": 2.0})
        assert fingerprint(Point(1, 2.0)) == expected
        assert fingerprint(PointStruct(1, 2.0)) == expected


class TestCanonicalEncodingKeepsDistinctValuesApart:
    def test_int_and_float_of_equal_value_differ(self) -> None:
        assert fingerprint(1) != fingerprint(1.0)

    def test_bool_and_int_differ(self) -> None:
        assert fingerprint(True) != fingerprint(1)
        assert fingerprint(False) != fingerprint(0)

    def test_string_and_number_differ(self) -> None:
        assert fingerprint("1") != fingerprint(1)

    def test_none_and_empty_containers_differ(self) -> None:
        values: list[object] = [None, "", [], {}, 0, 0.0, False]
        assert len({fingerprint(v) for v in values}) == len(values)

    def test_nesting_boundaries_are_unambiguous(self) -> None:
        assert fingerprint([["a", "b"]]) != fingerprint([["a"], ["b"]])
        assert fingerprint(["ab"]) != fingerprint(["a", "b"])
        assert fingerprint({"a": {"b": 1}}) != fingerprint({"a": {}, "b": 1})

    def test_close_floats_differ(self) -> None:
        assert fingerprint(0.1 + 0.2) != fingerprint(0.3)

    def test_infinities_differ_from_each_other_and_from_nan(self) -> None:
        values = [math.inf, -math.inf, math.nan, 1e308]
        assert len({fingerprint(v) for v in values}) == 4

    def test_huge_ints_are_exact(self) -> None:
        assert fingerprint(2**70) != fingerprint(2**70 + 1)


class TestFingerprintFormat:
    def test_fingerprint_is_64_lowercase_hex(self) -> None:
        fp = fingerprint({"lr": 0.1})
        assert len(fp) == 64
        assert fp == fp.lower()
        int(fp, 16)

    def test_fingerprint_of_known_value_is_stable(self) -> None:
        # Pinned: if this changes, every existing run id changes with it.
        assert canonical_bytes({"b": [1, 2.5], "a": "x"}) == (
            b"m2{s1:as1:xs1:bl2[i1;d0x1.4000000000000p+1;]}"
        )

    def test_run_id_is_the_fingerprint_of_its_four_parts(self) -> None:
        parts = ("caf\u00e9:1", "c" * 64, "p" * 64, "s" * 64)
        assert run_id_for(*parts) == fingerprint(list(parts))
        assert run_id_for("cafe\u0301:1", *parts[1:]) == run_id_for(*parts)

    def test_run_id_depends_on_each_part(self) -> None:
        base = run_id_for("exp:1", "c", "p", "s")
        assert len({base, *(run_id_for(*parts) for parts in _variations())}) == 5


def _variations() -> list[tuple[str, str, str, str]]:
    return [
        ("exp:2", "c", "p", "s"),
        ("exp:1", "c2", "p", "s"),
        ("exp:1", "c", "p2", "s"),
        ("exp:1", "c", "p", "s2"),
    ]


class TestBadValuesAreRefused:
    def test_an_unsupported_type_names_its_place(self) -> None:
        with pytest.raises(ConfigError, match=r"params\['when'\].*set"):
            to_json({"when": {1, 2}}, "params")

    def test_non_string_keys_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="key 1 of type int"):
            fingerprint({1: "a"})

    def test_keys_that_collide_after_normalisation_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="unicode-normalised"):
            fingerprint({"caf\u00e9": 1, "cafe\u0301": 2})

    def test_arrays_get_a_hint(self) -> None:
        with pytest.raises(ConfigError, match=r"tolist\(\)"):
            to_json(np.arange(3), "context")

    def test_to_json_object_wants_a_mapping(self) -> None:
        with pytest.raises(ConfigError, match="must be a dict"):
            to_json_object([1, 2], "params")  # type: ignore[arg-type]


class TestToJson:
    def test_to_json_returns_plain_builtins(self) -> None:
        value = to_json({"a": (1, np.float32(0.5)), "b": OrderedDict(c=np.bool_(True))})
        assert value == {"a": [1, 0.5], "b": {"c": True}}
        assert type(value["a"][1]) is float  # type: ignore[index]

    def test_non_finite_floats_are_kept(self) -> None:
        value = to_json([math.inf, -math.inf])
        assert value == [math.inf, -math.inf]
