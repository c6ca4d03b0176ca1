"""The one place that checks optional dependencies.

Callers import optional modules for typing under ``TYPE_CHECKING``, call
:func:`require` (which raises a :class:`~metalab.errors.MissingDependencyError` naming
the extra to install), then import the module normally inside the function. Code that
only does better with a module asks :func:`installed` instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from metalab.errors import MissingDependencyError

__all__ = ["installed", "require"]


def require(*modules: str, extra: str, feature: str) -> None:
    """Import each module, or raise an error that says which extra installs it.

    Args:
        *modules: Importable module names, e.g. ``"psycopg", "psycopg_pool"``.
        extra: The metalab extra that provides them, e.g. ``"postgres"``.
        feature: What needs them, for the message, e.g. ``"PostgresStore"``.

    Raises:
        MissingDependencyError: A module cannot be imported. The original
            ``ImportError`` is chained, since it may name a deeper cause (a missing
            shared library rather than a missing package).
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingDependencyError(module, extra, feature) from exc


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it.

    A module blocked with ``sys.modules[name] = None`` (as tests, or users, do to
    hide one) counts as not installed.
    """
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None
