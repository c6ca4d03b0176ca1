"""``metalab ui``: the dashboard's JSON API, its guard and its front end, over real stores.

The API is called in-process with Starlette's TestClient; the stores are written by
``metalab.run`` (params, metrics, a failing run, series, artifacts, a log), and what
the API answers is compared with what ``metalab.load_results`` and the store say.
Two tests start the real server (``metalab.ui.serve``) in a subprocess.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Self

import httpx
import pytest

import metalab
from metalab.errors import ConfigError, StoreNotFoundError
from metalab.query import parse_where
from metalab.records import RunRecord
from metalab.series import SeriesPoint
from metalab.store import FileStoreConfig, PostgresStoreConfig, StoreLike, create_store
from metalab.testing import run_cli
from metalab.testing.store import make_record
from metalab.ui import create_app

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns when it finds httpx
    # (which it still uses); the test dependency group installs httpx.
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from starlette.testclient import TestClient

EXP: Final = "ui:1"
OTHER: Final = "other:2"
STEPS: Final = 50
PNG: Final = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
WEIGHTS: Final = b"\x00\x01\x02" * 300
SECURITY_HEADERS: Final = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
TOKEN: Final = "a-token-long-enough-to-pass-0123"


@metalab.operation
def train(params: dict[str, Any], capture: metalab.Capture) -> None:
    if params["lr"] >= 0.3:
        raise FloatingPointError("the loss diverged")
    for step in range(STEPS):
        capture.metric("loss", 1.0 / (step + 1) / params["lr"], step=step)
    capture.metric("acc", 1.0 - params["lr"] * params["width"] / 100)
    capture.metric("val acc", 0.5 + params["width"] / 100)
    capture.artifact("summary", {"lr": params["lr"], "width": params["width"]})
    capture.artifact("weights", WEIGHTS)
    capture.artifact("plot", PNG, format="png")
    capture.log(f"training with lr {params['lr']}")
    capture.log("done")


@metalab.operation
def probe(capture: metalab.Capture) -> None:
    capture.metric("x", 1)


def sweep(store: StoreLike) -> None:
    """The experiments every store of these tests holds: 9 runs (3 failed) and 1 run."""
    exp = metalab.Experiment(
        name="ui",
        version="1",
        context={},
        operation=train,
        params=metalab.grid(lr=[0.01, 0.1, 0.3], width=[8, 16, 32]),
        seeds=metalab.seeds(base=7, replicates=1),
        tags=("dashboard",),
        description="the dashboard's test sweep",
    )
    other = metalab.Experiment(
        name="other", version="2", context={}, operation=probe, params=metalab.manual([{}])
    )
    for experiment in (exp, other):
        # Closing the store keeps a memory store's streamed logs.
        with metalab.run(experiment, store=store, progress=False) as handle:
            handle.result()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collection written once for the tests that only read."""
    path = tmp_path_factory.mktemp("ui") / "experiments"
    sweep(str(path))
    return path


@pytest.fixture
def writable(tmp_path: Path) -> Path:
    """A collection of the test's own, for tests that edit or break it."""
    path = tmp_path / "experiments"
    sweep(str(path))
    return path


def client(app: Any, **kwargs: Any) -> TestClient:
    """A client that talks to the app as a browser on this machine would."""
    return TestClient(app, base_url="http://127.0.0.1:8765", **kwargs)


@pytest.fixture(scope="module")
def api(root: Path) -> Iterator[TestClient]:
    with client(create_app(str(root))) as found:
        yield found


def records(root: Path, experiment_id: str = EXP) -> list[RunRecord]:
    return metalab.load_results(str(root), experiment_id).records


def a_run(root: Path, status: str = "success") -> RunRecord:
    return next(r for r in sorted(records(root), key=lambda r: r.run_id) if r.status == status)


# --- experiments ------------------------------------------------------------------


def test_experiments_have_counts_by_status_last_activity_and_tags(
    api: TestClient, root: Path
) -> None:
    response = api.get("/api/experiments")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    found = {e["experiment_id"]: e for e in response.json()["experiments"]}
    assert sorted(found) == [OTHER, EXP]
    ui = found[EXP]
    assert ui["runs"] == 9
    assert ui["counts"] == {"running": 0, "success": 6, "failed": 3, "cancelled": 0}
    assert ui["tags"] == ["dashboard"]
    assert ui["description"] == "the dashboard's test sweep"
    assert ui["error"] is None
    latest = max(r.finished_at for r in records(root) if r.finished_at is not None)
    assert ui["last_activity"] == latest.isoformat().replace("+00:00", "Z")
    assert found[OTHER]["counts"]["success"] == 1


