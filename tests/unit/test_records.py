from __future__ import annotations

import datetime as dt

import pytest

from metalab import _codec
from metalab.records import ErrorInfo, ExperimentManifest, RunRecord, StoreMeta, utc_now

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _running() -> RunRecord:
    return RunRecord.running(run_id="ab" * 32, experiment_id="exp:1", started_at=T0)


class TestRunRecordFactories:
    def test_running_record_has_no_end(self) -> None:
        rec = _running()
        assert rec.status == "running"
        assert rec.finished_at is None
        assert rec.duration_ms is None
        assert not rec.is_finished

    def test_succeeded_fills_end_and_duration(self) -> None:
        rec = _running().succeeded(
            metrics={"acc": 0.9}, finished_at=T0 + dt.timedelta(milliseconds=1500)
        )
        assert rec.status == "success"
        assert rec.duration_ms == pytest.approx(1500.0)
        assert rec.metrics == {"acc": 0.9}
        assert rec.is_finished

    def test_failed_captures_exception_type_message_and_traceback(self) -> None:
        try:
            raise ValueError("diverged")
        except ValueError as exc:
            rec = _running().failed(exc)
        assert rec.status == "failed"
        assert rec.error is not None
        assert rec.error.type == "ValueError"
        assert rec.error.message == "diverged"
        assert "raise ValueError" in rec.error.traceback

    def test_cancelled_has_no_error(self) -> None:
        rec = _running().cancelled()
        assert rec.status == "cancelled"
        assert rec.error is None

    def test_duration_is_never_negative_when_clocks_step_back(self) -> None:
        rec = _running().succeeded(finished_at=T0 - dt.timedelta(seconds=1))
        assert rec.duration_ms == 0.0

    def test_failed_accepts_a_prebuilt_error(self) -> None:
        info = ErrorInfo(type="KeyError", message="'x'")
        assert _running().failed(info).error == info


class TestTimestamps:
    def test_factories_reject_naive_datetimes_naming_the_field(self) -> None:
        naive = dt.datetime(2026, 1, 1)  # noqa: DTZ001
        with pytest.raises(ValueError, match=r"RunRecord\.started_at must be timezone-aware"):
            RunRecord.running(run_id="a", experiment_id="e:1", started_at=naive)
        with pytest.raises(ValueError, match="finished_at must be timezone-aware"):
            _running().succeeded(finished_at=naive)

    def test_the_codec_refuses_to_write_naive_datetimes(self) -> None:
        naive = dt.datetime(2026, 1, 1)  # noqa: DTZ001
        rec = RunRecord(run_id="a", experiment_id="e:1", status="running", started_at=naive)
        with pytest.raises(ValueError, match=r"RunRecord\.started_at"):
            _codec.RUN_RECORD.encode(rec)
        manifest = ExperimentManifest(
            experiment_id="e:1", name="e", version="1", submitted_at=naive
        )
        with pytest.raises(ValueError, match="submitted_at"):
            _codec.EXPERIMENT_MANIFEST.encode(manifest)
        with pytest.raises(ValueError, match="created_at"):
            _codec.STORE_META.encode(StoreMeta(created_at=naive))

    def test_other_offsets_are_normalised_to_utc(self) -> None:
        tz = dt.timezone(dt.timedelta(hours=5, minutes=30))
        rec = RunRecord.running(
            run_id="a", experiment_id="e:1", started_at=dt.datetime(2026, 1, 1, 12, tzinfo=tz)
        )
        assert rec.started_at.tzinfo is dt.UTC
        assert rec.started_at == dt.datetime(2026, 1, 1, 6, 30, tzinfo=dt.UTC)

    def test_the_codec_writes_other_offsets_as_utc(self) -> None:
        tz = dt.timezone(dt.timedelta(hours=-3))
        rec = RunRecord(
            run_id="a",
            experiment_id="e:1",
            status="running",
            started_at=dt.datetime(2026, 1, 1, 12, tzinfo=tz),
        )
        data = _codec.RUN_RECORD.encode(rec)
        assert b'"started_at":"2026-01-01T15:00:00Z"' in data
        assert _codec.RUN_RECORD.decode(data).started_at.tzinfo is dt.UTC

    def test_utc_now_is_aware(self) -> None:
        assert utc_now().tzinfo is dt.UTC


class TestImmutability:
    def test_records_are_frozen(self) -> None:
        rec = _running()
        with pytest.raises(AttributeError):
            rec.status = "success"  # type: ignore[misc]
