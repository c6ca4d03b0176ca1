"""The one exception hierarchy of metalab.

Every error metalab raises on purpose is a :class:`MetalabError`. Families that have
an obvious builtin meaning also derive from that builtin, so ``except ValueError``
keeps working for configuration mistakes::

    MetalabError(Exception)
    ├── ConfigError(MetalabError, ValueError)        bad config value, from_dict failure
    │   ├── LocatorError(ConfigError)                unparsable locator, missing parameter
    │   ├── UnknownSchemeError(ConfigError)          .scheme, .known
    │   └── QueryError(ConfigError)                  a query that cannot be run
    │       └── QuerySyntaxError(QueryError)         .text, .column, .expected
    ├── RegistryError(MetalabError)                  plugin failed to load or register
    ├── MissingDependencyError(MetalabError, ImportError)   .module, .extra, .feature
    ├── CapabilityError(MetalabError, TypeError)     store lacks a Supports* protocol
    ├── ServiceError(MetalabError, RuntimeError)     a service (metalab postgres) failed
    └── StoreError(MetalabError)
        ├── ArtifactNotFoundError(StoreError, FileNotFoundError)
        ├── CorruptRecordError(StoreError)           .path, .reason
        │   └── UnsupportedSchemaVersionError(CorruptRecordError)  .found, .supported
        ├── ExperimentMismatchError(StoreError)      .path, .expected, .found
        ├── ExperimentNotFoundError(StoreError, LookupError)   .experiment_id, .known, .where
        ├── StoreNotFoundError(StoreError, FileNotFoundError)  .path, .reason
        └── IndexUnavailableError(StoreError)        the Postgres index cannot be reached
            └── IndexMissingError                    no index yet (a reader does not create one)
    SweepInterrupted(KeyboardInterrupt)              Ctrl-C on a sweep; .not_started, .total
    MetalabWarning(UserWarning)
    └── IndexStaleWarning                            files were written, the index lags

Exceptions carry their inputs as attributes and build the message from them. They
survive pickling (executors ship them between processes) because each one keeps
``args`` equal to its constructor arguments.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ArtifactNotFoundError",
    "CapabilityError",
    "ConfigError",
    "CorruptRecordError",
    "ExperimentMismatchError",
    "ExperimentNotFoundError",
    "IndexMissingError",
    "IndexStaleWarning",
    "IndexUnavailableError",
    "LocatorError",
    "MetalabError",
    "MetalabWarning",
    "MissingDependencyError",
    "QueryError",
    "QuerySyntaxError",
    "RegistryError",
    "ServiceError",
    "StoreError",
    "StoreNotFoundError",
    "SweepInterrupted",
    "UnknownSchemeError",
    "UnsupportedSchemaVersionError",
]


class MetalabError(Exception):
    """Root of every error metalab raises on purpose."""


class ConfigError(MetalabError, ValueError):
    """A configuration value is invalid; the message names it and says what is expected."""


class LocatorError(ConfigError):
    """A store locator (path or URI) cannot be parsed or lacks a required part."""


class UnknownSchemeError(ConfigError):
    """No store is registered for a locator's scheme.

    Attributes:
        scheme: The scheme that was asked for.
        locator: The locator it came from (already redacted by the caller).
        known: The schemes that are registered.
    """

    def __init__(self, scheme: str, locator: str, known: Iterable[str]) -> None:
        self.scheme = scheme
        self.locator = locator
        self.known = tuple(sorted(known))
        super().__init__(scheme, locator, self.known)

    def __str__(self) -> str:
        return (
            f"unknown store scheme {self.scheme!r} in {self.locator!r}; "
            f"known: {', '.join(self.known) or '(none)'} "
            "(register one with a 'metalab.stores' entry point "
            "or by subclassing metalab.store.StoreConfig with a `scheme` class variable)"
        )


class QueryError(ConfigError):
    """A query is invalid: an unknown field, an operator that does not apply, a bad value."""


class QuerySyntaxError(QueryError):
    """A query string cannot be parsed.

    Attributes:
        text: The query string.
        column: 1-based column of the problem.
        expected: What the parser expected there.
        found: What it found instead.
    """

    def __init__(self, text: str, column: int, expected: str, found: str) -> None:
        self.text = text
        self.column = column
        self.expected = expected
        self.found = found
        super().__init__(text, column, expected, found)

    def __str__(self) -> str:
        caret = " " * (self.column - 1) + "^"
        return (
            f"invalid query at column {self.column}: expected {self.expected}, "
            f"found {self.found}\n    {self.text}\n    {caret}"
        )


class ServiceError(MetalabError, RuntimeError):
    """A service metalab runs (``metalab postgres``) could not do what was asked."""


class RegistryError(MetalabError):
    """A store plugin could not be loaded or registered."""


class MissingDependencyError(MetalabError, ImportError):
    """An optional dependency needed by a feature is not installed.

    Attributes:
        module: The module that failed to import.
        extra: The metalab extra that installs it.
        feature: The feature that needs it.
    """

    def __init__(self, module: str, extra: str, feature: str) -> None:
        self.module = module
        self.extra = extra
        self.feature = feature
        super().__init__(module, extra, feature)
        # ImportError keeps its own ``name`` attribute; fill it for tools that read it.
        self.name = module

    def __str__(self) -> str:
        return (
            f"{self.feature} needs the optional dependency {self.module!r}, "
            f"which is not installed; install the {self.extra!r} extra:\n"
            f"    pip install 'metalab[{self.extra}]'\n"
            f"    uv add 'metalab[{self.extra}]'"
        )


class CapabilityError(MetalabError, TypeError):
    """A store does not implement a capability that an operation needs.

    Attributes:
        store_type: The qualified name of the store's class.
        capability: The name of the missing ``Supports*`` protocol.
        operation: What was being attempted.
    """

    def __init__(self, store_type: str, capability: str, operation: str) -> None:
        self.store_type = store_type
        self.capability = capability
        self.operation = operation
        super().__init__(store_type, capability, operation)

    def __str__(self) -> str:
        return (
            f"{self.operation} needs a store that implements {self.capability}, "
            f"but {self.store_type} does not; {_WHO_HAS.get(self.capability, _MOST)}"
        )


# Which of metalab's own stores have a capability that some of them lack.
_INDEX = "only an indexed store has it: a PostgresStore over the same files"
_WHO_HAS: dict[str, str] = {
    "SupportsIndexRebuild": _INDEX,
    "SupportsIndexSync": _INDEX,
    "SupportsWorkingDirectory": "FileStore and PostgresStore have it (files on disk)",
    "SupportsFrameCache": "only a FileStore has it (a PostgresStore reads its index)",
}
_MOST = "FileStore and PostgresStore have it"


class StoreError(MetalabError):
    """A store could not complete an operation."""


class ArtifactNotFoundError(StoreError, FileNotFoundError):
    """An artifact that was asked for does not exist.

    Attributes:
        run_id: The run the artifact was looked up in.
        artifact: The artifact name.
    """

    def __init__(self, run_id: str, artifact: str) -> None:
        self.run_id = run_id
        self.artifact = artifact
        super().__init__(run_id, artifact)

    def __str__(self) -> str:
        return (
            f"run {self.run_id!r} has no artifact {self.artifact!r}; "
            "list_artifacts(run_id) shows the ones it has"
        )


class CorruptRecordError(StoreError):
    """A stored document cannot be decoded.

    Attributes:
        path: Where the document was read from (a file path or another description).
        reason: What is wrong, including the JSON path of the problem when known.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(path, reason)

    def __str__(self) -> str:
        return (
            f"corrupt record at {self.path!r}: {self.reason}; "
            "restore the file from a backup or delete the run and run it again"
        )


