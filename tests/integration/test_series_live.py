"""Series while runs go: readers in other processes, kills, every store, the CLI, 0.1 stores."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import metalab
from metalab.store import FileStoreConfig, PostgresStoreConfig, export_store
from metalab.testing import run_cli

COMPAT = Path(__file__).resolve().parents[1] / "compat" / "data" / "metalab-0.1-curves"

_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import metalab

    root, marker, total = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])

    @metalab.operation
    def train(params, capture):
        for step in range(total):
            capture.metric("loss", 1.0 / (step + 1), step=step)
            if step == 20:
                marker.touch()
            time.sleep(0.01)

    exp = metalab.Experiment(
        name="live", version="1", operation=train, params=metalab.grid(lr=[0.1])
    )
    metalab.run(exp, store=root, progress=False).result()
    """
)


def _start_writer(tmp_path: Path, total: int) -> tuple[subprocess.Popen[bytes], Path, Path]:
    script, root, marker = tmp_path / "writer.py", tmp_path / "store", tmp_path / "started"
    script.write_text(_WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root), str(marker), str(total)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (marker.exists() and _flushed(root)):
        assert proc.poll() is None, f"the writer ended with {proc.returncode}"
        assert time.monotonic() < deadline, "the run never flushed a point"
        time.sleep(0.01)
    return proc, root, marker


def _flushed(root: Path) -> bool:
    return any(p.stat().st_size > 60 for p in root.glob("*/series/*.jsonl"))


def _only_run(root: Path) -> metalab.Run:
    results = metalab.load_results(root, "live:1")
    (run,) = list(results)
    return run


def test_a_reader_in_another_process_watches_a_running_run(tmp_path: Path) -> None:
    proc, root, _ = _start_writer(tmp_path, total=300)
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            run = _only_run(root)
            points = len(run.series("loss")) if "loss" in run.series() else 0
            seen.append(points)
            if run.status != "running":
                break
            time.sleep(0.2)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    # While the run went (about 3 s), the reader saw the series grow, flush by flush.
    growing = [n for n in seen if 0 < n < 300]
    assert len(set(growing)) >= 3, seen
    assert seen == sorted(seen)
    final = _only_run(root)
    assert final.status == "success"
    assert len(final.series("loss")) == 300
    assert final.metrics["loss"] == 1.0 / 300


def test_a_killed_run_keeps_what_it_flushed_and_verify_names_a_torn_tail(
    tmp_path: Path,
) -> None:
    proc, root, _ = _start_writer(tmp_path, total=100_000)
    time.sleep(1.2)  # at least one flush after the marker
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run = _only_run(root)
    assert run.status == "running"  # the record of a killed run, as always
    kept = run.series("loss")
    assert len(kept) > 20
    assert kept.steps == tuple(range(len(kept)))  # whole points, none lost in between
    # A flush cut short leaves a torn line; readers leave it out, verify names it.
    (path,) = (root / "live_1" / "series").glob("*.jsonl")
    with path.open("ab") as stream:
        stream.write(b'["loss",999999,0.')
    assert len(_only_run(root).series("loss")) == len(kept)
    verify = run_cli("store", "verify", str(root), "--json")
    assert verify.returncode == 1
    problems = json.loads(verify.stdout)["problems"]
    assert len(problems) == 1
    assert "ends in a torn line of 17 byte(s)" in problems[0]
    assert json.loads(verify.stdout)["checked"]["series points"] == len(kept)


def test_runs_show_summarises_and_follows_a_running_run(tmp_path: Path) -> None:
    proc, root, _ = _start_writer(tmp_path, total=150)
    try:
        run_id = _only_run(root).run_id
        follow = run_cli("runs", "show", str(root), run_id[:10], "--follow", timeout=120)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert follow.returncode == 0, follow.stderr
    text = follow.stdout
    assert "status      running" in text
    assert "\nseries\n  loss  " in text
    assert "following (Ctrl-C stops)" in text
    assert f"run {run_id} success" in text
    followed = [line for line in text.splitlines() if line.startswith("  step ")]
    summary = next(line for line in text.splitlines() if line.startswith("  loss  "))
    shown_before = int(summary.split()[1])
    # Every point appears once: in the summary's count, or followed as it came.
    assert shown_before + len(followed) == 150
    assert followed[-1] == "  step 149  loss 0.00666667"
    final = run_cli("runs", "show", str(root), run_id[:10], "--json")
    summary_json = json.loads(final.stdout)["series"]["loss"]
    assert summary_json["points"] == 150
    assert summary_json["min"] == {"step": 149, "value": 1.0 / 150}
    assert summary_json["max"] == {"step": 0, "value": 1.0}


