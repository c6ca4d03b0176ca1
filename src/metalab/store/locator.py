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
_ENCODE_HINT: Final = (
    "percent-encode '/', '@', ':', '?', '#' and '%' in a user name or password "
    "(e.g. '/' as %2F, '@' as %40)"
)
_SECRET_KEYS: Final = frozenset({"password", "sslpassword", "pgpassword"})
"""Keys whose values are secrets: libpq's two, and the environment variable's name."""
# ``scheme://user:`` (the user may be empty); the password runs from here to an '@'.
_USERINFO: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"/?#@:]*:")
_TOKEN_END: Final = re.compile(r"[\s'\"]")
# ``?password=...`` / ``&sslpassword=...`` in a URI's query (the key may be
# percent-encoded: libpq decodes it). Within a whole locator the value runs to the
# next '&'; within other text it also stops at whitespace and quotes.
_QUERY_PARAM: Final = re.compile(r"(?P<head>[?&](?P<key>[^=&\s'\"]*)=)(?P<value>[^&]*)")
_QUERY_PARAM_IN_TEXT: Final = re.compile(
    r"(?P<head>[?&](?P<key>[^=&\s'\"]*)=)(?P<value>[^&\s'\"]*)"
)
# libpq's key=value form: blanks around '=', a value in single quotes with backslash
# escapes (an unterminated one runs to the end), or a bare value up to a blank (a
# backslash escapes the next character). Any run of backslashes escapes what follows,
# because ``repr`` doubles them (``\'`` becomes ``\\'``). Only at the start of a word,
# so that ``user:password=x@host`` stays a URI's user information.
_KEYWORD: Final = re.compile(
    r"(?<![^\s'\"(,;{\[])(?P<head>(?:ssl|pg)?password\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\+.)*'?|(?:\\+.|[^\s\\])+\\*|\\+)",
    re.IGNORECASE | re.DOTALL,
)


def redact(text: str) -> str:
    """Hide every password in a locator, a libpq connection string, or any text.

    This is the one function through which every message, log line and ``repr``
    that may hold a locator or a connection string goes. It hides:

    - the password of a URI's user information (``scheme://user:***@host``), up to
      the *last* ``@`` of the locator, so a password holding a raw ``/``, ``@``,
      ``:`` or ``%`` is hidden whole even where no URI parser can split it;
    - ``password``, ``sslpassword`` (and ``PGPASSWORD``) values: in a URI's query
      (``?password=***``, the key percent-encoded or not) and in libpq's key=value
      form (``password=***``, quoted values such as ``password='a b'`` included).

    ``text`` may be one locator or connection string (then it is read whole, blanks
    and quotes included), or a message that quotes one (then a URI ends at a blank
    or a quote). When the extent of a password is unclear it hides more, never less.

    >>> redact("postgresql://me:ab/c@d@db:5432/lab?sslmode=require")
    'postgresql://me:***@db:5432/lab?sslmode=require'
    >>> redact("host=db password='a b' dbname=lab")
    'host=db password=*** dbname=lab'
    >>> redact("cannot reach 'postgresql://db/lab?password=pw&sslmode=require'")
    "cannot reach 'postgresql://db/lab?password=***&sslmode=require'"
    """
    start = len(text) - len(text.lstrip())
    whole = _SCHEME.match(text, start) is not None
    query = _QUERY_PARAM if whole else _QUERY_PARAM_IN_TEXT
    text = query.sub(_hide_query_value, text)
    text = _KEYWORD.sub(r"\g<head>***", text)
    return _hide_user_passwords(text, whole_from=start if whole else -1)


def _hide_query_value(match: re.Match[str]) -> str:
    if unquote(match["key"]).lower() in _SECRET_KEYS:
        return f"{match['head']}***"
    return match[0]


def _hide_user_passwords(text: str, whole_from: int) -> str:
    """Replace what lies between ``scheme://user:`` and its last ``@`` with ``***``.

    A URI that starts at ``whole_from`` spans the rest of ``text``; any other one
    ends at the next blank or quote.
    """
    parts: list[str] = []
    done = 0
    for match in _USERINFO.finditer(text):
        if match.start() < done:
            continue  # inside a password already hidden
        begin = match.end()
        if match.start() == whole_from:
            end = len(text)
        else:
            blank = _TOKEN_END.search(text, begin)
            end = len(text) if blank is None else blank.start()
        at = text.rfind("@", begin, end)
        if at < 0:
            continue  # ``host:port``, not ``user:password``
        parts += [text[done:begin], "***"]
        done = at
    parts.append(text[done:])
    return "".join(parts)


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

    def __repr__(self) -> str:
        # The generated repr would show a ``?password=`` query parameter.
        params = {k: "***" if k.lower() in _SECRET_KEYS else v for k, v in self.params.items()}
        return (
            f"LocatorInfo(scheme={self.scheme!r}, path={self.path!r}, host={self.host!r}, "
            f"port={self.port!r}, username={self.username!r}, params={params!r})"
        )

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
        LocatorError: The locator is empty, holds a NUL byte, is a malformed URI (a
            second ``?`` in its query included: parameters are joined with ``&``), or
            is a path holding a password (a libpq key=value connection string).
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
        if redact(raw) != raw:
            # A pasted key=value connection string: as a path, its password would
            # become a directory name, shown wherever the directory is.
            raise LocatorError(
                f"store locator {redact(raw)!r} holds a password but is not a URI; "
                "write a PostgreSQL locator as postgresql://user@host:5432/dbname"
                "?file_root=/path/to/files and keep the password in ~/.pgpass or PGPASSWORD"
            )
        return LocatorInfo(scheme="file", path=_expand(raw), raw=raw)
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        # urllib's message quotes the bad part, which may be a piece of a password
        # (``user:pass/word@host`` reads as host ``user``, port ``pass``).
        raise LocatorError(
            f"cannot parse store locator {redact(raw)!r}: its host or port is malformed; "
            f"{_ENCODE_HINT}"
        ) from None
    if "?" in parts.query:
        # ``...?passfile=/p?file_root=/d`` would read as one passfile value, the
        # file_root silently folded into it.
        raise LocatorError(
            f"store locator {redact(raw)!r} has a second '?' in its query: join its "
            "parameters with '&' (postgresql://host/db?passfile=/p&file_root=/data), and "
            "write a '?' inside a value as %3F"
        )
    scheme = match["scheme"].lower()
    path = unquote(parts.path)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise LocatorError(
                f"file locator {redact(raw)!r} names host {parts.hostname or ''!r}; "
                "use file:///absolute/path (three slashes) for a local directory"
            )
        path = _expand(path) if path else ""
        if not path:
            raise LocatorError(f"file locator {redact(raw)!r} has no path")
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
