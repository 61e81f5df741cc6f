"""The Journal view: every event the node journals, live, filterable, with follow mode.

The keys live on the screen (not the widget) so the help screen and the footer list them;
each one delegates to :class:`~console.widgets.journal_view.JournalView`.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding

from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.journal_view import JournalView


class JournalScreen(ConsoleScreen):
    """Live event log (newest at the bottom) with kind / peer / service filters."""

    VIEW_TITLE = "Journal"
    # Descriptions stay short for the footer; tooltips say it in full (for the help screen).
    BINDINGS = [
        Binding("k", "cycle_kind", "Kind", tooltip="filter by kind: cycle the journal tables"),
        Binding(
            "slash",
            "filter_peer",
            "Peer",
            key_display="/",
            tooltip="filter by peer: type part of a label (Enter keeps, Esc cancels)",
        ),
        Binding("v", "cycle_service", "Service", tooltip="filter by service: cycle services"),
        Binding("c", "clear_filters", "Clear", tooltip="clear every journal filter"),
        Binding(
            "f",
            "toggle_follow",
            "Follow",
            tooltip="follow the newest event / hold the view (scrolling up also holds)",
        ),
    ]

    def compose_body(self) -> ComposeResult:
        yield JournalView(id="journal")

    @property
    def view(self) -> JournalView:
        return self.query_one(JournalView)

    def on_mount(self) -> None:
        self.view.table.focus()

    def apply(self, state: ConsoleState) -> None:
        self.view.apply(state.journal)

    def action_cycle_kind(self) -> None:
        """Filter by the next journal table (conn, handshake, routine, ...), then all."""
        self.view.cycle_table()

    def action_cycle_service(self) -> None:
        """Filter by the next service, then all."""
        self.view.cycle_service()

    def action_filter_peer(self) -> None:
        """Type part of a peer label to keep only that peer's events."""
        self.view.open_peer_filter()

    def action_clear_filters(self) -> None:
        self.view.clear_filters()

    def action_toggle_follow(self) -> None:
        """Follow the newest event, or hold the view still while new events arrive."""
        self.view.toggle_follow()
