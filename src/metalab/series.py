"""Metric series: the points a run logs per step, and how they are read back.

An operation logs a point with ``capture.metric("loss", 0.31, step=120)``. Points of
one metric make a :class:`MetricSeries`, kept in arrival order on disk and read back
sorted by step (points of one step keep the order they arrived in). The run record's
``metrics["loss"]`` holds the value at the highest step, so queries, the field catalog
and frames see a series as its latest value.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from metalab._optional import require
from metalab.records import MetricValue

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import polars as pl
    from numpy.typing import NDArray

__all__ = ["MetricSeries", "SeriesArrays", "SeriesPoint"]


class SeriesPoint(NamedTuple):
    """One logged point, as a capture hands it to a store.

    Attributes:
        name: The metric's name.
        step: The step it was logged at (0 or more).
        value: The value (a bool, int, float or str; NaN and infinities kept).
        timestamp: When it was logged, in seconds since the Unix epoch (UTC), or
            ``None`` when the writer did not say (stores of metalab 0.1).
    """

    name: str
    step: int
    value: MetricValue
    timestamp: float | None


@dataclass(frozen=True)
class MetricSeries:
    """The points of one metric of one run, sorted by step.

    Attributes:
        name: The metric's name.
        steps: The steps, ascending (a step logged twice appears twice).
        values: The value at each step.
        seconds: When each point was logged, in seconds since the Unix epoch (UTC),
            ``None`` where unknown; :attr:`timestamps` has them as datetimes.
    """

    name: str
    steps: tuple[int, ...]
    values: tuple[MetricValue, ...]
    seconds: tuple[float | None, ...]

    @classmethod
    def from_points(cls, name: str, points: Sequence[SeriesPoint]) -> MetricSeries:
        """Build a series from points of one metric, in the order they were logged."""
        if not points:
            return cls(name, (), (), ())
        _, steps, values, seconds = zip(*points, strict=True)
        return cls.from_columns(name, steps, values, seconds)

    @classmethod
    def from_columns(
        cls,
        name: str,
        steps: Sequence[int],
        values: Sequence[MetricValue],
        seconds: Sequence[float | None],
    ) -> MetricSeries:
        """Build a series from columns in the order the points were logged."""
        steps, values, seconds = tuple(steps), tuple(values), tuple(seconds)
        ordered = sorted(steps)
        if list(steps) != ordered:
            # Stable: the points of one step keep the order they were logged in.
            order = sorted(range(len(steps)), key=steps.__getitem__)
            values = tuple(values[i] for i in order)
            seconds = tuple(seconds[i] for i in order)
            steps = tuple(ordered)
        return cls(name, steps, values, seconds)

    @functools.cached_property
    def timestamps(self) -> tuple[dt.datetime | None, ...]:
        """When each point was logged (UTC), ``None`` where unknown."""
        return tuple(_time(s) for s in self.seconds)

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[int, MetricValue]]:
        """Iterate over ``(step, value)`` pairs."""
        return zip(self.steps, self.values, strict=True)

    def __repr__(self) -> str:
        if not self.steps:
            return f"<MetricSeries {self.name!r}: empty>"
        return (
            f"<MetricSeries {self.name!r}: {len(self)} points, steps {self.steps[0]}.."
            f"{self.steps[-1]}, last {self.values[-1]!r}>"
        )

    @property
    def last(self) -> MetricValue | None:
        """The value at the highest step (the last logged of that step), or ``None``."""
        return self.values[-1] if self.values else None

    def best(self, mode: Literal["min", "max"] = "min") -> tuple[int, float] | None:
        """The ``(step, value)`` of the smallest (or largest) number, or ``None``.

        Booleans, strings and NaN are not numbers here; of equal values the earliest
        step wins.
        """
        numbers = [
            (step, float(value))
            for step, value in self
            if isinstance(value, int | float)
            and not isinstance(value, bool)
            and not math.isnan(value)
        ]
        if not numbers:
            return None
        if mode == "min":
            return min(numbers, key=lambda point: point[1])
        if mode == "max":
            return max(numbers, key=lambda point: point[1])
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")

    def to_pandas(self) -> pd.DataFrame:
        """A frame with columns ``step``, ``value`` and ``timestamp`` (UTC)."""
        require("pandas", extra="pandas", feature="MetricSeries.to_pandas()")
        import pandas as pd  # noqa: PLC0415 -- optional (pandas extra)

        return pd.DataFrame(
            {
                "step": pd.Series(self.steps, dtype="int64"),
                "value": list(self.values),
                "timestamp": seconds_to_pandas(self.seconds),
            }
        )

    def to_polars(self) -> pl.DataFrame:
        """A frame with columns ``step``, ``value`` and ``timestamp`` (UTC)."""
        require("polars", extra="polars", feature="MetricSeries.to_polars()")
        import polars as pl  # noqa: PLC0415 -- optional (polars extra)

        values: Any = list(self.values)
        return pl.DataFrame(
            {
                "step": pl.Series(self.steps, dtype=pl.Int64),
                "value": pl.Series(values, strict=False),
                "timestamp": (
                    pl.Series([None if t is None else round(t * 1e6) for t in self.seconds])
                    .cast(pl.Int64)
                    .cast(pl.Datetime("us", "UTC"))
                ),
            }
        )


def _time(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


def seconds_to_pandas(seconds: Sequence[float | None] | NDArray[np.float64]) -> pd.Series[Any]:
    """Epoch seconds as a ``datetime64[us, UTC]`` column (``None``: NaT), in one pass."""
    import numpy as np  # noqa: PLC0415 -- comes with pandas

    # Vectorised: a None becomes NaN in the float array, and NaN NaT.
    return micros_to_pandas(seconds_to_micros(np.asarray(seconds, dtype=np.float64)))


def group_points(points: Sequence[SeriesPoint]) -> dict[str, MetricSeries]:
    """The series of each metric among ``points`` (in logging order), by name."""
    if not points:
        return {}
    names, steps, values, seconds = zip(*points, strict=True)
    return group_columns(names, steps, values, seconds)


def group_columns(
    names: Sequence[str],
    steps: Sequence[int],
    values: Sequence[MetricValue],
    seconds: Sequence[float | None],
) -> dict[str, MetricSeries]:
    """The series of each metric, from the columns of points in logging order."""
    distinct = sorted(set(names))
    if len(distinct) == 1:
        return {distinct[0]: MetricSeries.from_columns(distinct[0], steps, values, seconds)}
    found: dict[str, MetricSeries] = {}
    for name in distinct:
        rows = [i for i, n in enumerate(names) if n == name]
        found[name] = MetricSeries.from_columns(
            name,
            [steps[i] for i in rows],
            [values[i] for i in rows],
            [seconds[i] for i in rows],
        )
    return found


@dataclass(frozen=True, slots=True)
class SeriesArrays:
    """The points of one series as NumPy columns, sorted by step (what frames are built of).

    Attributes:
        steps: int64 steps, ascending.
        values: float64 or int64 when every value is a number of that type, else an
            object array of the values.
        micros: int64 microseconds since the Unix epoch (UTC), NumPy's NaT (the
            smallest int64) where unknown: viewed as ``datetime64[us]`` as it is.
    """

    steps: Any
    values: Any
    micros: Any

    def __len__(self) -> int:
        return len(self.steps)

    @classmethod
    def of(cls, series: MetricSeries) -> SeriesArrays:
        """The arrays of a series read as Python values."""
        import numpy as np  # noqa: PLC0415 -- comes with pandas, which frames require

        seconds = np.array([math.nan if s is None else s for s in series.seconds], np.float64)
        steps = np.asarray(series.steps, dtype=np.int64)
        return cls(steps, value_array(series.values), seconds_to_micros(seconds))


def seconds_to_micros(seconds: Any) -> Any:
    """Float epoch seconds (NaN: unknown) as int64 microseconds (NaT: unknown)."""
    import numpy as np  # noqa: PLC0415 -- comes with pandas, which frames require

    micros = np.round(np.asarray(seconds, dtype=np.float64) * 1e6)
    missing = np.isnan(micros)
    ticks = np.where(missing, 0.0, micros).astype(np.int64)
    ticks[missing] = np.iinfo(np.int64).min
    return ticks


def micros_to_pandas(micros: Any) -> pd.Series[Any]:
    """int64 epoch microseconds (see :class:`SeriesArrays`) as a ``datetime64[us, UTC]`` column."""
    import pandas as pd  # noqa: PLC0415 -- optional (pandas extra); callers required it

    return pd.Series(micros.view("datetime64[us]")).dt.tz_localize("UTC")


def value_array(values: Sequence[MetricValue]) -> Any:
    """Values as float64 or int64 when all are of that type (ints and floats: float64)."""
    import numpy as np  # noqa: PLC0415 -- comes with pandas, which frames require

    kinds = set(map(type, values))
    if kinds <= {float}:
        return np.asarray(values, dtype=np.float64)
    if kinds <= {int}:
        try:
            return np.asarray(values, dtype=np.int64)
        except OverflowError:
            pass
    elif kinds <= {int, float}:
        return np.asarray(values, dtype=np.float64)
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def concat_values(parts: Sequence[Any]) -> Any:
    """One value column from the value arrays of several series (see :func:`value_array`)."""
    import numpy as np  # noqa: PLC0415 -- comes with pandas, which frames require

    if not parts:
        return np.empty(0, dtype=np.float64)
    kinds = {part.dtype for part in parts}
    if kinds <= {np.dtype(np.float64), np.dtype(np.int64)}:
        return np.concatenate(parts) if len(kinds) == 1 else np.concatenate(parts, dtype=np.float64)
    return np.concatenate([part.astype(object) for part in parts])
