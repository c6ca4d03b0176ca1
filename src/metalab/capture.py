"""What an operation records while it runs: metrics, data, artifacts and logs.

Every run gets its own :class:`Capture`. Metrics are kept in memory and written with
the run's final record; structured data and artifacts are written to the store as
soon as they are captured (so a crash keeps what was already produced), and log lines
are appended to the store's log file and flushed one by one, so ``tail -f`` shows a
run as it goes. Nothing touches the store until the operation asks: a run that never
logs has no log file.

Data, artifacts and logs need the matching store capability
(:class:`~metalab.store.SupportsStructuredResults`, ``put_artifact`` of every store,
:class:`~metalab.store.SupportsLogs`); a store without one raises
:class:`~metalab.errors.CapabilityError` naming the store and the capability.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Final

from metalab._identity import to_json, to_json_object
from metalab._optional import require
from metalab.errors import CapabilityError
from metalab.records import (
    ArtifactDescriptor,
    JSONValue,
    MetricValue,
    ResultDocument,
    metric_value,
    utc_now,
)
from metalab.store.abc import Store, SupportsLogs, SupportsStructuredResults

__all__ = ["LOG_LEVELS", "Capture"]

LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")


def _check_metric_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"a metric name must be a non-empty string, got {name!r}")
    return name


def _is_numpy_array(obj: object) -> bool:
    # Checked by duck type and module name so that NumPy is never imported here.
    return type(obj).__module__ == "numpy" and hasattr(obj, "dtype") and hasattr(obj, "shape")


class Capture:
    """The recorder an operation receives as ``capture``.

    A capture belongs to one run. Its methods may be called from threads the
    operation starts; they are serialised by a lock.

    Args:
        store: The store the run writes to.
        run_id: The run being recorded.
    """

    def __init__(self, store: Store, run_id: str) -> None:
        self._store = store
        self._run_id = run_id
        self._metrics: dict[str, MetricValue] = {}
        self._artifacts: dict[str, ArtifactDescriptor] = {}
        self._log: IO[str] | None = None
        self._lock = threading.Lock()

    @property
    def run_id(self) -> str:
        """The id of the run being recorded."""
        return self._run_id

    @property
    def captured_metrics(self) -> dict[str, MetricValue]:
        """A copy of the metrics captured so far."""
        return dict(self._metrics)

    @property
    def captured_artifacts(self) -> tuple[ArtifactDescriptor, ...]:
        """The descriptors of the artifacts stored so far (the latest per name)."""
        return tuple(self._artifacts.values())

    def metric(self, name: str, value: MetricValue) -> None:
        """Record a scalar metric (a later value of the same name replaces it).

        Args:
            name: The metric's name.
            value: A bool, int, float (NaN and infinities included) or str; NumPy
                scalars are converted.

        Raises:
            TypeError: ``name`` is not a non-empty string, or ``value`` is not a scalar.
        """
        checked = metric_value(_check_metric_name(name), value)
        with self._lock:
            self._metrics[name] = checked

    def metrics(self, values: Mapping[str, MetricValue]) -> None:
        """Record several metrics at once; nothing is recorded if one is invalid.

        Raises:
            TypeError: A name or value is invalid (see :meth:`metric`).
        """
        checked = {_check_metric_name(k): metric_value(k, v) for k, v in values.items()}
        with self._lock:
            self._metrics.update(checked)

    def data(
        self, name: str, value: object, *, metadata: Mapping[str, JSONValue] | None = None
    ) -> None:
        """Store structured data of the run now (``run.data(name)`` reads it back).

        Data is meant for small, query-friendly values: curves, tables as lists,
        dicts of scores. NumPy arrays are stored as nested lists with their dtype
        and shape.

        Args:
            name: The data's name (letters, digits, ``_``, ``.``, ``-``).
            value: JSON-like data or a NumPy array.
            metadata: Free-form JSON stored alongside.

        Raises:
            CapabilityError: The store does not implement SupportsStructuredResults.
            ConfigError: ``value`` has no JSON form, or ``name`` is not a valid name.
        """
        store = self._store
        if not isinstance(store, SupportsStructuredResults):
            raise CapabilityError(
                type(store).__qualname__, "SupportsStructuredResults", "capture.data()"
            )
        dtype: str | None = None
        shape: tuple[int, ...] | None = None
        if _is_numpy_array(value):
            dtype = str(getattr(value, "dtype"))  # noqa: B009
            shape = tuple(int(n) for n in getattr(value, "shape"))  # noqa: B009
            value = getattr(value, "tolist")()  # noqa: B009
        document = ResultDocument(
            data=to_json(value, f"capture.data({name!r})"),
            dtype=dtype,
            shape=shape,
            metadata=to_json_object(metadata or {}, "metadata"),
        )
        store.put_result(self._run_id, name, document)

    def artifact(
        self,
        name: str,
        value: object,
        *,
        kind: str | None = None,
        format: str | None = None,
        metadata: Mapping[str, JSONValue] | None = None,
    ) -> ArtifactDescriptor:
        """Store a file-like result of the run now (``run.artifact(name)`` reads it).

        What is stored depends on ``value``:

        - ``bytes``, ``bytearray`` or ``memoryview``: the bytes (kind ``bytes``,
          format ``bin``);
        - a path (``pathlib.Path`` or any ``os.PathLike``): a copy of the file (kind
          ``file``, format from its suffix);
        - a NumPy array: the ``.npy`` file ``numpy.save`` writes (kind ``numpy``);
        - anything else JSON-like (dict, list, str, numbers): UTF-8 JSON (kind
          ``json``). A plain ``str`` is stored as a JSON string, not read as a path.

        Args:
            name: The artifact's name (letters, digits, ``_``, ``.``, ``-``).
            value: What to store.
            kind: Override the kind recorded in the descriptor.
            format: Override the format (the file extension).
            metadata: Free-form JSON stored in the descriptor.

        Returns:
            The descriptor, with the sha256 and size of the stored bytes.

        Raises:
            ConfigError: ``value`` has no JSON form, or the name or format is invalid.
            MissingDependencyError: ``value`` is a NumPy array and NumPy cannot be
                imported.
        """
        meta = to_json_object(metadata or {}, "metadata")
        data: bytes | os.PathLike[str]
        if isinstance(value, bytes | bytearray | memoryview):
            data, default_kind, default_format = bytes(value), "bytes", "bin"
        elif isinstance(value, os.PathLike):
            suffix = Path(value).suffix.lstrip(".")
            data, default_kind, default_format = value, "file", suffix or "bin"
        elif _is_numpy_array(value):
            data, default_kind, default_format = _npy_bytes(value), "numpy", "npy"
        else:
            text = json.dumps(to_json(value, f"artifact {name!r}"), ensure_ascii=False, indent=2)
            data, default_kind, default_format = text.encode("utf-8"), "json", "json"
        descriptor = self._store.put_artifact(
            self._run_id,
            name,
            data,
            kind=kind or default_kind,
            format=format or default_format,
            metadata=meta,
        )
        with self._lock:
            self._artifacts[name] = descriptor
        return descriptor

    def log(self, message: str, *, level: str = "info") -> None:
        """Append a line to the run's log (``run.log()`` reads it back).

        The line is written and flushed at once, with a UTC timestamp and the level.

        Args:
            message: The text; it may span several lines.
            level: One of ``debug``, ``info``, ``warning``, ``error``, ``critical``.

        Raises:
            CapabilityError: The store does not implement SupportsLogs.
            ValueError: ``level`` is not one of the levels above.
        """
        if level not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
        line = f"{utc_now().isoformat(timespec='milliseconds')} [{level.upper():<8}] {message}\n"
        with self._lock:
            if self._log is None:
                store = self._store
                if not isinstance(store, SupportsLogs):
                    raise CapabilityError(type(store).__qualname__, "SupportsLogs", "capture.log()")
                # A run that is re-run (after a failure) starts its log afresh.
                self._log = store.log_path(self._run_id, "run").open("w", encoding="utf-8")
            self._log.write(line)
            self._log.flush()

    def close(self) -> None:
        """Close the log file, if the run logged; the capture records nothing more."""
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None


def _npy_bytes(array: object) -> bytes:
    require("numpy", extra="numpy", feature="capture.artifact() of a NumPy array")
    import numpy as np  # noqa: PLC0415 -- optional (numpy extra), required above

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()
