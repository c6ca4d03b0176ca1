"""The codec of _codec.py at its edges: a codec built from parts, the nesting limit of
each document, and the messages that refuse binary values.

Written against the survivors of a mutation run (docs/testing.md).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import msgspec
import pytest

from metalab import _codec
from metalab._codec import MAX_NESTING, DocumentCodec
from metalab.errors import ConfigError, CorruptRecordError, UnsupportedSchemaVersionError
from metalab.records import (
    ArtifactDescriptor,
    DerivedMetrics,
    ExperimentManifest,
    ResultDocument,
    RunRecord,
)
from metalab.testing.store import make_record

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


def nest(levels: int) -> Any:
    """A list nested ``levels`` deep: ``nest(1) == [0]``, ``nest(2) == [[0]]``."""
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def manifest(**fields: Any) -> ExperimentManifest:
    return ExperimentManifest(
        experiment_id="exp", name="exp", version="1", submitted_at=T0, **fields
    )


class TestACodecBuiltFromParts:
    """``DocumentCodec`` as a caller builds it, not only the module's instances."""

    def test_it_round_trips_its_document_type_through_both_decode_paths(self) -> None:
        codec = DocumentCodec(RunRecord, None)
        assert codec.doc_type is RunRecord
        record = make_record("exp", "r1", metrics={"acc": 0.5})
        data = codec.encode(record)
        assert data.startswith(b'{"schema_version":1,')
        fast = codec.decode(data)
        general = codec.decode(b" " + data)  # not the fast path's prefix
        assert isinstance(fast, RunRecord)
        assert fast == general == record

    def test_its_timestamps_are_written_in_utc(self) -> None:
        codec = DocumentCodec(ExperimentManifest, None)
        data = codec.encode(manifest().__replace__(submitted_at=T0.astimezone(PLUS_TWO)))
        assert json.loads(data)["submitted_at"] == "2026-01-02T03:04:05Z"

    def test_without_a_check_any_value_is_encoded(self) -> None:
        codec = DocumentCodec(DerivedMetrics, None)
        assert codec.decode(codec.encode(DerivedMetrics(metrics={"a": 1}))).metrics == {"a": 1}

    def test_its_check_runs_before_each_encode(self) -> None:
        def refuse(doc: DerivedMetrics) -> None:
            raise ValueError(f"refused {doc.metrics}")

        codec = DocumentCodec(DerivedMetrics, None, refuse)
        with pytest.raises(ValueError, match=r"refused \{'a': 1\}"):
            codec.encode(DerivedMetrics(metrics={"a": 1}))

    def test_its_legacy_upgrade_reads_unversioned_documents(self) -> None:
        codec = DocumentCodec(DerivedMetrics, lambda obj: {"metrics": obj})
        assert codec.decode(b'{"a": 1}') == DerivedMetrics(metrics={"a": 1})


class TestTheNestingLimitOfEachDocument:
    """Every document counts itself as level 1; a value may reach level MAX_NESTING."""

    def test_result_data_may_reach_the_limit_and_no_further(self) -> None:
        at_limit = ResultDocument(data=nest(MAX_NESTING - 1))
        assert _codec.RESULT.decode(_codec.RESULT.encode(at_limit)) == at_limit
        with pytest.raises(ValueError, match=r"^ResultDocument\.data nests lists and mappings"):
            _codec.RESULT.encode(ResultDocument(data=nest(MAX_NESTING)))

    def test_result_metadata_may_reach_the_limit(self) -> None:
        doc = ResultDocument(metadata={"a": nest(MAX_NESTING - 2)})
        assert _codec.RESULT.decode(_codec.RESULT.encode(doc)) == doc

    @pytest.mark.parametrize("field", ["metadata", "params", "seeds"])
    def test_manifest_values_may_reach_the_limit_and_no_further(self, field: str) -> None:
        doc = manifest(**{field: {"a": nest(MAX_NESTING - 2)}})
        assert _codec.EXPERIMENT_MANIFEST.decode(_codec.EXPERIMENT_MANIFEST.encode(doc)) == doc
        with pytest.raises(ValueError, match=rf"^ExperimentManifest\.{field} nests lists"):
            _codec.EXPERIMENT_MANIFEST.encode(manifest(**{field: {"a": nest(MAX_NESTING - 1)}}))


