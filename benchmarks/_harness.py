"""Timing, repeats and reporting shared by every benchmark module."""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class Measurement:
    """Repeated timings of one subject doing one operation on ``n`` items."""

    operation: str
    subject: str
    n: int
    seconds: tuple[float, ...]
    baseline: str | None = None
    notes: str = ""
    #: Further subjects of the same operation to give a ratio against (after ``baseline``).
    also_vs: tuple[str, ...] = ()

    @property
    def median(self) -> float:
        """Median wall time in seconds."""
        return statistics.median(self.seconds)

    @property
    def per_item_us(self) -> float:
        """Median cost per item in microseconds."""
        return self.median / self.n * 1e6

    @property
    def rate(self) -> float:
        """Items per second at the median."""
        return self.n / self.median if self.median > 0 else float("inf")


@dataclass
class Report:
    """Every measurement of a benchmark run, with the machine it ran on."""

    measurements: list[Measurement] = field(default_factory=list)

    def add(self, measurement: Measurement) -> Measurement:
        """Record a measurement and print a one-line progress note."""
        self.measurements.append(measurement)
        print(
            f"  {measurement.operation:<34} {measurement.subject:<34} "
            f"{measurement.median:9.4f} s  {measurement.per_item_us:10.2f} us/item",
            file=sys.stderr,
            flush=True,
        )
        return measurement

    def ratio(self, m: Measurement) -> float | None:
        """How many times faster ``m`` is than its baseline in the same run."""
        if m.baseline is None:
            return None
        return self._ratio_vs(m, m.baseline)

    def ratios(self, m: Measurement) -> dict[str, float]:
        """How many times faster ``m`` is than its baseline and each of ``also_vs``.

        Subjects not measured in this run are left out.
        """
        names = ([] if m.baseline is None else [m.baseline]) + list(m.also_vs)
        found = {name: self._ratio_vs(m, name) for name in names}
        return {name: value for name, value in found.items() if value is not None}

    def _ratio_vs(self, m: Measurement, subject: str) -> float | None:
        for other in self.measurements:
            if other.operation == m.operation and other.subject == subject and other.n == m.n:
                return other.median / m.median if m.median > 0 else None
        return None

    def markdown(self) -> str:
        """The report as a Markdown table."""
        lines = [
            "| operation | subject | N | median s | min s | max s | µs/item | items/s | speed-up vs |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for m in self.measurements:
            vs = "; ".join(
                f"{_format_ratio(value)}x vs {name}" for name, value in self.ratios(m).items()
            )
            lines.append(
                f"| {m.operation} | {m.subject} | {m.n:,} | {m.median:.4f} | "
                f"{min(m.seconds):.4f} | {max(m.seconds):.4f} | {m.per_item_us:.2f} | "
                f"{m.rate:,.0f} | {vs} |"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        """The report with machine and library versions, for ``--json``."""
        return {
            "machine": machine_info(),
            "measurements": [
                asdict(m)
                | {
                    "median": m.median,
                    "per_item_us": m.per_item_us,
                    "ratio": self.ratio(m),
                    "ratios": self.ratios(m),
                }
                for m in self.measurements
            ],
        }

    def write_json(self, path: Path) -> None:
        """Write :meth:`to_json` to ``path``."""
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


def _format_ratio(value: float) -> str:
    """One decimal from 1 up; two significant digits below (0.031x, not 0.0x)."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def machine_info() -> dict[str, object]:
    """CPU, Python and library versions of this run."""
    versions: dict[str, str] = {}
    for dist in ("metalab", "msgspec", "psycopg", "pandas", "polars", "mlflow", "sqlalchemy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "libraries": versions,
    }


def _time_once(
    fn: Callable[[], object], setup: Callable[[], object] | None, gc_enabled: bool
) -> float:
    if setup is not None:
        setup()
    gc.collect()
    if not gc_enabled:
        gc.disable()
    try:
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    del result
    return elapsed


def time_repeats(
    fn: Callable[[], object],
    *,
    repeat: int,
    setup: Callable[[], object] | None = None,
    gc_enabled: bool = True,
) -> tuple[float, ...]:
    """Time ``fn`` ``repeat`` times, running ``setup`` (untimed) before each."""
    return tuple(_time_once(fn, setup, gc_enabled) for _ in range(repeat))


def time_interleaved(
    subjects: dict[str, Callable[[], object]],
    *,
    repeat: int,
    gc_enabled: bool = True,
    setup: Callable[[], object] | None = None,
) -> dict[str, tuple[float, ...]]:
    """Time several subjects doing the same work, alternating them in every repeat.

    On a shared, noisy machine, alternating A B A B ... exposes each subject to the
    same drift in background load, so their ratio is far steadier than when all
    repeats of A run before all repeats of B. ``setup`` runs (untimed) before every
    timed call.
    """
    timings: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(repeat):
        for name, fn in subjects.items():
            timings[name].append(_time_once(fn, setup, gc_enabled))
    return {name: tuple(values) for name, values in timings.items()}


def without_files(
    directory: Path, names: tuple[str, ...], fn: Callable[[], object]
) -> Callable[[], object]:
    """``fn`` run with the derived files ``names`` moved aside, and what it writes removed.

    For a subject that must not be served by a snapshot or cache the store keeps (or
    leave one behind for the next subject): two renames and an unlink per name, some
    30 µs. A name that is not there is left alone.
    """
    moves = [(directory / name, directory / f".aside{name}") for name in names]

    def call() -> object:
        moved = []
        for path, aside in moves:
            if path.exists():
                path.rename(aside)
                moved.append((path, aside))
        try:
            return fn()
        finally:
            for path, _ in moves:
                path.unlink(missing_ok=True)
            for path, aside in moved:
                aside.rename(path)

    return call
