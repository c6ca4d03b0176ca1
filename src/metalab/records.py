"""The documents metalab persists, as frozen msgspec Structs.

A run produces one :class:`RunRecord`; stores keep it next to its artifacts
(:class:`ArtifactDescriptor`), derived metrics (:class:`DerivedMetrics`), structured
results (:class:`ResultDocument`), the experiment's submission manifest
(:class:`ExperimentManifest`) and the store's own ``_meta.json`` (:class:`StoreMeta`).
The encoding of these documents, and the upgrade of older formats, lives in
``metalab._codec``; this module only defines their shape.

All timestamps are timezone-aware and stored in UTC. A naive ``datetime`` is refused
with a ``ValueError`` rather than guessed at: by the factory helpers
(:meth:`RunRecord.running`, :meth:`RunRecord.succeeded`, ...), which callers should use
instead of assembling timestamps and durations by hand, and by the codec, which will
not write one. (Structs skip ``__post_init__`` validation on purpose: it would run on
every decode and double the cost of scanning a store.)
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import traceback as tb
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal, TypeAlias, cast

import msgspec

from metalab._version import __version__

__all__ = [
    "FINISHED_STATUSES",
    "ArtifactDescriptor",
    "ArtifactManifest",
    "DerivedMetrics",
    "ErrorInfo",
    "ExperimentManifest",
    "JSONValue",
    "MetricValue",
    "OperationRef",
    "Provenance",
    "ResultDocument",
    "RunEdits",
    "RunRecord",
    "RunState",
    "Status",
    "StoreMeta",
    "Timestamp",
    "ensure_aware",
    "metric_value",
    "utc_now",
]

if TYPE_CHECKING:
    JSONValue: TypeAlias = (
        bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
    )
    """Any value JSON can hold (non-finite floats included: the codec escapes them)."""
else:
    # msgspec cannot resolve recursive aliases on Python 3.11; decoding JSON into Any
    # yields exactly these values, and the static alias keeps callers honest.
    JSONValue = Any

MetricValue: TypeAlias = bool | int | float | str
"""A metric is a single scalar: a number, a string or a boolean."""

Status: TypeAlias = Literal["running", "success", "failed", "cancelled"]
"""The life cycle of a run: ``running`` until it ends in one of the other three."""


class RunState(StrEnum):
    """metalab 0.1's status enum, exported as ``metalab.Status``.

    Its members are the strings of :data:`Status` (``RunState.SUCCESS == "success"``),
    so a 0.1 script's ``record.status == metalab.Status.FAILED`` keeps working;
    records themselves hold the plain strings.
    """

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATUSES: Final[frozenset[str]] = frozenset({"success", "failed", "cancelled"})


def utc_now() -> dt.datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


def ensure_aware(value: dt.datetime, name: str) -> dt.datetime:
    """Return ``value`` in UTC, or raise if it is naive.

    Args:
        value: The datetime to check.
        name: The field it is meant for, named in the error.

    Raises:
        ValueError: ``value`` has no time zone.
    """
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(
            f"{name} must be timezone-aware, got naive {value!r}; "
            "use datetime.now(datetime.UTC) or attach a tzinfo"
        )
    if value.tzinfo is dt.UTC:
        return value
    return value.astimezone(dt.UTC)


def metric_value(name: str, value: object) -> MetricValue:
    """Return ``value`` as a metric, or raise if it is not a single scalar.

    NumPy scalars (``np.float64(0.5)``, ``arr.mean()``) become the Python value they
    hold, and subclasses of the scalar types (an ``IntEnum``, a ``str`` subclass)
    their base type, so that what is stored decodes to what was meant.

    Args:
        name: The metric's name, quoted in the error.
        value: The value to check.

    Raises:
        TypeError: ``value`` is not a bool, int, float or str.
    """
    kind = type(value)
    if kind is float or kind is int or kind is str or kind is bool:
        return cast(MetricValue, value)
    if hasattr(value, "dtype") and getattr(value, "shape", None) == () and hasattr(value, "item"):
        return metric_value(name, value.item())
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise TypeError(
        f"metric {name!r} must be a single bool, int, float or str, got "
        f"{type(value).__name__}; store arrays and nested values with capture.data()"
    )


Timestamp: TypeAlias = Annotated[dt.datetime, msgspec.Meta(tz=True)]
"""A timezone-aware datetime; decoding a naive one is an error."""


class _Part(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Base of every record type: immutable, keyword-only, not tracked by the GC.

    ``timestamp_fields`` names the datetime fields the codec checks before writing.

    ``gc=False`` is safe because decoded JSON cannot hold reference cycles, and it
    keeps the cyclic collector from rescanning every record during large scans.
    ``omit_defaults`` keeps files small and lets the codec take its fast path.
    """

    timestamp_fields: ClassVar[tuple[str, ...]] = ()


