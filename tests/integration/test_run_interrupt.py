"""Ctrl-C on a sweep: one line, the unstarted runs recorded cancelled, nothing lost."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import metalab
from metalab.errors import SweepInterrupted

_TOTAL = 400

_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import metalab

    root, marker, executor = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

    @metalab.operation
    def slow(params, capture):
        if params["i"] == 3:
            marker.touch()
        time.sleep(0.02)
        capture.metric("i", params["i"])

    exp = metalab.Experiment(
        name="interrupt", version="1", operation=slow,
        params=metalab.grid(i=list(range({total}))),
    )
    pool = metalab.ProcessExecutor(max_workers=2) if executor == "process" else None
    results = metalab.run(exp, store=root, executor=pool).result()
    print(len(results))
    """
).format(total=_TOTAL)

_LINE = re.compile(
    r"metalab: cancelled: (?P<n>[\d,]+) of 400 runs of 'interrupt:1' not started "
    r"\(run it again to resume\)\n"
)


def _statuses(root: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in metalab.load_results(root, "interrupt:1"):
        counts[run.status] = counts.get(run.status, 0) + 1
    return counts


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_ctrl_c_prints_one_line_and_records_the_unstarted_runs_cancelled(
    tmp_path: Path, executor: str
) -> None:
    root, marker = tmp_path / "store", tmp_path / "started"
    script = tmp_path / "sweep.py"
    script.write_text(_SCRIPT)
    # A session of its own: Ctrl-C in a terminal signals the whole process group,
    # workers included, and so does this test, without reaching pytest.
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root), str(marker), executor],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the sweep never started"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 1
    assert out == ""
    line = _LINE.fullmatch(err)
    assert line is not None, err  # one line: no traceback, from any thread or worker
    not_started = int(line["n"].replace(",", ""))
    statuses = _statuses(root)
    assert statuses.get("cancelled", 0) == not_started > 0
    # The runs at work when Ctrl-C came finished; none is left "running".
    assert statuses.get("success", 0) + not_started == _TOTAL
    assert set(statuses) == {"success", "cancelled"}

    # Run again: the cancelled runs run, the finished ones are not run twice.
    again = subprocess.run(
        [sys.executable, str(script), str(root), str(tmp_path / "again"), executor],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert again.stdout.strip() == str(_TOTAL)
    assert _statuses(root) == {"success": _TOTAL}


def test_the_interrupt_is_a_keyboard_interrupt_a_caller_can_catch() -> None:
    error = SweepInterrupted("e:1", 1777, 3000)
    assert isinstance(error, KeyboardInterrupt)
    assert not isinstance(error, Exception)  # `except Exception` does not swallow Ctrl-C
    assert str(error) == (
        "cancelled: 1,777 of 3,000 runs of 'e:1' not started (run it again to resume)"
    )
    assert (error.experiment_id, error.not_started, error.total) == ("e:1", 1777, 3000)


def test_other_uncaught_errors_keep_their_traceback(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import metalab
        op = metalab.operation(lambda capture: None)
        exp = metalab.Experiment(name="e", version="1", operation=op, params=metalab.grid(i=[1]))
        handle = metalab.run(exp, store={str(tmp_path)!r})
        handle._interrupted()  # what Ctrl-C in result() does: installs the hook
        raise ValueError("boom")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().endswith("ValueError: boom")
