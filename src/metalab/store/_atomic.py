"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

Each write goes to a hidden temp file ``.<uuid hex>.partial`` in the target's own
directory (so the final rename never crosses a filesystem) and is then moved into
place with ``os.replace`` (or ``os.link`` when the target must not exist yet). A crash
at any moment leaves at worst a ``.partial`` file, which every scan ignores. With
``durable=True`` the file is fsynced before the rename and its directory after it, so
the new content also survives a power cut.
"""

# Hot paths work on str paths with os functions: a Path object per file costs more
# than the system call it wraps.
# ruff: noqa: PTH105, PTH108, PTH120, PTH123

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sys
from typing import Final, NamedTuple

__all__ = [
    "TempFile",
    "atomic_copy",
    "atomic_write",
    "copy_to_temp",
    "fsync_directory",
    "link_into_place",
    "temp_path",
    "write_temp",
]

_CREATE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_COPY_CHUNK: Final = 1 << 20
# Filesystems without hard links answer os.link with one of these.
_NO_LINKS: Final = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV})

StrPath = str | os.PathLike[str]


def temp_path(directory: str) -> str:
    """Return a fresh hidden temp file name in ``directory``."""
    return f"{directory}/.{os.urandom(16).hex()}.partial"


if sys.platform == "win32":

    def fsync_directory(directory: StrPath) -> None:
        """Do nothing: Windows cannot open a directory to fsync it (NTFS journals renames)."""

else:

    def fsync_directory(directory: StrPath) -> None:
        """Flush a directory's entries (a rename or a new file in it) to disk."""
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _unlink_quietly(path: str) -> None:
    # Cleanup after another error: the original exception is the one to report.
    with contextlib.suppress(OSError):
        os.unlink(path)


class TempFile(NamedTuple):
    """A temp file written by :func:`write_temp`, and its state once written.

    A rename or hard link keeps a file's modification time and size, so these are
    also the state of the file it becomes.
    """

    path: str
    mtime_ns: int
    size: int


def write_temp(directory: str, data: bytes | bytearray | memoryview, *, durable: bool) -> TempFile:
    """Write ``data`` to a new temp file in ``directory``.

    The caller moves the file into place (or removes it); on error it is removed here.
    """
    tmp = temp_path(directory)
    fd = os.open(tmp, _CREATE_FLAGS, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
            stat = os.fstat(fd)
        finally:
            os.close(fd)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return TempFile(tmp, stat.st_mtime_ns, stat.st_size)


def atomic_write(
    path: StrPath, data: bytes | bytearray | memoryview, *, durable: bool = False
) -> None:
    """Replace the file at ``path`` with ``data`` atomically.

    Args:
        path: The target file; its directory must exist.
        data: The new content.
        durable: fsync the file before the rename and the directory after it.
    """
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    tmp = write_temp(directory, data, durable=durable).path
    try:
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if durable:
        fsync_directory(directory)


def link_into_place(tmp: str, target: str) -> bool | None:
    """Move ``tmp`` to ``target`` only if ``target`` does not exist.

    Returns:
        ``True`` if ``tmp`` became ``target`` (and ``tmp`` is gone); ``False`` if
        ``target`` already exists (``tmp`` is left for the caller); ``None`` if the
        filesystem has no hard links (``tmp`` is left for the caller).
    """
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno in _NO_LINKS:
            return None
        raise
    os.unlink(tmp)
    return True


def atomic_copy(source: StrPath, path: StrPath, *, durable: bool = False) -> tuple[str, int]:
    """Copy the file ``source`` to ``path`` atomically, hashing it on the way.

    The file is streamed in 1 MiB chunks, so its size does not matter.

    Returns:
        The hex sha256 of the content and its size in bytes.
    """
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    digest, size, tmp = copy_to_temp(source, directory, durable=durable)
    try:
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if durable:
        fsync_directory(directory)
    return digest, size


def copy_to_temp(source: StrPath, directory: str, *, durable: bool) -> tuple[str, int, str]:
    """Stream ``source`` into a new temp file in ``directory``.

    Returns:
        The hex sha256, the size in bytes and the temp file's path (the caller moves
        it into place); on error nothing is left behind.
    """
    digest = hashlib.sha256()
    size = 0
    tmp = temp_path(directory)
    with open(source, "rb") as src:
        fd = os.open(tmp, _CREATE_FLAGS, 0o666)
        try:
            try:
                while chunk := src.read(_COPY_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            _unlink_quietly(tmp)
            raise
    return digest.hexdigest(), size, tmp
