"""The progress bar of ``metalab.run``: rich when installed, plain text otherwise.

It is shown only when stderr is a terminal (and ``progress`` is not ``False``), so
logs and CI output never fill with bar redraws. The runner calls :meth:`update`
from its dispatcher thread; both bars redraw at most a few times a second.
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Final, Protocol

from metalab._optional import require
from metalab.errors import MissingDependencyError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["ProgressBar", "open_progress"]

_MIN_INTERVAL: Final = 0.1


class ProgressBar(Protocol):
    """What the runner reports progress to."""

    def update(self, finished: int, failed: int) -> None:
        """Report ``finished`` runs (of which ``failed`` failed) so far."""
        ...

    def close(self) -> None:
        """Draw the final state and release the terminal."""
        ...


class _RichBar:
    def __init__(self, title: str, total: int, stream: IO[str]) -> None:
        from rich.console import Console  # noqa: PLC0415 -- optional (rich extra)
        from rich.progress import (  # noqa: PLC0415 -- optional (rich extra)
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress: Progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream),
            refresh_per_second=5,
        )
        self._task: TaskID = self._progress.add_task(title, total=total, failed="")
        self._progress.start()

    def update(self, finished: int, failed: int) -> None:
        self._progress.update(
            self._task, completed=finished, failed=f"{failed} failed" if failed else ""
        )

    def close(self) -> None:
        self._progress.refresh()
        self._progress.stop()


class _PlainBar:
    def __init__(self, title: str, total: int, stream: IO[str]) -> None:
        self._title = title
        self._total = total
        self._stream = stream
        self._start = time.monotonic()
        self._last = 0.0
        self._state = (0, 0)
        self._draw()

    def _draw(self, end: str = "") -> None:
        finished, failed = self._state
        width = 30
        filled = width * finished // self._total if self._total else width
        bar = "#" * filled + "-" * (width - filled)
        extra = f", {failed} failed" if failed else ""
        elapsed = time.monotonic() - self._start
        self._stream.write(
            f"\r{self._title} [{bar}] {finished}/{self._total}{extra} {elapsed:.1f}s{end}"
        )
        self._stream.flush()

    def update(self, finished: int, failed: int) -> None:
        self._state = (finished, failed)
        now = time.monotonic()
        if now - self._last >= _MIN_INTERVAL:
            self._last = now
            self._draw()

    def close(self) -> None:
        self._draw(end="\n")


def open_progress(
    enabled: bool | None, title: str, total: int, stream: IO[str] | None = None
) -> ProgressBar | None:
    """Return a progress bar, or ``None`` when none should be shown.

    Args:
        enabled: ``False`` never shows one; ``None`` or ``True`` show one when
            ``stream`` is a terminal.
        title: Shown before the bar (the experiment id).
        total: How many runs the bar counts.
        stream: Where to draw; default ``sys.stderr``.
    """
    target = sys.stderr if stream is None else stream
    if enabled is False or not target.isatty():
        return None
    try:
        require("rich", extra="rich", feature="the rich progress bar")
    except MissingDependencyError:
        return _PlainBar(title, total, target)
    return _RichBar(title, total, target)
