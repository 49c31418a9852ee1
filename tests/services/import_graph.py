"""The import graph of `services/`, read from source with `ast` (nothing is imported).

Shared by the layering test (no cycles, no function-level project imports, the ExLlamaV2
server independent of the simulator) and the image test (what the server imports at all).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["REPO_ROOT", "Import", "ModuleInfo", "find_cycle", "read_services"]

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Import:
    """One imported module name; `where` is `module`, `function` or `type_checking`."""

    target: str
    where: str
    line: int


@dataclass
class ModuleInfo:
    name: str
    path: Path
    imports: list[Import] = field(default_factory=list)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, known: set[str]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
    if len(submodules) < len(node.names):  # some names are the package's own attributes
        yield base
    yield from submodules  # `from services.sim import tgi_protocol`: the submodule only


def _walk(node: ast.AST, where: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, where
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, "function")
        elif isinstance(child, ast.If) and _is_type_checking(child):
            yield from _walk(child, "type_checking")
        else:
            yield from _walk(child, where)


def read_services() -> dict[str, ModuleInfo]:
    """Every Python module under `services/`, with the modules it imports."""
    paths = sorted((REPO_ROOT / "services").rglob("*.py"))
    modules = {_module_name(p): ModuleInfo(_module_name(p), p) for p in paths}
    known = set(modules)
    for info in modules.values():
        tree = ast.parse(info.path.read_text(encoding="utf-8"), str(info.path))
        for node, where in _walk(tree, "module"):
            for target in _targets(node, known):
                info.imports.append(Import(target, where, node.lineno))
    return modules


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph `edges` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None
