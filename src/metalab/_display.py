"""Showing runs to a person: short run ids, and small HTML tables for notebooks."""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Mapping, Sequence
from typing import Final

__all__ = ["SHORT_ID", "differing_params", "html_table", "short_ids", "shown", "text_table"]

SHORT_ID: Final = 8
"""Characters of a run id shown to a person (more where 8 do not tell runs apart)."""


def short_ids(run_ids: Sequence[str]) -> dict[str, str]:
    """Map each run id to a prefix that tells it from the others, as git shortens ids.

    The prefix has :data:`SHORT_ID` characters, or one more than the id shares with
    any other of ``run_ids``.
    """
    ordered = sorted(set(run_ids))
    short: dict[str, str] = {}
    for i, run_id in enumerate(ordered):
        # Sorted ids share their longest prefixes with their neighbours.
        shared = max(
            (_common(run_id, ordered[j]) for j in (i - 1, i + 1) if 0 <= j < len(ordered)),
            default=0,
        )
        short[run_id] = run_id[: max(SHORT_ID, shared + 1)]
    return short


def differing_params(params: Sequence[Mapping[str, object]]) -> list[str]:
    """The param names worth a column for these runs' params, sorted.

    Of several runs, a param every run has with one value says nothing about them and
    is left out (a run without it differs from one with it); of one run, every param.
    """
    names = sorted({k for p in params for k in p})
    if len(params) < 2:
        return names
    missing = object()
    return [k for k in names if len({repr(p.get(k, missing)) for p in params}) > 1]


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def shown(value: object) -> str:
    """A value as one short cell: times to the second, floats to 6 digits, None empty."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    return str(value)


def html_table(
    columns: Sequence[str], rows: Sequence[Sequence[object]], *, caption: str, note: str = ""
) -> str:
    """A compact HTML table (every cell escaped), for ``_repr_html_``."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(shown(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    foot = f"<p><small>{html.escape(note)}</small></p>" if note else ""
    return (
        f'<div class="metalab"><table><caption style="text-align:left">'
        f"{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>{foot}</div>"
    )


def text_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as aligned text: a header line, then one line per row."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    lines = [columns, *rows]
    return "".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in lines
    )