class _Document(_Part, frozen=True, tag_field="schema_version", tag=1):
    """Base of top-level persisted documents, which carry ``"schema_version": 1``."""


class Provenance(_Part, frozen=True):
    """Where and with what a run was executed.

    ``host`` and ``pid`` name the process that ran it, so that a tool can tell a
    ``running`` record whose process died from one that is still at work.
    """

    code_hash: str = ""
    python_version: str | None = None
    metalab_version: str | None = None
    executor_id: str | None = None
    host: str | None = None
    pid: int | None = None
    extra: dict[str, JSONValue] = {}

    @classmethod
    def current(cls, *, executor_id: str | None = None, code_hash: str = "") -> Provenance:
        """Describe the running interpreter, host and process."""
        return cls(
            code_hash=code_hash,
            python_version=platform.python_version(),
            metalab_version=__version__,
            executor_id=executor_id,
            host=socket.gethostname(),
            pid=os.getpid(),
        )


class ArtifactDescriptor(_Part, frozen=True):
    """One stored artifact of a run.

    ``uri`` is relative to the store root (``artifacts/<run_id>/<file>``), so a store
    that is copied or moved keeps resolving its artifacts. ``content_hash`` is the hex
    sha256 of the bytes (stores written by metalab 0.1 hold its first 16 characters).
    """

    name: str
    kind: str
    format: str
    uri: str
    content_hash: str
    size_bytes: int
    artifact_id: str | None = None
    metadata: dict[str, JSONValue] = {}


class ArtifactManifest(_Document, frozen=True):
    """The ``_manifest.json`` listing the artifacts of one run."""

    artifacts: tuple[ArtifactDescriptor, ...] = ()


class ErrorInfo(_Part, frozen=True):
    """The exception that ended a failed run."""

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Capture an exception's type, message and formatted traceback."""
        return cls(
            type=type(exc).__qualname__,
            message=str(exc),
            traceback="".join(tb.format_exception(exc)),
        )


class RunEdits(_Part, frozen=True):
    """What people changed on a run after it was recorded: tags and notes.

    Kept in the record, beside the tags and notes they produced, so that a later
    write of the run's status (the runner finishing it) carries them over instead
    of dropping them (see ``metalab.store._rules.keep_edits``).

    Attributes:
        tags_added: Tags added (never also in ``tags_removed``).
        tags_removed: Tags removed.
        notes: The notes set, ``""`` when they were cleared, ``None`` if never set.
        edited_at: When the last edit was made (UTC).
    """

    edited_at: Timestamp
    tags_added: tuple[str, ...] = ()
    tags_removed: tuple[str, ...] = ()
    notes: str | None = None


