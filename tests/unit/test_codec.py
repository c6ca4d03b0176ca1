from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import msgspec
import pytest

from metalab import _codec
from metalab.errors import ConfigError, CorruptRecordError, UnsupportedSchemaVersionError
from metalab.records import DerivedMetrics, ResultDocument, RunRecord, StoreMeta
from metalab.store import FileStoreConfig, MemoryStoreConfig, StoreConfig
from metalab.testing import assert_same_document

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


def _record(**kw: object) -> RunRecord:
    base = RunRecord.running(run_id="ab" * 32, experiment_id="exp:1", started_at=T0)
    return msgspec.structs.replace(base, **kw)


class TestEncoding:
    def test_documents_start_with_the_schema_version(self) -> None:
        assert _codec.RUN_RECORD.encode(_record()).startswith(b'{"schema_version":1,')
        assert _codec.STORE_META.encode(StoreMeta()) == b'{"schema_version":1}'

    def test_timestamps_are_utc_with_z_suffix(self) -> None:
        assert b'"started_at":"2026-01-02T03:04:05.678901Z"' in _codec.RUN_RECORD.encode(_record())

    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
    def test_non_finite_floats_round_trip_as_standard_json(self, value: float) -> None:
        rec = _record(metrics={"loss": value}, params={"x": [1.0, value]}, duration_ms=value)
        data = _codec.RUN_RECORD.encode(rec)
        json.loads(data, parse_constant=lambda token: pytest.fail(f"non-standard {token}"))
        back = _codec.RUN_RECORD.decode(data)
        assert_same_document(back, rec)
        loss = back.metrics["loss"]
        assert isinstance(loss, float)
        assert (math.isnan(loss) and math.isnan(value)) or loss == value

    def test_user_mappings_that_look_like_markers_survive(self) -> None:
        params = {
            "a": {"$float": "NaN"},
            "b": {"$dict": {"$float": "Infinity"}},
            "c": {"$float": 1, "other": 2},
        }
        rec = _record(params=params)
        back = _codec.RUN_RECORD.decode(_codec.RUN_RECORD.encode(rec))
        assert back.params == params

    def test_real_nulls_stay_null(self) -> None:
        rec = _record(params={"x": None, "y": [None]})
        assert _codec.RUN_RECORD.decode(_codec.RUN_RECORD.encode(rec)).params == rec.params

    def test_output_is_compact(self) -> None:
        assert b"\n" not in _codec.RUN_RECORD.encode(_record(params={"a": "b"}))


class TestDecodingPaths:
    def test_general_path_agrees_with_fast_path(self) -> None:
        rec = _record(params={"lr": 0.1}, metrics={"acc": 0.5, "ok": True, "n": 3, "s": "x"})
        fast = _codec.RUN_RECORD.encode(rec)
        pretty = json.dumps(json.loads(fast), indent=2).encode()
        assert _codec.RUN_RECORD.decode(pretty) == _codec.RUN_RECORD.decode(fast) == rec

    def test_bool_int_and_float_metrics_keep_their_types(self) -> None:
        rec = _record(metrics={"b": True, "i": 3, "f": 3.0, "s": "3"})
        back = _codec.RUN_RECORD.decode(_codec.RUN_RECORD.encode(rec))
        assert [type(v) for v in back.metrics.values()] == [bool, int, float, str]


class TestRejection:
    @pytest.mark.parametrize("version", [2, 99, "0.2", "1", True])
    def test_unknown_versions_name_found_and_supported(self, version: object) -> None:
        data = json.dumps({"schema_version": version, "run_id": "a"}).encode()
        with pytest.raises(UnsupportedSchemaVersionError) as info:
            _codec.RUN_RECORD.decode(data, source="runs/a.json")
        assert info.value.found == version
        assert 1 in info.value.supported
        assert info.value.path == "runs/a.json"

    def test_derived_documents_have_no_legacy_with_schema_markers(self) -> None:
        with pytest.raises(UnsupportedSchemaVersionError):
            _codec.DERIVED.decode(b'{"_schema_version":"0.3","metrics":{}}')

    @pytest.mark.parametrize(
        "data",
        [b"", b"{", b"not json", b'{"schema_version":1,"run_id":"a"', b"\xff\xfe"],
    )
    def test_malformed_bytes_raise_corrupt_record(self, data: bytes) -> None:
        with pytest.raises(CorruptRecordError) as info:
            _codec.RUN_RECORD.decode(data, source="runs/x.json")
        assert info.value.path == "runs/x.json"

    def test_wrong_type_names_the_json_path(self) -> None:
        good = _codec.RUN_RECORD.encode(_record())
        bad = good.replace(b'"status":"running"', b'"status":"exploded"')
        with pytest.raises(CorruptRecordError, match=r"\$\.status"):
            _codec.RUN_RECORD.decode(bad)

    def test_naive_timestamp_in_a_current_document_is_corrupt(self) -> None:
        good = _codec.RUN_RECORD.encode(_record())
        bad = good.replace(b"05.678901Z", b"05.678901")
        with pytest.raises(CorruptRecordError, match="timezone"):
            _codec.RUN_RECORD.decode(bad)

    def test_json_array_is_not_a_document(self) -> None:
        with pytest.raises(CorruptRecordError, match="expected a JSON object"):
            _codec.DERIVED.decode(b"[1, 2]")


