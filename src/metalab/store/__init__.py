"""Stores: where run records, artifacts, logs and structured results live.

The filesystem store is the default and the source of truth; the PostgreSQL store
adds a query index on top of it. Both, and any third-party store, are reached through
the same locators (``"./experiments"``, ``"file:///..."``, ``"postgresql://..."``) and
configs. ``PostgresStore``, ``PostgresStoreConfig`` and ``PostgresIndex`` are loaded on
first use, so importing this package never imports psycopg.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from metalab.store._factory import coerce_store_config, create_store, parse_to_config
from metalab.store._file import FileStore, FileStoreConfig, ScanResult
from metalab.store._memory import MemoryStore, MemoryStoreConfig
from metalab.store._query import derived_lookup, select_runs
from metalab.store.abc import (
    ProgressCallback,
    Store,
    StoreConfig,
    StoreLike,
    SupportsArtifactStreaming,
    SupportsBulkDerived,
    SupportsBulkPut,
    SupportsDelete,
    SupportsExperimentManifests,
    SupportsExperiments,
    SupportsIndexedFiles,
    SupportsIndexRebuild,
    SupportsIndexSync,
    SupportsLogs,
    SupportsQuery,
    SupportsStructuredResults,
    SupportsWorkingDirectory,
    require_capability,
)
from metalab.store.locator import LocatorInfo, parse_locator
from metalab.store.transfer import ExportReport, export_store

if TYPE_CHECKING:
    from metalab.store._postgres import PostgresStore, PostgresStoreConfig
    from metalab.store._postgres_index import PostgresIndex

__all__ = [
    "ExportReport",
    "FileStore",
    "FileStoreConfig",
    "LocatorInfo",
    "MemoryStore",
    "MemoryStoreConfig",
    "PostgresIndex",
    "PostgresStore",
    "PostgresStoreConfig",
    "ProgressCallback",
    "ScanResult",
    "Store",
    "StoreConfig",
    "StoreLike",
    "SupportsArtifactStreaming",
    "SupportsBulkDerived",
    "SupportsBulkPut",
    "SupportsDelete",
    "SupportsExperimentManifests",
    "SupportsExperiments",
    "SupportsIndexRebuild",
    "SupportsIndexSync",
    "SupportsIndexedFiles",
    "SupportsLogs",
    "SupportsQuery",
    "SupportsStructuredResults",
    "SupportsWorkingDirectory",
    "coerce_store_config",
    "create_store",
    "derived_lookup",
    "export_store",
    "parse_locator",
    "parse_to_config",
    "require_capability",
    "select_runs",
]

_LAZY: Final = {
    "PostgresStoreConfig": "metalab.store._postgres",
    "PostgresStore": "metalab.store._postgres",
    "PostgresIndex": "metalab.store._postgres_index",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'metalab.store' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
