"""A block of ``key  value`` lines: the building block of the overview's small panels."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.widgets import Static

#: One line: key, value, and the value's style (Textual style, ``$variables`` allowed).
KVRow = tuple[str, str, str]


class KVPanel(Static):
    """Aligned key/value lines that re-render only when a line actually changed.

    The overview refreshes four times a second but most of its numbers are still; comparing
    plain tuples is far cheaper than rebuilding and laying out content every frame.
    """

    DEFAULT_CSS = """
    KVPanel {
        width: 1fr;
        height: auto;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(
        self, *, key_width: int = 0, id: str | None = None, classes: str | None = None
    ) -> None:
        """Create an empty panel.

        Args:
            key_width: Minimum width of the key column, so that several panels stacked in
                one box line their values up.
            id: The widget id.
            classes: CSS classes.
        """
        super().__init__(id=id, classes=classes)
        self.key_width = key_width
        self._rows: tuple[KVRow, ...] | None = None

    @property
    def rows(self) -> tuple[KVRow, ...]:
        """The lines currently shown (for tests and callers that diff)."""
        return self._rows or ()

    def set_rows(self, rows: Sequence[KVRow]) -> bool:
        """Show ``rows``; returns whether anything changed (and so was re-rendered).

        Values are shown as given: callers clean peer-supplied strings first. They are never
        parsed as markup, so a stray ``[`` cannot restyle the panel.
        """
        new = tuple(rows)
        if new == self._rows:
            return False
        self._rows = new
        width = max((len(k) for k, _v, _s in new), default=self.key_width)
        width = max(width, self.key_width)
        lines = [
            Content.assemble((key.ljust(width), "$foreground-muted"), "  ", (value, style))
            for key, value, style in new
        ]
        self.update(Content("\n").join(lines))
        return True