class RecordsOnly:
    """A store with the ``Store`` methods alone: no summary, no experiment listing."""

    def __init__(self, root: Path) -> None:
        self._store = create_store(str(root))

    def put_run_record(self, record: RunRecord) -> None:
        self._store.put_run_record(record)

    def get_run_record(self, run_id: str) -> RunRecord | None:
        return self._store.get_run_record(run_id)

    def list_run_records(self, experiment_id: str | None = None) -> list[RunRecord]:
        return self._store.list_run_records(experiment_id)

    def run_exists(self, run_id: str) -> bool:
        return self._store.run_exists(run_id)

    def put_artifact(self, run_id: str, name: str, data: Any, **kwargs: Any) -> Any:
        return self._store.put_artifact(run_id, name, data, **kwargs)

    def get_artifact(self, run_id: str, name: str) -> bytes:
        return self._store.get_artifact(run_id, name)

    def list_artifacts(self, run_id: str) -> Any:
        return self._store.list_artifacts(run_id)

    def put_derived(self, run_id: str, metrics: Any) -> None:
        self._store.put_derived(run_id, metrics)

    def get_derived(self, run_id: str) -> Any:
        return self._store.get_derived(run_id)

    def derived_exists(self, run_id: str) -> bool:
        return self._store.derived_exists(run_id)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def test_a_store_that_cannot_summarise_itself_is_counted_from_its_records(
    api: TestClient, root: Path
) -> None:
    plain = RecordsOnly(root)
    assert not isinstance(plain, metalab.store.SupportsRunSummary)
    counted = ("experiment_id", "runs", "counts", "last_activity", "run_tags", "error")
    with client(create_app(plain)) as other:
        found, expected = (
            [{k: e[k] for k in counted} for e in c.get("/api/experiments").json()["experiments"]]
            for c in (other, api)
        )
    assert found == expected
    assert [e["runs"] for e in found] == [1, 9]


def test_an_empty_store_has_no_experiments(tmp_path: Path) -> None:
    with client(create_app(str(tmp_path))) as empty:
        assert empty.get("/api/experiments").json() == {"experiments": []}


