"""Functions that compute metrics from a run, given as callables or ``"module:function"``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeAlias, cast

from metalab.errors import ConfigError
from metalab.records import MetricValue

if TYPE_CHECKING:
    from metalab.results._run import Run

__all__ = ["DerivedFn", "name_of", "resolve_derived"]

DerivedFn: TypeAlias = "Callable[[Run], Mapping[str, MetricValue]]"
"""Computes metrics of a run (``derived_metrics=`` of ``run`` and ``to_dataframe``)."""


def resolve_derived(fn: DerivedFn | str) -> DerivedFn:
    """A derived-metric function, imported from ``"module:function"`` if named so.

    Raises:
        ConfigError: ``fn`` is neither callable nor an importable ``"module:function"``.
    """
    if callable(fn):
        return fn
    module, _, name = str(fn).partition(":")
    if not module or not name:
        raise ConfigError(f"derived metric {fn!r} is not a function or 'module:function'")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"derived metric {fn!r} cannot be imported: {exc}") from exc
    if not callable(found):
        raise ConfigError(f"derived metric {fn!r} is not callable")
    return cast("DerivedFn", found)


def name_of(fn: object) -> str:
    """How a user's function is named in a warning."""
    return repr(getattr(fn, "__qualname__", fn))
