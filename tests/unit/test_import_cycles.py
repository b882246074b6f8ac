"""flowagent's modules import each other one way: no import cycle.

The import graph is built from the source with ``ast`` (nothing is imported), so a cycle is
found even where the interpreter happens to resolve it because of the order modules load in.
``from . import x`` is an edge to the module ``x`` when ``x`` is one; imports under
``if TYPE_CHECKING:`` are annotations, not imports, and are left out.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "flowagent"

# Imports made inside a function that close a cycle on the program side, each with why it
# stays lazy. Anything not listed here fails the program-side test.
PROGRAM_SIDE_LAZY_BACK_EDGES = {
    # the recorder is the hub every agent module imports; it reaches lineage only when a
    # session of a child process starts, and binds it then (hot path, C twin alike)
    ("flowagent.agent.recorder", "flowagent.agent.lineage"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    for stub in sorted(PACKAGE.rglob("*.pyi")):  # C extensions: their stub stands for them
        found.setdefault(_module_name(stub), stub)
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.Module, lazy: bool) -> list[ast.Import | ast.ImportFrom]:
    """Import statements run when the module loads (class bodies, ``try``/``if`` blocks
    included), and, when ``lazy``, those inside functions too."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        if not lazy and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom,
             known: dict[str, Path]) -> set[str]:
    """The project modules one import statement loads by name."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    if node.level:
        package = module if path.stem == "__init__" else module.rpartition(".")[0]
        parts = package.split(".")
        base = ".".join(parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    found = set()
    for alias in node.names:
        if f"{base}.{alias.name}" in known:  # ``from pkg import submodule``
            found.add(f"{base}.{alias.name}")
        elif base in known:  # ``from module import name``
            found.add(base)
    return found


def import_graph(lazy: bool, under: str = "flowagent") -> dict[str, set[str]]:
    """Module -> the project modules it imports, for the modules in the package ``under``."""
    known = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        if module != under and not module.startswith(under + "."):
            continue
        edges: set[str] = set()
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path)), lazy):
            edges |= _targets(module, path, node, known)
        edges.discard(module)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete cycle per strongly connected group of modules (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root] & graph.keys())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child] & graph.keys()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return [_shortest_cycle(graph, group) for group in groups]


def _shortest_cycle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    start = min(group)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & group):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def _report(found: list[list[str]]) -> str:
    return "import cycles:\n" + "\n".join("  " + " -> ".join(cycle) for cycle in found)


def test_no_import_cycle_in_flowagent() -> None:
    found = cycles(import_graph(lazy=False))
    assert not found, _report(found)


def test_no_import_cycle_on_the_program_side_even_through_lazy_imports() -> None:
    """Inside the recorded program a lazy import that closes a cycle makes what works depend
    on which module loaded first; only the listed back-edges, each with its reason, stay."""
    graph = import_graph(lazy=True, under="flowagent.agent")
    for source, target in PROGRAM_SIDE_LAZY_BACK_EDGES:
        assert target in graph[source], f"{source} no longer imports {target}: drop the entry"
        graph[source].discard(target)
    found = cycles(graph)
    assert not found, _report(found)


@pytest.mark.parametrize("source, expected", [
    ("from . import b\n", ["pkg.a -> pkg.b -> pkg.a"]),
    ("def f():\n    from .b import thing\n", ["pkg.a -> pkg.b -> pkg.a"]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n", []),
    ("import pkg.b as other\n", ["pkg.a -> pkg.b -> pkg.a"]),
    ("from .c import x\n", []),
])
def test_a_cycle_is_found_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    source: str, expected: list[str]) -> None:
    """The checker itself: a two-module cycle, written each way, is reported by name."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(source)
    (package / "b.py").write_text("from .a import thing\n")
    (package / "c.py").write_text("x = 1\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE", package)
    found = [" -> ".join(c) for c in cycles(import_graph(lazy=True, under="pkg"))]
    assert found == expected
