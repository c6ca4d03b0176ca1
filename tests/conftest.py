"""Shared test configuration: hypothesis profiles and paths to golden data."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from metalab.testing import unavailable

pytest_plugins = ["metalab.testing.postgres"]

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("nightly", max_examples=5000, deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "default")
)


@pytest.fixture
def golden_collection(tmp_path: Path) -> Path:
    """A private copy of the collection written by the original metalab 0.1."""
    target = tmp_path / "collection"
    shutil.copytree(Path(__file__).parent / "compat" / "data" / "metalab-0.1-collection", target)
    return target


@pytest.fixture
def require_module() -> Callable[[str, str], None]:
    """Skip a test whose tool is not installed; under ``CI=true`` fail it instead.

    Call it with the module's import name and the dependency group it comes from.
    ``nox -s tests`` installs every group these tests use, so in CI a missing tool
    is a broken set-up, never a reason to pass.
    """

    def require(module: str, group: str) -> None:
        if importlib.util.find_spec(module) is not None:
            return
        unavailable(f"{module} is not installed (it is in the {group!r} dependency group)")

    return require


@pytest.fixture
def umask_022() -> Iterator[None]:
    """Run the test under umask 022, whatever the process's umask is."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)
