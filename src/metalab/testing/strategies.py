"""Hypothesis strategies for every metalab record type.

They reach the corners the codec must survive: unicode keys and values, nested
params, NaN and infinities, integers at the edge of JSON's safe range, keys that look
like the codec's own escape markers, and empty as well as large collections.
"""

from __future__ import annotations

import datetime as dt
import string
from typing import Any, Final

from hypothesis import strategies as st

from metalab.query import And, Compare, Contains, Exists, Field, In, Not, Or, OrderBy, Query
from metalab.records import (
    ArtifactDescriptor,
    ArtifactManifest,
    DerivedMetrics,
    ErrorInfo,
    ExperimentManifest,
    JSONValue,
    MetricValue,
    OperationRef,
    Provenance,
    ResultDocument,
    RunRecord,
    Status,
    StoreMeta,
)

__all__ = [
    "MARKER_SHAPES",
    "TRICKY_TEXT",
    "artifact_descriptors",
    "aware_datetimes",
    "derived_metrics",
    "experiment_ids",
    "experiment_manifests",
    "json_values",
    "metric_values",
    "queries",
    "query_derived",
    "query_expressions",
    "query_records",
    "result_documents",
    "run_ids",
    "run_records",
    "store_metas",
    "texts",
    "wide_ints",
]

MAX_SAFE_INT = 2**53 - 1

#: Text that has tripped JSON codecs and databases: NUL (jsonb refuses it), DEL,
#: U+FFFD (what a lossy decoder puts in place of a bad byte), backslash sequences
#: that spell an escape (the six characters ``\u0000``), a line separator, and
#: strings shaped like the codec's own markers.
TRICKY_TEXT: Final = (
    "\x00",
    "a\x00b",
    "\x7f",
    "\ufffd",
    "\\",
    "\\u0000",
    "\\\\u0000",
    '\\"',
    "\u2028",
    "$float",
    '{"$float": "NaN"}',
)

#: Keys that collide with the codec's escape markers, mixed into every mapping.
_TRICKY_KEYS = st.sampled_from(["$float", "$dict", "schema_version", "", "null", "NaN"])

#: User values shaped exactly like the codec's escapes of a non-finite float or of a
#: marker-keyed mapping: a store must give them back as the mappings they are.
MARKER_SHAPES: Final[tuple[dict[str, Any], ...]] = (
    {"$float": "NaN"},
    {"$float": "Infinity"},
    {"$float": "-Infinity"},
    {"$float": 1.5},
    {"$dict": {}},
    {"$dict": {"$float": "NaN"}},
    {"$dict": {"a": 1}},
)

texts: st.SearchStrategy[str] = st.one_of(st.text(max_size=20), st.sampled_from(TRICKY_TEXT))
keys: st.SearchStrategy[str] = st.one_of(
    st.text(max_size=12), _TRICKY_KEYS, st.sampled_from(TRICKY_TEXT)
)
safe_ints: st.SearchStrategy[int] = st.integers(-MAX_SAFE_INT, MAX_SAFE_INT)
#: Integers past 2**53 (where a double loses them) and past 64 bits: JSON has no limit
#: and Python none either, so neither may metalab.
wide_ints: st.SearchStrategy[int] = st.one_of(
    safe_ints,
    st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]),
    st.integers(-(2**80), 2**80),
)
any_floats: st.SearchStrategy[float] = st.floats(allow_nan=True, allow_infinity=True)


def json_values(max_leaves: int = 20) -> st.SearchStrategy[JSONValue]:
    """Nested JSON values: wide ints, non-finite floats, tricky text, marker shapes."""
    scalars: st.SearchStrategy[JSONValue] = st.one_of(
        st.none(),
        st.booleans(),
        wide_ints,
        any_floats,
        texts,
        st.sampled_from(MARKER_SHAPES),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(keys, children, max_size=5),
        ),
        max_leaves=max_leaves,
    )


def metric_values() -> st.SearchStrategy[MetricValue]:
    """Metric values: booleans, wide ints, any floats and strings (tricky ones too)."""
    return st.one_of(st.booleans(), wide_ints, any_floats, texts)


