"""Test support shipped with metalab: strategies, equality helpers and store suites.

This package imports pytest and hypothesis; import it only from test suites.

The equality helpers are an *oracle*: they share no code with what they check. A
record is compared by its structure, each value tagged with its JSON type, each float
by its exact bits (``float.hex()``: ``-0.0`` differs from ``0.0``, ``1.0`` from
``1``) and NaN on its own (every NaN equals every NaN). metalab's codec escapes
non-finite floats and marker-shaped keys on the way to JSON; a bug there changes what
a store returns, and the oracle, which never calls the codec, sees it.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

import msgspec

from metalab.query import select

if TYPE_CHECKING:
    from metalab.query import Query
    from metalab.records import RunRecord
    from metalab.store import SupportsQuery

__all__ = [
    "assert_same_document",
    "comparable",
    "hiding_modules",
    "load_script",
    "query_disagreements",
    "run_cli",
    "unavailable",
]


def unavailable(reason: str) -> NoReturn:
    """End a test that cannot run here: skip it, or, under ``CI=true``, fail it.

    CI installs everything the tests need (a PostgreSQL, a browser, SLURM, optional
    modules), so there a missing tool is a broken set-up that must not pass as a skip.

    Args:
        reason: What is missing, shown in pytest's summary.
    """
    import pytest  # noqa: PLC0415 -- test-only dependency

    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, and this test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def hiding_modules(*names: str) -> str:
    """Python source that makes the top-level packages ``names`` fail to import.

    Put it at the start of the code a test runs in a fresh interpreter
    (``python -c``) to check that a feature works as if those packages were not
    installed: importing one of them (or a submodule) raises ``ModuleNotFoundError``,
    as it would then. Code that probes for an optional package (pyarrow probes for
    pandas) takes the branch for its absence.
    """
    return (
        "import sys\n"
        "class _Hidden:\n"
        "    def find_spec(self, name, path, target=None):\n"
        f"        if name.partition('.')[0] in {sorted(names)!r}:\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Hidden())\n"
    )


def load_script(path: Path, name: str) -> ModuleType:
    """Import a script that lives beside tests (which are not packages) by its path.

    Loaded once, under ``name`` in ``sys.modules``: a second call returns the same
    module, so a conftest and the script run by hand share one copy.
    """
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def comparable(doc: Any) -> Any:
    """Return a canonical form of a record (or any JSON-like value) for ``==``.

    Every value is tagged with its type (``["int", 1]``, ``["bool", True]``,
    ``["float", "0x1.0p+0"]``, ``["nan"]``), so ``True`` never equals ``1``, ``1.0``
    never equals ``1`` and NaN equals NaN. The form is made of lists, dicts, strings,
    ints and booleans only: it survives a JSON round trip unchanged, so a test may
    keep it in a journal and compare it later.
    """
    return _canonical(msgspec.to_builtins(doc))


def _canonical(value: Any) -> Any:
    # bool before int: bool is a subclass of int.
    if value is None:
        return None
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", value]
    if isinstance(value, float):
        return ["nan"] if math.isnan(value) else ["float", value.hex()]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, list | tuple):
        return ["list", [_canonical(item) for item in value]]
    if isinstance(value, dict):
        return ["dict", {_key(key): _canonical(item) for key, item in value.items()}]
    raise TypeError(f"comparable: not a JSON-like value: {type(value).__name__}")


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"comparable: a mapping key must be a string, got {type(key).__name__}")
    return key


def assert_same_document(actual: Any, expected: Any) -> None:
    """Assert two records are equal field by field (see :func:`comparable`)."""
    left, right = comparable(actual), comparable(expected)
    assert left == right, f"documents differ:\n  actual:   {left!r}\n  expected: {right!r}"


def query_disagreements(
    store: SupportsQuery, records: Sequence[RunRecord], queries: Iterable[Query]
) -> list[str]:
    """The queries ``store`` answers otherwise than metalab's Python engine over ``records``.

    Each is described by its filter and order (``ascii`` so NUL and other control
    characters show). ``store`` must hold exactly ``records``.
    """
    wrong = []
    for query in queries:
        expected = [r.run_id for r in select(list(records), query)]
        got = [r.run_id for r in store.query_runs(query)]
        if got != expected:
            wrong.append(ascii(f"where {query.where} order {[str(o) for o in query.order_by]}"))
    return wrong


def run_cli(
    *args: str, cwd: str | os.PathLike[str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real ``metalab`` command (``python -m metalab ARGS``) and capture it.

    Never raises on a non-zero exit: tests check ``returncode``, ``stdout`` and
    ``stderr`` themselves. ``COLUMNS`` is fixed so tables do not wrap.
    """
    return subprocess.run(
        [sys.executable, "-m", "metalab", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )
