"""A results frame kept beside an experiment's files, served while they stay as they were.

A frame of 100,000 runs takes seconds to build from their records, even from the
records snapshot: every record is decoded into Python objects, then turned into
columns. A reader that builds the whole frame of an experiment hands its columns,
encoded (by :mod:`metalab.results`), to :func:`write_cached`; the next reader gets them
back from :func:`read_cached` in a fraction of that while the experiment is unchanged.

**When it is served.** The key of a cached frame (:func:`directory_key`) is the state
of the two directories a frame is built from, ``runs/`` and ``derived/``: inode,
modification and change time of each. Every metalab write there creates, renames or
removes an entry, which changes its directory's times, so any write made after the key
was taken makes the key differ and the cache is not served. A directory changed within
:data:`~metalab.store._records_snapshot.RACY_SECONDS` of taking the key gives no key at
all: a later change inside the same tick of the filesystem's clock could leave its
times as they were. What the key cannot see is a file edited *in place* by another
program (metalab never does that; editors save through a new file, which it sees):
``metalab store verify`` compares a cached frame with the files, and deleting
``.frame-cache`` drops it.

The key is taken *before* the records are read, so a write landing while they are read
leaves a key that no longer matches: the cache is never newer than its key promises.

Layout: ``MAGIC``, then little-endian uint32 key length, uint32 CRC-32 of the
payload, the key and the payload. A file that does not have this shape, or whose CRC
does not match, is not served.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from typing import Final

import msgspec

from metalab.store._fileio import atomic_write, read_bytes
from metalab.store._records_snapshot import RACY_SECONDS

__all__ = ["CACHE_NAME", "directory_key", "is_stale", "read_cached", "write_cached"]

CACHE_NAME: Final = ".frame-cache"
"""The cache's file name in an experiment directory (hidden: scans skip it)."""

MAGIC: Final = b"MLFRAME1"
_HEADER: Final = struct.Struct("<8sII")
_ENCODER: Final = msgspec.msgpack.Encoder()
_KEY: Final = msgspec.msgpack.Decoder(list[str | int])


def directory_key(directories: tuple[str, ...], selection: str) -> bytes | None:
    """The key of a frame of ``selection`` built from ``directories`` as they are now.

    ``None`` when one of them changed less than ``RACY_SECONDS`` ago (a frame built
    now could not be told from one built after a change in the same clock tick).
    """
    oldest = time.time_ns() - RACY_SECONDS * 1_000_000_000
    parts: list[str | int] = [selection]
    for directory in directories:
        try:
            stat = os.stat(directory)  # noqa: PTH116 -- str paths throughout
        except FileNotFoundError:
            parts.extend((0, 0, 0))
            continue
        if max(stat.st_mtime_ns, stat.st_ctime_ns) > oldest:
            return None
        parts.extend((stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns))
    return _ENCODER.encode(parts)


def read_cached(path: str, key: bytes) -> bytes | None:
    """The payload cached at ``path`` under ``key``; ``None`` if there is none or another."""
    data = read_bytes(path)
    if data is None or len(data) < _HEADER.size:
        return None
    magic, key_length, crc = _HEADER.unpack_from(data)
    start = _HEADER.size + key_length
    if magic != MAGIC or data[_HEADER.size : start] != key:
        return None
    payload = data[start:]
    return payload if zlib.crc32(payload) == crc else None


def write_cached(path: str, key: bytes, payload: bytes) -> bool:
    """Cache ``payload`` at ``path`` under ``key``; ``False`` if it could not be written.

    Written to a temp file and renamed into place, so readers see a whole cache or
    none; a directory a reader may not write to just keeps no cache.
    """
    header = _HEADER.pack(MAGIC, len(key), zlib.crc32(payload))
    try:
        atomic_write(path, b"".join((header, key, payload)), durable=False)
    except OSError:
        return False
    return True


def is_stale(path: str, directories: tuple[str, ...]) -> bool:
    """Whether the cache at ``path`` can no longer be served: not a cache, or changed since.

    A cache whose directories changed since its key was taken is of no more use;
    ``metalab store gc`` removes it.
    """
    try:
        with open(path, "rb") as stream:  # noqa: PTH123 -- str paths throughout
            head = stream.read(_HEADER.size)
            if len(head) < _HEADER.size:
                return True
            magic, key_length, _ = _HEADER.unpack(head)
            key = stream.read(key_length)
    except FileNotFoundError:
        return False
    try:
        parts = _KEY.decode(key)
    except msgspec.DecodeError:
        return True
    if magic != MAGIC or not parts or not isinstance(parts[0], str):
        return True
    return directory_key(directories, parts[0]) != key
