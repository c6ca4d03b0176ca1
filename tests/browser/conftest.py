"""The dashboard in a real browser (marker ``browser``, ``nox -s browser``).

The tests drive ``metalab ui`` with Playwright in a headless Chromium, Debian's
``chromium`` package (Playwright's own browser downloads are not used). The fixtures:

- ``chromium``: the browser's path; installed with ``apt-get`` when missing and the
  tests run as root. Without it (or without Playwright) the tests are skipped, except
  under ``CI=true``, where that is a broken set-up and fails them.
- ``collection``: a FileStore collection written by ``metalab.run``: a params grid
  whose runs record metrics, a series by step, artifacts and log lines, and whose
  largest learning rate fails with an exception.
- ``demo``: the sweep of the docs' screenshots (``screenshots.py``): learning rates x
  widths x 3 seeds, a loss curve per run, one failed run; for the plots.
- ``server`` and ``token_server``: ``python -m metalab ui`` serving it in a
  subprocess, on a free loopback port, stopped at the end of the session;
  ``demo_server`` serves ``demo``.
- ``dashboard`` (and ``demo_dashboard``): a fresh browser page with a helper that collects the console's
  errors, uncaught exceptions and Content-Security-Policy violations (the test fails
  at teardown when one was not expected) and saves screenshots.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, NoReturn

import pytest

import metalab
from metalab.testing import load_script, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Playwright

HERE: Final = Path(__file__).parent

EXPERIMENT: Final = "ui:1"
OTHER: Final = "other:2"
LEARNING_RATES: Final = (0.01, 0.1, 1.0)
WIDTHS: Final = (8, 32)
DIVERGES: Final = 1.0
"""The learning rate whose runs raise: ``len(WIDTHS)`` failed runs."""
STEPS: Final = 20
WEIGHTS: Final = bytes(range(256)) * 4
LOG_LINE: Final = "epoch 3 of 3 finished"


def _png(width: int, height: int) -> bytes:
    """A real PNG image (solid blue, 8-bit RGB), for the browser to decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = b"".join(b"\x00" + b"\x20\x60\xd0" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )


PNG: Final = _png(24, 16)
TOKEN: Final = "browser-test-token-0123456789"
CHROMIUM_NAMES: Final = ("chromium", "chromium-browser")
START_TIMEOUT: Final = 60.0


def _unavailable(reason: str) -> NoReturn:
    unavailable(f"no browser for the browser tests: {reason}")


# --- the browser ------------------------------------------------------------------


