"""The packages import downwards only, and no modules import each other in a circle.

The layers (docs/ARCHITECTURE.md, "Layers and packages"), top to bottom:

- ``zakura``: the command line and process orchestration, the only package that imports both
  of the next two;
- ``console``: the operator console (Textual), over ``node_core`` and ``themes``;
- ``node_core`` and ``themes``: the node library and the colour themes, importing neither the
  console nor the command line, nor each other.

Read from the source with :mod:`ast`, nothing is imported. The direction rules count every
import wherever it is (also one inside a function, or under ``if TYPE_CHECKING:``): a lazy
import is still a dependency. No cycle may run when a module is imported (its top-level
statements, class bodies included, outside ``if TYPE_CHECKING:``); counting lazy and type-only
imports too, only the few known cycles inside one package remain (:data:`KNOWN_CYCLES`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("zakura", "console", "node_core", "themes")
#: What each package may import of the others; everything else among them is refused.
ALLOWED: dict[str, frozenset[str]] = {
    "zakura": frozenset({"console", "node_core", "themes"}),
    "console": frozenset({"node_core", "themes"}),
    "node_core": frozenset(),
    "themes": frozenset(),
}


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement's target, as a module of ours."""

    source: str
    target: str
    line: int
    #: Runs when ``source`` is imported: top level (or a class body), not TYPE_CHECKING.
    at_import: bool
    #: Under ``if TYPE_CHECKING:``: never runs, only the type checker follows it.
    type_only: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    return {
        module_name(p): p
        for package in PACKAGES
        for p in sorted((ROOT / package).rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def is_type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def walk_imports(
    node: ast.AST, at_import: bool, type_only: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Every import statement under ``node``: whether it runs at import time, and whether it
    is for the type checker only."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, at_import and not type_only, type_only
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from walk_imports(child, False, type_only)
        elif isinstance(child, ast.If) and is_type_checking(child.test):
            for stmt in child.body:
                yield from walk_imports(ast.Module(body=[stmt], type_ignores=[]), False, True)
            for stmt in child.orelse:
                yield from walk_imports(
                    ast.Module(body=[stmt], type_ignores=[]), at_import, type_only
                )
        else:
            yield from walk_imports(child, at_import, type_only)


def resolve(name: str, known: set[str]) -> str | None:
    """The longest module of ours that ``name`` is or lies in (``a.b.c`` -> ``a.b``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for stmt, at_import, type_only in walk_imports(tree, True):
        names: list[str] = []
        if isinstance(stmt, ast.Import):
            names = [alias.name for alias in stmt.names]
        else:
            base = stmt.module or ""
            if stmt.level:
                anchor = package.split(".")[: len(package.split(".")) - (stmt.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name``, mod.
            names = [f"{base}.{alias.name}" for alias in stmt.names] or [base]
        for name in names:
            target = resolve(name, known)
            if target is not None and target != module:
                found.append(Import(module, target, stmt.lineno, at_import, type_only))
    return found


def all_imports() -> list[Import]:
    files = source_files()
    known = set(files)
    return [imp for module, path in files.items() for imp in imports_of(module, path, known)]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


# ---------------------------------------------------------------------- the rules
def test_the_reader_sees_the_known_imports() -> None:
    """Guards the rules below against a reader that finds nothing."""
    imports = all_imports()
    pairs = {(i.source, i.target) for i in imports}
    assert ("zakura.cli", "zakura.node_cmd") in pairs
    assert ("zakura.node_thread", "console.client") in pairs
    assert ("console.client", "node_core.control") in pairs
    lazy = [i for i in imports if i.source == "node_core.node" and i.target == "node_core.api"]
    assert lazy and not lazy[0].at_import  # Node.start imports the API server lazily
    assert len(source_files()) > 100


def test_imports_point_down_only() -> None:
    wrong = [
        f"{i.source} (line {i.line}) imports {i.target}"
        for i in all_imports()
        if (src := i.source.partition(".")[0]) != (dst := i.target.partition(".")[0])
        and dst not in ALLOWED[src]
    ]
    assert wrong == [], "imports against the layers:\n" + "\n".join(wrong)


def test_node_core_imports_neither_console_nor_zakura() -> None:
    """The rule the issue states, spelled out (covered by the one above, kept for its name)."""
    for i in all_imports():
        if i.source.startswith("node_core"):
            assert not i.target.startswith(("console", "zakura")), i


def test_no_module_imports_itself_in_a_circle() -> None:
    """At import time, no cycle at all: a module never runs half-initialised."""
    edges: dict[str, set[str]] = {}
    for i in all_imports():
        if i.at_import:
            edges.setdefault(i.source, set()).add(i.target)
    found = cycles(edges)
    assert found == [], "import cycles (at import time):\n" + "\n".join(
        " -> ".join(c) for c in found
    )


#: Cycles that only lazy or type-only imports close, each inside one package, kept on purpose
#: or not yet untied. A cycle may shrink or go; a new one, or a module joining one, fails.
KNOWN_CYCLES: dict[frozenset[str], str] = {
    frozenset(
        {
            "console.app",
            "console.screens.base",
            "console.screens.charts",
            "console.screens.diagnostics",
            "console.screens.journal",
            "console.screens.misbehavior",
            "console.screens.overview",
            "console.screens.parked",
            "console.screens.peer_detail",
            "console.screens.peers",
        }
    ): "the app lists its screens; the screens' base names the app (type, and one lazy import)",
    frozenset({"console.fleet_app", "console.screens.fleet"}): "the same for the Fleet view",
    frozenset(
        {
            "node_core.transport.connection",
            "node_core.transport.service",
            "node_core.transport.stream",
            "node_core.transport.supervise",
        }
    ): "a connection owns its streams and routines, which name it in types only",
}


def test_no_new_cycle_even_through_lazy_or_type_only_imports() -> None:
    """Counting every import: no cycle crosses a package, and none but the known ones inside.

    This is what keeps the node composing its parts (faults, miner, snapshot, API) without
    their naming the node's class, and the command line off node_core: both were cycles
    closed only by lazy and type-only imports (issue 10).
    """
    edges: dict[str, set[str]] = {}
    for i in all_imports():
        edges.setdefault(i.source, set()).add(i.target)
    new = [c for c in cycles(edges) if not any(set(c) <= known for known in KNOWN_CYCLES)]
    assert new == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in new)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
