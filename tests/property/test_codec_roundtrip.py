from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from metalab import _codec
from metalab.records import RunRecord
from metalab.testing import assert_same_document, comparable
from metalab.testing import strategies as mst

CODECS: list[tuple[_codec.DocumentCodec[Any], st.SearchStrategy[Any]]] = [
    (_codec.RUN_RECORD, mst.run_records()),
    (_codec.DERIVED, mst.derived_metrics()),
    (_codec.RESULT, mst.result_documents()),
    (_codec.EXPERIMENT_MANIFEST, mst.experiment_manifests()),
    (_codec.ARTIFACT_MANIFEST, mst.artifact_manifests()),
    (_codec.STORE_META, mst.store_metas()),
]


def _strict_json(data: bytes) -> object:
    def reject(token: str) -> object:
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(data, parse_constant=reject)


@given(st.data())
def test_every_document_survives_encode_decode(data: st.DataObject) -> None:
    codec, strategy = data.draw(st.sampled_from(CODECS))
    doc = data.draw(strategy)
    encoded = codec.encode(doc)
    _strict_json(encoded)
    assert_same_document(codec.decode(encoded), doc)


@given(mst.run_records(), mst.aware_datetimes(utc=False))
def test_any_offset_is_written_as_the_same_instant_in_utc(
    record: RunRecord, started: dt.datetime
) -> None:
    shifted = msgspec.structs.replace(record, started_at=started)
    back = _codec.RUN_RECORD.decode(_codec.RUN_RECORD.encode(shifted))
    assert back.started_at == started
    assert back.started_at.tzinfo is dt.UTC


@given(mst.run_records())
def test_encoding_is_stable_across_a_round_trip(record: Any) -> None:
    once = _codec.RUN_RECORD.encode(record)
    assert _codec.RUN_RECORD.encode(_codec.RUN_RECORD.decode(once)) == once


@given(mst.run_records())
def test_general_decoder_agrees_with_fast_decoder(record: Any) -> None:
    encoded = _codec.RUN_RECORD.encode(record)
    reformatted = json.dumps(json.loads(encoded), indent=1).encode()
    assert comparable(_codec.RUN_RECORD.decode(reformatted)) == comparable(
        _codec.RUN_RECORD.decode(encoded)
    )


@given(mst.json_values())
def test_escape_is_inverted_by_unescape(value: Any) -> None:
    escaped = _codec.escape_json(value)
    assert msgspec.json.decode(msgspec.json.encode(escaped)) == escaped
    assert comparable(_codec.unescape_json(escaped)) == comparable(value)