def test_a_path_that_holds_no_store_is_refused_at_once(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a store")
    with pytest.raises(StoreNotFoundError):
        create_app(str(tmp_path))
    with pytest.raises(StoreNotFoundError):
        create_app(str(tmp_path / "missing"))


# --- the runs table ---------------------------------------------------------------

VIEWS: Final[list[dict[str, str]]] = [
    {},
    {"sort": "-metrics.acc"},
    {"sort": "params.lr", "limit": "4"},
    {"sort": "params.lr", "limit": "4", "offset": "4"},
    {"sort": "params.lr", "limit": "4", "offset": "8"},
    {"sort": "params.width desc, metrics.acc", "limit": "5"},
    {"where": 'status == "success"', "sort": "metrics.acc"},
    {"where": "params.lr < 0.3 and params.width >= 16", "sort": '-metrics."val acc"'},
    {"where": 'tags contains "dashboard"', "sort": "run_id", "offset": "3"},
    {"where": "metrics.acc > 100"},
]


@pytest.mark.parametrize("params", VIEWS)
def test_pages_filter_and_sort_as_load_results_does(
    api: TestClient, root: Path, params: dict[str, str]
) -> None:
    where = params.get("where")
    limit = int(params["limit"]) if "limit" in params else None
    offset = int(params.get("offset", 0))
    expected = metalab.load_results(
        str(root),
        EXP,
        where=where,
        order_by=params.get("sort", "-started_at"),  # the dashboard's default: newest first
        limit=limit,
        offset=offset,
    )
    everything = metalab.load_results(str(root), EXP, where=where)
    response = api.get(f"/api/experiments/{EXP}/runs", params=params)
    assert response.status_code == 200, response.text
    page = response.json()
    assert [row["run_id"] for row in page["rows"]] == expected.run_ids
    assert page["total"] == len(everything)
    assert page["offset"] == offset
    assert page["limit"] == (limit or 50)
    assert page["where"] == where


def test_pages_walk_every_run_once(api: TestClient, root: Path) -> None:
    seen: list[str] = []
    for offset in range(0, 9, 2):
        page = api.get(
            f"/api/experiments/{EXP}/runs",
            params={"offset": offset, "limit": 2, "sort": "-params.lr"},
        ).json()
        seen += [row["run_id"] for row in page["rows"]]
    assert sorted(seen) == sorted(r.run_id for r in records(root))


def test_default_columns_short_ids_and_error_types(api: TestClient, root: Path) -> None:
    page = api.get(f"/api/experiments/{EXP}/runs").json()
    keys = [c["key"] for c in page["columns"]]
    assert keys == [
        "status",
        "started_at",
        "duration_ms",
        "error",
        "params.lr",
        "params.width",
        "metrics.acc",
        "metrics.loss",
        'metrics."val acc"',
    ]
    assert {c["key"]: c["sortable"] for c in page["columns"]}["error"] is False
    by_id = {r.run_id: r for r in records(root)}
    for row in page["rows"]:
        record = by_id[row["run_id"]]
        assert row["short_id"] == row["run_id"][:8]
        assert row["status"] == record.status
        cells = dict(zip(keys, row["values"], strict=True))
        assert cells["params.lr"] == record.params["lr"]
        assert cells['metrics."val acc"'] == record.metrics.get("val acc")
        if record.status == "failed":
            assert row["error_type"] == cells["error"] == "FloatingPointError"
        else:
            assert row["error_type"] is None
            assert cells["metrics.loss"] == record.metrics["loss"]


def test_chosen_columns_in_query_syntax(api: TestClient, root: Path) -> None:
    columns = 'params.lr, metrics."val acc", tags, notes, error, finished_at'
    page = api.get(
        f"/api/experiments/{EXP}/runs", params={"columns": columns, "sort": "run_id"}
    ).json()
    assert [c["name"] for c in page["columns"]] == [
        "params.lr",
        "metrics.val acc",
        "tags",
        "notes",
        "error",
        "finished_at",
    ]
    first = min(records(root), key=lambda r: r.run_id)
    assert page["rows"][0]["run_id"] == first.run_id
    assert page["rows"][0]["values"][:4] == [
        first.params["lr"],
        first.metrics.get("val acc"),
        list(first.tags),
        first.notes,
    ]


@pytest.mark.parametrize(
    ("params", "param", "column"),
    [
        ({"where": "params.lr <"}, "where", 12),
        ({"where": "params.lr < 0.1 and and"}, "where", 21),
        ({"where": "(status == 'x'"}, "where", None),
        ({"where": "status < 3"}, "where", None),
        ({"sort": "metrics.acc sideways"}, "sort", 13),
        ({"columns": "params.lr, bogus"}, "columns", None),
        ({"columns": "-metrics.acc"}, "columns", None),
    ],
)
def test_a_bad_query_is_400_with_the_column_at_fault(
    api: TestClient, params: dict[str, str], param: str, column: int | None
) -> None:
    response = api.get(f"/api/experiments/{EXP}/runs", params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["param"] == param
    if param == "where" and column is not None:
        with pytest.raises(metalab.errors.QuerySyntaxError) as raised:
            parse_where(params["where"])
        assert raised.value.column == column
    if column is not None:
        assert body["column"] == column
        assert body["type"] == "BadRequest"
        assert f"column {column}" in body["error"]
    assert "\n" not in body["error"]


@pytest.mark.parametrize(
    "params",
    [{"offset": "-1"}, {"limit": "0"}, {"limit": "100000"}, {"offset": "ten"}],
)
def test_a_bad_window_is_400(api: TestClient, params: dict[str, str]) -> None:
    response = api.get(f"/api/experiments/{EXP}/runs", params=params)
    assert response.status_code == 400
    assert response.json()["param"] == next(iter(params))


@pytest.mark.parametrize("endpoint", ["runs", "runs.csv", "fields"])
def test_an_unknown_experiment_is_404_with_a_suggestion(api: TestClient, endpoint: str) -> None:
    response = api.get(f"/api/experiments/ui/{endpoint}")
    assert response.status_code == 404
    assert response.json()["type"] == "ExperimentNotFoundError"
    assert "did you mean 'ui:1'?" in response.json()["error"]


def test_csv_is_the_view(api: TestClient, root: Path) -> None:
    params = {
        "where": 'status == "success"',
        "sort": "-metrics.acc",
        "columns": 'params.lr,params.width,metrics.acc,metrics."val acc",tags,started_at',
    }
    page = api.get(f"/api/experiments/{EXP}/runs", params={**params, "limit": 4}).json()
    response = api.get(f"/api/experiments/{EXP}/runs.csv", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="ui_1-runs.csv"'
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == [
        "run_id",
        "params.lr",
        "params.width",
        "metrics.acc",
        "metrics.val acc",
        "tags",
        "started_at",
    ]
    assert len(rows) == 1 + page["total"] == 7  # every matching run, not one page
    assert [row[0] for row in rows[1:5]] == [row["run_id"] for row in page["rows"]]
    by_id = {r.run_id: r for r in records(root)}
    for row in rows[1:]:
        record = by_id[row[0]]
        assert float(row[1]) == record.params["lr"]
        assert int(row[2]) == record.params["width"]
        assert float(row[3]) == record.metrics["acc"]  # whole, not rounded for the eye
        assert float(row[4]) == record.metrics["val acc"]
        assert json.loads(row[5]) == list(record.tags)
        assert row[6] == record.started_at.isoformat()
    window = api.get(f"/api/experiments/{EXP}/runs.csv", params={**params, "limit": 4})
    assert list(csv.reader(io.StringIO(window.text)))[1:] == rows[1:5]


def test_fields_are_the_store_catalog_with_query_keys(api: TestClient, root: Path) -> None:
    response = api.get(f"/api/experiments/{EXP}/fields")
    assert response.status_code == 200
    body = response.json()
    assert body["experiment_id"] == EXP
    assert {"status", "started_at", "duration_ms", "tags", "error", "notes"} <= set(
        body["record_fields"]
    )
    with FileStoreConfig(root=str(root)).connect() as store:
        catalog = store.fields(EXP)
    assert [f["field"] for f in body["fields"]] == [info.field for info in catalog]
    for got, info in zip(body["fields"], catalog, strict=True):
        assert (got["types"], got["count"], got["min_value"], got["max_value"]) == (
            info.types,
            info.count,
            info.min_value,
            info.max_value,
        )
    keys = {f["field"]: f["key"] for f in body["fields"]}
    assert keys["metrics.val acc"] == 'metrics."val acc"'
    assert keys["params.lr"] == "params.lr"
    acc = next(f for f in body["fields"] if f["field"] == "metrics.acc")
    assert acc["count"] == 6
    assert body["series"] == ["loss"]  # what learning curves can draw: not acc


# --- one run ----------------------------------------------------------------------


def test_a_run_has_everything_the_run_page_shows(api: TestClient, root: Path) -> None:
    record = a_run(root)
    response = api.get(f"/api/runs/{record.run_id}")
    assert response.status_code == 200
    run = response.json()
    assert run["run_id"] == record.run_id
    assert run["short_id"] == record.run_id[:8]
    assert run["experiment_id"] == EXP
    assert run["status"] == "success"
    assert run["params"] == record.params
    assert run["metrics"] == record.metrics
    assert run["derived"] == {}
    assert run["tags"] == ["dashboard"]
    assert run["error"] is None
    assert run["duration_ms"] == record.duration_ms
    assert run["logs"] == ["run"]
    assert run["series"] == {"loss": STEPS}
    assert run["provenance"]["metalab_version"] == metalab.__version__
    artifacts = {a["name"]: a for a in run["artifacts"]}
    assert sorted(artifacts) == ["plot", "summary", "weights"]
    assert artifacts["weights"]["sha256"] == hashlib.sha256(WEIGHTS).hexdigest()
    assert artifacts["weights"]["size_bytes"] == len(WEIGHTS)
    assert (artifacts["weights"]["media_type"], artifacts["weights"]["inline"]) == (
        "application/octet-stream",
        False,
    )
    assert (artifacts["plot"]["media_type"], artifacts["plot"]["inline"]) == ("image/png", True)
    assert (artifacts["summary"]["media_type"], artifacts["summary"]["inline"]) == (
        "application/json",
        True,
    )


def test_a_failed_run_has_its_error_and_traceback(api: TestClient, root: Path) -> None:
    record = a_run(root, "failed")
    run = api.get(f"/api/runs/{record.run_id}").json()
    assert run["status"] == "failed"
    assert run["error"]["type"] == "FloatingPointError"
    assert run["error"]["message"] == "the loss diverged"
    assert 'raise FloatingPointError("the loss diverged")' in run["error"]["traceback"]
    assert run["artifacts"] == []
    assert run["series"] == {}


def test_artifacts_download_with_their_type(api: TestClient, root: Path) -> None:
    record = a_run(root)
    base = f"/api/runs/{record.run_id}/artifacts"
    weights = api.get(f"{base}/weights")
    assert weights.status_code == 200
    assert weights.content == WEIGHTS
    assert weights.headers["content-type"] == "application/octet-stream"
    assert weights.headers["content-disposition"] == "attachment; filename*=UTF-8''weights.bin"
    assert weights.headers["x-metalab-sha256"] == hashlib.sha256(WEIGHTS).hexdigest()
    assert "sandbox" in weights.headers["content-security-policy"]
    plot = api.get(f"{base}/plot")
    assert plot.content == PNG
    assert plot.headers["content-type"] == "image/png"
    assert plot.headers["content-disposition"] == "inline; filename*=UTF-8''plot.png"
    summary = api.get(f"{base}/summary")
    assert summary.headers["content-type"] == "application/json"
    assert summary.json() == {"lr": record.params["lr"], "width": record.params["width"]}
    saved = api.get(f"{base}/summary", params={"download": "1"})
    assert saved.headers["content-disposition"].startswith("attachment;")
    for response in (weights, plot, summary):
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value


def test_a_log_tail(api: TestClient, root: Path) -> None:
    record = a_run(root)
    whole = api.get(f"/api/runs/{record.run_id}/logs/run")
    assert whole.status_code == 200
    body = whole.json()
    assert body["lines"] == 2
    assert body["text"].endswith("done\n")
    assert f"training with lr {record.params['lr']}" in body["text"]
    tail = api.get(f"/api/runs/{record.run_id}/logs/run", params={"tail": 1}).json()
    assert tail["text"].endswith("[INFO    ] done\n")
    assert tail["text"].count("\n") == 1
    assert api.get(f"/api/runs/{record.run_id}/logs/run", params={"tail": 0}).json()["text"] == ""
    assert api.get(f"/api/runs/{record.run_id}/logs/stderr").status_code == 404
    assert api.get(f"/api/runs/{record.run_id}/logs/run", params={"tail": -1}).status_code == 400


def test_series_points(api: TestClient, root: Path) -> None:
    record = a_run(root)
    response = api.get(f"/api/runs/{record.run_id}/series")
    assert response.status_code == 200
    (loss,) = response.json()["series"]
    with FileStoreConfig(root=str(root)).connect() as store:
        stored = store.get_series(record.run_id)["loss"]
    assert loss["name"] == "loss"
    assert loss["points"] == STEPS
    assert loss["downsampled"] is False
    assert loss["steps"] == list(stored.steps)
    assert loss["values"] == list(stored.values)
    few = api.get(
        f"/api/runs/{record.run_id}/series", params={"names": "loss", "max_points": 10}
    ).json()["series"][0]
    assert few["downsampled"] is True
    assert len(few["steps"]) <= 10
    assert few["steps"][0] == 0
    assert few["steps"][-1] == STEPS - 1
    assert api.get(f"/api/runs/{record.run_id}/series", params={"names": "nope"}).status_code == 404


def test_a_long_series_is_downsampled_and_keeps_its_spike(tmp_path: Path) -> None:
    config = FileStoreConfig(root=str(tmp_path), experiment_id=EXP)
    with config.connect() as store:
        store.put_run_record(make_record(EXP, "r1"))
        values = [float(i % 7) for i in range(100_000)]
        values[61_234] = 1e6
        values[80_000] = float("nan")
        store.append_series("r1", [SeriesPoint("x", i, v, None) for i, v in enumerate(values)])
    with client(create_app(str(tmp_path))) as ui:
        (x,) = ui.get("/api/runs/r1/series").json()["series"]
        assert x["points"] == 100_000
        assert x["downsampled"] is True
        assert len(x["steps"]) <= 2000
        assert x["steps"] == sorted(x["steps"])
        assert 61_234 in x["steps"]
        assert max(v for v in x["values"] if v is not None) == 1e6
        assert (x["steps"][0], x["steps"][-1]) == (0, 99_999)
        assert ui.get("/api/runs/r1/series", params={"max_points": 100_000}).status_code == 400


def test_an_unknown_run_is_404_and_an_invalid_id_400(api: TestClient) -> None:
    missing = api.get("/api/runs/" + "0" * 64)
    assert missing.status_code == 404
    assert missing.json()["type"] == "NotFound"
    invalid = api.get("/api/runs/not_a_run!")
    assert invalid.status_code == 400
    assert invalid.json()["type"] == "ConfigError"
    assert "invalid run id" in invalid.json()["error"]


# --- no path from a request reaches the filesystem ---------------------------------

SECRET: Final = "TOP-SECRET-CONTENT"


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/{run}/artifacts/..%2F..%2F..%2Fsecret.txt",
        "/api/runs/{run}/artifacts/..%2F..%2Fetc%2Fpasswd",
        "/api/runs/{run}/artifacts/%2Fetc%2Fpasswd",
        "/api/runs/{run}/artifacts/{secret}",
        "/api/runs/{run}/artifacts/%2E%2E",
        "/api/runs/{run}/artifacts/_manifest",
        "/api/runs/{run}/artifacts/summary%2F..%2F..%2F..%2F..%2Fsecret.txt",
        "/api/runs/{run}/logs/..%2F..%2F..%2Fsecret.txt",
        "/api/runs/{run}/logs/..%2F..%2Fetc%2Fpasswd",
        "/api/runs/{run}/logs/%2Fetc%2Fpasswd",
        "/api/runs/{run}/logs/run%2F..%2F..%2Fsecret",
        "/api/runs/{run}/logs/%2E%2E",
        "/api/runs/..%2F..%2Fsecret.txt/artifacts/summary",
        "/api/runs/..%2F..%2Fetc%2Fpasswd",
        "/api/runs/%2Fetc%2Fpasswd/logs/run",
        "/api/runs/{run}%2F..%2F..%2Fsecret.txt/logs/run",
        "/..%2F..%2Fsecret.txt",
        "/%2Fetc%2Fpasswd",
        "/app.js%2F..%2F..%2Fsecret.txt",
        "/static%2Fapp.js",
    ],
)
def test_traversal_attempts_never_reach_a_file(writable: Path, path: str) -> None:
    secret = writable.parent / "secret.txt"
    secret.write_text(SECRET)
    run = a_run(writable).run_id
    url = path.replace("{run}", run).replace("{secret}", str(secret).replace("/", "%2F"))
    with client(create_app(str(writable))) as ui:
        response = ui.get(url)
    assert response.status_code in (400, 404), response.text
    assert response.headers["content-type"] == "application/json"
    assert SECRET not in response.text
    assert "root:" not in response.text
    assert "error" in response.json()


# --- the front end and the headers --------------------------------------------------


def test_the_front_end_is_served(api: TestClient, root: Path) -> None:
    index = api.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script src="app.js" defer></script>' in index.text
    assert '<link rel="stylesheet" href="app.css">' in index.text
    script = api.get("/app.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "function runsPage" in script.text
    assert "innerHTML" not in script.text  # text from the server is never parsed as HTML
    assert api.get("/app.css").headers["content-type"] == "text/css; charset=utf-8"
    assert api.get("/index.html").status_code == 200
    assert api.get("/favicon.ico").status_code == 404
    assert api.get("/api/nothing/here").status_code == 404
    assert api.get("/api/nothing/here").json()["type"] == "NotFound"
    assert api.get("/api/info").json() == {
        "version": metalab.__version__,
        "store": FileStoreConfig(root=str(root)).to_locator(),
        "write": False,
    }


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/app.js",
        "/api/info",
        "/api/experiments",
        f"/api/experiments/{EXP}/runs",
        f"/api/experiments/{EXP}/runs.csv",
        f"/api/experiments/{EXP}/fields",
        f"/api/experiments/{EXP}/runs?where=oops",
        "/api/runs/nope!",
        "/api/nothing",
    ],
)
def test_every_response_has_the_security_headers(api: TestClient, path: str) -> None:
    response = api.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["cache-control"] == "no-store"


