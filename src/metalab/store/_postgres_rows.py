"""From a FileStore document to the row the Postgres index keeps of it.

A row holds the document's exact bytes (``doc``) and, beside them, the values queries
filter on: the record's columns and its params and metrics as ``jsonb``. A document
the codec wrote in its current version is not decoded whole: only the columns of
:class:`~metalab.store._postgres_schema.RunRow` are, with params and metrics kept as
their raw JSON text (already in the form ``jsonb`` accepts), several times faster
than a full decode, which matters when a rebuild reads every file. Any other
document (metalab 0.1's, say) is decoded, upgraded and re-encoded first, so the index
holds every document in the current encoding.

A document that is well-formed JSON but wrong elsewhere is indexed as it is and
raises ``CorruptRecordError`` when read, from the index as from the files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

import msgspec

from metalab import _codec
from metalab.query.sql import index_json, index_text
from metalab.records import DerivedMetrics, ExperimentManifest, MetricValue, RunRecord
from metalab.store._documents import Document, SeriesAppend
from metalab.store._postgres_schema import (
    DerivedRow,
    JsonbBinary,
    ManifestRow,
    RunRow,
    SeriesChunkRow,
    SeriesRow,
)
from metalab.store._rules import check_filed_under, validate_run_id
from metalab.store._series_file import decode_lines, split_header

__all__ = [
    "CHUNK_POINTS",
    "SeriesRows",
    "derived_row",
    "manifest_row",
    "run_row",
    "series_generation",
    "series_row",
    "series_rows",
]

_ENCODER: Final = msgspec.json.Encoder()
_CURRENT_PREFIX: Final = b'{"schema_version":%d,' % _codec.CURRENT_VERSION
_RAW_COLUMNS: Final = frozenset({"params", "metrics"})


def _extracted_fields(record_type: type[msgspec.Struct], columns: tuple[str, ...]) -> type:
    """A Struct that decodes, of a current-version document, only the fields in ``columns``.

    The field types and defaults are the record's own; ``params`` and ``metrics`` stay
    raw JSON text.
    """
    fields: list[tuple[str, object, object]] = []
    for info in msgspec.structs.fields(record_type):
        if info.name not in columns:
            continue
        if info.name in _RAW_COLUMNS:
            fields.append((info.name, msgspec.Raw, msgspec.Raw(b"{}")))
        elif info.required:
            fields.append((info.name, info.type, msgspec.NODEFAULT))
        elif info.default is not msgspec.NODEFAULT:
            fields.append((info.name, info.type, info.default))
        else:
            fields.append(
                (info.name, info.type, msgspec.field(default_factory=info.default_factory))
            )
    return msgspec.defstruct(
        f"Indexed{record_type.__name__}",
        fields,
        kw_only=True,
        frozen=True,
        gc=False,
        tag_field="schema_version",
        tag=_codec.CURRENT_VERSION,
    )


_IndexedRun: Final = _extracted_fields(RunRecord, (*RunRow._fields, "edits"))
_decode_indexed_run: Final[Callable[[bytes], Any]] = msgspec.json.Decoder(_IndexedRun).decode


_IndexedDerived: Final = _extracted_fields(DerivedMetrics, DerivedRow._fields)
_decode_indexed_derived: Final[Callable[[bytes], Any]] = msgspec.json.Decoder(
    _IndexedDerived
).decode


def _jsonb(value: Mapping[str, object]) -> JsonbBinary:
    """Encode params or metrics as the standard JSON of the index's query copy.

    Non-finite floats are escaped as the codec escapes them, and every string is in
    its index form (:func:`~metalab.query.sql.index_json`: no NUL, which ``jsonb``
    refuses; ``doc`` keeps the exact value).
    """
    data = _ENCODER.encode(value)
    if b"null" in data or b"$" in data:
        data = _ENCODER.encode(_codec.escape_json(msgspec.to_builtins(value)))
    return JsonbBinary.from_json(index_json(data))


def _raw_jsonb(raw: msgspec.Raw) -> JsonbBinary | None:
    """The raw JSON of an object as query-copy ``jsonb``, or ``None`` if not an object."""
    text = bytes(raw)
    if text[:1] != b"{":
        return None
    return JsonbBinary.from_json(index_json(text))


def _query_tags(tags: tuple[str, ...]) -> list[str]:
    """Tags for the ``text[]`` column, in index form (``text`` cannot hold NUL)."""
    return [index_text(t) for t in tags]


def _fast_run_row(doc: Document) -> RunRow | None:
    """The row of a current-version document, or ``None`` to decode it in full."""
    data = doc.data
    if not data.startswith(_CURRENT_PREFIX):
        return None
    try:
        fields = _decode_indexed_run(data)
    except msgspec.DecodeError:
        return None
    params, metrics = _raw_jsonb(fields.params), _raw_jsonb(fields.metrics)
    if params is None or metrics is None:
        return None
    return RunRow(
        fields.run_id,
        fields.experiment_id,
        fields.status,
        fields.started_at,
        fields.finished_at,
        fields.duration_ms,
        _query_tags(fields.tags),
        None if fields.edits is None else fields.edits.edited_at,
        params,
        metrics,
        data,
        doc.state.mtime_ns,
        doc.state.size,
    )


def run_row(doc: Document) -> RunRow:
    """The ``runs`` row of a run-record document.

    Raises:
        CorruptRecordError: The document cannot be decoded, or holds another run
            than the one it is filed under.
    """
    row = _fast_run_row(doc)
    if row is None:
        record = _codec.RUN_RECORD.decode(doc.data, source=doc.source)
        data = (
            doc.data if doc.data.startswith(_CURRENT_PREFIX) else _codec.RUN_RECORD.encode(record)
        )
        row = RunRow(
            run_id=record.run_id,
            experiment_id=record.experiment_id,
            status=record.status,
            started_at=record.started_at,
            finished_at=record.finished_at,
            duration_ms=record.duration_ms,
            tags=_query_tags(record.tags),
            edited_at=None if record.edits is None else record.edits.edited_at,
            params=_jsonb(record.params),
            metrics=_jsonb(record.metrics),
            doc=data,
            file_mtime_ns=doc.state.mtime_ns,
            file_size=doc.state.size,
        )
    check_filed_under(row.run_id, doc.key, doc.source)
    return row


def derived_row(doc: Document) -> DerivedRow:
    """The ``derived`` row of a derived-metrics document.

    Raises:
        ConfigError: The run id it is filed under is invalid.
        CorruptRecordError: The document cannot be decoded.
    """
    run_id = validate_run_id(doc.key)
    data = doc.data
    metrics = None
    if data.startswith(_CURRENT_PREFIX):
        try:
            metrics = _raw_jsonb(_decode_indexed_derived(data).metrics)
        except msgspec.DecodeError:
            metrics = None
    if metrics is None:
        derived = _codec.DERIVED.decode(data, source=doc.source)
        if not data.startswith(_CURRENT_PREFIX):
            data = _codec.DERIVED.encode(derived)
        metrics = _jsonb(derived.metrics)
    state = doc.state
    return DerivedRow(run_id, doc.experiment_id, metrics, data, state.mtime_ns, state.size)


def manifest_row(doc: Document) -> ManifestRow:
    """The ``manifests`` row of an experiment-manifest document (keyed by its file name).

    Raises:
        CorruptRecordError: The document cannot be decoded.
    """
    manifest: ExperimentManifest = _codec.EXPERIMENT_MANIFEST.decode(doc.data, source=doc.source)
    data = doc.data
    if not data.startswith(_CURRENT_PREFIX):
        data = _codec.EXPERIMENT_MANIFEST.encode(manifest)
    return ManifestRow(
        experiment_id=manifest.experiment_id,
        name=doc.key,
        submitted_at=manifest.submitted_at,
        doc=data,
        file_mtime_ns=doc.state.mtime_ns,
        file_size=doc.state.size,
    )


CHUNK_POINTS: Final = 65_536
"""At most this many points of a metric in one ``series_chunks`` row of a whole file."""


class SeriesRows(NamedTuple):
    """The ``series_chunks`` rows of a series file, or of lines appended to one.

    Attributes:
        points: How many points the rows hold.
        chunks: How many ``seq`` numbers they use.
        generation: The file's generation (from its header); ``None`` for appended
            lines, which have no header.
        rows: The rows.
    """

    points: int
    chunks: int
    generation: str | None
    rows: list[SeriesChunkRow]


def series_generation(doc: Document) -> str:
    """The generation of a whole series file, from its header only.

    Raises:
        CorruptRecordError: The header cannot be decoded, or names another run.
    """
    end = doc.data.find(b"\n") + 1
    return split_header(doc.data[:end], source=doc.source, run_id=doc.key)[0]


def series_rows(doc: Document | SeriesAppend, first_seq: int) -> SeriesRows:
    """The ``series_chunks`` rows of a series file, or of lines appended to one.

    A whole file (a :class:`Document`, or an append at offset 0, which holds the
    header) has its header checked and a torn last line left out; appended lines are
    whole. Each metric's points become rows of at most :data:`CHUNK_POINTS`, in the
    order logged, numbered from ``first_seq``.

    Raises:
        ConfigError: The run id it is filed under is invalid.
        CorruptRecordError: The header or a line cannot be decoded.
    """
    run_id = validate_run_id(doc.key)
    data = doc.data
    generation = None
    if isinstance(doc, Document) or doc.offset == 0:
        generation, data = split_header(data, source=doc.source, run_id=run_id)
    names, steps, values, seconds = decode_lines(data, source=doc.source)
    if not names:
        return SeriesRows(0, 0, generation, [])
    by_metric: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        by_metric.setdefault(name, []).append(i)
    rows: list[SeriesChunkRow] = []
    longest = max(len(rows_of) for rows_of in by_metric.values())
    for name, where in by_metric.items():
        for part, start in enumerate(range(0, len(where), CHUNK_POINTS)):
            chosen = where[start : start + CHUNK_POINTS]
            nums, others = _nums_others([values[i] for i in chosen])
            rows.append(
                SeriesChunkRow(
                    run_id,
                    first_seq + part,
                    name,
                    [steps[i] for i in chosen],
                    nums,
                    others,
                    [seconds[i] for i in chosen],
                )
            )
    return SeriesRows(len(names), -(-longest // CHUNK_POINTS), generation, rows)


def series_row(
    doc: Document | SeriesAppend, points: int, chunks: int, generation: str
) -> SeriesRow:
    """The ``series`` row of a run's series file: its points, chunks, generation, state."""
    state = doc.state
    return SeriesRow(
        doc.key, doc.experiment_id, points, chunks, generation, state.mtime_ns, state.size
    )


def _nums_others(values: list[MetricValue]) -> tuple[list[float | None], list[str | None] | None]:
    """Values as ``nums`` and ``others`` (``None`` when every value is a float)."""
    if all(type(v) is float for v in values):
        return values, None  # type: ignore[return-value]
    pairs = [_num_other(v) for v in values]
    return [n for n, _ in pairs], [o for _, o in pairs]


def _num_other(value: MetricValue) -> tuple[float | None, str | None]:
    """A value as ``(num, other)``: floats in ``num``; others as JSON text, numbers in both."""
    if isinstance(value, bool):
        return (1.0 if value else 0.0), ("true" if value else "false")
    if isinstance(value, int):
        try:
            number: float | None = float(value)
        except OverflowError:  # beyond a float's range: exact in ``other`` only
            number = None
        return number, str(value)
    if isinstance(value, float):
        return value, None
    return None, _ENCODER.encode(value).decode()