class RunRecord(_Document, frozen=True):
    """The immutable record of one run.

    Attributes:
        run_id: Hex id derived from the experiment id, context, params and seeds.
        experiment_id: ``"name:version"`` of the experiment the run belongs to.
        status: ``running``, ``success``, ``failed`` or ``cancelled``.
        started_at: When the run started (UTC).
        finished_at: When it ended (UTC), ``None`` while running.
        duration_ms: Wall time of the run in milliseconds, ``None`` while running.
        params: The resolved parameters of the run.
        metrics: Scalar metrics captured by the operation.
        tags: Free-form labels.
        artifacts: Descriptors of the artifacts the run stored.
        error: What went wrong, for failed runs.
        provenance: Interpreter, host and code version.
        context_fingerprint: Fingerprint of the experiment context.
        params_fingerprint: Fingerprint of ``params``.
        seed_fingerprint: Fingerprint of the seed bundle.
        warnings: Warnings emitted while running.
        notes: Free-form text.
        edits: The tags and notes people changed after the run was recorded
            (``store.set_tags``, ``store.set_notes``), carried over by later writes.
    """

    run_id: str
    experiment_id: str
    status: Status
    started_at: Timestamp
    finished_at: Timestamp | None = None
    duration_ms: float | None = None
    params: dict[str, JSONValue] = {}
    metrics: dict[str, MetricValue] = {}
    tags: tuple[str, ...] = ()
    artifacts: tuple[ArtifactDescriptor, ...] = ()
    error: ErrorInfo | None = None
    provenance: Provenance = Provenance()
    context_fingerprint: str = ""
    params_fingerprint: str = ""
    seed_fingerprint: str = ""
    warnings: tuple[str, ...] = ()
    notes: str | None = None
    edits: RunEdits | None = None

    timestamp_fields: ClassVar[tuple[str, ...]] = ("started_at", "finished_at")

    @property
    def is_finished(self) -> bool:
        """Whether the run has ended (success, failure or cancellation)."""
        return self.status != "running"

    @property
    def params_resolved(self) -> dict[str, JSONValue]:
        """:attr:`params` by its metalab 0.1 name."""
        return self.params

    @classmethod
    def running(
        cls,
        *,
        run_id: str,
        experiment_id: str,
        params: dict[str, JSONValue] | None = None,
        started_at: dt.datetime | None = None,
        tags: tuple[str, ...] = (),
        provenance: Provenance | None = None,
        context_fingerprint: str = "",
        params_fingerprint: str = "",
        seed_fingerprint: str = "",
    ) -> RunRecord:
        """Record a run that has just started (``started_at`` defaults to now)."""
        return cls(
            run_id=run_id,
            experiment_id=experiment_id,
            status="running",
            started_at=utc_now()
            if started_at is None
            else ensure_aware(started_at, "RunRecord.started_at"),
            params=params or {},
            tags=tags,
            provenance=provenance or Provenance(),
            context_fingerprint=context_fingerprint,
            params_fingerprint=params_fingerprint,
            seed_fingerprint=seed_fingerprint,
        )

    def succeeded(
        self,
        *,
        metrics: dict[str, MetricValue] | None = None,
        artifacts: tuple[ArtifactDescriptor, ...] = (),
        finished_at: dt.datetime | None = None,
        warnings: tuple[str, ...] = (),
    ) -> RunRecord:
        """Return this running record finished successfully."""
        return self._finish("success", metrics, artifacts, None, finished_at, warnings)

    def failed(
        self,
        error: BaseException | ErrorInfo,
        *,
        metrics: dict[str, MetricValue] | None = None,
        artifacts: tuple[ArtifactDescriptor, ...] = (),
        finished_at: dt.datetime | None = None,
        warnings: tuple[str, ...] = (),
    ) -> RunRecord:
        """Return this running record finished with an error."""
        info = error if isinstance(error, ErrorInfo) else ErrorInfo.from_exception(error)
        return self._finish("failed", metrics, artifacts, info, finished_at, warnings)

    def cancelled(
        self,
        *,
        metrics: dict[str, MetricValue] | None = None,
        artifacts: tuple[ArtifactDescriptor, ...] = (),
        finished_at: dt.datetime | None = None,
    ) -> RunRecord:
        """Return this running record marked as cancelled."""
        return self._finish("cancelled", metrics, artifacts, None, finished_at, ())

    def _finish(
        self,
        status: Status,
        metrics: dict[str, MetricValue] | None,
        artifacts: tuple[ArtifactDescriptor, ...],
        error: ErrorInfo | None,
        finished_at: dt.datetime | None,
        warnings: tuple[str, ...],
    ) -> RunRecord:
        end = utc_now() if finished_at is None else ensure_aware(finished_at, "finished_at")
        duration = max((end - self.started_at).total_seconds() * 1000.0, 0.0)
        return msgspec.structs.replace(
            self,
            status=status,
            finished_at=end,
            duration_ms=duration,
            metrics=dict(metrics) if metrics is not None else self.metrics,
            artifacts=self.artifacts + artifacts,
            error=error,
            warnings=self.warnings + warnings,
        )


class DerivedMetrics(_Document, frozen=True):
    """Metrics computed after a run from its record and data (``derived/<run_id>.json``)."""

    metrics: dict[str, MetricValue] = {}


class ResultDocument(_Document, frozen=True):
    """Structured data captured with ``capture.data`` (``results/<run_id>/<name>.json``)."""

    data: JSONValue = None
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    metadata: dict[str, JSONValue] = {}


class OperationRef(_Part, frozen=True):
    """Which function an experiment runs."""

    name: str
    ref: str = ""
    code_hash: str = ""


class ExperimentManifest(_Document, frozen=True):
    """What was submitted: one manifest per ``run()`` of an experiment."""

    experiment_id: str
    name: str
    version: str
    submitted_at: Timestamp
    description: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, JSONValue] = {}
    context_fingerprint: str = ""
    operation: OperationRef | None = None
    params: dict[str, JSONValue] = {}
    seeds: dict[str, JSONValue] = {}
    run_ids: tuple[str, ...] = ()
    total_runs: int = 0

    timestamp_fields: ClassVar[tuple[str, ...]] = ("submitted_at",)


class StoreMeta(_Document, frozen=True):
    """The ``_meta.json`` of a store directory.

    Attributes:
        experiment_id: The experiment the directory belongs to; ``None`` for a
            standalone store that is not bound to one experiment.
        created_by: The writer (``"metalab"``).
        created_at: When the directory was laid down; ``None`` for old stores.
        index_stale: Set when a write reached the files but not the Postgres index.
        index_stale_token: A new random token with every such mark, so that a sync
            clears only the mark it saw before it read the files (a later mark stays).
    """

    experiment_id: str | None = None
    created_by: str = "metalab"
    created_at: Timestamp | None = None
    index_stale: bool = False
    index_stale_token: str | None = None

    timestamp_fields: ClassVar[tuple[str, ...]] = ("created_at",)
