r"""Import the runs of an MLflow file store (an ``mlruns/`` directory) into a metalab store.

MLflow's file store keeps one directory per experiment and one per run::

    mlruns/<experiment id>/meta.yaml                  name, lifecycle stage
    mlruns/<experiment id>/<run id>/meta.yaml         status, times, lifecycle stage
    mlruns/<experiment id>/<run id>/params/<key>      the value, as text
    mlruns/<experiment id>/<run id>/metrics/<key>     "<ms> <value> <step>" per point
    mlruns/<experiment id>/<run id>/tags/<key>        the value, as text
    mlruns/<experiment id>/<run id>/artifacts/...     the files
    mlruns/.trash/<experiment id>/...                 deleted experiments

:func:`import_mlruns` reads these files directly (MLflow need not be installed; the
``meta.yaml`` files are read with PyYAML, the extra ``metalab[mlflow]``) and writes
each run into the metalab store:

- an MLflow experiment becomes the metalab experiment ``"<name>:1"`` (``/`` and ``\``
  in the name become ``_``), unless ``as_experiment`` names it;
- a run keeps MLflow's run id (32 hex digits) as its metalab run id, so a run
  imported twice is the same run;
- status ``FINISHED`` -> ``success``, ``FAILED`` -> ``failed``, ``KILLED`` ->
  ``cancelled``, ``RUNNING`` and ``SCHEDULED`` -> ``running``; start and end
  times as they are;
- params as the strings MLflow stores; each metric's latest value (MLflow's rule: the
  point with the highest step, then timestamp, then value) as the run's metric, and
  every point as its series;
- user tags as tags (``key=value``, or ``key`` for an empty value); ``mlflow.*``
  tags, the run name and user in the record's ``provenance.extra``; the note
  (``mlflow.note.content``) as the run's notes;
- artifacts copied, each under a name made of its path (``plots/loss.png`` ->
  ``plots.loss.png``) with the path itself in the artifact's metadata
  (``mlflow_path``), and its sha256 recorded.

A run is written in an order that never shows half of it: its artifacts, then its
series, then its record, which is what makes it exist. A run interrupted midway has
no record yet, and the next import writes it again. A run whose record says it was
imported from the same MLflow content (a digest of its files, in
``provenance.extra["mlflow_digest"]``) is skipped, so importing again writes only the
new and the changed runs. A run that cannot be read (no ``meta.yaml``, a metric line
that does not parse, a negative step) is reported and nothing of it is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

import msgspec

from metalab._optional import require
from metalab.errors import ConfigError, CorruptRecordError, MetalabError
from metalab.records import (
    ArtifactDescriptor,
    JSONValue,
    MetricValue,
    Provenance,
    RunRecord,
    Status,
)
from metalab.series import SeriesPoint
from metalab.store import StoreConfig, StoreLike, SupportsSeries, coerce_store_config
from metalab.store.locator import redact

if TYPE_CHECKING:
    from metalab.store import Store

__all__ = ["SOURCE", "ImportReport", "import_mlruns"]

SOURCE: Final = "mlflow"
"""``provenance.extra["source"]`` of an imported run."""

_STATUS: Final[dict[str, Status]] = {
    "RUNNING": "running",
    "SCHEDULED": "running",
    "FINISHED": "success",
    "FAILED": "failed",
    "KILLED": "cancelled",
}
_STATUS_NUMBERS: Final = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
# Folders of an experiment that are not runs (MLflow's own list).
_NOT_RUNS: Final = frozenset({"tags", "datasets", "traces", "models"})
# Folders of mlruns/ that are not experiments.
_NOT_EXPERIMENTS: Final = frozenset({".trash", "models"})
_NAME_CHARS: Final = re.compile(r"[^A-Za-z0-9_.-]")
_FORMAT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}")
_NOTE_TAG: Final = "mlflow.note.content"

ProgressCallback = Callable[[int, int], None]


class _Malformed(Exception):
    """A run or experiment directory that cannot be read as MLflow wrote it."""


@dataclass
class ImportReport:
    """What :func:`import_mlruns` did.

    Attributes:
        experiments: MLflow experiment id -> the metalab experiment its runs went to.
        imported: Run ids written by this import (new, or changed since the last).
        unchanged: Run ids skipped because the store holds them as MLflow has them.
        deleted: Run ids skipped because MLflow marks them deleted.
        problems: One line per run or experiment that could not be imported: where,
            and why. Nothing of such a run was written.
        notes: Things done that a user may want to know (artifacts kept elsewhere
            than the run directory, and not copied).
    """

    experiments: dict[str, str] = field(default_factory=dict)
    imported: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every run found was imported or skipped on purpose."""
        return not self.problems


