"""``metalab postgres``: start, stop and inspect a PostgreSQL server of your own."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from metalab.cli._output import emit_json, non_negative_int
from metalab.services import postgres

__all__ = ["add_parser"]

_DATA_HELP = (
    f"the server directory (default: ${postgres.DATA_ENV}, else "
    "~/.local/share/metalab/postgres; /var/lib/metalab/postgres for root)"
)


def add_parser(commands: Any) -> None:
    """Add ``postgres`` and its subcommands."""
    top = commands.add_parser(
        "postgres",
        help="a PostgreSQL server of your own, for the PostgresStore",
        description="Start, stop and inspect a PostgreSQL server for metalab's "
        "PostgresStore. 'start' makes the server directory on first use and prints the "
        "locator to use (append '&file_root=DIR' for a store).",
        epilog="Example: metalab postgres start && metalab store rebuild-index "
        '"$(metalab postgres url)&file_root=$PWD/experiments"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="postgres_command", metavar="SUBCOMMAND", required=True)

    start = sub.add_parser(
        "start",
        help="start the server (made on first use)",
        epilog="Example: metalab postgres start --port 5433 (as root: --run-as metalab)",
    )
    start.add_argument("--data", metavar="DIR", help=_DATA_HELP)
    start.add_argument("--port", type=int, help=f"TCP port (default {postgres.DEFAULT_PORT})")
    start.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    start.add_argument("--bin-dir", metavar="DIR", help="directory of PostgreSQL's binaries")
    start.add_argument(
        "--run-as",
        metavar="USER",
        help="as root: run the server as this system user (made if it does not exist)",
    )
    start.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (60)")
    start.add_argument("--json", action="store_true", help="print the status as JSON")
    start.set_defaults(handler=_start)

    stop = sub.add_parser(
        "stop", help="stop the server", epilog="Example: metalab postgres stop --fast"
    )
    stop.add_argument("--data", metavar="DIR", help=_DATA_HELP)
    mode = stop.add_mutually_exclusive_group()
    mode.add_argument("--fast", action="store_true", help="disconnect clients (the default)")
    mode.add_argument("--smart", action="store_true", help="wait for clients to disconnect")
    mode.add_argument(
        "--immediate", action="store_true", help="no clean shutdown (recovery on next start)"
    )
    stop.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (60)")
    stop.set_defaults(handler=_stop)

    status = sub.add_parser(
        "status",
        help="running or not, pid, version, locator, size",
        epilog="Example: metalab postgres status --json\n\nExit status: 0 when the server "
        "runs, 3 when it does not.",
    )
    status.add_argument("--data", metavar="DIR", help=_DATA_HELP)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)

    logs = sub.add_parser(
        "logs", help="the end of the server's log", epilog="Example: metalab postgres logs -n 100"
    )
    logs.add_argument("--data", metavar="DIR", help=_DATA_HELP)
    logs.add_argument("-n", "--lines", type=non_negative_int, default=50, help="lines (50)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    logs.set_defaults(handler=_logs)

    url = sub.add_parser(
        "url",
        help="only the locator, for scripts",
        epilog="Example: metalab postgres url   (postgresql://metalab@...?passfile=...)\n\n"
        "Use it for a store, joining parameters with '&' (it already holds a '?'):\n"
        '  metalab runs ls "$(metalab postgres url)&file_root=$PWD/experiments"\n'
        '  metalab.run(exp, store=f"{url}&file_root=/abs/path/experiments")  # Python',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    url.add_argument("--data", metavar="DIR", help=_DATA_HELP)
    url.set_defaults(handler=_url)


def _print_status(found: postgres.ServerStatus) -> None:
    state = "running" if found.running else "stopped"
    if not found.initialised:
        state = "not initialised"
    rows = [
        ("state", state),
        ("pid", found.pid),
        ("version", found.version),
        ("locator", found.locator),
        ("data", found.data_dir),
        ("size", f"{found.size_bytes / 1e6:.1f} MB"),
        ("log", found.log_file),
    ]
    for key, value in rows:
        if value is not None:
            sys.stdout.write(f"{key:<8} {value}\n")


def _start(args: argparse.Namespace) -> int:
    found = postgres.start(
        args.data,
        port=args.port,
        host=args.host,
        bin_dir=args.bin_dir,
        run_as=args.run_as,
        timeout=args.timeout,
    )
    if args.json:
        emit_json(found.to_dict())
        return 0
    for note in found.notes:
        sys.stderr.write(f"metalab: {note}\n")
    _print_status(found)
    return 0


def _stop(args: argparse.Namespace) -> int:
    mode: postgres.StopMode = "immediate" if args.immediate else "smart" if args.smart else "fast"
    if postgres.stop(args.data, mode=mode, timeout=args.timeout):
        sys.stderr.write("metalab: the server stopped\n")
    else:
        sys.stderr.write("metalab: no server was running\n")
    return 0


def _status(args: argparse.Namespace) -> int:
    found = postgres.status(args.data)
    if args.json:
        emit_json(found.to_dict())
    else:
        _print_status(found)
    return 0 if found.running else 3


def _logs(args: argparse.Namespace) -> int:
    for line in postgres.logs(args.data, args.lines):
        sys.stdout.write(line + "\n")
    if not args.follow:
        return 0
    sys.stdout.flush()
    path = postgres.status(args.data).log_file
    with path.open("rb") as handle:
        handle.seek(0, 2)
        while True:
            chunk = handle.readline()
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", "replace"))
                sys.stdout.flush()
            else:
                time.sleep(0.2)


def _url(args: argparse.Namespace) -> int:
    sys.stdout.write(postgres.locator(args.data) + "\n")
    return 0
