"""No private attribute of Textual or aiohttp is used in ``console/``, ``node_core/``, ``zakura/``.

Why: a private name (``DataTable._render_line``, ``request._payload``) can change in any
release without notice; code built on one breaks on an upgrade, or pins the library (issue 14
item 5). Only their public API is used, so an upgrade is a version bump.

Read from the source with :mod:`ast`; only the two libraries' own classes are imported, to
ask what they define. What counts as using a private name:

1. importing a private module of theirs (``textual._segment_tools``,
   ``textual.widgets._data_table``);
2. in a class of ours that derives (directly or through our classes) from one of theirs:
   defining a ``_name`` (method, class attribute, or attribute set on ``self``) that their
   classes define too, that is overriding a private hook or clobbering their private state;
   or reading ``self._name`` / ``super()._name`` where our own
   classes never define ``_name`` (so it can only be theirs);
3. anywhere: ``obj._name`` on an object that is not ``self``/``cls``, where ``_name`` is one of
   the private names their source defines and no code of ours defines it (so the object can
   only be theirs: ``event._sender``, ``app._driver``).

Dunder names (``__init__``) are public protocol, not private. :data:`ALLOWED` lists the
exceptions still in the code, each with its reason; it is empty.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import textual

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("console", "node_core", "zakura")
LIBRARIES = ("textual", "aiohttp")

#: (module, name) -> why it is still allowed. Empty: nothing private is used.
ALLOWED: dict[tuple[str, str], str] = {}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _our_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


@functools.cache
def _library_private_names() -> frozenset[str]:
    """Every ``_name`` the libraries' own source defines: methods, class attributes, and
    attributes assigned on ``self``."""
    names: set[str] = set()
    for module in (textual, aiohttp):
        assert module.__file__ is not None
        for path in Path(module.__file__).parent.rglob("*.py"):
            names |= _defined_names(ast.parse(path.read_text(encoding="utf-8")))
    return frozenset(n for n in names if _is_private(n))


def _defined_names(tree: ast.AST) -> set[str]:
    """Names a source defines as attributes: ``def``s and class-level assignments inside
    classes, and ``self.x = ...`` targets anywhere."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(item.name)
                elif isinstance(item, ast.Assign):
                    names |= {t.id for t in item.targets if isinstance(t, ast.Name)}
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            for t in ast.walk(target):
                if isinstance(t, ast.Attribute) and _is_self(t.value):
                    names.add(t.attr)
    return names


def _other_module(node: ast.expr, imports: dict[str, str]) -> bool:
    """``node`` is a name imported from a module that is not theirs (``os._exit``)."""
    if not isinstance(node, ast.Name) or node.id not in imports:
        return False
    return imports[node.id].split(".")[0] not in LIBRARIES


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def _is_super(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
    )


@dataclass(slots=True)
class OurClass:
    module: str
    node: ast.ClassDef
    #: Base classes as dotted names, resolved through the module's imports.
    bases: list[str]
    #: Names this class defines (methods, class attributes, ``self.x`` assignments).
    defines: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Finding:
    module: str
    line: int
    name: str
    why: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.name}: {self.why}"


