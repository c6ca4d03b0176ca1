"""The ``metalab`` command line (also ``python -m metalab``).

Exit codes: 0 success, 1 problems found or the operation failed, 2 usage errors (bad
arguments, a locator that cannot be parsed, a store lacking the capability a command
needs, an optional dependency that is not installed). Errors go to stderr as one
readable line; ``--json`` output goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Final, NoReturn

from metalab._version import __version__
from metalab.cli import _import, _postgres, _runs, _show, _store, _ui
from metalab.errors import (
    CapabilityError,
    ConfigError,
    MetalabError,
    MissingDependencyError,
    QueryError,
)
from metalab.store.locator import redact

__all__ = ["main"]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors hide passwords.

    argparse quotes a bad argument (``invalid int value: 'postgresql://u:pw@...'``)
    when a locator lands in the wrong place. Subcommand parsers are of the same class.
    """

    def error(self, message: str) -> NoReturn:
        # docstring inherited
        super().error(redact(_with_suggestion(message)))


_INVALID_CHOICE: Final = re.compile(
    r"invalid choice: '(?P<given>[^']*)' \(choose from (?P<choices>.*)\)"
)


def _with_suggestion(message: str) -> str:
    """Add the closest choice to argparse's message about a mistyped subcommand."""
    found = _INVALID_CHOICE.search(message)
    if found is None:
        return message
    choices = re.findall(r"'([^']*)'", found["choices"])
    close = difflib.get_close_matches(found["given"], choices, n=1, cutoff=0.5)
    return f"{message}; did you mean {close[0]!r}?" if close else message


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``metalab`` command."""
    parser = _Parser(
        prog="metalab",
        description="Reproducible experiments and their stores.",
        epilog="Run 'metalab COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"metalab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _store.add_parser(commands)
    _runs.add_parser(commands)
    _show.add_artifacts_parser(commands)
    _import.add_parser(commands)
    _postgres.add_parser(commands)
    _ui.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits with 2 on usage errors, 0 on --help
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        with contextlib.nullcontext() if args.verbose else _library_logs_quiet():
            return int(handler(args))
    except (ConfigError, CapabilityError) as exc:
        _error(exc)
        return EXIT_USAGE
    except MissingDependencyError as exc:
        sys.stderr.write(
            f"metalab: error: {exc.feature} needs {exc.module!r}, which is not installed: "
            f"pip install 'metalab[{exc.extra}]'\n"
        )
        return EXIT_USAGE
    except MetalabError as exc:
        _error(exc)
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        sys.stderr.write("metalab: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (| head): stop quietly, and keep Python from
        # complaining when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the CLI boundary reports, never dumps a traceback
        _error(exc, prefix=f"unexpected {type(exc).__name__}: ")
        return EXIT_PROBLEMS


@contextlib.contextmanager
def _library_logs_quiet() -> Iterator[None]:
    """Keep library log records off the terminal while a command runs.

    psycopg's pool logs each reconnect attempt and metalab each fallback; they would
    bury the one line the command prints about what happened (``-v`` shows them).
    """
    loggers = [logging.getLogger(name) for name in ("metalab", "psycopg")]
    saved = [logger.propagate for logger in loggers]
    quiet = logging.NullHandler()
    for logger in loggers:
        logger.addHandler(quiet)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in zip(loggers, saved, strict=True):
            logger.removeHandler(quiet)
            logger.propagate = propagate


def _error(exc: BaseException, prefix: str = "") -> None:
    # Messages of metalab's own errors are redacted already; others (a driver's, an
    # OSError's) may quote a locator.
    text = redact(str(exc))
    # Query errors draw a caret under the query on later lines; one line says it all.
    message = text.splitlines()[0] if isinstance(exc, QueryError) else " ".join(text.split())
    sys.stderr.write(f"metalab: error: {prefix}{message}\n")
