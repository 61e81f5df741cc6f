"""node_core.protocol is sans-I/O: no module in it may import asyncio, socket, selectors or ssl."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import node_core.protocol

FORBIDDEN = frozenset({"asyncio", "socket", "selectors", "ssl"})
PROTOCOL_DIR = Path(node_core.protocol.__file__).resolve().parent
PROTOCOL_FILES = sorted(PROTOCOL_DIR.rglob("*.py"))


def forbidden_imports(source: str, filename: str) -> list[str]:
    """Every forbidden top-level module imported anywhere in ``source`` (any nesting level)."""
    tree = ast.parse(source, filename=filename)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN:
                    found.append(f"line {node.lineno}: import {alias.name}")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module is not None
            and node.module.split(".")[0] in FORBIDDEN
        ):
            found.append(f"line {node.lineno}: from {node.module} import ...")
    return found


def test_protocol_package_has_files() -> None:
    # Guards against a vacuous pass (wrong directory, renamed package).
    assert len(PROTOCOL_FILES) > 5, PROTOCOL_FILES
    names = {p.name for p in PROTOCOL_FILES}
    assert {"codec.py", "handshake.py", "mux.py", "frames.py", "flow.py"} <= names


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda p: str(p.relative_to(PROTOCOL_DIR)))
def test_module_imports_no_io(path: Path) -> None:
    assert forbidden_imports(path.read_text(encoding="utf-8"), str(path)) == []


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import socket as s",
        "import os, selectors",
        "import ssl.foo",
        "from asyncio import Event",
        "from asyncio.locks import Event",
        "def f():\n    import socket\n",
        "try:\n    from ssl import SSLContext\nexcept ImportError:\n    pass\n",
    ],
)
def test_checker_detects_forbidden_imports(source: str) -> None:
    assert forbidden_imports(source, "<probe>") != []


@pytest.mark.parametrize(
    "source",
    ["import asynciox", "from socketserver import X", "from . import ssl", "import struct"],
)
def test_checker_allows_other_imports(source: str) -> None:
    assert forbidden_imports(source, "<probe>") == []
