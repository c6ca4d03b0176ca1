"""What an operation records while it runs: metrics, series, data, artifacts and logs.

Every run gets its own :class:`Capture`. Scalar metrics, tags and notes are kept in
memory and written with the run's final record. Metrics logged with a ``step`` are
points of a series: buffered, and appended to the store at least once a second (by
a background thread) and when the run ends, however it ends, so a reader in another
process watches a run's curves as they grow and a crashed run keeps what it logged
up to its last flush. Structured data and artifacts are written to the store as
soon as they are captured (so a crash keeps what was already produced), and log lines
are appended to the store's log file and flushed one by one, so ``tail -f`` shows a
run as it goes. Nothing touches the store until the operation asks: a run that never
logs has no log file.

Series, data, artifacts and logs need the matching store capability
(:class:`~metalab.store.SupportsSeries`, :class:`~metalab.store.SupportsStructuredResults`,
``put_artifact`` of every store, :class:`~metalab.store.SupportsLogs`); a store without
one raises
:class:`~metalab.errors.CapabilityError` naming the store and the capability.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Final, TypeAlias, cast

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
from metalab.series import SeriesPoint
from metalab.store.abc import Store, SupportsLogs, SupportsSeries, SupportsStructuredResults

__all__ = ["LOG_LEVELS", "Capture"]

LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")

_log = logging.getLogger(__name__)

_Point: TypeAlias = tuple[str, int, MetricValue, float]
"""A buffered point: (name, step, value, epoch seconds), a SeriesPoint's fields."""


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
        # name -> True for a series, False for a scalar: one name is one or the other.
        self._stepped: dict[str, bool] = {}
        self._highest: dict[str, int] = {}
        self._points: list[_Point] = []
        self._flushed = False  # the first flush replaces the series of an earlier try
        self._tags: dict[str, None] = {}
        self._notes: str | None = None
        self._artifacts: dict[str, ArtifactDescriptor] = {}
        self._log: IO[str] | None = None
        self._handler: logging.Handler | None = None
        self._subscribed: list[logging.Logger] = []
        self._subscriptions: list[tuple[logging.Logger, logging.Handler]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

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

    @property
    def captured_tags(self) -> tuple[str, ...]:
        """The tags added with :meth:`tag`, in the order first given."""
        return tuple(self._tags)

    @property
    def captured_notes(self) -> str | None:
        """The notes set with :meth:`note`, or ``None``."""
        return self._notes

    def metric(self, name: str, value: MetricValue, step: int | None = None) -> None:
        """Record a metric: a scalar, or with ``step`` a point of the metric's series.

        Without ``step`` a later value of the same name replaces the earlier one.
        With ``step`` every point is kept with its step and the time it was logged
        (steps may repeat, come out of order or skip); the run record's
        ``metrics[name]`` holds the value at the highest step. Points are buffered
        and reach the store at least once a second and when the run ends.

        Args:
            name: The metric's name.
            value: A bool, int, float (NaN and infinities included) or str; NumPy
                scalars are converted.
            step: The step (an int, 0 or more), or ``None`` for a scalar.

        Raises:
            TypeError: ``name`` is not a non-empty string, ``value`` is not a
                scalar, or ``step`` is not an int.
            ValueError: ``step`` is negative, or the name was used both with and
                without a step in this run.
            CapabilityError: ``step`` is given and the store keeps no series.
        """
        checked = metric_value(_check_metric_name(name), value)
        if step is None:
            with self._lock:
                self._check_kind(name, stepped=False)
                self._metrics[name] = checked
            return
        if type(step) is not int or step < 0:
            step = _check_step(name, step)
        # The hot path of a training loop: a plain tuple (a SeriesPoint costs ten
        # times as much to build) and one lock.
        point = (name, step, checked, time.time())
        with self._lock:
            if self._stepped.get(name) is not True:
                self._check_kind(name, stepped=True)
            if step >= self._highest.get(name, -1):
                self._highest[name] = step
                self._metrics[name] = checked
            if not self._points:
                _FLUSHER.watch(self)
            self._points.append(point)

    def metrics(self, values: Mapping[str, MetricValue], step: int | None = None) -> None:
        """Record several metrics at once (at one ``step``, if given).

        Nothing is recorded if one is invalid.

        Raises:
            TypeError: A name, value or the step is invalid (see :meth:`metric`).
            ValueError: The step is negative, or a name is used both with and
                without a step.
        """
        checked = {_check_metric_name(k): metric_value(k, v) for k, v in values.items()}
        if step is None:
            with self._lock:
                for name in checked:
                    self._check_kind(name, stepped=False)
                self._metrics.update(checked)
            return
        now = time.time()
        points = [(k, _check_step(k, step), v, now) for k, v in checked.items()]
        with self._lock:
            for name in checked:
                self._check_kind(name, stepped=True)
            for point in points:
                self._add(point)

    def log_metrics(self, values: Mapping[str, MetricValue], step: int | None = None) -> None:
        """Record several metrics (at one ``step``, if given): :meth:`metrics` by its 0.1 name."""
        self.metrics(values, step)

    def tag(self, *labels: str) -> None:
        """Add tags to the run (kept in order, each once; written with its record).

        Raises:
            TypeError: A label is not a non-empty string.
        """
        for label in labels:
            given: object = label  # typed str, but callers are not always typed
            if not isinstance(given, str) or not given:
                raise TypeError(f"a tag must be a non-empty string, got {label!r}")
        with self._lock:
            self._tags.update(dict.fromkeys(labels))

    def note(self, text: str) -> None:
        """Set the run's notes (free text, written with its record; a later call replaces it).

        Raises:
            TypeError: ``text`` is not a string.
        """
        if not isinstance(text, str):
            raise TypeError(f"notes must be a str, got {type(text).__name__}")
        with self._lock:
            self._notes = text

    def _check_kind(self, name: str, *, stepped: bool) -> None:
        """Refuse a name used both with and without a step (under the lock)."""
        if stepped and not isinstance(self._store, SupportsSeries):
            raise CapabilityError(
                type(self._store).__qualname__, "SupportsSeries", "capture.metric(..., step=)"
            )
        kind = self._stepped.setdefault(name, stepped)
        if kind is not stepped:
            had, has = ("with", "without") if kind else ("without", "with")
            raise ValueError(
                f"metric {name!r} was logged {had} a step and now {has} one; a metric is "
                "either a series (always with step=) or a scalar (never)"
            )

    def _add(self, point: _Point) -> None:
        """Buffer a point and keep the value at the highest step (under the lock)."""
        name, step, value, _ = point
        if step >= self._highest.get(name, -1):
            self._highest[name] = step
            self._metrics[name] = value
        if not self._points:
            _FLUSHER.watch(self)
        self._points.append(point)

    def flush(self) -> None:
        """Append the buffered points to the store now.

        A background thread does it at least once a second, and :meth:`close` at
        the end of the run.
        """
        with self._flush_lock:
            with self._lock:
                points, self._points = self._points, []
            if not points:
                return
            store = self._store
            assert isinstance(store, SupportsSeries)  # checked when the first point came
            # Plain tuples of a SeriesPoint's shape: stores read them by position.
            shaped = cast("list[SeriesPoint]", points)
            try:
                store.append_series(self._run_id, shaped, restart=not self._flushed)
            except BaseException:
                # Not lost: the next flush (or close) tries them again, first.
                with self._lock:
                    self._points[:0] = points
                raise
            self._flushed = True

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

    def file(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        kind: str | None = None,
        metadata: Mapping[str, JSONValue] | None = None,
        move: bool = False,
    ) -> ArtifactDescriptor:
        """Store a file the operation wrote as an artifact (copied; ``move`` removes it).

        Raises:
            FileNotFoundError: There is no such file (nothing is stored).
        """
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"capture.file({name!r}): no file at {os.fspath(path)!r}")
        descriptor = self.artifact(name, source, kind=kind or "file", metadata=metadata)
        if move:
            source.unlink()
        return descriptor

    def figure(
        self,
        name: str,
        fig: Any,
        *,
        format: str = "png",
        dpi: int = 150,
        bbox_inches: str | None = "tight",
        metadata: Mapping[str, JSONValue] | None = None,
        close: bool = True,
    ) -> ArtifactDescriptor:
        """Store a matplotlib figure as an image artifact (PNG, or ``format="svg"``, ...).

        Args:
            name: The artifact's name.
            fig: A ``matplotlib.figure.Figure``.
            format: What ``fig.savefig`` writes: ``png``, ``svg``, ``pdf``, ``jpg``.
            dpi: Resolution of raster formats.
            bbox_inches: ``"tight"`` trims the margins; ``None`` keeps the canvas.
            metadata: Free-form JSON stored in the descriptor.
            close: Close the figure afterwards (a sweep of many runs would otherwise
                keep every figure in memory).

        Raises:
            TypeError: ``fig`` has no ``savefig``.
        """
        save = getattr(fig, "savefig", None)
        if not callable(save):
            raise TypeError(f"capture.figure({name!r}) takes a matplotlib Figure, got {fig!r}")
        buffer = io.BytesIO()
        save(buffer, format=format, dpi=dpi, bbox_inches=bbox_inches)
        descriptor = self.artifact(
            name, buffer.getvalue(), kind="figure", format=format, metadata=metadata
        )
        pyplot = sys.modules.get("matplotlib.pyplot")
        if close and pyplot is not None:
            pyplot.close(fig)
        return descriptor

    @property
    def logger(self) -> logging.Logger:
        """A Python logger whose records go to the run's log (``capture.log``)."""
        logger = logging.getLogger(f"metalab.run.{self._run_id}")
        with self._lock:
            if self._handler is None:
                self._handler = _CaptureHandler(self)
                logger.addHandler(self._handler)
                logger.setLevel(logging.DEBUG)
                logger.propagate = False
                self._subscribed.append(logger)
        return logger

    def subscribe_logger(self, name: str, level: int = logging.DEBUG) -> None:
        """Send the records of the logger ``name`` (and its children) to the run's log.

        For libraries that log through ``logging``; until the run ends.
        """
        logger = logging.getLogger(name)
        handler = _CaptureHandler(self, level)
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > level:
            logger.setLevel(level)
        with self._lock:
            self._subscriptions.append((logger, handler))

    def unsubscribe_logger(self, name: str) -> None:
        """Stop sending the records of the logger ``name`` to the run's log."""
        with self._lock:
            kept = []
            for logger, handler in self._subscriptions:
                if logger.name == name:
                    logger.removeHandler(handler)
                else:
                    kept.append((logger, handler))
            self._subscriptions = kept

    def close(self) -> None:
        """Flush the series and close the log file; the capture records nothing more.

        Called when the run ends, whether it succeeded, failed or was cancelled.
        """
        try:
            self.flush()
        finally:
            _FLUSHER.forget(self)
            with self._lock:
                for logger, handler in self._subscriptions:
                    logger.removeHandler(handler)
                self._subscriptions = []
                if self._handler is not None:
                    for logger in self._subscribed:
                        logger.removeHandler(self._handler)
                    self._handler = None
                    self._subscribed = []
                if self._log is not None:
                    self._log.close()
                    self._log = None


