"""A snapshot of a directory's run records and derived metrics, read instead of their files.

Listing the records of 100,000 runs opens 200,000 small files (records and derived
metrics); on a cluster filesystem each open is a round trip to a metadata server.
:meth:`FileStore.snapshot_records` (which the runner calls when a sweep ends) writes
``.records-snapshot`` in the experiment's directory: every record and derived document
decoded and re-encoded as MessagePack, in chunks that decode in one call each.

**The files stay the truth.** The snapshot keeps, for each document, the size,
modification time and inode of the file it was read from (taken from that open file,
so they describe the bytes read). A reader lists the directory with those three per
file and takes from the snapshot only the documents whose file is in exactly that
state; a file that is new, changed or gone is read (or left out) as without a
snapshot. A file changed within :data:`RACY_SECONDS` before the snapshot was written
is left out of it: two replacements of a file inside one tick of the filesystem's
clock could otherwise leave a reused inode with the same size and time. A snapshot
that cannot be read, or whose chunk turns out unreadable half-way, is ignored from
that point on: the rest comes from the files.

**Writers** need no lock: a snapshot is written to a temp file and renamed into
place, so readers see a whole old one or a whole new one, and two writers racing
leave one of two valid snapshots. Deleting it at any time loses nothing.

Layout (version 1), little-endian::

    <chunks: a MessagePack array of up to CHUNK documents each>
    <footer: MessagePack of {"version", "made_ns", "parts": {kind: {"entries":
        [[name, [size, mtime_ns, inode], length], ...], "chunks": [[offset, length,
        count, crc32], ...]}}}>
    <trailer: footer offset (uint64), footer length (uint64), MAGIC (8 bytes)>

Entries are sorted by name; each chunk holds the next ``count`` entries' documents,
whose encoded lengths are the entries' ``length``; a chunk whose CRC-32 does not
match its bytes is unreadable (so a flipped bit never becomes a wrong value).
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Self, TypeVar

import msgspec

from metalab.records import DerivedMetrics, RunRecord
from metalab.store._fileio import discard, replace_into, temp_path
from metalab.store._series_snapshot import FileKey

__all__ = [
    "CHUNK",
    "RACY_SECONDS",
    "SNAPSHOT_NAME",
    "Kind",
    "RecordsSnapshot",
    "SnapshotCheck",
    "SnapshotWriter",
    "check_snapshot",
    "open_snapshot",
    "read_keyed",
    "write_part",
]

SNAPSHOT_NAME: Final = ".records-snapshot"
"""The snapshot's file name in an experiment directory (hidden: scans skip it)."""

VERSION: Final = 1
CHUNK: Final = 2048
"""Documents per chunk: one decode call each, and what a reader holds at once."""
RACY_SECONDS: Final = 2
"""Files changed this recently when a snapshot is written are left out of it."""
MAGIC: Final = b"MLRSNAP1"
_TRAILER: Final = struct.Struct("<QQ8s")
_ARRAY32: Final = b"\xdd"  # MessagePack array with a uint32 (big-endian) length

Kind = Literal["runs", "derived"]
D = TypeVar("D", RunRecord, DerivedMetrics)


class _Entry(msgspec.Struct, array_like=True):
    name: str
    key: FileKey
    length: int


class _Chunk(msgspec.Struct, array_like=True):
    offset: int
    length: int
    count: int
    crc32: int


class _Part(msgspec.Struct):
    entries: list[_Entry] = []
    chunks: list[_Chunk] = []


class _Footer(msgspec.Struct):
    version: int
    made_ns: int
    parts: dict[str, _Part]


_FOOTER: Final = msgspec.msgpack.Decoder(_Footer)
_ENCODER: Final = msgspec.msgpack.Encoder()
_RUNS: Final = msgspec.msgpack.Decoder(list[RunRecord])
_DERIVED: Final = msgspec.msgpack.Decoder(list[DerivedMetrics])


@dataclass(frozen=True)
class SnapshotCheck:
    """What :meth:`RecordsSnapshot.check` found in one snapshot.

    Attributes:
        path: The snapshot file.
        readable: Whether all of it could be read (an unreadable one is ignored).
        held: The documents it holds.
        outdated: The files (``runs/{id}.json``, ``derived/{id}.json``) changed or
            gone since it was written: readers read them, so this is no error.
        differing: Files in the very state it recorded whose documents it holds
            otherwise: it would serve wrong answers for them (only when compared).
    """

    path: str
    readable: bool = True
    held: int = 0
    outdated: tuple[str, ...] = ()
    differing: tuple[str, ...] = ()

    @property
    def stale(self) -> bool:
        """Whether it is of no more use as it is: unreadable, outdated or wrong."""
        return not self.readable or bool(self.outdated) or bool(self.differing)


