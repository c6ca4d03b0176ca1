"""``metalab ui`` over a store with an index: pages read the page and a bounded sample.

On a PostgresStore the runs page asks the index for its window and at most
``SAMPLE + 1`` other matching runs; when more match, its ``total`` is a lower bound
(``total_exact`` false) and ``/runs/count`` gives the exact count. These tests make
``SAMPLE`` small so a handful of runs is "more than the sample".
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

import metalab
from metalab.store import FileStoreConfig, PostgresStoreConfig, StoreLike, create_store
from metalab.testing.store import make_record
from metalab.ui import _api, create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from starlette.testclient import TestClient

EXP: Final = "fast:1"
RUNS: Final = 12


def fill(store: StoreLike) -> None:
    """12 runs: ``i`` from 0 to 11, ``opt`` alternating, the metric ``acc`` = i / 10."""
    with create_store(store) as opened:
        for i in range(RUNS):
            opened.put_run_record(
                make_record(
                    EXP,
                    status="failed" if i == 5 else "success",
                    params={"i": i, "opt": "adam" if i % 2 else "sgd"},
                    metrics={"acc": i / 10},
                )
            )


def client(store: StoreLike) -> TestClient:
    return TestClient(create_app(store), base_url="http://127.0.0.1:8765")


def page(ui: TestClient, **params: Any) -> dict[str, Any]:
    response = ui.get(f"/api/experiments/{EXP}/runs", params=params)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def count(ui: TestClient, **params: Any) -> int:
    response = ui.get(f"/api/experiments/{EXP}/runs/count", params=params)
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


@pytest.fixture
def files(tmp_path: Path) -> Iterator[TestClient]:
    config = FileStoreConfig(root=str(tmp_path / "files"))
    fill(config)
    with client(config) as ui:
        yield ui


@pytest.mark.postgres
@pytest.mark.parametrize("sample", [3, _api.SAMPLE])
def test_a_page_on_an_index_reads_a_bounded_sample(
    postgres_config: PostgresStoreConfig, monkeypatch: pytest.MonkeyPatch, sample: int
) -> None:
    monkeypatch.setattr(_api, "SAMPLE", sample)
    fill(postgres_config)
    views: list[dict[str, Any]] = [
        {"sort": "-metrics.acc", "limit": 4},
        {"sort": "-metrics.acc", "limit": 4, "offset": 8},
        {"where": "params.opt == 'adam'", "sort": "metrics.acc", "limit": 2, "offset": 1},
        {"where": "params.i >= 10", "sort": "params.i", "limit": 5},
    ]
    with client(postgres_config) as ui:
        for view in views:
            where = view.get("where")
            expected = metalab.load_results(
                postgres_config,
                EXP,
                where=where,
                order_by=view["sort"],
                limit=view["limit"],
                offset=view.get("offset", 0),
            )
            matches = len(metalab.load_results(postgres_config, EXP, where=where).records)
            found = page(ui, **view)
            assert [row["run_id"] for row in found["rows"]] == expected.run_ids
            if matches <= sample:
                assert found["total_exact"] is True
                assert found["total"] == matches
            else:
                assert found["total_exact"] is False
                assert sample < found["total"] <= matches
            assert count(ui, **({} if where is None else {"where": where})) == matches
            rows = found["rows"]
            assert all(row["run_id"].startswith(row["short_id"]) for row in rows)
            keys = [c["key"] for c in found["columns"]]
            assert keys[:3] == ["status", "started_at", "duration_ms"]
            assert "metrics.acc" in keys


def test_a_file_store_answers_exact_totals(files: TestClient) -> None:
    found = page(files, where="params.opt == 'sgd'", sort="-metrics.acc", limit=2)
    assert (found["total"], found["total_exact"]) == (6, True)
    assert count(files) == RUNS
    assert count(files, where="params.opt == 'sgd'") == 6
    assert count(files, where="metrics.acc > 100") == 0


def test_the_count_refuses_what_the_page_refuses(files: TestClient) -> None:
    bad = files.get(f"/api/experiments/{EXP}/runs/count", params={"where": "params.i >"})
    assert bad.status_code == 400
    assert (bad.json()["param"], bad.json()["column"]) == ("where", 11)
    missing = files.get("/api/experiments/nope:1/runs/count")
    assert missing.status_code == 404
