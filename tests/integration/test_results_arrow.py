"""Results as Arrow and Parquet: typed columns, mixed ones as strings, series too."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import metalab
from metalab.errors import MetalabWarning, MissingDependencyError
from metalab.testing import hiding_modules


@metalab.operation
def _op(params: dict[str, Any], capture: metalab.Capture) -> None:
    n = params["n"]
    if n == 3:
        raise ValueError("three")
    capture.metric("score", n * 1.5)
    capture.metric("count", n)
    capture.metric("ok", n > 1)
    capture.metric("label", "big" if n > 1 else 7)  # a string and an int: mixed
    for step in range(3):
        capture.metric("loss", 1.0 / (step + n), step=step)


_EXP = metalab.Experiment(
    name="arrow",
    version="1",
    operation=_op,
    params=metalab.grid(n=[1, 2, 3], opt=["sgd"]),
    tags=("t",),
)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> metalab.Results:
    root = tmp_path_factory.mktemp("arrow")
    return metalab.run(_EXP, store=root, progress=False).result()


def test_to_arrow_has_the_frame_columns_typed(results: metalab.Results) -> None:
    with pytest.warns(MetalabWarning, match=r"mixed types .*metrics\.label"):
        table = results.to_arrow()
    frame = results.to_dataframe()
    assert table.column_names == list(frame.columns)
    schema = table.schema
    assert schema.field("started_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("metrics.score").type == pa.float64()
    assert schema.field("metrics.count").type == pa.int64()  # nullable: a failed run lacks it
    assert schema.field("metrics.ok").type == pa.bool_()
    assert schema.field("params.n").type == pa.int64()
    assert schema.field("params.opt").type == pa.string()
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("metrics.label").type == pa.string()
    by_n = {row["params.n"]: row for row in table.to_pylist()}
    assert by_n[2]["metrics.score"] == 3.0
    assert by_n[1]["metrics.label"] == "7"
    assert by_n[2]["metrics.label"] == "big"
    assert by_n[3]["status"] == "failed"
    assert by_n[3]["metrics.score"] is None
    assert by_n[1]["tags"] == ["t"]
    started = by_n[1]["started_at"]
    assert isinstance(started, dt.datetime)
    assert started.tzinfo is not None
    record = next(r for r in results if r.params["n"] == 1)
    assert started == record.started_at.replace(microsecond=record.started_at.microsecond)


def test_columns_select_and_unknown_ones_are_refused(results: metalab.Results) -> None:
    table = results.to_arrow(["run_id", "params.*"])
    assert table.column_names == ["run_id", "params.n", "params.opt"]
    with pytest.raises(KeyError, match="nope"):
        results.to_arrow(["nope"])


def test_to_parquet_round_trips_through_a_file(results: metalab.Results, tmp_path: Path) -> None:
    path = results.to_parquet(tmp_path / "runs.parquet", ["run_id", "status", "metrics.score"])
    assert path == tmp_path / "runs.parquet"
    back = pq.read_table(path)
    assert back.equals(results.to_arrow(["run_id", "status", "metrics.score"]))
    assert [p.name for p in tmp_path.iterdir()] == ["runs.parquet"]  # no temp file left


def test_series_as_arrow(results: metalab.Results) -> None:
    table = results.series_arrow("loss")
    assert table.num_rows == 6
    assert table.schema.field("value").type == pa.float64()
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert pa.types.is_dictionary(table.schema.field("run_id").type)
    assert sorted(table.column("step").to_numpy().tolist()) == [0, 0, 1, 1, 2, 2]


def test_series_arrow_holds_the_series_dataframe(results: metalab.Results) -> None:
    table = results.series_arrow()
    frame = results.series_dataframe()
    assert table.column_names == list(frame.columns)
    assert table.schema.field("params.n").type == pa.int64()
    assert table.schema.field("params.opt").type == pa.string()
    for name in frame.columns:
        expected = frame[name].tolist()
        if name == "timestamp":
            expected = [stamp.to_pydatetime() for stamp in expected]
        assert table.column(name).to_pylist() == expected, name


def test_series_arrow_never_needs_pandas(tmp_path: Path) -> None:
    code = hiding_modules("pandas") + textwrap.dedent(
        f"""
        import metalab

        def curve(params, capture):
            for step in range(2):
                capture.metric("loss", params["lr"] * step, step=step)

        exp = metalab.Experiment(
            name="np", version="1", operation=metalab.operation(curve),
            params=metalab.grid(lr=[1.0, 2.0]),
        )
        results = metalab.run(exp, store={str(tmp_path)!r}, progress=False).result()
        table = results.series_arrow("loss")
        print("|".join(str(field.type) for field in table.schema))
        print(sorted(zip(table["params.lr"].to_pylist(), table["value"].to_pylist())))
        print("pandas" in sys.modules)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    types, points, pandas_loaded = proc.stdout.splitlines()
    dictionary = "dictionary<values=string, indices=int8, ordered=0>"
    assert types.split("|") == [
        dictionary,  # run_id
        dictionary,  # metric
        "int64",  # step
        "double",  # value
        "timestamp[us, tz=UTC]",
        "double",  # params.lr
    ]
    assert points == "[(1.0, 0.0), (1.0, 1.0), (2.0, 0.0), (2.0, 2.0)]"
    assert pandas_loaded == "False"


def test_series_arrow_without_numpy_says_how_to_install_it(
    results: metalab.Results, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(MissingDependencyError, match=r"metalab\[numpy\]"):
        results.series_arrow()


def test_without_pyarrow_the_error_says_how_to_install_it(
    results: metalab.Results, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingDependencyError, match=r"metalab\[arrow\]"):
        results.to_arrow()


@metalab.operation
def _phases(params: dict[str, Any], capture: metalab.Capture) -> None:
    capture.metric("phase", "warm" if params["n"] == 1 else 0.5, step=0)


def test_series_of_mixed_values_become_strings_with_a_warning(tmp_path: Path) -> None:
    exp = metalab.Experiment(
        name="phases", version="1", operation=_phases, params=metalab.grid(n=[1, 2])
    )
    results = metalab.run(exp, store=tmp_path, progress=False).result()
    with pytest.warns(MetalabWarning, match="mixed types were turned into strings: value"):
        table = results.series_arrow("phase")
    assert table.schema.field("value").type == pa.string()
    assert sorted(str(v) for v in table.column("value").to_pylist()) == ["0.5", "warm"]
