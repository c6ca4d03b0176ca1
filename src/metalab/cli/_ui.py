"""``metalab ui``: serve the web dashboard over a store."""

from __future__ import annotations

import argparse
import os
from typing import Any

from metalab.ui import DEFAULT_HOST, DEFAULT_PORT, serve

__all__ = ["add_parser"]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value}")
    return value


def add_parser(commands: Any) -> None:
    """Add ``ui``."""
    ui = commands.add_parser(
        "ui",
        help="browse the experiments and runs of a store in a web browser",
        description="Serve a web dashboard over a store: its experiments, the runs of each\n"
        "(paged, sorted and filtered with the query language of 'runs ls --where', columns\n"
        "picked from the field catalog, exported as CSV), and each run with its error,\n"
        "artifacts, logs and metric series.\n\n"
        f"It listens on {DEFAULT_HOST} (this machine only) and is read-only unless --write.\n"
        "Another --host needs a token, which is generated when --token is not given; the\n"
        "URL printed carries it. Needs the ui extra: pip install 'metalab[ui]'.",
        epilog="Example: metalab ui ./experiments --open\n\n"
        "Stop it with Ctrl-C. docs/ui.md describes the pages, the security model and the "
        "JSON API.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ui.add_argument("locator", help="a path, file://, postgresql:// or memory:// locator")
    ui.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"the address to listen on (default {DEFAULT_HOST}; any other needs a token)",
    )
    ui.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"the port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    ui.add_argument("--open", action="store_true", help="open the dashboard in a web browser")
    ui.add_argument("--write", action="store_true", help="allow editing the tags and notes of runs")
    ui.add_argument(
        "--token",
        default=os.environ.get("METALAB_UI_TOKEN"),
        help="the token every request must carry (default: $METALAB_UI_TOKEN; "
        "generated when --host is not a loopback address)",
    )
    ui.set_defaults(handler=_ui)


def _ui(args: argparse.Namespace) -> int:
    serve(
        args.locator,
        host=args.host,
        port=args.port,
        write=args.write,
        token=args.token,
        open_browser=args.open,
    )
    return 0
