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

#: Cells of the progress bar (header tip / target), and in the one-column (compact) form.
BAR_WIDTH = 16
COMPACT_BAR_WIDTH = 10
NO_VALUE = "—"
#: Lines per column normally, and on a short terminal (the journal tail keeps its room).
LINES = 4
SHORT_LINES = 3
MUTED = "$foreground-muted"


def number(value: object) -> str:
    """``12,400``; ``—`` for a missing or malformed number."""
    if value is None or isinstance(value, bool):
        return NO_VALUE
    try:
        return f"{int(value):,}"  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return NO_VALUE


def tip_height(tip: object) -> int | None:
    if isinstance(tip, Mapping):
        try:
            return int(tip.get("height"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
    return None


def _of(value: object, capacity: object) -> str:
    return f"{number(value)}/{number(capacity)}" if capacity is not None else number(value)


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``██████░░░░ 62.0%``: eighths of a cell would flicker on every header; whole cells
    and a percentage are enough to read at a glance. ``width`` 0 is the percentage alone
    (a narrow panel)."""
    fraction = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
    if width <= 0:
        return f"{fraction * 100:.1f}%"
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
    header, target = tip_height(chain.get("header_tip")), chain.get("target")
    rows: list[KVRow] = [("header tip", f"{number(header)} of {number(target)}", "bold")]
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
    verified = number(tip_height(chain.get("verified_tip")))
    rows.append(("verified", f"{verified} · finalized {number(chain.get('finalized_height'))}", ""))
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
            f"fwd {number(rq.get('forward'))} · back {number(rq.get('backward'))}"
            f" · assigned {number(rq.get('assigned'))}",
            "",
        ),
        (
            "reactor",
            f"events {_of(reactor.get('events'), reactor.get('events_max'))}"
            f" · life {number(reactor.get('lifecycle'))}"
            f" · actions {_of(reactor.get('actions'), reactor.get('actions_max'))}",
            "$warning bold" if full else "",
        ),
        (
            "covered",
            f"{number(rq.get('covered_to'))} ({number(rq.get('covered_intervals'))} intervals)",
            "",
        ),
        (
            "commits",
            f"{number(hs.get('pending_commits'))} pending"
            f" · {number(hs.get('committed_total'))} done · seen {number(hs.get('seen_cache'))}",
            "",
        ),
    ]


def _reorgs_row(reorgs: object, abandoned: object) -> KVRow:
    """Reorgs, and the header chains given up because no peer served their bodies (issue
    16): both are the header tip moving back. Abandoned is left out for a node that does
    not report it."""
    text = number(reorgs)
    if abandoned is not None:
        text += f" · {number(abandoned)} abandoned"
    alarm = bool(reorgs) or (isinstance(abandoned, int) and abandoned > 0)
    return ("reorgs", text, "$warning bold" if alarm else "")


def peer_rows(hs: Mapping[str, Any]) -> list[KVRow]:
    """Peers that sent a status, parked ones, a candidate branch, reorgs, the anchor."""
    parked = hs.get("parked")
    anchor = hs.get("anchor") or {}
    reorgs = hs.get("reorgs")
    candidate = hs.get("candidate")
    if isinstance(candidate, Mapping):
        branch: KVRow = (
            "candidate",
            f"fork {number(candidate.get('fork_height'))}"
            f" → tip {number(candidate.get('tip_height'))}"
            f" from {clean(candidate.get('peer') or '?', 40)}",
            "$warning",
        )
    else:
        branch = ("candidate", "none", MUTED)
    anchor_hash = clean(anchor.get("hash") or "", 80)[:12]
    return [
        (
            "peers",
            f"{number(hs.get('peers_with_status'))}/{number(hs.get('peers'))} with status"
            f" · {number(parked)} parked",
            "$peer-parked" if parked else "",
        ),
        branch,
        _reorgs_row(reorgs, hs.get("abandoned")),
        ("anchor", f"{number(anchor.get('height'))} {anchor_hash}".rstrip(), ""),
    ]


def compact_rows(snap: Mapping[str, Any], bar_width: int = COMPACT_BAR_WIDTH) -> list[KVRow]:
    """One column for when the panel shares its row with block sync: the chain's progress
    (ETA on the bar's line, the bar shorter), the peers line (a candidate branch takes its
    place: that is what an operator must see), and reorgs with abandoned header chains (the
    header tip moving back). Verified and finalized heights are the block-sync panel's to
    show then, and the range queue, idle once headers are at the tip, is left out."""
    chain = snap.get("chain") or {}
    hs = snap.get("header_sync") or {}
    full = chain_rows(snap)
    header, total = tip_height(chain.get("header_tip")), chain.get("target")
    rate = hs.get("headers_per_s")
    progress = full[1]
    if header is not None and isinstance(total, int) and total > 0:
        bar = progress_bar(header, total, bar_width)
        eta = eta_text(total - header, float(rate or 0.0))
        progress = ("progress", f"{bar} · {eta}", progress[2])
    speed: KVRow = (
        ("speed", NO_VALUE, MUTED)
        if rate is None
        else ("speed", f"{float(rate):,.1f} headers/s", "")
    )
    peers, branch, reorgs = peer_rows(hs)[:3]
    if branch[2] == MUTED:  # no candidate branch: the peers line
        branch = peers
    return [full[0], progress, speed, branch, reorgs]


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
    HeaderSyncPanel.-compact #hs-queues, HeaderSyncPanel.-compact #hs-peers {
        display: none;
    }
    HeaderSyncPanel.-compact KVPanel {
        margin-right: 0;
    }
    """

    def compose(self) -> ComposeResult:
        yield KVPanel(key_width=10, id="hs-chain")
        yield KVPanel(key_width=7, id="hs-queues")
        yield KVPanel(key_width=9, id="hs-peers")

    def set_snapshot(
        self,
        snap: Mapping[str, Any],
        lines: int = LINES,
        *,
        compact: bool = False,
        bar_width: int = COMPACT_BAR_WIDTH,
    ) -> bool:
        """Show ``snap``, the first ``lines`` rows of each column; returns whether any line
        changed. ``compact`` shows one column (:func:`compact_rows`, its bar ``bar_width``
        cells): the panel then shares the sync row with block sync."""
        if self.has_class("-compact") != compact:
            self.set_class(compact, "-compact")
        if compact:
            return self.query_one("#hs-chain", KVPanel).set_rows(
                compact_rows(snap, bar_width)[:lines]
            )
        hs = snap.get("header_sync") or {}
        changed = self.query_one("#hs-chain", KVPanel).set_rows(chain_rows(snap)[:lines])
        changed |= self.query_one("#hs-queues", KVPanel).set_rows(queue_rows(hs)[:lines])
        changed |= self.query_one("#hs-peers", KVPanel).set_rows(peer_rows(hs)[:lines])
        return changed