def _find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found is not None:
            return found
    return None


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *args],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def _install_chromium() -> str:
    """Install Debian's chromium (as root); the output of apt-get when it fails."""
    done = _apt_get("install", "-y", "chromium")
    if done.returncode != 0:
        # The package lists may be missing or stale (a fresh container): refresh once.
        _apt_get("update")
        done = _apt_get("install", "-y", "chromium")
    return "" if done.returncode == 0 else (done.stderr or done.stdout)[-2000:]


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a Chromium to drive, installed when missing and the tests run as root."""
    found = _find_chromium()
    if found is not None:
        return found
    if os.geteuid() != 0:
        _unavailable("chromium is not installed, and only root installs it (apt-get)")
    if shutil.which("apt-get") is None:
        _unavailable("chromium is not installed, and there is no apt-get to install it")
    failure = _install_chromium()
    found = _find_chromium()
    if found is None:
        _unavailable(f"apt-get install chromium failed: {failure}")
    return found


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if importlib.util.find_spec("playwright") is None:
        _unavailable("playwright is not installed (it is in the 'browser' dependency group)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 -- browser group only

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright, chromium: str) -> Iterator[Browser]:
    launched = playwright.chromium.launch(
        executable_path=chromium, args=["--no-sandbox"], headless=True
    )
    yield launched
    launched.close()


# --- the store --------------------------------------------------------------------


@metalab.operation
def train(params: dict[str, Any], capture: metalab.Capture) -> None:
    capture.log(f"training with lr {params['lr']}")
    for step in range(STEPS):
        capture.metric("loss", 1.0 / (step + 1) / params["lr"], step=step)
    if params["lr"] == DIVERGES:
        raise FloatingPointError("the loss diverged")
    capture.metric("acc", 1.0 - params["lr"] * params["width"] / 100)
    capture.metric("val acc", 0.5 + params["width"] / 100)
    capture.artifact("summary", {"lr": params["lr"], "width": params["width"]})
    capture.artifact("weights", WEIGHTS)
    capture.artifact("plot", PNG, format="png")
    capture.log(LOG_LINE)


@metalab.operation
def probe(capture: metalab.Capture) -> None:
    capture.metric("x", 1)


@dataclass(frozen=True)
class Sweep:
    """What :func:`collection` wrote, for the tests to look for."""

    root: Path
    experiment_id: str = EXPERIMENT
    other_id: str = OTHER
    runs: int = len(LEARNING_RATES) * len(WIDTHS)
    failed: int = len(WIDTHS)
    steps: int = STEPS
    log_line: str = LOG_LINE
    weights: bytes = WEIGHTS
    image_size: tuple[int, int] = (24, 16)
    error_type: str = "FloatingPointError"
    error_message: str = "the loss diverged"


@pytest.fixture(scope="session")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """A FileStore collection: ``ui:1`` (6 runs, 2 failed) and ``other:2`` (1 run)."""
    root = tmp_path_factory.mktemp("browser") / "experiments"
    sweep = metalab.Experiment(
        name="ui",
        version="1",
        context={},
        operation=train,
        params=metalab.grid(lr=list(LEARNING_RATES), width=list(WIDTHS), optimizer=["sgd"]),
        seeds=metalab.seeds(base=3, replicates=1),
        tags=("dashboard",),
        description="the browser tests' sweep",
    )
    other = metalab.Experiment(
        name="other", version="2", context={}, operation=probe, params=metalab.manual([{}])
    )
    for experiment in (sweep, other):
        with metalab.run(experiment, store=str(root), progress=False) as handle:
            handle.result()
    return Sweep(root)


def _load_screenshots() -> ModuleType:
    # Test directories are not packages (importlib import mode): loaded by path.
    return load_script(HERE / "screenshots.py", "metalab_ui_screenshots")


if TYPE_CHECKING:
    from tests.browser import screenshots as _screenshots
else:
    _screenshots = _load_screenshots()

Demo = _screenshots.Demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The screenshots' sweep (``screenshots.write_demo``): 30 runs, 1 failed, 3 seeds."""
    return _screenshots.write_demo(tmp_path_factory.mktemp("demo") / "experiments")


# --- the server -------------------------------------------------------------------


@dataclass
class Server:
    """``metalab ui`` running in a subprocess."""

    process: subprocess.Popen[str]
    url: str
    """The root URL, without the token."""
    token: str | None


def _answers(url: str, token: str | None) -> bool:
    request = urllib.request.Request(url + "api/info")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _start(root: Path, token: str | None) -> Server:
    args = [sys.executable, "-m", "metalab", "ui", str(root), "--host", "127.0.0.1"]
    args += ["--port", "0"]
    if token is not None:
        args += ["--token", token]
    env = {k: v for k, v in os.environ.items() if k != "METALAB_UI_TOKEN"}
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # printed once the socket listens
    found = re.search(r" at (http://127\.0\.0\.1:\d+/)", line)
    if found is None:
        pytest.fail(f"metalab ui printed {line!r}; stderr: {_stop(process)}")
    url = found.group(1)
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(url, token):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"metalab ui at {url} did not answer; stderr: {_stop(process)}")
        time.sleep(0.1)
    return Server(process, url, token)


def _stop(process: subprocess.Popen[str]) -> str:
    """Stop the server; what it wrote on stderr."""
    process.terminate()
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate(timeout=30)
    return err


