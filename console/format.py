"""Formatting helpers shared by every view. Peer-supplied strings go through :func:`clean`
before display, so a hostile peer cannot inject terminal escape sequences or markup."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

_CONTROL = {i: None for i in range(32)} | {127: None}


def clean(value: object, limit: int = 120) -> str:
    """Printable text only: control characters dropped, length bounded."""
    text = str(value).translate(_CONTROL)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plural(count: int, word: str) -> str:
    """``1 row``, ``0 rows``, ``3 rows``: a count and its noun, which agree."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def compact_size(n: float) -> str:
    """A byte count in at most five characters (``999B``, ``9.9K``, ``12K``, ``1.0M``).

    The table has no room for ``1023.9 KiB``; the detail view shows exact figures.
    """
    value = max(0.0, float(n))
    for unit in "BKMG":
        # Compared after rounding: 9.99 would print as "10.0", 999.7 as "1000".
        if unit != "B" and round(value, 1) < 10:
            return f"{value:.1f}{unit}"
        if round(value) < 1000:
            return f"{value:.0f}{unit}"
        value /= 1024
    return f"{value:.1f}T" if round(value, 1) < 10 else f"{value:.0f}T"


def rate_text(rate: float) -> str:
    """A byte rate with its unit in at most six characters: ``0B/s``, ``999B/s``, ``16K/s``,
    ``1.9M/s``. Every rate the tables show carries it (the detail view has exact figures)."""
    return f"{compact_size(rate)}/s" if rate > 0 else "0B/s"


def clock(wall: float) -> str:
    """Wall-clock time of day, UTC, as the journal shows it."""
    return time.strftime("%H:%M:%S", time.gmtime(wall))


def short_peer(label: object, limit: int = 40) -> str:
    """A peer label without its constant ``peer:`` prefix: the 16 hex digits are what tell
    peers apart, and on an 80-column terminal the five characters are a column's worth."""
    return clean(label, limit).removeprefix("peer:")


#: Routine state glyphs, from the basic geometric shapes (U+25A0-25FF) that common terminal
#: fonts carry: filled (running), half (parked: alive, not working), hollow (exited), square
#: (panicked: stopped hard). ``⏸`` (U+23F8), the old parked glyph, is missing from many fonts
#: and drew as an empty box; colour tells the states apart too, shape alone must not.
STATE_GLYPHS = {"running": "●", "parked": "◐", "exited": "○", "panicked": "■"}
#: ``--ascii``: letters only, for bare terminals and serial consoles.
ASCII_STATE_GLYPHS = {"running": "R", "parked": "P", "exited": "E", "panicked": "X"}
STATE_STYLES = {"running": "green", "parked": "yellow", "exited": "dim", "panicked": "bold red"}


@dataclass(frozen=True, slots=True)
class Glyphs:
    """Every symbol the views draw that a bare terminal might lack, in one place, so
    ``--ascii`` switches all of them: state glyphs, sort arrows, the reconnect mark."""

    states: dict[str, str] = field(default_factory=lambda: dict(STATE_GLYPHS))
    unknown: str = "?"
    sort_up: str = "▲"
    sort_down: str = "▼"
    #: Before the close reason of a peer's previous connection, on the row of a peer that is
    #: already back.
    reconnected: str = "↻"

    def state(self, state: str) -> str:
        return self.states.get(state, self.unknown)


UNICODE_GLYPHS = Glyphs()
ASCII_GLYPHS = Glyphs(
    states=dict(ASCII_STATE_GLYPHS), sort_up="^", sort_down="v", reconnected="back;"
)
