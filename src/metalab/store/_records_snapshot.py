"""A snapshot of a directory's run records and derived metrics, read instead of their files.

Listing the records of 100,000 runs opens 200,000 small files (records and derived
metrics); on a cluster filesystem each open is a round trip to a metadata server.
:meth:`FileStore.snapshot_records` (which the runner calls when a sweep ends) writes
``.records-snapshot`` in the experiment's directory: the bytes of every record and
derived file that decodes, as they are, in chunks that are JSON arrays. A chunk of
current documents decodes in one call (several times faster than one per document);
one that holds an older or escaped document decodes document by document, through the
same codec as the files. Either way a reader gets exactly what the files give.

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

Layout (version 2)::

    <per kind: its chunks ("[" doc "," doc "," ... "]", up to CHUNK documents each),
        then three blobs: the names (UTF-8, surrogate escapes kept) joined by
        newlines; int64 [size, mtime_ns, inode] per document; int64 length per document>
    <footer: MessagePack of {"version", "made_ns", "parts": {kind: [count, names blob,
        keys blob, lengths blob, [[offset, length, count, crc32, direct], ...]]}},
        a blob being [offset, length, crc32]>
    <trailer: footer offset, footer length (little-endian uint64), MAGIC (8 bytes)>

Documents are sorted by name; each chunk holds the next ``count`` documents, and
``direct`` says every one of them is a current document
(:meth:`DocumentCodec.direct`). A chunk or blob whose CRC-32 does not match its bytes
is unreadable (so a flipped bit never becomes a wrong value). The columns of a kind
are read only when that kind is, and held as three buffers (at a million documents
some 100 MB, against several times that as Python objects). A snapshot of another
version (version 1 held the columns inside the footer) is not read: it is derived,
and the next refresh writes it anew.
"""

from __future__ import annotations

import os
import struct
import sys
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple, Self, TypeVar

import msgspec

from metalab import _codec
from metalab.errors import CorruptRecordError
from metalab.records import DerivedMetrics, RunRecord
from metalab.store._fileio import FileKey, discard, replace_into, temp_path

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
    "write_part",
]

SNAPSHOT_NAME: Final = ".records-snapshot"
"""The snapshot's file name in an experiment directory (hidden: scans skip it)."""

VERSION: Final = 2
CHUNK: Final = 2048
"""Documents per chunk: one decode call each, and what a reader holds at once."""
RACY_SECONDS: Final = 2
"""Files changed this recently when a snapshot is written are left out of it."""
MAGIC: Final = b"MLRSNAP1"
_TRAILER: Final = struct.Struct("<QQ8s")

Kind = Literal["runs", "derived"]
D = TypeVar("D", RunRecord, DerivedMetrics)


class _Entry(NamedTuple):
    """A document in a snapshot: its file's name (without ``.json``) and key, its length."""

    name: str
    key: FileKey
    length: int


class _Chunk(msgspec.Struct, array_like=True):
    offset: int
    length: int
    count: int
    crc32: int
    direct: bool


class _Blob(msgspec.Struct, array_like=True):
    offset: int
    length: int
    crc32: int


class _Part(msgspec.Struct, array_like=True):
    """Where the columns of one kind's documents are (a tenth of the cost of a struct each)."""

    count: int
    names: _Blob  # "\n"-joined, in order
    keys: _Blob  # int64 size, mtime_ns, inode per document, little-endian
    lengths: _Blob  # int64 per document, little-endian
    chunks: list[_Chunk]


class _Footer(msgspec.Struct):
    version: int
    made_ns: int
    parts: dict[str, _Part]


class _Columns:
    """The names, keys and lengths of one kind's documents, read from their blobs.

    The names stay one buffer, cut chunk by chunk (:meth:`names_of`): split whole, a
    million names would be a million string objects, some 110 MB.
    """

    def __init__(self, fd: int, size: int, part: _Part) -> None:
        self._joined = _blob(fd, size, part.names)
        self.count = part.count
        self._position = 0
        self.keys = _int64s(_blob(fd, size, part.keys))
        self.lengths = _int64s(_blob(fd, size, part.lengths))
        self.chunks = part.chunks
        newlines = self._joined.count(b"\n")
        if not (
            len(self.keys) == 3 * self.count
            and len(self.lengths) == self.count
            and newlines == (self.count - 1 if self.count else 0)
        ):
            raise _Unreadable

    def names_of(self, count: int) -> list[str]:
        """The names of the next ``count`` documents."""
        joined, start = self._joined, self._position
        stop = start
        for _ in range(count):
            found = joined.find(b"\n", stop)
            stop = (len(joined) if found < 0 else found) + 1
        self._position = stop
        if not count:
            return []
        return joined[start : stop - 1].decode("utf-8", "surrogateescape").split("\n")


