"""What an operation records through ``capture``, against real stores."""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import pytest

from metalab.capture import Capture
from metalab.errors import CapabilityError, ConfigError
from metalab.records import (
    ArtifactDescriptor,
    DerivedMetrics,
    JSONValue,
    MetricValue,
    RunRecord,
)
from metalab.store import FileStoreConfig, MemoryStoreConfig, Store, SupportsLogs
from metalab.store.abc import ArtifactSource, SupportsStructuredResults

RUN = "ab" * 32


class BareStore:
    """A store with only the core protocol: no logs, no structured results.

    It keeps everything in a MemoryStore it does not expose, as a third-party
    store with fewer capabilities would.
    """

    def __init__(self) -> None:
        self._inner = MemoryStoreConfig().connect()

    def put_run_record(self, record: RunRecord) -> None:
        self._inner.put_run_record(record)

    def get_run_record(self, run_id: str) -> RunRecord | None:
        return self._inner.get_run_record(run_id)

    def list_run_records(self, experiment_id: str | None = None) -> list[RunRecord]:
        return self._inner.list_run_records(experiment_id)

    def run_exists(self, run_id: str) -> bool:
        return self._inner.run_exists(run_id)

    def put_artifact(
        self,
        run_id: str,
        name: str,
        data: ArtifactSource,
        *,
        kind: str = "bytes",
        format: str = "bin",
        metadata: Mapping[str, JSONValue] | None = None,
    ) -> ArtifactDescriptor:
        return self._inner.put_artifact(
            run_id, name, data, kind=kind, format=format, metadata=metadata
        )

    def get_artifact(self, run_id: str, name: str) -> bytes:
        return self._inner.get_artifact(run_id, name)

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        return self._inner.list_artifacts(run_id)

    def put_derived(self, run_id: str, metrics: Mapping[str, MetricValue]) -> None:
        self._inner.put_derived(run_id, metrics)

    def get_derived(self, run_id: str) -> DerivedMetrics | None:
        return self._inner.get_derived(run_id)

    def derived_exists(self, run_id: str) -> bool:
        return self._inner.derived_exists(run_id)

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    config = (
        FileStoreConfig(root=str(tmp_path), experiment_id="cap:1")
        if request.param == "file"
        else MemoryStoreConfig(experiment_id="cap:1")
    )
    with config.connect() as connected:
        yield connected


class TestMetrics:
    def test_metrics_are_kept_and_later_values_replace_earlier(self, store: Store) -> None:
        capture = Capture(store, RUN)
        capture.metric("loss", 1.0)
        capture.metrics({"loss": 0.5, "acc": 0.9, "ok": True, "opt": "adam", "n": 3})
        assert capture.captured_metrics == {
            "loss": 0.5,
            "acc": 0.9,
            "ok": True,
            "opt": "adam",
            "n": 3,
        }

    def test_non_finite_metrics_are_allowed(self, store: Store) -> None:
        capture = Capture(store, RUN)
        capture.metrics({"nan": math.nan, "inf": math.inf})
        assert math.isnan(float(capture.captured_metrics["nan"]))

    def test_numpy_scalars_become_python_scalars(self, store: Store) -> None:
        capture = Capture(store, RUN)
        capture.metrics({"x": np.float32(0.5), "n": np.int64(4), "b": np.bool_(False)})  # type: ignore[dict-item]
        assert capture.captured_metrics == {"x": 0.5, "n": 4, "b": False}
        assert [type(v) for v in capture.captured_metrics.values()] == [float, int, bool]

    def test_a_non_scalar_metric_is_refused_and_nothing_is_recorded(self, store: Store) -> None:
        capture = Capture(store, RUN)
        with pytest.raises(TypeError, match=r"metric 'bad'.*capture\.data\(\)"):
            capture.metrics({"good": 1.0, "bad": [1, 2]})  # type: ignore[dict-item]
        assert capture.captured_metrics == {}

    def test_an_empty_metric_name_is_refused(self, store: Store) -> None:
        with pytest.raises(TypeError, match="non-empty string"):
            Capture(store, RUN).metric("", 1.0)

    def test_metrics_touch_no_file(self, tmp_path: Path) -> None:
        with FileStoreConfig(root=str(tmp_path), experiment_id="cap:1").connect() as store:
            Capture(store, RUN).metric("x", 1.0)
        assert not any(p.is_file() for p in tmp_path.rglob("*") if RUN in p.name)


