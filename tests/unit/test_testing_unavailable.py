"""``metalab.testing.unavailable`` (a test that cannot run skips, but fails in CI) and
``hiding_modules`` (a fresh interpreter as if packages were not installed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from metalab.testing import hiding_modules, unavailable


def test_outside_ci_a_missing_tool_skips_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no chromium here"):
        unavailable("no chromium here")


def test_under_ci_a_missing_tool_fails_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true.*no chromium here"):
        unavailable("no chromium here")


def test_only_ci_true_counts_as_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.skip.Exception):
        unavailable("no chromium here")


def test_hiding_modules_makes_them_fail_to_import_as_if_not_installed() -> None:
    code = hiding_modules("json", "csv") + (
        "import importlib\n"
        "for name in ('json', 'json.decoder', 'csv', 'textwrap'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "        print(name, 'imported')\n"
        "    except ModuleNotFoundError:\n"
        "        print(name, 'missing')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "json missing",
        "json.decoder missing",
        "csv missing",
        "textwrap imported",
    ]
