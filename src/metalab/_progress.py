"""Progress display for long work, one implementation for the library and the CLI.

:func:`open_progress` returns a :class:`Progress`, which is a ``progress(done, total)``
callback (the :data:`~metalab.store.abc.ProgressCallback` that ``rebuild_index``,
``sync_index`` and ``export_store`` take) with a note for extra counts and a
:meth:`~Progress.close`. What it draws depends on where it runs:

- a terminal (``stream.isatty()``): a rich bar when rich is installed, else one
  plain-text line redrawn in place;
- a Jupyter kernel: a rich bar rendered by the notebook when rich and ipywidgets are
  installed, else the plain line, which notebooks redraw in place too;
- anywhere else (pipes, log files, CI) nothing, so output never fills with redraws.

``enabled=False`` always draws nothing. Bars redraw a few times a second at most,
whatever the rate of updates.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Final, Literal

from metalab._optional import installed

if TYPE_CHECKING:
    from rich.progress import TaskID

__all__ = ["Progress", "in_notebook", "open_progress", "progress_bar"]

_MIN_INTERVAL: Final = 0.1


class Progress:
    """A progress display that draws nothing; the base of the ones that draw.

    Call it as ``progress(done, total)`` (``total`` ``None`` when not known yet).
    """

    def __call__(self, done: int, total: int | None = None) -> None:
        """Report that ``done`` of ``total`` items are finished."""

    def note(self, text: str) -> None:
        """Show ``text`` beside the counts (e.g. ``"3 failed"``); ``""`` clears it."""

    def close(self, *, stopped: str | None = None) -> None:
        """Draw the last state and release the display.

        Args:
            stopped: Why the work ended early (e.g. ``"cancelled"``); shown instead of
                completing the bar, which stays where the work stopped.
        """


class _Counts:
    """The state every drawing bar keeps between redraws."""

    def __init__(self, total: int | None) -> None:
        self.done = 0
        self.total = total
        self.text = ""
        self._last = 0.0

    def set(self, done: int, total: int | None) -> None:
        self.done = done
        if total is not None:
            self.total = total

    def due(self) -> bool:
        """Whether enough time passed since the last redraw."""
        now = time.monotonic()
        if now - self._last < _MIN_INTERVAL:
            return False
        self._last = now
        return True


class _PlainBar(Progress):
    """One line of text, redrawn in place with a carriage return."""

    def __init__(self, title: str, total: int | None, stream: IO[str]) -> None:
        self._title = title
        self._stream = stream
        self._state = _Counts(total)
        self._start = time.monotonic()
        self._draw()

    def _draw(self, end: str = "", stopped: str | None = None) -> None:
        s = self._state
        if s.total is None:
            shown = f"{s.done}"
        else:
            width = 30
            filled = width * s.done // s.total if s.total else width
            shown = f"[{'#' * filled}{'-' * (width - filled)}] {s.done}/{s.total}"
        extra = f", {s.text}" if s.text else ""
        why = f" ({stopped})" if stopped else ""
        elapsed = time.monotonic() - self._start
        self._stream.write(f"\r{self._title} {shown}{extra} {elapsed:.1f}s{why}{end}")
        self._stream.flush()

    def __call__(self, done: int, total: int | None = None) -> None:
        self._state.set(done, total)
        if self._state.due():
            self._draw()

    def note(self, text: str) -> None:
        self._state.text = text

    def close(self, *, stopped: str | None = None) -> None:
        self._draw(end="\n", stopped=stopped)


class _RichBar(Progress):
    """A rich bar, on a terminal or rendered by a notebook."""

    def __init__(
        self,
        title: str,
        total: int | None,
        stream: IO[str] | None,
        *,
        transient: bool,
        notebook: bool,
    ) -> None:
        from rich.console import Console  # noqa: PLC0415 -- optional (rich extra)
        from rich.progress import (  # noqa: PLC0415 -- optional (rich extra)
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress  # noqa: PLC0415 -- optional

        console = Console(force_jupyter=True) if notebook else Console(file=stream)
        self._title = title
        self._progress = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=5,
            transient=transient,
        )
        self._task: TaskID = self._progress.add_task(title, total=total, note="")
        self._progress.start()

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is None:
            self._progress.update(self._task, completed=done)
        else:
            self._progress.update(self._task, completed=done, total=total)

    def note(self, text: str) -> None:
        self._progress.update(self._task, note=text)

    def close(self, *, stopped: str | None = None) -> None:
        if stopped:
            self._progress.update(self._task, description=f"{self._title} ({stopped})")
        self._progress.refresh()
        self._progress.stop()


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ZMQ shell)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def open_progress(
    title: str,
    total: int | None = None,
    *,
    enabled: bool | None = None,
    transient: bool = False,
    stream: IO[str] | None = None,
    style: Literal["auto", "rich", "simple"] = "auto",
) -> Progress:
    """Return the progress display that suits where this process runs.

    Args:
        title: Shown before the bar (what is being done).
        total: How many items the work has, if known (it can be given later).
        enabled: ``False`` draws nothing; ``None`` or ``True`` draw on a terminal or
            in a notebook.
        transient: Remove the bar when it closes (the CLI's, whose result follows).
        stream: The terminal to draw on; default ``sys.stderr``.
        style: ``"simple"`` draws the plain line even where rich could draw.
    """
    rich = style != "simple" and installed("rich")
    target = sys.stderr if stream is None else stream
    if enabled is False:
        return Progress()
    if target.isatty():
        if rich:
            return _RichBar(title, total, target, transient=transient, notebook=False)
        return _PlainBar(title, total, target)
    if in_notebook():
        # rich draws in a notebook through ipywidgets; a notebook shows a stream's
        # carriage returns in place, so the plain bar works in every frontend.
        if rich and installed("ipywidgets"):
            return _RichBar(title, total, None, transient=transient, notebook=True)
        return _PlainBar(title, total, target)
    return Progress()


@contextmanager
def progress_bar(
    title: str, total: int | None = None, *, enabled: bool | None = None
) -> Iterator[Progress]:
    """Open a transient :func:`open_progress` display and close it on the way out."""
    bar = open_progress(title, total, enabled=enabled, transient=True)
    try:
        yield bar
    except BaseException:
        bar.close(stopped="stopped")
        raise
    bar.close()
