"""The replay's "go to a time" prompt (``g``) and the time forms it understands.

An operator arrives with a time from somewhere else: a CI log line ("failed at 1:02:13
into the run"), a wall-clock time from an alert, or "a bit before here". So the prompt takes
an offset from the start (``1:02:13``, ``12:30``, ``90``), a wall-clock time of day in UTC
(``14:03:27Z``, as the timeline shows it), a move from the position (``+30``, ``-1:00``),
or a fraction (``50%``). A mistake is said under the prompt, which stays open.
"""

from __future__ import annotations

import calendar
import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

__all__ = ["GotoScreen", "parse_goto"]

FORMS = "1:02:13, 12:30 or 90 (from the start), 14:03:27Z (UTC), +30 or -1:00, 50%"


def _seconds(text: str) -> float:
    """``h:mm:ss``, ``m:ss`` or ``s`` as seconds; ValueError otherwise."""
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise ValueError(text)
    total = 0.0
    for part in parts:
        value = float(part)
        if value < 0:
            raise ValueError(text)
        total = total * 60 + value
    return total


def parse_goto(text: str, *, position: float, start: float, end: float, wall: bool = True) -> float:
    """The recording time ``text`` names (clamped to the recording). ``wall``: positions
    are wall-clock times; a trace's are not, so a UTC time of day means nothing there.

    Raises:
        ValueError: With a sentence saying which forms are understood.
    """
    raw = text.strip()
    if not wall and raw[-1:] in ("z", "Z"):
        raise ValueError(
            f"a trace holds no wall-clock time: {raw!r} cannot be found in it "
            "(try a time from its start, +/- a move, or a %)"
        )
    try:
        if raw.endswith("%"):
            t = start + (end - start) * float(raw[:-1]) / 100
        elif raw[:1] in "+-" and raw:
            delta = _seconds(raw[1:])
            t = position + (delta if raw[0] == "+" else -delta)
        elif raw[-1:] in "zZ" and raw:
            day = calendar.timegm((*time.gmtime(position)[:3], 0, 0, 0))
            t = day + _seconds(raw[:-1])
        else:
            t = start + _seconds(raw)
    except ValueError:
        raise ValueError(f"not a time: {raw!r} (try {FORMS})") from None
    return min(max(t, start), end)


class GotoScreen(ModalScreen[float | None]):
    """Ask for a time; dismisses with the recording time, or ``None`` on Esc."""

    DEFAULT_CSS = """
    GotoScreen { align: center middle; }
    GotoScreen > Vertical {
        width: 76; max-width: 95%; height: auto;
        border: round $accent; background: $surface; padding: 1 2;
    }
    GotoScreen Label, GotoScreen Static { width: 100%; height: auto; }
    GotoScreen Input { margin-top: 1; }
    GotoScreen #goto-error { color: $error; text-style: bold; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, *, position: float, start: float, end: float, wall: bool = True) -> None:
        super().__init__()
        self.position, self.start, self.end = position, start, end
        self.wall = wall

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]Go to which time?[/b]")
            yield Static(f"{FORMS}. Enter goes, Esc cancels.", markup=False)
            yield Input(placeholder="e.g. 12:30", id="goto-input")
            yield Static("", id="goto-error", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            t = parse_goto(
                event.value,
                position=self.position,
                start=self.start,
                end=self.end,
                wall=self.wall,
            )
        except ValueError as exc:
            self.query_one("#goto-error", Static).update(str(exc))
            return
        self.dismiss(t)

    def action_cancel(self) -> None:
        self.dismiss(None)