def _blob(fd: int, size: int, blob: _Blob) -> bytes:
    if blob.offset < 0 or blob.length < 0 or blob.offset + blob.length > size:
        raise _Unreadable
    data = os.pread(fd, blob.length, blob.offset)
    if len(data) != blob.length or zlib.crc32(data) != blob.crc32:
        raise _Unreadable
    return data


def _int64s(data: bytes) -> array[int]:
    if len(data) % 8:
        raise _Unreadable
    values = array("q", data)
    if sys.byteorder != "little":
        values.byteswap()
    return values


_FOOTER: Final = msgspec.msgpack.Decoder(_Footer)
_ENCODER: Final = msgspec.msgpack.Encoder()


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

    def _chunks(
        self, kind: Kind
    ) -> Iterator[tuple[_Chunk, list[str], list[FileKey], array[int], bytes]]:
        """Each chunk with its documents' names, keys and lengths, and its bytes.

        Raises:
            _Unreadable: The footer of ``kind`` or a chunk is not what it should be.
        """
        part = self._parts.get(kind)
        if part is None:
            return
        columns = _Columns(self._fd, self._size, part)
        start = 0
        for chunk in columns.chunks:
            end = start + chunk.count
            if chunk.count < 1 or end > columns.count:
                raise _Unreadable
            names = columns.names_of(chunk.count)
            flat = columns.keys[3 * start : 3 * end]
            lengths = columns.lengths[start:end]
            start = end
            if (
                len(names) != chunk.count
                or chunk.count < 1
                or chunk.offset < 0
                or chunk.offset + chunk.length > self._size
                or chunk.length != 1 + sum(lengths) + chunk.count
            ):
                raise _Unreadable
            data = os.pread(self._fd, chunk.length, chunk.offset)
            if len(data) != chunk.length or zlib.crc32(data) != chunk.crc32:
                raise _Unreadable
            keys = list(zip(flat[0::3], flat[1::3], flat[2::3], strict=True))
            yield chunk, names, keys, lengths, data
        if start != columns.count:
            raise _Unreadable

    def runs(self, current: Mapping[str, FileKey]) -> Iterator[tuple[str, RunRecord]]:
        """``(name, record)`` of each record whose file is in the state ``current`` gives.

        Stops early, without an error, at a chunk that cannot be read: the caller
        reads from the files whatever was not yielded.
        """
        return self._documents("runs", _codec.RUN_RECORD, current)

    def derived(self, current: Mapping[str, FileKey]) -> Iterator[tuple[str, DerivedMetrics]]:
        """Like :meth:`runs`, for the derived metrics."""
        return self._documents("derived", _codec.DERIVED, current)

    def _documents(
        self, kind: Kind, codec: _codec.DocumentCodec[D], current: Mapping[str, FileKey]
    ) -> Iterator[tuple[str, D]]:
        get = current.get
        try:
            for chunk, names, keys, lengths, data in self._chunks(kind):
                try:
                    if chunk.direct:
                        documents = codec.decode_array(data)
                    else:
                        documents = [codec.decode(doc) for doc in _split(lengths, data)]
                except (msgspec.DecodeError, CorruptRecordError, RecursionError):
                    return
                if len(documents) != len(names):
                    return
                for name, key, document in zip(names, keys, documents, strict=True):
                    if get(name) == key:
                        yield name, document
        except (_Unreadable, OSError):
            return

    def carried(self, kind: Kind, current: Mapping[str, FileKey]) -> Iterator[tuple[_Entry, bytes]]:
        """The entries and bytes of the documents whose file is unchanged."""
        for entry, doc in self.entries(kind):
            if current.get(entry.name) == entry.key:
                yield entry, doc

    def held(self, kind: Kind) -> int:
        """How many documents of ``kind`` it holds, by its footer."""
        part = self._parts.get(kind)
        return 0 if part is None else part.count

    def entries(self, kind: Kind) -> Iterator[tuple[_Entry, bytes]]:
        """Every document of ``kind`` held, with its bytes, in name order.

        Stops early, without an error, at a chunk that cannot be read.
        """
        try:
            for _, names, keys, lengths, data in self._chunks(kind):
                for name, key, length, doc in zip(
                    names, keys, lengths, _split(lengths, data), strict=True
                ):
                    yield _Entry(name, key, length), doc
        except (_Unreadable, OSError):
            return


def _split(lengths: array[int], data: bytes) -> Iterator[bytes]:
    """The documents' bytes, cut from their chunk's JSON array by their lengths."""
    offset = 1
    for length in lengths:
        end = offset + length
        yield data[offset:end]
        offset = end + 1


