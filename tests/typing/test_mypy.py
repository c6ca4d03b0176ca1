"""Run mypy over the typing examples and compare revealed types with the comments."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "examples.py"
EXPECTED = re.compile(r"reveal_type\(.*\)\s*# E: (?P<type>.+)$")
REVEALED = re.compile(r":(?P<line>\d+): note: Revealed type is \"(?P<type>.+)\"")


def _normalise(type_text: str) -> str:
    return type_text.replace("builtins.", "").replace("?", "")


@pytest.mark.slow
def test_examples_type_check_and_reveal_the_documented_types(
    require_module: Callable[[str, str], None],
) -> None:
    require_module("mypy", "typing")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--hide-error-context",
            "--no-error-summary",
            str(EXAMPLES),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [ln for ln in proc.stdout.splitlines() if ": error:" in ln]
    assert not errors, "\n".join(errors)
    revealed = {int(m["line"]): _normalise(m["type"]) for m in REVEALED.finditer(proc.stdout)}
    expected = {
        number: m["type"].strip()
        for number, text in enumerate(EXAMPLES.read_text().splitlines(), start=1)
        if (m := EXPECTED.search(text))
    }
    assert expected, "no reveal_type expectations found"
    assert revealed == expected
