"""What a sweep reports as it goes: ``metalab.run(..., on_event=callback)``.

The callback receives one :class:`Event` at a time, in the thread that drives the
sweep (not the main thread), so it should return quickly. For each run the order is
``RUN_STARTED`` then one of ``RUN_FINISHED``, ``RUN_FAILED`` or ``RUN_CANCELLED``; runs
that already succeeded before a resumed sweep get one ``RUN_SKIPPED`` when it starts;
``PROGRESS`` follows every group of runs that came back. Events of different runs
interleave. A callback that raises is reported once as a ``MetalabWarning`` and the
sweep goes on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

__all__ = ["Event", "EventCallback", "EventKind"]


class EventKind(StrEnum):
    """What happened (the values are metalab 0.1's, so string comparisons work too)."""

    RUN_STARTED = "run_started"
    """The run was handed to the executor; it starts when a worker is free (its
    record's ``started_at`` says when it did). Payload: ``params``."""
    RUN_FINISHED = "run_finished"
    """The run succeeded. Payload: ``duration_ms``."""
    RUN_FAILED = "run_failed"
    """The operation raised. Payload: ``error`` (``"Type: message"``),
    ``error_type``, ``duration_ms``."""
    RUN_CANCELLED = "run_cancelled"
    """The run was cancelled, before or while it ran. Payload: none."""
    RUN_SKIPPED = "run_skipped"
    """The run had already succeeded (a resumed sweep). Payload: ``reason``."""
    PROGRESS = "progress"
    """Counts so far (``run_id`` is ``None``). Payload: ``current`` (runs finished),
    ``total``, ``done``, ``failed``, ``skipped``, ``cancelled``."""


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened in a sweep.

    Attributes:
        kind: What happened.
        run_id: The run it concerns; ``None`` for ``PROGRESS``.
        timestamp: When the sweep's driver saw it (UTC).
        payload: Details, by kind (see :class:`EventKind`).
    """

    kind: EventKind
    run_id: str | None
    timestamp: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    payload: Mapping[str, object] = field(default_factory=dict)


EventCallback: TypeAlias = Callable[[Event], None]
"""What ``run(on_event=...)`` takes."""
