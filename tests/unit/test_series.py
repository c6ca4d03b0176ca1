"""Metric series: capture rules, the on-disk lines, and the read type."""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path
from typing import Any

import pytest

from metalab.capture import _FLUSHER, Capture
from metalab.errors import CapabilityError, CorruptRecordError
from metalab.records import ResultDocument
from metalab.series import MetricSeries, SeriesPoint
from metalab.store import FileStoreConfig, MemoryStore, MemoryStoreConfig
from metalab.store._series_file import (
    decode_series,
    encode_header,
    encode_points,
    legacy_series_points,
)
from metalab.testing.store import new_run_id

EXP = "series:1"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStoreConfig(experiment_id=EXP).connect()


class TestCapture:
    def test_stepped_points_form_a_series_and_the_record_keeps_the_highest_step(
        self, store: MemoryStore
    ) -> None:
        run_id = new_run_id()
        capture = Capture(store, run_id)
        capture.metric("loss", 0.9, step=0)
        capture.metric("loss", 0.5, step=10)
        capture.metric("loss", 0.7, step=5)  # late: not the latest value
        capture.metric("loss", 0.4, step=10)  # the same step again: the later wins
        capture.close()
        assert capture.captured_metrics == {"loss": 0.4}
        series = store.get_series(run_id)["loss"]
        assert series.steps == (0, 5, 10, 10)
        assert series.values == (0.9, 0.7, 0.5, 0.4)
        assert all(isinstance(t, dt.datetime) and t.tzinfo is dt.UTC for t in series.timestamps)

    def test_metrics_and_log_metrics_log_several_at_one_step(self, store: MemoryStore) -> None:
        run_id = new_run_id()
        capture = Capture(store, run_id)
        capture.metrics({"a": 1, "b": 2.0}, step=3)
        capture.log_metrics({"a": 5}, step=4)
        capture.log_metrics({"scalar": "s"})
        capture.close()
        found = store.get_series(run_id)
        assert found["a"].steps == (3, 4)
        assert found["b"].values == (2.0,)
        assert "scalar" not in found
        assert capture.captured_metrics == {"a": 5, "b": 2.0, "scalar": "s"}

    @pytest.mark.parametrize("first_stepped", [True, False])
    def test_one_name_is_a_series_or_a_scalar_not_both(
        self, store: MemoryStore, first_stepped: bool
    ) -> None:
        capture = Capture(store, new_run_id())
        capture.metric("loss", 1.0, step=0 if first_stepped else None)
        with pytest.raises(ValueError, match="metric 'loss' was logged") as caught:
            capture.metric("loss", 1.0, step=None if first_stepped else 1)
        assert "a metric is either a series" in str(caught.value)
        with pytest.raises(ValueError, match="'loss'"):
            capture.metrics({"ok": 1, "loss": 2}, step=None if first_stepped else 2)
        assert "ok" not in capture.captured_metrics  # nothing of a refused call is kept

    @pytest.mark.parametrize(
        ("step", "error"),
        [(-1, ValueError), (1.0, TypeError), (True, TypeError), ("3", TypeError)],
    )
    def test_a_bad_step_is_refused_naming_the_metric(
        self, store: MemoryStore, step: object, error: type[Exception]
    ) -> None:
        capture = Capture(store, new_run_id())
        with pytest.raises(error, match="the step of metric 'loss'"):
            capture.metric("loss", 1.0, step=step)  # type: ignore[arg-type]
        capture.close()
        assert capture.captured_metrics == {}

    def test_a_numpy_integer_is_a_step(self, store: MemoryStore) -> None:
        np = pytest.importorskip("numpy")
        run_id = new_run_id()
        capture = Capture(store, run_id)
        capture.metric("loss", np.float32(0.5), step=np.int64(7))
        capture.close()
        assert store.get_series(run_id)["loss"].steps == (7,)

    def test_a_store_without_series_is_named_at_the_first_stepped_metric(self) -> None:
        class NoSeries:  # only what Capture touches before it needs series
            pass

        capture = Capture(NoSeries(), new_run_id())  # type: ignore[arg-type]
        capture.metric("fine", 1.0)
        for _ in range(2):  # and again: a refused point leaves nothing behind
            with pytest.raises(CapabilityError, match="SupportsSeries"):
                capture.metric("loss", 1.0, step=0)
        capture.close()
        assert capture.captured_metrics == {"fine": 1.0}

    def test_a_flush_appends_what_was_buffered(self, store: MemoryStore) -> None:
        run_id = new_run_id()
        capture = Capture(store, run_id)
        capture.metric("loss", 1.0, step=0)
        capture.flush()
        assert store.get_series(run_id)["loss"].values == (1.0,)
        capture.metric("loss", 0.5, step=1)
        capture.close()
        assert store.get_series(run_id)["loss"].values == (1.0, 0.5)

    def test_the_first_flush_replaces_the_series_of_an_earlier_try(
        self, store: MemoryStore
    ) -> None:
        run_id = new_run_id()
        store.append_series(run_id, [SeriesPoint("old", 0, 1.0, 1.0)])
        capture = Capture(store, run_id)
        capture.metric("loss", 1.0, step=0)
        capture.close()
        assert sorted(store.get_series(run_id)) == ["loss"]

    def test_tags_and_notes(self, store: MemoryStore) -> None:
        capture = Capture(store, new_run_id())
        capture.tag("baseline", "gpu")
        capture.tag("baseline", "v2")
        capture.note("first")
        capture.note("second")
        assert capture.captured_tags == ("baseline", "gpu", "v2")
        assert capture.captured_notes == "second"
        with pytest.raises(TypeError, match="a tag must be a non-empty string"):
            capture.tag("")
        with pytest.raises(TypeError, match="notes must be a str"):
            capture.note(3)  # type: ignore[arg-type]


