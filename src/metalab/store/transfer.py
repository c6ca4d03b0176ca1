"""Copy experiments between any two stores: ``export_store``.

The source is never modified and nothing at the destination is ever deleted. A copy
is idempotent and resumable: every item is compared with what the destination already
holds and only missing or changed items are written, so running the same export again
after an interruption finishes the job. A destination item that differs from the
source is replaced only when it is the unfinished (``running``) state of a run that
the source has finished, or when ``overwrite=True``; otherwise it is reported as a
conflict and left alone. Artifacts are verified by their bytes on both ends: the
source's bytes must match their recorded sha256, the bytes that arrive are read back
and hashed, and on a rerun a destination artifact is skipped only if its bytes (not
just its record) match; one whose bytes were damaged is copied again and listed in
:attr:`ExportReport.repaired`. A document that cannot be decoded (a run record, derived
metrics, an artifact manifest, a structured result) is a failed item of its kind, named
in :attr:`ExportReport.problems`, and the export goes on with the others.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from metalab._codec import DERIVED, EXPERIMENT_MANIFEST, RESULT, RUN_RECORD, DocumentCodec
from metalab.errors import (
    ArtifactNotFoundError,
    ConfigError,
    CorruptRecordError,
    ExperimentMismatchError,
)
from metalab.records import ArtifactDescriptor, DerivedMetrics, ResultDocument, RunRecord
from metalab.series import MetricSeries, SeriesPoint
from metalab.store._factory import coerce_store_config
from metalab.store._file import FileStore
from metalab.store._rules import completes
from metalab.store.abc import (
    ProgressCallback,
    Store,
    StoreConfig,
    StoreLike,
    SupportsArtifactStreaming,
    SupportsBulkPut,
    SupportsExperimentManifests,
    SupportsExperiments,
    SupportsLogs,
    SupportsSeries,
    SupportsStructuredResults,
)
from metalab.store.locator import redact

__all__ = ["ExportReport", "ItemCounts", "export_store", "sha256_matches"]

Kind = Literal["records", "derived", "artifacts", "logs", "results", "series", "manifests"]
KINDS: Final[tuple[Kind, ...]] = (
    "records",
    "derived",
    "artifacts",
    "logs",
    "results",
    "series",
    "manifests",
)
_BATCH: Final = 1_000
_CHUNK: Final = 1 << 20


@dataclass
class ItemCounts:
    """What happened to the items of one kind."""

    copied: int = 0
    skipped: int = 0
    conflicts: int = 0
    failed: int = 0


@dataclass
class ExportReport:
    """The outcome of :func:`export_store`.

    Attributes:
        experiments: The experiment ids that were exported.
        counts: Per kind (records, derived, artifacts, logs, results, manifests):
            copied, skipped (already identical), conflicts (different at the
            destination, left alone) and failed.
        problems: One readable line per conflict or failure, naming the item.
        repaired: One line per destination artifact whose bytes did not match its
            record (damaged or truncated) and that was copied again from the source.
    """

    experiments: list[str] = field(default_factory=list)
    counts: dict[Kind, ItemCounts] = field(default_factory=lambda: {k: ItemCounts() for k in KINDS})
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing failed and nothing conflicted."""
        return not self.problems

    @property
    def copied(self) -> int:
        """Items copied, all kinds together."""
        return sum(c.copied for c in self.counts.values())

    def _problem(self, kind: Kind, outcome: Literal["conflicts", "failed"], text: str) -> None:
        counts = self.counts[kind]
        setattr(counts, outcome, getattr(counts, outcome) + 1)
        self.problems.append(text)


def _as_config(store: StoreLike | Store) -> tuple[StoreConfig | None, Store | None]:
    if isinstance(store, StoreConfig | str | os.PathLike):
        return coerce_store_config(store), None
    return None, store


def _places(config: StoreConfig | None, store: Store | None) -> set[tuple[str, ...]]:
    """Where a store keeps its data: its files' directory and its index, if any."""
    if config is None:
        config = getattr(store, "config", None)
    places: set[tuple[str, ...]] = set()
    root = getattr(config, "root", None) or getattr(config, "file_root", None)
    if isinstance(root, str):
        places.add(("files", os.path.realpath(root)))
    connection = getattr(config, "connection_string", None)
    if isinstance(connection, str):
        # The password does not make it another database.
        places.add(("index", redact(connection), str(getattr(config, "schema", ""))))
    if not places and store is not None:
        places.add(("store", str(id(store))))
    return places


def _describe(place: tuple[str, ...]) -> str:
    kind, *what = place
    if kind == "files":
        return f"the files under {what[0]!r}"
    if kind == "index":
        return f"the index in schema {what[1]!r} of {what[0]!r}"
    return "one connected store"


