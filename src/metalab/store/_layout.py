"""Where a FileStore keeps each document.

Every id and name that reaches a path is checked (by :mod:`metalab.store._rules`)
before a path is built from it, and an experiment id is mapped to one directory name
by :func:`safe_experiment_id`. The directory of one experiment (or of a standalone
store) looks like::

    _meta.json                       StoreMeta: format version, experiment id
    runs/{run_id}.json               run records
    derived/{run_id}.json            derived metrics
    artifacts/{run_id}/{name}.{fmt}  artifact files ({name}@{version}.{fmt} for a
                                     replacement, so a file the manifest names is
                                     never written over)
    artifacts/{run_id}/_manifest.json  their descriptors (sha256, size)
    logs/{run_id}_{name}.log         logs
    results/{run_id}/{name}.json     structured results (capture.data)
    series/{run_id}.jsonl            metric series (capture.metric(..., step=...)), appended
    experiments/{safe_id}_{ts}.json  one manifest per submission

File names starting with ``.`` (temp files, the ``.lock`` file, the index intents in
``.index-intents/``, metalab 0.1's ``.locks/``) are never documents, and every scan of
a store directory ignores them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from metalab.store._fileio import fsync_directory
from metalab.store._rules import (
    validate_experiment_id,
    validate_format,
    validate_name,
    validate_run_id,
)

__all__ = [
    "ARTIFACT_MANIFEST_FILE",
    "LOCK_FILE",
    "META_FILE",
    "SUBDIRECTORIES",
    "FileStoreLayout",
    "manifest_file_name",
    "safe_experiment_id",
]

META_FILE: Final = "_meta.json"
ARTIFACT_MANIFEST_FILE: Final = "_manifest.json"
LOCK_FILE: Final = ".lock"
SUBDIRECTORIES: Final = ("runs", "derived", "artifacts", "logs", "results", "experiments")


def safe_experiment_id(experiment_id: str) -> str:
    """Map an experiment id to the name of its directory (``my_exp:1.0 -> my_exp_1.0``).

    Only ``:`` is replaced, as metalab 0.1 did, so existing collections keep their
    directories. The map is not one-to-one (``"a:1"`` and ``"a_1"`` share a
    directory); ``_meta.json`` records the real id and a FileStore refuses a
    directory that belongs to another experiment.

    Raises:
        ConfigError: The id is not one a store can keep
            (:func:`~metalab.store._rules.validate_experiment_id`).
    """
    return validate_experiment_id(experiment_id).replace(":", "_")


def manifest_file_name(experiment_id: str, submitted_at: dt.datetime) -> str:
    """The base name (without ``.json``) of an experiment manifest file."""
    stamp = submitted_at.astimezone(dt.UTC).strftime("%Y%m%d_%H%M%S_%f")
    return f"{safe_experiment_id(experiment_id)}_{stamp}"


@dataclass(frozen=True)
class FileStoreLayout:
    """Every path inside one store directory.

    Methods that take ids validate them before building a path, so a path returned
    here never leaves :attr:`directory`.

    Attributes:
        directory: The store directory (an experiment's, or a standalone store's).
    """

    directory: Path

    @property
    def runs_dir(self) -> Path:
        """The directory of run records."""
        return self.directory / "runs"

    @property
    def derived_dir(self) -> Path:
        """The directory of derived metrics."""
        return self.directory / "derived"

    @property
    def artifacts_dir(self) -> Path:
        """The directory holding one artifact directory per run."""
        return self.directory / "artifacts"

    @property
    def logs_dir(self) -> Path:
        """The directory of log files."""
        return self.directory / "logs"

    @property
    def results_dir(self) -> Path:
        """The directory holding one result directory per run."""
        return self.directory / "results"

    @property
    def series_dir(self) -> Path:
        """The directory of metric series files (made when a run first logs a point)."""
        return self.directory / "series"

    @property
    def experiments_dir(self) -> Path:
        """The directory of experiment manifests."""
        return self.directory / "experiments"

    @property
    def meta_path(self) -> Path:
        """The ``_meta.json`` of the store."""
        return self.directory / META_FILE

    @property
    def lock_path(self) -> Path:
        """The one lock file of the store (hidden, so scans ignore it)."""
        return self.directory / LOCK_FILE

    def run_path(self, run_id: str) -> Path:
        """``runs/{run_id}.json``."""
        return self.runs_dir / f"{validate_run_id(run_id)}.json"

    def derived_path(self, run_id: str) -> Path:
        """``derived/{run_id}.json``."""
        return self.derived_dir / f"{validate_run_id(run_id)}.json"

    def artifact_dir(self, run_id: str) -> Path:
        """``artifacts/{run_id}/``."""
        return self.artifacts_dir / validate_run_id(run_id)

    def artifact_uri(self, run_id: str, name: str, fmt: str, version: str | None = None) -> str:
        """The store-relative URI of an artifact file.

        ``artifacts/{run_id}/{name}.{fmt}``, or ``artifacts/{run_id}/{name}@{version}.{fmt}``
        for a version that replaces the file of that name: ``@`` is not allowed in
        names, so a versioned file never has another artifact's name.
        """
        validate_run_id(run_id)
        validate_name(name, "artifact name")
        validate_format(fmt)
        if version is None:
            return f"artifacts/{run_id}/{name}.{fmt}"
        return f"artifacts/{run_id}/{name}@{version}.{fmt}"

    def artifact_path(self, run_id: str, name: str, fmt: str) -> Path:
        """``artifacts/{run_id}/{name}.{fmt}``."""
        return self.directory / self.artifact_uri(run_id, name, fmt)

    def artifact_manifest_path(self, run_id: str) -> Path:
        """``artifacts/{run_id}/_manifest.json``."""
        return self.artifact_dir(run_id) / ARTIFACT_MANIFEST_FILE

    def log_path(self, run_id: str, name: str) -> Path:
        """``logs/{run_id}_{name}.log``."""
        validate_run_id(run_id)
        validate_name(name, "log name")
        return self.logs_dir / f"{run_id}_{name}.log"

    def series_path(self, run_id: str) -> Path:
        """``series/{run_id}.jsonl``."""
        return self.series_dir / f"{validate_run_id(run_id)}.jsonl"

    def result_dir(self, run_id: str) -> Path:
        """``results/{run_id}/``."""
        return self.results_dir / validate_run_id(run_id)

    def result_path(self, run_id: str, name: str) -> Path:
        """``results/{run_id}/{name}.json``."""
        return self.result_dir(run_id) / f"{validate_name(name, 'result name')}.json"

    def experiment_manifest_path(self, experiment_id: str, submitted_at: dt.datetime) -> Path:
        """``experiments/{safe_experiment_id}_{YYYYmmdd_HHMMSS_ffffff}.json`` (UTC)."""
        return self.experiments_dir / f"{manifest_file_name(experiment_id, submitted_at)}.json"

    def ensure_skeleton(self, *, durable: bool = False) -> None:
        """Create the store directory and every subdirectory that is missing.

        Args:
            durable: Also fsync the directories, so the skeleton survives a crash.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in SUBDIRECTORIES:
            (self.directory / name).mkdir(exist_ok=True)
        if durable:
            fsync_directory(self.directory)
            fsync_directory(self.directory.parent)
