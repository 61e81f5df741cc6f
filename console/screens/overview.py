"""The Overview view: the node at a glance.

Top row: who the node is, how connected it is against its targets and caps, and how healthy
its event loop is. Middle: the routines matrix and the peers that just left. Then the sync
area (``#sync-panels``, one row): the header-sync panel once the node reports a chain and the
block-sync panel once it reports block sync, side by side (header sync then folds into one
column, so both fit 120 columns), a placeholder before either (an older node); and the
journal tail.

Every panel compares what it would show with what it shows and re-renders only on a
difference, so a quiet node costs almost nothing per frame.

Small terminals (remote sessions make 80x24 the common case): below :data:`SHORT_BELOW` rows
the panels keep only their top rule (with the title), which gives back a row per panel and a
column per side, the top row shows its four most important lines and no sparkline, so the
journal tail still keeps :data:`JOURNAL_KEEP` lines. Below :data:`NARROW_TOP` columns the
node panel is as narrow as a label and the connection numbers drop their spaces, so no value
is cut; the block-sync panel shows its progress column only (the budget numbers come back
with the width).
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from console.client import Snapshot
from console.format import clean, duration, short_peer
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.block_sync_panel import BAR_WIDTH as BS_BAR_WIDTH
from console.widgets.block_sync_panel import BlockSyncPanel, has_block_sync, stall_lines
from console.widgets.header_sync_panel import (
    COMPACT_BAR_WIDTH,
    LINES,
    HeaderSyncPanel,
    has_header_sync,
)
from console.widgets.journal_tail import JournalTail
from console.widgets.kv_panel import KVPanel, KVRow
from console.widgets.recent_closes import RecentCloses
from console.widgets.routines_matrix import RoutinesMatrix

#: Frames of p99 loop lag kept for the sparkline (30 s at the default 4 Hz).
LAG_HISTORY = 120
#: Loop lag (ms) above which the numbers turn to warning, then error colours.
LAG_WARN_MS = 25.0
LAG_BAD_MS = 100.0

#: Rows that are neither the middle row nor sync-panel content: status bar, footer, the top
#: row, and the borders of the sync panels and of the journal.
FIXED_ROWS = 1 + 1 + 9 + 2 + 2
#: Below this many rows the layout is the short one (see the module docstring): a panel's
#: frame is its top rule only, and the top row shows :data:`SHORT_TOP_LINES` lines. From
#: this height the full layout leaves the sync panels all their lines (and a stall line).
SHORT_BELOW = 34
SHORT_TOP_LINES = 4
#: The same rows in the short layout: the top row is its lines plus its rule, and the sync
#: panels and the journal have one rule each.
SHORT_FIXED_ROWS = 1 + 1 + (SHORT_TOP_LINES + 1) + 1 + 1
#: Below this many columns the top row is narrow (see the module docstring).
NARROW_TOP = 100
#: The journal tail keeps at least this many lines: the sync panels shorten first (each
#: panel's rows are ordered most important first), down to :data:`MIN_SYNC_LINES`.
JOURNAL_KEEP = 6
MIN_SYNC_LINES = 2
#: Below this many columns the sync panels, side by side, leave out their progress bars: the
#: percentage and the ETA are what must not be cut.
NARROW_WIDTH = 110

SYNC_PLACEHOLDER = "header-sync and block-sync panels appear here once those services run"
HEADER_SYNC_TITLE = "header sync"
BLOCK_SYNC_TITLE = "block sync"


def lag_style(ms: float) -> str:
    if ms >= LAG_BAD_MS:
        return "$error bold"
    if ms >= LAG_WARN_MS:
        return "$warning bold"
    return ""


def node_rows(snap: Snapshot, *, short: bool = False, narrow: bool = False) -> list[KVRow]:
    """Who the node is. ``short``: the four lines the status bar and the header-sync panel
    do not say (uptime is in the first, the network in the second); ``narrow``: the label
    without its constant ``peer:`` prefix, so it is whole in a narrow panel."""
    node = snap["node"]
    faults = bool(node.get("allow_faults"))
    label = short_peer(node.get("label")) if narrow else clean(node.get("label"), 40)
    rows: dict[str, KVRow] = {
        "label": ("label", label, "bold"),
        "listen": ("listen", clean(node.get("listen") or "-", 60), ""),
        "network": ("network", clean(node.get("network") or "-", 30), ""),
        "uptime": ("uptime", duration(float(node.get("uptime_s") or 0.0)), ""),
        "faults": (
            "faults",
            "allowed" if faults else "refused",
            "$warning" if faults else "$foreground-muted",
        ),
        "api": (
            "api",
            clean(node.get("api") or "off", 60),
            "" if node.get("api") else "$foreground-muted",
        ),
    }
    order = ("label", "listen", "faults", "api") if short else tuple(rows)
    return [rows[name] for name in order]


def connection_rows(snap: Snapshot, *, narrow: bool = False) -> list[KVRow]:
    """Peers against the target and the caps, most important first; ``narrow`` writes
    ``8/8`` for ``8 / 8`` so every value is whole in a narrow panel."""
    t, d = snap["transport"], snap["dialer"]
    connected, target = int(d.get("connected", t["connections"])), int(d.get("target", 0))
    pending, max_pending = int(t["pending_handshakes"]), int(t["max_pending_handshakes"])
    conns, max_conns = int(t["connections"]), int(t["max_connections"])
    of = "/" if narrow else " / "
    return [
        (
            "peers",
            f"{connected}{of}{target} target",
            "$peer-ok bold" if connected >= target else "$peer-parked bold",
        ),
        ("in / out", f"{t['inbound']}{of}{t['outbound']}", ""),
        ("capacity", f"{conns}{of}{max_conns} max", "$warning" if conns >= max_conns else ""),
        (
            "handshakes",
            f"{pending}{of}{max_pending} pending",
            "$warning" if pending >= max_pending else "",
        ),
        ("dialing", f"{d.get('in_flight', 0)} (book {d.get('book_size', 0)})", ""),
    ]


def lag_rows(lag: dict[str, Any]) -> list[KVRow]:
    if not lag.get("samples"):
        return [("loop lag", "no samples yet", "$foreground-muted")]
    rows: list[KVRow] = []
    for name in ("p50", "p99", "max"):
        ms = float(lag.get(f"{name}_ms") or 0.0)
        rows.append((f"lag {name}", f"{ms:.1f} ms", lag_style(ms)))
    return rows


def counter_rows(snap: Snapshot) -> list[KVRow]:
    counters = snap.get("counters") or {}
    panics = int(counters.get("panics") or 0)
    dropped = int(counters.get("trace_rows_dropped") or 0)
    return [
        ("panics", str(panics), "$peer-panicked bold" if panics else "$foreground-muted"),
        ("trace dropped", str(dropped), "$warning" if dropped else "$foreground-muted"),
    ]


class OverviewScreen(ConsoleScreen):
    """Panels over the latest snapshot, and the journal tail."""

    VIEW_TITLE = "Overview"
    DEFAULT_CSS = """
    OverviewScreen .panel {
        width: 1fr;
        height: 100%;
        border: round $foreground 30%;
        border-title-color: $primary;
        border-title-style: bold;
        border-subtitle-color: $foreground-muted;
        padding: 0 1;
    }
    OverviewScreen #ov-top {
        height: 9;
    }
    OverviewScreen #ov-mid {
        height: 7;
    }
    OverviewScreen #ov-node {
        min-width: 34;
    }
    OverviewScreen #ov-routines {
        width: auto;
    }
    OverviewScreen #ov-lag-spark {
        height: 2;
        margin: 0 0 0 0;
    }
    OverviewScreen #ov-lag-spark > .sparkline--max-color {
        color: $warning;
    }
    OverviewScreen #ov-lag-spark > .sparkline--min-color {
        color: $success;
    }
    OverviewScreen #sync-panels {
        height: auto;
        layout: horizontal;
    }
    OverviewScreen #ov-header-sync {
        height: auto;
        display: none;
    }
    OverviewScreen #ov-block-sync {
        height: auto;
        display: none;
    }
    OverviewScreen #sync-panels.-header-sync #ov-header-sync,
    OverviewScreen #sync-panels.-block-sync #ov-block-sync {
        display: block;
    }
    OverviewScreen #sync-panels.-header-sync #sync-placeholder,
    OverviewScreen #sync-panels.-block-sync #sync-placeholder {
        display: none;
    }
    /* Side by side: header sync is one column then, block sync has two. */
    OverviewScreen #sync-panels.-block-sync #ov-header-sync {
        width: 5fr;
    }
    OverviewScreen #sync-panels.-header-sync #ov-block-sync {
        width: 8fr;
    }
    OverviewScreen #sync-placeholder {
        width: 1fr;
        height: 3;
        border: dashed $foreground 30%;
        border-title-color: $foreground-muted;
        color: $foreground-muted;
        text-style: italic;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    OverviewScreen #ov-journal {
        height: 1fr;
        min-height: 4;
    }
    /* Short terminals: a panel's frame is its top rule (with the title) only. */
    OverviewScreen.-short .panel {
        border: none;
        border-top: solid $foreground 30%;
        border-title-align: left;
    }
    OverviewScreen.-short #ov-top {
        height: 5;
    }
    OverviewScreen.-short #ov-lag-spark {
        display: none;
    }
    OverviewScreen.-short #sync-placeholder {
        height: 2;
        border: none;
        border-top: dashed $foreground 30%;
    }
    /* Narrow terminals: the node panel as wide as its values, the rest shares the row. */
    OverviewScreen.-narrow #ov-node {
        min-width: 0;
        width: 26;
    }
    OverviewScreen.-narrow #sync-panels.-block-sync #ov-header-sync {
        width: 32;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._lag_drawn: list[float] = []

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="ov-top"):
            with Vertical(classes="panel", id="ov-node") as box:
                box.border_title = "node"
                yield KVPanel(id="ov-node-kv")
            with Vertical(classes="panel", id="ov-conns") as box:
                box.border_title = "connections"
                yield KVPanel(id="ov-conns-kv")
            with Vertical(classes="panel", id="ov-runtime") as box:
                box.border_title = "event loop"
                box.border_subtitle = "p99 history"
                yield KVPanel(key_width=13, id="ov-lag-kv")
                yield Sparkline([], id="ov-lag-spark")
                yield KVPanel(key_width=13, id="ov-counters-kv")
        with Horizontal(id="ov-mid"):
            with Vertical(classes="panel", id="ov-routines") as box:
                box.border_title = "routines (service x state)"
                yield RoutinesMatrix(id="ov-matrix")
            with Vertical(classes="panel", id="ov-closed") as box:
                box.border_title = "recently closed"
                yield RecentCloses(id="ov-closes")
        with Horizontal(id="sync-panels"):
            placeholder = Static(SYNC_PLACEHOLDER, id="sync-placeholder", markup=False)
            placeholder.border_title = "sync"
            yield placeholder
            with Vertical(classes="panel", id="ov-header-sync") as box:
                box.border_title = HEADER_SYNC_TITLE
                yield HeaderSyncPanel(id="ov-hs")
            with Vertical(classes="panel", id="ov-block-sync") as box:
                box.border_title = BLOCK_SYNC_TITLE
                box.border_subtitle = "rate history"
                yield BlockSyncPanel(id="ov-bs")
        with Vertical(classes="panel", id="ov-journal") as box:
            box.border_title = "journal"
            box.border_subtitle = "newest last - 3 opens the full log"
            yield JournalTail(id="ov-tail")

    def apply(self, state: ConsoleState) -> None:
        snap = state.snapshot
        assert snap is not None
        short = self.size.height < SHORT_BELOW
        narrow = self.size.width < NARROW_TOP
        if self.has_class("-short") != short:
            self.set_class(short, "-short")
        if self.has_class("-narrow") != narrow:
            self.set_class(narrow, "-narrow")
        self.query_one("#ov-node-kv", KVPanel).set_rows(node_rows(snap, short=short, narrow=narrow))
        conns = connection_rows(snap, narrow=narrow)
        self.query_one("#ov-conns-kv", KVPanel).set_rows(
            conns[:SHORT_TOP_LINES] if short else conns
        )
        lag = snap.get("loop_lag") or {}
        lag_lines = lag_rows(lag)
        self.query_one("#ov-lag-kv", KVPanel).set_rows(lag_lines)
        self._draw_lag(state)
        counters = counter_rows(snap)
        if short:  # panics, then dropped trace rows, in the lines the lag leaves
            counters = counters[: max(0, SHORT_TOP_LINES - len(lag_lines))]
        self.query_one("#ov-counters-kv", KVPanel).set_rows(counters)
        matrix, closes = self.query_one(RoutinesMatrix), self.query_one(RecentCloses)
        matrix.set_summary(snap.get("routines_summary") or {})
        closes.set_closes(snap.get("recently_closed") or [], float(snap["generated_at"]))
        # The middle row is as tall as its fuller panel: the journal tail gets the rest.
        mid = self.query_one("#ov-mid")
        height = max(matrix.line_count, closes.line_count) + (1 if short else 2)
        if mid.styles.height is None or mid.styles.height.value != height:
            mid.styles.height = height
        self._draw_sync(snap, height)
        self.query_one(JournalTail).set_rows(state.journal)

    def _draw_sync(self, snap: Snapshot, mid_height: int) -> None:
        """The header-sync panel when the node reports a chain, the block-sync panel when it
        reports block sync; the placeholder when neither. Their length is what the terminal
        has left once the journal tail keeps :data:`JOURNAL_KEEP` lines."""
        area = self.query_one("#sync-panels")
        shown = has_header_sync(snap)
        blocks = has_block_sync(snap)
        if area.has_class("-header-sync") != shown:
            area.set_class(shown, "-header-sync")
        if area.has_class("-block-sync") != blocks:
            area.set_class(blocks, "-block-sync")
        fixed = SHORT_FIXED_ROWS if self.has_class("-short") else FIXED_ROWS
        spare = self.size.height - fixed - mid_height - JOURNAL_KEEP
        lines = min(max(spare, MIN_SYNC_LINES), LINES)
        narrow = self.size.width < NARROW_WIDTH
        stall = 0
        if blocks:
            # A block-sync stall is a line of its own over the columns, and the most
            # important one: it takes a line from them, never from the journal tail.
            stall = stall_lines(snap)
            lines = max(lines - stall, 1)
            spare -= stall
        # Block sync puts a line of sparklines under its columns when there is room for it;
        # header sync is one column next to it and takes that line too.
        sparklines = spare > LINES
        if blocks:
            self.query_one(BlockSyncPanel).set_snapshot(
                snap,
                lines,
                sparklines=sparklines,
                bar_width=0 if narrow else BS_BAR_WIDTH,
                budget=self.size.width >= NARROW_TOP,
            )
        if shown:
            extra = (1 if blocks and sparklines else 0) + stall
            self.query_one(HeaderSyncPanel).set_snapshot(
                snap,
                lines + extra,
                compact=blocks,
                bar_width=0 if narrow else COMPACT_BAR_WIDTH,
            )
            network = clean((snap.get("chain") or {}).get("network") or "", 30)
            box = self.query_one("#ov-header-sync")
            subtitle = f"network {network}" if network else ""
            if box.border_subtitle != subtitle:
                box.border_subtitle = subtitle

    def on_resize(self) -> None:
        """The sync panels' length depends on the terminal height."""
        self.refresh_view()

    def _draw_lag(self, state: ConsoleState) -> None:
        # The history is the app's (one point per frame, whatever view is visible).
        # Sparkline.data is reactive: only a new list is noticed. One point would render as a
        # full block, which reads as "maximum lag"; wait for a second one to draw a trend.
        history = list(state.lag_p99)
        if len(history) >= 2 and history != self._lag_drawn:
            self._lag_drawn = history
            self.query_one(Sparkline).data = history
