"""File primitives of the FileStore: atomic writes, reads, and a directory's lock.

**Writes** are atomic: a reader sees the old file or the new one, never a torn one. Each write goes to a hidden temp file ``.<uuid hex>.partial`` in the target's own
directory (so the final rename never crosses a filesystem) and is then moved into
place with ``os.replace`` (or ``os.link`` when the target must not exist yet). A crash
at any moment leaves at worst a ``.partial`` file, which every scan ignores. With
``durable=True`` the file is fsynced before the rename and its directory after it, so
the new content also survives a power cut.

**Reads** ask forgiveness, not permission: a missing file is ``None``, never a stat
first. **The lock** (:class:`StoreLock`) is the one cross-process lock of a store
directory, held only around the renames that must be ordered.
"""

# Hot paths work on str paths with os functions: a Path object per file costs more
# than the system call it wraps.
# ruff: noqa: PTH105, PTH108, PTH116, PTH120, PTH123

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Final

from metalab.store._documents import FileState

__all__ = [
    "FileKey",
    "StoreLock",
    "atomic_copy",
    "atomic_write",
    "copy_to_temp",
    "discard",
    "exists",
    "file_keys",
    "fsync_directory",
    "link_into_place",
    "list_names",
    "read_bytes",
    "read_with_key",
    "read_with_state",
    "remove_file",
    "remove_tree",
    "replace_into",
    "stat_entries",
    "stat_key",
    "temp_path",
    "write_temp",
    "write_temp_with_state",
]

_CREATE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS: Final = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_FIRST_READ: Final = 1 << 16
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


def write_temp(directory: str, data: bytes | bytearray | memoryview, *, durable: bool) -> str:
    """Write ``data`` to a new temp file in ``directory`` and return its path.

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
        finally:
            os.close(fd)
    except BaseException:
        discard(tmp)
        raise
    return tmp


def write_temp_with_state(
    directory: str, data: bytes | bytearray | memoryview, *, durable: bool
) -> tuple[str, FileState]:
    """Like :func:`write_temp`, and say the state the file keeps once moved into place.

    A rename or hard link keeps a file's modification time and size; the temp file's
    name is private, so nobody else can have changed it in between.
    """
    tmp = write_temp(directory, data, durable=durable)
    try:
        stat = os.stat(tmp)
    except BaseException:
        discard(tmp)
        raise
    return tmp, FileState(stat.st_mtime_ns, stat.st_size)


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
    tmp = write_temp(os.path.dirname(target) or ".", data, durable=durable)
    replace_into(tmp, target, durable=durable)


def replace_into(tmp: str, target: str, *, durable: bool) -> None:
    """Move the temp file ``tmp`` over ``target`` (in the same directory).

    On error ``tmp`` is removed; with ``durable`` the directory is fsynced after the
    rename, so the new entry survives a power cut.
    """
    try:
        os.replace(tmp, target)
    except BaseException:
        discard(tmp)
        raise
    if durable:
        fsync_directory(os.path.dirname(target) or ".")


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
    digest, size, tmp = copy_to_temp(source, os.path.dirname(target) or ".", durable=durable)
    replace_into(tmp, target, durable=durable)
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
            discard(tmp)
            raise
    return digest.hexdigest(), size, tmp


if sys.platform == "win32":
    import msvcrt

    def _lock_fd(fd: int) -> None:
        # LK_LOCK gives up after ten one-second tries; keep waiting like flock does.
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
            except OSError:
                continue
            return

    def _unlock_fd(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def read_bytes(path: str) -> bytes | None:
    """Return a file's bytes, or ``None`` if it does not exist (no stat beforehand)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, _FIRST_READ)
        if len(data) == _FIRST_READ:
            parts = [data]
            while chunk := os.read(fd, 1 << 20):
                parts.append(chunk)
            data = b"".join(parts)
    finally:
        os.close(fd)
    return data


