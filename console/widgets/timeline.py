"""The replay's timeline bar: where the replay is in the recording, and where things happened.

Two lines under the status bar of every view while replaying (``zakura replay``):

- the bar: the recording's whole duration across the terminal, the part already played
  drawn heavier, the position as a cursor, and a letter in the mark's theme colour where a
  marked event happened: ``F`` fault injected, ``P`` routine panicked, ``M`` misbehavior
  recorded, ``R`` reorg;
- the line below: playing or paused, the speed, the position and the duration, the wall-clock
  time (UTC) of the position (a trace directory has none: it says so), and how many marks of
  each kind there are.

Clicking the bar seeks there (:class:`TimelineBar.Seek`). Marks share a cell when they are
closer than a cell's worth of time; the first kind in :data:`MARK_ORDER` wins the cell, so a
panic is never hidden by a fault beside it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from textual import events
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

from console.replay import Mark

__all__ = ["MARK_GLYPHS", "TimelineBar", "clock_text", "offset_text"]

#: The letter each mark kind gets on the bar.
MARK_GLYPHS = {"panic": "P", "fault": "F", "misbehavior": "M", "reorg": "R"}
#: What the bar says instead of the wall-clock time in a trace (whose ts has none).
NO_WALL = "trace time, no wall clock"
#: Which kind wins a shared cell: the more serious first.
MARK_ORDER = ("panic", "fault", "misbehavior", "reorg")
#: Each kind's colour: theme tokens, never colours in code.
MARK_STYLES = {
    "panic": "$peer-panicked bold",
    "fault": "$warning bold",
    "misbehavior": "$misbehaving bold",
    "reorg": "$accent bold",
}


def offset_text(seconds: float, long: bool) -> str:
    """``m:ss`` (``h:mm:ss`` when ``long``) of a time since the recording's start."""
    s = max(0, int(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if long else f"{m + 60 * h}:{sec:02d}"


def clock_text(wall: float) -> str:
    """The wall-clock time of a position, in UTC (the same on every machine)."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall))


class TimelineBar(Static):
    """Position, duration and marks of a replay (see the module docstring)."""

    DEFAULT_CSS = """
    TimelineBar {
        height: 2;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    """

    class Seek(Message):
        """The operator clicked the bar: seek to ``t`` (recording time)."""

        def __init__(self, t: float) -> None:
            super().__init__()
            self.t = t

    def __init__(self, *, ascii: bool = False) -> None:
        super().__init__()
        self.ascii = ascii
        self._span = (0.0, 0.0)

    def show(
        self,
        *,
        position: float,
        start: float,
        end: float,
        playing: bool,
        speed: float,
        marks: Sequence[Mark],
        wall: bool = True,
    ) -> None:
        """Draw the bar for this position (cheap: one line of cells and one of text).
        ``wall``: positions are wall-clock times (a recording), not time into a trace."""
        self._span = (start, end)
        width = max(10, (self.content_size.width or self.app.size.width - 2))
        duration = max(end - start, 1e-9)
        cursor = round((position - start) / duration * (width - 1))
        played, rest, head = ("=", "-", "#") if self.ascii else ("━", "─", "◆")
        cells: list[tuple[str, str]] = [
            (played, "$primary") if i < cursor else (rest, "$foreground-muted")
            for i in range(width)
        ]
        winner: dict[int, str] = {}
        for mark in marks:
            i = round((mark.t - start) / duration * (width - 1))
            if 0 <= i < width and (
                i not in winner or MARK_ORDER.index(mark.kind) < MARK_ORDER.index(winner[i])
            ):
                winner[i] = mark.kind
        for i, kind in winner.items():
            cells[i] = (MARK_GLYPHS[kind], MARK_STYLES[kind])
        cells[min(max(cursor, 0), width - 1)] = (head, "$text-primary bold")
        long = end - start >= 3600
        counts = {k: sum(1 for m in marks if m.kind == k) for k in MARK_ORDER}
        state = ("▶ playing" if not self.ascii else "> playing") if playing else "‖ paused"
        if self.ascii and not playing:
            state = "|| paused"
        line: list[tuple[str, str] | str] = [
            (f"{state} x{speed:g}", "bold"),
            "  ",
            (f"{offset_text(position - start, long)} / {offset_text(end - start, long)}", "bold"),
            (f"  {clock_text(position) if wall else NO_WALL}  ", "$foreground-muted"),
        ]
        for kind in MARK_ORDER:
            line += [(MARK_GLYPHS[kind], MARK_STYLES[kind]), f" {counts[kind]} {kind}  "]
        self.update(Content.assemble(*cells, "\n", *line))

    def on_click(self, event: events.Click) -> None:
        """A click on the bar's line seeks to that point of the recording."""
        if event.y != 0:
            return
        start, end = self._span
        width = max(10, self.content_size.width)
        x = min(max(event.x - 1, 0), width - 1)  # the bar starts after the padding
        self.post_message(self.Seek(start + (end - start) * x / (width - 1)))