def check_snapshot(
    path: str,
    parts: Mapping[Kind, Mapping[str, FileKey]],
    read: Callable[[Kind, str], bytes | None] | None,
) -> SnapshotCheck | None:
    """Check the snapshot at ``path`` against the files' keys ``parts``; ``None``: none.

    With ``read`` (a file's bytes, or ``None`` if it is gone), each document whose file
    is in its recorded state is compared with the file's bytes.
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
                for _, names, keys, lengths, data in snapshot._chunks(kind):
                    for name, key, doc in zip(names, keys, _split(lengths, data), strict=True):
                        held += 1
                        file = f"{kind}/{name}.json"
                        if current.get(name) != key:
                            outdated.append(file)
                        elif read is not None and read(kind, name) != doc:
                            differing.append(file)
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


@dataclass
class _PartWriter:
    names: list[str] = field(default_factory=list)
    keys: array[int] = field(default_factory=lambda: array("q"))
    lengths: array[int] = field(default_factory=lambda: array("q"))
    chunks: list[_Chunk] = field(default_factory=list)
    pending: list[bytes] = field(default_factory=list)
    direct: bool = True

    def columns(self) -> tuple[bytes, bytes, bytes]:
        """The names, keys and lengths, as the blobs that hold them."""
        keys, lengths = array("q", self.keys), array("q", self.lengths)
        if sys.byteorder != "little":
            keys.byteswap()
            lengths.byteswap()
        names = "\n".join(self.names).encode("utf-8", "surrogateescape")
        return names, keys.tobytes(), lengths.tobytes()


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
        self._written: dict[str, _Part] = {}
        self._kind: str | None = None
        self.made_ns = time.time_ns()
        self.documents = 0

    def begin(self, kind: Kind) -> None:
        """Start the documents of ``kind`` (the previous kind's are finished)."""
        self._finish_kind()
        self._kind = kind
        self._parts[kind] = _PartWriter()

    def _finish_kind(self) -> None:
        """Write the last chunk and the columns of the current kind, and let them go."""
        self._flush()
        part = self._parts.pop(self._kind or "", None)
        if part is not None and self._kind is not None:
            self._written[self._kind] = self._write_columns(part)
        self._kind = None

    def add(self, name: str, key: FileKey, data: bytes) -> bool:
        """Add the bytes of a valid document read from a file in state ``key``.

        A file changed less than :data:`RACY_SECONDS` before the snapshot began is
        left out, and so is one whose name holds a newline (never metalab's); says
        whether it was taken.
        """
        if key[1] > self.made_ns - RACY_SECONDS * 1_000_000_000 or "\n" in name:
            return False
        self._append(_Entry(name, key, len(data)), data)
        return True

    def carry(self, entry: _Entry, data: bytes) -> None:
        """Take over a document of the previous snapshot as it was encoded."""
        self._append(entry, data)

    def _append(self, entry: _Entry, data: bytes) -> None:
        part = self._parts[self._kind or ""]
        part.names.append(entry.name)
        part.keys.extend(entry.key)
        part.lengths.append(entry.length)
        part.pending.append(data)
        part.direct = part.direct and _codec.DocumentCodec.direct(data)
        self.documents += 1
        if len(part.pending) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        part = self._parts.get(self._kind or "")
        if part is None or not part.pending:
            return
        data = b"[" + b",".join(part.pending) + b"]"
        self._stream.write(data)
        count, crc = len(part.pending), zlib.crc32(data)
        part.chunks.append(_Chunk(self._offset, len(data), count, crc, part.direct))
        self._offset += len(data)
        part.pending = []
        part.direct = True

    def commit(self) -> None:
        """Write the footer and move the snapshot into place."""
        try:
            self._finish_kind()
            data = _ENCODER.encode(_Footer(VERSION, self.made_ns, self._written))
            self._stream.write(data)
            self._stream.write(_TRAILER.pack(self._offset, len(data), MAGIC))
            self._stream.close()
        except BaseException:
            self.abort()
            raise
        replace_into(self._tmp, self._path, durable=False)

    def _write_columns(self, part: _PartWriter) -> _Part:
        names, keys, lengths = (self._write_blob(data) for data in part.columns())
        return _Part(len(part.names), names, keys, lengths, part.chunks)

    def _write_blob(self, data: bytes) -> _Blob:
        self._stream.write(data)
        blob = _Blob(self._offset, len(data), zlib.crc32(data))
        self._offset += len(data)
        return blob

    def abort(self) -> None:
        """Remove the temp file (nothing was moved into place)."""
        self._stream.close()
        discard(self._tmp)


def write_part(
    writer: SnapshotWriter,
    kind: Kind,
    current: Mapping[str, FileKey],
    previous: RecordsSnapshot | None,
    read: Callable[[str], tuple[bytes, FileKey] | None],
) -> None:
    """Add the documents of ``kind`` to ``writer``: carried where unchanged, else ``read``.

    ``read(name)`` reads one file and checks that it decodes; ``None`` leaves the
    document out (gone, or not a valid document: readers then read, and report, its
    file).
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
