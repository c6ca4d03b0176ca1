"""Services metalab can run for you.

- :mod:`metalab.services.postgres`: a PostgreSQL server of your own, for the
  PostgresStore (``metalab postgres start``).

Not imported by ``import metalab``.
"""

from __future__ import annotations

__all__: list[str] = []