def aware_datetimes(*, utc: bool = True) -> st.SearchStrategy[dt.datetime]:
    """Timezone-aware datetimes: in UTC as metalab writes them, or at any fixed offset."""
    offsets = st.integers(-14 * 60, 14 * 60).map(
        lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
    )
    # hypothesis takes naive bounds and attaches the zones itself.
    return st.datetimes(
        min_value=dt.datetime(1971, 1, 1),  # noqa: DTZ001
        max_value=dt.datetime(2200, 1, 1),  # noqa: DTZ001
        timezones=st.just(dt.UTC) if utc else st.one_of(st.just(dt.UTC), offsets),
    )


def run_ids() -> st.SearchStrategy[str]:
    """Run ids as metalab writes them (64 hex) and as metalab 0.1 wrote them (16 hex)."""
    return st.sampled_from([16, 64]).flatmap(
        lambda n: st.text(alphabet="0123456789abcdef", min_size=n, max_size=n)
    )


def experiment_ids() -> st.SearchStrategy[str]:
    """``name:version`` experiment ids made of characters that are safe in paths."""
    part = st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=16)
    return (
        st.tuples(part, part)
        .map(lambda nv: f"{nv[0]}:{nv[1]}")
        .filter(lambda eid: eid.split(":")[0] not in {".", ".."})
    )


def _json_dicts(max_size: int = 8) -> st.SearchStrategy[dict[str, JSONValue]]:
    return st.dictionaries(keys, json_values(8), max_size=max_size)


def provenances() -> st.SearchStrategy[Provenance]:
    """Provenance blocks with optional fields present or absent."""
    opt_text = st.none() | st.text(max_size=20)
    return st.builds(
        Provenance,
        code_hash=st.text(max_size=16),
        python_version=opt_text,
        metalab_version=opt_text,
        executor_id=opt_text,
        host=opt_text,
        extra=_json_dicts(3),
    )


def artifact_descriptors() -> st.SearchStrategy[ArtifactDescriptor]:
    """Artifact descriptors with relative URIs and sha256-shaped hashes."""
    return st.builds(
        ArtifactDescriptor,
        name=st.text(min_size=1, max_size=16),
        kind=st.sampled_from(["json", "bytes", "file", "numpy"]),
        format=st.sampled_from(["json", "bin", "npy", "txt"]),
        uri=st.text(min_size=1, max_size=40),
        content_hash=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
        size_bytes=st.integers(0, 2**40),
        artifact_id=st.none() | st.uuids().map(str),
        metadata=_json_dicts(3),
    )


def error_infos() -> st.SearchStrategy[ErrorInfo]:
    """Captured exceptions."""
    return st.builds(ErrorInfo, type=st.text(max_size=20), message=st.text(), traceback=st.text())


def run_records(
    *, statuses: st.SearchStrategy[Status] | None = None
) -> st.SearchStrategy[RunRecord]:
    """Run records in every status, with nested params and any metric values."""
    status_st: st.SearchStrategy[Status] = statuses or st.sampled_from(
        ["running", "success", "failed", "cancelled"]
    )
    return st.builds(
        RunRecord,
        run_id=run_ids(),
        experiment_id=experiment_ids(),
        status=status_st,
        started_at=aware_datetimes(),
        finished_at=st.none() | aware_datetimes(),
        duration_ms=st.none() | st.floats(min_value=0, allow_infinity=False),
        params=_json_dicts(),
        metrics=st.dictionaries(keys, metric_values(), max_size=25),
        tags=st.lists(st.text(max_size=10), max_size=4).map(tuple),
        artifacts=st.lists(artifact_descriptors(), max_size=3).map(tuple),
        error=st.none() | error_infos(),
        provenance=provenances(),
        context_fingerprint=st.text(alphabet="0123456789abcdef", max_size=64),
        params_fingerprint=st.text(alphabet="0123456789abcdef", max_size=64),
        seed_fingerprint=st.text(alphabet="0123456789abcdef", max_size=64),
        warnings=st.lists(st.text(max_size=30), max_size=3).map(tuple),
        notes=st.none() | st.text(max_size=40),
    )


