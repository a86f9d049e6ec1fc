"""Figures of the package's shape, for refactors: files, largest functions, import graph.

Prints the number of modules under stimgen/, the ten largest functions (lines), the import
graph between modules and between rooms (a room: an entry of FLOORS, see room())
with its arrows, cycles among modules and among rooms, and upward imports (against the floors
declared in tests/test_import_graph.py, FLOORS), and the functions outside
stimgen/protocol and stimgen/cli that take the whole protocol (a parameter named `protocol`).

    python benchmarks/house_figures.py [--json figures.json] [--commit REV]

``--commit`` measures the package as it was at an earlier commit (with today's FLOORS).
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stimgen"     # replaced by --commit


def graph_module():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tests" / "test_import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENTRIES: list[str] = []     # FLOORS' entries, filled by figures()


def room(module: str) -> str:
    """A module's room: the longest entry of FLOORS naming it (a top-level module or
    subpackage of stimgen, or a module that FLOORS places on a floor of its own)."""
    named = [e for e in ENTRIES if module == e or (e != "stimgen" and module.startswith(e + "."))]
    return max(named, key=len) if named else ".".join(module.split(".")[:2])


def room_cycles(rooms: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one room (Tarjan)."""
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on.add(node)
        for nxt in rooms.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(rooms):
        if node not in index:
            visit(node)
    return groups


def functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(PACKAGE.parent).as_posix(), node


def figures() -> dict:
    g = graph_module()
    g.PACKAGE = PACKAGE
    ENTRIES[:] = [entry for floor in getattr(g, "FLOORS", ()) for entry in floor]
    graph = g.import_graph()
    rooms: dict[str, set[str]] = {}
    for module, targets in graph.items():
        rooms.setdefault(room(module), set()).update(
            room(t) for t in targets if room(t) != room(module))
    arrows = sum(len(v) for v in rooms.values())
    cycle = g.find_cycle(graph)
    upward = g.upward_imports(graph) if hasattr(g, "upward_imports") else None
    sizes = sorted(((n.end_lineno - n.lineno + 1, f"{p}:{n.lineno} {n.name}")
                    for p, n in functions()), reverse=True)
    taking = [(p, n.name) for p, n in functions()
              if not p.startswith(("stimgen/protocol/", "stimgen/cli/"))
              and any(a.arg == "protocol" for a in n.args.args + n.args.kwonlyargs + n.args.posonlyargs)]
    return {
        "modules": len(list(PACKAGE.rglob("*.py"))),
        "files": sum(1 for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts),
        "largest_functions": [f"{lines:4d} {where}" for lines, where in sizes[:10]],
        "module_arrows": sum(len(v) for v in graph.values()),
        "rooms": len(rooms), "room_arrows": arrows,
        "room_cycles": room_cycles(rooms),
        "module_cycle": cycle,
        "floors": len(g.FLOORS) if hasattr(g, "FLOORS") else None,
        "upward_imports": upward,
        "functions_taking_protocol": len(taking),
        "files_taking_protocol": sorted({p for p, _ in taking}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--commit", help="measure stimgen/ as it was at this commit")
    args = parser.parse_args()
    global PACKAGE
    if args.commit:
        folder = Path(tempfile.mkdtemp(prefix="house-figures-"))
        archive = subprocess.run(["git", "archive", args.commit, "stimgen"], cwd=ROOT,
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        PACKAGE = folder / "stimgen"
    result = figures()
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
