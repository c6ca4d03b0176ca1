"""How ``metalab.run(..., progress=Progress(...))`` shows a sweep, as in metalab 0.1.

``progress=True`` shows a bar titled with the experiment's name; a :class:`Progress`
sets the title, the style, and metrics of the latest successful run to show beside
the counts (``display_metrics=["loss:.3f", "converged"]``). Bars are drawn on a
terminal or in a notebook only, never into a pipe or a log file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from metalab.errors import ConfigError

__all__ = ["MetricDisplay", "Progress"]


@dataclass(frozen=True)
class MetricDisplay:
    """One metric shown beside the progress counts.

    Attributes:
        name: The metric's name.
        format: A format spec for numbers (``".3f"``, ``">8.2e"``).
        label: Shown before the value; default the name.
        formatter: Turns the value into text; wins over ``format``.
    """

    name: str
    format: str | None = None
    label: str | None = None
    formatter: Callable[[object], str] | None = None

    @classmethod
    def parse(cls, spec: str | MetricDisplay) -> MetricDisplay:
        """``"name"`` or ``"name:format"`` as a display; a display as itself.

        Raises:
            ConfigError: An empty name.
        """
        if isinstance(spec, MetricDisplay):
            return spec
        name, _, fmt = str(spec).partition(":")
        if not name:
            raise ConfigError(f"display metric {spec!r} has no name ('name' or 'name:format')")
        return cls(name, fmt or None)

    def render(self, metrics: Mapping[str, object]) -> str | None:
        """``label=value`` for these metrics, or ``None`` if the metric is not there."""
        if self.name not in metrics:
            return None
        value = metrics[self.name]
        if self.formatter is not None:
            text = self.formatter(value)
        elif self.format and isinstance(value, int | float) and not isinstance(value, bool):
            try:
                text = f"{value:{self.format}}"
            except ValueError:
                text = str(value)
        else:
            text = str(value)
        return f"{self.label or self.name}={text}"


@dataclass(frozen=True)
class Progress:
    """Options of the progress bar of :func:`metalab.run`.

    Attributes:
        title: Shown before the bar; default the experiment's name.
        style: ``"rich"`` (when rich is installed), ``"simple"`` (one line of text)
            or ``"auto"`` (rich when installed).
        display_metrics: Metrics of the latest successful run to show beside the
            counts: names, ``"name:format"`` strings or :class:`MetricDisplay`.
    """

    title: str | None = None
    style: Literal["auto", "rich", "simple"] = "auto"
    display_metrics: Sequence[str | MetricDisplay] | None = None

    def __post_init__(self) -> None:
        if self.style not in ("auto", "rich", "simple"):
            raise ConfigError(f"Progress(style={self.style!r}): use 'auto', 'rich' or 'simple'")
        for spec in self.display_metrics or ():
            MetricDisplay.parse(spec)

    def displays(self) -> tuple[MetricDisplay, ...]:
        """The metrics to show, parsed."""
        return tuple(MetricDisplay.parse(spec) for spec in self.display_metrics or ())
