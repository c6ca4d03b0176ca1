from __future__ import annotations

import importlib
import types

import pytest

PUBLIC_MODULES = [
    "metalab",
    "metalab.capture",
    "metalab.errors",
    "metalab.executors",
    "metalab.experiment",
    "metalab.interop.mlflow",
    "metalab.interop.parquet",
    "metalab.params",
    "metalab.records",
    "metalab.results",
    "metalab.runner",
    "metalab.seeds",
    "metalab.services.postgres",
    "metalab.ui",
]


def _isort_key(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: CONSTANTS, then Classes, then functions."""
    if name.isupper():
        return (0, name)
    return (1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", name).startswith(name)
        and attr not in {"annotations", "TYPE_CHECKING"}
    }
    missing = public - set(exported)
    assert not missing, f"{name} defines public names missing from __all__: {sorted(missing)}"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which does not exist"