@dataclass(frozen=True)
class _Artifact:
    name: str
    format: str
    path: Path
    mlflow_path: str


@dataclass(frozen=True)
class _Run:
    """One MLflow run, read completely before anything is written."""

    directory: Path
    record: RunRecord
    points: list[SeriesPoint]
    artifacts: list[_Artifact]
    deleted: bool


def import_mlruns(
    mlruns: str | os.PathLike[str],
    to: StoreLike,
    *,
    experiment: str | None = None,
    as_experiment: str | None = None,
    include_deleted: bool = False,
    progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import the runs of an MLflow file store into a metalab store.

    Args:
        mlruns: The MLflow file store: the directory holding ``0/``, ``<id>/``,
            ``.trash/`` (often called ``mlruns``), or its ``file:`` URI.
        to: The metalab store: a path, locator or config. A config bound to one
            experiment takes only runs imported into that experiment.
        experiment: Only the MLflow experiment of this name (or id).
        as_experiment: The metalab experiment id to import into (default
            ``"<MLflow name>:1"``); only with one MLflow experiment.
        include_deleted: Also import runs and experiments MLflow marks deleted.
        progress: Called with (runs done, runs in all) as runs are imported.

    Returns:
        The report: runs imported, unchanged, skipped as deleted, and the problems.

    Raises:
        ConfigError: ``mlruns`` is not an MLflow file store, ``experiment`` names
            none of its experiments, ``as_experiment`` is given for several
            experiments or is not a valid experiment id.
        MissingDependencyError: PyYAML is not installed (``metalab[mlflow]``).
    """
    require("yaml", extra="mlflow", feature="importing an MLflow file store")
    root = _mlruns_path(mlruns)
    if not root.is_dir():
        raise ConfigError(f"{str(root)!r} is not a directory (an MLflow file store 'mlruns/')")
    report = ImportReport()
    found = list(_experiments(root, include_deleted, report))
    if not found and not report.problems:
        raise ConfigError(
            f"{str(root)!r} holds no MLflow experiment (no '<id>/meta.yaml'); pass the "
            "directory MLflow's tracking URI 'file:...' names, usually 'mlruns'"
        )
    if experiment is not None:
        found = [e for e in found if experiment in (e.mlflow_id, e.name)]
        if not found:
            raise ConfigError(f"{str(root)!r} has no MLflow experiment named {experiment!r}")
    runs = [(e, run_dir) for e in found for run_dir in e.run_directories(report)]
    with_runs = [e for e in found if any(owner is e for owner, _ in runs)]
    if as_experiment is not None and len(with_runs) > 1:
        names = ", ".join(repr(e.name) for e in with_runs)
        raise ConfigError(
            f"as_experiment / --as names one metalab experiment, but {len(with_runs)} MLflow "
            f"experiments would go into it ({names}); choose one with experiment / --experiment"
        )
    config = coerce_store_config(to)
    if as_experiment is not None and not config.is_scoped:
        config.scoped(as_experiment)  # refuses an id no store can keep, before any write
    done = 0
    for entry in with_runs:  # no metalab experiment for an MLflow experiment without runs
        target = as_experiment or entry.metalab_id
        chosen = [run_dir for e, run_dir in runs if e is entry]
        try:
            store = _open(config, target)
        except MetalabError as exc:
            report.problems.append(f"MLflow experiment {entry.name!r} ({entry.path}): {exc}")
            done += len(chosen)
            continue
        report.experiments[entry.mlflow_id] = target
        with store:
            for run_dir in chosen:
                _import_run(store, run_dir, target, entry, include_deleted, report)
                done += 1
                if progress is not None:
                    progress(done, len(runs))
    return report


def _mlruns_path(mlruns: str | os.PathLike[str]) -> Path:
    """The directory of an MLflow file store given as a path or a ``file:`` URI."""
    given = os.fspath(mlruns)
    parts = urlsplit(given)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if "://" in given:
        raise ConfigError(
            f"an MLflow file store is a directory (or a file: URI), not "
            f"{redact(given)!r}: import reads the mlruns/ folder itself"
        )
    return Path(given)


def _open(config: StoreConfig, experiment_id: str) -> Store:
    if config.is_scoped:
        if config.experiment_id != experiment_id:
            raise ConfigError(
                f"the store is bound to experiment {config.experiment_id!r}, and these "
                f"runs go to {experiment_id!r}; pass as_experiment / --as "
                f"{config.experiment_id!r}, or a store of many experiments"
            )
        return config.connect()
    return config.scoped(experiment_id).connect()


@dataclass(frozen=True)
class _Experiment:
    path: Path
    mlflow_id: str
    name: str
    deleted: bool

    @property
    def metalab_id(self) -> str:
        name = unicodedata.normalize("NFC", self.name.replace("/", "_").replace("\\", "_"))
        return f"{name}:1"

    def run_directories(self, report: ImportReport) -> list[Path]:
        try:
            children = sorted(self.path.iterdir())
        except OSError as exc:
            report.problems.append(f"{self.path}: cannot list the runs: {exc}")
            return []
        return [p for p in children if p.is_dir() and p.name not in _NOT_RUNS]


def _experiments(root: Path, include_deleted: bool, report: ImportReport) -> Iterator[_Experiment]:
    places = [(root, False)]
    if include_deleted:
        places.append((root / ".trash", True))
    for place, trashed in places:
        if not place.is_dir():
            continue
        for path in sorted(place.iterdir()):
            if not path.is_dir() or path.name in _NOT_EXPERIMENTS:
                continue
            try:
                meta = _read_meta(path / "meta.yaml")
                mlflow_id = str(_required(meta, "experiment_id"))
                name = _required(meta, "name")
            except _Malformed as exc:
                report.problems.append(f"MLflow experiment at {path}: {exc}; skipped")
                continue
            if not isinstance(name, str) or not name:
                report.problems.append(f"MLflow experiment at {path}: its name is not a string")
                continue
            deleted = trashed or meta.get("lifecycle_stage") == "deleted"
            if deleted and not include_deleted:
                continue
            yield _Experiment(path, mlflow_id, name, deleted)


def _import_run(
    store: Store,
    run_dir: Path,
    experiment_id: str,
    experiment: _Experiment,
    include_deleted: bool,
    report: ImportReport,
) -> None:
    try:
        run = _read_run(run_dir, experiment_id, experiment, report)
    except _Malformed as exc:
        report.problems.append(f"MLflow run {run_dir}: {exc}; not imported")
        return
    record = run.record
    if run.deleted and not include_deleted:
        report.deleted.append(record.run_id)
        return
    try:
        existing = store.get_run_record(record.run_id)
    except (ConfigError, CorruptRecordError) as exc:
        report.problems.append(f"MLflow run {run_dir}: {exc}; not imported")
        return
    if existing is not None:
        extra = existing.provenance.extra
        if extra.get("source") != SOURCE:
            report.problems.append(
                f"MLflow run {run_dir}: the store holds a run {record.run_id} of its own "
                "(not imported from MLflow); left alone"
            )
            return
        if extra.get("mlflow_digest") == record.provenance.extra["mlflow_digest"]:
            report.unchanged.append(record.run_id)
            return
    try:
        _write(store, run)
    except (MetalabError, OSError, ValueError) as exc:
        report.problems.append(
            f"MLflow run {run_dir}: {exc}; its record was not written (importing again retries it)"
        )
        return
    report.imported.append(record.run_id)


def _write(store: Store, run: _Run) -> None:
    """Write a run's artifacts, then its series, then its record (which makes it exist)."""
    record = run.record
    descriptors: list[ArtifactDescriptor] = []
    for artifact in run.artifacts:
        descriptors.append(
            store.put_artifact(
                record.run_id,
                artifact.name,
                artifact.path,
                kind="file",
                format=artifact.format,
                metadata={"mlflow_path": artifact.mlflow_path},
            )
        )
    if run.points and isinstance(store, SupportsSeries):
        store.append_series(record.run_id, run.points, restart=True)
    store.put_run_record(msgspec.structs.replace(record, artifacts=tuple(descriptors)))


def _read_run(
    run_dir: Path, experiment_id: str, experiment: _Experiment, report: ImportReport
) -> _Run:
    meta = _read_meta(run_dir / "meta.yaml")
    run_id = _required(meta, "run_id")
    if run_id != run_dir.name:
        raise _Malformed(f"meta.yaml names run {run_id!r}, not its directory {run_dir.name!r}")
    status = _status(meta.get("status", 1))
    started_at = _time(_required(meta, "start_time"), "start_time")
    end_time = meta.get("end_time")
    finished_at = None if end_time is None else _time(end_time, "end_time")
    if status == "running":
        finished_at = None
    elif finished_at is None:
        raise _Malformed(f"the run ended ({status}) but meta.yaml has no end_time")
    params = _texts(run_dir / "params", "param")
    tags = _texts(run_dir / "tags", "tag")
    raw_metrics = _texts(run_dir / "metrics", "metric")
    metrics: dict[str, MetricValue] = {}
    points: list[SeriesPoint] = []
    for name, text in raw_metrics.items():
        parsed = _metric_points(name, text)
        metrics[name] = max(parsed, key=lambda p: (p[1], p[0], p[2]))[2]
        points.extend(SeriesPoint(name, step, value, ms / 1000) for ms, step, value in parsed)
    artifacts = _artifacts(run_dir, meta.get("artifact_uri"), report)
    user_tags = sorted(
        f"{key}={value}" if value else key
        for key, value in tags.items()
        if not key.startswith("mlflow.")
    )
    system_tags: dict[str, JSONValue] = {k: v for k, v in tags.items() if k.startswith("mlflow.")}
    digest = _digest(meta, params, raw_metrics, tags, artifacts)
    extra: dict[str, JSONValue] = {
        "source": SOURCE,
        "mlflow_run_id": run_id,
        "mlflow_experiment_id": experiment.mlflow_id,
        "mlflow_experiment_name": experiment.name,
        "mlflow_run_name": _optional_text(meta.get("run_name")),
        "mlflow_user": _optional_text(meta.get("user_id")),
        "mlflow_status": _mlflow_status(meta.get("status", 1)),
        "mlflow_tags": system_tags,
        "mlflow_digest": digest,
    }
    record = RunRecord(
        run_id=run_id,
        experiment_id=experiment_id,
        status=status,
        started_at=started_at,
        finished_at=finished_at,
        duration_ms=None
        if finished_at is None
        else (finished_at - started_at).total_seconds() * 1000,
        params=dict(params),
        metrics=metrics,
        tags=tuple(user_tags),
        provenance=Provenance(extra=extra),
        notes=tags.get(_NOTE_TAG),
    )
    deleted = experiment.deleted or meta.get("lifecycle_stage") == "deleted"
    return _Run(run_dir, record, points, artifacts, deleted)


def _read_meta(path: Path) -> dict[str, Any]:
    import yaml  # noqa: PLC0415 -- optional (mlflow extra), required by import_mlruns

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _Malformed(f"it has no {path.name}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _Malformed(f"{path.name} cannot be read: {exc}") from None
    try:
        loaded = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise _Malformed(f"{path.name} is not YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(loaded, dict):
        raise _Malformed(f"{path.name} is not a mapping")
    return loaded


def _required(meta: Mapping[str, Any], key: str) -> Any:
    value = meta.get(key)
    if value is None or value == "":
        raise _Malformed(f"meta.yaml has no {key}")
    return value


def _mlflow_status(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value in _STATUS_NUMBERS:
        return _STATUS_NUMBERS[value]
    if isinstance(value, str) and value in _STATUS:
        return value
    raise _Malformed(f"meta.yaml has an unknown status {value!r}")


def _status(value: object) -> Status:
    return _STATUS[_mlflow_status(value)]


def _time(value: object, key: str) -> dt.datetime:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Malformed(f"meta.yaml's {key} is not a time in milliseconds: {value!r}")
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC)


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _texts(folder: Path, what: str) -> dict[str, str]:
    """The files under ``folder`` by their path (a key may hold ``/``), as text."""
    found: dict[str, str] = {}
    if not folder.is_dir():
        return found
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = path.relative_to(folder).as_posix()
        try:
            found[key] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _Malformed(f"{what} {key!r} cannot be read: {exc}") from None
    return found


def _metric_points(name: str, text: str) -> list[tuple[int, int, float]]:
    """A metric file's points as (milliseconds, step, value), in the order logged."""
    points: list[tuple[int, int, float]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        # "<ms> <value>", "<ms> <value> <step>", or with a dataset's name and digest.
        if len(parts) not in (2, 3, 5):
            raise _Malformed(
                f"metric {name!r}, line {number}: {line!r} is not '<ms> <value> <step>'"
            )
        try:
            ms, value = int(parts[0]), float(parts[1])
            step = int(parts[2]) if len(parts) > 2 else 0
        except ValueError:
            raise _Malformed(
                f"metric {name!r}, line {number}: {line!r} is not '<ms> <value> <step>'"
            ) from None
        if step < 0:
            raise _Malformed(
                f"metric {name!r}, line {number}: step {step} is negative (metalab's steps "
                "are 0 or more)"
            )
        points.append((ms, step, value))
    if not points:
        raise _Malformed(f"metric {name!r} has no points")
    return points


def _artifacts(run_dir: Path, artifact_uri: object, report: ImportReport) -> list[_Artifact]:
    """The run's artifact files, named for metalab; notes when they live elsewhere."""
    folder = run_dir / "artifacts"
    if not folder.is_dir() and isinstance(artifact_uri, str) and artifact_uri:
        parts = urlsplit(artifact_uri)
        if parts.scheme in ("", "file"):
            elsewhere = Path(unquote(parts.path))
            if elsewhere.is_dir():
                folder = elsewhere
        elif parts.scheme:
            report.notes.append(
                f"run {run_dir.name}: its artifacts are at {artifact_uri!r}, which is not a "
                "local directory; they were not copied"
            )
    if not folder.is_dir():
        return []
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    relative = [p.relative_to(folder).as_posix() for p in paths]
    names = [_artifact_name(r) for r in relative]
    shared = {n for n, count in Counter(names).items() if count > 1}
    artifacts = []
    for path, rel, name in zip(paths, relative, names, strict=True):
        if name in shared:
            name = _hashed(name, rel)  # noqa: PLW2901 -- the name made unique
        suffix = PurePosixPath(rel).suffix[1:]
        fmt = suffix if _FORMAT.fullmatch(suffix) else "bin"
        artifacts.append(_Artifact(name, fmt, path, rel))
    return artifacts


def _artifact_name(path: str) -> str:
    """A metalab artifact name for an MLflow artifact path: ``a/b.png`` -> ``a.b.png``.

    Characters a name cannot hold become ``-``, and such a name, or one too long,
    gets a short digest of the path, so that two paths never share a name.
    """
    dotted = path.replace("/", ".")
    name = _NAME_CHARS.sub("-", dotted)
    if name != dotted or len(name) > 128 or not name[0].isalnum():
        return _hashed(name, path)
    return name


def _hashed(name: str, path: str) -> str:
    digest = hashlib.sha256(path.encode()).hexdigest()[:10]
    stem = name.strip("._-")[:100] or "artifact"
    return f"{stem}-{digest}"


def _digest(
    meta: Mapping[str, Any],
    params: Mapping[str, str],
    metrics: Mapping[str, str],
    tags: Mapping[str, str],
    artifacts: list[_Artifact],
) -> str:
    """A digest of what the import reads of a run, to tell whether it changed since.

    The artifact location is left out (it names the directory the store was written
    in, which moves when ``mlruns/`` is copied). Artifacts count by path, size and
    modification time (in nanoseconds), which is cheap, unlike reading their bytes:
    a file rewritten with the same size still shows as changed. A copy that does not
    keep modification times (``cp`` without ``-p``, ``rsync`` without ``-t``) makes
    the runs with artifacts import once more, which is harmless.
    """
    described = {
        "meta": {k: v for k, v in sorted(meta.items()) if k != "artifact_uri"},
        "params": params,
        "metrics": metrics,
        "tags": tags,
        "artifacts": [[a.mlflow_path, *_size_and_mtime(a.path)] for a in artifacts],
    }
    return hashlib.sha256(msgspec.json.encode(described, order="sorted")).hexdigest()


def _size_and_mtime(path: Path) -> tuple[int, int]:
    """A file's size in bytes and its modification time in nanoseconds, from one stat."""
    status = path.stat()
    return status.st_size, status.st_mtime_ns
