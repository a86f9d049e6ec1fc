"""The package's layout is its data flow: every import runs down a floor, none in a cycle.

The graph is built from every import statement of every module (those inside functions too,
which is where a cycle hides when it is "closed" by a lazy import), so a cycle fails here even
when Python would import the modules without an error.

:data:`FLOORS` is the one place where the floors are declared (docs/ARCHITECTURE.md explains
them): a module may import modules of its own floor or below, never above. A new module is
placed on a floor here, or the test names it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stimgen"

#: The floors of the house, ground floor first: each entry names a module or a package (all
#: its modules, unless a longer entry places one of them elsewhere). ``stimgen`` itself (the
#: lazy top-level API) is the roof.
FLOORS: tuple[tuple[str, ...], ...] = (
    # 0. pure maths, words and small tools that know nothing of stimgen's stages
    ("stimgen.errors", "stimgen.version", "stimgen.wording", "stimgen.circumplex",
     "stimgen.facs", "stimgen.matching", "stimgen.interrupt", "stimgen.scheduler",
     "stimgen.starter", "stimgen.packages", "stimgen.templates_path", "stimgen.thumbnails",
     "stimgen.data"),
    # 1. files, images and numbers: atomic writes, landmarks, photos, metrics
    ("stimgen.storage", "stimgen.safety", "stimgen.photos", "stimgen.landmarks",
     "stimgen.metrics"),
    # 2. the protocol: its models (the single source of truth) and the user's config file
    ("stimgen.protocol", "stimgen.config"),
    # 3. networks, written as their publishers wrote them
    ("stimgen.nets",),
    # 4. reading checkpoints safely; face detection
    ("stimgen.checkpoints", "stimgen.detection", "stimgen.parity"),
    # 5. the weights registry
    ("stimgen.weights",),
    # 6. the build folder's contract (file names, columns, typed readers) and its ledger;
    #    the typed settings every stage takes, and the rules that resolve `auto`
    ("stimgen.build_folder", "stimgen.ledger", "stimgen.dynamic", "stimgen.settings"),
    # 7. face generators
    ("stimgen.backends",),
    # 8. raters
    ("stimgen.raters",),
    # 9. plan time: targets and units; per-face steps of a stage
    ("stimgen.plan", "stimgen.standardise", "stimgen.correction"),
    # 10. stages over the planned stimuli
    ("stimgen.validate", "stimgen.design", "stimgen.render"),
    # 11. running the stages; the loader (which plans the whole protocol); the bundle
    ("stimgen.executors", "stimgen.protocol.loader", "stimgen.export"),
    # 12. human norms; checks before a build
    ("stimgen.norms", "stimgen.preflight"),
    # 13. the report
    ("stimgen.report",),
    # 14. the finisher: every file of a finished build folder
    ("stimgen.finish",),
    # 15. what users run: a build, a selection
    ("stimgen.pipeline", "stimgen.select"),
    # 16. the shells
    ("stimgen.cli", "stimgen"),
)


def floor_of(module: str) -> int | None:
    """The floor of ``module``: that of the longest entry of :data:`FLOORS` naming it."""
    best, floor = "", None
    for level, entries in enumerate(FLOORS):
        for entry in entries:
            matches = module == entry or (entry != "stimgen" and module.startswith(entry + "."))
            if matches and len(entry) > len(best):
                best, floor = entry, level
    return floor


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module on a higher floor, as ``importer -> imported``."""
    return [f"{name} ({floor_of(name)}) -> {target} ({floor_of(target)})"
            for name in sorted(graph) for target in sorted(graph[name])
            if floor_of(target) > floor_of(name)]


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


def test_every_module_has_a_floor():
    assert [name for name in import_graph() if floor_of(name) is None] == []


def test_floor_of_takes_the_longest_entry():
    assert floor_of("stimgen.protocol.models") < floor_of("stimgen.plan")
    assert floor_of("stimgen.protocol.loader") > floor_of("stimgen.design.plan")
    assert floor_of("stimgen") == len(FLOORS) - 1
    assert upward_imports({"stimgen.errors": {"stimgen.cli"}, "stimgen.cli": set()}) == \
        ["stimgen.errors (0) -> stimgen.cli (16)"]


def test_every_import_runs_down():
    """No module imports one on a higher floor (FLOORS), lazily inside a function or not."""
    upward = upward_imports(import_graph())
    assert upward == [], "imports that run up a floor:\n" + "\n".join(upward)


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