_LEVELS: Final = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


class _CaptureHandler(logging.Handler):
    """A logging handler that writes records to a run's log through its capture."""

    def __init__(self, capture: Capture, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._capture = capture
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = _LEVELS.get(record.levelno)
            if level is None:  # a custom level: the nearest standard one below it
                level = _LEVELS[max(k for k in _LEVELS if k <= max(record.levelno, 10))]
            self._capture.log(self.format(record), level=level)
        except Exception:  # noqa: BLE001 -- logging's own contract: report, never raise
            self.handleError(record)


_FLUSH_SECONDS: Final = 0.5
"""How often the background thread flushes series points (at least once a second)."""


class _Flusher:
    """One daemon thread per process that flushes the captures holding points."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._captures: dict[int, Capture] = {}
        self._thread: threading.Thread | None = None

    def reset_in_child(self) -> None:
        """After a fork: the parent's captures are not the child's, nor is its thread."""
        self._lock = threading.Lock()
        self._captures = {}
        self._thread = None

    def watch(self, capture: Capture) -> None:
        with self._lock:
            self._captures[id(capture)] = capture
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="metalab-series-flush", daemon=True
                )
                self._thread.start()

    def forget(self, capture: Capture) -> None:
        with self._lock:
            self._captures.pop(id(capture), None)

    def _loop(self) -> None:
        while True:
            time.sleep(_FLUSH_SECONDS)
            with self._lock:
                captures = list(self._captures.values())
            for capture in captures:
                try:
                    capture.flush()
                except Exception:  # noqa: BLE001 -- the run's own close() flushes and raises
                    _log.debug("series flush of run %s failed", capture.run_id, exc_info=True)


_FLUSHER: Final = _Flusher()
os.register_at_fork(after_in_child=_FLUSHER.reset_in_child)


def _check_step(name: str, step: object) -> int:
    if type(step) is not int:
        # NumPy integers are steps too; a bool or a float is a mistake.
        index = getattr(step, "__index__", None)
        if isinstance(step, bool) or index is None:
            raise TypeError(f"the step of metric {name!r} must be an int, got {step!r}")
        step = int(index())
    if step < 0:
        raise ValueError(f"the step of metric {name!r} must be 0 or more, got {step}")
    return step


def _npy_bytes(array: object) -> bytes:
    require("numpy", extra="numpy", feature="capture.artifact() of a NumPy array")
    import numpy as np  # noqa: PLC0415 -- optional (numpy extra), required above

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()
