"""The Peers view's block-sync columns: what a peer's ``block_sync`` routine reports, reduced
to four short cells (heights outstanding, window, delivery rate, why the last fill stopped).

Kept out of :mod:`console.widgets.peer_rows` so the row model stays about rows; like it, no
Textual here. The cells are a plain tuple, so the row builder can put them in its reuse key
and an unchanged peer costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from console.format import clean
from console.widgets.cells import NO_VALUE, Cell, doc_float, doc_int, rate_cell, unreported

#: A peer's block-sync numbers: outstanding heights, cwnd, whether the window is proven,
#: delivery rate (bytes/s), the last fill-stop reason. ``None`` where not reported.
BlockSyncCells = tuple[int | None, int | None, bool | None, float | None, str | None]

#: The fill-stop reasons of ``BlockSyncRoutine._fill`` as at most six characters (the width
#: budget); the detail view shows the full reason. Unknown reasons are cut to six.
STOP_ABBREVIATIONS = {
    "no_status": "nostat",
    "no_work": "nowork",
    "retry_avoid": "avoid",
    "cwnd_saturated": "cwnd",
    "lookahead_cap": "ahead",
    "inflight_budget": "budget",
    "outbound_full": "outq",
    "send_error": "sndErr",
    "retry_backoff": "retry",
    "other_chain": "other",
}
#: Stops worth a colour: the byte budget or a full send queue hold this peer back, it is held
#: back after requests without progress, or it serves another chain (yellow); a send failed
#: (red). A saturated window is the normal state of a busy peer.
STOP_STYLES = {
    "inflight_budget": "yellow",
    "outbound_full": "yellow",
    "retry_backoff": "yellow",
    "other_chain": "yellow",
    "send_error": "bold red",
}
#: A window at this many blocks or fewer, with blocks outstanding, is at its floor: a slow
#: or unreliable peer.
SLOW_CWND = 4


def block_sync_cells(routines: Any) -> BlockSyncCells | None:
    """The numbers of the peer's (newest) ``block_sync`` routine, if it reports any."""
    found: Mapping[str, Any] | None = None
    for r in routines or ():
        if r.get("service") == "block_sync" and isinstance(r.get("block_sync"), Mapping):
            found = r["block_sync"]
    if found is None:
        return None
    window = found.get("window")
    window = window if isinstance(window, Mapping) else {}
    proven = window.get("proven")
    rate = found.get("delivery_rate")
    if rate is None:
        rate = window.get("delivery_bytes_per_s")
    stop = found.get("fill_stop")
    return (
        doc_int(found.get("outstanding")),
        doc_int(window.get("cwnd")),
        None if proven is None else bool(proven),
        doc_float(rate),
        None if stop is None else clean(stop, 40),
    )


def stop_text(reason: str) -> str:
    return STOP_ABBREVIATIONS.get(reason, reason[:6])


def block_sync_row_cells(bs: BlockSyncCells | None, live: bool, dim: str) -> list[Cell]:
    """``out``, ``cwnd``, ``rate``, ``stop``. A live peer without the routine shows ``—``; a
    closed row shows nothing (it has no routines). The rate carries its unit, as the
    ``in/s`` column's does."""
    if bs is None:
        return unreported(4, live, dim)
    outstanding, cwnd, proven, rate, stop = bs
    out: Cell = (NO_VALUE, "dim") if outstanding is None else (str(outstanding), dim)
    if outstanding == 0:
        out = ("0", "dim")
    if cwnd is None:
        window: Cell = (NO_VALUE, "dim")
    elif proven is False:  # still probing: the window is not earned yet
        window = (str(cwnd), "dim italic")
    else:
        # At its floor while it owes blocks: slow or unreliable. An idle peer's window
        # shrinks to the floor too (nothing to measure), so that one stays plain.
        slow = live and cwnd <= SLOW_CWND and bool(outstanding)
        window = (str(cwnd), "yellow" if slow else dim)
    speed: Cell = (NO_VALUE, "dim") if rate is None else rate_cell(rate, dim)
    reason: Cell = (
        (NO_VALUE, "dim") if stop is None else (stop_text(stop), STOP_STYLES.get(stop, dim))
    )
    return [out, window, speed, reason]


#: Column key -> index into :data:`BlockSyncCells` (the sort uses the raw values).
SORT_INDEX = {"bs_out": 0, "bs_cwnd": 1, "bs_rate": 3, "bs_stop": 4}
