"""Parse store locators: plain paths, ``file://`` URIs and ``scheme://...`` URIs.

>>> parse_locator("postgresql://me:secret@db:5432/lab?file_root=/data").redacted()
'postgresql://me:***@db:5432/lab?file_root=/data'
>>> parse_locator("./experiments").scheme
'file'
>>> parse_locator("file:///shared/experiments").path
'/shared/experiments'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

from metalab.errors import LocatorError

__all__ = ["LocatorInfo", "parse_locator", "redact"]

_SCHEME: Final = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
_WINDOWS_DRIVE: Final = re.compile(r"^[A-Za-z]:[\\/]")
_PASSWORD: Final = re.compile(r"(?P<head>://[^/@:]*:)(?P<password>[^/@]*)(?P<tail>@)")
_PASSWORD_PARAM: Final = re.compile(r"(?P<head>[?&]password=)(?P<password>[^&]*)", re.IGNORECASE)


def redact(locator: str) -> str:
    """Hide any password in a locator or libpq URI (``user:***@host``)."""
    text = _PASSWORD.sub(r"\g<head>***\g<tail>", locator)
    return _PASSWORD_PARAM.sub(r"\g<head>***", text)


@dataclass(frozen=True, kw_only=True)
class LocatorInfo:
    """The parts of a parsed locator.

    Attributes:
        scheme: Lower-case scheme; ``"file"`` for plain paths.
        path: The path part (for ``file``: the filesystem path, ``~`` expanded).
        host: Host name, empty when absent.
        port: Port number, or ``None``.
        username: User name, or ``None``.
        password: Password, or ``None``; never shown by ``repr``.
        params: Query parameters (the last value wins for a repeated key).
        raw: The locator exactly as given; it may contain the password, so it is
            hidden from ``repr`` too. Use :meth:`redacted` in messages.
    """

    scheme: str
    path: str = ""
    host: str = ""
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    raw: str = field(default="", repr=False)

    def redacted(self) -> str:
        """Return the locator with any password replaced by ``***``."""
        return redact(self.raw)


def _expand(path: str) -> str:
    return str(Path(path).expanduser()) if path.startswith("~") else path


def parse_locator(locator: str | os.PathLike[str]) -> LocatorInfo:
    """Split a locator into its parts.

    Plain relative or absolute paths (``~`` included), Windows drive paths and
    ``file://`` URIs all give scheme ``"file"``.

    Raises:
        LocatorError: The locator is empty, holds a NUL byte, or is a malformed URI.
    """
    raw = os.fspath(locator)
    if not isinstance(raw, str):
        raise LocatorError(f"a locator must be a str or path, got {type(raw).__name__}")
    if not raw.strip():
        raise LocatorError("empty store locator; give a directory path or a URI")
    if "\x00" in raw:
        raise LocatorError(f"store locator {redact(raw)!r} contains a NUL byte")
    match = _SCHEME.match(raw)
    if match is None or _WINDOWS_DRIVE.match(raw):
        return LocatorInfo(scheme="file", path=_expand(raw), raw=raw)
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise LocatorError(f"cannot parse store locator {redact(raw)!r}: {exc}") from exc
    scheme = match["scheme"].lower()
    path = unquote(parts.path)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise LocatorError(
                f"file locator {raw!r} names host {parts.netloc!r}; "
                "use file:///absolute/path (three slashes) for a local directory"
            )
        path = _expand(path) if path else ""
        if not path:
            raise LocatorError(f"file locator {raw!r} has no path")
    return LocatorInfo(
        scheme=scheme,
        path=path,
        host=unquote(parts.hostname or ""),
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        params=MappingProxyType(dict(parse_qsl(parts.query, keep_blank_values=True))),
        raw=raw,
    )
