"""The command line starts both as ``metalab`` and as ``python -m metalab``."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from metalab import __version__


def test_python_dash_m_prints_the_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "metalab", "--version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == f"metalab {__version__}"


def test_console_script_is_installed() -> None:
    exe = shutil.which("metalab")
    if exe is None:
        pytest.fail("the 'metalab' console script is not on PATH; is the package installed?")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert __version__ in proc.stdout
