"""The layering of ``rag``, read from the source with ``ast`` (nothing is imported).

The import graph counts every import: at module level and inside functions (a function-level
import only moves a cycle to run time), relative imports resolved. ``from pkg import name``
is an import of the module ``pkg.name`` where that is a module of ``rag``, else of ``pkg``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "rag"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    """Every module of ``rag`` by dotted name."""
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _from_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


@lru_cache(maxsize=1)
def imports() -> dict[str, dict[str, int]]:
    """Every module of ``rag`` -> each module it imports (in ``rag`` or not) -> the first line that does."""
    known = modules()
    out: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        found: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _from_base(name, path.name == "__init__.py", node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            else:
                continue
            for target in targets:
                found[target] = min(found.get(target, node.lineno), node.lineno)
        out[name] = found
    return out


def rag_graph() -> dict[str, set[str]]:
    """The import graph among the modules of ``rag``."""
    known = modules()
    return {m: {t for t in targets if t in known} for m, targets in imports().items()}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def imports_between(importers: str, imported: Iterable[str], allowed: Iterable[str] = ()) -> list[str]:
    """``path:line imports target`` for every import, by a module of package ``importers``, of a
    module of one of the ``imported`` packages that is not in one of the ``allowed`` ones."""
    imported, allowed = list(imported), list(allowed)
    return [
        f"{modules()[m].relative_to(ROOT)}:{line} imports {t}"
        for m, targets in sorted(imports().items())
        if within(m, importers)
        for t, line in sorted(targets.items(), key=lambda kv: kv[1])
        if any(within(t, p) for p in imported) and not any(within(t, p) for p in allowed)
    ]


def import_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle (a path ``a -> b -> ... -> a``, without repeating ``a``) per strongly connected
    component of ``graph`` that has one (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(min(c), c, graph) for c in sorted(components, key=min)]


def _cycle_through(start: str, component: set[str], graph: Mapping[str, set[str]]) -> list[str]:
    """The shortest path from ``start`` back to itself inside ``component`` (breadth first)."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph.get(v, ()) & component):
                if w == start:
                    return paths[v]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - a component always has one


def _show(cycle: list[str]) -> str:
    return " -> ".join([*cycle, cycle[0]])


# --------------------------------------------------------------------------- the helpers themselves


def test_cycle_finder_names_the_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert import_cycles(graph) == [["a", "b", "c"], ["e"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_function_level_and_relative_imports():
    graph = rag_graph()
    assert "rag.embed" in graph["rag.pipeline"]  # `from .embed import load_embedder` inside a method
    assert "rag.llm.base" in graph["rag.llm"]  # `from .base import (...)` in a package's __init__
    assert "rag.ingest.parsers" in graph["rag.ingest"]  # absolute, in a package's __init__
    assert "numpy" in imports()["rag.lexical"]  # imports outside rag are kept (for the checks below)


# --------------------------------------------------------------------------- the layering


def test_no_import_cycle_in_rag():
    cycles = import_cycles(rag_graph())
    assert not cycles, "import cycles in rag/: " + "; ".join(_show(c) for c in cycles)


def test_rag_text_is_the_bottom_layer():
    assert imports_between("rag.text", ["rag"], allowed=["rag.text"]) == []


def test_rag_imports_neither_service_nor_eval():
    assert imports_between("rag", ["service", "eval"]) == []