class UnsupportedSchemaVersionError(CorruptRecordError):
    """A stored document was written by a newer (or unknown) format version.

    Attributes:
        path: Where the document was read from.
        found: The version the document declares.
        supported: The versions this metalab can read.
    """

    def __init__(self, path: str, found: object, supported: Iterable[object]) -> None:
        self.found = found
        self.supported = tuple(supported)
        StoreError.__init__(self, path, found, self.supported)
        self.path = path
        self.reason = f"schema version {found!r} is not supported"

    def __str__(self) -> str:
        known = ", ".join(repr(v) for v in self.supported)
        return (
            f"document at {self.path!r} has schema version {self.found!r}, "
            f"but this metalab reads only {known}; upgrade metalab to read it"
        )


class ExperimentMismatchError(StoreError):
    """A directory already belongs to a different experiment.

    Attributes:
        path: The experiment directory.
        expected: The experiment id that was asked for.
        found: The experiment id recorded in the directory's ``_meta.json``.
    """

    def __init__(self, path: str, expected: str, found: str | None) -> None:
        self.path = path
        self.expected = expected
        self.found = found
        super().__init__(path, expected, found)

    def __str__(self) -> str:
        return (
            f"directory {self.path!r} belongs to experiment {self.found!r}, "
            f"not {self.expected!r}; use a different store root or experiment id"
        )


