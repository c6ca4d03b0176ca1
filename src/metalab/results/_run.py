"""One run of an experiment as :class:`~metalab.results.Results` presents it."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, overload

from metalab._display import html_table
from metalab._optional import require
from metalab.errors import CorruptRecordError
from metalab.records import (
    ArtifactDescriptor,
    ErrorInfo,
    ExperimentManifest,
    JSONValue,
    MetricValue,
    Provenance,
    RunRecord,
    Status,
)
from metalab.series import MetricSeries
from metalab.store.abc import SupportsExperimentManifests

if TYPE_CHECKING:
    from metalab.results._results import Results

__all__ = ["Run"]


class Run:
    """One run of an experiment, as stored.

    Attributes come from the run record; :attr:`derived`, :meth:`artifact`,
    :meth:`log` and :meth:`data` read from the store the results were loaded from.
    """

    __slots__ = ("_record", "_results")

    def __init__(self, record: RunRecord, results: Results) -> None:
        self._record = record
        self._results = results

    def __repr__(self) -> str:
        return f"<Run {self._record.run_id[:12]} {self._record.status} params={self.params!r}>"

    def _repr_html_(self) -> str:
        """The run as a two-column table (notebooks)."""
        r = self._record
        rows: list[list[object]] = [
            ["experiment", r.experiment_id],
            ["status", r.status],
            ["started", r.started_at],
            ["finished", r.finished_at],
            ["duration_ms", r.duration_ms],
        ]
        if r.error is not None:
            rows.append(["error", f"{r.error.type}: {r.error.message}"])
        if r.tags:
            rows.append(["tags", ", ".join(r.tags)])
        rows += [[f"params.{k}", v] for k, v in sorted(r.params.items())]
        rows += [[f"metrics.{k}", v] for k, v in sorted(r.metrics.items())]
        rows += [[f"derived.{k}", v] for k, v in sorted(self.derived.items())]
        return html_table(["field", "value"], rows, caption=f"Run {r.run_id}")

    @property
    def record(self) -> RunRecord:
        """The underlying immutable record."""
        return self._record

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._record.run_id

    @property
    def experiment_id(self) -> str:
        """The experiment it belongs to."""
        return self._record.experiment_id

    @property
    def status(self) -> Status:
        """``running``, ``success``, ``failed`` or ``cancelled``."""
        return self._record.status

    @property
    def params(self) -> dict[str, JSONValue]:
        """The run's parameters."""
        return self._record.params

    @property
    def metrics(self) -> dict[str, MetricValue]:
        """The metrics the operation captured."""
        return self._record.metrics

    @property
    def derived(self) -> dict[str, MetricValue]:
        """Metrics computed after the run (:meth:`Results.compute_derived`); may be empty."""
        return self._results.derived_of(self._record.run_id)

    @property
    def tags(self) -> tuple[str, ...]:
        """The run's tags."""
        return self._record.tags

    @property
    def started_at(self) -> dt.datetime:
        """When the run started (UTC)."""
        return self._record.started_at

    @property
    def finished_at(self) -> dt.datetime | None:
        """When it ended (UTC); ``None`` while running."""
        return self._record.finished_at

    @property
    def duration_ms(self) -> float | None:
        """Wall time in milliseconds; ``None`` while running."""
        return self._record.duration_ms

    @property
    def error(self) -> ErrorInfo | None:
        """The exception that ended a failed run (type, message, traceback)."""
        return self._record.error

    @property
    def provenance(self) -> Provenance:
        """Where and with what the run executed."""
        return self._record.provenance

    @property
    def artifacts(self) -> tuple[ArtifactDescriptor, ...]:
        """Descriptors of the run's artifacts (name, kind, format, sha256, size)."""
        return self._record.artifacts

    def artifact(self, name: str) -> Any:
        """Return artifact ``name`` loaded as it was captured, as metalab 0.1 did.

        - kind ``numpy`` (a ``.npy`` file): the NumPy array (never unpickled);
        - kind ``json`` (or format ``json``): the JSON value (dicts, lists, ...);
        - anything else (bytes, files, figures): the stored bytes.

        :meth:`artifact_bytes` always returns the bytes.

        Raises:
            ArtifactNotFoundError: The run has no such artifact.
            CorruptRecordError: The bytes are not what the descriptor's kind says.
            MissingDependencyError: A NumPy artifact and NumPy cannot be imported.
        """
        data = self.artifact_bytes(name)
        descriptor = next((a for a in self._record.artifacts if a.name == name), None)
        if descriptor is None:
            return data
        where = f"artifact {name!r} of run {self._record.run_id}"
        if descriptor.kind == "numpy" or descriptor.format == "npy":
            return _load_npy(data, where)
        if descriptor.kind == "json" or descriptor.format == "json":
            try:
                return json.loads(data)
            except ValueError as exc:
                raise CorruptRecordError(where, f"kind json but not JSON: {exc}") from None
        return data

    def artifact_bytes(self, name: str) -> bytes:
        """Return the stored bytes of artifact ``name``, whatever its kind.

        Raises:
            ArtifactNotFoundError: The run has no such artifact.
        """
        return self._results.store.get_artifact(self._record.run_id, name)

    @property
    def logs(self) -> list[str]:
        """The names of the run's logs (``"run"`` is the one ``capture.log`` writes).

        Raises:
            CapabilityError: The store does not keep logs.
        """
        return self._results.log_store("Run.logs").list_logs(self._record.run_id)

    def log(self, name: str = "run") -> str | None:
        """Return the text of log ``name``, or ``None`` if the run has no such log.

        Raises:
            CapabilityError: The store does not keep logs.
        """
        return self._results.log_store("Run.log()").get_log(self._record.run_id, name)

    @overload
    def series(self, name: str) -> MetricSeries: ...
    @overload
    def series(self, name: None = None) -> dict[str, MetricSeries]: ...
    def series(self, name: str | None = None) -> MetricSeries | dict[str, MetricSeries]:
        """Return the series of metric ``name``, or every series of the run by name.

        Reads the store each time, so the series of a running run grow between calls.

        Raises:
            KeyError: The run logged no series ``name`` (the message lists those it has).
            CapabilityError: The store keeps no series.
        """
        found = self._results.series_store("Run.series()").get_series(self._record.run_id)
        if name is None:
            return found
        try:
            return found[name]
        except KeyError:
            raise KeyError(
                f"run {self._record.run_id} has no series {name!r} "
                f"(it has: {', '.join(sorted(found)) or 'none'})"
            ) from None

    @property
    def context_fingerprint(self) -> str:
        """The fingerprint of the experiment's context when the run ran."""
        return self._record.context_fingerprint

    @property
    def params_fingerprint(self) -> str:
        """The fingerprint of the run's params."""
        return self._record.params_fingerprint

    @property
    def seed_fingerprint(self) -> str:
        """The fingerprint of the run's seed bundle."""
        return self._record.seed_fingerprint

    @property
    def experiment(self) -> ExperimentManifest | None:
        """The manifest of the latest submission of the run's experiment, if stored."""
        store = self._results.store
        if not isinstance(store, SupportsExperimentManifests):
            return None
        manifests = store.list_experiment_manifests(self._record.experiment_id)
        return manifests[-1] if manifests else None

    def set_tags(self, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> Run:
        """Add and remove tags of this run in its store; return the run as it is now.

        The stored record keeps the edit (a run still going keeps it when it ends).

        Raises:
            CapabilityError: The store cannot edit runs.
            ConfigError: A tag is not a non-empty string, or is added and removed.
        """
        store = self._results.edit_store("Run.set_tags()")
        return Run(store.set_tags(self._record.run_id, add=add, remove=remove), self._results)

    def set_notes(self, text: str | None) -> Run:
        """Set (``None``: clear) this run's notes in its store; return the run as it is now.

        Raises:
            CapabilityError: The store cannot edit runs.
        """
        store = self._results.edit_store("Run.set_notes()")
        return Run(store.set_notes(self._record.run_id, text), self._results)

    def list_data(self) -> list[str]:
        """The names of the run's structured data: :attr:`data_names` by its 0.1 name."""
        return self.data_names

    @property
    def notes(self) -> str | None:
        """The run's notes (``capture.note``), or ``None``."""
        return self._record.notes

    @property
    def data_names(self) -> list[str]:
        """The names of the structured data captured with ``capture.data``.

        Raises:
            CapabilityError: The store does not keep structured results.
        """
        store = self._results.result_store("Run.data_names")
        return store.list_results(self._record.run_id)

    def data(self, name: str) -> JSONValue:
        """Return structured data ``name`` (``None`` if the run has none by that name).

        Arrays captured from NumPy come back as nested lists; the stored document
        (with ``dtype`` and ``shape``) is ``results.store.get_result(run_id, name)``.

        Raises:
            CapabilityError: The store does not keep structured results.
        """
        document = self._results.result_store("Run.data()").get_result(self._record.run_id, name)
        return None if document is None else document.data


def _load_npy(data: bytes, where: str) -> Any:
    """The array of a ``.npy`` file's bytes; object arrays (pickles) are refused."""
    require("numpy", extra="numpy", feature=f"Run.artifact() of the NumPy {where}")
    import numpy as np  # noqa: PLC0415 -- optional (numpy extra), required above

    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise CorruptRecordError(where, f"kind numpy but not a .npy array: {exc}") from None
