"""Follow a sweep that runs elsewhere: another terminal, a SLURM job, a Dask cluster.

``metalab.reconnect(store, experiment_id)`` reads the experiment's latest submission
manifest (which names every run of that sweep) and follows those runs' records in the
store: live counts, a wait, and the results once every run has finished. It holds no
executor, so it cannot cancel the sweep: cancel it where it runs.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Final, Self

from metalab._progress import open_progress
from metalab.errors import CapabilityError, ConfigError, ExperimentNotFoundError, MetalabError
from metalab.records import RunRecord
from metalab.results import Results
from metalab.runner import RunCounts
from metalab.store import (
    Store,
    StoreLike,
    SupportsExperimentManifests,
    SupportsExperiments,
    coerce_store_config,
)

__all__ = ["ReconnectedHandle", "reconnect"]

_POLL_SECONDS: Final = 0.5


class ReconnectedHandle:
    """A sweep followed through its store (see :func:`reconnect`)."""

    def __init__(self, store: Store, experiment_id: str, run_ids: tuple[str, ...]) -> None:
        self._store = store
        self._experiment_id = experiment_id
        self._run_ids = run_ids

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"<ReconnectedHandle {self._experiment_id!r}: {c.finished}/{c.total} finished "
            f"(done={c.done}, failed={c.failed}, cancelled={c.cancelled})>"
        )

    @property
    def experiment_id(self) -> str:
        """The experiment of the sweep."""
        return self._experiment_id

    @property
    def store(self) -> Store:
        """The store the sweep writes to."""
        return self._store

    @property
    def run_ids(self) -> tuple[str, ...]:
        """The runs of the sweep's latest submission, in definition order."""
        return self._run_ids

    def _records(self) -> dict[str, RunRecord]:
        wanted = set(self._run_ids)
        return {
            r.run_id: r
            for r in self._store.list_run_records(self._experiment_id)
            if r.run_id in wanted
        }

    @property
    def counts(self) -> RunCounts:
        """The sweep's counts as its records say now (``skipped``: always 0 here)."""
        statuses = [r.status for r in self._records().values()]
        return RunCounts(
            total=len(self._run_ids),
            done=statuses.count("success"),
            failed=statuses.count("failed"),
            cancelled=statuses.count("cancelled"),
        )

    @property
    def is_finished(self) -> bool:
        """Whether every run of the sweep has a finished record."""
        return self.counts.pending == 0

    def wait(self, timeout: float | None = None, *, progress: bool | None = False) -> bool:
        """Wait until every run has finished; return whether it did (``False``: timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = open_progress(self._experiment_id, len(self._run_ids), enabled=progress)
        try:
            while True:
                counts = self.counts
                bar(counts.finished, counts.total)
                if counts.pending == 0:
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(_POLL_SECONDS)
        finally:
            bar.close()

    def result(self, timeout: float | None = None, *, progress: bool | None = None) -> Results:
        """Wait for the sweep, then return its runs in definition order.

        Raises:
            TimeoutError: Runs are still going after ``timeout`` seconds.
        """
        if not self.wait(timeout, progress=progress):
            raise TimeoutError(f"{self!r} is still running after {timeout} s")
        found = self._records()
        return Results([found[i] for i in self._run_ids if i in found], self._store)

    def cancel(self) -> None:
        """Refused: this handle does not reach the executor of the sweep.

        Raises:
            MetalabError: Always; cancel the sweep where it runs (Ctrl-C in its
                terminal, ``scancel`` for a SLURM job, the Dask client's handle).
        """
        raise MetalabError(
            f"cannot cancel {self._experiment_id!r} from here: this handle follows the "
            "sweep through its store and does not reach its executor; cancel it where it "
            "runs (Ctrl-C in its terminal, scancel for a SLURM job, handle.cancel() in "
            "the process that started it)"
        )

    def close(self) -> None:
        """Close the store."""
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def reconnect(store: StoreLike, experiment_id: str | None = None) -> ReconnectedHandle:
    """Follow a sweep that another process runs into ``store``.

    Args:
        store: The sweep's store: a path, a locator or a config.
        experiment_id: Its experiment; may be left out when the store holds only one.

    Raises:
        ExperimentNotFoundError: The store holds no such experiment.
        ConfigError: No experiment was named and the store does not hold exactly
            one (the message lists them), or it has no submission manifest.
        CapabilityError: The store keeps no manifests.
    """
    config = coerce_store_config(store)
    connected = config.connect()
    try:
        if not isinstance(connected, SupportsExperimentManifests):
            raise CapabilityError(
                type(connected).__qualname__, "SupportsExperimentManifests", "reconnect()"
            )
        eid = experiment_id or config.experiment_id
        known = connected.list_experiments() if isinstance(connected, SupportsExperiments) else []
        if eid is None:
            if len(known) != 1:
                held = ", ".join(repr(k) for k in known) or "none"
                raise ConfigError(
                    f"name the experiment to follow: {config.to_locator()!r} holds "
                    f"{len(known)} ({held}); e.g. metalab.reconnect(store, "
                    f"{known[0] if known else 'my_exp:1.0'!r})"
                )
            eid = known[0]
        manifests = connected.list_experiment_manifests(eid)
        if not manifests:
            if known and eid not in known:
                raise ExperimentNotFoundError(eid, known, repr(config.to_locator()))
            raise ConfigError(
                f"{eid!r} has no submission manifest in {config.to_locator()!r}: there is "
                "no sweep to follow (metalab.run writes one when a sweep starts)"
            )
        return ReconnectedHandle(connected, eid, manifests[-1].run_ids)
    except BaseException:
        connected.close()
        raise
