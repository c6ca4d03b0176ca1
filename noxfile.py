"""Sessions for tests, lint, type checking and benchmarks (``nox -l`` lists them)."""

from __future__ import annotations

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "bench_smoke", "lint", "typecheck"]

PROJECT = nox.project.load_toml("pyproject.toml")
TEST = nox.project.dependency_groups(PROJECT, "test")
TYPING = nox.project.dependency_groups(PROJECT, "typing")
LINT = nox.project.dependency_groups(PROJECT, "lint")
BENCH = nox.project.dependency_groups(PROJECT, "bench")
INTEROP = nox.project.dependency_groups(PROJECT, "interop")
MUTATION = nox.project.dependency_groups(PROJECT, "mutation")


@nox.session
def tests(session: nox.Session) -> None:
    """The suite: unit, conformance, property, fault, compat and integration (real Postgres).

    It installs the typing group too (the suite type-checks the typing examples). The
    benchmark smoke tests, which need MLflow, run in ``bench_smoke``; the tests that need
    MLflow or DuckDB in ``interop``.
    """
    session.install("-e", ".[all]", *TYPING)
    session.run(
        "pytest", "-m", "not bench and not interop and not slurm and not browser", *session.posargs
    )


@nox.session
def bench_smoke(session: nox.Session) -> None:
    """The benchmark harness end to end at small sizes, MLflow's stores included."""
    session.install("-e", ".[all]", *TEST, *BENCH)
    session.run("pytest", "-m", "bench", *session.posargs)


@nox.session
def interop(session: nox.Session) -> None:
    """The interop tests: MLflow's own client writes the stores to import, DuckDB reads exports."""
    session.install("-e", ".[all]", *INTEROP)
    session.run("pytest", "-m", "interop", *session.posargs)


@nox.session
def slurm(session: nox.Session) -> None:
    """Sweeps through dask-jobqueue on a real one-node SLURM (tests/slurm; needs root).

    The tests' fixture installs Debian's SLURM and MUNGE packages when they are missing
    and runs the daemons from a temporary directory; ``python -m benchmarks.bench_slurm``
    is run once by them. A run that collects no test fails (pytest's exit code 5).
    """
    session.install("-e", ".[all]", *TEST)
    session.run("pytest", "-m", "slurm", "tests/slurm", *session.posargs)


@nox.session
def tests_postgres(session: nox.Session) -> None:
    """Only the tests that need PostgreSQL."""
    session.install("-e", ".[all]", *TEST)
    session.run("pytest", "-m", "postgres", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install(*LINT)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src, tests, benchmarks, examples and this noxfile."""
    session.install("-e", ".[all]", *TYPING)
    session.run("mypy", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """The benchmark workload; arguments after ``--`` go to ``python -m benchmarks``."""
    session.install("-e", ".[all]", *BENCH)
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(default=False)
def mutation(session: nox.Session) -> None:
    """Mutation testing of the rule modules (mutmut, in a temporary copy); see docs/testing.md.

    Arguments after ``--`` go to ``tools/mutation.py``: group names (``rules codec``),
    ``--report PATH``, ``--max-children N``, ``--keep``.
    """
    session.install("-e", ".[all]", *MUTATION)
    session.run("python", "tools/mutation.py", *session.posargs)


@nox.session
def browser(session: nox.Session) -> None:
    """The dashboard (``metalab ui``) driven by Playwright in headless Chromium (tests/browser).

    Debian's ``chromium`` is used, never Playwright's browser downloads: the tests' fixture
    installs it with apt-get when it is missing and they run as root, and under
    ``CI=true`` a missing browser fails them. ``METALAB_SCREENSHOTS=DIR`` keeps a
    screenshot of each page there.
    """
    session.install("-e", ".[all]", *nox.project.dependency_groups(PROJECT, "browser"))
    session.run("pytest", "-m", "browser", "tests/browser", *session.posargs)
