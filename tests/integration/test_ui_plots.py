"""``metalab ui``: the plot builder's numbers, the compare page's API and ETags.

The stores are written by ``metalab.run`` (a grid of params with replicate seeds and
a stepped metric); every number a plot answers is computed again here from the
records and series the store holds, with ``statistics`` rather than the code under
test. A synthetic experiment of 20,000 records checks the sampling of large plots.
"""

from __future__ import annotations

import math
import random
import statistics
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

import metalab
from metalab.records import RunRecord
from metalab.store import FileStoreConfig, create_store
from metalab.testing.store import make_record
from metalab.ui import create_app

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns when it finds httpx.
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from starlette.testclient import TestClient

EXP: Final = "plots:1"
BIG: Final = "big:1"
STEPS: Final = 12
REPLICATES: Final = 3
PLOT: Final = f"/api/experiments/{EXP}/plot"


@metalab.operation
def train(params: dict[str, Any], seeds: metalab.SeedBundle, capture: metalab.Capture) -> None:
    rng = seeds.rng("noise")
    base = params["lr"] * params["width"]
    for step in range(STEPS):
        capture.metric("loss", base / (step + 1) + rng.random(), step=step)
    capture.metric("acc", base + rng.gauss(0, 1))
    capture.metric("label", f"w{params['width']}")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plots") / "experiments"
    exp = metalab.Experiment(
        name="plots",
        version="1",
        context={},
        operation=train,
        params=metalab.grid(lr=[0.1, 0.2, 0.4], width=[8, 16], opt=["sgd", "adam"]),
        seeds=metalab.seeds(base=11, replicates=REPLICATES),
    )
    with metalab.run(exp, store=str(path), progress=False) as handle:
        handle.result()
    return path


@pytest.fixture(scope="module")
def ui(root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(str(root)), base_url="http://127.0.0.1:8765") as found:
        yield found


@pytest.fixture(scope="module")
def runs(root: Path) -> list[RunRecord]:
    records = metalab.load_results(str(root), EXP).records
    assert len(records) == 3 * 2 * 2 * REPLICATES
    return records


def num(value: object) -> float:
    """A value of a record known to be a number."""
    assert isinstance(value, int | float)
    return float(value)


def get(ui: TestClient, path: str = PLOT, status: int = 200, **params: Any) -> dict[str, Any]:
    response = ui.get(path, params=params)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


# --- scatter and line -------------------------------------------------------------


def test_a_scatter_is_every_run_grouped_by_colour(ui: TestClient, runs: list[RunRecord]) -> None:
    body = get(ui, kind="scatter", x="params.lr", y="metrics.acc", color="params.width")
    assert (body["runs"], body["total"], body["points"]) == (len(runs), len(runs), len(runs))
    assert body["sampled"] is False
    assert [g["label"] for g in body["groups"]] == ["8", "16"]  # numbers by value
    for g in body["groups"]:
        expected = {
            r.run_id: (r.params["lr"], r.metrics["acc"])
            for r in runs
            if r.params["width"] == g["key"]
        }
        got = {rid: (x, y) for rid, x, y in zip(g["run_ids"], g["x"], g["y"], strict=True)}
        assert got == expected
        assert g["runs"] == len(expected)


@pytest.mark.parametrize("agg", ["mean_minmax", "mean_se"])
def test_replicates_are_aggregated_per_x_and_colour(
    ui: TestClient, runs: list[RunRecord], agg: str
) -> None:
    body = get(ui, kind="line", x="params.lr", y="metrics.acc", color="params.opt", agg=agg)
    assert [g["label"] for g in body["groups"]] == ["adam", "sgd"]
    for g in body["groups"]:
        cells: dict[float, list[float]] = defaultdict(list)
        for r in runs:
            if r.params["opt"] == g["key"]:
                cells[num(r.params["lr"])].append(num(r.metrics["acc"]))
        assert g["x"] == sorted(cells)
        assert g["n"] == [len(cells[x]) for x in g["x"]] == [2 * REPLICATES] * 3
        for x, mean, lo, hi in zip(g["x"], g["y"], g["lo"], g["hi"], strict=True):
            values = cells[x]
            assert mean == pytest.approx(statistics.mean(values))
            if agg == "mean_minmax":
                assert (lo, hi) == (min(values), max(values))
            else:
                se = statistics.stdev(values) / math.sqrt(len(values))
                assert lo == pytest.approx(statistics.mean(values) - se)
                assert hi == pytest.approx(statistics.mean(values) + se)
        assert not g["run_ids"]