class TestData:
    def test_data_is_stored_at_once(self, store: Store) -> None:
        Capture(store, RUN).data("curve", [1.0, 0.5, math.nan], metadata={"unit": "s"})
        assert isinstance(store, SupportsStructuredResults)
        document = store.get_result(RUN, "curve")
        assert document is not None
        assert isinstance(document.data, list)
        assert document.data[:2] == [1.0, 0.5]
        assert math.isnan(float(document.data[2]))  # type: ignore[arg-type]
        assert document.metadata == {"unit": "s"}

    def test_numpy_arrays_keep_dtype_and_shape(self, store: Store) -> None:
        Capture(store, RUN).data("matrix", np.arange(6, dtype=np.int32).reshape(2, 3))
        assert isinstance(store, SupportsStructuredResults)
        document = store.get_result(RUN, "matrix")
        assert document is not None
        assert document.data == [[0, 1, 2], [3, 4, 5]]
        assert (document.dtype, document.shape) == ("int32", (2, 3))

    def test_data_without_a_json_form_is_refused(self, store: Store) -> None:
        with pytest.raises(ConfigError, match=r"capture\.data\('x'\)"):
            Capture(store, RUN).data("x", {"s": {1, 2}})

    def test_a_store_without_structured_results_names_both(self) -> None:
        with pytest.raises(CapabilityError) as info:
            Capture(BareStore(), RUN).data("x", [1])
        assert "BareStore" in str(info.value)
        assert "SupportsStructuredResults" in str(info.value)


class TestArtifacts:
    def test_bytes_are_stored_as_given(self, store: Store) -> None:
        capture = Capture(store, RUN)
        descriptor = capture.artifact("blob", b"\x00\x01")
        assert (descriptor.kind, descriptor.format, descriptor.size_bytes) == ("bytes", "bin", 2)
        assert store.get_artifact(RUN, "blob") == b"\x00\x01"
        assert capture.captured_artifacts == (descriptor,)

    def test_a_path_is_copied_with_its_suffix(self, store: Store, tmp_path: Path) -> None:
        source = tmp_path / "plot.png"
        source.write_bytes(b"PNG...")
        descriptor = Capture(store, RUN).artifact("plot", source)
        assert (descriptor.kind, descriptor.format) == ("file", "png")
        assert store.get_artifact(RUN, "plot") == b"PNG..."

    def test_json_values_are_stored_as_utf8_json(self, store: Store) -> None:
        Capture(store, RUN).artifact("config", {"lr": 0.1, "name": "caf\u00e9"})
        assert json.loads(store.get_artifact(RUN, "config")) == {"lr": 0.1, "name": "caf\u00e9"}

    def test_a_string_is_json_not_a_path(self, store: Store) -> None:
        descriptor = Capture(store, RUN).artifact("note", "/etc/passwd")
        assert descriptor.kind == "json"
        assert json.loads(store.get_artifact(RUN, "note")) == "/etc/passwd"

    def test_numpy_arrays_are_stored_as_npy(self, store: Store) -> None:
        array = np.linspace(0, 1, 5)
        descriptor = Capture(store, RUN).artifact("weights", array)
        assert (descriptor.kind, descriptor.format) == ("numpy", "npy")
        loaded = np.load(io.BytesIO(store.get_artifact(RUN, "weights")))
        assert np.array_equal(loaded, array)

    def test_kind_format_and_metadata_can_be_given(self, store: Store) -> None:
        descriptor = Capture(store, RUN).artifact(
            "table", b"a,b\n", kind="table", format="csv", metadata={"rows": 1}
        )
        assert (descriptor.kind, descriptor.format, descriptor.metadata) == (
            "table",
            "csv",
            {"rows": 1},
        )

    def test_the_latest_artifact_of_a_name_is_the_one_recorded(self, store: Store) -> None:
        capture = Capture(store, RUN)
        capture.artifact("x", b"1")
        second = capture.artifact("x", b"22")
        assert capture.captured_artifacts == (second,)

    def test_an_object_without_a_json_form_is_refused(self, store: Store) -> None:
        with pytest.raises(ConfigError, match="artifact 'x'"):
            Capture(store, RUN).artifact("x", object())
        assert store.list_artifacts(RUN) == []


