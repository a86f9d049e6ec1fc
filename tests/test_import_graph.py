"""The package's layout is its data flow: no import cycle among stimgen's modules.

The graph is built from every import statement of every module (those inside functions too,
which is where a cycle hides when it is "closed" by a lazy import), so a cycle fails here even
when Python would import the modules without an error.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stimgen"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the stimgen modules it imports anywhere in its source."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import mod` imports the module pkg.mod when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]          # a name inside a module
                if target and target != name and target.startswith("stimgen"):
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}           # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_package_init_importing_its_submodule_is_no_cycle():
    graph = import_graph()
    assert "stimgen.backends.schematic" in graph["stimgen.backends"]


def test_no_import_cycle_among_stimgen_modules():
    graph = import_graph()
    # A package's __init__ that re-exports its own modules is not a cycle for its modules'
    # sake only if they never import the package back: so nothing is exempt here.
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("stage, later", [
    ("stimgen.protocol.models", "stimgen.pipeline"),
    ("stimgen.build_folder", "stimgen.report"),
    ("stimgen.render", "stimgen.pipeline"),
    ("stimgen.validate", "stimgen.export"),
])
def test_stages_import_only_earlier_boxes(stage, later):
    """A box of the data flow never imports one that comes after it (DESIGN.md)."""
    graph = import_graph()
    reached, todo = set(), [stage]
    while todo:
        for nxt in graph[todo.pop()] - reached:
            reached.add(nxt)
            todo.append(nxt)
    assert not any(m == later or m.startswith(later + ".") for m in reached), \
        f"{stage} reaches {later}"
