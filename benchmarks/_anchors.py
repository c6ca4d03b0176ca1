"""Physical anchors on the filesystem: the same bytes read with bare system calls."""

from __future__ import annotations

import os
from collections.abc import Sequence


def bare_read(paths: Sequence[str]) -> int:
    """Open, read and close each file; return the bytes read."""
    total = 0
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            total += len(os.read(fd, 1 << 16))
        finally:
            os.close(fd)
    return total


def bare_read_dirs(*directories: str) -> int:
    """List the ``.json`` files of each directory and read them bare (listing included)."""
    paths: list[str] = []
    for directory in directories:
        with os.scandir(directory) as entries:
            paths.extend(f"{directory}/{e.name}" for e in entries if e.name.endswith(".json"))
    return bare_read(paths)
