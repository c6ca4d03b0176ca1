"""The README holds each section once (a scripted edit once doubled half of it)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_heading_appears_once() -> None:
    headings = [
        line
        for line in README.read_text(encoding="utf-8").splitlines()
        if re.match(r"#{1,6} ", line)
    ]
    repeated = [h for h, n in Counter(headings).items() if n > 1]
    assert not repeated, f"headings written more than once: {repeated}"


def test_no_paragraph_is_written_twice() -> None:
    text = README.read_text(encoding="utf-8")
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 200]
    repeated = [p[:80] for p, n in Counter(paragraphs).items() if n > 1]
    assert not repeated, f"paragraphs written more than once: {repeated}"
