"""Stores: where run records, artifacts, logs and structured results live.

The filesystem store is the default and the source of truth; the PostgreSQL store
adds a query index on top of it. Both, and any third-party store, are reached through
the same locators (``"./experiments"``, ``"file:///..."``, ``"postgresql://..."``) and
configs. ``PostgresStore``, ``PostgresStoreConfig`` and ``PostgresIndex`` are loaded on
first use, so importing this package never imports psycopg.

Which module owns what (each rule of the contract has exactly one home)::

    abc.py               the contract: Store, StoreConfig, the Supports* capabilities
    registry.py          scheme -> config class (and 'metalab.stores' entry points)
    locator.py           parsing locators; _factory.py: locator/config -> store
    _rules.py            the rules every backend calls: which record wins (with its
                         SQL twin), the scope check, "a document holds the run it is
                         filed under", id and name validation
    _collection.py       the one router of stores that hold many experiments: bound
                         to one space, or routing by experiment (FileStore, MemoryStore)
    _query.py            queries and field catalogs answered in Python over any Store
    transfer.py          export_store: copying between any two stores

    _file.py             FileStoreConfig, FileStore (a Collection of directories) and
                         its document API: documents with their file state
    _directory.py        one store directory: the layout's documents, no routing
    _artifacts.py        a directory's artifact files and the manifest naming them
    _layout.py           where each document lives in a directory
    _fileio.py           atomic writes, reads, the directory lock
    _documents.py        Document, DocumentRef, FileState: what an index consumes
    _intents.py          index intents: what a writer leaves while its files are
                         ahead of the index, turned into a stale mark if it dies

    _memory.py           MemoryStoreConfig, MemoryStore (a Collection of partitions)

    _index.py            the RecordIndex protocol: what an index over a FileStore is
    _indexed.py          IndexedStore = FileStore + RecordIndex: stale marks, fallback
                         reads, sync and rebuild through the FileStore's document API
    _postgres.py         PostgresStoreConfig and PostgresStore (an IndexedStore);
                         imports psycopg only when a store is opened
    _postgres_index.py   PostgresIndex, the RecordIndex on psycopg 3
    _postgres_pool.py    the connection pool, and what "unreachable" means
    _postgres_rows.py    document -> index row
    _postgres_schema.py  the index tables, declared once; the DDL derived from them
    _postgres_sql.py     every statement, grouped per table
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from metalab.store._factory import coerce_store_config, create_store, parse_to_config
from metalab.store._file import FileStore, FileStoreConfig, ScanResult
from metalab.store._memory import MemoryStore, MemoryStoreConfig
from metalab.store._query import derived_lookup, select_runs
from metalab.store._records_snapshot import SnapshotCheck
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
    SupportsFrameCache,
    SupportsIndexedFiles,
    SupportsIndexRebuild,
    SupportsIndexSync,
    SupportsLogs,
    SupportsQuery,
    SupportsRunEdits,
    SupportsRunSummary,
    SupportsSeries,
    SupportsSeriesMany,
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
    "SnapshotCheck",
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
    "SupportsRunEdits",
    "SupportsRunSummary",
    "SupportsSeries",
    "SupportsSeriesMany",
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
