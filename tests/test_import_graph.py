"""The `lora_exp` package has no import cycles, counting imports inside functions too.

Data flows one way (DESIGN.md: "each layer returns its result to the one above; nothing reaches back
up"). A cycle is the sign that a layer reaches back up; moving the import into a function only hides
it from Python, not from the reader, so this test reads every `import` and `from ... import` in the
source with `ast`, wherever it sits (module level, function, `if TYPE_CHECKING:`), and builds the
module graph from them.

How an import becomes an edge:
- `import lora_exp.a.b` -> `lora_exp.a.b`.
- `from lora_exp.a import name` -> `lora_exp.a.name` when that is a module of the package (as in
  `from lora_exp import checks`), else `lora_exp.a` (the name is a function or class defined there,
  or re-exported by a package `__init__`). Relative imports are resolved the same way.
- Dynamic imports (`importlib.import_module` with a computed name) are not seen.

One exclusion: the edges from a package's `__init__` to that package's own submodules are left out
of cycle detection. `lora_exp/methods/__init__.py` and `lora_exp/tasks/__init__.py` import their
submodules so that the `@register` decorators run; a submodule that then imports
`from lora_exp.methods import build_method` would make a two-node "cycle" that is only Python's
package mechanism, not a layer reaching back. Every other edge of those `__init__` files counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "lora_exp"


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package, by dotted name (a package is named by its `__init__`)."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str | None:
    """The absolute module a `from` import names (`from . import x` resolved against `module`)."""
    if node.level == 0:
        return node.module
    base = module.split(".") if _is_package(path) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that `module` imports anywhere in its source."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, path, node)
            if source is None:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.add(submodule if submodule in modules else source)
    return {t for t in targets if t in modules and t != module}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package modules it imports, with the package-to-own-child edges left out."""
    modules = module_files(root)
    graph = {}
    for module, path in modules.items():
        edges = imports_of(module, path, modules)
        if _is_package(path):
            edges = {e for e in edges if not e.startswith(module + ".")}
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module.

    Tarjan's algorithm finds the components; within each, a breadth-first search from its first
    module back to itself gives a shortest cycle to print, so the message names a path to break.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_shortest_cycle(graph, set(c), c[0]) for c in sorted(components)]


def _shortest_cycle(graph: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{start} is in a strongly connected component but on no cycle")


def test_the_package_has_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles in lora_exp:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    """A cycle hidden inside a function, or written as a relative import, is still a cycle."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from lora_exp.b import g\n")
    (pkg / "b.py").write_text("from lora_exp import a\n")
    (pkg / "sub" / "__init__.py").write_text("from . import c  # registers\n")
    (pkg / "sub" / "c.py").write_text("from ..sub import thing\nfrom .. import b\n")
    graph = import_graph(tmp_path)
    assert graph == {
        "lora_exp": set(),
        "lora_exp.a": {"lora_exp.b"},
        "lora_exp.b": {"lora_exp.a"},
        "lora_exp.sub": set(),  # its edge to its own child `c` is the one exclusion
        "lora_exp.sub.c": {"lora_exp.sub", "lora_exp.b"},
    }
    assert cycles(graph) == [["lora_exp.a", "lora_exp.b", "lora_exp.a"]]


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"x": {"y"}, "y": {"z"}, "z": set()}, []),
        ({"x": {"y"}, "y": {"z"}, "z": {"x"}}, [["x", "y", "z", "x"]]),
        ({"x": {"y", "z"}, "y": {"x"}, "z": {"y"}}, [["x", "y", "x"]]),
    ],
)
def test_cycles_reports_a_shortest_path_per_component(graph, expected):
    assert cycles(graph) == expected
