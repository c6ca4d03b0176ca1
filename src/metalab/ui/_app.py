"""The dashboard's Starlette application: routes, the guard in front of them, errors as JSON.

The endpoints are thin: each reads its parameters, asks :mod:`metalab.ui._api` in a
worker thread (stores block) and encodes the answer with msgspec. Every failure
becomes a JSON :class:`~metalab.ui._models.ApiError` with a status that says whose
fault it is (400 a bad request, 404 nothing there, 503 the store cannot be reached,
500 the store failed), never a traceback page.

The guard (:class:`Guard`) checks every request before a route sees it: the Host
header (without a token, only loopback names, against DNS rebinding), the token
(query, cookie or ``Authorization: Bearer``) and, for writes, the Origin; it adds
the security headers to every response.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http
import ipaddress
import logging
import os
import re
import threading
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from typing import Final, TypeVar

import msgspec
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metalab._version import __version__
from metalab.errors import (
    ArtifactNotFoundError,
    CapabilityError,
    ConfigError,
    ExperimentNotFoundError,
    IndexUnavailableError,
    MetalabError,
    QuerySyntaxError,
    StoreNotFoundError,
)
from metalab.store import FileStoreConfig, Store, StoreConfig, StoreLike, coerce_store_config
from metalab.store.locator import redact
from metalab.ui import _api as api
from metalab.ui import _plots as plots
from metalab.ui._models import ApiError, InfoOut, NotesEdit, TagsEdit

__all__ = [
    "ARTIFACT_POLICY",
    "COOKIE",
    "MAX_BODY",
    "MAX_SERIES_POINTS",
    "SECURITY_HEADERS",
    "Dashboard",
    "Guard",
    "StoreHandle",
    "build_app",
    "check_token",
    "error_response",
    "loopback_host",
    "with_etag",
]

log = logging.getLogger(__name__)

COOKIE: Final = "metalab_ui_token"
"""The cookie that carries the token after a first request with ``?token=``."""

SECURITY_HEADERS: Final = (
    (
        "content-security-policy",
        (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'"
        ),
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cache-control", "no-store"),
)
"""Headers every response carries (a response may set a stricter one of its own)."""

ARTIFACT_POLICY: Final = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
"""The Content-Security-Policy of an artifact's download: shown, never run."""

MAX_BODY: Final = 64 * 1024
"""The largest request body (an edit of tags or notes) accepted."""

MAX_SERIES_POINTS: Final = 5000
"""The most points per series a client may ask for (``max_points``)."""

_STATIC: Final = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
"""The front end: the only files served, by these names."""

T = TypeVar("T")


# --- the store --------------------------------------------------------------------


class StoreHandle:
    """The store the dashboard serves: one given, or one connected from a locator.

    A locator is checked at once (a path that holds no store is refused before the
    server starts) but connected on first use, and again after a failed connection:
    a server whose index cannot be reached when it starts answers 503 until it can.
    """

    def __init__(self, source: Store | StoreLike) -> None:
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._config: StoreConfig | None = None
        if isinstance(source, str | os.PathLike | StoreConfig):
            config = coerce_store_config(source)
            _require_files(config)
            self._config = config
            self.name = _locator(config)
        elif callable(getattr(source, "list_run_records", None)):
            self._store = source
            self.name = type(source).__qualname__
        else:
            raise TypeError(
                "create_app() takes a path, a locator, a StoreConfig or a store, "
                f"got {type(source).__qualname__}"
            )

    def get(self) -> Store:
        """The store, connected now if it is not yet."""
        with self._lock:
            if self._store is None:
                assert self._config is not None
                self._store = self._config.connect()
            return self._store

    def close(self) -> None:
        """Close the store if this handle connected it."""
        with self._lock:
            if self._config is not None and self._store is not None:
                self._store.close()
                self._store = None


def _locator(config: StoreConfig) -> str:
    try:
        return redact(config.to_locator())
    except NotImplementedError:
        return type(config).__qualname__


def _require_files(config: StoreConfig) -> None:
    """Refuse a locator whose files are not a metalab store (it would read as empty).

    Raises:
        StoreNotFoundError: The root (a PostgresStore's ``file_root``) is no store.
        ExperimentNotFoundError: The locator names an experiment the files lack.
    """
    root = getattr(config, "root", None) or getattr(config, "file_root", None)
    if not isinstance(root, str):
        return
    files = FileStoreConfig(root=root)
    files.require_store()
    if config.experiment_id is not None:
        known = files.list_experiments()
        if config.experiment_id not in known:
            raise ExperimentNotFoundError(config.experiment_id, known, repr(root))