class TestBinaryValuesAreRefused:
    """msgspec writes bytes as base64 text, which would come back as a str."""

    @pytest.mark.parametrize(
        ("fields", "where"),
        [
            ({"params": {"b": b"\xff"}}, "RunRecord.params['b']"),
            ({"params": {"x": [1, {"y": bytearray(b"a")}]}}, "RunRecord.params['x'][1]['y']"),
            ({"params": {"t": (1, memoryview(b"a"))}}, "RunRecord.params['t'][1]"),
            ({"metrics": {"m": b"x"}}, "RunRecord.metrics['m']"),
        ],
    )
    def test_bytes_in_a_run_record_are_refused_naming_where(
        self, fields: dict[str, object], where: str
    ) -> None:
        with pytest.raises(ConfigError) as raised:
            _codec.RUN_RECORD.encode(_record(**fields))
        assert where in str(raised.value)
        assert "artifact" in str(raised.value)

    def test_bytes_in_derived_metrics_are_refused(self) -> None:
        with pytest.raises(ValueError, match=r"DerivedMetrics\.metrics\['m'\].*artifact"):
            _codec.DERIVED.encode(DerivedMetrics(metrics={"m": b"x"}))  # type: ignore[dict-item]

    @pytest.mark.parametrize("kind", ["memory", "file"])
    def test_a_store_refuses_such_a_record_and_keeps_nothing(
        self, kind: str, tmp_path: Path
    ) -> None:
        config: StoreConfig = (
            MemoryStoreConfig(experiment_id="exp:1")
            if kind == "memory"
            else FileStoreConfig(root=str(tmp_path), experiment_id="exp:1")
        )
        record = _record(params={"blob": b"\x00\xff"})
        with config.connect() as store:
            with pytest.raises(ConfigError, match=r"params\['blob'\]"):
                store.put_run_record(record)
            assert store.list_run_records() == []

    def test_text_that_merely_looks_binary_is_kept(self) -> None:
        rec = _record(params={"b": "\xff", "nested": {"l": ["ab", 1, None, 2.5]}})
        assert _codec.RUN_RECORD.decode(_codec.RUN_RECORD.encode(rec)).params == rec.params


class TestOtherDocuments:
    def test_derived_and_results_round_trip(self) -> None:
        derived = DerivedMetrics(metrics={"x": math.inf})
        assert_same_document(_codec.DERIVED.decode(_codec.DERIVED.encode(derived)), derived)
        result = ResultDocument(data={"curve": [1.0, math.nan]}, shape=(2,))
        assert_same_document(_codec.RESULT.decode(_codec.RESULT.encode(result)), result)


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


class TestDeepNesting:
    @pytest.mark.parametrize("depth", [_codec.MAX_NESTING, 300, 5000])
    def test_writing_values_nested_too_deep_is_a_value_error_naming_the_limit(
        self, depth: int
    ) -> None:
        record = _record(params={"p": _nested(depth), "q": None})
        with pytest.raises(ValueError, match=f"at most {_codec.MAX_NESTING}"):
            _codec.RUN_RECORD.encode(record)

    def test_values_nested_below_the_limit_round_trip(self) -> None:
        record = _record(params={"p": _nested(_codec.MAX_NESTING - 2), "q": None})
        assert _codec.RUN_RECORD.decode(_codec.RUN_RECORD.encode(record)) == record

    @pytest.mark.parametrize("fast", [True, False])
    def test_reading_a_document_nested_past_the_stack_is_a_corrupt_record(self, fast: bool) -> None:
        deep = b"[" * 100_000 + b"]" * 100_000
        marker = b"" if fast else b'"$x":1,'
        data = b'{"schema_version":1,' + marker + b'"params":{"p":' + deep + b"}}"
        with pytest.raises(CorruptRecordError, match="nested too deeply"):
            _codec.RUN_RECORD.decode(data, source="deep.json")
