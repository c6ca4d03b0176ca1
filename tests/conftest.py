"""Shared test configuration: hypothesis profiles and paths to golden data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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
