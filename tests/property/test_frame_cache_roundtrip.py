"""A frame read back from the frame cache is the frame the records build, for any runs.

Pandas, polars and Arrow alike: every column's name, type and values (NaN, gaps,
mixed types, nested params, tags, time zones), in the runs' order.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pandas as pd
import polars.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from metalab.records import MetricValue, RunRecord
from metalab.results._cached_frame import decode_columns, encode_columns, frame_rows
from metalab.results._frames import (
    Column,
    arrow_table,
    frame_columns,
    pandas_frame,
    polars_frame,
)
from metalab.testing import strategies as mst


def _no_nul_names(record: RunRecord) -> bool:
    # polars cuts a column name at NUL (and then refuses the duplicate), with or
    # without a cache: not what this test is about.
    return not any("\x00" in key for key in (*record.params, *record.metrics))


_RUNS = st.lists(mst.query_records(), max_size=8, unique_by=lambda r: r.run_id) | st.lists(
    mst.run_records().filter(_no_nul_names), max_size=4, unique_by=lambda r: r.run_id
)
_UINT64_MAX = 2**64 - 1


def _ints(value: object) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ints(v)]
    if isinstance(value, list | tuple):
        return [i for v in value for i in _ints(v)]
    return []


def _beyond_msgpack(records: list[RunRecord], derived: list[dict[str, MetricValue]]) -> bool:
    values = [(r.params, r.metrics) for r in records] + derived
    return any(not -(2**63) <= i <= _UINT64_MAX for i in _ints(values))


def _same_values(left: Any, right: Any) -> bool:
    """Equal, NaN included (MessagePack keeps a float's bits, ``==`` does not hold NaN)."""
    encode = msgspec.msgpack.Encoder(enc_hook=repr).encode  # pandas Timestamps and NaT
    return bool(encode(left) == encode(right))


def _assert_same_pandas(built: pd.DataFrame, cached: pd.DataFrame) -> None:
    assert list(built.columns) == list(cached.columns)
    assert list(built.dtypes) == list(cached.dtypes)
    for name in built.columns:
        left, right = built[name].to_numpy(), cached[name].to_numpy()
        if left.dtype == object:
            assert _same_values(left.tolist(), right.tolist()), name
        else:
            assert np.array_equal(left, right, equal_nan=left.dtype.kind == "f"), name


def _fresh(payload: bytes) -> list[Column]:
    decoded = decode_columns(payload)
    assert decoded is not None
    return decoded[1]


@settings(max_examples=80, deadline=None)
@given(_RUNS, st.lists(mst.query_derived() | st.just({}), max_size=8))
def test_a_cached_frame_is_the_frame_the_records_build(
    records: list[RunRecord], derived_rows: list[dict[str, MetricValue]]
) -> None:
    derived = [derived_rows[i] if i < len(derived_rows) else {} for i in range(len(records))]
    built = frame_columns(records, derived)
    payload = encode_columns(built, len(records))
    if payload is None:  # only a value MessagePack cannot hold keeps a frame uncached
        assert _beyond_msgpack(records, derived)
        return
    assert frame_rows(payload) == len(records)
    decoded = decode_columns(payload)
    assert decoded is not None
    rows, cached = decoded
    assert rows == len(records)
    _assert_same_pandas(pandas_frame(built, rows), pandas_frame(cached, rows))
    # Each builder takes fresh columns, as each frame call builds (or decodes) its own.
    polars.testing.assert_frame_equal(
        polars_frame(frame_columns(records, derived))[0], polars_frame(_fresh(payload))[0]
    )
    left, left_text = arrow_table(frame_columns(records, derived))
    right, right_text = arrow_table(_fresh(payload))
    assert left.schema == right.schema
    assert left_text == right_text
    assert _same_values(left.to_pylist(), right.to_pylist())


def test_a_payload_that_is_not_a_frame_is_refused() -> None:
    records: list[RunRecord] = []
    payload = encode_columns(frame_columns(records, []), 0)
    assert payload is not None
    decoded = decode_columns(payload)
    assert decoded is not None
    assert decoded[0] == 0
    assert [c.name for c in decoded[1]] == [c.name for c in frame_columns(records, [])]
    for bad in (b"", b"\x00", payload[:-3], msgspec.msgpack.encode([2, 0, []])):
        assert decode_columns(bad) is None
    wrong_length = msgspec.msgpack.encode([1, 5, [["run_id", "str", False, "items", b"\x90"]]])
    assert decode_columns(wrong_length) is None
    unknown_kind = msgspec.msgpack.encode([1, 0, [["x", "complex", False, "items", b"\x90"]]])
    assert decode_columns(unknown_kind) is None
