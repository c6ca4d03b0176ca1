"""Where a FileStore keeps each document, and which ids may become path components.

Every id and name that reaches a path is checked here, before any filesystem call:
a run id, artifact, log or result name must be one safe path component, and an
experiment id is mapped to one directory name by :func:`safe_experiment_id`. The
directory of one experiment (or of a standalone store) looks like::

    _meta.json                       StoreMeta: format version, experiment id
    runs/{run_id}.json               run records
    derived/{run_id}.json            derived metrics
    artifacts/{run_id}/{name}.{fmt}  artifact files
    artifacts/{run_id}/_manifest.json  their descriptors (sha256, size)
    logs/{run_id}_{name}.log         logs
    results/{run_id}/{name}.json     structured results (capture.data)
    experiments/{safe_id}_{ts}.json  one manifest per submission

File names starting with ``.`` (temp files, the ``.lock`` file, metalab 0.1's
``.locks/``) are never documents, and every scan of a store directory ignores them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from metalab.errors import ConfigError
from metalab.store._atomic import fsync_directory

__all__ = [
    "MAX_EXPERIMENT_ID_LENGTH",
    "FileStoreLayout",
    "manifest_file_name",
    "safe_experiment_id",
    "validate_format",
    "validate_name",
    "validate_run_id",
]

MAX_EXPERIMENT_ID_LENGTH: Final = 200

META_FILE: Final = "_meta.json"
ARTIFACT_MANIFEST_FILE: Final = "_manifest.json"
LOCK_FILE: Final = ".lock"
SUBDIRECTORIES: Final = ("runs", "derived", "artifacts", "logs", "results", "experiments")

# Run ids have no '_': a log file is ``{run_id}_{name}.log``, and the first '_' must
# tell where the run id ends, or deleting run "a" would take the logs of run "a_b".
_RUN_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,127}")
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")

_RUN_ID_RULE: Final = "1 to 128 letters, digits, '.' or '-', starting with a letter or digit"
_NAME_RULE: Final = (
    "1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit "
    "(names starting with '_' or '.' are reserved)"
)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...{text[-12:]} ({len(text)} chars)"


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it can be a file name, else raise.

    Raises:
        ConfigError: The id is not a string or does not match the allowed characters.
    """
    value: object = run_id
    if not isinstance(value, str) or _RUN_ID.fullmatch(value) is None:
        raise ConfigError(f"invalid run id {_shown(value)}: a run id must be {_RUN_ID_RULE}")
    return run_id


def validate_name(name: str, what: str = "name") -> str:
    """Return an artifact, log or result ``name`` if it is one safe path component.

    Args:
        name: The name to check.
        what: What the name is, for the message (``"artifact name"``).

    Raises:
        ConfigError: The name is not a string or does not match the allowed characters.
    """
    value: object = name
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        raise ConfigError(f"invalid {what} {_shown(value)}: it must be {_NAME_RULE}")
    return name


def validate_format(fmt: str) -> str:
    """Return an artifact format (the file extension) if it is safe in a file name.

    Raises:
        ConfigError: The format does not match the allowed characters.
    """
    return validate_name(fmt, "artifact format")


def safe_experiment_id(experiment_id: str) -> str:
    """Map an experiment id to the name of its directory (``my_exp:1.0 -> my_exp_1.0``).

    Only ``:`` is replaced, as metalab 0.1 did, so existing collections keep their
    directories. The map is not one-to-one (``"a:1"`` and ``"a_1"`` share a
    directory); ``_meta.json`` records the real id and a FileStore refuses a
    directory that belongs to another experiment.

    Raises:
        ConfigError: The id is empty, ``.`` or ``..``, holds a path separator, NUL
            or another control character, or is longer than 200 characters.
    """
    value: object = experiment_id
    if not isinstance(value, str):
        raise ConfigError(f"experiment id must be a string, got {type(value).__name__}")
    problem = None
    if not experiment_id:
        problem = "it is empty"
    elif len(experiment_id) > MAX_EXPERIMENT_ID_LENGTH:
        problem = f"it is longer than {MAX_EXPERIMENT_ID_LENGTH} characters"
    elif "/" in experiment_id or "\\" in experiment_id:
        problem = "it contains a path separator ('/' or '\\\\')"
    elif _CONTROL.search(experiment_id):
        problem = "it contains NUL or another control character"
    elif experiment_id in (".", ".."):
        problem = "it names the current or parent directory"
    if problem is not None:
        raise ConfigError(
            f"invalid experiment id {_shown(experiment_id)}: {problem}; "
            "use a name like 'my_exp:1.0' (not '.' or '..', no '/', '\\\\' or control "
            f"characters, at most {MAX_EXPERIMENT_ID_LENGTH} characters)"
        )
    return experiment_id.replace(":", "_")


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

    def artifact_uri(self, run_id: str, name: str, fmt: str) -> str:
        """The store-relative URI of an artifact file (``artifacts/{run_id}/{name}.{fmt}``)."""
        validate_run_id(run_id)
        validate_name(name, "artifact name")
        validate_format(fmt)
        return f"artifacts/{run_id}/{name}.{fmt}"

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
