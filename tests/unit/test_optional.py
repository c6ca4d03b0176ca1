from __future__ import annotations

import sys

import pytest

from metalab._optional import installed, require
from metalab.errors import MissingDependencyError


class TestRequire:
    def test_installed_modules_pass(self) -> None:
        require("json", "msgspec", extra="core", feature="tests")

    def test_missing_module_names_the_extra_and_keeps_the_cause(self) -> None:
        with pytest.raises(MissingDependencyError) as info:
            require("json", "metalab_no_such_module", extra="postgres", feature="PostgresStore")
        exc = info.value
        assert exc.module == "metalab_no_such_module"
        assert "pip install 'metalab[postgres]'" in str(exc)
        assert "PostgresStore" in str(exc)
        assert isinstance(exc.__cause__, ImportError)
        assert isinstance(exc, ImportError)


class TestInstalled:
    def test_a_module_that_can_be_imported_is_installed(self) -> None:
        assert installed("json")
        assert not installed("metalab_no_such_module")

    def test_a_blocked_module_is_not(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "numpy", None)
        assert not installed("numpy")