class ExperimentNotFoundError(StoreError, LookupError):
    """A store holds no experiment of the id that was asked for.

    Attributes:
        experiment_id: The id asked for.
        known: The experiments the store does hold, sorted.
        where: The store, as it can be shown (a path or a redacted locator).
    """

    def __init__(self, experiment_id: str, known: Iterable[str], where: str) -> None:
        self.experiment_id = experiment_id
        self.known = tuple(sorted(known))
        self.where = where
        super().__init__(experiment_id, self.known, where)

    def suggestion(self) -> str | None:
        """The known id closest to the one asked for, if one is close."""
        versions = [k for k in self.known if k.startswith(f"{self.experiment_id}:")]
        if versions:
            return versions[-1]
        close = difflib.get_close_matches(self.experiment_id, self.known, n=1, cutoff=0.6)
        return close[0] if close else None

    def __str__(self) -> str:
        text = f"no experiment {self.experiment_id!r} in {self.where}"
        if not self.known:
            return f"{text}; the store has no experiments yet"
        closest = self.suggestion()
        if closest is not None:
            text += f"; did you mean {closest!r}?"
        shown = ", ".join(self.known[:20]) + (", ..." if len(self.known) > 20 else "")
        return f"{text} (experiments: {shown})"


class StoreNotFoundError(StoreError, FileNotFoundError):
    """A locator names no metalab store.

    Attributes:
        path: The directory it names.
        reason: What is there instead.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(path, reason)

    def __str__(self) -> str:
        return f"no metalab store at {self.path!r}: {self.reason}"


class IndexUnavailableError(StoreError):
    """The Postgres index could not be reached.

    Files written before the error are kept; ``sync_index()`` indexes them later.
    """


class IndexMissingError(IndexUnavailableError):
    """The schema holds no index of this metalab's layout, and the store may not create one.

    Commands that only read (``metalab store ls``, ``info``, ``verify``, ``runs ls``)
    open a PostgresStore this way; ``metalab store rebuild-index`` builds the index.
    """


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep; the runs that had not started are recorded cancelled.

    A ``KeyboardInterrupt``, so code that stops on Ctrl-C still does; not a
    :class:`MetalabError`, so ``except Exception`` does not swallow it. Left
    uncaught in a script it is reported as its one-line message, without a
    traceback.

    Attributes:
        experiment_id: The experiment of the sweep.
        not_started: Runs of this sweep that never started.
        total: Runs the experiment defines.
    """

    def __init__(self, experiment_id: str, not_started: int, total: int) -> None:
        self.experiment_id = experiment_id
        self.not_started = not_started
        self.total = total
        super().__init__(experiment_id, not_started, total)

    def __str__(self) -> str:
        return (
            f"cancelled: {self.not_started:,} of {self.total:,} runs of "
            f"{self.experiment_id!r} not started (run it again to resume)"
        )


class MetalabWarning(UserWarning):
    """Root of the warnings metalab emits."""


class IndexStaleWarning(MetalabWarning):
    """A write reached the files but not the index; ``sync_index()`` will repair it."""