class _Unreadable(Exception):
    """The snapshot's bytes are not what its footer says."""


class RecordsSnapshot:
    """An open snapshot: its footer, read; its chunks, read on demand."""

    def __init__(self, fd: int, size: int, footer: _Footer) -> None:
        self._fd = fd
        self._size = size
        self.made_ns = footer.made_ns
        self._parts = footer.parts

    def close(self) -> None:
        """Close the snapshot's file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _chunks(self, kind: Kind) -> Iterator[tuple[list[_Entry], bytes]]:
        """Each chunk's entries and bytes; raises :class:`_Unreadable` on a bad chunk."""
        part = self._parts.get(kind)
        if part is None:
            return
        start = 0
        for chunk in part.chunks:
            entries = part.entries[start : start + chunk.count]
            start += chunk.count
            if (
                len(entries) != chunk.count
                or chunk.offset < 0
                or chunk.offset + chunk.length > self._size
                or chunk.length != 5 + sum(e.length for e in entries)
            ):
                raise _Unreadable
            data = os.pread(self._fd, chunk.length, chunk.offset)
            if (
                len(data) != chunk.length
                or data[:5] != _ARRAY32 + chunk.count.to_bytes(4, "big")
                or zlib.crc32(data) != chunk.crc32
            ):
                raise _Unreadable
            yield entries, data
        if start != len(part.entries):
            raise _Unreadable

    def runs(self, current: Mapping[str, FileKey]) -> Iterator[tuple[str, RunRecord]]:
        """``(name, record)`` of each record whose file is in the state ``current`` gives.

        Stops early, without an error, at a chunk that cannot be read: the caller
        reads from the files whatever was not yielded.
        """
        return self._documents("runs", _RUNS, current)

    def derived(self, current: Mapping[str, FileKey]) -> Iterator[tuple[str, DerivedMetrics]]:
        """Like :meth:`runs`, for the derived metrics."""
        return self._documents("derived", _DERIVED, current)

    def _documents(
        self, kind: Kind, decoder: msgspec.msgpack.Decoder[list[D]], current: Mapping[str, FileKey]
    ) -> Iterator[tuple[str, D]]:
        try:
            for entries, data in self._chunks(kind):
                try:
                    documents = decoder.decode(data)
                except (msgspec.DecodeError, RecursionError):
                    return
                if len(documents) != len(entries):
                    return
                for entry, document in zip(entries, documents, strict=True):
                    if current.get(entry.name) == entry.key:
                        yield entry.name, document
        except (_Unreadable, OSError):
            return

    def carried(self, kind: Kind, current: Mapping[str, FileKey]) -> Iterator[tuple[_Entry, bytes]]:
        """The entries and encoded bytes of the documents whose file is unchanged."""
        try:
            for entries, data in self._chunks(kind):
                offset = 5
                for entry in entries:
                    end = offset + entry.length
                    if current.get(entry.name) == entry.key:
                        yield entry, data[offset:end]
                    offset = end
        except (_Unreadable, OSError):
            return


def check_snapshot(
    path: str,
    parts: Mapping[Kind, Mapping[str, FileKey]],
    read: Callable[[Kind, str], RunRecord | DerivedMetrics | None] | None,
) -> SnapshotCheck | None:
    """Check the snapshot at ``path`` against the files' keys ``parts``; ``None``: none.

    With ``read`` (the document of a file, or ``None`` if it cannot be decoded),
    each document whose file is in its recorded state is compared with the file's.
    """
    if not os.path.lexists(path):
        return None
    snapshot = open_snapshot(path)
    if snapshot is None:
        return SnapshotCheck(path, readable=False)
    held = 0
    outdated: list[str] = []
    differing: list[str] = []
    with snapshot:
        for kind, current in parts.items():
            try:
                for entries, data in snapshot._chunks(kind):
                    offset = 5
                    for entry in entries:
                        end = offset + entry.length
                        held += 1
                        file = f"{kind}/{entry.name}.json"
                        if current.get(entry.name) != entry.key:
                            outdated.append(file)
                        elif read is not None:
                            document = read(kind, entry.name)
                            if document is None or _ENCODER.encode(document) != data[offset:end]:
                                differing.append(file)
                        offset = end
            except (_Unreadable, OSError):
                return SnapshotCheck(path, False, held, tuple(outdated), tuple(differing))
    return SnapshotCheck(path, True, held, tuple(outdated), tuple(differing))


