"""Names a metalab 0.1 user's script reaches for: Results helpers, Run fields, params."""

from __future__ import annotations

import csv
import io
import math
import random as stdlib_random
import sys
import types
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

import metalab
from metalab.errors import ConfigError
from metalab.params import LogUniformInt
from metalab.results import _results as results_module


@metalab.operation
def _op(params: dict[str, Any], capture: metalab.Capture) -> None:
    if params["n"] == 3:
        raise ValueError("three")
    capture.metric("score", params["n"] * 1.5)
    capture.data("curve", [1, 2])


_EXP = metalab.Experiment(
    name="names",
    version="0.1",
    operation=_op,
    params=metalab.grid(n=[1, 2, 3]),
    tags=("legacy",),
)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> metalab.Results:
    root = tmp_path_factory.mktemp("names")
    return metalab.run(_EXP, store=root, progress=False).result()


def test_table_rows_have_the_0_1_columns_and_the_params(results: metalab.Results) -> None:
    rows = results.table()
    assert len(rows) == 3
    first = rows[0]
    assert list(first)[:9] == [
        "run_id",
        "experiment_id",
        "status",
        "duration_ms",
        "started_at",
        "finished_at",
        "context_fingerprint",
        "params_fingerprint",
        "seed_fingerprint",
    ]
    by_n = {row["param_n"]: row for row in rows}
    assert by_n[1]["score"] == 1.5
    assert by_n[1]["tags"] == "legacy"
    assert by_n[3]["status"] == "failed"
    assert "score" not in by_n[3]
    assert str(by_n[1]["started_at"]).endswith("+00:00")
    frame = results.table(as_dataframe=True)
    assert len(frame) == 3
    assert frame.set_index("param_n")["score"].to_dict()[2] == 3.0


def test_summary_counts_by_status_and_spreads_durations(results: metalab.Results) -> None:
    summary = results.summary()
    assert summary["total_runs"] == 3
    assert summary["by_status"] == {"success": 2, "failed": 1}
    low, mean, high = (
        summary[k] for k in ("min_duration_ms", "avg_duration_ms", "max_duration_ms")
    )
    assert isinstance(mean, float)
    assert low <= mean <= high  # type: ignore[operator]


def test_display_prints_a_summary_and_groups_on_a_terminal(results: metalab.Results) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        results.display(group_by=["n"])
    text = out.getvalue()
    assert text.startswith("<Results: 3 runs: 1 failed, 2 success>\n")
    assert "n  success  failed  total" in text
    assert "\n3  0        1       1\n" in text


def test_to_csv_writes_the_table_without_fingerprints(
    results: metalab.Results, tmp_path: Path
) -> None:
    path = results.to_csv(tmp_path / "out" / "runs.csv")
    assert path == tmp_path / "out" / "runs.csv"
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 3
    assert not any(c.endswith("_fingerprint") for c in rows[0])
    named = results.to_csv(tmp_path / "dir", include_fingerprints=True)
    assert named.parent == tmp_path / "dir"
    assert named.name.startswith("results_")
    assert "seed_fingerprint" in named.read_text().splitlines()[0]


def test_from_store_and_runs(results: metalab.Results) -> None:
    again = metalab.Results.from_store(results.store, "names:0.1")
    assert again.run_ids == results.run_ids
    runs = results.runs
    assert [r.run_id for r in runs] == results.run_ids


def test_a_run_has_its_fingerprints_manifest_and_data_names(results: metalab.Results) -> None:
    run = next(r for r in results if r.status == "success")
    assert run.context_fingerprint == run.record.context_fingerprint != ""
    assert run.params_fingerprint == run.record.params_fingerprint
    assert run.seed_fingerprint == run.record.seed_fingerprint
    manifest = run.experiment
    assert manifest is not None
    assert manifest.experiment_id == "names:0.1"
    assert manifest.total_runs == 3
    assert run.list_data() == ["curve"]


