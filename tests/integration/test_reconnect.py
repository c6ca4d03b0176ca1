"""metalab.reconnect: follow a sweep another process runs, through its store."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import metalab
from metalab.errors import ConfigError, ExperimentNotFoundError, MetalabError

_SWEEP = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import metalab

    root, release = sys.argv[1], Path(sys.argv[2])

    @metalab.operation
    def op(params, capture):
        if params["i"] >= 2:
            while not release.exists():
                time.sleep(0.01)
        if params["i"] == 3:
            raise ValueError("three")
        capture.metric("i", params["i"])

    exp = metalab.Experiment(
        name="remote", version="1", operation=op, params=metalab.grid(i=[0, 1, 2, 3])
    )
    metalab.run(exp, store=root, progress=False).result()
    """
)


def test_a_sweep_in_another_process_is_followed_to_its_end(tmp_path: Path) -> None:
    script, root, release = tmp_path / "sweep.py", tmp_path / "store", tmp_path / "go"
    script.write_text(_SWEEP)
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(release)])
    try:
        deadline = time.monotonic() + 60
        while not list(root.glob("*/experiments/*.json")):
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with metalab.reconnect(root) as handle:  # the only experiment: no id needed
            assert handle.experiment_id == "remote:1"
            assert len(handle.run_ids) == 4
            while handle.counts.done < 2:
                time.sleep(0.02)
            assert not handle.is_finished
            assert handle.wait(timeout=0.1) is False
            with pytest.raises(TimeoutError, match="still running"):
                handle.result(timeout=0.1)
            with pytest.raises(MetalabError, match="cannot cancel 'remote:1' from here"):
                handle.cancel()
            release.touch()
            results = handle.result(timeout=60)
            assert [r.status for r in results] == ["success", "success", "success", "failed"]
            assert handle.counts == metalab.RunCounts(total=4, done=3, failed=1)
            assert "4/4 finished" in repr(handle)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def _sweep(root: Path, name: str) -> None:
    exp = metalab.Experiment(
        name=name,
        version="1",
        operation=metalab.operation(lambda: None),
        params=metalab.grid(i=[1]),
    )
    metalab.run(exp, store=root, progress=False).result()


def test_which_experiment_to_follow(tmp_path: Path) -> None:
    _sweep(tmp_path, "a")
    _sweep(tmp_path, "b")
    with pytest.raises(
        ConfigError, match=r"name the experiment to follow: .* holds 2 \('a:1', 'b:1'\)"
    ):
        metalab.reconnect(tmp_path)
    with pytest.raises(ExperimentNotFoundError, match="did you mean 'a:1'"):
        metalab.reconnect(tmp_path, "a")
    with metalab.reconnect(tmp_path, "b:1") as handle:
        assert handle.is_finished
        assert len(handle.result()) == 1


def test_a_store_without_a_sweep_has_nothing_to_follow(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds 0 \\(none\\)"):
        metalab.reconnect(tmp_path)
    store = metalab.FileStoreConfig(root=str(tmp_path), experiment_id="x:1").connect()
    store.put_run_record(metalab.RunRecord.running(run_id="ab" * 32, experiment_id="x:1"))
    store.close()
    with pytest.raises(ConfigError, match="'x:1' has no submission manifest"):
        metalab.reconnect(tmp_path, "x:1")
