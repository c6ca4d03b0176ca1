"""Named crash points: kill this process with SIGKILL at a chosen step of a multi-step write.

A child process imports this module, calls :func:`arm` with a point's name, and then
does the write; the process dies exactly at that step, as if the power went out or
the OOM killer struck. The points patch metalab's own functions at the seams between
steps, so nothing in metalab knows about them.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import metalab.store._artifacts as artifacts
import metalab.store._directory as directory
import metalab.store._fileio as fileio
import metalab.store._postgres_index as postgres_index
from metalab.store import transfer


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(owner: Any, name: str, when: Callable[..., bool], *, after: int = 1) -> None:
    """Make ``owner.name`` kill the process at its ``after``-th call for which ``when`` holds."""
    real = getattr(owner, name)
    seen = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal seen
        if when(*args, **kwargs):
            seen += 1
            if seen >= after:
                _die()
        return real(*args, **kwargs)

    setattr(owner, name, wrapper)


def _always(*_args: Any, **_kwargs: Any) -> bool:
    return True


def _is_artifact_manifest(path: object, *_args: Any, **_kwargs: Any) -> bool:
    return str(path).endswith("_manifest.json")


def arm(point: str, after: int = 1) -> None:
    """Kill this process at ``point`` (the ``after``-th time it is reached)."""
    if point == "artifact:before-manifest":
        # The new bytes are in place; the manifest that points to them is not.
        _wrap(artifacts, "atomic_write", _is_artifact_manifest)
    elif point == "artifact:before-old-removed":
        # The manifest points to the new bytes; the old file is still there.
        _wrap(artifacts, "remove_file", _always)
    elif point == "bulk:placing":
        # Some records of a bulk write are in place, the rest are not.
        _wrap(directory.StoreDirectory, "_place_record", _always, after=after)
    elif point == "index:row":
        # The index is reading documents into rows (a rebuild's or a sync's COPY).
        _wrap(postgres_index, "run_row", _always, after=after)
    elif point == "index:writing":
        # A write is in the files; the index is about to be told.
        _wrap(postgres_index.PostgresIndex, "write", _always, after=after)
    elif point == "index:appending":
        # Points are appended to a series file; the index is about to be told.
        _wrap(postgres_index.PostgresIndex, "append_series", _always, after=after)
    elif point == "index:forgetting":
        # A run's files are deleted; the index has not been told yet.
        _wrap(postgres_index.PostgresIndex, "_finish", _always, after=after)
    elif point == "gc:deleting":
        # gc is deleting runs: some are gone, one is half deleted, the rest are there.
        _wrap(directory, "remove_tree", _always, after=after)
    elif point == "export:run":
        # An export has copied some runs and not the others.
        _wrap(transfer._Exporter, "_extras", _always, after=after)
    elif point.startswith("atomic:before-rename:"):
        # The new content is whole in a temp file beside the target (the target is
        # the file whose path ends with the rest of the point's name); not renamed yet.
        suffix = point.removeprefix("atomic:before-rename:")
        for owner in (fileio, directory):  # atomic_write's, and the one documents use
            _wrap(owner, "replace_into", lambda _tmp, target, **_kw: target.endswith(suffix))
    else:
        raise ValueError(f"unknown crash point {point!r}")
