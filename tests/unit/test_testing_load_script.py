"""``metalab.testing.load_script``: a script beside the tests, imported once by its path."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from metalab.testing import load_script


def test_a_script_is_loaded_once_under_its_name(tmp_path: Path) -> None:
    script = tmp_path / "helper.py"
    script.write_text("LOADS = []\nLOADS.append(1)\n")
    name = f"helper_{uuid.uuid4().hex}"
    try:
        first = load_script(script, name)
        assert first.LOADS == [1]
        assert sys.modules[name] is first
        assert load_script(script, name) is first
        assert first.LOADS == [1]  # not run again
    finally:
        sys.modules.pop(name, None)


def test_a_file_that_is_not_a_python_source_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "notes.txt"
    data.write_text("not python")
    with pytest.raises(ImportError, match=r"notes\.txt"):
        load_script(data, f"notes_{uuid.uuid4().hex}")