def derived_metrics() -> st.SearchStrategy[DerivedMetrics]:
    """Derived-metric documents."""
    return st.builds(DerivedMetrics, metrics=st.dictionaries(keys, metric_values(), max_size=10))


def result_documents() -> st.SearchStrategy[ResultDocument]:
    """Structured results (``capture.data``)."""
    return st.builds(
        ResultDocument,
        data=json_values(40),
        dtype=st.none() | st.sampled_from(["float64", "int32"]),
        shape=st.none() | st.lists(st.integers(0, 1000), max_size=4).map(tuple),
        metadata=_json_dicts(3),
    )


def experiment_manifests() -> st.SearchStrategy[ExperimentManifest]:
    """Experiment submission manifests."""
    return st.builds(
        ExperimentManifest,
        experiment_id=experiment_ids(),
        name=st.text(min_size=1, max_size=16),
        version=st.text(min_size=1, max_size=8),
        submitted_at=aware_datetimes(),
        description=st.none() | st.text(max_size=40),
        tags=st.lists(st.text(max_size=10), max_size=4).map(tuple),
        metadata=_json_dicts(3),
        context_fingerprint=st.text(alphabet="0123456789abcdef", max_size=64),
        operation=st.none()
        | st.builds(OperationRef, name=st.text(min_size=1, max_size=12), ref=st.text(max_size=20)),
        params=_json_dicts(4),
        seeds=_json_dicts(3),
        run_ids=st.lists(run_ids(), max_size=10).map(tuple),
        total_runs=st.integers(0, 10**6),
    )


def artifact_manifests() -> st.SearchStrategy[ArtifactManifest]:
    """Per-run artifact manifests."""
    return st.builds(
        ArtifactManifest, artifacts=st.lists(artifact_descriptors(), max_size=4).map(tuple)
    )


def store_metas() -> st.SearchStrategy[StoreMeta]:
    """``_meta.json`` documents, scoped and standalone."""
    return st.builds(
        StoreMeta,
        experiment_id=st.none() | experiment_ids(),
        created_at=st.none() | aware_datetimes(),
        index_stale=st.booleans(),
    )


#: Small pools of keys and values so random queries and random records meet.
# "$float" and "$dict" are keys the codec's escaped form gives a meaning; "k\x00" holds
# a character jsonb cannot: both engines must still agree on them.
_Q_PARAM_KEYS = ("a", "b", "lr", "opt", "$float", "$dict", "k\x00")
_Q_METRIC_KEYS = ("m1", "m2", "val acc")
_Q_STRINGS = ("", "adam", "sgd", "Zeta", "ä", "adam ")
_Q_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


#: Integers a double cannot tell apart (2**53 and 2**53 + 1), and one past 64 bits.
_Q_BIG_INTS = (2**53, 2**53 + 1, -(2**63) - 1)


def _query_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.booleans(),
        st.integers(-3, 3),
        st.sampled_from(_Q_BIG_INTS),
        st.sampled_from([0.5, -1.25, 2.0, 1e-3, float("inf"), float("-inf"), 3.0]),
        st.sampled_from(_Q_STRINGS),
    )


def _query_values() -> st.SearchStrategy[Any]:
    scalar = st.one_of(_query_scalars(), st.just(float("nan")), st.none())
    return st.one_of(
        scalar,
        st.lists(_query_scalars(), max_size=3),
        st.dictionaries(st.sampled_from(("x", "y", "$float")), _query_scalars(), max_size=2),
    )


def query_records(experiment_id: str = "q:1") -> st.SearchStrategy[RunRecord]:
    """Records whose keys and values overlap with :func:`queries`, for engine comparisons."""
    metric = st.one_of(
        st.booleans(),
        st.integers(-3, 3),
        st.sampled_from(_Q_BIG_INTS),
        st.sampled_from([0.5, -1.25, 2.0, 3.0, float("nan"), float("inf")]),
        st.sampled_from(_Q_STRINGS),
    )
    offsets = st.integers(0, 10_000).map(lambda s: _Q_EPOCH + dt.timedelta(seconds=s))
    return st.builds(
        RunRecord,
        run_id=st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
        experiment_id=st.just(experiment_id),
        status=st.sampled_from(["running", "success", "failed", "cancelled"]),
        started_at=offsets,
        finished_at=st.none() | offsets,
        duration_ms=st.none() | st.sampled_from([0.0, 1.5, 100.0, 2500.0]),
        params=st.dictionaries(st.sampled_from(_Q_PARAM_KEYS), _query_values(), max_size=4),
        metrics=st.dictionaries(st.sampled_from(_Q_METRIC_KEYS), metric, max_size=3),
        tags=st.lists(st.sampled_from(("x", "y", "z")), max_size=2, unique=True).map(tuple),
    )