def _imports(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted name it stands for, from the module's imports."""
    table: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                table[(alias.asname or alias.name).split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                table[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return table


def _dotted(node: ast.expr, imports: dict[str, str], module: str) -> str | None:
    if isinstance(node, ast.Name):
        return imports.get(node.id, f"{module}.{node.id}")
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value, imports, module)
        return None if head is None else f"{head}.{node.attr}"
    if isinstance(node, ast.Subscript):  # DataTable[Text]
        return _dotted(node.value, imports, module)
    return None


@functools.cache
def _their_names(classes: tuple[type, ...]) -> frozenset[str]:
    """What the libraries' classes in these classes' MROs define (see :func:`_defined_names`):
    methods, class attributes, and the attributes their methods set on ``self``."""
    names: set[str] = set()
    for cls in classes:
        for klass in cls.__mro__:
            if klass.__module__.split(".")[0] in LIBRARIES:
                tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
                names |= _defined_names(tree)
    return frozenset(names)


def _library_class(dotted: str) -> type | None:
    """The class ``dotted`` names if it is one of the libraries' (imported to inspect it)."""
    if dotted.split(".")[0] not in LIBRARIES:
        return None
    module_name, _, name = dotted.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        return None
    return found if inspect.isclass(found) else None


class Scan:
    """Our source, parsed once: classes with their resolved bases, and each module's tree."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.trees = {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in files.items()}
        self.classes: dict[str, OurClass] = {}
        self.our_names: set[str] = set()
        for module, tree in self.trees.items():
            imports = _imports(tree)
            self.our_names |= _defined_names(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    bases = [_dotted(b, imports, module) for b in node.bases]
                    cls = OurClass(module, node, [b for b in bases if b is not None])
                    cls.defines = _defined_names(node)
                    self.classes[f"{module}.{node.name}"] = cls

    def lineage(self, cls: OurClass) -> tuple[list[OurClass], list[type]]:
        """Our classes in ``cls``'s ancestry (itself first) and the library classes it
        derives from."""
        ours, theirs, todo, seen = [], [], [cls], set()
        while todo:
            current = todo.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            ours.append(current)
            for base in current.bases:
                if base in self.classes:
                    todo.append(self.classes[base])
                elif (library := _library_class(base)) is not None:
                    theirs.append(library)
        return ours, theirs


def findings(scan: Scan, library_names: frozenset[str]) -> list[Finding]:
    out: list[Finding] = []
    for module, tree in scan.trees.items():
        imports = _imports(tree)
        for node in ast.walk(tree):
            # 1. Private modules of the libraries.
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                parts = node.module.split(".")
                if parts[0] in LIBRARIES and any(_is_private(p) for p in parts):
                    out.append(Finding(module, node.lineno, node.module, "private module"))
                if parts[0] in LIBRARIES:
                    for alias in node.names:
                        if _is_private(alias.name):
                            out.append(Finding(module, node.lineno, alias.name, "private import"))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] in LIBRARIES and any(_is_private(p) for p in parts):
                        out.append(Finding(module, node.lineno, alias.name, "private module"))
            # 3. obj._name on something not self/cls, a name only the libraries define.
            elif (
                isinstance(node, ast.Attribute)
                and _is_private(node.attr)
                and not _is_self(node.value)
                and not _is_super(node.value)
                and node.attr in library_names
                and node.attr not in scan.our_names
                and not _other_module(node.value, imports)
            ):
                out.append(Finding(module, node.lineno, node.attr, "their private attribute"))
    # 2. Classes derived from theirs.
    for cls in scan.classes.values():
        ours, theirs = scan.lineage(cls)
        if not theirs:
            continue
        theirs_define = _their_names(tuple(theirs))
        for node in ast.walk(cls.node):
            name = None
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = node.name
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                name = node.id
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                name = node.attr if _is_self(node.value) else None
            if name and _is_private(name) and name in theirs_define:
                line = getattr(node, "lineno", cls.node.lineno)
                out.append(Finding(cls.module, line, name, "overrides a private member"))
        ours_define = set().union(*(c.defines for c in ours))
        for node in ast.walk(cls.node):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            if _is_super(node.value) and (
                node.attr not in set().union(*(c.defines for c in ours[1:]))
            ):
                out.append(Finding(cls.module, node.lineno, node.attr, "super() private"))
            elif _is_self(node.value) and node.attr not in ours_define:
                out.append(Finding(cls.module, node.lineno, node.attr, "inherited private"))
    return out


def test_no_private_textual_or_aiohttp_attribute_is_used() -> None:
    found = findings(Scan(_our_files()), _library_private_names())
    used = [f for f in found if (f.module, f.name) not in ALLOWED]
    assert not used, "private Textual/aiohttp API used:\n" + "\n".join(map(str, used))
    # An exception that no longer matches anything is removed from ALLOWED.
    stale = ALLOWED.keys() - {(f.module, f.name) for f in found}
    assert not stale, stale


def test_the_scan_catches_the_old_peer_table(tmp_path: Path) -> None:
    """The checks above find what they look for: a ``DataTable`` subclass overriding a private
    hook and calling it through ``super()``, a private module import, and a private
    attribute read on a Textual object (the shape of the Peers table before issue 14)."""
    source = tmp_path / "old_table.py"
    source.write_text(
        "from textual._segment_tools import line_crop\n"
        "from textual.widgets import DataTable\n"
        "class Old(DataTable):\n"
        "    def _render_line(self, y, x1, x2, base_style):\n"
        "        row_key, line_no = self._get_offsets(y)\n"
        "        return super()._render_line(y, x1, x2, base_style)\n"
        "def hover(table):\n"
        "    return table._show_hover_cursor\n",
        encoding="utf-8",
    )
    found = findings(Scan({"old_table": source}), _library_private_names())
    kinds = {(f.name, f.why) for f in found}
    assert ("textual._segment_tools", "private module") in kinds
    assert ("_render_line", "overrides a private member") in kinds
    assert ("_render_line", "super() private") in kinds
    assert ("_get_offsets", "inherited private") in kinds
    assert ("_show_hover_cursor", "their private attribute") in kinds
