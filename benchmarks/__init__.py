"""The metalab benchmark suite: ``python -m benchmarks`` (or ``nox -s bench``)."""
