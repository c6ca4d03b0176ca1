from __future__ import annotations

import pytest

from metalab._optional import require
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