@metalab.operation
def _curves(params: dict[str, Any], capture: metalab.Capture) -> None:
    for step in range(5):
        capture.metric("loss", params["lr"] * (5 - step), step=step)
    capture.metric("final", 1)
    capture.tag("curves")
    capture.note(f"lr {params['lr']}")


_EXP = metalab.Experiment(
    name="curves", version="1", operation=_curves, params=metalab.grid(lr=[0.1, 0.2])
)


def test_series_dataframe_is_long_with_the_params(tmp_path: Path) -> None:
    results = metalab.run(_EXP, store=tmp_path, progress=False).result()
    frame = results.series_dataframe()
    assert list(frame.columns) == ["run_id", "metric", "step", "value", "timestamp", "params.lr"]
    assert len(frame) == 10
    assert frame.groupby("params.lr")["value"].first().to_dict() == {0.1: 0.5, 0.2: 1.0}
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert results.series_dataframe(["nope"]).empty
    run = results[0]
    assert run.tags == ("curves",)
    assert run.notes == "lr 0.1"
    with pytest.raises(KeyError, match="has no series 'acc' \\(it has: loss\\)"):
        run.series("acc")


@metalab.operation
def _curves_of_many_params(params: dict[str, Any], capture: metalab.Capture) -> None:
    for step in range(3):
        capture.metric("loss", params["lr"] * params["momentum"] * step, step=step)


def test_series_dataframe_gives_each_point_its_own_runs_params(tmp_path: Path) -> None:
    # Ints and strings before the floats: each float column must come from its own key.
    grid = metalab.grid(depth=[1, 2], lr=[0.1, 0.2], kind=["a"], momentum=[0.5, 0.9], warm=[True])
    exp = metalab.Experiment(
        name="many", version="1", operation=_curves_of_many_params, params=grid
    )
    results = metalab.run(exp, store=tmp_path, progress=False).result()
    frame = results.series_dataframe()
    assert len(frame) == 8 * 3
    by_run = {run.run_id: run.params for run in results}
    for row in frame.to_dict("records"):
        params = by_run[str(row["run_id"])]
        assert {k: v for k, v in row.items() if str(k).startswith("params.")} == {
            f"params.{k}": v for k, v in params.items()
        }
        lr, momentum = float(str(params["lr"])), float(str(params["momentum"]))
        assert row["value"] == pytest.approx(lr * momentum * int(str(row["step"])))


def test_export_copies_series_and_a_second_export_skips_them(tmp_path: Path) -> None:
    metalab.run(_EXP, store=tmp_path / "a", progress=False).result()
    first = export_store(str(tmp_path / "a"), str(tmp_path / "b"))
    assert first.counts["series"].copied == 2
    again = export_store(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (again.counts["series"].copied, again.counts["series"].skipped) == (0, 2)
    copied = metalab.load_results(tmp_path / "b", "curves:1")
    original = metalab.load_results(tmp_path / "a", "curves:1")
    for run in original:
        twin = copied.get(run.run_id)
        assert twin is not None
        assert twin.series("loss") == run.series("loss")


def test_a_postgres_store_keeps_series_in_its_files(
    postgres_config: PostgresStoreConfig,
) -> None:
    results = metalab.run(_EXP, store=postgres_config, progress=False).result()
    assert len(results[0].series("loss")) == 5
    files = FileStoreConfig(root=postgres_config.file_root).connect()
    assert files.get_series(results[0].run_id) == results[0].series()


def test_metalab_0_1_stepped_metrics_are_read_as_series_without_changing_the_store(
    tmp_path: Path,
) -> None:
    root = tmp_path / "curves"
    shutil.copytree(COMPAT, root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    results = metalab.load_results(root, "curves:0.1")
    assert len(results) == 2
    for run in results:
        found = run.series()
        assert sorted(found) == ["acc", "loss"]
        assert found["loss"].steps == tuple(range(0, 50, 5))
        assert found["loss"].timestamps == (None,) * 10
        assert set(run.metrics) == {"final_loss"}  # 0.1 kept stepped metrics out
    frame = results.series_dataframe("loss")
    assert len(frame) == 20
    assert frame["timestamp"].isna().all()
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert not (root / "curves_0.1" / "series").exists()
