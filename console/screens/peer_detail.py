"""The peer detail view (Enter on a peer): everything the console knows about one peer.

Routines come with their service's own section: the discovery exchange, header sync (below),
block sync (:mod:`console.widgets.block_sync_detail`).

It follows the peer by label and updates on every frame. When the peer leaves, the last data
seen stays on screen under a banner saying when and why the connection closed, so an operator
who just pressed ``d`` or ``p`` can read the aftermath instead of losing the view. ``d`` and
``p`` act on this peer (the app asks :meth:`PeerDetailScreen.selected_peer`).
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static

from console.client import JournalRow, Snapshot
from console.format import STATE_STYLES, clean, clock, duration, size
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.block_sync_detail import block_sync_section
from console.widgets.journal_format import fields_text
from console.widgets.parked_table import reason_text
from node_core.protocol.limits import Capability

#: How many of the peer's journal events the view keeps (newest last).
JOURNAL_ROWS = 30
#: Below this many rows the header is two lines (see :meth:`PeerDetailScreen._header`).
SHORT_BELOW = 30


def _t(value: object, style: str = "", limit: int = 120) -> Text:
    """A table cell: cleaned, never parsed as markup (peer data goes in here)."""
    return Text("" if value is None else clean(value, limit), style=style, no_wrap=False)


def _section(title: str, body: RenderableType | None, empty: str) -> Group:
    heading = Text(title, style="bold")
    if body is None:
        return Group(heading, Text(empty, style="dim italic"), Text(""))
    return Group(heading, body, Text(""))


def _table(*columns: tuple[str, str]) -> Table:
    """A compact table; ``columns`` are (header, justify). Only the last column wraps, so
    times and numbers stay on one line and free text takes what room is left."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=False)
    for i, (header, justify) in enumerate(columns):
        last = i == len(columns) - 1
        table.add_column(header, justify=justify, no_wrap=not last)  # type: ignore[arg-type]
    return table


def capability_names(bits: int) -> str:
    """``0x4 discovery``: the bits as hex and by name (unknown bits stay in the hex)."""
    names = [
        (flag.name or "?").lower()
        for flag in Capability
        if flag.value and bits & flag.value == flag.value
    ]
    return f"{bits:#x} " + (" ".join(names) if names else "none")


def peer_journal(rows: Any, label: str, limit: int = JOURNAL_ROWS) -> list[JournalRow]:
    """The newest ``limit`` journal rows about ``label``, oldest first."""
    found: list[JournalRow] = []
    for row in reversed(rows):
        if row.get("peer") == label:
            found.append(row)
            if len(found) >= limit:
                break
    found.reverse()
    return found


