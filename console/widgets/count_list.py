"""A ranked list of counts ("7  discovery  unsolicited_peers"): grouped tallies at a glance."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.widgets import Static

#: One line: the count, then (text, style) parts; texts must already be cleaned.
CountLine = tuple[int, tuple[tuple[str, str], ...]]


class CountList(Static):
    """Count-ranked lines, largest first; re-renders only when a line changed."""

    DEFAULT_CSS = """
    CountList {
        width: 1fr;
        height: auto;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, empty: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.empty = empty
        self._lines: tuple[CountLine, ...] | None = None

    @property
    def lines(self) -> tuple[CountLine, ...]:
        """What is shown, largest count first."""
        return self._lines or ()

    def set_lines(self, lines: Sequence[CountLine], count_style: str = "bold") -> bool:
        """Show ``lines`` sorted by count (ties keep their order); returns whether it changed."""
        ranked = tuple(sorted(lines, key=lambda line: -line[0]))
        if ranked == self._lines:
            return False
        self._lines = ranked
        if not ranked:
            self.update(Content.styled(self.empty, "$foreground-muted"))
            return True
        width = max(len(str(n)) for n, _parts in ranked)
        out = []
        for n, parts in ranked:
            pieces: list[str | tuple[str, str]] = [(str(n).rjust(width), count_style)]
            for text, style in parts:
                pieces += ["  ", (text, style)]
            out.append(Content.assemble(*pieces))
        self.update(Content("\n").join(out))
        return True