# --- errors -----------------------------------------------------------------------


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, api.Problem):
        return exc.status
    if isinstance(exc, ExperimentNotFoundError | ArtifactNotFoundError):
        return 404
    if isinstance(exc, ConfigError):
        return 400
    if isinstance(exc, CapabilityError):
        return 501
    if isinstance(exc, IndexUnavailableError | StoreNotFoundError):
        return 503
    return 500


def error_response(exc: BaseException) -> Response:
    """The JSON answer to a failed request: its status and what went wrong."""
    status = _status_of(exc)
    message = exc.message if isinstance(exc, api.Problem) else api.describe(exc)
    if status == 500 and not isinstance(exc, MetalabError):
        log.error("unexpected error answering a request", exc_info=exc)
        message = f"unexpected {type(exc).__name__}: {message}"
    body = ApiError(
        error=message,
        type=_phrase(status) if isinstance(exc, api.Problem) else type(exc).__name__,
        param=exc.param if isinstance(exc, api.Problem) else None,
        column=exc.column if isinstance(exc, api.Problem) else None,
    )
    if isinstance(exc, QuerySyntaxError):
        body.column = exc.column
    return _json(body, status)


def _phrase(status: int) -> str:
    """``NotFound`` for 404: the kind of a refusal that is no exception of metalab's."""
    return http.HTTPStatus(status).phrase.replace(" ", "").replace("-", "")


def _json(document: object, status: int = 200) -> Response:
    return Response(
        msgspec.json.encode(document), status_code=status, media_type="application/json"
    )


async def _in_thread(work: Callable[[], Response], request: Request | None = None) -> Response:
    """Run blocking work (a store's) in a worker thread; any failure as a JSON error.

    Given the request, a JSON answer gets an ``ETag`` (see :func:`with_etag`).
    """
    try:
        response = await run_in_threadpool(work)
    except Exception as exc:  # noqa: BLE001 - every failure is answered, none is a page
        return error_response(exc)
    return response if request is None else with_etag(request, response)


def with_etag(request: Request, response: Response) -> Response:
    """Tag a JSON answer with a hash of its body; ``304`` if the client has that one.

    A page that polls sends the tag of what it shows in ``If-None-Match`` and gets
    ``304 Not Modified`` without a body while nothing changed.
    """
    if (
        request.method not in ("GET", "HEAD")
        or response.status_code != 200
        or response.media_type != "application/json"
    ):
        return response
    tag = '"' + hashlib.sha256(response.body).hexdigest()[:32] + '"'
    given = request.headers.get("if-none-match", "")
    wanted = {item.strip().removeprefix("W/") for item in given.split(",")}
    if tag in wanted or "*" in wanted:
        return Response(status_code=304, headers={"etag": tag})
    response.headers["etag"] = tag
    return response


# --- parameters -------------------------------------------------------------------


def _int(request: Request, name: str, default: int, *, low: int, high: int | None = None) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise api.Problem(400, f"{name} must be a whole number, got {text!r}", param=name) from None
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise api.Problem(400, f"{name} must be {bounds}, got {value}", param=name)
    return value


def _list(request: Request, name: str) -> list[str]:
    """A parameter given once with commas, or several times."""
    return [
        item.strip()
        for given in request.query_params.getlist(name)
        for item in given.split(",")
        if item.strip()
    ]


def _optional(request: Request, name: str) -> str | None:
    """A parameter's text, or ``None`` when it is missing or blank.

    The text is kept whole, so that the column of a syntax error is its column in
    what the user typed.
    """
    value = request.query_params.get(name)
    return value if value is not None and value.strip() else None