def test_the_filter_applies_to_every_kind(ui: TestClient, runs: list[RunRecord]) -> None:
    where = 'params.opt == "sgd" and params.lr > 0.1'
    kept = [r for r in runs if r.params["opt"] == "sgd" and num(r.params["lr"]) > 0.1]
    scatter = get(ui, kind="scatter", x="params.lr", y="metrics.acc", where=where)
    assert scatter["runs"] == len(kept) == 2 * 2 * REPLICATES
    assert sorted(scatter["groups"][0]["run_ids"]) == sorted(r.run_id for r in kept)
    hist = get(ui, kind="hist", x="metrics.acc", where=where)
    assert sum(hist["groups"][0]["counts"]) == len(kept)
    curves = get(ui, kind="curves", metric="loss", agg="mean_minmax", where=where)
    assert curves["groups"][0]["n"] == [len(kept)] * STEPS
    parallel = get(ui, kind="parallel", dims="params.lr", y="metrics.acc", where=where)
    assert sorted(parallel["run_ids"]) == sorted(r.run_id for r in kept)
    bad = get(ui, status=400, kind="scatter", x="params.lr", y="metrics.acc", where="params.lr <")
    assert bad["param"] == "where"
    assert bad["column"] is not None


def test_times_can_be_an_axis(ui: TestClient, runs: list[RunRecord]) -> None:
    body = get(ui, kind="scatter", x="started_at", y="duration_ms")
    assert body["time_x"] is True
    by_id = {r.run_id: r for r in runs}
    for run_id, x, y in zip(
        body["groups"][0]["run_ids"], body["groups"][0]["x"], body["groups"][0]["y"], strict=True
    ):
        assert x == pytest.approx(by_id[run_id].started_at.timestamp())
        assert y == by_id[run_id].duration_ms


# --- histograms -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "bins"),
    [
        ("acc", 1),
        ("acc", 7),
        ("acc", 20),
        # 0.2 falls on an edge the division (0.2 - 0.1) / width puts below it.
        ("lr", 3),
        ("lr", 6),
    ],
)
def test_a_histogram_counts_values_in_equal_bins(
    ui: TestClient, runs: list[RunRecord], field: str, bins: int
) -> None:
    key = "params.lr" if field == "lr" else "metrics.acc"
    body = get(ui, kind="hist", x=key, color="params.width", bins=bins)

    def value(run: RunRecord) -> float:
        return num(run.params["lr"] if field == "lr" else run.metrics["acc"])

    values = [value(r) for r in runs]
    low, high = min(values), max(values)
    edges = body["edges"]
    assert len(edges) == bins + 1
    assert (edges[0], edges[-1]) == (low, high)
    assert edges == pytest.approx([low + (high - low) * b / bins for b in range(bins + 1)])
    for g in body["groups"]:
        mine = [value(r) for r in runs if r.params["width"] == g["key"]]
        expected = [
            sum(1 for v in mine if edges[b] <= v < edges[b + 1] or (b == bins - 1 and v == high))
            for b in range(bins)
        ]
        assert g["counts"] == expected
        assert g["runs"] == len(mine) == sum(expected)
    if field == "lr" and bins == 3:
        assert [sum(c) for c in zip(*(g["counts"] for g in body["groups"]), strict=True)] == [
            len(runs) // 3
        ] * 3