@pytest.fixture(scope="session")
def server(collection: Sweep) -> Iterator[Server]:
    """The dashboard over ``collection``, read-only, without a token."""
    started = _start(collection.root, token=None)
    yield started
    _stop(started.process)


@pytest.fixture(scope="session")
def demo_server(demo: Demo) -> Iterator[Server]:
    """The dashboard over :func:`demo`, read-only, without a token."""
    started = _start(demo.root, token=None)
    yield started
    _stop(started.process)


@pytest.fixture(scope="session")
def token_server(collection: Sweep) -> Iterator[Server]:
    """The dashboard over ``collection``; every request needs :data:`TOKEN`."""
    started = _start(collection.root, token=TOKEN)
    yield started
    _stop(started.process)


# --- the page ---------------------------------------------------------------------

# Runs before any script of every document the page loads; the binding reports back
# to Python, so violations are collected across navigations.
_WATCH_CSP: Final = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__metalabCspViolation(
    `${event.effectiveDirective} blocked ${event.blockedURI || "(inline)"} in ${event.sourceFile}`
  );
});
"""


@dataclass
class Dashboard:
    """A browser page on the dashboard, and what went wrong in it."""

    page: Page
    server: Server
    shots: list[Path]
    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def open(self, hash_path: str = "#/") -> None:
        """Load the dashboard afresh at ``hash_path``; wait until its requests are answered."""
        if self.page.url.startswith(self.server.url):
            # Going to another hash of the same page would only route within it.
            self.page.goto("about:blank")
        self.page.goto(self.server.url + hash_path)
        self.page.wait_for_load_state("networkidle")

    def allow(self, pattern: str) -> None:
        """Expect console errors matching ``pattern`` (e.g. a 400 the test provokes)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(a.search(p) for a in self.allowed)]

    def screenshot(self, name: str) -> None:
        """Save the whole page as ``name.png`` in every screenshot directory."""
        for directory in self.shots:
            directory.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=directory / f"{name}.png", full_page=True)


def screenshot_dirs(tmp_path: Path, test_name: str) -> list[Path]:
    found = [tmp_path / "screenshots"]
    extra = os.environ.get("METALAB_SCREENSHOTS")
    if extra:
        found.append(Path(extra) / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name))
    return found


@contextmanager
def open_page(
    browser: Browser, server: Server, shots: list[Path], **context_options: Any
) -> Iterator[Dashboard]:
    """A fresh context and page on ``server``, watched for console errors and CSP."""
    context = browser.new_context(accept_downloads=True, **context_options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    dashboard = Dashboard(page, server, shots)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            dashboard.problems.append(f"console: {message.text} ({message.location['url']})")

    def on_page_error(error: Error) -> None:
        dashboard.problems.append(f"uncaught: {error.message}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    page.expose_function(
        "__metalabCspViolation", lambda text: dashboard.problems.append(f"CSP: {text}")
    )
    page.add_init_script(_WATCH_CSP)
    try:
        yield dashboard
    finally:
        context.close()


def _watched(
    browser: Browser, server: Server, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Dashboard]:
    shots = screenshot_dirs(tmp_path, request.node.name)
    with open_page(browser, server, shots) as opened:
        yield opened
        problems = opened.unexpected()
        assert not problems, "the page reported errors:\n" + "\n".join(problems)


@pytest.fixture
def dashboard(
    browser: Browser, server: Server, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Dashboard]:
    """A page on :func:`server`; at teardown, no unexpected console error or CSP violation."""
    yield from _watched(browser, server, tmp_path, request)


@pytest.fixture
def token_dashboard(
    browser: Browser, token_server: Server, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Dashboard]:
    """A page on :func:`token_server`, watched as :func:`dashboard` is."""
    yield from _watched(browser, token_server, tmp_path, request)


@pytest.fixture
def demo_dashboard(
    browser: Browser, demo_server: Server, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Dashboard]:
    """A page on :func:`demo_server`, watched as :func:`dashboard` is."""
    yield from _watched(browser, demo_server, tmp_path, request)
