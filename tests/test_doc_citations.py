"""Every document the code cites is in this repository, and every cited section exists.

Comments and docstrings cite ``docs/ARCHITECTURE.md, "Section title"``; a renamed section or
a citation of a file outside the repository leaves a reader with nowhere to go.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("zakura", "node_core", "console", "themes", "bench", "tests", "docs")
CITATION = re.compile(r'ARCHITECTURE\.md,\s+"([^"]+)"')


def texts() -> dict[Path, str]:
    files = [ROOT / "README.md"]
    for top in SOURCES:
        files += [p for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".md")]
    return {p: p.read_text(encoding="utf-8") for p in files if p != Path(__file__)}


def section_titles(doc: str) -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^#{2,4} (.+)$", doc, re.MULTILINE)}


def test_cited_architecture_sections_exist() -> None:
    titles = section_titles((ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    assert "Bodies nobody serves" in titles
    cited = 0
    for path, text in texts().items():
        for m in CITATION.finditer(text):
            title = " ".join(m.group(1).split())  # a citation may wrap across lines
            assert title in titles, f"{path.relative_to(ROOT)} cites a missing section {title!r}"
            cited += 1
    assert cited > 10  # the pattern still finds the citations


def test_no_citation_of_a_document_outside_the_repository() -> None:
    for path, text in texts().items():
        for bad in ("DESIGN.md", "DESIGN §", "shared/", "../shared"):
            assert bad not in text, f"{path.relative_to(ROOT)} cites {bad!r}"
