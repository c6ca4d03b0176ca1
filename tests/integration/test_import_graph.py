"""The import graph of ``src/metalab`` has no cycle and no cross-package private import.

The graph is read from the source with ``ast``, not from ``sys.modules``, so it sees
function-level imports too (a lazy import hides a cycle at import time, not at run
time). Only imports under ``if TYPE_CHECKING:`` are left out: they never run.

Nodes are modules; a package is its ``__init__``. An import of ``metalab.a.b`` is an
edge to ``metalab.a.b`` and to every package on the way (``metalab.a``), because
Python runs their ``__init__`` first, except the packages that already contain the
importer: those are mid-import when it runs, and Python does not run them again.
``from metalab.a import b`` is an edge to the module ``metalab.a.b`` when there is
one, otherwise to ``metalab.a`` (the name comes from its ``__init__``).

Privacy: a private module ``metalab.a._b`` belongs to package ``metalab.a`` and may be
imported only from inside it; the root package's private modules (``metalab._codec``)
serve the whole library. A private name (``from metalab.a._b import _c``) belongs to
the package of its module, and a private name of a module directly in the root
package (``metalab.capture._x``) to that module alone.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

import metalab

ROOT: Final = "metalab"
SRC: Final = Path(metalab.__file__).parent


@dataclass(frozen=True)
class Import:
    """One ``metalab`` module or name that a module imports, and where."""

    importer: str
    target: str
    name: str | None
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: Final = {
    _module_name(path): path
    for path in sorted(SRC.rglob("*.py"))
    if "__pycache__" not in path.parts
}


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(nodes: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``nodes`` except those only a type checker sees."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _runtime_imports(node.orelse)
        else:
            yield from _runtime_imports(ast.iter_child_nodes(node))


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if _is_package(module) else module.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(module: str) -> Iterator[Import]:
    tree = ast.parse(MODULES[module].read_bytes(), filename=str(MODULES[module]))
    for node in _runtime_imports([tree]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    yield Import(module, alias.name, None, node.lineno)
            continue
        source = _resolve(module, node)
        if source not in MODULES:
            continue
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if submodule in MODULES:
                yield Import(module, submodule, None, node.lineno)
            else:
                yield Import(module, source, alias.name, node.lineno)


ALL_IMPORTS: Final = [found for module in MODULES for found in _imports(module)]


def _prefixes(module: str) -> list[str]:
    """``module`` and the packages above it, outermost first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _edges(found: Import) -> set[str]:
    """The modules an import runs: its target and the packages not already running."""
    running = set(_prefixes(found.importer))
    return {m for m in _prefixes(found.target) if m not in running or m == found.target} - {
        found.importer
    }


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for found in ALL_IMPORTS:
        graph[found.importer] |= _edges(found)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one cycle as a closed path (first node repeated last), or ``None``."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def _owner(target: str, name: str | None) -> str | None:
    """The package (or root-level module) a private import belongs to; ``None``: public."""
    parts = target.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            owner = ".".join(parts[:i])
            if owner != ROOT:
                return owner
            break  # the root package's private modules serve the whole library
    if name is None or not name.startswith("_") or name.startswith("__"):
        return None
    if _is_package(target):
        return target
    package = target.rpartition(".")[0]
    return target if package == ROOT else package


class TestGraphReader:
    """The checks below are only as good as the reader, so pin what it sees."""

    def test_every_module_is_read(self) -> None:
        assert {"metalab", "metalab.store", "metalab.store.abc", "metalab.query"} <= set(MODULES)

    def test_type_checking_imports_are_left_out(self) -> None:
        text = "if TYPE_CHECKING:\n    import a\nelif TYPE_CHECKING:\n    import b\nelse:\n    import c\n"
        tree = ast.parse(text + "import d\n")
        found = _runtime_imports([tree])
        names = [a.name for n in found if isinstance(n, ast.Import) for a in n.names]
        assert names == ["c", "d"]

    def test_function_level_imports_are_read(self) -> None:
        tree = ast.parse("def f():\n    if x:\n        from a import b\n")
        found = _runtime_imports([tree])
        assert [n.module for n in found if isinstance(n, ast.ImportFrom)] == ["a"]

    def test_an_import_runs_the_packages_on_its_way(self) -> None:
        outside = Import("metalab.runner", "metalab.store.abc", None, 1)
        inside = Import("metalab.store._file", "metalab.store.abc", None, 1)
        package = Import("metalab.store._file", "metalab.store", "StoreConfig", 1)
        assert _edges(outside) == {"metalab.store", "metalab.store.abc"}
        assert _edges(inside) == {"metalab.store.abc"}
        assert _edges(package) == {"metalab.store"}

    def test_a_cycle_is_found_and_shown(self) -> None:
        assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
        assert _find_cycle({"a": {"b"}, "b": set()}) is None

    @pytest.mark.parametrize(
        ("target", "name", "owner"),
        [
            ("metalab._codec", None, None),
            ("metalab._codec", "escape_json", None),
            ("metalab._codec", "_private", "metalab._codec"),
            ("metalab._version", "__version__", None),
            ("metalab.store._file", None, "metalab.store"),
            ("metalab.store._file", "FileStore", "metalab.store"),
            ("metalab.store.abc", "_check", "metalab.store"),
            ("metalab.store", "_LAZY", "metalab.store"),
            ("metalab.capture", "_metric_value", "metalab.capture"),
            ("metalab.capture", "Capture", None),
        ],
    )
    def test_private_imports_belong_to_their_package(
        self, target: str, name: str | None, owner: str | None
    ) -> None:
        assert _owner(target, name) == owner


def test_the_module_graph_has_no_cycle() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_another_package_private_module_or_name() -> None:
    offences = []
    for found in ALL_IMPORTS:
        owner = _owner(found.target, found.name)
        inside = owner is None or found.importer == owner or found.importer.startswith(f"{owner}.")
        if not inside:
            what = found.target + (f".{found.name}" if found.name else "")
            offences.append(f"{found.importer} (line {found.line}) imports {what}")
    assert not offences, "private imports across packages:\n" + "\n".join(offences)