async def _body(request: Request, kind: type[T]) -> T:
    """The request's JSON body as ``kind``.

    Raises:
        Problem: Not JSON (415), too large (413) or not of the expected shape (400).
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise api.Problem(415, "send the body as JSON (Content-Type: application/json)")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise api.Problem(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        return msgspec.json.decode(bytes(data), type=kind)
    except msgspec.DecodeError as exc:
        raise api.Problem(400, f"invalid body: {exc}") from exc


def _file_name(name: str, fmt: str) -> str:
    return name if "." in name or not fmt else f"{name}.{fmt}"


# --- the endpoints ----------------------------------------------------------------


class Dashboard:
    """The routes of the dashboard over one store."""

    def __init__(self, handle: StoreHandle, *, write: bool) -> None:
        self.handle = handle
        self.write = write

    def routes(self) -> list[Route]:
        """Every route: the JSON API under ``/api``, the front end at ``/``."""
        return [
            Route("/api/info", self.info),
            Route("/api/experiments", self.experiments),
            Route("/api/experiments/{experiment_id}/runs", self.runs),
            Route("/api/experiments/{experiment_id}/runs.csv", self.runs_csv),
            Route("/api/experiments/{experiment_id}/runs/count", self.runs_count),
            Route("/api/experiments/{experiment_id}/fields", self.fields),
            Route("/api/experiments/{experiment_id}/plot", self.plot),
            Route("/api/compare", self.compare),
            Route("/api/runs/{run_id}", self.run),
            Route("/api/runs/{run_id}/artifacts/{name}", self.artifact),
            Route("/api/runs/{run_id}/logs/{name}", self.log),
            Route("/api/runs/{run_id}/series", self.series),
            Route("/api/runs/{run_id}/tags", self.tags, methods=["POST"]),
            Route("/api/runs/{run_id}/notes", self.notes, methods=["POST"]),
            Route("/", self.static),
            Route("/{name}", self.static),
        ]

    async def info(self, _request: Request) -> Response:
        """``GET /api/info``."""
        return _json(InfoOut(version=__version__, store=self.handle.name, write=self.write))

    async def experiments(self, request: Request) -> Response:
        """``GET /api/experiments``."""
        return await _in_thread(lambda: _json(api.experiments(self.handle.get())), request)

    def _view(self, request: Request, *, paged: bool) -> api.RunsView:
        offset = _int(request, "offset", 0, low=0)
        limit: int | None
        if paged:
            limit = _int(request, "limit", api.DEFAULT_LIMIT, low=1, high=api.MAX_LIMIT)
        else:  # an export: every matching run, unless a window is asked for
            limit = _int(request, "limit", 0, low=0) if request.query_params.get("limit") else None
        return api.runs_view(
            self.handle.get(),
            request.path_params["experiment_id"],
            where=_optional(request, "where"),
            sort=[key for key in request.query_params.getlist("sort") if key.strip()],
            offset=offset,
            limit=limit,
            columns=_optional(request, "columns"),
        )

    async def runs(self, request: Request) -> Response:
        """``GET /api/experiments/{id}/runs``."""
        return await _in_thread(
            lambda: _json(api.runs_page(self._view(request, paged=True))), request
        )

    async def runs_count(self, request: Request) -> Response:
        """``GET /api/experiments/{id}/runs/count``: how many runs match ``where``."""
        experiment_id = request.path_params["experiment_id"]
        where = _optional(request, "where")
        return await _in_thread(
            lambda: _json(api.runs_count(self.handle.get(), experiment_id, where)), request
        )

    async def runs_csv(self, request: Request) -> Response:
        """``GET /api/experiments/{id}/runs.csv``: every matching run (or a window)."""

        def work() -> Response:
            view = self._view(request, paged=False)
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in view.experiment_id)
            return Response(
                api.runs_csv(view),
                media_type="text/csv; charset=utf-8",
                headers={"content-disposition": f'attachment; filename="{name}-runs.csv"'},
            )

        return await _in_thread(work)

    async def fields(self, request: Request) -> Response:
        """``GET /api/experiments/{id}/fields``."""
        experiment_id = request.path_params["experiment_id"]
        return await _in_thread(
            lambda: _json(api.fields(self.handle.get(), experiment_id)), request
        )

    async def plot(self, request: Request) -> Response:
        """``GET /api/experiments/{id}/plot?kind=...``: a plot's numbers (see ``_plots``)."""
        experiment_id = request.path_params["experiment_id"]

        def work() -> Response:
            asked = plots.PlotRequest(
                kind=request.query_params.get("kind", "scatter"),
                x=_optional(request, "x"),
                y=_optional(request, "y"),
                color=_optional(request, "color"),
                agg=request.query_params.get("agg", "none"),
                bins=_int(request, "bins", plots.DEFAULT_BINS, low=1, high=plots.MAX_BINS),
                where=_optional(request, "where"),
                metric=_optional(request, "metric"),
                dims=_optional(request, "dims"),
                seed=_int(request, "seed", 0, low=0),
                limit=_int(request, "limit", plots.MAX_POINTS, low=1, high=plots.MAX_POINTS),
            )
            return _json(plots.plot(self.handle.get(), experiment_id, asked))

        return await _in_thread(work, request)

    async def compare(self, request: Request) -> Response:
        """``GET /api/compare?ids=a,b,...``: 2 to 10 runs side by side."""
        ids = _list(request, "ids")
        return await _in_thread(lambda: _json(api.compare(self.handle.get(), ids)), request)

    async def run(self, request: Request) -> Response:
        """``GET /api/runs/{run_id}``."""
        run_id = request.path_params["run_id"]
        return await _in_thread(lambda: _json(api.run_detail(self.handle.get(), run_id)), request)

    async def artifact(self, request: Request) -> Response:
        """``GET /api/runs/{run_id}/artifacts/{name}``: the bytes, streamed."""
        run_id, name = request.path_params["run_id"], request.path_params["name"]
        try:
            store = await run_in_threadpool(self.handle.get)
            descriptor = await run_in_threadpool(api.find_artifact, store, run_id, name)
            source = await run_in_threadpool(api.artifact_source, store, run_id, descriptor)
        except Exception as exc:  # noqa: BLE001 - answered as JSON
            return error_response(exc)
        media, inline = api.media_type(descriptor)
        if request.query_params.get("download"):
            inline = False
        quoted = urllib.parse.quote(_file_name(descriptor.name, descriptor.format), safe="")
        headers = {
            "content-disposition": f"{'inline' if inline else 'attachment'}; "
            f"filename*=UTF-8''{quoted}",
            "content-security-policy": ARTIFACT_POLICY,
            "x-metalab-sha256": descriptor.content_hash,
        }
        if isinstance(source, bytes):
            return Response(source, media_type=media, headers=headers)
        # Closed once the response is sent, or the client went away.
        return StreamingResponse(
            api.chunks(source),
            media_type=media,
            headers=headers,
            background=BackgroundTask(source.close),
        )

    async def log(self, request: Request) -> Response:
        """``GET /api/runs/{run_id}/logs/{name}?tail=N``."""
        run_id, name = request.path_params["run_id"], request.path_params["name"]

        def work() -> Response:
            tail = _int(request, "tail", api.DEFAULT_TAIL, low=0)
            return _json(api.log_tail(self.handle.get(), run_id, name, tail))

        return await _in_thread(work, request)

    async def series(self, request: Request) -> Response:
        """``GET /api/runs/{run_id}/series?names=a,b&max_points=N``."""
        run_id = request.path_params["run_id"]

        def work() -> Response:
            most = _int(request, "max_points", api.MAX_SERIES_POINTS, low=2, high=MAX_SERIES_POINTS)
            names = _list(request, "names")
            return _json(api.series(self.handle.get(), run_id, names, most))

        return await _in_thread(work, request)

    async def tags(self, request: Request) -> Response:
        """``POST /api/runs/{run_id}/tags`` with ``{"add": [...], "remove": [...]}``."""
        return await self._edit(request, TagsEdit, api.edit_tags)

    async def notes(self, request: Request) -> Response:
        """``POST /api/runs/{run_id}/notes`` with ``{"notes": "..."}`` (``null`` clears)."""
        return await self._edit(request, NotesEdit, api.edit_notes)

    async def _edit(
        self, request: Request, kind: type[T], edit: Callable[[Store, str, T], object]
    ) -> Response:
        run_id = request.path_params["run_id"]
        try:
            if not self.write:
                raise api.Problem(
                    403, "this dashboard is read-only; start it with --write to edit runs"
                )
            body = await _body(request, kind)
        except api.Problem as exc:
            return error_response(exc)
        return await _in_thread(lambda: _json(edit(self.handle.get(), run_id, body)))

    async def static(self, request: Request) -> Response:
        """The front end's files (``/`` is ``index.html``); nothing else."""
        name = request.path_params.get("name", "index.html")
        media = _STATIC.get(name)
        if media is None:
            return error_response(api.Problem(404, f"no such page: {request.url.path!r}"))
        data = await run_in_threadpool(_static_bytes, name)
        return Response(data, media_type=media)


