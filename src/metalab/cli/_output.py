"""Output for the command line: tables, CSV and JSON (progress: ``metalab._progress``)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from typing import IO, Any

from metalab._display import text_table

__all__ = ["emit_json", "emit_rows", "non_negative_int"]


def emit_json(data: Any, out: IO[str] | None = None) -> None:
    """Write ``data`` as indented JSON (non-finite floats as strings)."""
    stream = out or sys.stdout
    json.dump(_jsonable(data), stream, indent=2, sort_keys=False)
    stream.write("\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, float):
        return value
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def emit_rows(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str = "table",
    out: IO[str] | None = None,
) -> None:
    """Write rows as an aligned text table, CSV or a JSON list of objects."""
    stream = out or sys.stdout
    if fmt == "json":
        emit_json([dict(zip(columns, row, strict=True)) for row in rows], stream)
        return
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in row] for row in rows])
        return
    stream.write(text_table(columns, [[_cell(v) for v in row] for row in rows]))


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number, 0 or more (``--limit``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value
