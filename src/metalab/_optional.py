"""The one place that checks optional dependencies.

Callers import optional modules for typing under ``TYPE_CHECKING``, call
:func:`require` (which raises a :class:`~metalab.errors.MissingDependencyError` naming
the extra to install), then import the module normally inside the function.
"""

from __future__ import annotations

import importlib

from metalab.errors import MissingDependencyError

__all__ = ["require"]


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
