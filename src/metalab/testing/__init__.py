"""Test support shipped with metalab: strategies, equality helpers and store suites.

This package imports pytest and hypothesis; import it only from test suites.
"""

from __future__ import annotations

from typing import Any

import msgspec

from metalab._codec import escape_json

__all__ = ["assert_same_document", "comparable"]


def comparable(doc: Any) -> Any:
    """Return a form of a record (or any JSON-like value) where NaN equals NaN.

    Records holding NaN are never ``==`` to themselves after a round-trip, because
    ``nan != nan``; comparing their escaped builtins compares the values exactly.
    """
    return escape_json(msgspec.to_builtins(doc))


def assert_same_document(actual: Any, expected: Any) -> None:
    """Assert two records are equal field by field, treating NaN as equal to NaN."""
    left, right = comparable(actual), comparable(expected)
    assert left == right, f"documents differ:\n  actual:   {left!r}\n  expected: {right!r}"