def open_snapshot(path: str) -> RecordsSnapshot | None:
    """Open a snapshot; ``None`` if there is none or it cannot be read (it is derived)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size >= _TRAILER.size:
            offset, length, magic = _TRAILER.unpack(
                os.pread(fd, _TRAILER.size, size - _TRAILER.size)
            )
            if magic == MAGIC and offset + length == size - _TRAILER.size:
                footer = _FOOTER.decode(os.pread(fd, length, offset))
                if footer.version == VERSION:
                    return RecordsSnapshot(fd, size, footer)
    except (OSError, msgspec.DecodeError, struct.error):
        pass
    os.close(fd)
    return None


def read_keyed(path: str) -> tuple[bytes, FileKey] | None:
    """A file's bytes and the key of that very file; ``None`` if it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        stat = os.fstat(fd)
        parts = []
        while chunk := os.read(fd, max(stat.st_size + 1, 1 << 16)):
            parts.append(chunk)
        return b"".join(parts), (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    finally:
        os.close(fd)


@dataclass
class _PartWriter:
    entries: list[_Entry] = field(default_factory=list)
    chunks: list[_Chunk] = field(default_factory=list)
    pending: list[bytes] = field(default_factory=list)


class SnapshotWriter:
    """Writes a new snapshot to a temp file, then renames it into place.

    Documents are added kind by kind in name order (:meth:`add` for a document read
    now, :meth:`carry` for one taken over from the previous snapshot).
    """

    def __init__(self, directory: str) -> None:
        self._path = f"{directory}/{SNAPSHOT_NAME}"
        self._tmp = temp_path(directory)
        self._stream = open(self._tmp, "xb")  # noqa: SIM115, PTH123 -- closed in commit/abort
        self._offset = 0
        self._parts: dict[str, _PartWriter] = {}
        self._kind: str | None = None
        self.made_ns = time.time_ns()
        self.documents = 0

    def begin(self, kind: Kind) -> None:
        """Start the documents of ``kind``."""
        self._flush()
        self._kind = kind
        self._parts[kind] = _PartWriter()

    def add(self, name: str, key: FileKey, document: RunRecord | DerivedMetrics) -> bool:
        """Add a document read from a file in state ``key``; say whether it was taken.

        A file changed less than :data:`RACY_SECONDS` before the snapshot began, or a
        document MessagePack cannot hold (an integer beyond 64 bits), is left out.
        """
        if key[1] > self.made_ns - RACY_SECONDS * 1_000_000_000:
            return False
        try:
            data = _ENCODER.encode(document)
        except (OverflowError, TypeError, ValueError):
            return False
        self._append(_Entry(name, key, len(data)), data)
        return True

    def carry(self, entry: _Entry, data: bytes) -> None:
        """Take over a document of the previous snapshot as it was encoded."""
        self._append(entry, data)

    def _append(self, entry: _Entry, data: bytes) -> None:
        part = self._parts[self._kind or ""]
        part.entries.append(entry)
        part.pending.append(data)
        self.documents += 1
        if len(part.pending) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        part = self._parts.get(self._kind or "")
        if part is None or not part.pending:
            return
        data = _ARRAY32 + len(part.pending).to_bytes(4, "big") + b"".join(part.pending)
        self._stream.write(data)
        part.chunks.append(_Chunk(self._offset, len(data), len(part.pending), zlib.crc32(data)))
        self._offset += len(data)
        part.pending = []

    def commit(self) -> None:
        """Write the footer and move the snapshot into place."""
        try:
            self._flush()
            footer = _Footer(
                VERSION,
                self.made_ns,
                {k: _Part(p.entries, p.chunks) for k, p in self._parts.items()},
            )
            data = _ENCODER.encode(footer)
            self._stream.write(data)
            self._stream.write(_TRAILER.pack(self._offset, len(data), MAGIC))
            self._stream.close()
        except BaseException:
            self.abort()
            raise
        replace_into(self._tmp, self._path, durable=False)

    def abort(self) -> None:
        """Remove the temp file (nothing was moved into place)."""
        self._stream.close()
        discard(self._tmp)


def write_part(
    writer: SnapshotWriter,
    kind: Kind,
    current: Mapping[str, FileKey],
    previous: RecordsSnapshot | None,
    read: Callable[[str], tuple[D, FileKey] | None],
) -> None:
    """Add the documents of ``kind`` to ``writer``: carried where unchanged, else ``read``.

    ``read(name)`` reads and checks one file; ``None`` leaves the document out (gone,
    or not a valid document: readers then read, and report, its file).
    """
    writer.begin(kind)
    carried: Iterable[tuple[_Entry, bytes]] = (
        () if previous is None else previous.carried(kind, current)
    )
    pending = iter(carried)
    next_carried = next(pending, None)
    for name in sorted(current):
        while next_carried is not None and next_carried[0].name < name:
            next_carried = next(pending, None)
        if next_carried is not None and next_carried[0].name == name:
            writer.carry(*next_carried)
            next_carried = next(pending, None)
            continue
        found = read(name)
        if found is not None:
            writer.add(name, found[1], found[0])
