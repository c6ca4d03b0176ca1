"""The storage contract: the ``Store`` protocol, its capabilities and ``StoreConfig``.

``Store`` is what the runner, ``load_results`` and ``export_store`` consume. It is a
structural protocol: a third-party store satisfies it by having the methods, with no
metalab base class. Everything a store may or may not offer lives in small
``@runtime_checkable`` ``Supports*`` protocols that callers test with ``isinstance``;
:func:`require_capability` turns a missing one into a
:class:`~metalab.errors.CapabilityError` that names the store and the protocol.

``StoreConfig`` is the serialisable description of a store: a frozen, keyword-only
dataclass that crosses process boundaries (``to_dict``/``from_dict``, pickle) and whose
``connect()`` is the only place that touches the outside world. Subclassing it with a
``scheme`` class variable registers the scheme for locators such as ``myscheme://...``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

import msgspec

from metalab.errors import CapabilityError, ConfigError
from metalab.records import (
    ArtifactDescriptor,
    DerivedMetrics,
    ExperimentManifest,
    JSONValue,
    MetricValue,
    ResultDocument,
    RunRecord,
)
from metalab.series import MetricSeries, SeriesArrays, SeriesPoint
from metalab.store import registry as registry_module

if TYPE_CHECKING:
    from metalab.query import FieldInfo, Query, RunSummary
    from metalab.store.locator import LocatorInfo

__all__ = [
    "ArtifactSource",
    "ProgressCallback",
    "Store",
    "StoreConfig",
    "StoreLike",
    "SupportsArtifactStreaming",
    "SupportsBulkDerived",
    "SupportsBulkPut",
    "SupportsDelete",
    "SupportsExperimentManifests",
    "SupportsExperiments",
    "SupportsFrameCache",
    "SupportsIndexRebuild",
    "SupportsIndexSync",
    "SupportsIndexedFiles",
    "SupportsLogs",
    "SupportsQuery",
    "SupportsRunSummary",
    "SupportsSeries",
    "SupportsSeriesMany",
    "SupportsStructuredResults",
    "SupportsWorkingDirectory",
    "require_capability",
]

ArtifactSource = bytes | bytearray | memoryview | os.PathLike[str]
"""What ``put_artifact`` accepts: the bytes themselves, or the path of a file to copy."""

ProgressCallback = Callable[[int, int | None], None]
"""Called as ``progress(done, total)``; ``total`` is ``None`` when not known in advance."""


class Store(Protocol):
    """A place that keeps run records, artifacts and derived metrics.

    **Invariants**

    - Files are the source of truth: a store that indexes elsewhere (PostgresStore)
      writes the files first and can rebuild its index from them.
    - A record never moves backwards: putting a ``running`` record for a run whose
      stored record is finished (``success``, ``failed``, ``cancelled``) keeps the
      finished one. Any other put replaces the stored record.
    - ``get_*`` returns ``None`` for a missing run (never raises); ``get_artifact``
      raises :class:`~metalab.errors.ArtifactNotFoundError`, since an artifact name
      comes from a descriptor the caller already holds.
    - Ids are validated before they reach a path or a query: a run id or artifact
      name that could escape the store (``..``, separators, NUL, absurd lengths) is a
      :class:`~metalab.errors.ConfigError`, and nothing is written.
    - A store scoped to one experiment holds only that experiment: putting a record
      (or manifest) of another experiment raises
      :class:`~metalab.errors.ExperimentMismatchError` and writes nothing.
    - A stored document that cannot be decoded raises
      :class:`~metalab.errors.CorruptRecordError` naming where it is; it is never
      skipped silently.

    **Thread and process safety**

    Every method may be called from several threads, and several processes may
    write to one store at once (different runs or the same run): writes are atomic
    replacements, so a reader sees either the old or the new document, never a torn
    one.

    **Ownership**

    Returned records are immutable Structs; the store keeps no reference the caller
    could mutate. Call :meth:`close` (or use the store as a context manager) to
    release connections and file handles.
    """

    def put_run_record(self, record: RunRecord) -> None:
        """Store a record; a ``running`` one never replaces a finished one.

        Raises:
            ConfigError: The run id (or, in a store of many experiments, the
                experiment id) is not one a store can keep.
            ExperimentMismatchError: The store is bound to another experiment.
            ValueError: A timestamp of the record is naive.
            CorruptRecordError: The stored record the put must be weighed against
                cannot be decoded (it is left as it is).
        """
        ...

    def get_run_record(self, run_id: str) -> RunRecord | None:
        """Return the record of ``run_id``, or ``None`` if there is none.

        Raises:
            ConfigError: The run id is not one a store can keep.
            CorruptRecordError: The stored record cannot be decoded, or holds
                another run than ``run_id``.
        """
        ...

    def list_run_records(self, experiment_id: str | None = None) -> list[RunRecord]:
        """Return every record (of one experiment, if given), in no particular order.

        Raises:
            CorruptRecordError: A stored record cannot be decoded.
        """
        ...

    def run_exists(self, run_id: str) -> bool:
        """Return whether a record of ``run_id`` is stored."""
        ...

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
        """Store an artifact of a run and return its descriptor (with sha256 and size).

        ``data`` is the content, or the path of a file to copy; putting a name again
        replaces it. In a store of many experiments the run's record comes first.

        Raises:
            ConfigError: The run id, name or format is invalid, or another artifact
                of the run would share its uri.
            TypeError: ``data`` is neither bytes-like nor a path.
            StoreError: No experiment of an unbound store has a record of the run.
        """
        ...

    def get_artifact(self, run_id: str, name: str) -> bytes:
        """Return an artifact's bytes; raise ``ArtifactNotFoundError`` if it is missing."""
        ...

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        """Return the descriptors of a run's artifacts (empty if it has none)."""
        ...

    def put_derived(self, run_id: str, metrics: Mapping[str, MetricValue]) -> None:
        """Store (replace) the derived metrics of a run.

        Raises:
            ConfigError: The run id is not one a store can keep.
            StoreError: No experiment of an unbound store has a record of the run.
        """
        ...

    def get_derived(self, run_id: str) -> DerivedMetrics | None:
        """Return the derived metrics of a run, or ``None`` if there are none.

        Raises:
            CorruptRecordError: The stored document cannot be decoded.
        """
        ...

    def derived_exists(self, run_id: str) -> bool:
        """Return whether derived metrics of ``run_id`` are stored."""
        ...

    def close(self) -> None:
        """Release connections and handles; the store is unusable afterwards."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class SupportsWorkingDirectory(Protocol):
    """The store has a directory on the local filesystem where its files live."""

    def get_working_directory(self) -> Path:
        """Return the directory holding this store's layout (``runs/``, ``logs/``, ...)."""
        ...