def query_derived() -> st.SearchStrategy[dict[str, MetricValue]]:
    """Derived metrics over the same small key pool."""
    return st.dictionaries(
        st.sampled_from(("d1", "d2")),
        st.one_of(st.integers(-3, 3), st.sampled_from([0.5, 2.0, float("nan")])),
        max_size=2,
    )


@st.composite
def _predicates(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["params", "metrics", "derived", "record"]))
    if kind == "params":
        path = draw(
            st.sampled_from(
                [(k,) for k in _Q_PARAM_KEYS] + [("a", "x"), ("b", "y"), ("a", "$float")]
            )
        )
        fld = Field("params", path)
    elif kind == "metrics":
        fld = Field("metrics", (draw(st.sampled_from(_Q_METRIC_KEYS)),))
    elif kind == "derived":
        fld = Field("derived", (draw(st.sampled_from(("d1", "d2"))),))
    else:
        name = draw(st.sampled_from(["status", "tags", "duration_ms", "started_at", "run_id"]))
        fld = Field("record", (name,))
    if fld.kind == "list":
        return Contains(fld, draw(st.sampled_from(("x", "y", "w"))))
    if fld.kind == "timestamp":
        literal: Any = _Q_EPOCH + dt.timedelta(seconds=draw(st.integers(0, 10_000)))
    elif fld.kind == "number":
        literal = draw(st.sampled_from([0.0, 1.5, 100, 2500.0, float("inf")]))
    elif fld.kind == "string":
        literal = draw(st.sampled_from(["success", "failed", "running", "cancelled"]))
    else:
        literal = draw(_query_scalars())
    op: Any = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in", "exists"]))
    if op == "exists":
        return Exists(fld)
    if op in ("in", "not in"):
        values = [literal, *draw(st.lists(st.just(literal) | _same_kind(fld), max_size=2))]
        return In(fld, tuple(values), negated=op == "not in")
    if isinstance(literal, bool) and op not in ("==", "!="):
        op = "=="
    return Compare(fld, op, literal)


def _same_kind(fld: Any) -> st.SearchStrategy[Any]:
    if fld.kind == "string":
        return st.sampled_from(["success", "failed"])
    if fld.kind == "number":
        return st.sampled_from([1.5, 100])
    if fld.kind == "timestamp":
        return st.just(_Q_EPOCH)
    return _query_scalars()


def query_expressions() -> st.SearchStrategy[Any]:
    """Random filters over the keys of :func:`query_records` (``metalab.query`` ASTs)."""
    return st.recursive(
        _predicates(),
        lambda children: st.one_of(
            st.lists(children, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
            st.lists(children, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
            children.map(Not),
        ),
        max_leaves=6,
    )


def queries() -> st.SearchStrategy[Any]:
    """Random complete queries: filter, sort keys, limit and offset."""
    sort_fields = st.sampled_from(
        [Field("params", (k,)) for k in _Q_PARAM_KEYS]
        + [Field("metrics", (k,)) for k in _Q_METRIC_KEYS]
        + [Field("derived", ("d1",)), Field("record", ("duration_ms",))]
        + [Field("record", ("started_at",)), Field("record", ("status",))]
    )
    order = st.lists(st.builds(OrderBy, sort_fields, st.booleans()), max_size=2).map(tuple)
    return st.builds(
        Query,
        where=st.none() | query_expressions(),
        order_by=order,
        limit=st.none() | st.integers(0, 10),
        offset=st.integers(0, 3),
    )
