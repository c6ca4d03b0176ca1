"""The one collection router of the stores that hold many experiments.

A store that holds many experiments (a FileStore root, a MemoryStore) keeps each
experiment in a *space* of its own: a directory, a partition. :class:`Collection`
implements the :class:`~metalab.store.abc.Store` contract, and the capabilities the
spaces share, over those spaces:

- **bound** to one space (a store scoped to an experiment, or a standalone store
  directory), every call goes straight to it; the space enforces its own scope;
- **unbound** (a collection root), records and manifests go to the space of their
  experiment (created on first write), per-run documents to the space that holds the
  run's record, and listings read every space.

Backends say where the spaces are and open them (:meth:`Collection._locate`,
:meth:`Collection._open`); the routing lives only here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Generic, Protocol, Self, TypeVar

from metalab.errors import ArtifactNotFoundError, StoreError
from metalab.query import FieldCatalog, Query, RunSummary, field_catalog, summarize_runs
from metalab.records import (
    ArtifactDescriptor,
    DerivedMetrics,
    ExperimentManifest,
    JSONValue,
    MetricValue,
    ResultDocument,
    RunRecord,
)
from metalab.series import MetricSeries, SeriesPoint
from metalab.store._query import derived_lookup, select_runs
from metalab.store._rules import (
    notes_change,
    tags_change,
    validate_experiment_id,
    validate_run_id,
)
from metalab.store.abc import ArtifactSource

__all__ = ["Collection", "Space"]

_BULK_CHUNK = 512


class Space(Protocol):
    """The documents of one experiment (or of a store bound to none), for a router.

    The methods mean what the :class:`~metalab.store.abc.Store` contract and its
    capabilities say; a space checks ids and its own scope itself.
    """

    @property
    def experiment_id(self) -> str | None:
        """The experiment of the space; ``None`` if it takes any."""
        ...

    def put_run_record(self, record: RunRecord) -> None: ...
    def put_run_records(self, records: Sequence[RunRecord]) -> int: ...
    def get_run_record(self, run_id: str) -> RunRecord | None: ...
    def run_exists(self, run_id: str) -> bool: ...
    def list_run_records(self, experiment_id: str | None = None) -> list[RunRecord]: ...
    def put_artifact(
        self,
        run_id: str,
        name: str,
        data: ArtifactSource,
        *,
        kind: str = "bytes",
        format: str = "bin",
        metadata: Mapping[str, JSONValue] | None = None,
    ) -> ArtifactDescriptor: ...
    def open_artifact(self, run_id: str, name: str) -> IO[bytes]: ...
    def get_artifact(self, run_id: str, name: str) -> bytes: ...
    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]: ...
    def put_derived(self, run_id: str, metrics: Mapping[str, MetricValue]) -> None: ...
    def get_derived(self, run_id: str) -> DerivedMetrics | None: ...
    def derived_exists(self, run_id: str) -> bool: ...
    def list_derived(self, experiment_id: str | None = None) -> dict[str, DerivedMetrics]: ...
    def put_log(self, run_id: str, name: str, text: str) -> None: ...
    def get_log(self, run_id: str, name: str) -> str | None: ...
    def list_logs(self, run_id: str) -> list[str]: ...
    def log_path(self, run_id: str, name: str) -> Path: ...
    def append_series(
        self, run_id: str, points: Sequence[SeriesPoint], *, restart: bool = False
    ) -> object: ...
    def get_series(self, run_id: str) -> dict[str, MetricSeries]: ...
    def put_result(self, run_id: str, name: str, result: ResultDocument) -> None: ...
    def get_result(self, run_id: str, name: str) -> ResultDocument | None: ...
    def list_results(self, run_id: str) -> list[str]: ...
    def put_experiment_manifest(self, manifest: ExperimentManifest) -> None: ...
    def list_experiment_manifests(
        self, experiment_id: str | None = None
    ) -> list[ExperimentManifest]: ...
    def experiments(self) -> list[str]: ...
    def delete_run(self, run_id: str, *, expected: RunRecord | None = None) -> bool: ...
    def edit_run(self, run_id: str, change: Callable[[RunRecord], RunRecord]) -> RunRecord: ...
    def close(self) -> None: ...


S = TypeVar("S", bound=Space)


def _chunks(items: Iterable[RunRecord], size: int) -> Iterable[list[RunRecord]]:
    chunk: list[RunRecord] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Collection(Generic[S]):
    """A store over spaces: one bound space, or one space per experiment.

    Args:
        bound: The one space of a store bound to it, or ``None`` for a collection.
        where: The store's place, for messages.
    """

    def __init__(self, bound: S | None, where: str) -> None:
        self._bound = bound
        self._where = where
        self._spaces: dict[str, tuple[Hashable, S]] = {}
        self._owners: dict[str, S] = {}
        self._spaces_lock = threading.Lock()

    def _locate(self) -> Mapping[str, Hashable]:
        """Return where the space of every experiment is now (a collection only)."""
        raise NotImplementedError

    def _open(self, experiment_id: str, location: Hashable | None) -> tuple[Hashable, S]:
        """Open the space of ``experiment_id`` at ``location``.

        ``None`` asks for the place of a new experiment's space (its first write);
        the location of the space opened is returned with it.
        """
        raise NotImplementedError

    def _refresh(self) -> dict[str, S]:
        """Bring the known spaces up to date with where they are now."""
        found = self._locate()
        with self._spaces_lock:
            for eid, location in found.items():
                known = self._spaces.get(eid)
                if known is None or known[0] != location:
                    self._spaces[eid] = self._open(eid, location)
            return {eid: space for eid, (_, space) in self._spaces.items()}

    def _known(self) -> dict[str, S]:
        with self._spaces_lock:
            return {eid: space for eid, (_, space) in self._spaces.items()}

    def _space_for(self, experiment_id: str) -> S:
        """The space that documents of ``experiment_id`` are written to."""
        if self._bound is not None:
            return self._bound
        known = self._spaces.get(experiment_id)
        if known is not None:
            return known[1]
        validate_experiment_id(experiment_id)
        space = self._refresh().get(experiment_id)
        if space is not None:
            return space
        opened = self._open(experiment_id, None)
        with self._spaces_lock:
            return self._spaces.setdefault(experiment_id, opened)[1]

    def _spaces_of(self, experiment_id: str | None) -> list[S]:
        """The spaces a listing of ``experiment_id`` (``None``: every one) reads."""
        if self._bound is not None:
            return [self._bound]
        spaces = self._refresh()
        if experiment_id is None:
            return [spaces[eid] for eid in sorted(spaces)]
        space = spaces.get(experiment_id)
        return [] if space is None else [space]

    def _owner(self, run_id: str) -> S | None:
        """The space holding the record of ``run_id`` (a bound store's own, always)."""
        if self._bound is not None:
            return self._bound
        validate_run_id(run_id)
        owner = self._owners.get(run_id)
        if owner is not None and owner.run_exists(run_id):
            return owner
        self._owners.pop(run_id, None)
        checked: set[str] = set()
        for spaces in (self._known, self._refresh):
            for eid, space in spaces().items():
                if eid not in checked and space.run_exists(run_id):
                    self._owners[run_id] = space
                    return space
                checked.add(eid)
        return None

    def _owner_for_write(self, run_id: str) -> S:
        owner = self._owner(run_id)
        if owner is None:
            raise StoreError(
                f"no experiment in {self._where!r} has a record of run {run_id!r}; "
                "put the run record first, or use a store scoped to the run's experiment"
            )
        return owner

    def _grouped(self, records: Sequence[RunRecord]) -> list[tuple[S, list[RunRecord]]]:
        """Records by the space they go to; every one is checked before any is written."""
        if self._bound is not None:
            return [(self._bound, list(records))]
        groups: dict[str, list[RunRecord]] = {}
        for record in records:
            validate_run_id(record.run_id)
            groups.setdefault(record.experiment_id, []).append(record)
        return [(self._space_for(eid), group) for eid, group in groups.items()]

    def put_run_record(self, record: RunRecord) -> None:
        """Store a record; a ``running`` one never replaces a finished one."""
        (self._bound or self._space_for(record.experiment_id)).put_run_record(record)

    def put_run_records(self, records: Iterable[RunRecord]) -> int:
        """Store many records with the rules of :meth:`put_run_record`; return how many.

        Records are streamed in chunks of 512: a chunk is checked before any of it is
        written, so a bad record stores none of its chunk.
        """
        count = 0
        for chunk in _chunks(records, _BULK_CHUNK):
            for space, group in self._grouped(chunk):
                count += space.put_run_records(group)
        return count

    def get_run_record(self, run_id: str) -> RunRecord | None:
        """Return the record of ``run_id``, or ``None`` if there is none."""
        owner = self._owner(run_id)
        return None if owner is None else owner.get_run_record(run_id)

    def run_exists(self, run_id: str) -> bool:
        """Return whether a record of ``run_id`` is stored."""
        owner = self._owner(run_id)
        return owner is not None and owner.run_exists(run_id)

    def list_run_records(self, experiment_id: str | None = None) -> list[RunRecord]:
        """Return every record (of one experiment, if given), in no particular order."""
        return [
            r
            for space in self._spaces_of(experiment_id)
            for r in space.list_run_records(experiment_id)
        ]

    def put_artifact(
        self,
        run_id: str,
        name: str,
        data: ArtifactSource,
        *,
        kind: str = "bytes",
        format: str = "bin",
        metadata: Mapping[str, JSONValue] | None = None,
    ) -> ArtifactDescriptor:
        """Store an artifact of a run and return its descriptor (with sha256 and size)."""
        return self._owner_for_write(run_id).put_artifact(
            run_id, name, data, kind=kind, format=format, metadata=metadata
        )

    def get_artifact(self, run_id: str, name: str) -> bytes:
        """Return an artifact's bytes; raise ``ArtifactNotFoundError`` if it is missing."""
        with self.open_artifact(run_id, name) as stream:
            return stream.read()

    def open_artifact(self, run_id: str, name: str) -> IO[bytes]:
        """Open an artifact for binary reading; raise ``ArtifactNotFoundError`` if missing."""
        owner = self._owner(run_id)
        if owner is None:
            raise ArtifactNotFoundError(run_id, name)
        return owner.open_artifact(run_id, name)

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        """Return the descriptors of a run's artifacts (empty if it has none)."""
        owner = self._owner(run_id)
        return [] if owner is None else owner.list_artifacts(run_id)

    def put_derived(self, run_id: str, metrics: Mapping[str, MetricValue]) -> None:
        """Store (replace) the derived metrics of a run."""
        self._owner_for_write(run_id).put_derived(run_id, metrics)

    def get_derived(self, run_id: str) -> DerivedMetrics | None:
        """Return the derived metrics of a run, or ``None`` if there are none."""
        owner = self._owner(run_id)
        return None if owner is None else owner.get_derived(run_id)

    def derived_exists(self, run_id: str) -> bool:
        """Return whether derived metrics of ``run_id`` are stored."""
        owner = self._owner(run_id)
        return owner is not None and owner.derived_exists(run_id)

    def list_derived(self, experiment_id: str | None = None) -> dict[str, DerivedMetrics]:
        """Return run id -> derived metrics of every run (of one experiment) that has them."""
        found: dict[str, DerivedMetrics] = {}
        for space in self._spaces_of(experiment_id):
            found.update(space.list_derived(experiment_id))
        return found

    def put_log(self, run_id: str, name: str, text: str) -> None:
        """Store (replace) the log ``name`` of a run."""
        self._owner_for_write(run_id).put_log(run_id, name, text)

    def get_log(self, run_id: str, name: str) -> str | None:
        """Return a log's text, or ``None`` if there is no such log."""
        owner = self._owner(run_id)
        return None if owner is None else owner.get_log(run_id, name)

    def list_logs(self, run_id: str) -> list[str]:
        """Return the names of a run's logs, sorted (empty if it has none)."""
        owner = self._owner(run_id)
        return [] if owner is None else owner.list_logs(run_id)

    def log_path(self, run_id: str, name: str) -> Path:
        """Return the file a log is streamed to (its directory exists)."""
        return self._owner_for_write(run_id).log_path(run_id, name)

    def set_tags(
        self, run_id: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> RunRecord:
        """Add and remove tags of a recorded run; return its record as it is now."""
        return self._edit_run(run_id, tags_change(add, remove))

    def set_notes(self, run_id: str, text: str | None) -> RunRecord:
        """Set (``None``: clear) the notes of a recorded run; return its record."""
        change = notes_change(text)
        return self._edit_run(run_id, change)

    def _edit_run(self, run_id: str, change: Callable[[RunRecord], RunRecord]) -> RunRecord:
        owner = self._owner(run_id)
        if owner is None:
            raise StoreError(f"no run {run_id!r} in {self!r} to edit")
        return owner.edit_run(run_id, change)

    def append_series(
        self, run_id: str, points: Sequence[SeriesPoint], *, restart: bool = False
    ) -> None:
        """Append points to a run's metric series (``restart`` drops the older ones)."""
        self._owner_for_write(run_id).append_series(run_id, points, restart=restart)

    def get_series(self, run_id: str) -> dict[str, MetricSeries]:
        """Return a run's metric series by name (empty if it logged none)."""
        owner = self._owner(run_id)
        return {} if owner is None else owner.get_series(run_id)

    def put_result(self, run_id: str, name: str, result: ResultDocument) -> None:
        """Store (replace) the structured result ``name`` of a run."""
        self._owner_for_write(run_id).put_result(run_id, name, result)

    def get_result(self, run_id: str, name: str) -> ResultDocument | None:
        """Return a structured result, or ``None`` if there is no such result."""
        owner = self._owner(run_id)
        return None if owner is None else owner.get_result(run_id, name)

    def list_results(self, run_id: str) -> list[str]:
        """Return the names of a run's structured results, sorted."""
        owner = self._owner(run_id)
        return [] if owner is None else owner.list_results(run_id)

    def put_experiment_manifest(self, manifest: ExperimentManifest) -> None:
        """Store a submission manifest; manifests accumulate and none is replaced."""
        self._space_for(manifest.experiment_id).put_experiment_manifest(manifest)

    def list_experiment_manifests(
        self, experiment_id: str | None = None
    ) -> list[ExperimentManifest]:
        """Return the submission manifests (of one experiment, if given), oldest first."""
        spaces = self._spaces_of(experiment_id)
        if len(spaces) == 1:
            return spaces[0].list_experiment_manifests(experiment_id)
        found = [m for space in spaces for m in space.list_experiment_manifests(experiment_id)]
        # sorted() is stable: manifests submitted at the same instant keep their order.
        return sorted(found, key=lambda m: m.submitted_at)

    def list_experiments(self) -> list[str]:
        """Return the ids of the experiments with data in this store, sorted."""
        if self._bound is not None:
            return self._bound.experiments()
        return sorted({eid for space in self._spaces_of(None) for eid in space.experiments()})

    def delete_run(self, run_id: str, *, expected: RunRecord | None = None) -> bool:
        """Delete everything of a run (if its record is still ``expected``, when given)."""
        owner = self._owner(run_id)
        self._owners.pop(run_id, None)
        return owner is not None and owner.delete_run(run_id, expected=expected)

    def _scope(self) -> str | None:
        return None if self._bound is None else self._bound.experiment_id

    def query_runs(self, query: Query) -> list[RunRecord]:
        """Return the runs matching ``query`` (evaluated in Python over the records)."""
        return select_runs(self, query, self._scope())

    def summarize_runs(self, experiment_id: str | None = None) -> dict[str, RunSummary]:
        """Return the run counts by status of each experiment (from the records)."""
        eid = experiment_id or self._scope()
        return summarize_runs(self.list_run_records(eid), eid)

    def fields(self, experiment_id: str | None = None) -> FieldCatalog:
        """Return the field catalog of an experiment (default: this store's)."""
        eid = experiment_id or self._scope()
        catalog = field_catalog(self.list_run_records(eid), derived_lookup(self, eid))
        catalog.experiment_id = eid
        return catalog

    def close(self) -> None:
        """Close every space this store opened."""
        spaces = list(self._known().values())
        if self._bound is not None:
            spaces.append(self._bound)
        for space in spaces:
            space.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
