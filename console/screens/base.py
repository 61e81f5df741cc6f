"""The base of every view: a status bar on top, the footer below, and the ``apply`` hook the
app calls with each new frame of data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.screen import Screen

from console.state import ConsoleState
from console.widgets.footer import ConsoleFooter
from console.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from console.app import ZakuraConsole


class ConsoleScreen(Screen[None]):
    """A view. Subclasses compose their body in ``compose_body`` and render in ``apply``."""

    #: Shown in the status bar's view list.
    VIEW_TITLE = ""

    @property
    def console(self) -> ZakuraConsole:
        from console.app import ZakuraConsole

        app = self.app
        assert isinstance(app, ZakuraConsole)
        return app

    def compose(self) -> ComposeResult:
        yield StatusBar()
        yield from self.compose_body()
        yield ConsoleFooter()

    def compose_body(self) -> ComposeResult:
        return iter(())

    def on_screen_resume(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        """Render the app's current state (called on every frame and when shown)."""
        if not self.is_mounted:
            return  # a frame can arrive between switch_mode and this screen's mount
        state = self.console.state
        self.query_one(StatusBar).apply(state, self.VIEW_TITLE, self.console.view_titles())
        if state.snapshot is not None:
            self.apply(state)

    def apply(self, state: ConsoleState) -> None:
        """Render ``state``; only changed cells should be touched."""

    def selected_peer(self) -> str | None:
        """The peer label the actions (``d``, ``p``) target on this view, if any."""
        return None

    def detail_peer(self) -> str | None:
        """The peer whose full snapshot entry this view draws (the peer detail), if any: the
        app then asks a brief-capable client for that one entry in full."""
        return None

    def departed_peer(self) -> str | None:
        """The peer under the cursor when it already left (so the refusal can name it)."""
        return None