def _static_bytes(name: str) -> bytes:
    return (resources.files("metalab.ui") / "static" / name).read_bytes()


async def _http_error(_request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route, wrong method) as JSON too."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
    return _json(ApiError(error=str(detail), type=_phrase(status)), status)


# --- the guard --------------------------------------------------------------------


def loopback_host(host: str) -> bool:
    """Whether a host name or address is this machine's loopback."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host of a ``Host`` header, without its port (``[::1]:8765`` gives ``::1``)."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware in front of every route: hosts, token, origin, security headers.

    Args:
        app: The application it guards.
        token: The token every request must carry, or ``None``.
        allowed_hosts: Host names the ``Host`` header may name (``"*"``: any);
            ``None``: only loopback names without a token, any with one.
    """

    def __init__(
        self, app: ASGIApp, *, token: str | None, allowed_hosts: Sequence[str] | None
    ) -> None:
        self.app = app
        self.token = token
        if allowed_hosts is None:
            self.hosts: Callable[[str], bool] = (lambda _host: True) if token else loopback_host
        else:
            wanted = {h.lower().strip("[]") for h in allowed_hosts}
            self.hosts = lambda host: "*" in wanted or host.lower() in wanted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse what must be refused; add the security headers to every response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        cookie = self._cookie_to_set(request)

        async def send_safely(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    if name not in headers:
                        headers[name] = value
                if cookie is not None:
                    headers.append("set-cookie", cookie)
            await send(message)

        refusal = self._refusal(request)
        if refusal is not None:
            cookie = None
            await refusal(scope, receive, send_safely)
            return
        if cookie is not None and request.method == "GET" and "/api/" not in request.url.path:
            # A page opened with the token: the cookie carries it from now on, so take
            # it out of the address bar and the browser's history.
            url = request.url.remove_query_params("token")
            target = url.path + (f"?{url.query}" if url.query else "")
            await RedirectResponse(target, status_code=303)(scope, receive, send_safely)
            return
        await self.app(scope, receive, send_safely)

    def _cookie_to_set(self, request: Request) -> str | None:
        given = request.query_params.get("token")
        if self.token is None or given is None or not _same(given, self.token):
            return None
        return f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"

    def _refusal(self, request: Request) -> Response | None:
        host = _host_name(request.headers.get("host", ""))
        if not self.hosts(host):
            # A page elsewhere that made its own name point here (DNS rebinding).
            return _json(
                ApiError(
                    error=f"host {host!r} is not allowed; open the dashboard at 127.0.0.1 or "
                    "localhost, or start it with a token",
                    type="HostNotAllowed",
                ),
                400,
            )
        if self.token is not None and not self._authorised(request):
            response = _json(
                ApiError(
                    error="a token is needed: open the URL metalab ui printed (it ends in "
                    "?token=...), or send 'Authorization: Bearer TOKEN'",
                    type="Unauthorized",
                ),
                401,
            )
            response.headers["www-authenticate"] = "Bearer"
            return response
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if origin is not None and urllib.parse.urlsplit(origin).netloc != request.headers.get(
                "host"
            ):
                return _json(
                    ApiError(error="a request from another site is refused", type="Forbidden"),
                    403,
                )
        return None

    def _authorised(self, request: Request) -> bool:
        assert self.token is not None
        given = request.query_params.get("token")
        if given is not None:
            return _same(given, self.token)
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return _same(credentials.strip(), self.token)
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and _same(cookie, self.token)


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


# --- the application --------------------------------------------------------------


def build_app(
    source: Store | StoreLike,
    *,
    write: bool,
    token: str | None,
    allowed_hosts: Sequence[str] | None,
) -> Starlette:
    """The dashboard over ``source`` (see :func:`metalab.ui.create_app`).

    Its ``state.store_name`` names the store (a locator with passwords hidden).
    """
    check_token(token)
    handle = StoreHandle(source)
    dashboard = Dashboard(handle, write=write)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(handle.close)

    app = Starlette(
        routes=dashboard.routes(),
        middleware=[Middleware(Guard, token=token, allowed_hosts=allowed_hosts)],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.store_name = handle.name
    return app


_TOKEN: Final = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")


def check_token(token: str | None) -> None:
    """Refuse a token that is too short to guess hard, or unfit for a cookie or a URL.

    Raises:
        ConfigError: The token is not 16 to 256 letters, digits or ``._~+/=-``.
    """
    if token is not None and _TOKEN.fullmatch(token) is None:
        raise ConfigError(
            "a token must be 16 to 256 letters, digits or '._~+/=-' (leave it out and "
            "metalab ui makes one)"
        )