def test_a_histogram_of_one_value_is_one_unit_wide(ui: TestClient, runs: list[RunRecord]) -> None:
    body = get(ui, kind="hist", x="params.width", bins=4, where="params.width == 8")
    assert body["edges"] == [7.5, 7.75, 8.0, 8.25, 8.5]
    assert body["groups"][0]["counts"] == [0, 0, len(runs) // 2, 0]


# --- parallel coordinates ---------------------------------------------------------


def test_parallel_rows_encode_numbers_and_categories(ui: TestClient, runs: list[RunRecord]) -> None:
    body = get(ui, kind="parallel", dims="params.lr,params.opt", y="metrics.acc")
    lr, opt, acc = body["dimensions"]
    assert (lr["key"], lr["numeric"], lr["min_value"], lr["max_value"]) == (
        "params.lr",
        True,
        0.1,
        0.4,
    )
    assert (opt["numeric"], opt["categories"]) == (False, ["adam", "sgd"])
    assert acc["key"] == "metrics.acc"
    assert acc["min_value"] == min(r.metrics["acc"] for r in runs)
    by_id = {r.run_id: r for r in runs}
    assert len(body["rows"]) == len(runs)
    for run_id, row in zip(body["run_ids"], body["rows"], strict=True):
        run = by_id[run_id]
        assert row == [
            run.params["lr"],
            opt["categories"].index(run.params["opt"]),
            run.metrics["acc"],
        ]


# --- learning curves --------------------------------------------------------------


@pytest.mark.parametrize("agg", ["mean_minmax", "mean_se"])
def test_curves_are_the_mean_per_step_and_group(
    ui: TestClient, root: Path, runs: list[RunRecord], agg: str
) -> None:
    body = get(ui, kind="curves", metric="loss", color="params.lr", agg=agg)
    store = create_store(str(root))
    try:
        series = {r.run_id: store.get_series(r.run_id)["loss"] for r in runs}  # type: ignore[attr-defined]
    finally:
        store.close()
    assert [g["key"] for g in body["groups"]] == [0.1, 0.2, 0.4]
    assert body["total"] == body["points"] == 3 * STEPS
    for g in body["groups"]:
        members = [r.run_id for r in runs if r.params["lr"] == g["key"]]
        assert g["runs"] == len(members) == 4 * REPLICATES
        assert g["x"] == list(range(STEPS))
        for step, mean, lo, hi, n in zip(g["x"], g["y"], g["lo"], g["hi"], g["n"], strict=True):
            values = [series[m].values[series[m].steps.index(step)] for m in members]
            assert n == len(values)
            assert mean == pytest.approx(statistics.mean(values))
            if agg == "mean_minmax":
                assert (lo, hi) == (min(values), max(values))
            else:
                se = statistics.stdev(values) / math.sqrt(len(values))
                assert (lo, hi) == (pytest.approx(mean - se), pytest.approx(mean + se))


# --- bad requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "param", "words"),
    [
        ({"kind": "pie", "x": "params.lr"}, "kind", "kind must be one of"),
        ({"kind": "scatter", "y": "metrics.acc"}, "x", "needs x="),
        ({"kind": "scatter", "x": "params.nope", "y": "metrics.acc"}, "x", "params.nope"),
        ({"kind": "scatter", "x": "params.opt", "y": "metrics.acc"}, "x", "not numeric"),
        ({"kind": "hist", "x": "metrics.label"}, "x", "not numeric"),
        ({"kind": "hist", "x": "metrics.acc", "bins": 0}, "bins", "bins must be from 1"),
        ({"kind": "hist", "x": "metrics.acc", "bins": 201}, "bins", "bins must be from 1"),
        ({"kind": "hist", "x": "metrics.acc", "bins": "ten"}, "bins", "whole number"),
        ({"kind": "scatter", "x": "params.lr", "y": "metrics.acc", "agg": "median"}, "agg", "agg"),
        ({"kind": "scatter", "x": "params.lr -", "y": "metrics.acc"}, "x", "unknown column"),
        ({"kind": "scatter", "x": "notes", "y": "metrics.acc"}, "x", "no field to plot"),
        ({"kind": "curves", "metric": "loss"}, "agg", "aggregated"),
        ({"kind": "curves", "agg": "mean_se"}, "metric", "metric="),
        ({"kind": "curves", "agg": "mean_se", "metric": "nope"}, "metric", "no run"),
        ({"kind": "parallel", "y": "metrics.acc"}, "dims", "dims="),
        ({"kind": "parallel", "dims": "params.lr", "y": "params.opt"}, "y", "not numeric"),
        (
            {"kind": "scatter", "x": "params.lr", "y": "metrics.acc", "limit": 5001},
            "limit",
            "limit",
        ),
    ],
)
def test_a_bad_plot_is_400_naming_the_parameter(
    ui: TestClient, params: dict[str, Any], param: str, words: str
) -> None:
    body = get(ui, status=400, **params)
    assert body["param"] == param
    assert words in body["error"]


