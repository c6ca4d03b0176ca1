"""The field catalog: which params / metrics / derived keys an experiment has."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from metalab._codec import escape_json
from metalab.records import JSONValue, MetricValue, RunRecord

__all__ = ["FieldInfo", "field_catalog"]

CATALOG_SAMPLES: Final = 5
"""How many distinct values the catalog keeps per field."""

_TYPE_ORDER: Final = {"null": 0, "str": 1, "int": 2, "float": 2, "bool": 3, "list": 4, "dict": 5}


@dataclass(frozen=True)
class FieldInfo:
    """One key of an experiment's field catalog.

    Attributes:
        field: ``params.<key>``, ``metrics.<key>`` or ``derived.<key>`` (top-level keys;
            nested params show as one ``dict`` field).
        types: The value types seen (``bool``, ``dict``, ``float``, ``int``, ``list``,
            ``null``, ``str``), sorted.
        count: How many runs have the key.
        min_value: The smallest finite number seen, or ``None``.
        max_value: The largest finite number seen, or ``None``.
        samples: Up to five distinct values (non-finite floats in their escaped form,
            ``{"$float": "NaN"}``), for a first look at what the field holds.
    """

    field: str
    types: list[str]
    count: int
    min_value: float | None
    max_value: float | None
    samples: list[object] = dataclasses.field(default_factory=list)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        return "list"
    return "dict"


def _sample_key(value: object) -> tuple[int, str]:
    return (_TYPE_ORDER[_type_name(value)], repr(value))


@dataclass
class _Acc:
    types: set[str] = dataclasses.field(default_factory=set)
    count: int = 0
    low: float | None = None
    high: float | None = None
    samples: dict[str, object] = dataclasses.field(default_factory=dict)

    def add(self, value: object) -> None:
        self.count += 1
        self.types.add(_type_name(value))
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                self.low = number if self.low is None else min(self.low, number)
                self.high = number if self.high is None else max(self.high, number)
        escaped = escape_json(value)
        key = repr(escaped)
        if key not in self.samples:
            self.samples[key] = escaped


def field_catalog(
    records: Iterable[RunRecord],
    derived: Callable[[RunRecord], Mapping[str, MetricValue] | None] | None = None,
) -> list[FieldInfo]:
    """Compute the field catalog of some runs in Python (stores without an index).

    Args:
        records: The runs of one experiment.
        derived: Looks up a run's derived metrics (``None``: no derived fields).
    """
    acc: dict[str, _Acc] = {}

    def visit(prefix: str, mapping: Mapping[str, JSONValue] | Mapping[str, MetricValue]) -> None:
        for key, value in mapping.items():
            acc.setdefault(prefix + key, _Acc()).add(value)

    for record in records:
        visit("params.", record.params)
        visit("metrics.", record.metrics)
        if derived is not None and (extra := derived(record)) is not None:
            visit("derived.", extra)
    return [
        FieldInfo(
            field=name,
            types=sorted(a.types),
            count=a.count,
            min_value=a.low,
            max_value=a.high,
            samples=sorted(a.samples.values(), key=_sample_key)[:CATALOG_SAMPLES],
        )
        for name, a in sorted(acc.items())
    ]
