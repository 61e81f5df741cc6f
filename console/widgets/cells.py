"""What a table cell is before it is drawn, and the small rules every cell of the Peers view
follows: shared by the row model (:mod:`console.widgets.peer_rows`), its block-sync columns
(:mod:`console.widgets.block_sync_cells`) and the table that draws them
(:mod:`console.widgets.line_table`).

No Textual here: a cell is a plain ``(text, style)`` tuple, so a frame's cells compare cheaply
with the last frame's, and the row model can be read and measured without a widget.
"""

from __future__ import annotations

from dataclasses import dataclass

from console.format import rate_text

#: A cell before it is drawn: (text, Rich style). Cheap to compare frame to frame.
Cell = tuple[str, str]

#: Shown in a sync column of a live peer the snapshot says nothing about.
NO_VALUE = "—"


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One column: its key, header, fixed width, and whether numbers align right."""

    key: str
    title: str
    width: int
    right: bool = False


def doc_int(value: object) -> int | None:
    """An int from a document field; ``None`` for missing or malformed (never raises)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError, OverflowError):
        return None


def doc_float(value: object) -> float | None:
    """A float from a document field; ``None`` for missing or malformed (never raises)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def unreported(count: int, live: bool, dim: str) -> list[Cell]:
    """``count`` cells of a routine the peer does not report: ``—`` on a live peer (it has
    none, or an older node), blank on a closed row (it has no routines any more)."""
    return [(NO_VALUE, "dim") if live else ("", dim)] * count


def rate_cell(rate: float, dim: str) -> Cell:
    """A byte rate with its unit (``16K/s``); an idle one (0) is dimmed."""
    return (rate_text(rate), "dim" if rate <= 0 else dim)