def test_a_plot_of_an_unknown_experiment_is_404(ui: TestClient) -> None:
    get(ui, "/api/experiments/nope:1/plot", status=404, kind="hist", x="metrics.acc")


# --- a large experiment -----------------------------------------------------------


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, list[RunRecord]]]:
    root = tmp_path_factory.mktemp("big")
    rng = random.Random(5)
    records = [
        make_record(
            BIG,
            f"r{i:05d}",
            params={"a": rng.random(), "g": i % 4},
            metrics={"m": rng.gauss(0, 1)},
        )
        for i in range(20_000)
    ]
    with FileStoreConfig(root=str(root), experiment_id=BIG).connect() as store:
        store.put_run_records(records)
    with TestClient(create_app(str(root)), base_url="http://127.0.0.1:8765") as client:
        yield client, records


def test_a_large_scatter_is_sampled_deterministically(
    big: tuple[TestClient, list[RunRecord]],
) -> None:
    ui, records = big
    path = f"/api/experiments/{BIG}/plot"
    query: dict[str, Any] = {
        "kind": "scatter",
        "x": "params.a",
        "y": "metrics.m",
        "color": "params.g",
    }
    first = get(ui, path, **query)
    assert (first["sampled"], first["total"], first["runs"]) == (True, 20_000, 20_000)
    assert first["points"] == sum(len(g["x"]) for g in first["groups"]) <= 5000
    assert first["points"] == 5000
    again = get(ui, path, **query)
    assert again == first
    other = get(ui, path, seed=1, **query)
    assert other["points"] == 5000
    assert other["groups"] != first["groups"]
    by_id = {r.run_id: r for r in records}
    for g in first["groups"]:
        for run_id, x, y in zip(g["run_ids"], g["x"], g["y"], strict=True):
            assert (x, y, g["key"]) == (
                by_id[run_id].params["a"],
                by_id[run_id].metrics["m"],
                by_id[run_id].params["g"],
            )
    # Every group is sampled in proportion, more or less.
    assert all(1000 <= len(g["x"]) <= 1500 for g in first["groups"])
    # Aggregates are computed over every run, not the sample.
    hist = get(ui, path, kind="hist", x="metrics.m", bins=50)
    assert hist["sampled"] is False
    assert sum(hist["groups"][0]["counts"]) == 20_000
    parallel = get(ui, path, kind="parallel", dims="params.a,params.g", y="metrics.m")
    assert (parallel["sampled"], parallel["total"], len(parallel["rows"])) == (True, 20_000, 5000)
    many = get(ui, path, status=400, **{**query, "color": "params.a"})
    assert many["param"] == "color"
    assert "20000 distinct values" in many["error"]
    small = get(ui, path, where="params.g == 1 and params.a < 0.2", **query)
    assert small["sampled"] is False
    assert small["total"] == sum(
        1 for r in records if r.params["g"] == 1 and num(r.params["a"]) < 0.2
    )


# --- compare ----------------------------------------------------------------------