class TestFileForm:
    def test_points_round_trip_through_the_lines(self) -> None:
        points = [
            SeriesPoint("loss", 0, 0.5, 1764700000.25),
            SeriesPoint("loss", 1, math.nan, None),
            SeriesPoint("ünï", 2, -math.inf, 1.0),
            SeriesPoint("flag", 3, True, 2.0),
            SeriesPoint("name", 4, "x", 3.0),
            SeriesPoint("count", 5, 7, 4.0),
        ]
        data = encode_header("r1") + encode_points(points)
        assert data.count(b"\n") == 7
        scan = decode_series(data, source="f", run_id="r1")
        assert (scan.points, scan.torn) == (6, 0)
        loss = scan.series["loss"]
        assert loss.steps == (0, 1)
        assert loss.values[0] == 0.5
        assert math.isnan(loss.values[1])  # type: ignore[arg-type]
        assert loss.seconds == (1764700000.25, None)
        assert scan.series["ünï"].values == (-math.inf,)
        assert [scan.series[n].values[0] for n in ("flag", "name", "count")] == [True, "x", 7]
        assert [type(scan.series[n].values[0]) for n in ("flag", "name", "count")] == [
            bool,
            str,
            int,
        ]

    @pytest.mark.parametrize("cut", [1, 5, 17])
    def test_a_torn_last_line_is_left_out_and_counted(self, cut: int) -> None:
        whole = encode_header("r1") + encode_points([SeriesPoint("loss", 0, 0.5, 1.0)])
        extra = encode_points([SeriesPoint("loss", 1, 0.25, 2.0)])
        scan = decode_series(whole + extra[:cut], source="f", run_id="r1")
        assert (scan.points, scan.torn) == (1, cut)
        assert scan.series["loss"].steps == (0,)

    def test_a_torn_header_is_an_empty_series(self) -> None:
        scan = decode_series(encode_header("r1")[:9], source="f", run_id="r1")
        assert (scan.series, scan.points, scan.torn) == ({}, 0, 9)

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"not json\n", "not a metalab series file"),
            (b'{"metalab_series":2,"run_id":"r1"}\n', "series format version 2"),
            (b'{"metalab_series":1,"run_id":"r2"}\n', "holds the series of run 'r2'"),
            (b'{"metalab_series":1,"run_id":"r1"}\n["a",x]\n["b",1,2,3]\n', "cannot be decoded"),
            (b'{"metalab_series":1,"run_id":"r1"}\n["a",1,{"k":"v"},1]\n', "is not a metric"),
            (b'{"metalab_series":1,"run_id":"r1"}\n["a",-1.5,1,1]\n', "cannot be decoded"),
        ],
    )
    def test_a_corrupt_file_names_itself_and_the_reason(self, data: bytes, reason: str) -> None:
        with pytest.raises(CorruptRecordError, match=reason) as caught:
            decode_series(data, source="series/r1.jsonl", run_id="r1")
        assert caught.value.path == "series/r1.jsonl"

    def test_a_file_store_appends_without_rewriting(self, tmp_path: Path) -> None:
        with FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect() as files:
            run_id = new_run_id()
            files.append_series(run_id, [SeriesPoint("loss", 0, 1.0, 1.0)])
            path = files.layout.series_path(run_id)
            inode, first = path.stat().st_ino, path.read_bytes()
            files.append_series(run_id, [SeriesPoint("loss", 1, 0.5, 2.0)])
            assert path.stat().st_ino == inode  # appended in place
            assert path.read_bytes().startswith(first)
            files.append_series(run_id, [SeriesPoint("acc", 0, 0.1, 3.0)], restart=True)
            assert path.read_bytes().count(b"\n") == 2


