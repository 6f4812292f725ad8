"""No import circle inside scripts/shipml: the modules form a layered graph.

Every import counts, wherever it is written: at module level, inside a function, or under
``if TYPE_CHECKING``. The circles this test was written against were all hidden in a function
body or behind TYPE_CHECKING (a module-level-only reading finds none of them), and a deferred
import is still a dependency: the module cannot work without the other one, and the other one
cannot work without it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scripts" / "shipml"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path, modules: Mapping[str, Path]) -> Iterator[str]:
    """Yield the shipml modules ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                yield submodule if submodule in modules else target


def import_graph() -> dict[str, set[str]]:
    """Return, for each module of scripts/shipml, the shipml modules it imports."""
    modules = _modules()
    return {name: {target for target in _imported(name, path, modules)
                   if target in modules and target != name}
            for name, path in modules.items()}


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def test_no_import_circle_inside_the_package() -> None:
    found = circles(import_graph())
    assert found == [], "import circles (move the shared names to the lower module):\n" + \
        "\n".join(" <-> ".join(circle) for circle in found)


def test_the_reader_sees_imports_inside_functions() -> None:
    graph = import_graph()
    # `shipml report` imports its core inside run_cli, to keep `shipml --help` quick
    assert "shipml.report.core" in graph["shipml.report.cli"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
