"""The last journal events, one line each, newest at the bottom: the overview's ticker.

It shows as many events as fit (at least a dozen on a normal terminal), so the newest is always
on screen whatever the height; the full, filterable log is the Journal view.
"""

from __future__ import annotations

from collections.abc import Reversible
from itertools import islice

from textual import events
from textual.content import Content
from textual.widgets import Static

from console.client import JournalRow
from console.widgets.journal_format import fields_text, short_label, text_or_blank, time_text
from console.widgets.palette import event_style, table_style

#: Shown when the widget has not been laid out yet (first frame).
DEFAULT_LINES = 12
#: Never render more than this many lines, however tall the terminal.
MAX_LINES = 60


class JournalTail(Static):
    """The newest journal rows that fit the widget's height."""

    DEFAULT_CSS = """
    JournalTail {
        width: 1fr;
        height: 1fr;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._rows: list[JournalRow] = []
        self._key: tuple[int, int, int] | None = None
        self.shown_seqs: list[int] = []
        """Seqs of the rows on screen, oldest first (tests check the newest are shown)."""

    def set_rows(self, rows: Reversible[JournalRow]) -> bool:
        """Show the newest of ``rows`` (oldest first); re-renders only on new events or resize.

        Args:
            rows: The journal, oldest first (a list or the state's deque); only the last
                ``MAX_LINES`` are read, from the end, so a 5000-row deque costs nothing.
        """
        self._rows = list(islice(reversed(rows), MAX_LINES))[::-1]
        return self._render_tail()

    def on_resize(self, _event: events.Resize) -> None:
        self._render_tail()

    def _render_tail(self) -> bool:
        height = self.size.height or DEFAULT_LINES
        last = int(self._rows[-1]["seq"]) if self._rows else 0
        key = (last, len(self._rows), height)
        if key == self._key:
            return False
        self._key = key
        shown = self._rows[-height:]
        self.shown_seqs = [int(r["seq"]) for r in shown]
        if not shown:
            self.update(Content.styled("no journal events yet", "$foreground-muted"))
            return True
        self.update(Content("\n").join(self._line(r) for r in shown))
        return True

    @staticmethod
    def _line(row: JournalRow) -> Content:
        table = text_or_blank(row.get("table"), 16)
        event = text_or_blank(row.get("event"), 32)
        kind = f"{table}/{event}"
        return Content.assemble(
            (time_text(float(row.get("wall", 0.0)), millis=False), "$foreground-muted"),
            "  ",
            (table, table_style(table)),
            ("/", "$foreground-muted"),
            (event, event_style(table, event)),
            " " * max(1, 28 - len(kind)),
            (short_label(row["peer"]) if row.get("peer") else "").ljust(16),
            "  ",
            (text_or_blank(row.get("service"), 16).ljust(11), "$secondary"),
            " ",
            (fields_text(row.get("fields")), "$foreground-muted"),
        )