class PeerDetailScreen(ConsoleScreen):
    """Routines, streams, journal and misbehavior of one peer."""

    VIEW_TITLE = "Peers"

    DEFAULT_CSS = """
    PeerDetailScreen #detail-header {
        height: auto;
        padding: 0 1;
        background: $boost;
        border-bottom: hkey $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    PeerDetailScreen {
        overflow: hidden hidden;
    }
    PeerDetailScreen #detail-routines {
        height: auto;
        max-height: 50%;
        padding: 0 1;
    }
    PeerDetailScreen #detail-columns {
        height: 1fr;
        min-height: 5;
    }
    PeerDetailScreen #detail-left {
        width: 1fr;
        padding: 0 1;
    }
    PeerDetailScreen #detail-right {
        width: 1fr;
        padding: 0 1;
        border-left: vkey $panel;
    }
    PeerDetailScreen Static {
        height: auto;
    }
    """

    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
    ]

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self._last_peer: dict[str, Any] | None = None
        self._close_record: dict[str, Any] | None = None
        self._rendered_frame: tuple[int, int, str] | None = None
        self._journal_shown = False

    def compose_body(self) -> ComposeResult:
        yield Static(id="detail-header")
        with VerticalScroll(id="detail-routines"):
            yield Static(id="detail-routines-body")
        with Horizontal(id="detail-columns"):
            with VerticalScroll(id="detail-left"):
                yield Static(id="detail-streams")
                yield Static(id="detail-misbehavior")
            with VerticalScroll(id="detail-right"):
                yield Static(id="detail-journal")

    def selected_peer(self) -> str | None:
        """Actions on this view target its peer (the app re-checks that it is connected)."""
        return self.label

    def detail_peer(self) -> str | None:
        """This view draws its peer's full entry (streams, limits, routine internals)."""
        return self.label

    def action_back(self) -> None:
        self.app.pop_screen()

    # ------------------------------------------------------------------ rendering
    def apply(self, state: ConsoleState) -> None:
        snap = state.snapshot
        assert snap is not None
        key = (state.frames, state.journal_seq, str(id(snap)))
        if key == self._rendered_frame:
            return  # the same frame again (a resume, a paused toggle): nothing to redo
        self._rendered_frame = key
        peer = next((p for p in snap.get("peers") or () if p.get("label") == self.label), None)
        if peer is not None and snap.get("brief") and "streams" not in peer:
            # A brief frame read before the app knew this view was open: this peer's full
            # entry comes with the next one, asked for now (see detail_peer).
            self._rendered_frame = None
            self.console.poll_soon()
            return
        if peer is not None:
            self._last_peer, self._close_record = peer, None
        else:
            closed = [c for c in snap.get("recently_closed") or () if c.get("label") == self.label]
            if closed:
                self._close_record = closed[-1]
        now = float(snap.get("generated_at") or 0.0)
        self.query_one("#detail-header", Static).update(self._header(now, peer is not None))
        self.query_one("#detail-routines-body", Static).update(self._routines(now))
        self.query_one("#detail-streams", Static).update(self._streams())
        self.query_one("#detail-misbehavior", Static).update(self._misbehavior(snap))
        # "newest last": the view opens scrolled to the newest event, and stays there as
        # events arrive unless the operator scrolled up to read older ones.
        journal_box = self.query_one("#detail-right", VerticalScroll)
        follow = not self._journal_shown or journal_box.scroll_y >= journal_box.max_scroll_y
        self.query_one("#detail-journal", Static).update(self._journal(state))
        if follow:
            self._journal_shown = True
            journal_box.call_after_refresh(journal_box.scroll_end, animate=False)

    def _header(self, now: float, live: bool) -> RenderableType:
        """Who the peer is and what it moved, one fact per line, most important first, each
        line cut (never wrapped) at the terminal's edge: identity, bytes and misbehavior, a
        throttle in force, then (not on a short terminal) its limits and node id. A closed
        connection's banner always shows."""
        p = self._last_peer
        first = Text()
        first.append(clean(self.label, 40), style="bold")
        lines = [first]
        if p is None:
            first.append("  not connected", style="bold red")
            if self._close_record is None:
                lines.append(Text("no data about this peer in the current snapshot", style="dim"))
                return _lines(lines)
            p = {}
        first.append(f"  {clean(p.get('direction') or self._close_get('direction'), 12)}")
        first.append(f"  {clean(p.get('addr') or self._close_get('addr'), 60)}")
        if p.get("listen_port"):
            first.append(f" (listens on {clean(p['listen_port'], 8)})", style="dim")
        conn_id = p.get("conn_id") or self._close_get("conn_id")
        first.append(f"  conn {clean(conn_id, 12)}")
        if p.get("connected_at"):
            first.append(
                f"  up {duration(float(p.get('age_s') or 0.0))}"
                f" (since {clock(float(p['connected_at']))})"
            )
        if p:
            lines.append(
                Text(
                    f"bytes in {size(int(p.get('bytes_in') or 0))}"
                    f" · out {size(int(p.get('bytes_out') or 0))}"
                    f" · misbehavior {clean(p.get('misbehavior_count', 0), 12)}"
                )
            )
        throttle = p.get("throttle_bytes_per_s")
        if throttle:
            # An operator throttle (w) is a fault in force: a line of its own, never cut.
            lines.append(
                Text(
                    f"reads throttled to {size(int(float(throttle)))}/s (w with 0 lifts it)",
                    style="bold yellow",
                )
            )
        if not self._short:
            limits = p.get("limits") or {}
            more = Text()
            if limits:
                idle = int(limits.get("idle_timeout_ms") or 0) / 1000
                more.append(
                    f"limits  frame {size(int(limits.get('max_frame_bytes') or 0))}"
                    f" · message {size(int(limits.get('max_message_bytes') or 0))}"
                    f" · streams {clean(limits.get('max_open_streams'), 12)}"
                    f" · inbox {clean(limits.get('max_inbound_queue_depth'), 12)}"
                    f" · idle {idle:g} s   "
                )
            if "capabilities" in p:
                more.append(f"capabilities {capability_names(int(p['capabilities'] or 0))}")
            if more:
                lines.append(more)
            if p.get("id"):
                lines.append(Text(f"id {clean(p['id'], 80)}", style="dim"))
        if not live and self._close_record is not None:
            c = self._close_record
            by = "" if c.get("by") in (None, "local") else " by the peer"
            ago = duration(now - float(c.get("closed_at") or now))
            lines.append(
                Text(
                    f" connection closed{by} {ago} ago: {clean(c.get('reason'), 80)}"
                    f" (code {clean(c.get('code'), 6)}) — last data seen below ",
                    style="bold white on dark_red",
                )
            )
        elif not live:
            lines.append(
                Text(" no longer connected — last data seen below ", style="bold white on dark_red")
            )
        return _lines(lines)

    def on_resize(self) -> None:
        """The header's length depends on the height: render the frame again."""
        self._rendered_frame = None
        self.refresh_view()

    @property
    def _short(self) -> bool:
        """A short terminal: the header keeps only what says who the peer is and what it
        does, so the routines and the journal keep their room."""
        return 0 < self.size.height < SHORT_BELOW

    def _close_get(self, key: str) -> Any:
        return None if self._close_record is None else self._close_record.get(key)

    def _routines(self, now: float) -> RenderableType:
        routines = list((self._last_peer or {}).get("routines") or ())
        if not routines:
            return _section("Routines", None, "no routines")
        # Exit columns only when some routine exited: while all run they are empty, and on
        # an 80-column terminal they squeezed the rest into wrapped headers.
        exits = any(
            r.get(k)
            for r in routines
            for k in ("exited_at", "exit_cause", "exit_reason", "exit_error")
        )
        columns = [("service", "left"), ("state", "left"), ("gen", "right"), ("started", "left")]
        if exits:
            columns += [("exited", "left"), ("cause", "left"), ("reason / error", "left")]
        table = _table(*columns)
        exchanges: list[RenderableType] = []
        glyphs = self.console.glyphs
        for r in routines:
            state = clean(r.get("state"), 20)
            cells = [
                _t(r.get("service"), "bold"),
                _t(f"{glyphs.state(state)} {state}", STATE_STYLES.get(state, "")),
                _t(r.get("generation")),
                _t(_when(r.get("started_at"), now)),
            ]
            if exits:
                why = " / ".join(
                    clean(v, 80) for v in (r.get("exit_reason"), r.get("exit_error")) if v
                )
                cells += [
                    _t(_when(r.get("exited_at"), now)),
                    _t(r.get("exit_cause")),
                    _t(why, "red" if state == "panicked" else ""),
                ]
            table.add_row(*cells)
            ex = r.get("discovery")
            if isinstance(ex, dict):
                exchanges.append(_exchange(str(r.get("service")), ex))
            hs = r.get("header_sync")
            if isinstance(hs, dict):
                exchanges.append(header_sync_section(hs, self._parked_record(), now))
            bs = r.get("block_sync")
            if isinstance(bs, dict):
                exchanges.append(block_sync_section(bs))
        return Group(_section("Routines", table, ""), *exchanges)

    def _parked_record(self) -> dict[str, Any] | None:
        """This peer's entry in ``snapshot["parked"]`` (why and since when), if any."""
        snap = self.console.state.snapshot or {}
        found = [p for p in snap.get("parked") or () if p.get("label") == self.label]
        return found[-1] if found else None

    def _streams(self) -> RenderableType:
        streams = list((self._last_peer or {}).get("streams") or ())
        if not streams:
            return _section("Streams", None, "no open streams")
        table = _table(
            ("id", "right"),
            ("service", "left"),
            ("inbox", "right"),
            ("pending", "right"),
            ("credit", "right"),
            ("frames in", "right"),
            ("out", "right"),
        )
        for s in streams:
            table.add_row(
                _t(s.get("id")),
                _t(s.get("service")),
                _t(s.get("inbox")),
                _t(size(int(s.get("pending_out") or 0))),
                _t(size(int(s.get("send_credit") or 0))),
                _t(s.get("frames_in")),
                _t(s.get("frames_out")),
            )
        return _section("Streams", table, "")

    def _misbehavior(self, snap: Snapshot) -> RenderableType:
        records = [m for m in snap.get("misbehavior") or () if m.get("label") == self.label]
        if not records:
            return _section("Misbehavior", None, "no records")
        table = _table(
            ("time", "left"), ("service", "left"), ("reason", "left"), ("action", "left")
        )
        for m in records:
            action = clean(m.get("action"), 20)
            table.add_row(
                _t(clock(float(m.get("time") or 0.0))),
                _t(m.get("service")),
                _t(m.get("reason")),
                _t(action, "bold red" if action == "disconnected" else "yellow"),
            )
        return _section(f"Misbehavior ({len(records)})", table, "")

    def _journal(self, state: ConsoleState) -> RenderableType:
        rows = peer_journal(state.journal, self.label)
        if not rows:
            return _section("Journal", None, "no events about this peer yet")
        text = Text(no_wrap=False)
        for row in rows:
            kind = f"{clean(row.get('table'), 20)}/{clean(row.get('event'), 40)}"
            text.append(clock(float(row.get("wall") or 0.0)), style="dim")
            text.append(f" {kind}", style=_event_style(kind))
            if row.get("service"):
                text.append(f" {clean(row['service'], 30)}", style="cyan")
            fields = row.get("fields") or {}
            if fields:
                # The Journal view's own form (``error=-``, not ``error=None``).
                text.append(" " + fields_text(fields), style="dim")
            text.append("\n")
        text.rstrip()
        return _section(f"Journal (last {len(rows)}, newest last)", text, "")


