"""Moving runs between metalab and other tools.

- :mod:`metalab.interop.parquet`: every experiment of a store as Parquet files of
  runs and of metric series (``metalab store export --to parquet:///DIR``).
- :mod:`metalab.interop.mlflow`: runs of an MLflow file store (``mlruns/``) imported
  into any metalab store (``metalab import mlflow``), without MLflow installed.

Neither module is imported by ``import metalab``.
"""

from __future__ import annotations

__all__: list[str] = []
