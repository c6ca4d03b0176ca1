"""Mutation testing of metalab's rule modules with mutmut, in a throwaway copy of the project.

``nox -s mutation`` runs this; by hand: ``python tools/mutation.py [GROUP ...]``. Each
group mutates a few rule modules (or, for the big store classes, only the functions
that hold a rule) and runs only the tests written for them. mutmut then runs, for each
mutant, just the tests of that group that reach the mutated function. Nothing here
touches the working tree: the project is copied (``src/``, ``tests/``,
``pyproject.toml``) into a temporary directory per group, with a ``[tool.mutmut]``
table appended to the copy's ``pyproject.toml``.

Survivors listed in ``tools/mutation_equivalent.toml`` with a reason are counted as
equivalent, not as survivors, when their diff still changes the lines listed with
them: mutant names follow the source, so an edit to a module can give a listed name to
another mutant. The report lists every survivor with its diff.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = ROOT / "tools" / "mutation_equivalent.toml"
PG_URL_ENV = "METALAB_TEST_POSTGRES_URL"


@dataclass(frozen=True, kw_only=True)
class Group:
    """Rule modules mutated together, and the tests that are meant to kill their mutants."""

    modules: tuple[str, ...]
    tests: tuple[str, ...]
    # fnmatch patterns over mutant names; empty means every mutant of ``modules``.
    only: tuple[str, ...] = ()
    postgres: bool = False
    # Run when no group is named (``sql`` is too slow for that).
    default: bool = True


_STALE_METHODS = (
    "metalab.store._directory.xǁStoreDirectoryǁindex_stale_mark__mutmut_*",
    "metalab.store._directory.xǁStoreDirectoryǁmark_index_stale__mutmut_*",
    "metalab.store._directory.xǁStoreDirectoryǁclear_index_stale__mutmut_*",
    "metalab.store._indexed.xǁIndexedStoreǁ_learn_index_state__mutmut_*",
    "metalab.store._indexed.xǁIndexedStoreǁ_mark_stale__mutmut_*",
    "metalab.store._indexed.xǁIndexedStoreǁ_index_landed__mutmut_*",
    "metalab.store._indexed.xǁIndexedStoreǁrebuild_index__mutmut_*",
    "metalab.store._indexed.xǁIndexedStoreǁsync_index__mutmut_*",
    "metalab.store._indexed.xǁIndexedStoreǁ_sync__mutmut_*",
    "metalab.store._indexed.xǁIndexedStoreǁ_before_reading__mutmut_*",
    "metalab.store._indexed.xǁIndexedStoreǁ_after_reading__mutmut_*",
    "metalab.store._intents.*",
)

GROUPS: dict[str, Group] = {
    "rules": Group(
        modules=("src/metalab/store/_rules.py",),
        tests=(
            "tests/unit/test_layout.py",
            "tests/property/test_store_rules.py",
            "tests/property/test_layout_properties.py",
            "tests/unit/test_rules_edges.py",
        ),
    ),
    "codec": Group(
        modules=("src/metalab/_codec.py",),
        tests=(
            "tests/unit/test_codec.py",
            "tests/unit/test_records.py",
            "tests/unit/test_file_documents.py",
            "tests/property/test_codec_roundtrip.py",
            "tests/unit/test_codec_edges.py",
            "tests/compat/test_metalab_0_1.py",
        ),
    ),
    "fileio": Group(
        modules=("src/metalab/store/_fileio.py",),
        tests=(
            "tests/unit/test_file_atomic.py",
            "tests/unit/test_file_bad_input.py",
            "tests/unit/test_file_documents.py",
            "tests/unit/test_fileio_edges.py",
        ),
    ),
    "query": Group(
        modules=("src/metalab/query/_python.py",),
        tests=(
            "tests/unit/test_query_python.py",
            "tests/property/test_query_properties.py",
            "tests/unit/test_query_edges.py",
        ),
    ),
    # Every mutant of the SQL compiler runs its tests against the server: hours on two
    # cores for the whole module, so run it on its own (``nox -s mutation -- sql``).
    "sql": Group(
        modules=("src/metalab/query/sql.py",),
        tests=(
            "tests/integration/test_query_engines.py",
            "tests/integration/test_query_engines_corners.py",
            "tests/integration/test_postgres_collation.py",
            "tests/integration/test_postgres_strings.py",
            "tests/property/test_query_engines_agree.py",
            "tests/property/test_query_engines_strings.py",
        ),
        postgres=True,
        default=False,
    ),
    "stale": Group(
        modules=(
            "src/metalab/store/_intents.py",
            "src/metalab/store/_directory.py",
            "src/metalab/store/_indexed.py",
        ),
        tests=(
            "tests/unit/test_intents.py",
            "tests/unit/test_file_documents.py",
            "tests/integration/test_postgres_rebuild.py",
            "tests/unit/test_stale_mark_edges.py",
            "tests/integration/test_index_stale_edges.py",
        ),
        only=_STALE_METHODS,
        postgres=True,
    ),
}

# mutmut's exit-code verdicts, folded into what the table counts.
_KILLED = {"killed", "timeout", "caught by type check", "segfault"}
_SURVIVED = {"survived", "no tests", "suspicious"}


@dataclass(frozen=True, kw_only=True)
class Verdicts:
    """What one group's run left: mutant name -> mutmut status, and the survivors' diffs."""

    status: dict[str, str]
    diffs: dict[str, str]
    seconds: float
    # With a sample: how many mutants the group has in all (``status`` holds the sample).
    population: int | None = None


@dataclass(frozen=True)
class Sample:
    """Run a seeded random sample of ``size`` mutants of a group, not all of them."""

    size: int
    seed: int


def _copy_project(dest: Path, group: Group) -> None:
    dest.mkdir(parents=True)
    for name in ("src", "tests"):
        shutil.copytree(
            ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis")
        )
    # Not in ``dest`` itself: mutmut drops its working directory from sys.path.
    (dest / "plugin").mkdir()
    shutil.copy2(ROOT / "tools" / "mutation_plugin.py", dest / "plugin" / "mutation_plugin.py")
    tests = [t for t in group.tests if (ROOT / t).exists()]
    table = {
        "source_paths": ["src/metalab"],
        "only_mutate": list(group.modules),
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "mutation_plugin"],
        # the copy is no git checkout; nothing to compare against
        "use_git_change_detection": False,
    }
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    lines = ["", "[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    (dest / "pyproject.toml").write_text(text + "\n".join(lines) + "\n", encoding="utf-8")
    # mutmut puts mutants/src first on sys.path of its own process; the directory must
    # exist before Python starts, or the PYTHONPATH entry below is cached as missing.
    (dest / "mutants" / "src").mkdir(parents=True)


# One process for all diffs: ``mutmut show`` takes seconds per mutant.
_DIFFS: Final = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({name: get_diff_for_mutant(name) for name in sys.argv[1:]}))
"""


