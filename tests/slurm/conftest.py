"""A real SLURM for the tests of this directory (marker ``slurm``, ``nox -s slurm``).

The session fixture ``slurm_cluster`` brings up a one-node SLURM on localhost
(``slurm_cluster.py``: Debian's packages, installed when missing, and daemons whose
files all live in a temporary directory) and points ``SLURM_CONF`` at it for the whole
session, so that dask-jobqueue's ``sbatch`` and ``scancel`` reach it. The fixture
``slurm`` gives a test that cluster with no job in the queue, and cancels whatever
the test left there.

It needs root (to install the packages and run the daemons as ``SlurmUser=root``).
Without it the tests are skipped, except under ``CI=true``, where a missing SLURM is
a broken set-up and fails them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn

import pytest

from metalab.testing import load_script, unavailable

HERE = Path(__file__).parent


def _load_script() -> ModuleType:
    # Test directories are not packages (importlib import mode): loaded by path.
    return load_script(HERE / "slurm_cluster.py", "slurm_cluster")


if TYPE_CHECKING:
    from tests.slurm import slurm_cluster as _script
else:
    _script = _load_script()

LocalSlurm = _script.LocalSlurm
SlurmUnavailableError = _script.SlurmUnavailableError
ensure_installed = _script.ensure_installed


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.slurm)


def _unavailable(reason: str) -> NoReturn:
    unavailable(f"no SLURM for the slurm tests: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[LocalSlurm]:
    """A one-node SLURM on localhost for the session; ``SLURM_CONF`` points at it."""
    if os.geteuid() != 0:
        _unavailable(
            "the one-node SLURM of tests/slurm installs Debian's packages and runs its "
            "daemons as root; run the slurm tests as root (nox -s slurm in CI does)"
        )
    try:
        ensure_installed()
    except SlurmUnavailableError as exc:
        _unavailable(str(exc))
    root = Path(tempfile.mkdtemp(prefix="metalab-slurm-"))
    cluster = LocalSlurm(root)
    previous = os.environ.get("SLURM_CONF")
    try:
        try:
            cluster.up()
        except SlurmUnavailableError as exc:
            _unavailable(f"the cluster in {root} did not come up: {exc}")
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        cluster.down()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def slurm(slurm_cluster: LocalSlurm) -> Iterator[LocalSlurm]:
    """The session's cluster with an empty queue; what the test leaves is stopped."""
    slurm_cluster.clean()
    slurm_cluster.wait_idle()
    yield slurm_cluster
    slurm_cluster.clean()
