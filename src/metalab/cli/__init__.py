"""The ``metalab`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from metalab._version import __version__

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``metalab`` command."""
    parser = argparse.ArgumentParser(
        prog="metalab",
        description="Reproducible experiments and their stores.",
    )
    parser.add_argument("--version", action="version", version=f"metalab {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0