def _lines(lines: list[Text]) -> Text:
    """Lines joined, each cut with an ellipsis at the edge instead of wrapped."""
    text = Text("\n", no_wrap=True, overflow="ellipsis").join(lines)
    text.no_wrap, text.overflow = True, "ellipsis"
    return text


def _when(wall: object, now: float) -> str:
    if not wall:
        return ""
    t = float(wall)  # type: ignore[arg-type]
    return f"{clock(t)} ({duration(now - t)} ago)"


def _exchange(service: str, ex: dict[str, Any]) -> RenderableType:
    """The discovery exchange of one routine, as ``key value`` pairs on a line or two."""
    received = [name for name in ("hello", "peers", "services") if ex.get(f"received_{name}")]
    text = Text(no_wrap=False)
    text.append(f"{clean(service, 30)} exchange  ", style="bold")
    text.append(f"phase {clean(ex.get('phase'), 30)}")
    text.append(f" · outcome {clean(ex.get('outcome'), 30)}")
    text.append(f" · received {', '.join(received) or 'nothing yet'}")
    text.append(f" · records imported {clean(ex.get('records_imported'), 12)}")
    text.append(f" · refreshes {clean(ex.get('refreshes'), 12)}")
    return Group(text, Text(""))


def _yes(value: object) -> str:
    return "—" if value is None else "yes" if value else "no"


