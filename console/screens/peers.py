"""The Peers view: every peer in one table, a summary line, and a ``/`` filter.

The table does the per-frame work (:class:`~console.widgets.peer_table.PeerTable`); this screen
owns the keys around it: ``/`` to filter, ``o``/``O`` to sort, Enter for the peer's detail, and
it tells the app which peer the ``d``, ``p``, ``k`` and ``s`` actions target: the live peer
under the cursor, never a row of a peer that already left.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Static

from console.screens.base import ConsoleScreen
from console.screens.peer_detail import PeerDetailScreen
from console.state import ConsoleState
from console.widgets.peer_table import PeerTable


class PeersScreen(ConsoleScreen):
    """One row per peer, live."""

    VIEW_TITLE = "Peers"

    DEFAULT_CSS = """
    PeersScreen #peers-summary {
        height: 1;
        padding: 0 1;
        color: $text-muted;
    }
    PeersScreen #peers-filter {
        display: none;
        height: 1;
        border: none;
        padding: 0 1;
        background: $boost;
    }
    PeersScreen #peers-filter.-open {
        display: block;
    }
    """

    BINDINGS = [
        Binding("enter", "open_detail", "Details"),
        Binding("slash", "open_filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        # Sorting is o/O ("order"): s belongs to the app (stall the selected peer's header
        # sync), and a screen binding would shadow it on the view where peers are selected.
        Binding("o", "cycle_sort", "Sort", tooltip="sort by the next column (or click a header)"),
        Binding("O", "reverse_sort", "Reverse sort", key_display="O"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._last_summary: Text | None = None

    @property
    def table(self) -> PeerTable:
        return self.query_one(PeerTable)

    @property
    def filter_input(self) -> Input:
        return self.query_one("#peers-filter", Input)

    def compose_body(self) -> ComposeResult:
        yield Static(id="peers-summary")
        yield PeerTable(id="peers-table")
        yield Input(placeholder="filter: label, address, in/out, service:state", id="peers-filter")

    def on_mount(self) -> None:
        self.table.focus()

    # ------------------------------------------------------------------ rendering
    def apply(self, state: ConsoleState) -> None:
        assert state.snapshot is not None
        self.table.show(state.snapshot)
        self._summary(state)

    def _summary(self, state: ConsoleState) -> None:
        """peers N (in / out) of target, what is shown, filter, sort."""
        snap = state.snapshot
        if snap is None:
            return
        table = self.table
        transport, dialer = snap.get("transport") or {}, snap.get("dialer") or {}
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"peers {len(snap.get('peers') or ())}", style="bold")
        text.append(
            f"  {transport.get('inbound', 0)} in / {transport.get('outbound', 0)} out"
            f"  target {dialer.get('target', '?')}"
        )
        if table.closed_count:
            text.append(f"  {table.closed_count} just left", style="italic")
        if table.filter_text:
            shown = table.live_count + table.closed_count
            text.append("  filter ")
            text.append(repr(table.filter_text), style="bold")
            text.append(f" {shown} row{'' if shown == 1 else 's'}")
        text.append(f"  sort {table.sort_description()}")
        if text != self._last_summary:  # an unchanged line costs no layout pass
            self._last_summary = text
            self.query_one("#peers-summary", Static).update(text)

    def selected_peer(self) -> str | None:
        """The live peer under the cursor; ``None`` on a row of a peer that already left."""
        return self.table.selected_label()

    def departed_peer(self) -> str | None:
        return self.table.cursor_label() if self.selected_peer() is None else None

    # ------------------------------------------------------------------ keys
    def action_open_detail(self) -> None:
        label = self.table.cursor_label()
        if label is not None:
            self.app.push_screen(PeerDetailScreen(label))

    @on(PeerTable.RowSelected)
    def _row_selected(self, event: PeerTable.RowSelected) -> None:
        event.stop()
        self.action_open_detail()

    def action_open_filter(self) -> None:
        box = self.filter_input
        box.add_class("-open")
        box.value = self.table.filter_text
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.filter_input
        box.value = ""
        box.remove_class("-open")
        self.table.focus()
        self._set_filter("")

    def action_cycle_sort(self) -> None:
        self.table.cycle_sort()

    def action_reverse_sort(self) -> None:
        self.table.reverse_sort()

    @on(Input.Changed, "#peers-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._set_filter(event.value)

    @on(Input.Submitted, "#peers-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        """Enter keeps the filter and goes back to the table; the summary shows the filter."""
        event.stop()
        if not event.value.strip():
            self.filter_input.remove_class("-open")
        self.table.focus()

    @on(PeerTable.SortChanged)
    def _sort_changed(self) -> None:
        self._summary(self.console.state)

    def _set_filter(self, text: str) -> None:
        if text.strip().lower() == self.table.filter_text:
            return
        self.table.set_filter(text)
        self.refresh_view()
