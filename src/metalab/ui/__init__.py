"""``metalab ui``: a web dashboard over any store, and the JSON API behind it.

Serve a store from Python or from the command line (``metalab ui LOCATOR``)::

    from metalab.ui import serve

    serve("./experiments")  # http://127.0.0.1:8765/, read-only, until Ctrl-C

The dashboard lists the experiments of the store, pages through the runs of one
(filtered and sorted with the query language of :mod:`metalab.query`), shows a
run (its fields, error, artifacts, logs and metric series), compares 2 to 10 runs
side by side, and plots an experiment's fields and series (aggregated on the
server). Pages follow running sweeps by polling, with ETags. :func:`create_app` gives
the ASGI application itself, to mount elsewhere or to test with Starlette's
``TestClient``. ``docs/ui.md`` describes the pages, the security model and the API.

Needs the ``ui`` extra (``pip install 'metalab[ui]'``: Starlette and uvicorn);
importing this module does not import them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from metalab._optional import require

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from metalab.store import Store, StoreLike

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "create_app", "serve"]

DEFAULT_HOST: Final = "127.0.0.1"
"""The address served by default: this machine only."""

DEFAULT_PORT: Final = 8765
"""The port served by default."""


def create_app(
    store_or_locator: Store | StoreLike,
    *,
    write: bool = False,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """Build the dashboard's ASGI application over a store.

    Args:
        store_or_locator: A connected store (left open: the caller owns it), or a
            path, locator or config, checked now and connected on first use (and
            closed when the application shuts down).
        write: Allow editing tags and notes (``POST /api/runs/{id}/tags`` and
            ``/notes``); read-only otherwise (those answer 403).
        token: If given, every request must carry it: ``?token=`` (which sets an
            HttpOnly, SameSite=Strict cookie for the requests that follow), the
            cookie, or ``Authorization: Bearer``; else 401. At least 16 characters
            among letters, digits and ``._~+/=-``.
        allowed_hosts: Host names a request's ``Host`` header may carry (``"*"``
            for any). By default only loopback names (``127.0.0.1``, ``::1``,
            ``localhost``) without a token, which defeats DNS rebinding, and any
            with one.

    Raises:
        MissingDependencyError: Starlette is not installed (extra ``ui``).
        ConfigError: The locator or the token is invalid.
        StoreNotFoundError: The path (a PostgresStore's ``file_root``) holds no store.
    """
    require("starlette", extra="ui", feature="metalab ui")
    from metalab.ui._app import build_app  # noqa: PLC0415 -- optional (ui extra)

    return build_app(store_or_locator, write=write, token=token, allowed_hosts=allowed_hosts)


def serve(
    locator: Store | StoreLike,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    write: bool = False,
    token: str | None = None,
    open_browser: bool = False,
) -> None:
    """Serve the dashboard over a store until interrupted (Ctrl-C).

    Prints the URL to open on stdout first (with the token, when there is one).

    Args:
        locator: A path, locator, config or connected store.
        host: The address to listen on. Any other than a loopback address needs a
            token: one is generated (``secrets.token_urlsafe``) when none is given.
        port: The port (0: any free one, printed in the URL).
        write: Allow editing tags and notes.
        token: The token every request must carry (see :func:`create_app`).
        open_browser: Open the URL in a web browser once the server listens.

    Raises:
        MissingDependencyError: Starlette or uvicorn is not installed (extra ``ui``).
        ConfigError: The locator or token is invalid, or the port cannot be used.
        StoreNotFoundError: The path holds no metalab store.
    """
    require("starlette", "uvicorn", extra="ui", feature="metalab ui")
    from metalab.ui._server import run_server  # noqa: PLC0415 -- optional (ui extra)

    run_server(locator, host=host, port=port, write=write, token=token, open_browser=open_browser)