def test_compare_runs_side_by_side(ui: TestClient, runs: list[RunRecord]) -> None:
    one, two, three = sorted(runs, key=lambda r: r.run_id)[:3]
    ids = [three.run_id, one.run_id, two.run_id]
    body = get(ui, "/api/compare", ids=",".join(ids))
    assert [r["run_id"] for r in body["runs"]] == ids
    assert all(
        len(r["short_id"]) >= 8 and r["run_id"].startswith(r["short_id"]) for r in body["runs"]
    )
    rows = {(row["group"], row["key"]): row for row in body["rows"]}
    records = [three, one, two]
    for key in ("lr", "width", "opt"):
        row = rows["params", key]
        assert row["values"] == [r.params[key] for r in records]
        assert row["differ"] is (len({r.params[key] for r in records}) > 1)
    assert rows["metrics", "acc"]["values"] == [r.metrics["acc"] for r in records]
    assert rows["metrics", "acc"]["differ"] is True
    assert rows["run", "status"] == {
        "group": "run",
        "key": "status",
        "values": ["success"] * 3,
        "differ": False,
    }
    assert rows["run", "duration_ms"]["values"] == [r.duration_ms for r in records]
    (loss,) = body["series"]
    assert loss["name"] == "loss"
    assert [s["points"] for s in loss["runs"]] == [STEPS] * 3
    assert loss["runs"][1]["values"] == pytest.approx(
        get(ui, f"/api/runs/{one.run_id}/series")["series"][0]["values"]
    )
    # The same id twice counts once.
    assert len(get(ui, "/api/compare", ids=[one.run_id, two.run_id, one.run_id])["runs"]) == 2


def test_compare_refuses_too_few_too_many_and_unknown_runs(
    ui: TestClient, runs: list[RunRecord]
) -> None:
    ids = [r.run_id for r in runs]
    assert get(ui, "/api/compare", status=400, ids=ids[0])["param"] == "ids"
    assert get(ui, "/api/compare", status=400)["param"] == "ids"
    assert "got 11" in get(ui, "/api/compare", status=400, ids=",".join(ids[:11]))["error"]
    assert len(get(ui, "/api/compare", ids=",".join(ids[:10]))["runs"]) == 10
    missing = get(ui, "/api/compare", status=404, ids=f"{ids[0]},nope1,nope2")
    assert "'nope1'" in missing["error"]
    assert "'nope2'" in missing["error"]
    assert ids[0] not in missing["error"]
    assert get(ui, "/api/compare", status=400, ids=f"{ids[0]},../x")["type"] == "ConfigError"


# --- ETags ------------------------------------------------------------------------


def test_json_answers_carry_an_etag_and_304_when_unchanged(tmp_path: Path) -> None:
    config = FileStoreConfig(root=str(tmp_path), experiment_id=EXP)
    with config.connect() as store:
        store.put_run_record(make_record(EXP, "r1", status="running"))
    with TestClient(create_app(str(tmp_path)), base_url="http://127.0.0.1:8765") as ui:
        for path in ("/api/experiments", f"/api/experiments/{EXP}/runs", "/api/runs/r1"):
            first = ui.get(path)
            tag = first.headers["etag"]
            assert tag.startswith('"')
            assert ui.get(path).headers["etag"] == tag  # the same answer, the same tag
            unchanged = ui.get(path, headers={"if-none-match": tag})
            assert unchanged.status_code == 304
            assert unchanged.content == b""
            assert unchanged.headers["etag"] == tag
            assert ui.get(path, headers={"if-none-match": '"other"'}).status_code == 200
        tags = {p: ui.get(p).headers["etag"] for p in ("/api/experiments", "/api/runs/r1")}
        with config.connect() as store:
            record = store.get_run_record("r1")
            assert record is not None
            store.put_run_record(record.succeeded(metrics={"acc": 1.0}))
        for path, tag in tags.items():
            changed = ui.get(path, headers={"if-none-match": tag})
            assert changed.status_code == 200
            assert changed.headers["etag"] != tag
        # Errors are never tagged.
        assert "etag" not in ui.get("/api/runs/nope").headers