def export_store(
    source: StoreLike | Store,
    destination: StoreLike | Store,
    experiment_id: str | None = None,
    *,
    artifacts: bool = True,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> ExportReport:
    """Copy one experiment, or every experiment, from ``source`` to ``destination``.

    Args:
        source: A locator, config or connected store to read from.
        destination: A locator, config or connected store to write to. A locator or
            config is scoped to each exported experiment, so a collection root
            receives one subdirectory per experiment.
        experiment_id: Export only this experiment (default: all of the source's).
        artifacts: Copy artifacts too (the default: they are the user's data).
        overwrite: Replace destination items that differ from the source.
        progress: Called as ``progress(runs_done, runs_total)``.

    Returns:
        What was copied, skipped, in conflict or failed.

    Raises:
        ConfigError: The source and the destination are the same store (the same
            files, or the same index).
        StoreError: A store cannot be opened or a write fails outright.
    """
    report = ExportReport()
    src_config, src_store = _as_config(source)
    dst_config, dst_store = _as_config(destination)
    shared = _places(src_config, src_store) & _places(dst_config, dst_store)
    if shared:
        where = ", ".join(sorted(_describe(place) for place in shared))
        raise ConfigError(
            f"the source and the destination are the same store ({where}); "
            "export copies from one store to another"
        )
    if src_config is not None:
        base = src_config.scoped(experiment_id) if experiment_id else src_config
        with base.connect() as probe:
            experiments = _experiments_of(probe, experiment_id)
    else:
        assert src_store is not None
        experiments = _experiments_of(src_store, experiment_id)
    report.experiments = experiments
    for eid in experiments:
        src = _open(src_config, src_store, eid)
        dst = _open(dst_config, dst_store, eid)
        try:
            _Exporter(src, dst, eid, report, artifacts, overwrite, progress).run()
        finally:
            if src_config is not None:
                src.close()
            if dst_config is not None:
                dst.close()
    return report


def _experiments_of(store: Store, experiment_id: str | None) -> list[str]:
    if experiment_id is not None:
        return [experiment_id]
    if isinstance(store, SupportsExperiments):
        return store.list_experiments()
    return sorted({r.experiment_id for r in store.list_run_records()})


def _open(config: StoreConfig | None, store: Store | None, experiment_id: str) -> Store:
    if config is not None:
        if config.is_scoped and config.experiment_id != experiment_id:
            # to_locator() holds the password; the message must not.
            raise ExperimentMismatchError(
                redact(config.to_locator()), experiment_id, config.experiment_id
            )
        return config.scoped(experiment_id).connect()
    assert store is not None
    return store


@dataclass
class _Exporter:
    src: Store
    dst: Store
    experiment_id: str
    report: ExportReport
    artifacts: bool
    overwrite: bool
    progress: ProgressCallback | None

    def run(self) -> None:
        self._manifests()
        records = self._source_records()
        total = len(records)
        pending: list[RunRecord] = []
        for done, record in enumerate(records, start=1):
            if self._wants_record(record):
                pending.append(record)
            if len(pending) >= _BATCH:
                self._put_records(pending)
            self._extras(record)
            if self.progress is not None:
                self.progress(done, total)
        self._put_records(pending)

    def _source_records(self) -> list[RunRecord]:
        """The source's records; each that cannot be decoded is a failed item, not the end.

        A FileStore (or the files an index wraps) lists every such file and hands out
        the others; any other store can only say that its listing failed.
        """
        try:
            return self.src.list_run_records(self.experiment_id)
        except CorruptRecordError as exc:
            files = getattr(self.src, "files", self.src)
            if not isinstance(files, FileStore):
                self.report._problem(
                    "records",
                    "failed",
                    f"the records of {self.experiment_id!r} cannot be listed at the source: {exc}",
                )
                return []
            scan = files.scan_run_records(self.experiment_id)
            for problem in scan.problems:
                self.report._problem("records", "failed", f"{problem} (at the source; not copied)")
            return scan.records

    def _wants_record(self, record: RunRecord) -> bool:
        counts = self.report.counts["records"]
        try:
            existing = self.dst.get_run_record(record.run_id)
        except CorruptRecordError as exc:
            self.report._problem("records", "failed", f"{exc} (at the destination; left alone)")
            return False
        if existing is None:
            return True
        if RUN_RECORD.encode(existing) == RUN_RECORD.encode(record):
            counts.skipped += 1
            return False
        if self.overwrite or completes(existing.status, record.status):
            return True
        self.report._problem(
            "records",
            "conflicts",
            f"run {record.run_id} of {self.experiment_id!r} differs at the destination "
            "(pass overwrite=True / --overwrite to replace it)",
        )
        return False

    def _put_records(self, pending: list[RunRecord]) -> None:
        if not pending:
            return
        if isinstance(self.dst, SupportsBulkPut):
            self.dst.put_run_records(pending)
        else:
            for record in pending:
                self.dst.put_run_record(record)
        self.report.counts["records"].copied += len(pending)
        pending.clear()

    def _extras(self, record: RunRecord) -> None:
        run_id = record.run_id
        with self._failing("derived"):
            self._derived(run_id)
        if self.artifacts:
            listed: list[ArtifactDescriptor] = []
            with self._failing("artifacts"):
                listed = self._artifact_list(record)
            for descriptor in listed:
                with self._failing("artifacts"):
                    self._artifact(run_id, descriptor)
        with self._failing("results"):
            self._logs_and_results(run_id)
        with self._failing("series"):
            self._series(run_id)

    @contextlib.contextmanager
    def _failing(self, kind: Kind) -> Iterator[None]:
        """Count a document that cannot be decoded as a failed item of ``kind``, and go on."""
        try:
            yield
        except CorruptRecordError as exc:
            self.report._problem(kind, "failed", f"{exc}; not copied")

    def _logs_and_results(self, run_id: str) -> None:
        if isinstance(self.src, SupportsLogs) and isinstance(self.dst, SupportsLogs):
            src_logs, dst_logs = self.src, self.dst
            for name in src_logs.list_logs(run_id):
                self._copy_text(
                    "logs",
                    f"log {name!r} of run {run_id}",
                    src_logs.get_log(run_id, name),
                    dst_logs.get_log(run_id, name),
                    functools.partial(dst_logs.put_log, run_id, name),
                )
        if isinstance(self.src, SupportsStructuredResults) and isinstance(
            self.dst, SupportsStructuredResults
        ):
            src, dst = self.src, self.dst
            for name in src.list_results(run_id):
                doc, there = src.get_result(run_id, name), dst.get_result(run_id, name)
                self._copy_doc(
                    "results",
                    f"result {name!r} of run {run_id}",
                    doc,
                    there,
                    functools.partial(dst.put_result, run_id, name),
                )

    def _derived(self, run_id: str) -> None:
        doc = self.src.get_derived(run_id)
        if doc is None:
            return
        there = self.dst.get_derived(run_id)
        self._copy_doc(
            "derived",
            f"derived metrics of run {run_id}",
            doc,
            there,
            lambda d: self.dst.put_derived(run_id, d.metrics),
        )

    def _series(self, run_id: str) -> None:
        if not (isinstance(self.src, SupportsSeries) and isinstance(self.dst, SupportsSeries)):
            return
        found = _series_points(self.src.get_series(run_id))
        if not found:
            return
        there = _series_points(self.dst.get_series(run_id))
        counts = self.report.counts["series"]
        if _point_keys(found) == _point_keys(there):
            counts.skipped += 1
        elif not there or self.overwrite or not (_point_keys(there) - _point_keys(found)):
            # Series that only grew since the last export are progress, not a conflict.
            self.dst.append_series(run_id, found, restart=True)
            counts.copied += 1
        else:
            self.report._problem(
                "series", "conflicts", f"the series of run {run_id} differ at the destination"
            )

    def _copy_doc(
        self,
        kind: Kind,
        what: str,
        doc: DerivedMetrics | ResultDocument | None,
        there: DerivedMetrics | ResultDocument | None,
        put: Callable[[Any], None],
    ) -> None:
        if doc is None:
            return
        counts = self.report.counts[kind]
        if there is not None and _same(doc, there):
            counts.skipped += 1
        elif there is None or self.overwrite:
            put(doc)
            counts.copied += 1
        else:
            self.report._problem(kind, "conflicts", f"{what} differs at the destination")

    def _copy_text(
        self, kind: Kind, what: str, text: str | None, there: str | None, put: Callable[[str], None]
    ) -> None:
        if text is None:
            return
        counts = self.report.counts[kind]
        if there == text:
            counts.skipped += 1
        elif there is None or self.overwrite or text.startswith(there):
            # A log that only grew since the last export is progress, not a conflict.
            put(text)
            counts.copied += 1
        else:
            self.report._problem(kind, "conflicts", f"{what} differs at the destination")

    def _artifact_list(self, record: RunRecord) -> list[ArtifactDescriptor]:
        listed = {a.name: a for a in self.src.list_artifacts(record.run_id)}
        for descriptor in record.artifacts:
            listed.setdefault(descriptor.name, descriptor)
        return list(listed.values())

    def _artifact(self, run_id: str, descriptor: ArtifactDescriptor) -> None:
        counts = self.report.counts["artifacts"]
        what = f"artifact {descriptor.name!r} of run {run_id}"
        there = {a.name: a for a in self.dst.list_artifacts(run_id)}.get(descriptor.name)
        if there is not None and sha256_matches(there.content_hash, descriptor.content_hash):
            # The destination's record says the same bytes; its bytes must say so too.
            found = _hash_of(self.dst, run_id, descriptor.name)
            if found is not None and sha256_matches(found, descriptor.content_hash):
                counts.skipped += 1
                return
            self.report.repaired.append(
                f"{what} was damaged or missing at the destination (sha256 {found}, "
                f"recorded {descriptor.content_hash}); copied again"
            )
        elif there is not None and not self.overwrite:
            self.report._problem("artifacts", "conflicts", f"{what} differs at the destination")
            return
        with tempfile.TemporaryDirectory(prefix="metalab-export-") as tmp:
            staged = Path(tmp) / "artifact"
            try:
                digest = self._stage(run_id, descriptor.name, staged)
            except ArtifactNotFoundError:
                self.report._problem("artifacts", "failed", f"{what} is missing at the source")
                return
            if not sha256_matches(digest, descriptor.content_hash):
                self.report._problem(
                    "artifacts",
                    "failed",
                    f"{what} does not match its recorded sha256 at the source "
                    f"(recorded {descriptor.content_hash}, found {digest}); not copied",
                )
                return
            self.dst.put_artifact(
                run_id,
                descriptor.name,
                staged,
                kind=descriptor.kind,
                format=descriptor.format,
                metadata=descriptor.metadata,
            )
        arrived = _hash_of(self.dst, run_id, descriptor.name)
        if arrived != digest:
            self.report._problem(
                "artifacts",
                "failed",
                f"{what} reads back with sha256 {arrived} at the destination, expected {digest}",
            )
            return
        counts.copied += 1

    def _stage(self, run_id: str, name: str, target: Path) -> str:
        """Copy an artifact to ``target``, returning the sha256 of its bytes."""
        digest = hashlib.sha256()
        with target.open("wb") as out:
            for chunk in _chunks_of(self.src, run_id, name):
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()

    def _manifests(self) -> None:
        if not (
            isinstance(self.src, SupportsExperimentManifests)
            and isinstance(self.dst, SupportsExperimentManifests)
        ):
            return
        counts = self.report.counts["manifests"]
        present = {
            EXPERIMENT_MANIFEST.encode(m)
            for m in self.dst.list_experiment_manifests(self.experiment_id)
        }
        for manifest in self.src.list_experiment_manifests(self.experiment_id):
            if EXPERIMENT_MANIFEST.encode(manifest) in present:
                counts.skipped += 1
            else:
                self.dst.put_experiment_manifest(manifest)
                counts.copied += 1


def _chunks_of(store: Store, run_id: str, name: str) -> Iterator[bytes]:
    """An artifact's bytes, streamed where the store can."""
    if isinstance(store, SupportsArtifactStreaming):
        with store.open_artifact(run_id, name) as stream:
            while chunk := stream.read(_CHUNK):
                yield chunk
    else:
        yield store.get_artifact(run_id, name)


def _hash_of(store: Store, run_id: str, name: str) -> str | None:
    """The sha256 of an artifact's bytes as the store holds them, or ``None`` if gone."""
    digest = hashlib.sha256()
    try:
        for chunk in _chunks_of(store, run_id, name):
            digest.update(chunk)
    except ArtifactNotFoundError:
        return None
    return digest.hexdigest()


def _same(a: DerivedMetrics | ResultDocument, b: DerivedMetrics | ResultDocument) -> bool:
    codec: DocumentCodec[Any] = DERIVED if isinstance(a, DerivedMetrics) else RESULT
    return codec.encode(a) == codec.encode(b)


def sha256_matches(found: str, recorded: str) -> bool:
    """Whether a computed sha256 hex digest matches a recorded one.

    metalab 0.1 recorded only the first 16 hex characters; a shorter recorded digest
    (but never fewer than 16 characters) matches as a prefix.
    """
    if 16 <= len(recorded) < len(found):
        return found.startswith(recorded)
    return found == recorded


def _series_points(found: dict[str, MetricSeries]) -> list[SeriesPoint]:
    """A run's series as points again, each series in step order."""
    return [
        SeriesPoint(name, step, value, seconds)
        for name, series in found.items()
        for step, value, seconds in zip(series.steps, series.values, series.seconds, strict=True)
    ]


def _point_keys(points: list[SeriesPoint]) -> Counter[tuple[str, int, str, float | None]]:
    """Points as comparable keys (a NaN equals a NaN here, unlike as a float)."""
    return Counter((p.name, p.step, repr(p.value), p.timestamp) for p in points)
