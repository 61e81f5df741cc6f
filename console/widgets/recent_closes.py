"""Peers that just left and why: the overview's answer to "who dropped, and was it us?".

Close reasons can come from the remote side (its CLOSE frame), so they are cleaned before
display like every other peer-supplied string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from textual.content import Content
from textual.widgets import Static

from console.format import clean, duration
from console.widgets.journal_format import short_label

#: How many closes the panel lists, newest first.
SHOWN = 5


class RecentCloses(Static):
    """The newest entries of ``snapshot["recently_closed"]``, one line each."""

    DEFAULT_CSS = """
    RecentCloses {
        width: 1fr;
        height: auto;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._key: tuple[tuple[Any, ...], ...] | None = None
        self.line_count = 1
        """Lines shown (at least one: the empty-state line)."""

    def set_closes(
        self, closed: Sequence[Mapping[str, Any]], now: float, shown: int = SHOWN
    ) -> bool:
        """Show the newest ``shown`` closes, aged against ``now`` (the snapshot's time).

        Returns:
            Whether the display changed.
        """
        newest = list(reversed(closed[-shown:])) if shown else []
        key = tuple(
            (c.get("conn_id"), c.get("closed_at"), c.get("reason"), self._ago(c, now))
            for c in newest
        )
        if key == self._key:
            return False
        self._key = key
        self.line_count = max(1, len(newest))
        if not newest:
            self.update(Content.styled("no peer has left yet", "$foreground-muted"))
            return True
        self.update(Content("\n").join(self._line(c, now) for c in newest))
        return True

    @staticmethod
    def _ago(c: Mapping[str, Any], now: float) -> str:
        return duration(now - float(c.get("closed_at") or now)) + " ago"

    @classmethod
    def _line(cls, c: Mapping[str, Any], now: float) -> Content:
        by = clean(c.get("by") or "?", 12)
        return Content.assemble(
            (cls._ago(c, now).rjust(9), "$foreground-muted"),
            "  ",
            (short_label(c.get("label")).ljust(16), ""),
            "  ",
            (clean(c.get("reason") or "-", 60), "$warning" if by == "remote" else "$accent"),
            (f"  {by}, {clean(c.get('direction') or '?', 10)}", "$foreground-muted"),
        )