class TestLogs:
    def test_each_line_is_on_disk_before_the_run_ends(self, tmp_path: Path) -> None:
        with FileStoreConfig(root=str(tmp_path), experiment_id="cap:1").connect() as store:
            capture = Capture(store, RUN)
            capture.log("first")
            path = store.log_path(RUN, "run")
            assert path.read_text().endswith("[INFO    ] first\n")
            capture.log("second\nline", level="warning")
            assert "[WARNING ] second\nline\n" in path.read_text()
            capture.close()
            assert store.get_log(RUN, "run") == path.read_text()

    def test_logs_read_back_through_the_store(self, store: Store) -> None:
        capture = Capture(store, RUN)
        capture.log("hello", level="debug")
        capture.close()
        assert isinstance(store, SupportsLogs)
        assert store.list_logs(RUN) == ["run"]
        text = store.get_log(RUN, "run")
        assert text is not None
        assert text.endswith("[DEBUG   ] hello\n")

    def test_a_run_that_never_logs_has_no_log(self, store: Store) -> None:
        Capture(store, RUN).close()
        assert isinstance(store, SupportsLogs)
        assert store.list_logs(RUN) == []

    def test_a_rerun_starts_its_log_afresh(self, store: Store) -> None:
        first = Capture(store, RUN)
        first.log("attempt 1")
        first.close()
        second = Capture(store, RUN)
        second.log("attempt 2")
        second.close()
        assert isinstance(store, SupportsLogs)
        text = store.get_log(RUN, "run")
        assert text is not None
        assert "attempt 1" not in text
        assert "attempt 2" in text

    def test_an_unknown_level_is_refused(self, store: Store) -> None:
        with pytest.raises(ValueError, match="log level"):
            Capture(store, RUN).log("x", level="loud")

    def test_a_store_without_logs_names_both(self) -> None:
        with pytest.raises(CapabilityError) as info:
            Capture(BareStore(), RUN).log("x")
        assert "BareStore" in str(info.value)
        assert "SupportsLogs" in str(info.value)


class TestCaptureOf01:
    """capture.file, figure, logger and subscribe_logger (names metalab 0.1 users use)."""

    def test_file_copies_or_moves_an_existing_file(self, tmp_path: Path) -> None:
        store = FileStoreConfig(root=str(tmp_path / "s"), experiment_id="c:1").connect()
        capture = Capture(store, "ab" * 32)
        report = tmp_path / "report.html"
        report.write_text("<p>hi</p>")
        copied = capture.file("report", report)
        assert (copied.kind, copied.format) == ("file", "html")
        assert report.exists()
        moved = capture.file("again", report, move=True, kind="report")
        assert moved.kind == "report"
        assert not report.exists()
        assert store.get_artifact("ab" * 32, "again") == b"<p>hi</p>"
        with pytest.raises(FileNotFoundError, match=r"capture.file\('x'\): no file at"):
            capture.file("x", tmp_path / "missing.txt")

    def test_figure_stores_an_image_and_closes_the_figure(self, tmp_path: Path) -> None:
        matplotlib = pytest.importorskip("matplotlib")
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        store = FileStoreConfig(root=str(tmp_path / "s"), experiment_id="c:1").connect()
        capture = Capture(store, "ab" * 32)
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [1, 4, 9])
        png = capture.figure("curve", fig)
        assert (png.kind, png.format) == ("figure", "png")
        assert store.get_artifact("ab" * 32, "curve").startswith(b"\x89PNG\r\n\x1a\n")
        assert not plt.fignum_exists(fig.number)
        fig2, _ = plt.subplots()
        capture.figure("vector", fig2, format="svg", close=False)
        assert b"<svg" in store.get_artifact("ab" * 32, "vector")
        assert plt.fignum_exists(fig2.number)
        plt.close(fig2)
        with pytest.raises(TypeError, match="takes a matplotlib Figure"):
            capture.figure("bad", object())

    def test_logger_and_subscribed_loggers_write_to_the_run_log(self, tmp_path: Path) -> None:
        store = FileStoreConfig(root=str(tmp_path / "s"), experiment_id="c:1").connect()
        capture = Capture(store, "ab" * 32)
        capture.logger.info("from the run's logger")
        library = logging.getLogger("some.library")
        library.propagate = False
        capture.subscribe_logger("some.library", level=logging.INFO)
        library.debug("below the level")
        logging.getLogger("some.library.child").warning("from a child logger")
        capture.unsubscribe_logger("other")  # not subscribed: nothing happens
        capture.close()
        library.error("after the run: not in its log")
        text = store.get_log("ab" * 32, "run") or ""
        assert "[INFO    ] metalab.run." in text
        assert "from the run's logger" in text
        assert "[WARNING ] some.library.child: from a child logger" in text
        assert "below the level" not in text
        assert "after the run" not in text
        assert library.handlers == []