class TestBinaryValuesAreNamed:
    @pytest.mark.parametrize(
        ("doc", "where"),
        [
            (ResultDocument(data=b"x"), "ResultDocument.data"),  # type: ignore[arg-type]
            (
                ResultDocument(metadata={"k": [1, b"x"]}),  # type: ignore[list-item]
                "ResultDocument.metadata['k'][1]",
            ),
        ],
    )
    def test_in_a_result(self, doc: ResultDocument, where: str) -> None:
        with pytest.raises(ConfigError) as info:
            _codec.RESULT.encode(doc)
        assert str(info.value).startswith(f"{where} is binary data (bytes, bytearray or")

    @pytest.mark.parametrize("field", ["metadata", "params", "seeds"])
    def test_in_a_manifest(self, field: str) -> None:
        with pytest.raises(ConfigError) as info:
            _codec.EXPERIMENT_MANIFEST.encode(manifest(**{field: {"k": bytearray(b"x")}}))
        assert str(info.value).startswith(f"ExperimentManifest.{field}['k'] is binary data")


class _Plain(msgspec.Struct, frozen=True, tag_field="schema_version", tag=1):
    """A document type of a caller's own, without ``timestamp_fields``."""

    value: int


class TestOtherDocumentTypes:
    def test_a_struct_without_timestamp_fields_round_trips(self) -> None:
        codec = DocumentCodec(_Plain, None)
        assert codec.decode(codec.encode(_Plain(value=3))) == _Plain(value=3)

    def test_a_document_past_the_encoders_stack_is_a_value_error(self) -> None:
        codec = DocumentCodec(ResultDocument, None)  # no check: msgspec meets the depth
        with pytest.raises(ValueError, match=r"^a ResultDocument nests too many") as info:
            codec.encode(ResultDocument(data=nest(200_000)))
        assert str(info.value) == (
            f"a ResultDocument nests too many levels of lists and mappings; metalab stores "
            f"at most {MAX_NESTING} (flatten the value, or store it as an artifact)"
        )


class TestDecodeErrorsNameSourceAndReason:
    def test_malformed_json(self) -> None:
        with pytest.raises(CorruptRecordError) as info:
            _codec.RUN_RECORD.decode(b"{", source="x.json")
        assert info.value.path == "x.json"
        assert info.value.reason.startswith("malformed JSON: ")

    def test_not_an_object(self) -> None:
        with pytest.raises(CorruptRecordError) as info:
            _codec.RUN_RECORD.decode(b"[1]", source="x.json")
        assert (info.value.path, info.value.reason) == (
            "x.json",
            "expected a JSON object, got list",
        )

    def test_a_legacy_document_that_cannot_be_upgraded(self) -> None:
        with pytest.raises(CorruptRecordError) as info:
            _codec.RUN_RECORD.decode(b'{"started_at": "not a time"}', source="x.json")
        assert info.value.path == "x.json"
        assert info.value.reason.startswith("cannot upgrade 0.1 document: ValueError(")

    def test_a_value_of_the_wrong_type(self) -> None:
        data = b' {"schema_version":1,"run_id":5}'  # the general path
        with pytest.raises(CorruptRecordError) as info:
            _codec.RUN_RECORD.decode(data, source="x.json")
        assert info.value.path == "x.json"
        assert "run_id" in info.value.reason

    def test_an_unknown_version_lists_what_this_codec_reads(self) -> None:
        with pytest.raises(UnsupportedSchemaVersionError) as info:
            _codec.RUN_RECORD.decode(b'{"schema_version": 99}')
        assert (info.value.found, info.value.supported) == (99, (1, "0.1"))
        with pytest.raises(UnsupportedSchemaVersionError) as info:
            DocumentCodec(DerivedMetrics, None).decode(b'{"schema_version": 99}')
        assert info.value.supported == (1,)

    def test_bytes_in_provenance_extra_are_named(self) -> None:
        record = make_record("exp", "r1")
        record = record.__replace__(provenance=record.provenance.__replace__(extra={"k": b"x"}))
        with pytest.raises(ConfigError) as info:
            _codec.RUN_RECORD.encode(record)
        assert str(info.value).startswith("RunRecord.provenance.extra['k'] is binary data")


LEGACY_RUN: dict[str, Any] = {
    "_schema_version": "0.1",
    "run_id": "r1",
    "experiment_id": "golden:0.1",
    "status": "success",
    "started_at": "2026-11-27T12:40:15.219042",
}


