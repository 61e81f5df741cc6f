"""The Peers view's header-sync columns: what a peer's header-sync routine reports, as cells.

Beside :mod:`console.widgets.block_sync_cells` (the block-sync columns) and kept out of
:mod:`console.widgets.peer_rows` for the same reason: one module per concern, each under the
module size limit. No Textual here.
"""

from __future__ import annotations

from typing import Any

from console.widgets.cells import NO_VALUE, Cell, doc_int, unreported

__all__ = ["HeaderSyncCells", "header_sync_cells", "header_sync_row_cells", "queue_style"]


#: A peer's header-sync numbers as the table shows them: queue depth, queue capacity, the
#: range in flight as (start height, count), advertised tip. ``None`` where not reported.
HeaderSyncCells = tuple[int | None, int | None, tuple[int, int] | None, int | None]


def header_sync_cells(routines: Any) -> HeaderSyncCells | None:
    """The numbers of the peer's (newest) ``header_sync`` routine, if it reports any."""
    found = None
    for r in routines or ():
        if r.get("service") == "header_sync" and isinstance(r.get("header_sync"), dict):
            found = r["header_sync"]
    if found is None:
        return None
    flight = found.get("in_flight")
    span = None
    if isinstance(flight, dict):
        span = (doc_int(flight.get("start_height")) or 0, doc_int(flight.get("count")) or 0)
    return (
        doc_int(found.get("queue_depth")),
        doc_int(found.get("queue_max")),
        span,
        doc_int(found.get("advertised_tip")),
    )


def queue_style(depth: int, capacity: int | None) -> str:
    """A command queue near its capacity warns: that peer is about to be parked."""
    if not capacity:
        return ""
    if depth >= capacity * 0.95:
        return "bold red"
    if depth >= capacity * 0.75:
        return "yellow"
    return "dim" if depth == 0 else ""


def header_sync_row_cells(hs: HeaderSyncCells | None, live: bool, dim: str) -> list[Cell]:
    """``queue``, ``flight``, ``tip``: ``—`` where a live peer does not report them."""
    if hs is None:
        return unreported(3, live, dim)
    depth, capacity, flight, tip = hs
    if depth is None:
        queue: Cell = (NO_VALUE, "dim")
    else:
        total = "" if capacity is None else f"/{capacity}"
        queue = (f"{depth}{total}", queue_style(depth, capacity) if live else dim)
    span: Cell = (NO_VALUE, "dim") if flight is None else (f"{flight[0]}+{flight[1]}", dim)
    return [queue, span, (NO_VALUE, "dim") if tip is None else (str(tip), dim)]
