"""``metalab.testing.unavailable``: a test that cannot run skips, but fails in CI."""

from __future__ import annotations

import pytest

from metalab.testing import unavailable


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
