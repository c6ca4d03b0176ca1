"""The fault suite: deterministic crashes, concurrent writers and outages (marker ``faults``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).parent

CrashRunner = Callable[..., subprocess.CompletedProcess[str]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def crash() -> CrashRunner:
    """Run a snippet in a child process that is SIGKILLed at a named crash point.

    ``crash(code, point="artifact:before-manifest", after=1)`` returns the finished
    child; it fails the test unless the child died of SIGKILL (the point was reached).
    """

    def run(
        code: str, *, point: str, after: int = 1, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        script = f"from crashpoints import arm\narm({point!r}, after={after})\n" + textwrap.dedent(
            code
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        proc = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != -signal.SIGKILL:
            pytest.fail(
                f"the child was to die at {point!r} but exited with {proc.returncode}:\n"
                f"{proc.stderr[-3000:]}"
            )
        return proc

    return run
