"""``Results.to_dataframe()`` and ``to_polars()``: columns, dtypes and missing values."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest

import metalab
from metalab.errors import MetalabWarning
from metalab.store import FileStoreConfig
from metalab.testing import hiding_modules


@metalab.operation
def varied(params: dict[str, Any], capture: metalab.Capture) -> None:
    i = params["i"]
    if i == 3:
        raise ValueError("three")
    capture.metrics(
        {
            "f": i / 2,
            "n": i * 10,
            "ok": i % 2 == 0,
            "label": f"run-{i}",
            "nan": math.nan,
        }
    )
    if i == 0:
        capture.metric("only_first", 1)
        capture.metric("mixed", "text")
    else:
        capture.metric("mixed", 1.5)


EXP = metalab.Experiment(
    name="frames",
    version="1",
    operation=varied,
    params=metalab.manual(
        [
            {"i": i, "lr": 0.1 * (i + 1), "model": {"depth": i + 1, "act": "relu"}, "flag": True}
            for i in range(5)
        ]
    ),
    tags=("t1", "t2"),
)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> metalab.Results:
    root = tmp_path_factory.mktemp("frames")
    results = metalab.run(EXP, store=str(root), progress=False).result()
    results.successful.compute_derived(lambda run: {"twice": float(run.metrics["f"]) * 2})
    return metalab.load_results(str(root), experiment_id="frames:1")


@pytest.fixture(scope="module")
def frame(results: metalab.Results) -> pd.DataFrame:
    return results.to_dataframe()


class TestDataFrameShape:
    def test_one_row_per_run_in_results_order(
        self, results: metalab.Results, frame: pd.DataFrame
    ) -> None:
        assert len(frame) == 5
        assert list(frame["run_id"]) == results.run_ids

    def test_columns_are_core_then_params_metrics_derived(self, frame: pd.DataFrame) -> None:
        assert list(frame.columns) == [
            "run_id",
            "experiment_id",
            "status",
            "started_at",
            "finished_at",
            "duration_ms",
            "error_type",
            "error_message",
            "tags",
            "params.i",
            "params.lr",
            "params.model.depth",
            "params.model.act",
            "params.flag",
            "metrics.f",
            "metrics.n",
            "metrics.ok",
            "metrics.label",
            "metrics.nan",
            "metrics.only_first",
            "metrics.mixed",
            "derived.twice",
        ]

    def test_values_land_in_their_rows(self, results: metalab.Results, frame: pd.DataFrame) -> None:
        row = frame.set_index("run_id").loc[results[1].run_id]
        assert row["params.lr"] == pytest.approx(0.2)
        assert row["params.model.depth"] == 2
        assert row["metrics.label"] == "run-1"
        assert row["derived.twice"] == pytest.approx(1.0)
        assert row["status"] == "success"
        assert list(row["tags"]) == ["t1", "t2"]

    def test_failed_runs_have_an_error_and_missing_metrics(
        self, results: metalab.Results, frame: pd.DataFrame
    ) -> None:
        row = frame.set_index("run_id").loc[results[3].run_id].to_dict()
        assert row["status"] == "failed"
        assert row["error_type"] == "ValueError"
        assert row["error_message"] == "three"
        assert math.isnan(row["metrics.f"])
        assert math.isnan(row["derived.twice"])
        assert frame["error_type"].isna().sum() == 4


class TestDataFrameDtypes:
    @pytest.mark.parametrize(
        ("column", "dtype"),
        [
            ("params.i", "int64"),
            ("params.model.depth", "int64"),
            ("params.lr", "float64"),
            ("params.flag", "bool"),
            ("metrics.f", "float64"),
            ("metrics.n", "float64"),
            ("metrics.nan", "float64"),
            ("metrics.only_first", "float64"),
            ("duration_ms", "float64"),
            ("derived.twice", "float64"),
        ],
    )
    def test_numeric_and_bool_dtypes(self, frame: pd.DataFrame, column: str, dtype: str) -> None:
        assert str(frame[column].dtype) == dtype

    def test_bool_with_missing_values_is_object(self, frame: pd.DataFrame) -> None:
        assert frame["metrics.ok"].dtype == object
        assert frame["metrics.ok"].tolist()[:3] == [True, False, True]

    def test_mixed_types_are_object(self, frame: pd.DataFrame) -> None:
        assert frame["metrics.mixed"].dtype == object
        assert frame["metrics.mixed"].iloc[0] == "text"

    def test_strings_are_strings(self, frame: pd.DataFrame) -> None:
        for column in ("run_id", "status", "params.model.act", "metrics.label"):
            assert pd.api.types.is_string_dtype(frame[column]), column

    def test_timestamps_are_utc_datetimes_equal_to_the_records(
        self, results: metalab.Results, frame: pd.DataFrame
    ) -> None:
        assert str(frame["started_at"].dtype).startswith("datetime64")
        assert str(frame["started_at"].dt.tz) == "UTC"
        assert [t.to_pydatetime() for t in frame["started_at"]] == [r.started_at for r in results]
        assert [t.to_pydatetime() for t in frame["finished_at"]] == [r.finished_at for r in results]

    def test_nan_metrics_stay_nan(self, frame: pd.DataFrame) -> None:
        assert frame["metrics.nan"].isna().all()

    def test_huge_ints_fall_back_to_object(self, tmp_path: Path) -> None:
        exp = EXP.replace(name="huge", params=metalab.manual([{"i": 2**70}, {"i": 1}]))
        frame = metalab.run(exp, store=str(tmp_path), progress=False).result().to_dataframe()
        assert frame["params.i"].dtype == object
        assert frame["params.i"].tolist() == [2**70, 1]


class TestEmptyResults:
    def test_an_empty_frame_still_has_the_core_columns(self, tmp_path: Path) -> None:
        # A scoped config names its experiment outright: one without runs is empty.
        empty = metalab.load_results(FileStoreConfig(root=str(tmp_path), experiment_id="none:1"))
        frame = empty.to_dataframe()
        assert len(frame) == 0
        assert list(frame.columns)[:3] == ["run_id", "experiment_id", "status"]
        assert len(empty.to_polars()) == 0


def _polars(results: metalab.Results) -> pl.DataFrame:
    with pytest.warns(MetalabWarning, match=r"mixed types .*: metrics\.mixed$"):
        return results.to_polars()


class TestPolars:
    def test_polars_has_the_same_columns_with_nulls_for_missing(
        self, results: metalab.Results, frame: pd.DataFrame
    ) -> None:
        df = _polars(results)
        assert df.columns == list(frame.columns)
        assert df.height == 5
        schema = df.schema
        assert schema["params.i"] == pl.Int64
        assert schema["params.flag"] == pl.Boolean
        assert schema["metrics.ok"] == pl.Boolean
        assert schema["metrics.n"] == pl.Int64
        assert schema["metrics.label"] == pl.String
        assert schema["tags"] == pl.List(pl.String)
        assert schema["started_at"] == pl.Datetime("us", "UTC")
        assert df["metrics.n"].null_count() == 1
        assert df["started_at"].to_list() == [r.started_at for r in results]
        assert df["tags"].to_list() == [list(r.tags) for r in results]

    def test_mixed_columns_become_strings_as_in_arrow(self, results: metalab.Results) -> None:
        mixed = _polars(results)["metrics.mixed"]
        assert mixed.dtype == pl.String
        assert mixed.to_list() == ["text", "1.5", "1.5", None, "1.5"]

    def test_polars_timestamps_keep_microseconds(self, results: metalab.Results) -> None:
        finished = _polars(results)["finished_at"].to_list()
        assert finished == [r.finished_at for r in results]
        assert all(isinstance(t, dt.datetime) and t.tzinfo is not None for t in finished)

    @pytest.mark.parametrize("hidden", [("pyarrow",), ("pyarrow", "numpy")])
    def test_without_pyarrow_the_frame_is_the_same(
        self, results: metalab.Results, monkeypatch: pytest.MonkeyPatch, hidden: tuple[str, ...]
    ) -> None:
        through_arrow = _polars(results)
        for module in hidden:
            monkeypatch.setitem(sys.modules, module, None)
        direct = _polars(results)
        assert direct.schema == through_arrow.schema
        assert direct.equals(through_arrow)


class TestMissingDependencies:
    @pytest.mark.parametrize(
        ("module", "method", "extra"),
        [("pandas", "to_dataframe", "pandas"), ("polars", "to_polars", "polars")],
    )
    def test_a_missing_frame_library_names_the_extra(
        self, tmp_path: Path, module: str, method: str, extra: str
    ) -> None:
        code = textwrap.dedent(
            f"""
            import sys
            sys.modules[{module!r}] = None
            import metalab
            from metalab.errors import MissingDependencyError
            op = metalab.operation(lambda capture: capture.metric("x", 1))
            exp = metalab.Experiment(name="dep", version="1", operation=op, params=metalab.grid())
            results = metalab.run(exp, store={str(tmp_path)!r}, progress=False).result()
            try:
                results.{method}()
            except MissingDependencyError as exc:
                print(type(exc).__name__, exc.module, exc.extra)
                print(exc)
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        first, *message = proc.stdout.splitlines()
        assert first == f"MissingDependencyError {module} {extra}"
        assert f"pip install 'metalab[{extra}]'" in "\n".join(message)

    def test_polars_never_needs_pandas(self, tmp_path: Path) -> None:
        # Through Arrow (pyarrow present) and without it: pandas is never imported.
        code = hiding_modules("pandas") + textwrap.dedent(
            f"""
            if sys.argv[1] == "no-arrow":
                sys.modules["pyarrow"] = None
            import metalab
            op = metalab.operation(lambda capture: capture.metric("x", 1.5))
            exp = metalab.Experiment(name="pl", version="1", operation=op, params=metalab.grid())
            results = metalab.run(exp, store={str(tmp_path)!r}, progress=False).result()
            frame = results.to_polars()
            arrow = sys.modules.get("pyarrow") is not None
            print(frame["metrics.x"].to_list(), arrow, "pandas" in sys.modules)
            """
        )
        for mode, arrow in (("arrow", True), ("no-arrow", False)):
            proc = subprocess.run(
                [sys.executable, "-c", code, mode], capture_output=True, text=True, check=False
            )
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.split() == ["[1.5]", str(arrow), "False"]