def test_loguniform_int_draws_rounded_log_uniform_ints_in_bounds() -> None:
    dist = metalab.loguniform_int(10, 10_000)
    rng = stdlib_random.Random(3)
    draws = [dist.sample(rng) for _ in range(2_000)]
    assert all(10 <= d <= 10_000 and type(d) is int for d in draws)
    # About as many draws in each decade.
    decades = [sum(10**k <= d < 10 ** (k + 1) for d in draws) for k in (1, 2, 3)]
    assert all(500 < n < 830 for n in decades), decades
    # The formula of metalab 0.1: round(exp(uniform(log low, log high))).
    replay = stdlib_random.Random(3)
    assert draws[0] == round(math.exp(replay.uniform(math.log(10), math.log(10_000))))
    assert dist.to_manifest() == {"type": "LogUniformInt", "low": 10, "high": 10_000}
    assert isinstance(dist, LogUniformInt)


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [(0, 10, "must be positive"), (5, 2, "needs low <= high"), (1.5, 3, "must be ints")],
)
def test_loguniform_int_refuses_bad_bounds(low: Any, high: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        metalab.loguniform_int(low, high)


def test_a_random_sweep_with_loguniform_int_runs(tmp_path: Path) -> None:
    exp = metalab.Experiment(
        name="li",
        version="1",
        operation=metalab.operation(lambda params, capture: capture.metric("n", params["n"])),
        params=metalab.random(space={"n": metalab.loguniform_int(1, 1000)}, n_trials=5, seed=1),
    )
    results = metalab.run(exp, store=tmp_path, progress=False).result()
    assert [r.metrics["n"] for r in results] == [r.params["n"] for r in results]


def test_0_1_top_level_names_are_there() -> None:
    from metalab import records, store  # noqa: PLC0415

    for name in ("RunRecord", "Provenance", "ArtifactDescriptor"):
        assert getattr(metalab, name) is getattr(records, name)
    assert metalab.Status is records.RunState
    for name in ("FileStore", "FileStoreConfig", "Store", "StoreConfig", "PostgresStoreConfig"):
        assert getattr(metalab, name) is getattr(store, name)
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        metalab.Nope  # type: ignore[attr-defined] # noqa: B018


def test_display_in_a_notebook_shows_the_html_table(
    results: metalab.Results, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[object] = []
    module = types.ModuleType("IPython.display")

    class HTML:
        def __init__(self, data: str) -> None:
            self.data = data

    module.HTML = HTML  # type: ignore[attr-defined]
    module.display = shown.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython.display", module)
    monkeypatch.setattr(results_module, "in_notebook", lambda: True)
    out = io.StringIO()
    with redirect_stdout(out):
        results.display()
    assert out.getvalue() == ""
    (html,) = shown
    assert isinstance(html, HTML)
    assert html.data == results._repr_html_()


def test_run_reports_progress_to_a_callable(tmp_path: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    exp = metalab.Experiment(
        name="cb",
        version="1",
        operation=metalab.operation(lambda: None),
        params=metalab.grid(i=[1, 2, 3]),
    )
    metalab.run(
        exp, store=tmp_path, progress=lambda done, total: calls.append((done, total))
    ).result()
    assert calls[-1] == (3, 3)
    assert all(total == 3 for _, total in calls)


def test_run_takes_file_root_for_a_postgres_locator(
    postgres_config: metalab.PostgresStoreConfig, tmp_path: Path
) -> None:
    exp = metalab.Experiment(
        name="fr",
        version="1",
        operation=metalab.operation(lambda: None),
        params=metalab.grid(i=[1]),
    )
    joiner = "&" if "?" in postgres_config.connection_string else "?"
    locator = f"{postgres_config.connection_string}{joiner}schema={postgres_config.schema}"
    results = metalab.run(exp, store=locator, file_root=tmp_path / "files", progress=False).result()
    assert len(results) == 1
    assert (tmp_path / "files" / "fr_1" / "runs").is_dir()
    with pytest.raises(ConfigError, match="file_root"):
        metalab.run(exp, store=tmp_path / "plain", file_root=tmp_path / "x")


def _doubled(run: metalab.Run) -> dict[str, float]:
    return {"doubled": 2 * float(run.metrics["n"])}


def test_derived_metrics_are_computed_after_each_successful_run(tmp_path: Path) -> None:
    @metalab.operation
    def op(params: dict[str, Any], capture: metalab.Capture) -> None:
        if params["n"] == 3:
            raise ValueError("no")
        capture.metric("n", params["n"])

    def broken(_run: metalab.Run) -> dict[str, float]:
        raise KeyError("missing")

    exp = metalab.Experiment(name="dm", version="1", operation=op, params=metalab.grid(n=[1, 2, 3]))
    ref = f"{__name__}:_doubled"
    with pytest.warns(
        metalab.errors.MetalabWarning, match="derived metric .*broken.* failed on run"
    ):
        results = metalab.run(
            exp, store=tmp_path, progress=False, derived_metrics=[ref, broken]
        ).result()
    derived = {r.params["n"]: r.derived for r in results}
    assert derived == {1: {"doubled": 2.0}, 2: {"doubled": 4.0}, 3: {}}


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nomodule_xyz:fn", "cannot be imported"),
        ("os:nothing_here", "cannot be imported"),
        ("plain", "is not a function or 'module:function'"),
        ("os:sep", "is not callable"),
    ],
)
def test_a_bad_derived_metric_reference_is_refused_before_the_sweep(
    tmp_path: Path, ref: str, message: str
) -> None:
    exp = metalab.Experiment(
        name="dm",
        version="1",
        operation=metalab.operation(lambda: None),
        params=metalab.grid(n=[1]),
    )
    with pytest.raises(ConfigError, match=message):
        metalab.run(exp, store=tmp_path / "s", derived_metrics=[ref])
    assert not (tmp_path / "s").exists()


def test_status_has_0_1_enum_members_equal_to_the_record_strings(
    results: metalab.Results,
) -> None:
    from metalab import Status  # noqa: PLC0415 -- the way a 0.1 script imports it

    assert [s.value for s in Status] == ["running", "success", "failed", "cancelled"]
    failed = [r for r in results if r.status == Status.FAILED]  # type: ignore[comparison-overlap]
    assert [r.params["n"] for r in failed] == [3]
    assert [r.run_id for r in results.filter(status=Status.SUCCESS)] == [
        r.run_id for r in results.successful
    ]
    assert f"{Status.SUCCESS}" == "success"
