"""Postgres configs work without importing psycopg (checked in a fresh process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHECK = textwrap.dedent(
    """
    import sys
    import metalab.store
    from metalab.store import PostgresStoreConfig, StoreConfig, parse_to_config

    config = parse_to_config("postgres://me:pw@db/lab?file_root=/data&schema=ml")
    assert isinstance(config, PostgresStoreConfig)
    assert StoreConfig.from_dict(config.to_dict()) == config
    assert parse_to_config(config.to_locator()) == config
    repr(config.scoped("exp:1"))
    print(",".join(m for m in ("psycopg", "psycopg_pool") if m in sys.modules))
    """
)


def test_postgres_configs_load_no_driver() -> None:
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""