def test_a_method_a_route_does_not_take_is_405_as_json(api: TestClient) -> None:
    response = api.delete(f"/api/experiments/{EXP}/runs")
    assert response.status_code == 405
    assert response.json()["type"] == "MethodNotAllowed"


# --- writing ----------------------------------------------------------------------


def test_edits_are_refused_without_write(writable: Path) -> None:
    record = a_run(writable)
    with client(create_app(str(writable))) as ui:
        assert ui.get("/api/info").json()["write"] is False
        tags = ui.post(f"/api/runs/{record.run_id}/tags", json={"add": ["x"]})
        notes = ui.post(f"/api/runs/{record.run_id}/notes", json={"notes": "hello"})
    for response in (tags, notes):
        assert response.status_code == 403
        assert "--write" in response.json()["error"]
    again = create_store(str(writable)).get_run_record(record.run_id)
    assert again is not None
    assert again.tags == record.tags
    assert again.notes is None


def test_edits_with_write(writable: Path) -> None:
    record = a_run(writable)
    base = f"/api/runs/{record.run_id}"
    with client(create_app(str(writable), write=True)) as ui:
        assert ui.get("/api/info").json()["write"] is True
        added = ui.post(f"{base}/tags", json={"add": ["reviewed", "paper"]})
        assert added.status_code == 200, added.text
        assert added.json() == {"run_id": record.run_id, "tags": ["dashboard", "reviewed", "paper"]}
        removed = ui.post(f"{base}/tags", json={"remove": ["dashboard"]})
        assert removed.json()["tags"] == ["reviewed", "paper"]
        noted = ui.post(f"{base}/notes", json={"notes": "diverged after the lr drop"})
        assert noted.json() == {"run_id": record.run_id, "notes": "diverged after the lr drop"}
        assert ui.get(base).json()["notes"] == "diverged after the lr drop"
        page = ui.get(
            f"/api/experiments/{EXP}/runs", params={"where": 'tags contains "paper"'}
        ).json()
        assert [row["run_id"] for row in page["rows"]] == [record.run_id]
        # Refusals: a body that is not JSON, or not of the shape, an unknown run.
        assert ui.post(f"{base}/tags", content=b"add=x").status_code == 415
        assert ui.post(f"{base}/tags", json={"add": "x"}).status_code == 400
        assert ui.post(f"{base}/tags", json={"added": ["x"]}).status_code == 400
        assert ui.post(f"{base}/tags", json={"add": ["x"], "remove": ["x"]}).status_code == 400
        assert ui.post(f"/api/runs/{'0' * 64}/tags", json={"add": ["x"]}).status_code == 404
        big = ui.post(f"{base}/notes", json={"notes": "x" * 100_000})
        assert big.status_code == 413
        cleared = ui.post(f"{base}/notes", json={"notes": None})
        assert cleared.json()["notes"] is None
        # A page of another site may not post here, even without a token.
        forged = ui.post(
            f"{base}/tags", json={"add": ["forged"]}, headers={"origin": "http://evil.example"}
        )
        assert forged.status_code == 403
        same = ui.post(
            f"{base}/tags", json={"add": ["same-site"]}, headers={"origin": "http://127.0.0.1:8765"}
        )
        assert same.status_code == 200
    stored = create_store(str(writable)).get_run_record(record.run_id)
    assert stored is not None
    assert stored.tags == ("reviewed", "paper", "same-site")
    assert stored.notes is None