@runtime_checkable
class SupportsLogs(Protocol):
    """The store keeps text logs per run.

    The four methods go together: ``log_path`` is where a running operation streams
    its log, and ``get_log``/``list_logs`` read what was written there or through
    ``put_log``.
    """

    def put_log(self, run_id: str, name: str, text: str) -> None:
        """Store (replace) the log ``name`` of a run."""
        ...

    def get_log(self, run_id: str, name: str) -> str | None:
        """Return a log's text, or ``None`` if there is no such log."""
        ...

    def list_logs(self, run_id: str) -> list[str]:
        """Return the names of a run's logs (empty if it has none)."""
        ...

    def log_path(self, run_id: str, name: str) -> Path:
        """Return the file a log is streamed to (its directory exists)."""
        ...


@runtime_checkable
class SupportsSeries(Protocol):
    """The store keeps metric series per run (``capture.metric(name, value, step=...)``).

    Points are appended while a run goes, so a reader sees those flushed so far.
    """

    def append_series(
        self, run_id: str, points: Sequence[SeriesPoint], *, restart: bool = False
    ) -> None:
        """Append points (of any metrics) to a run's series, in the order logged.

        ``restart`` first drops what the run logged before (a run run again).
        """
        ...

    def get_series(self, run_id: str) -> dict[str, MetricSeries]:
        """Return a run's series by metric name (empty if it logged none)."""
        ...


