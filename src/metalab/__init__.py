"""metalab: reproducible experiments with a fast, typed, pluggable storage layer."""

from metalab._version import __version__

__all__ = ["__version__"]
