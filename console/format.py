"""Formatting helpers shared by every view. Peer-supplied strings go through :func:`clean`
before display, so a hostile peer cannot inject terminal escape sequences or markup."""

from __future__ import annotations

import time

_CONTROL = {i: None for i in range(32)} | {127: None}


def clean(value: object, limit: int = 120) -> str:
    """Printable text only: control characters dropped, length bounded."""
    text = str(value).translate(_CONTROL)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        if unit != "B" and value < 10:
            return f"{value:.1f}{unit}"
        if value < 1000:
            return f"{value:.0f}{unit}"
        value /= 1024
    return f"{value:.1f}T" if value < 10 else f"{value:.0f}T"


def clock(wall: float) -> str:
    """Wall-clock time of day, UTC, as the journal shows it."""
    return time.strftime("%H:%M:%S", time.gmtime(wall))


STATE_GLYPHS = {"running": "●", "parked": "⏸", "exited": "◌", "panicked": "✖"}
STATE_STYLES = {"running": "green", "parked": "yellow", "exited": "dim", "panicked": "bold red"}