def header_sync_section(
    hs: dict[str, Any], parked: dict[str, Any] | None, now: float
) -> RenderableType:
    """The peer's header-sync routine: its command queue, what it asked for and was promised,
    the requests it still owes answers to (with deadlines), a stall, and why it is parked."""
    text = Text(no_wrap=False)
    text.append("header_sync  ", style="bold")
    depth, capacity = hs.get("queue_depth"), hs.get("queue_max")
    queue = f"{clean(depth, 12)}/{clean(capacity, 12)}" if capacity is not None else "—"
    near_full = isinstance(depth, int) and isinstance(capacity, int) and depth >= capacity * 0.75
    text.append("cmd queue ")
    text.append(queue, style="bold yellow" if near_full else "")
    text.append(f" · status pending {_yes(hs.get('status_pending'))}")
    text.append(f" · received status {_yes(hs.get('received_status'))}")
    text.append(f" · advertised tip {clean(hs.get('advertised_tip', '—'), 20)}")
    max_headers = hs.get("max_headers")
    text.append(f" · max headers {'—' if max_headers is None else clean(max_headers, 12)}")
    text.append(f"\nfifo {clean(hs.get('fifo_len', '—'), 12)}")
    text.append(f" · tolerance {clean(hs.get('tolerance', '—'), 12)}")
    text.append(f" · serving {clean(hs.get('served_inflight', '—'), 12)} in flight")
    flight = hs.get("in_flight")
    text.append(" · in flight ")
    if isinstance(flight, dict):
        direction = "forward" if flight.get("forward") else "backward"
        final = ", finalized" if flight.get("finalized") else ""
        text.append(
            f"{clean(flight.get('start_height'), 20)}+{clean(flight.get('count'), 12)}",
            style="bold",
        )
        text.append(f" ({direction}{final})")
    else:
        text.append("—", style="dim")
    stalled = hs.get("stalled_for_s")
    text.append(" · stall ")
    if stalled is None:
        text.append("none", style="dim")
    else:
        text.append(f"{float(stalled):.1f} s left", style="bold yellow")
    if parked is not None:
        since = parked.get("since")
        ago = f" {duration(now - float(since))} ago" if since is not None else ""
        text.append("\n")
        text.append(
            f"parked{ago}: {reason_text(clean(parked.get('reason') or '?', 100))}"
            f" · {clean(parked.get('work_returned', '—'), 12)} ranges returned",
            style="yellow",
        )
    outstanding = [o for o in hs.get("outstanding") or () if isinstance(o, dict)]
    if not outstanding:
        text.append("\noutstanding requests: none", style="dim")
        return Group(text, Text(""))
    table = _table(("start", "right"), ("count", "right"), ("deadline in", "right"))
    for o in outstanding:
        deadline = o.get("deadline_in_s")
        late = isinstance(deadline, int | float) and deadline <= 0
        table.add_row(
            _t(o.get("start_height")),
            _t(o.get("count")),
            _t(
                "—" if deadline is None else f"{float(deadline):.1f} s",
                "bold red" if late else "",
            ),
        )
    text.append(f"\noutstanding requests ({len(outstanding)})", style="bold")
    return Group(text, table, Text(""))


def _event_style(kind: str) -> str:
    if "panic" in kind or kind.startswith("misbehavior"):
        return "bold red"
    if kind.startswith(("conn/closed", "fault")):
        return "yellow"
    return ""
