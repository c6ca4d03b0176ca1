"""The field catalog: which params / metrics / derived keys an experiment has."""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, cast

from metalab._codec import escape_json
from metalab._display import html_table, shown
from metalab.records import MetricValue, RunRecord

__all__ = ["CATALOG_SAMPLES", "CATALOG_SAMPLE_RUNS", "FieldCatalog", "FieldInfo", "field_catalog"]

CATALOG_SAMPLES: Final = 5
"""How many distinct values the catalog keeps per field."""

CATALOG_SAMPLE_RUNS: Final = 1000
"""Samples come from this many runs of an experiment, the first by run id (reading the
distinct values of every run would cost more than the rest of the catalog)."""

_TYPE_ORDER: Final = {"null": 0, "str": 1, "int": 2, "float": 2, "bool": 3, "list": 4, "dict": 5}

_TYPE_NAMES: Final[dict[type, str]] = {
    type(None): "null",
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    list: "list",
    tuple: "list",
    dict: "dict",
}

_NUMBER_TYPES: Final = frozenset({int, float})

_SAMPLE_WIDTH: Final = 40
"""Characters of a sample shown in a notebook table."""


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
        samples: Up to five distinct values, the smallest by type (null, strings,
            numbers, booleans, lists, objects, as ``jsonb`` orders them), strings in
            code-point order and lists and objects by their ``jsonb`` text, among the
            first 1,000 runs by run id (:data:`CATALOG_SAMPLE_RUNS`), for a first look
            at what the field holds; empty for a field none of those runs has.
            Non-finite floats are in their escaped form (``{"$float": "NaN"}``).
    """

    field: str
    types: list[str]
    count: int
    min_value: float | None
    max_value: float | None
    samples: list[object] = dataclasses.field(default_factory=list)


class FieldCatalog(list[FieldInfo]):
    """The field catalog of an experiment: a list of :class:`FieldInfo`, by field name.

    A plain list in every way, with a compact table when a notebook shows it.

    Attributes:
        experiment_id: The experiment it describes, when known.
    """

    def __init__(
        self, fields: Iterable[FieldInfo] = (), *, experiment_id: str | None = None
    ) -> None:
        super().__init__(fields)
        self.experiment_id = experiment_id

    def _repr_html_(self) -> str:
        of = f" of {self.experiment_id!r}" if self.experiment_id else ""
        rows = [
            [
                info.field,
                ", ".join(info.types),
                info.count,
                info.min_value,
                info.max_value,
                ", ".join(_sample_text(v) for v in info.samples),
            ]
            for info in self
        ]
        return html_table(
            ["field", "types", "runs", "min", "max", "samples"],
            rows,
            caption=f"field catalog{of}: {len(self)} field(s)",
        )


def _sample_text(value: object) -> str:
    text = shown(value) if isinstance(value, float | int | str) else repr(value)
    return text if len(text) <= _SAMPLE_WIDTH else text[: _SAMPLE_WIDTH - 1] + "…"


def _type_name(value: object) -> str:
    return _kind_name(type(value))


def _kind_name(kind: type) -> str:
    name = _TYPE_NAMES.get(kind)
    if name is not None:
        return name
    for base, base_name in _TYPE_NAMES.items():  # subclasses: bool before int
        if issubclass(kind, base):
            return base_name
    return "dict"


def _summarise(name: str, values: list[object], sampled: int) -> FieldInfo:
    """The catalog entry of one field from every value it has (one per run).

    ``values[:sampled]`` are those of the runs samples are taken from.

    Works column by column in builtins as far as it can: a field of a large
    experiment has one value per run, and a Python step per value is the cost.
    """
    kinds = set(map(type, values))
    finite = _finite(values, kinds)
    return FieldInfo(
        field=name,
        types=sorted({_kind_name(kind) for kind in kinds}),
        count=len(values),
        min_value=float(min(finite)) if finite else None,
        max_value=float(max(finite)) if finite else None,
        samples=_samples(values[:sampled]),
    )


def _numbers(values: list[object]) -> list[int | float]:
    return [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def _finite(values: list[object], kinds: set[type]) -> list[int | float]:
    """The finite numbers among ``values`` (booleans are not numbers)."""
    if kinds <= _NUMBER_TYPES:
        # The common column, all ints and floats: filtered in C.
        numbers = cast("list[int | float]", values)
        return list(filter(math.isfinite, numbers)) if float in kinds else numbers
    return [v for v in _numbers(values) if math.isfinite(v)]


def _samples(values: list[object]) -> list[object]:
    """The smallest distinct values, in the order the index's catalog uses too.

    Null, then strings, numbers (``1`` and ``1.0`` are one number, as in ``jsonb``),
    booleans, lists and objects (non-finite floats, escaped, are objects). Values of
    a kind are compared naturally, strings in code-point order; lists and objects by
    their ``jsonb`` text (:func:`_jsonb_text`).
    """
    types = set(map(type, values))
    kinds = {_kind_name(kind) for kind in types}
    numbers = _numbers(values)
    finite = _finite(values, types)
    n = CATALOG_SAMPLES
    found: list[object] = [None] if "null" in kinds else []
    if "str" in kinds:
        found += heapq.nsmallest(n, {v for v in values if isinstance(v, str)})
    found += heapq.nsmallest(n, {v: v for v in finite}.values())
    if "bool" in kinds:
        found += sorted({v for v in values if isinstance(v, bool)})
    if "list" in kinds or "dict" in kinds or len(finite) < len(numbers):
        # Lists, objects and non-finite floats: rare, so escaped one by one.
        rest: dict[str, object] = {}
        for value in values:
            if isinstance(value, list | tuple | dict) or (
                isinstance(value, float) and not math.isfinite(value)
            ):
                escaped = escape_json(value)
                rest.setdefault(repr(escaped), escaped)
        texts = {key: _jsonb_text(value) for key, value in rest.items()}
        found += [rest[key] for key in sorted(rest, key=lambda k: (_rank(rest[k]), texts[k]))]
    return found[:n]


# How PostgreSQL prints a jsonb string's characters (NUL and U+0001 in the index's
# form, metalab.query.sql.index_text): the few escapes it writes, every other
# character as it is.
_JSONB_ESCAPES: Final = {
    **{chr(c): f"\\u{c:04x}" for c in range(0x20)},
    "\x00": "\\u0001\\u0001",
    "\x01": "\\u0001\\u0002",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    '"': '\\"',
    "\\": "\\\\",
}
_JSONB_ESCAPE_TABLE: Final = str.maketrans(_JSONB_ESCAPES)


def _jsonb_text(value: object) -> str:
    """``value`` (escaped, as stored) as PostgreSQL prints it as ``jsonb``.

    Lists and mappings among samples are ordered by the code points of that text, in
    Python and in the index alike (``jsonb``'s own order follows the collation).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.translate(_JSONB_ESCAPE_TABLE) + '"'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        number = Decimal(repr(value))
        return format(number.copy_abs() if number.is_zero() else number, "f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(_jsonb_text, value)) + "]"
    if isinstance(value, dict):
        # jsonb keeps an object's keys shortest first, then by their bytes.
        keys = sorted(value, key=lambda k: (len(_index_bytes(k)), _index_bytes(k)))
        return "{" + ", ".join(f"{_jsonb_text(k)}: {_jsonb_text(value[k])}" for k in keys) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


def _index_bytes(key: str) -> bytes:
    return key.replace("\x01", "\x01\x02").replace("\x00", "\x01\x01").encode()


def _rank(value: object) -> int:
    return _TYPE_ORDER[_type_name(value)]


def field_catalog(
    records: Iterable[RunRecord],
    derived: Callable[[RunRecord], Mapping[str, MetricValue] | None] | None = None,
) -> FieldCatalog:
    """Compute the field catalog of some runs in Python (stores without an index).

    Types, counts and ranges cover every run; samples come from the first
    :data:`CATALOG_SAMPLE_RUNS` runs by run id, as in the Postgres index.

    Args:
        records: The runs of one experiment.
        derived: Looks up a run's derived metrics (``None``: no derived fields).
    """
    ordered = sorted(records, key=_run_id)
    namespaces: dict[str, defaultdict[str, list[object]]] = {
        "params": defaultdict(list),
        "metrics": defaultdict(list),
        "derived": defaultdict(list),
    }
    _gather(ordered[:CATALOG_SAMPLE_RUNS], namespaces, derived)
    sampled = {
        (prefix, key): len(values)
        for prefix, columns in namespaces.items()
        for key, values in columns.items()
    }
    _gather(ordered[CATALOG_SAMPLE_RUNS:], namespaces, derived)
    return FieldCatalog(
        sorted(
            (
                _summarise(f"{prefix}.{key}", values, sampled.get((prefix, key), 0))
                for prefix, columns in namespaces.items()
                for key, values in columns.items()
            ),
            key=_field_name,
        ),
        experiment_id=next((r.experiment_id for r in ordered), None),
    )


def _run_id(record: RunRecord) -> str:
    return record.run_id


def _field_name(info: FieldInfo) -> str:
    return info.field


def _gather(
    records: list[RunRecord],
    namespaces: dict[str, defaultdict[str, list[object]]],
    derived: Callable[[RunRecord], Mapping[str, MetricValue] | None] | None,
) -> None:
    """Append each run's values to the column of their field."""
    params, metrics, extras = namespaces["params"], namespaces["metrics"], namespaces["derived"]
    for record in records:
        for key, value in record.params.items():
            params[key].append(value)
        for key, metric in record.metrics.items():
            metrics[key].append(metric)
        if derived is not None and (extra := derived(record)) is not None:
            for key, metric in extra.items():
                extras[key].append(metric)