# --- the token and the host -------------------------------------------------------


def test_a_token_is_required_and_checked(root: Path) -> None:
    app = create_app(str(root), token=TOKEN)
    with client(app) as ui:
        for path in ("/", "/app.js", "/api/experiments", f"/api/experiments/{EXP}/runs"):
            refused = ui.get(path)
            assert refused.status_code == 401, path
            assert refused.json()["type"] == "Unauthorized"
            assert TOKEN not in refused.text
            assert refused.headers["x-frame-options"] == "DENY"
        assert ui.get("/api/experiments", params={"token": "wrong-" + TOKEN}).status_code == 401
        assert (
            ui.get("/api/experiments", headers={"authorization": "Bearer nope"}).status_code == 401
        )
        bearer = ui.get("/api/experiments", headers={"authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200
        assert "set-cookie" not in bearer.headers
        assert ui.get("/api/experiments").status_code == 401  # a header is no session


def test_the_token_once_in_the_url_sets_a_strict_cookie(root: Path) -> None:
    with client(create_app(str(root), token=TOKEN), follow_redirects=False) as ui:
        first = ui.get("/", params={"token": TOKEN})
        assert first.status_code == 303
        assert first.headers["location"] == "/"  # the token leaves the address bar
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"metalab_ui_token={TOKEN};")
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/" in cookie
        # The client keeps the cookie, as a browser does: the page and the API answer.
        assert ui.get("/").status_code == 200
        assert ui.get("/api/experiments").status_code == 200
        assert ui.get(f"/api/experiments/{EXP}/runs").status_code == 200
        ui.cookies.clear()
        assert ui.get("/api/experiments").status_code == 401
        api_first = ui.get("/api/experiments", params={"token": TOKEN})
        assert api_first.status_code == 200
        assert "metalab_ui_token=" in api_first.headers["set-cookie"]


@pytest.mark.parametrize(
    "token", ["", "short", "has spaces in it, sixteen+", "semi;colon-0123456789"]
)
def test_a_weak_or_unsafe_token_is_refused(root: Path, token: str) -> None:
    with pytest.raises(ConfigError, match="a token must be 16 to 256"):
        create_app(str(root), token=token)


def test_without_a_token_only_loopback_host_names_are_served(root: Path) -> None:
    # A page on another site whose name was made to point at 127.0.0.1 (DNS
    # rebinding) sends its own name as the Host.
    with client(create_app(str(root))) as ui:
        assert ui.get("/api/experiments", headers={"host": "evil.example:8765"}).status_code == 400
        for host in ("localhost:8765", "127.0.0.1", "[::1]:8765", "127.0.0.2:80"):
            assert ui.get("/api/experiments", headers={"host": host}).status_code == 200, host
    with client(create_app(str(root), token=TOKEN)) as ui:
        found = ui.get(
            "/api/experiments",
            headers={"host": "lab-server.example:8765", "authorization": f"Bearer {TOKEN}"},
        )
        assert found.status_code == 200
    with client(create_app(str(root), allowed_hosts=["dash.example"])) as ui:
        assert ui.get("/api/experiments", headers={"host": "dash.example"}).status_code == 200
        assert ui.get("/api/experiments", headers={"host": "127.0.0.1"}).status_code == 400


# --- a store that fails -----------------------------------------------------------


def test_a_corrupt_record_is_a_json_error_and_the_rest_still_works(writable: Path) -> None:
    broken, intact = sorted(records(writable), key=lambda r: r.run_id)[:2]
    (path,) = writable.glob(f"*/runs/{broken.run_id}.json")
    path.write_text('{"run_id": "half a rec')
    with client(create_app(str(writable))) as ui:
        runs = ui.get(f"/api/experiments/{EXP}/runs")
        assert runs.status_code == 500
        assert runs.json()["type"] == "CorruptRecordError"
        assert broken.run_id in runs.json()["error"]
        assert ui.get(f"/api/runs/{broken.run_id}").status_code == 500
        listing = {e["experiment_id"]: e for e in ui.get("/api/experiments").json()["experiments"]}
        assert "corrupt record" in listing[EXP]["error"]
        assert listing[OTHER]["error"] is None
        assert listing[OTHER]["runs"] == 1
        assert ui.get(f"/api/runs/{intact.run_id}").status_code == 200
        assert ui.get(f"/api/experiments/{OTHER}/runs").status_code == 200
        assert ui.get("/").status_code == 200


def test_an_unreachable_index_is_503_and_the_page_still_loads(root: Path) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    config = PostgresStoreConfig(
        connection_string="postgresql://metalab:hunter2@127.0.0.1:1/nothing",
        file_root=str(root),
        connect_timeout=1.0,
        pool_timeout=1.0,
    )
    with client(create_app(config)) as ui:
        for path in ("/api/experiments", f"/api/experiments/{EXP}/runs", f"/api/runs/{'0' * 64}"):
            response = ui.get(path)
            assert response.status_code == 503, response.text
            assert response.json()["type"] == "IndexUnavailableError"
            assert "hunter2" not in response.text
        assert ui.get("/").status_code == 200
        info = ui.get("/api/info").json()
        assert "hunter2" not in info["store"]
        assert info["store"].startswith("postgresql://metalab:***@127.0.0.1:1/nothing")


# --- other stores -----------------------------------------------------------------


def test_a_memory_store() -> None:
    locator = f"memory://ui-{uuid.uuid4().hex}"
    sweep(locator)
    with client(create_app(locator)) as ui:
        found = {e["experiment_id"]: e for e in ui.get("/api/experiments").json()["experiments"]}
        assert found[EXP]["counts"]["failed"] == 3
        page = ui.get(
            f"/api/experiments/{EXP}/runs", params={"sort": "-metrics.acc", "limit": 3}
        ).json()
        expected = metalab.load_results(locator, EXP, order_by="-metrics.acc", limit=3)
        assert [row["run_id"] for row in page["rows"]] == expected.run_ids
        assert page["total"] == 9
        run_id = page["rows"][0]["run_id"]
        run = ui.get(f"/api/runs/{run_id}").json()
        assert run["series"] == {"loss": STEPS}
        assert ui.get(f"/api/runs/{run_id}/artifacts/weights").content == WEIGHTS
        assert ui.get(f"/api/runs/{run_id}/series").json()["series"][0]["points"] == STEPS
        assert ui.get(f"/api/experiments/{EXP}/fields").status_code == 200
        assert run["logs"] == ["run"]
        assert ui.get(f"/api/runs/{run_id}/logs/run").json()["text"].endswith("done\n")


@pytest.mark.postgres
def test_a_postgres_store(postgres_config: PostgresStoreConfig) -> None:
    sweep(postgres_config)
    with client(create_app(postgres_config, write=True)) as ui:
        found = {e["experiment_id"]: e for e in ui.get("/api/experiments").json()["experiments"]}
        assert found[EXP]["counts"] == {"running": 0, "success": 6, "failed": 3, "cancelled": 0}
        assert found[EXP]["tags"] == ["dashboard"]
        params = {
            "where": "params.width >= 16",
            "sort": 'metrics."val acc" desc, params.lr',
            "limit": 3,
            "offset": 1,
        }
        page = ui.get(f"/api/experiments/{EXP}/runs", params=params).json()
        expected = metalab.load_results(
            postgres_config,
            EXP,
            where="params.width >= 16",
            order_by='metrics."val acc" desc, params.lr',
            limit=3,
            offset=1,
        )
        assert [row["run_id"] for row in page["rows"]] == expected.run_ids
        assert page["total"] == 6
        bad = ui.get(f"/api/experiments/{EXP}/runs", params={"where": "params.lr >"})
        assert (bad.status_code, bad.json()["column"]) == (400, 12)
        fields = ui.get(f"/api/experiments/{EXP}/fields").json()["fields"]
        assert {f["field"] for f in fields} >= {"params.lr", "params.width", "metrics.acc"}
        run_id = page["rows"][0]["run_id"]
        run = ui.get(f"/api/runs/{run_id}").json()
        assert run["series"] == {"loss": STEPS}
        assert ui.get(f"/api/runs/{run_id}/artifacts/weights").content == WEIGHTS
        assert ui.get(f"/api/runs/{run_id}/logs/run").json()["lines"] == 2
        assert len(ui.get(f"/api/runs/{run_id}/series").json()["series"][0]["steps"]) == STEPS
        tagged = ui.post(f"/api/runs/{run_id}/tags", json={"add": ["reviewed"]})
        assert tagged.status_code == 200
        hits = ui.get(
            f"/api/experiments/{EXP}/runs", params={"where": 'tags contains "reviewed"'}
        ).json()
        assert [row["run_id"] for row in hits["rows"]] == [run_id]
        csv_rows = list(csv.reader(io.StringIO(ui.get(f"/api/experiments/{EXP}/runs.csv").text)))
        assert len(csv_rows) == 10


# --- the real server --------------------------------------------------------------


def start_server(root: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``serve()`` in a subprocess on a free port; return it and the URL it printed."""
    code = (
        "import sys; from metalab.ui import serve; "
        f"serve(sys.argv[1], port=0{''.join(f', {a}' for a in args)})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"at (http://\S+)", line)
    if found is None:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"serve() printed {line!r}; stderr: {err}")
    return proc, found.group(1)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=30)


def test_serve_answers_over_http(root: Path) -> None:
    proc, url = start_server(root)
    try:
        assert url.startswith("http://127.0.0.1:")
        assert "token" not in url
        with httpx.Client(timeout=30) as http:
            response = http.get(url + "api/experiments")
            assert response.status_code == 200
            assert {e["experiment_id"] for e in response.json()["experiments"]} == {EXP, OTHER}
            assert response.headers["x-content-type-options"] == "nosniff"
            assert http.get(url).headers["content-type"] == "text/html; charset=utf-8"
    finally:
        stop(proc)


def test_serving_every_address_without_a_token_makes_one(root: Path) -> None:
    proc, url = start_server(root, "host='0.0.0.0'")
    try:
        found = re.fullmatch(r"http://[^:/]+:(\d+)/\?token=([A-Za-z0-9_-]{32})", url)
        assert found is not None, url
        port, token = found.groups()
        local = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=30, follow_redirects=True) as http:
            assert http.get(f"{local}/api/experiments").status_code == 401
            ok = http.get(f"{local}/api/experiments", headers={"authorization": f"Bearer {token}"})
            assert ok.status_code == 200
            opened = http.get(f"{local}/?token={token}")
            assert opened.status_code == 200  # after the redirect that set the cookie
            assert http.get(f"{local}/api/experiments").status_code == 200
    finally:
        stop(proc)


# --- the command line -------------------------------------------------------------


def test_the_cli_refuses_what_cannot_be_served(tmp_path: Path, root: Path) -> None:
    nothing = run_cli("ui", str(tmp_path / "missing"), "--port", "0")
    assert nothing.returncode == 1
    assert nothing.stderr.startswith("metalab: error: no metalab store at")
    weak = run_cli("ui", str(root), "--token", "short", "--port", "0")
    assert weak.returncode == 2
    assert "a token must be 16 to 256" in weak.stderr
    port = run_cli("ui", str(root), "--port", "70000")
    assert port.returncode == 2
    assert "expected a port from 0 to 65535" in port.stderr


def test_without_starlette_the_cli_names_the_extra(root: Path) -> None:
    code = (
        "import sys; sys.modules['starlette'] = None; from metalab.cli import main; "
        "sys.exit(main(['ui', sys.argv[1]]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "pip install 'metalab[ui]'" in proc.stderr


def test_importing_metalab_and_its_cli_loads_no_web_framework() -> None:
    code = (
        "import sys, metalab, metalab.ui, metalab.cli; "
        "print(','.join(m for m in ('starlette', 'uvicorn', 'anyio') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""
