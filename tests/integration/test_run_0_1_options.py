"""metalab 0.1's run options and frame: on_event, verbose, Progress, to_dataframe(...), artifacts."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import metalab
from metalab.errors import ConfigError, CorruptRecordError, MetalabWarning
from metalab.events import Event, EventKind


@metalab.operation
def _op(params: dict[str, Any], capture: metalab.Capture) -> None:
    n = params["n"]
    if n == 3:
        raise ValueError("three")
    capture.metric("score", n * 1.5)
    capture.artifact("weights", np.arange(n, dtype=np.float32))
    capture.artifact("config", {"n": n, "name": "caf\u00e9"})
    capture.artifact("raw", b"\x00\x01")
    if n == 1:
        capture.artifact("only_one", np.array([4.0, 2.0]))


def _experiment(ns: list[int], name: str = "opts") -> metalab.Experiment:
    return metalab.Experiment(name=name, version="1", operation=_op, params=metalab.grid(n=ns))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> metalab.Results:
    root = tmp_path_factory.mktemp("opts")
    return metalab.run(_experiment([1, 2, 3]), store=root, progress=False).result()


def _by_n(results: metalab.Results, n: int) -> metalab.Run:
    (run,) = [r for r in results if r.params["n"] == n]
    return run


# -- run.artifact(name) loads what was captured -------------------------------------------


def test_artifacts_load_as_captured_and_bytes_stay_bytes(results: metalab.Results) -> None:
    run = _by_n(results, 2)
    weights = run.artifact("weights")
    assert isinstance(weights, np.ndarray)
    assert weights.dtype == np.float32
    assert weights.tolist() == [0.0, 1.0]
    assert run.artifact("config") == {"n": 2, "name": "caf\u00e9"}
    assert run.artifact("raw") == b"\x00\x01"
    assert run.artifact_bytes("config").decode().startswith("{")
    assert run.artifact_bytes("weights")[:6] == b"\x93NUMPY"


def test_an_artifact_not_of_its_kind_is_a_clear_error(tmp_path: Path) -> None:
    @metalab.operation
    def bad(capture: metalab.Capture) -> None:
        capture.artifact("j", b"{not json", kind="json", format="json")
        capture.artifact("a", b"not an array", kind="numpy", format="npy")
        pickled = io.BytesIO()
        np.save(pickled, np.array([object()], dtype=object), allow_pickle=True)
        capture.artifact("p", pickled.getvalue(), kind="numpy", format="npy")

    exp = metalab.Experiment(name="bad", version="1", operation=bad, params=metalab.grid(x=[1]))
    (run,) = metalab.run(exp, store=tmp_path, progress=False).result()
    assert run.status == "success"
    with pytest.raises(CorruptRecordError, match=r"'j'.*kind json but not JSON"):
        run.artifact("j")
    with pytest.raises(CorruptRecordError, match=r"'a'.*kind numpy"):
        run.artifact("a")
    with pytest.raises(CorruptRecordError, match=r"'p'.*kind numpy"):  # never unpickled
        run.artifact("p")
    assert run.artifact_bytes("j") == b"{not json"  # the bytes are still there


# -- to_dataframe with 0.1's options ------------------------------------------------------


def _ratio(run: metalab.Run) -> dict[str, float]:
    score = run.metrics.get("score")
    return {} if score is None else {"ratio": float(score) / 1.5}


def test_0_1_options_give_0_1_column_names(results: metalab.Results) -> None:
    def total(arr: Any) -> dict[str, float]:
        return {"total": float(arr.sum())}

    def with_run(arr: Any, run: metalab.Run) -> dict[str, object]:
        return {"first": float(arr[0]), "n_again": run.params["n"]}

    frame = results.to_dataframe(
        derived_metrics=[_ratio],
        artifact_reducers={"weights": total, "only_one": with_run},
    )
    assert list(frame.columns)[:6] == [
        "run_id",
        "experiment_id",
        "status",
        "duration_ms",
        "started_at",
        "finished_at",
    ]
    rows = frame.set_index("param_n")
    assert rows.loc[2, "score"] == 3.0
    assert rows.loc[2, "total"] == 1.0
    assert rows.loc[2, "ratio"] == 2.0
    assert rows.loc[1, "first"] == 4.0
    assert rows.loc[1, "n_again"] == 1
    assert frame["first"].isna().sum() == 2  # no such artifact: left missing, no warning
    assert rows.loc[3, "status"] == "failed"
    assert str(rows.loc[1, "started_at"]).endswith("+00:00")


def test_include_flags_pick_the_groups(results: metalab.Results) -> None:
    results.compute_derived(lambda run: {"twice": 2 * int(str(run.params["n"]))})
    frame = results.to_dataframe(include_record=False, include_metrics=False, include_derived=True)
    assert sorted(frame.columns) == ["derived_twice", "param_n"]
    only = results.to_dataframe(include_params=False, include_record=False)
    assert list(only.columns) == ["score"]


def test_derived_metrics_by_module_and_function_name(results: metalab.Results) -> None:
    frame = results.to_dataframe(derived_metrics=[f"{__name__}:_ratio"])
    assert sorted(frame["ratio"].dropna()) == [1.0, 2.0]
    with pytest.raises(ConfigError, match="cannot be imported"):
        results.to_dataframe(derived_metrics=["no_such_module_xyz:fn"])


def test_a_failing_reducer_warns_naming_it_and_the_run(results: metalab.Results) -> None:
    def broken(arr: Any) -> dict[str, float]:
        raise RuntimeError(f"nope ({len(arr)} values)")

    with pytest.warns(
        MetalabWarning, match=r"broken.*'weights'.*failed on run .*RuntimeError: nope \(\d values\)"
    ):
        frame = results.to_dataframe(artifact_reducers={"weights": broken})
    assert len(frame) == 3


def test_columns_and_0_1_options_together_are_refused(results: metalab.Results) -> None:
    with pytest.raises(ConfigError, match="one or the other"):
        results.to_dataframe(["run_id"], include_derived=True)
    assert "params.n" in results.to_dataframe().columns  # metalab's frame without them


# -- on_event -----------------------------------------------------------------------------


def _sweep_events(root: Path, ns: list[int], **options: Any) -> list[Event]:
    events: list[Event] = []
    handle = metalab.run(
        _experiment(ns), store=root, progress=False, on_event=events.append, **options
    )
    handle.result()
    return events


def test_each_run_is_started_then_finished_or_failed_then_progress(tmp_path: Path) -> None:
    events = _sweep_events(tmp_path, [1, 2, 3])
    per_run: dict[str, list[EventKind]] = {}
    for event in events:
        assert event.timestamp.tzinfo is not None
        if event.run_id is not None:
            per_run.setdefault(event.run_id, []).append(event.kind)
    assert len(per_run) == 3
    assert sorted(kinds[-1] for kinds in per_run.values()) == [
        "run_failed",
        "run_finished",
        "run_finished",
    ]
    assert all(kinds[0] == EventKind.RUN_STARTED and len(kinds) == 2 for kinds in per_run.values())
    (failed,) = [e for e in events if e.kind == EventKind.RUN_FAILED]
    assert failed.payload["error"] == "ValueError: three"
    assert failed.payload["error_type"] == "ValueError"
    started = [e for e in events if e.kind == EventKind.RUN_STARTED]
    assert sorted(e.payload["params"]["n"] for e in started) == [1, 2, 3]  # type: ignore[index]
    last = events[-1]
    assert last.kind == EventKind.PROGRESS
    assert last.run_id is None
    assert (last.payload["current"], last.payload["total"], last.payload["failed"]) == (3, 3, 1)


def test_a_resumed_sweep_reports_skipped_runs(tmp_path: Path) -> None:
    _sweep_events(tmp_path, [1, 2, 3])
    events = _sweep_events(tmp_path, [1, 2, 3])
    kinds = [e.kind for e in events]
    assert kinds.count(EventKind.RUN_SKIPPED) == 2
    assert kinds.count(EventKind.RUN_STARTED) == 1  # only the failed run runs again
    assert kinds.index(EventKind.RUN_SKIPPED) < kinds.index(EventKind.RUN_STARTED)


def test_a_raising_callback_warns_once_and_the_sweep_goes_on(tmp_path: Path) -> None:
    calls = 0

    def angry(event: Event) -> None:
        nonlocal calls
        calls += event.kind is not None
        raise RuntimeError("boom")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = metalab.run(
            _experiment([1, 2, 4]), store=tmp_path, progress=False, on_event=angry
        ).result()
    assert [r.status for r in results] == ["success"] * 3
    mine = [w for w in caught if "on_event callback" in str(w.message)]
    assert len(mine) == 1
    assert "RuntimeError: boom" in str(mine[0].message)
    assert calls > 3  # still called after the first error


def test_cancelled_runs_are_reported(tmp_path: Path) -> None:
    gate = threading.Event()

    @metalab.operation
    def slow() -> None:
        gate.wait(10)

    events: list[Event] = []
    exp = metalab.Experiment(
        name="slow", version="1", operation=slow, params=metalab.grid(i=range(6))
    )
    handle = metalab.run(exp, store=tmp_path, progress=False, on_event=events.append)
    handle.cancel()
    gate.set()
    handle.wait(30)
    cancelled = {e.run_id for e in events if e.kind == EventKind.RUN_CANCELLED}
    assert len(cancelled) == handle.counts.cancelled > 0
    statuses = {r.run_id: r.status for r in handle.store.list_run_records()}
    assert all(statuses[run_id] == "cancelled" for run_id in cancelled if run_id is not None)


def test_on_event_must_be_callable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="on_event must be a callable"):
        metalab.run(_experiment([1]), store=tmp_path, on_event="print")  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())  # refused before anything was written


# -- verbose= and Progress(...) -----------------------------------------------------------


_SCRIPT = textwrap.dedent(
    """
    import sys
    import metalab

    @metalab.operation
    def op(params, capture):
        if params["n"] == 3:
            raise ValueError("three")
        capture.metric("score", params["n"])

    exp = metalab.Experiment(name="v", version="1", operation=op, params=metalab.grid(n=[1, 2, 3]))
    metalab.run(exp, store=sys.argv[1], progress=False, verbose=sys.argv[2] == "1").result()
    """
)


@pytest.mark.parametrize("verbose", [True, False])
def test_verbose_logs_the_plan_and_the_outcome_to_stderr(tmp_path: Path, verbose: bool) -> None:
    script = tmp_path / "sweep.py"
    script.write_text(_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store"), "1" if verbose else "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    if verbose:
        assert "v:1: 3 runs, 3 to run (0 already succeeded)" in done.stderr
        assert "executor thread" in done.stderr
        assert "v:1: 2 succeeded, 1 failed, 0 cancelled, 0 skipped of 3 runs" in done.stderr
    else:
        assert done.stderr == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_object_sets_title_style_and_shown_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    progress = metalab.Progress(title="Scores", style="simple", display_metrics=["score:.2f"])
    metalab.run(_experiment([2]), store=tmp_path, progress=progress).result()
    drawn = terminal.getvalue()
    assert "Scores" in drawn
    assert "score=3.00" in drawn


def test_metric_displays_parse_and_render() -> None:
    shown = metalab.MetricDisplay.parse("loss:>8.3f")
    assert shown.render({"loss": 0.5}) == "loss=   0.500"
    assert shown.render({"other": 1}) is None
    labelled = metalab.MetricDisplay("ok", label="done", formatter=lambda v: "yes" if v else "no")
    assert labelled.render({"ok": True}) == "done=yes"
    assert metalab.MetricDisplay.parse("name:.2f").render({"name": "text"}) == "name=text"
    with pytest.raises(ConfigError, match="has no name"):
        metalab.MetricDisplay.parse(":.2f")
    with pytest.raises(ConfigError, match="use 'auto', 'rich' or 'simple'"):
        metalab.Progress(style="fancy")  # type: ignore[arg-type]
