"""examples/pytest-project passes with plain ``pytest`` run from its own directory.

It is a separate project (its own pyproject.toml, no conftest): the fixture comes from the
installed package's pytest11 entry point, the code from the installed ``zakura``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pytest-project"


async def test_the_example_project_passes(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "pytest"),
        "-p",
        "no:cacheprovider",  # nothing written into the source tree
        "--basetemp",
        str(tmp_path),
        cwd=EXAMPLE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(280):
        raw, _ = await proc.communicate()
    out = raw.decode(errors="replace")
    assert proc.returncode == 0, out[-6000:]
    assert f"rootdir: {EXAMPLE}" in out and "configfile: pyproject.toml" in out, out[:2000]
    assert "1 passed" in out, out[-2000:]