@runtime_checkable
class SupportsSeriesMany(SupportsSeries, Protocol):
    """The store reads the series of many runs at once.

    A PostgresStore in one index query; a FileStore from each experiment's series
    snapshot where it is current (``FileStore.snapshot_series``).
    """

    def get_series_many(self, run_ids: Sequence[str]) -> dict[str, dict[str, MetricSeries]]:
        """Return the series of each run by metric name, keyed by run id (every id given)."""
        ...

    def get_series_arrays(self, run_ids: Sequence[str]) -> dict[str, dict[str, SeriesArrays]]:
        """Like :meth:`get_series_many`, each series as NumPy columns (for frames)."""
        ...


@runtime_checkable
class SupportsRunEdits(Protocol):
    """People can tag and annotate recorded runs.

    Edits rewrite only the tags and notes of the stored record, and are kept in it
    (``RunRecord.edits``): a later status write of the run (the runner finishing
    it) keeps them, and two edits at once both land.
    """

    def set_tags(
        self, run_id: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> RunRecord:
        """Add and remove tags of a recorded run; return its record as it is now.

        Raises:
            StoreError: The store holds no record of ``run_id``.
            ConfigError: A tag is not a non-empty string, or is added and removed.
        """
        ...

    def set_notes(self, run_id: str, text: str | None) -> RunRecord:
        """Set the notes of a recorded run (``None`` clears them); return its record.

        Raises:
            StoreError: The store holds no record of ``run_id``.
        """
        ...


@runtime_checkable
class SupportsStructuredResults(Protocol):
    """The store keeps named structured results per run (``capture.data``)."""

    def put_result(self, run_id: str, name: str, result: ResultDocument) -> None:
        """Store (replace) the result ``name`` of a run."""
        ...

    def get_result(self, run_id: str, name: str) -> ResultDocument | None:
        """Return a result, or ``None`` if there is no such result."""
        ...

    def list_results(self, run_id: str) -> list[str]:
        """Return the names of a run's results (empty if it has none)."""
        ...


@runtime_checkable
class SupportsExperimentManifests(Protocol):
    """The store keeps one manifest per submission of an experiment."""

    def put_experiment_manifest(self, manifest: ExperimentManifest) -> None:
        """Store a submission manifest (manifests accumulate; none is replaced)."""
        ...

    def list_experiment_manifests(
        self, experiment_id: str | None = None
    ) -> list[ExperimentManifest]:
        """Return manifests, oldest submission first."""
        ...


@runtime_checkable
class SupportsExperiments(Protocol):
    """The store can tell which experiments it holds."""

    def list_experiments(self) -> list[str]:
        """Return the ids of the experiments with data in this store, sorted."""
        ...


@runtime_checkable
class SupportsArtifactStreaming(Protocol):
    """Artifacts can be read as streams instead of whole ``bytes``."""

    def open_artifact(self, run_id: str, name: str) -> IO[bytes]:
        """Open an artifact for binary reading; raise ``ArtifactNotFoundError`` if missing."""
        ...


@runtime_checkable
class SupportsBulkDerived(Protocol):
    """The derived metrics of a whole experiment can be read in one call."""

    def list_derived(self, experiment_id: str | None = None) -> dict[str, DerivedMetrics]:
        """Return run id -> derived metrics for every run of an experiment that has them.

        ``experiment_id`` defaults to the store's own (every experiment for an
        unscoped store).
        """
        ...


@runtime_checkable
class SupportsBulkPut(Protocol):
    """Many records can be written faster together than one by one."""

    def put_run_records(self, records: Iterable[RunRecord]) -> int:
        """Store every record (same rules as ``put_run_record``); return how many."""
        ...


@runtime_checkable
class SupportsDelete(Protocol):
    """Runs can be deleted."""

    def delete_run(self, run_id: str, *, expected: RunRecord | None = None) -> bool:
        """Delete everything of a run; return whether there was anything to delete.

        Args:
            run_id: The run.
            expected: Delete only if the stored record is still this one (checked
                atomically against writers of the same run), as a clean-up of runs
                that look abandoned must: a run that finished in the meantime, or
                was started again, is left alone and ``False`` returned.
        """
        ...


@runtime_checkable
class SupportsFrameCache(Protocol):
    """A whole experiment's results frame can be kept beside its runs and served again.

    ``load_results(...).to_dataframe()`` (and ``to_polars``/``to_arrow``) of a whole
    experiment takes :meth:`frame_cache_key` *before* reading the runs, builds the
    frame, and caches its columns under that key; the next load whose key is the
    same is served from the cache without reading a record. A key changes with every
    write of a run record or derived metrics; a store returns ``None`` when it
    cannot vouch for a key (then nothing is cached or served). A FileStore has it; a
    PostgresStore does not (keyed by the files' state, a cache could keep a frame its
    index answered while lagging behind them).
    """

    def frame_cache_key(self, experiment_id: str | None = None) -> bytes | None:
        """The key of a frame of ``experiment_id`` built from the store as it is now."""
        ...

    def read_frame_cache(self, experiment_id: str | None, key: bytes) -> bytes | None:
        """The payload cached for ``experiment_id`` under ``key``; ``None``: none, or another."""
        ...

    def write_frame_cache(self, experiment_id: str | None, key: bytes, payload: bytes) -> bool:
        """Cache ``payload`` under ``key``; ``False`` if it could not be (never an error)."""
        ...


@runtime_checkable
class SupportsIndexRebuild(Protocol):
    """The store has an index that can be rebuilt from its files."""

    def rebuild_index(self, progress: ProgressCallback | None = None) -> int:
        """Rebuild the index from the files; return the number of records indexed."""
        ...


@runtime_checkable
class SupportsQuery(Protocol):
    """The store can filter, sort and window runs itself, and describe its fields.

    Both methods go together. A store with an index answers them in the database;
    the file and memory stores evaluate the same query language in Python (the
    semantics are in :mod:`metalab.query`; property tests hold the engines equal).
    """

    def query_runs(self, query: Query) -> list[RunRecord]:
        """Return the runs matching ``query``, in its order and window."""
        ...

    def fields(self, experiment_id: str | None = None) -> list[FieldInfo]:
        """Return the field catalog of an experiment (default: the store's own)."""
        ...


@runtime_checkable
class SupportsRunSummary(Protocol):
    """The store can count its runs by status without reading every record.

    A store with an index answers from the index alone (an index-only scan in
    Postgres); the file and memory stores compute the same summary from the records.
    """

    def summarize_runs(self, experiment_id: str | None = None) -> dict[str, RunSummary]:
        """Return ``experiment id -> RunSummary``, sorted by experiment id.

        With ``experiment_id``, only that experiment (present even when it has no
        runs); without, every experiment that has runs (only the store's own, when
        scoped).
        """
        ...


@runtime_checkable
class SupportsIndexedFiles(Protocol):
    """The store indexes files that another store holds (a PostgresStore over its files).

    Code that runs in other processes (the workers of a ``DaskExecutor``) may connect
    :attr:`files_config` and write the files directly, leaving the indexing to this
    store: its bulk put (:class:`SupportsBulkPut`) for the records they send back, and
    :meth:`~SupportsIndexSync.sync_index` for what they wrote and never reported.
    """

    @property
    def files_config(self) -> StoreConfig:
        """The config of the store that holds the files this store indexes."""
        ...


@runtime_checkable
class SupportsIndexSync(Protocol):
    """The store's index can be brought up to date with its files incrementally."""

    def sync_index(self, *, progress: ProgressCallback | None = None) -> object:
        """Index what changed in the files since the last sync; return a report.

        ``progress(done, total)`` is called while the changed files are indexed.
        """
        ...

    def is_index_stale(self) -> bool:
        """Whether the index may lag behind the files (until the next sync)."""
        ...


C = TypeVar("C")


def require_capability(store: object, capability: type[C], operation: str) -> C:
    """Return ``store`` typed as ``capability``, or raise ``CapabilityError``.

    Args:
        store: Any store.
        capability: A ``Supports*`` protocol.
        operation: What needs it, for the message (e.g. ``"capture.log()"``).
    """
    if not isinstance(store, capability):
        raise CapabilityError(type(store).__qualname__, capability.__name__, operation)
    return store


@runtime_checkable
class StoreConfig(Protocol):
    """The serialisable description of a store; ``connect()`` opens it.

    Implementations are ``@dataclass(frozen=True, kw_only=True)`` classes that
    subclass this protocol explicitly to inherit :meth:`scoped`, :meth:`to_dict` and
    friends, and to register their ``scheme``. They hold only plain values (str,
    int, float, bool, None, tuples), so they pickle and survive ``to_dict`` /
    :meth:`from_dict`; they normalise in ``__post_init__`` (e.g. absolute paths).

    Attributes:
        scheme: The locator scheme (``"file"``, ``"postgresql"``, ...).
        aliases: Other schemes handled by the same class (``"postgres"``).
        process_local: The store lives in one process's memory: another process
            that connects this config gets a different, empty store, so the config
            must not be handed to workers in other processes.
        experiment_id: The experiment this config is scoped to, or ``None``.
    """

    scheme: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    process_local: ClassVar[bool] = False
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    experiment_id: str | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only classes that define their own scheme register (not intermediate bases).
        scheme = cls.__dict__.get("scheme")
        if isinstance(scheme, str):
            for name in (scheme, *cls.__dict__.get("aliases", ())):
                registry_module.registry.register(name, cls)

    def connect(self) -> Store:
        """Open the store this config describes."""
        ...

    @classmethod
    def from_locator(cls, info: LocatorInfo, **kwargs: Any) -> Self:
        """Build a config from a parsed locator plus keyword overrides."""
        ...

    def to_locator(self) -> str:
        """Render this config as a locator string (inverse of ``from_locator``)."""
        raise NotImplementedError(f"{type(self).__qualname__} cannot render a locator")

    @property
    def is_scoped(self) -> bool:
        """Whether this config is bound to one experiment."""
        return self.experiment_id is not None

    def scoped(self, experiment_id: str) -> Self:
        """Return this config bound to ``experiment_id``.

        Raises:
            ConfigError: The config is already scoped to a different experiment.
        """
        value: object = experiment_id
        if not isinstance(value, str) or not value:
            raise ConfigError(f"experiment_id must be a non-empty string, got {experiment_id!r}")
        if self.experiment_id not in (None, experiment_id):
            raise ConfigError(
                f"config is already scoped to {self.experiment_id!r} and cannot be "
                f"re-scoped to {experiment_id!r}; scope the unscoped collection config instead"
            )
        return dataclasses.replace(self, experiment_id=experiment_id)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain builtins with its scheme under ``"_type"``.

        Fields still at their default are left out (``from_dict`` restores them), so
        a scoped ``FileStoreConfig`` gives exactly
        ``{"root": "/abs/path", "experiment_id": "my_exp:1.0", "_type": "file"}``.

        The dict is complete, secrets included: a ``PostgresStoreConfig``'s
        ``connection_string`` keeps its password, because workers in other processes
        connect with it. Treat the dict like the password (do not log it or write it
        to shared files), or keep the password out of the connection string: libpq
        reads it from a passfile (``~/.pgpass`` or ``PGPASSFILE``), from
        ``PGPASSWORD`` in each process's environment, or from a service
        (``postgresql://?service=NAME`` and ``pg_service.conf``). ``repr`` of a
        config is always redacted.
        """
        data: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.default is not dataclasses.MISSING and value == field.default:
                continue
            data[field.name] = msgspec.to_builtins(value)
        data["_type"] = self.scheme
        return data

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> StoreConfig:
        """Rebuild a config from :meth:`to_dict` output, validating every field.

        Fields are converted and checked against the class's annotations; when those
        cannot be evaluated (they name something the class's module does not
        define), the fields are passed to the class as they are.

        Raises:
            ConfigError: ``_type`` is missing or unknown, or a field is invalid.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"a store config dict must be a mapping, got {type(data).__name__}")
        fields = dict(data)
        scheme = fields.pop("_type", None)
        if not isinstance(scheme, str):
            raise ConfigError(
                f"store config dict has no '_type' naming its scheme: {sorted(fields)!r}"
            )
        cls = registry_module.registry.get(scheme)
        try:
            config: StoreConfig = msgspec.convert(fields, cls)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"invalid {cls.__qualname__} dict: {exc}") from exc
        except NameError:
            # The class's annotations name something its module does not define (a
            # config class made in a function or a notebook cell, under ``from
            # __future__ import annotations``): msgspec cannot resolve them, so the
            # fields go to the class as they are and its own checks apply.
            try:
                config = cls(**fields)
            except TypeError as exc:
                raise ConfigError(f"invalid {cls.__qualname__} dict: {exc}") from exc
        return config


StoreLike = str | os.PathLike[str] | StoreConfig
"""What ``run(store=...)``, ``load_results`` and ``create_store`` accept."""