def _python(dest: Path, *args: str, log: Path | None = None) -> str:
    env = dict(os.environ)
    # Subprocesses started by tests import the mutated copy too (and the plugin module).
    env["PYTHONPATH"] = os.pathsep.join([str(dest / "mutants" / "src"), str(dest / "plugin")])
    env.setdefault("CI", "true")
    cmd = [sys.executable, *args]
    if log is None:
        return subprocess.run(
            cmd, cwd=dest, env=env, check=True, capture_output=True, text=True
        ).stdout
    with log.open("w", encoding="utf-8") as out:
        subprocess.run(cmd, cwd=dest, env=env, check=True, stdout=out, stderr=subprocess.STDOUT)
    return ""


def _mutmut(dest: Path, *args: str, log: Path | None = None) -> str:
    return _python(dest, "-m", "mutmut", *args, log=log)


def _generated(dest: Path, group: Group) -> list[str]:
    """Generate the group's mutants without running any; return their names."""
    # mutmut has no "generate only": a filter that matches nothing generates every
    # mutant and then stops on its own assertion, before it runs a test.
    nothing = f"{_module_name(group.modules[0])}.x_no_such_function__mutmut_*"
    with contextlib.suppress(subprocess.CalledProcessError):
        _mutmut(dest, "run", nothing, log=dest / "generate.log")
    names = []
    for line in _mutmut(dest, "results", "--all", "true").splitlines():
        mutant, sep, _ = line.strip().rpartition(": ")
        if sep and (not group.only or any(fnmatch.fnmatchcase(mutant, p) for p in group.only)):
            names.append(mutant)
    return names


def _module_name(path: str) -> str:
    return path.removeprefix("src/").removesuffix(".py").replace("/", ".")


def run_group(
    name: str, group: Group, workdir: Path, max_children: int, sample: Sample | None = None
) -> Verdicts:
    """Copy the project, run mutmut for ``group`` and collect each mutant's verdict.

    With ``sample``, only a seeded random sample of the group's mutants is run.
    """
    dest = workdir / name
    _copy_project(dest, group)
    started = time.monotonic()
    patterns = list(group.only)
    population = None
    if sample is not None:
        every = _generated(dest, group)
        population = len(every)
        patterns = sorted(random.Random(sample.seed).sample(every, min(sample.size, len(every))))
    _mutmut(dest, "run", "--max-children", str(max_children), *patterns, log=dest / "run.log")
    seconds = time.monotonic() - started

    status: dict[str, str] = {}
    for line in _mutmut(dest, "results", "--all", "true").splitlines():
        mutant, sep, verdict = line.strip().rpartition(": ")
        if not sep or (patterns and not any(fnmatch.fnmatchcase(mutant, p) for p in patterns)):
            continue
        status[mutant] = verdict
    survivors = [m for m, s in status.items() if s in _SURVIVED]
    diffs: dict[str, str] = json.loads(_python(dest, "-c", _DIFFS, *survivors)) if survivors else {}
    return Verdicts(status=status, diffs=diffs, seconds=seconds, population=population)