FileKey = tuple[int, int, int]
"""A file's size, modification time (ns) and inode: it changed if any of these did.

A plain tuple: building a million of them is a third of the cost of a named one.
"""


def _read_with_stat(path: str) -> tuple[bytes, os.stat_result] | None:
    """A file's bytes and the ``fstat`` of that open file, or ``None`` if it does not exist."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    try:
        stat = os.fstat(fd)
        data = os.read(fd, stat.st_size + 1)
        if len(data) != stat.st_size:
            # Changed since fstat (or a short read): read on to the end.
            parts = [data]
            while chunk := os.read(fd, 1 << 20):
                parts.append(chunk)
            data = b"".join(parts)
    finally:
        os.close(fd)
    return data, stat


def read_with_state(path: str) -> tuple[bytes, FileState] | None:
    """Return a file's bytes and state, or ``None`` if it does not exist."""
    found = _read_with_stat(path)
    if found is None:
        return None
    data, stat = found
    return data, FileState(stat.st_mtime_ns, stat.st_size)


def read_with_key(path: str) -> tuple[bytes, FileKey] | None:
    """Return a file's bytes and the key of that very file, or ``None`` if it does not exist."""
    found = _read_with_stat(path)
    if found is None:
        return None
    data, stat = found
    return data, _key(stat)


def _key(stat: os.stat_result) -> FileKey:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def stat_key(path: str) -> FileKey | None:
    """The key (size, modification time, inode) of the file at ``path``; ``None``: none."""
    try:
        return _key(os.stat(path))
    except FileNotFoundError:
        return None


def stat_entries(directory: str, suffix: str) -> Iterator[tuple[str, os.stat_result]]:
    """Each file named ``*{suffix}`` in ``directory``: its name without suffix, its stat.

    Hidden (``.``) names are left out, as every scan does; a file gone between the
    listing and its ``stat`` is skipped, and so is a directory that does not exist.
    """
    cut = -len(suffix)
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if not name.endswith(suffix) or name[0] == ".":
                    continue
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                yield name[:cut], stat
    except FileNotFoundError:
        return


def file_keys(directory: str, suffix: str) -> dict[str, FileKey]:
    """The key of every file named ``*{suffix}`` in ``directory``, by name without suffix."""
    return {name: _key(stat) for name, stat in stat_entries(directory, suffix)}


def exists(path: str) -> bool:
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    return True


def list_names(directory: str, suffix: str) -> list[str]:
    """Names in ``directory`` ending in ``suffix``, hidden (``.``) names left out."""
    try:
        with os.scandir(directory) as entries:
            return [
                e.name for e in entries if e.name.endswith(suffix) and not e.name.startswith(".")
            ]
    except FileNotFoundError:
        return []


def remove_file(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def remove_tree(path: Path) -> bool:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return False
    return True


def discard(path: str) -> None:
    # Cleanup after another error: the original exception is the one to report.
    with contextlib.suppress(OSError):
        os.unlink(path)


class StoreLock:
    """The one cross-process lock of a store directory (``.lock``, ``flock``).

    ``flock`` does not exclude threads sharing one descriptor, so a thread lock is
    taken first. The lock is released by the kernel when its process dies, so a
    killed writer never leaves the store locked. After a fork the child opens its own
    descriptor: one inherited from the parent would share the parent's lock instead
    of competing with it.
    """

    def __init__(self, path: Path) -> None:
        self._path = str(path)
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = os.getpid()

    def __enter__(self) -> None:
        if self._pid != os.getpid():
            self._after_fork()
        self._thread_lock.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | _READ_FLAGS, 0o666)
            _lock_fd(self._fd)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._fd is not None:
                _unlock_fd(self._fd)
        finally:
            self._thread_lock.release()

    def _after_fork(self) -> None:
        self._thread_lock = threading.Lock()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._pid = os.getpid()

    def close(self) -> None:
        if self._pid != os.getpid():
            self._after_fork()
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