class TestFailures:
    def test_points_of_a_failed_flush_are_written_by_the_next(self, store: MemoryStore) -> None:
        run_id = new_run_id()
        capture = Capture(store, run_id)
        capture.metric("loss", 1.0, step=0)
        real = store.append_series
        calls: list[int] = []

        def failing_once(run: str, points: Any, *, restart: bool = False) -> None:
            calls.append(len(points))
            if len(calls) == 1:
                raise OSError(28, "No space left on device")
            real(run, points, restart=restart)

        store.append_series = failing_once  # type: ignore[method-assign, assignment]
        with pytest.raises(OSError, match="No space"):
            capture.flush()
        capture.metric("loss", 0.5, step=1)
        capture.close()
        assert calls == [1, 2]
        assert store.get_series(run_id)["loss"].values == (1.0, 0.5)

    @pytest.mark.parametrize("torn", [b'["loss",1,0.', b'{"metalab_ser'])
    def test_an_append_after_a_torn_write_cuts_the_torn_line_first(
        self, tmp_path: Path, torn: bytes
    ) -> None:
        with FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect() as files:
            run_id = new_run_id()
            path = files.layout.series_path(run_id)
            if torn.startswith(b"["):
                files.append_series(run_id, [SeriesPoint("loss", 0, 1.0, 1.0)])
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as stream:
                stream.write(torn)  # a write cut short, the process still alive
            files.append_series(run_id, [SeriesPoint("loss", 2, 0.5, 2.0)])
            scan = files.scan_series(run_id)
            assert scan is not None
            assert scan.torn == 0
            expected = (0, 2) if torn.startswith(b"[") else (2,)
            assert scan.series["loss"].steps == expected

    def test_a_forked_child_does_not_flush_the_parents_captures(self, store: MemoryStore) -> None:
        capture = Capture(store, new_run_id())
        capture.metric("loss", 1.0, step=0)  # watched by this process's flusher
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its flusher must start empty
            os.close(read)
            os.write(write, str(len(_FLUSHER._captures)).encode())
            os._exit(0)
        os.close(write)
        watched_in_child = os.read(read, 16)
        os.close(read)
        os.waitpid(pid, 0)
        capture.close()
        assert watched_in_child == b"0"


class TestMetalab01:
    def test_a_stepped_metric_result_is_a_series_without_timestamps(self) -> None:
        result = ResultDocument(
            data=[[0, 0.9], [5, 0.5]], metadata={"type": "stepped_metric"}, shape=(2, 2)
        )
        assert legacy_series_points("loss", result) == [
            SeriesPoint("loss", 0, 0.9, None),
            SeriesPoint("loss", 5, 0.5, None),
        ]

    @pytest.mark.parametrize(
        "result",
        [
            ResultDocument(data=[[0, 0.9]]),
            ResultDocument(data={"a": 1}, metadata={"type": "stepped_metric"}),
            ResultDocument(data=[[0, 0.9, 1]], metadata={"type": "stepped_metric"}),
            ResultDocument(data=[[0.5, 0.9]], metadata={"type": "stepped_metric"}),
            ResultDocument(data=[[0, [1]]], metadata={"type": "stepped_metric"}),
        ],
    )
    def test_other_results_are_not_series(self, result: ResultDocument) -> None:
        assert legacy_series_points("loss", result) is None


class TestMetricSeries:
    def test_reading_helpers(self) -> None:
        series = MetricSeries.from_points(
            "loss",
            [
                SeriesPoint("loss", 2, 0.5, 2.0),
                SeriesPoint("loss", 0, math.nan, 0.0),
                SeriesPoint("loss", 1, 0.25, None),
                SeriesPoint("loss", 3, 0.25, 3.0),
            ],
        )
        assert len(series) == 4
        assert list(series)[:1] == [(0, series.values[0])]
        assert series.last == 0.25
        assert series.best() == (1, 0.25)  # NaN is no best; ties: the earliest step
        assert series.best("max") == (2, 0.5)
        with pytest.raises(ValueError, match="mode must be"):
            series.best("median")  # type: ignore[arg-type]
        assert repr(series) == "<MetricSeries 'loss': 4 points, steps 0..3, last 0.25>"
        empty = MetricSeries.from_points("x", [])
        assert (empty.last, empty.best(), repr(empty)) == (None, None, "<MetricSeries 'x': empty>")

    def test_frames(self) -> None:
        series = MetricSeries.from_points(
            "loss", [SeriesPoint("loss", 1, 0.5, 1.5), SeriesPoint("loss", 0, 0.9, None)]
        )
        frame = series.to_pandas()
        assert list(frame.columns) == ["step", "value", "timestamp"]
        assert frame["step"].tolist() == [0, 1]
        assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
        assert frame["timestamp"].isna().tolist() == [True, False]
        polars_frame = series.to_polars()
        assert polars_frame["value"].to_list() == [0.9, 0.5]
        assert str(polars_frame["timestamp"].dtype) == "Datetime(time_unit='us', time_zone='UTC')"
