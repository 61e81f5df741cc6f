"""What a view that draws snapshots shows in the replay of a trace directory.

A trace directory (``zakura node --trace-dir``) holds the node's journal rows, table by
table, and nothing else: no snapshot of peers, routines, tips, parked peers, misbehavior
records, diagnostics or chart numbers. Such a view would otherwise show empty panels, which
read as "the node had no peers"; this notice says what is missing, where the rows are, and
what would have the rest (a recording made with ``--record``).
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

__all__ = ["JournalOnlyNotice", "notice_text"]


def notice_text(view: str) -> str:
    """The notice for ``view`` (its title), plain text."""
    return (
        "A trace directory holds journal rows only. "
        f"The {view} view draws the node's snapshots, which a trace does not hold "
        "(a recording made with --record does). "
        "The Journal view (3) shows the trace's rows; the timeline, seeking and n / N "
        "work on every view."
    )


class JournalOnlyNotice(Static):
    """One paragraph in the middle of the view, in place of its panels."""

    DEFAULT_CSS = """
    JournalOnlyNotice {
        width: 1fr;
        height: 1fr;
        content-align: center middle;
        text-align: center;
        padding: 1 4;
        color: $foreground;
    }
    """

    def __init__(self, view: str) -> None:
        super().__init__(Content(notice_text(view or "this")))
        self.view = view
