"""Serving the dashboard with uvicorn: the socket, the token, the URL to open."""

from __future__ import annotations

import errno
import secrets
import socket
import sys
import threading
import webbrowser
from typing import TextIO

import uvicorn

from metalab.errors import ConfigError
from metalab.store import Store, StoreLike
from metalab.ui._app import build_app, loopback_host

__all__ = ["run_server"]

_ANY_ADDRESS = frozenset({"", "0.0.0.0", "::"})


def run_server(
    source: Store | StoreLike,
    *,
    host: str,
    port: int,
    write: bool,
    token: str | None,
    open_browser: bool,
    out: TextIO | None = None,
) -> None:
    """Serve the dashboard until interrupted (see :func:`metalab.ui.serve`)."""
    stream = out or sys.stdout
    exposed = not loopback_host(host)
    if exposed and token is None:
        token = secrets.token_urlsafe(24)
    app = build_app(source, write=write, token=token, allowed_hosts=None)
    sock = _listen(host, port)
    try:
        url = _url(host, sock.getsockname()[1], token)
        mode = "read-write" if write else "read-only"
        stream.write(f"metalab ui: serving {app.state.store_name} ({mode}) at {url}\n")
        if exposed:
            stream.write(
                f"metalab ui: {host or 'every address'} is reachable from other machines, so "
                "requests need the token in this URL; the traffic is not encrypted (use a "
                "trusted network, an SSH tunnel or an HTTPS proxy)\n"
            )
        stream.write("metalab ui: Ctrl-C stops it\n")
        stream.flush()
        if open_browser:
            # A console browser would block until it exits; the socket already listens.
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``.

    Raises:
        ConfigError: The port is taken or not allowed, or the address is not this
            machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if host == "::":
            return socket.create_server((host, port), family=family, dualstack_ipv6=True)
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        hint = "; --port picks another (0: any free one)" if taken else ""
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from exc


def _url(host: str, port: int, token: str | None) -> str:
    shown = socket.gethostname() if host in _ANY_ADDRESS else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
