"""``import metalab`` must not pull in optional dependencies (checked in a fresh process)."""

from __future__ import annotations

import subprocess
import sys

import pytest

OPTIONAL = ["psycopg", "psycopg_pool", "pandas", "polars", "rich", "numpy", "hypothesis", "pytest"]


@pytest.mark.parametrize("module", ["metalab", "metalab.records", "metalab._codec"])
def test_importing_metalab_loads_no_optional_dependency(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {OPTIONAL!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""
