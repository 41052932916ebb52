"""No import cycle among bot modules (issue 11): the graph is read from the source with `ast`, so a cycle shows
even where Python would tolerate it (a deferred import inside a function, a forwarding shim)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bot_modules() -> dict[str, Path]:
    """Every module under bot/, by dotted name."""
    out = {}
    for path in sorted((ROOT / "bot").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(path: Path, name: str, *, deferred: bool) -> set[str]:
    """Dotted names a module imports at import time (`deferred`: also inside functions), leaving out
    `if TYPE_CHECKING:` blocks, which never run."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                found.add(module)
                found.update(f"{module}.{a.name}" for a in node.names)  # `from bot.chat import wiring`
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if deferred:
                    visit(node.body)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        visit([c for c in children if isinstance(c, ast.stmt)]
                              + [s for h in children if isinstance(h, ast.ExceptHandler) for s in h.body])

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def import_graph(*, deferred: bool) -> dict[str, set[str]]:
    """module -> the bot modules it imports (a name that is an attribute, not a module, maps to its module)."""
    modules = bot_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_names(path, name, deferred=deferred):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_relative_deferred_and_from_package_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nfrom . import sibling\nif TYPE_CHECKING:\n"
                   "    import bot.hidden\ntry:\n    import bot.tried\nexcept ImportError:\n    pass\n"
                   "def f():\n    from bot.chat import wiring\n")
    assert imported_names(src, "bot.chat.m", deferred=False) >= {"bot.chat.sibling", "bot.tried"}
    assert "bot.hidden" not in imported_names(src, "bot.chat.m", deferred=True)
    assert "bot.chat.wiring" in imported_names(src, "bot.chat.m", deferred=True)
    assert "bot.chat.wiring" not in imported_names(src, "bot.chat.m", deferred=False)


def test_no_import_cycle_among_bot_modules() -> None:
    graph = import_graph(deferred=False)
    assert len(graph) > 40 and "bot.chat.runtime" in graph["bot.chat.wiring"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_no_import_cycle_through_deferred_imports_either() -> None:
    """A deferred import (inside a function) that closes a cycle is the forwarding shim issue 11 removed."""
    cycle = find_cycle(import_graph(deferred=True))
    assert cycle is None, " -> ".join(cycle or [])


def test_every_bot_module_imports() -> None:
    """Each module imports (a cycle Python cannot resolve fails here too), in a fresh interpreter so that no
    module imported by an earlier test hides one; alembic's migration scripts only run inside alembic."""
    names = [n for n in bot_modules() if ".migrations" not in n and not n.endswith("__main__")]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
