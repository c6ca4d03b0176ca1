"""Context specs: the shared inputs of an experiment, with datasets identified by content.

A context is part of every run's id. Declare it as a frozen, serialisable spec and name
the files it depends on with :class:`FilePath` / :class:`DirPath`::

    @metalab.context_spec
    class Data:
        train: metalab.FilePath
        images: metalab.DirPath
        vocab_size: int = 10_000

    exp = metalab.Experiment(..., context=Data(metalab.FilePath("train.csv"),
                                               metalab.DirPath("images", pattern="*.png")))

The spec travels to the workers as it is (paths, never the data). When a sweep starts,
the **content** of each file enters the context fingerprint (sha256, read in 1 MiB
chunks, so a 10 GB file is never held in memory): a changed dataset changes the run
ids, an unchanged one keeps them. Hashes are cached on disk by (real path, size,
modification time, inode), so a re-run of an unchanged dataset does not read it again.
The cache lives in ``$METALAB_CACHE_DIR`` (default ``~/.cache/metalab``) and can be
deleted at any time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar, dataclass_transform, overload

import msgspec

from metalab.records import JSONValue

__all__ = ["DirPath", "FilePath", "context_spec", "dir_hash", "file_hash"]

T = TypeVar("T")

_CHUNK: Final = 1 << 20
_CACHE_VERSION: Final = "1"


@overload
def context_spec(cls: type[T]) -> type[T]: ...
@overload
def context_spec(*, frozen: bool = True) -> Callable[[type[T]], type[T]]: ...
@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def context_spec(
    cls: type[T] | None = None, *, frozen: bool = True
) -> type[T] | Callable[[type[T]], type[T]]:
    """Make a class a context spec: a (frozen) dataclass whose fields form the context.

    Fields hold JSON-like values, :class:`FilePath` and :class:`DirPath` (their
    contents enter the fingerprint) and other specs.
    """

    def wrap(target: type[T]) -> type[T]:
        made: type[T] = dataclasses.dataclass(frozen=frozen)(target)
        made.__metalab_context_spec__ = True  # type: ignore[attr-defined]
        return made

    return wrap if cls is None else wrap(cls)


class _PathSpec:
    """A path a context depends on: a string to the operation, a content hash to the id."""

    __slots__ = ("_hash", "path")

    path: str
    _hash: str | None

    def __init__(self, path: str | os.PathLike[str]) -> None:
        text: object = os.fspath(path)
        if not isinstance(text, str) or not text:
            raise TypeError(f"{type(self).__name__} takes a non-empty path, got {path!r}")
        object.__setattr__(self, "path", text)
        object.__setattr__(self, "_hash", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _PathSpec)
            and type(other) is type(self)
            and self._key() == other._key()
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._key()))

    def __getstate__(self) -> tuple[Any, ...]:
        return (*self._key(), self._hash)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        *key, cached = state
        self._restore(key)
        object.__setattr__(self, "_hash", cached)

    def _key(self) -> tuple[str, ...]:
        return (self.path,)

    def _restore(self, key: list[Any]) -> None:
        object.__setattr__(self, "path", key[0])

    def _compute(self) -> str:
        raise NotImplementedError

    @property
    def content_hash(self) -> str:
        """The sha256 of the content (computed on first use, then kept)."""
        if self._hash is None:
            object.__setattr__(self, "_hash", self._compute())
        assert self._hash is not None
        return self._hash

    def __metalab_json__(self) -> JSONValue:
        """What enters the context fingerprint: the content, not where it lies."""
        return {"sha256": self.content_hash}


class FilePath(_PathSpec):
    """A file whose content identifies the context (see :mod:`metalab.context`).

    ``str(fp)`` and ``os.fspath(fp)`` give the path, so operations open it as usual.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"FilePath({self.path!r})"

    def _compute(self) -> str:
        return file_hash(self.path)


class DirPath(_PathSpec):
    """A directory whose files (matching ``pattern``, recursively with ``**``) identify it."""

    __slots__ = ("pattern",)

    pattern: str

    def __init__(self, path: str | os.PathLike[str], pattern: str = "*") -> None:
        super().__init__(path)
        object.__setattr__(self, "pattern", pattern)

    def __repr__(self) -> str:
        shown = "" if self.pattern == "*" else f", pattern={self.pattern!r}"
        return f"DirPath({self.path!r}{shown})"

    def _key(self) -> tuple[str, ...]:
        return (self.path, self.pattern)

    def _restore(self, key: list[Any]) -> None:
        object.__setattr__(self, "path", key[0])
        object.__setattr__(self, "pattern", key[1])

    def _compute(self) -> str:
        return dir_hash(self.path, self.pattern)


def file_hash(path: str | os.PathLike[str]) -> str:
    """The sha256 (hex) of a file's content, read in chunks, cached by its metadata.

    Raises:
        FileNotFoundError: There is no such file.
        IsADirectoryError: It is a directory (use :func:`dir_hash`).
    """
    real = Path(path).resolve()
    info = real.stat()
    if not real.is_file():
        raise IsADirectoryError(f"{os.fspath(path)!r} is not a file; use dir_hash()")
    key = f"{_CACHE_VERSION}\0{real}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}"
    cached = _cache_path(key)
    try:
        found = cached.read_text(encoding="ascii")
    except OSError:
        found = ""
    if len(found) == 64:
        return found
    value = _read_hash(real)
    _remember(cached, value)
    return value


def _read_hash(path: Path) -> str:
    """Read a whole file in chunks (never all of it in memory) and hash it."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dir_hash(path: str | os.PathLike[str], pattern: str = "*") -> str:
    """The sha256 (hex) of a directory's files matching ``pattern``, by relative name.

    Files are taken in sorted order of their path relative to ``path``; each enters
    with that path and its content's sha256, so renaming or changing a file changes
    the hash. The hashes of a directory's files are cached together (one cache file
    per directory and pattern), each by its size, modification time and inode.

    Raises:
        FileNotFoundError: There is no such directory.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no directory {os.fspath(path)!r}")
    real = root.resolve()
    cached_at = _cache_path(f"{_CACHE_VERSION}\0dir\0{real}\0{pattern}")
    try:
        known: dict[str, list[Any]] = msgspec.json.decode(cached_at.read_bytes())
    except (OSError, msgspec.DecodeError):
        known = {}
    seen: dict[str, list[Any]] = {}
    digest = hashlib.sha256()
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.glob(pattern) if p.is_file())
    for relative, file in files:
        info = file.stat()
        stamp = [info.st_size, info.st_mtime_ns, info.st_ino]
        entry = known.get(relative)
        value = entry[3] if entry is not None and entry[:3] == stamp else _read_hash(file)
        seen[relative] = [*stamp, value]
        digest.update(relative.encode() + b"\0" + value.encode() + b"\n")
    if seen != known:
        _remember(cached_at, msgspec.json.encode(seen).decode())
    return digest.hexdigest()


def _cache_dir() -> Path:
    configured = os.environ.get("METALAB_CACHE_DIR")
    base = Path(configured) if configured else Path.home() / ".cache" / "metalab"
    return base / "file-hashes"


def _cache_path(key: str) -> Path:
    return _cache_dir() / hashlib.sha256(key.encode()).hexdigest()


def _remember(path: Path, value: str) -> None:
    """Keep a hash for next time; a cache that cannot be written only costs a re-read."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(value, encoding="ascii")
        tmp.replace(path)
    except OSError:
        return