@dataclass(frozen=True)
class Equivalent:
    """A mutant judged equivalent: why, and the changed lines of the diff judged."""

    why: str
    lines: tuple[str, ...]

    def matches(self, diff: str) -> bool:
        """Whether ``diff`` (mutmut's) changes the lines this judgement was about."""
        changed = {
            line[0] + line[1:].strip()
            for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        }
        return set(self.lines) <= changed


def _equivalent() -> dict[str, Equivalent]:
    with EQUIVALENT_FILE.open("rb") as f:
        data = tomllib.load(f)
    return {
        str(name): Equivalent(str(entry["why"]), tuple(map(str, entry["diff"])))
        for name, entry in data.get("equivalent", {}).items()
    }


def _module_of(mutant: str) -> str:
    return mutant.split(".x", 1)[0]


def report(results: dict[str, Verdicts], command: str) -> str:
    """The markdown table and survivor list for ``docs/testing.md``."""
    equivalent = _equivalent()
    today = datetime.now(UTC).date().isoformat()
    out = [
        f"Run on {today} with `{command}`.",
        "",
        "| group | module | mutants | killed | survived | equivalent | survival % | minutes |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    survivors: list[str] = []
    sampled = [
        f"{group}: a random sample of {len(v.status)} of its {v.population} mutants"
        for group, v in results.items()
        if v.population is not None
    ]
    if sampled:
        out[1:1] = ["", "Sampled groups (the counts are the sample's): " + "; ".join(sampled) + "."]
    for group, verdicts in results.items():
        by_module: dict[str, list[str]] = {}
        for mutant in verdicts.status:
            by_module.setdefault(_module_of(mutant), []).append(mutant)
        for module, mutants in sorted(by_module.items()):
            killed = sum(verdicts.status[m] in _KILLED for m in mutants)
            left = [m for m in mutants if verdicts.status[m] in _SURVIVED]
            judged = {
                m: equivalent[m]
                for m in left
                if m in equivalent and equivalent[m].matches(verdicts.diffs[m])
            }
            equiv = [m for m in left if m in judged]
            alive = [m for m in left if m not in judged]
            share = 100 * len(alive) / len(mutants) if mutants else 0.0
            out.append(
                f"| {group} | `{module}` | {len(mutants)} | {killed} | {len(alive)} "
                f"| {len(equiv)} | {share:.1f} | {verdicts.seconds / 60:.1f} |"
            )
            for m in sorted(left):
                if m in judged:
                    why = f"equivalent: {judged[m].why}"
                elif m in equivalent:
                    why = f"SURVIVED ({verdicts.status[m]}); listed as equivalent, but its diff changed"
                else:
                    why = f"SURVIVED ({verdicts.status[m]})"
                survivors += [f"#### `{m}`", "", why, "", "```diff", verdicts.diffs[m].strip()]
                survivors += ["```", ""]
    return "\n".join([*out, "", "### Survivors", "", *survivors])


@contextlib.contextmanager
def _postgres_url() -> Iterator[None]:
    """Give the runs one server (every mutant's test process would otherwise start its own)."""
    if os.environ.get(PG_URL_ENV):
        yield
        return
    from metalab.testing.postgres import _start_pgserver  # noqa: PLC0415 -- postgres groups only

    server = _start_pgserver()
    os.environ[PG_URL_ENV] = server.get_uri()
    try:
        yield
    finally:
        del os.environ[PG_URL_ENV]
        server.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Run the named groups (all by default) and print or write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=", ".join(GROUPS))
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--report", type=Path, help="write the markdown report here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    parser.add_argument(
        "--sample", type=int, metavar="N", help="run a random sample of N mutants per group"
    )
    parser.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown groups {unknown}; known: {', '.join(GROUPS)}")
    names = args.groups or [name for name, group in GROUPS.items() if group.default]
    if args.sample is not None and args.sample < 1:
        parser.error("--sample must be at least 1")
    sample = None if args.sample is None else Sample(args.sample, args.seed)
    extra = [] if sample is None else [f"--sample {sample.size}", f"--seed {sample.seed}"]
    command = "nox -s mutation" + (
        " -- " + " ".join([*args.groups, *extra]) if args.groups or extra else ""
    )
    workdir = Path(tempfile.mkdtemp(prefix="metalab-mutation-"))
    results: dict[str, Verdicts] = {}
    try:
        need_pg = any(GROUPS[n].postgres for n in names)
        with _postgres_url() if need_pg else contextlib.nullcontext():
            for name in names:
                print(f"mutation: group {name} in {workdir / name}", flush=True)
                results[name] = run_group(name, GROUPS[name], workdir, args.max_children, sample)
                print(f"mutation: group {name} took {results[name].seconds:.0f}s", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    text = report(results, command)
    if args.report:
        args.report.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
