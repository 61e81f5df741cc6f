"""The Overview's header-sync panel: how far the header chain is, how fast it moves, and what
the sync machinery (range queue, reactor queues, peers) is doing.

Three :class:`~console.widgets.kv_panel.KVPanel` columns, so like every overview panel it
re-renders only a line that changed. The rows are plain functions of the snapshot, and every
field may be missing (a node from before header sync): missing numbers show as ``—``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal

from console.format import clean, duration
from console.widgets.kv_panel import KVPanel, KVRow

#: Cells of the progress bar (header tip / target).
BAR_WIDTH = 16
NO_VALUE = "—"
#: Lines per column normally, and on a short terminal (the journal tail keeps its room).
LINES = 4
SHORT_LINES = 3
MUTED = "$foreground-muted"


def _num(value: object) -> str:
    """``12,400``; ``—`` for a missing or malformed number."""
    if value is None or isinstance(value, bool):
        return NO_VALUE
    try:
        return f"{int(value):,}"  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return NO_VALUE


def _height(tip: object) -> int | None:
    if isinstance(tip, Mapping):
        try:
            return int(tip.get("height"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
    return None


def _of(value: object, capacity: object) -> str:
    return f"{_num(value)}/{_num(capacity)}" if capacity is not None else _num(value)


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``██████░░░░ 62.0%``: eighths of a cell would flicker on every header; whole cells
    and a percentage are enough to read at a glance."""
    fraction = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
    full = int(fraction * width)
    return "█" * full + "░" * (width - full) + f" {fraction * 100:5.1f}%"


def eta_text(remaining: int, rate: float) -> str:
    if remaining <= 0:
        return "at target"
    if rate <= 0:
        return f"ETA {NO_VALUE}"
    return f"ETA {duration(remaining / rate)}"


def chain_rows(snap: Mapping[str, Any]) -> list[KVRow]:
    """Header tip against target, progress and speed, verified and finalized heights.

    Every row list is ordered most important first: a short terminal shows only the first
    :data:`SHORT_LINES` of each (see :meth:`HeaderSyncPanel.set_snapshot`)."""
    chain = snap.get("chain") or {}
    hs = snap.get("header_sync") or {}
    header, target = _height(chain.get("header_tip")), chain.get("target")
    rows: list[KVRow] = [("header tip", f"{_num(header)} of {_num(target)}", "bold")]
    try:
        total = int(target)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        total = 0
    if header is None or total <= 0:
        rows.append(("progress", NO_VALUE, MUTED))
    else:
        done = header >= total
        rows.append(("progress", progress_bar(header, total), "$success" if done else "$primary"))
    rate = hs.get("headers_per_s")
    if rate is None:
        rows.append(("speed", NO_VALUE, MUTED))
    else:
        remaining = total - header if header is not None and total > 0 else 0
        speed = f"{float(rate):,.1f} headers/s · {eta_text(remaining, float(rate))}"
        rows.append(("speed", speed, ""))
    verified = _num(_height(chain.get("verified_tip")))
    rows.append(("verified", f"{verified} · finalized {_num(chain.get('finalized_height'))}", ""))
    return rows


def queue_rows(hs: Mapping[str, Any]) -> list[KVRow]:
    """The shared range queue and the reactor's queues (a full reactor queue is trouble)."""
    rq = hs.get("range_queue") or {}
    reactor = hs.get("reactor") or {}
    full = any(
        reactor.get(k) is not None and reactor.get(k) == reactor.get(f"{k}_max")
        for k in ("events", "actions")
    )
    return [
        (
            "ranges",
            f"fwd {_num(rq.get('forward'))} · back {_num(rq.get('backward'))}"
            f" · assigned {_num(rq.get('assigned'))}",
            "",
        ),
        (
            "reactor",
            f"events {_of(reactor.get('events'), reactor.get('events_max'))}"
            f" · life {_num(reactor.get('lifecycle'))}"
            f" · actions {_of(reactor.get('actions'), reactor.get('actions_max'))}",
            "$warning bold" if full else "",
        ),
        (
            "covered",
            f"{_num(rq.get('covered_to'))} ({_num(rq.get('covered_intervals'))} intervals)",
            "",
        ),
        (
            "commits",
            f"{_num(hs.get('pending_commits'))} pending · {_num(hs.get('committed_total'))} done"
            f" · seen {_num(hs.get('seen_cache'))}",
            "",
        ),
    ]


def peer_rows(hs: Mapping[str, Any]) -> list[KVRow]:
    """Peers that sent a status, parked ones, a candidate branch, reorgs, the anchor."""
    parked = hs.get("parked")
    anchor = hs.get("anchor") or {}
    reorgs = hs.get("reorgs")
    candidate = hs.get("candidate")
    if isinstance(candidate, Mapping):
        branch: KVRow = (
            "candidate",
            f"fork {_num(candidate.get('fork_height'))} → tip {_num(candidate.get('tip_height'))}"
            f" from {clean(candidate.get('peer') or '?', 40)}",
            "$warning",
        )
    else:
        branch = ("candidate", "none", MUTED)
    anchor_hash = clean(anchor.get("hash") or "", 80)[:12]
    return [
        (
            "peers",
            f"{_num(hs.get('peers_with_status'))}/{_num(hs.get('peers'))} with status"
            f" · {_num(parked)} parked",
            "$peer-parked" if parked else "",
        ),
        branch,
        ("reorgs", _num(reorgs), "$warning bold" if reorgs else ""),
        ("anchor", f"{_num(anchor.get('height'))} {anchor_hash}".rstrip(), ""),
    ]


def has_header_sync(snap: Mapping[str, Any]) -> bool:
    """Whether the snapshot says anything the panel can show (older nodes say nothing)."""
    return bool(snap.get("chain") or snap.get("header_sync"))


class HeaderSyncPanel(Horizontal):
    """Three aligned columns: chain progress, queues, peers. Call :meth:`set_snapshot`."""

    DEFAULT_CSS = """
    HeaderSyncPanel {
        height: auto;
    }
    HeaderSyncPanel KVPanel {
        margin-right: 1;
    }
    HeaderSyncPanel #hs-chain, HeaderSyncPanel #hs-peers {
        width: 10fr;
    }
    HeaderSyncPanel #hs-queues {
        width: 12fr;
    }
    """

    def compose(self) -> ComposeResult:
        yield KVPanel(key_width=10, id="hs-chain")
        yield KVPanel(key_width=7, id="hs-queues")
        yield KVPanel(key_width=9, id="hs-peers")

    def set_snapshot(self, snap: Mapping[str, Any], lines: int = LINES) -> bool:
        """Show ``snap``, the first ``lines`` rows of each column; returns whether any line
        changed."""
        hs = snap.get("header_sync") or {}
        changed = self.query_one("#hs-chain", KVPanel).set_rows(chain_rows(snap)[:lines])
        changed |= self.query_one("#hs-queues", KVPanel).set_rows(queue_rows(hs)[:lines])
        changed |= self.query_one("#hs-peers", KVPanel).set_rows(peer_rows(hs)[:lines])
        return changed
