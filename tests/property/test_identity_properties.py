"""Run ids and seeds are the same in every process and for every spelling of a value."""

from __future__ import annotations

import math
import os
import pickle
import random
import subprocess
import sys
import textwrap
import unicodedata
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from metalab import _codec
from metalab._identity import fingerprint, run_id_for
from metalab.records import JSONValue, RunRecord
from metalab.seeds import SeedBundle
from metalab.testing.strategies import experiment_ids, json_values, keys

params_dicts = st.dictionaries(keys, json_values(12), max_size=6)

# A long-lived worker with its own hash seed answers every example: one interpreter
# start for the whole test instead of one per example.
WORKER = textwrap.dedent(
    """
    import pickle, sys
    from metalab._identity import fingerprint, run_id_for
    from metalab.seeds import SeedBundle

    while True:
        try:
            cases, bundles = pickle.load(sys.stdin.buffer)
        except EOFError:
            break
        ids = [run_id_for(eid, fingerprint(ctx), fingerprint(p), SeedBundle(b, r).fingerprint)
               for eid, ctx, p, b, r in cases]
        draws = [
            (SeedBundle(b, r).rng().random(), float(SeedBundle(b, r).numpy().random()),
             SeedBundle(b, r).derive(name).seed)
            for b, r, name in bundles
        ]
        pickle.dump((ids, draws), sys.stdout.buffer)
        sys.stdout.buffer.flush()
    """
)


@pytest.fixture(scope="module")
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    hash_seed = "0" if os.environ.get("PYTHONHASHSEED") == "12345" else "12345"
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
    yield proc
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    proc.stdout.close()


def _ask(proc: subprocess.Popen[bytes], payload: object) -> Any:
    assert proc.stdin is not None
    assert proc.stdout is not None
    pickle.dump(payload, proc.stdin)
    proc.stdin.flush()
    return pickle.load(proc.stdout)


def _no_key_collisions(value: object) -> bool:
    if isinstance(value, dict):
        normal = {unicodedata.normalize("NFC", k) for k in value}
        return len(normal) == len(value) and all(_no_key_collisions(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_key_collisions(v) for v in value)
    return True


# Each example sends a batch of cases, so a few dozen examples cover hundreds of ids.
@settings(max_examples=30)
@given(
    cases=st.lists(
        st.tuples(
            experiment_ids(),
            params_dicts,
            params_dicts,
            st.integers(-(2**63), 2**63 - 1),
            st.integers(0, 1000),
        ),
        min_size=1,
        max_size=20,
    ),
    names=st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=5),
)
def test_run_ids_and_seeds_match_in_another_process(
    other_process: subprocess.Popen[bytes],
    cases: list[tuple[str, dict[str, JSONValue], dict[str, JSONValue], int, int]],
    names: list[str],
) -> None:
    assume(all(_no_key_collisions(ctx) and _no_key_collisions(p) for _, ctx, p, _, _ in cases))
    ids = [
        run_id_for(eid, fingerprint(ctx), fingerprint(p), SeedBundle(b, r).fingerprint)
        for eid, ctx, p, b, r in cases
    ]
    bundles = [(b, r, names[i % len(names)]) for i, (_, _, _, b, r) in enumerate(cases)]
    draws = [
        (
            SeedBundle(b, r).rng().random(),
            float(SeedBundle(b, r).numpy().random()),
            SeedBundle(b, r).derive(name).seed,
        )
        for b, r, name in bundles
    ]
    assert _ask(other_process, (cases, bundles)) == (ids, draws)


def _shuffled(value: JSONValue, rng: random.Random) -> JSONValue:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def _respelled(value: JSONValue, form: Literal["NFC", "NFD"]) -> JSONValue:
    if isinstance(value, str):
        return unicodedata.normalize(form, value)
    if isinstance(value, dict):
        return {unicodedata.normalize(form, k): _respelled(v, form) for k, v in value.items()}
    if isinstance(value, list):
        return [_respelled(v, form) for v in value]
    return value


@given(params=params_dicts, seed=st.integers())
def test_key_order_never_changes_a_fingerprint(params: dict[str, JSONValue], seed: int) -> None:
    assume(_no_key_collisions(params))
    assert fingerprint(_shuffled(params, random.Random(seed))) == fingerprint(params)


@given(params=params_dicts, form=st.sampled_from(["NFC", "NFD"]))
def test_unicode_spelling_never_changes_a_fingerprint(
    params: dict[str, JSONValue], form: Literal["NFC", "NFD"]
) -> None:
    assume(_no_key_collisions(params))
    assert fingerprint(_respelled(params, form)) == fingerprint(params)


@given(params=params_dicts)
def test_params_read_back_from_a_record_have_the_same_fingerprint(
    params: dict[str, JSONValue],
) -> None:
    assume(_no_key_collisions(params))
    record = RunRecord.running(run_id="a" * 64, experiment_id="e:1", params=params)
    stored = _codec.RUN_RECORD.decode(_codec.RUN_RECORD.encode(record)).params
    assert fingerprint(stored) == fingerprint(params)


@given(a=json_values(8), b=json_values(8))
def test_fingerprints_are_equal_exactly_for_equivalent_values(a: JSONValue, b: JSONValue) -> None:
    assume(_no_key_collisions(a) and _no_key_collisions(b))
    # Equivalent: the same JSON once -0.0 is 0.0, every NaN is one NaN and text is NFC.
    assert (fingerprint(a) == fingerprint(b)) == (_comparable(a) == _comparable(b))


def _comparable(value: JSONValue) -> object:
    if isinstance(value, bool) or value is None:
        return (type(value).__name__, value)
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else (value + 0.0).hex())
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, str):
        return ("str", unicodedata.normalize("NFC", value))
    if isinstance(value, list):
        return ("list", [_comparable(v) for v in value])
    return (
        "dict",
        sorted((unicodedata.normalize("NFC", k), _comparable(v)) for k, v in value.items()),
    )
