"""The PostgreSQL server of a benchmark run.

``$METALAB_BENCH_POSTGRES_URL`` if set (a libpq URI; the benchmarks create and drop
their own schemas there), else a throwaway embedded ``pgserver`` in a new temporary
directory, deleted afterwards. The embedded server keeps PostgreSQL's default
settings (``fsync`` and ``synchronous_commit`` on): the figures are those of a server
that keeps what it acknowledges.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator

import psycopg
from psycopg import sql

ENV_URL = "METALAB_BENCH_POSTGRES_URL"


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the libpq URI of the benchmark server (started and removed if embedded)."""
    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    with warnings.catch_warnings():
        # pgserver warns at import when XDG_RUNTIME_DIR is unset.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server  # noqa: PLC0415 -- optional (pgserver)

        server = get_server(tempfile.mkdtemp(prefix="metalab-bench-pg-"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def drop_schema(url: str, schema: str) -> None:
    """``DROP SCHEMA IF EXISTS schema CASCADE``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def settings(url: str) -> str:
    """The server's version and durability settings, for the notes of a measurement."""
    values = []
    with psycopg.connect(url) as conn:
        for name in ("server_version", "fsync", "synchronous_commit"):
            row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            values.append("?" if row is None else str(row[0]))
    return f"PostgreSQL {values[0]}, fsync={values[1]}, synchronous_commit={values[2]}"
