"""The Journal view."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from console.screens.base import ConsoleScreen
from console.state import ConsoleState


class JournalScreen(ConsoleScreen):
    VIEW_TITLE = "Journal"

    def compose_body(self) -> ComposeResult:
        yield Static(id="body")

    def apply(self, state: ConsoleState) -> None:
        assert state.snapshot is not None
        self.query_one("#body", Static).update(f"{len(state.snapshot['peers'])} peers")
