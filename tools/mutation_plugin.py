"""A pytest plugin for mutation runs (``-p mutation_plugin``): keeps hypothesis quiet about mutmut.

mutmut runs the suite several times inside one process (collecting which tests reach
which function, then a clean run, then each mutant in a fork), so a hypothesis test
defined on a class meets a new instance of that class each time and trips the
``differing_executors`` health check. That check guards against flaky replays from
the example database; it says nothing about the code under test here.

Property tests also draw fewer examples (at most :data:`MAX_EXAMPLES`, still
derandomized under ``CI=true``): each surviving mutant runs its tests to the end, and
at the suite's 200 examples the codec group alone takes over an hour on two cores.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

MAX_EXAMPLES = 25


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:  # noqa: ARG001 -- hook signature
    """Load the suite's hypothesis profile again, without the ``differing_executors`` check."""
    current = settings.default
    assert current is not None  # the suite's conftest has loaded a profile
    suppressed = [*current.suppress_health_check, HealthCheck.differing_executors]
    settings.register_profile(
        "mutation",
        parent=current,
        suppress_health_check=suppressed,
        max_examples=min(current.max_examples, MAX_EXAMPLES),
    )
    settings.load_profile("mutation")