class TestLegacyRunRecords:
    def test_a_record_without_params_gets_empty_params(self) -> None:
        record = _codec.RUN_RECORD.decode(json.dumps(LEGACY_RUN).encode())
        assert record.params == {}

    def test_warnings_that_are_not_text_become_json_text(self) -> None:
        doc = dict(LEGACY_RUN, warnings=["w1", {"a": 1}])
        record = _codec.RUN_RECORD.decode(json.dumps(doc).encode())
        assert record.warnings == ("w1", '{"a": 1}')

    def test_naive_times_are_read_as_local_and_kept_in_utc(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TZ", "Europe/Berlin")
        time.tzset()
        try:
            record = _codec.RUN_RECORD.decode(json.dumps(LEGACY_RUN).encode())
        finally:
            monkeypatch.undo()
            time.tzset()
        assert record.started_at == dt.datetime(2026, 11, 27, 11, 40, 15, 219042, tzinfo=dt.UTC)
        assert record.started_at.tzinfo is dt.UTC

    @pytest.mark.parametrize(
        ("uri", "expected"),
        [
            ("C:\\store\\artifacts\\r1\\f.bin", "artifacts/r1/f.bin"),
            ("/data/artifacts/old/store/artifacts/r1/f.bin", "artifacts/r1/f.bin"),
            ("/artifacts/r1/f.bin", "artifacts/r1/f.bin"),
            ("elsewhere/f.bin", "elsewhere/f.bin"),
        ],
    )
    def test_artifact_paths_are_cut_at_the_last_artifacts_directory(
        self, uri: str, expected: str
    ) -> None:
        assert _codec._relative_artifact_uri(uri) == expected


class TestRunRecordLimitsAndMessages:
    def test_provenance_extra_may_reach_the_limit_and_no_further(self) -> None:
        record = make_record("exp", "r1")

        def with_extra(levels: int) -> RunRecord:
            extra = {"a": nest(levels)}
            return record.__replace__(provenance=record.provenance.__replace__(extra=extra))

        ok = with_extra(MAX_NESTING - 3)
        assert _codec.RUN_RECORD.decode(_codec.RUN_RECORD.encode(ok)) == ok
        with pytest.raises(ValueError, match=r"^RunRecord\.provenance\.extra nests") as info:
            _codec.RUN_RECORD.encode(with_extra(MAX_NESTING - 2))
        assert str(info.value) == (
            f"RunRecord.provenance.extra nests lists and mappings more than {MAX_NESTING} "
            f"levels deep (counting the document); metalab stores at most {MAX_NESTING}: "
            "flatten the value, or store it as an artifact"
        )

    def test_artifact_metadata_may_reach_the_limit_and_no_further(self) -> None:
        record = make_record("exp", "r1")

        def with_metadata(value: Any) -> RunRecord:
            artifact = ArtifactDescriptor(
                name="a",
                kind="json",
                format="json",
                uri="artifacts/r1/a.json",
                content_hash="0" * 64,
                size_bytes=1,
                metadata={"a": value},
            )
            return record.__replace__(artifacts=(artifact,))

        ok = with_metadata(nest(MAX_NESTING - 4))
        assert _codec.RUN_RECORD.decode(_codec.RUN_RECORD.encode(ok)) == ok
        with pytest.raises(ValueError, match=r"^RunRecord\.artifacts\[0\]\.metadata nests"):
            _codec.RUN_RECORD.encode(with_metadata(nest(MAX_NESTING - 3)))
        with pytest.raises(ConfigError) as info:
            _codec.RUN_RECORD.encode(with_metadata(b"x"))
        assert str(info.value) == (
            "RunRecord.artifacts[0].metadata['a'] is binary data (bytes, bytearray or "
            "memoryview), which a JSON document cannot hold: it would be stored as base64 "
            "text and read back as a str; store binary data as an artifact "
            "(capture.artifact() or store.put_artifact())"
        )

    @pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
    def test_strings_that_name_non_finite_floats_stay_strings(self, text: str) -> None:
        record = make_record("exp", "r1", params={"x": text}, metrics={"m": text})
        data = _codec.RUN_RECORD.encode(record)
        assert _codec.RUN_RECORD.decode(b" " + data) == record  # the general path


class TestDecodeErrorsAtTheirDefaults:
    def test_the_default_source_is_bytes(self) -> None:
        with pytest.raises(CorruptRecordError) as info:
            _codec.RUN_RECORD.decode(b"{")
        assert info.value.path == "<bytes>"

    def test_a_document_nested_past_the_stack_names_its_source(self) -> None:
        deep = b"[" * 200_000 + b"]" * 200_000
        data = b'{"schema_version":1,"params":{"a":' + deep + b"}}"
        with pytest.raises(CorruptRecordError) as info:
            _codec.RUN_RECORD.decode(data, source="deep.json")
        assert (info.value.path, info.value.reason) == (
            "deep.json",
            "lists and mappings are nested too deeply to decode",
        )
