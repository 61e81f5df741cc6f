"""The one-line status bar: node, uptime, peers, diagnostics, the PAUSED / READ-ONLY markers,
and views.

The diagnostics count is the node's own (the snapshot's ``diagnostics``, view 6), in the
theme's ``error`` colour when one is critical and ``warning`` otherwise; a node that sends no
diagnostics section shows none.

Below :data:`NARROW_BELOW` columns, or wherever the long form would not fit, it says the same
in fewer cells: the label without its
``peer:`` prefix, no listen address (the Overview's node panel has it), the diagnostics count
only when it is not zero, and the views as their keys with only the current one named
(``1 [2 Peers] 3 4 5 6``), so nothing is cut.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.color import Color, ColorParseError
from textual.widget import Widget

from console.format import duration, short_peer
from console.state import ConsoleState

#: Below this many columns the status bar is the narrow one (see the module docstring).
NARROW_BELOW = 120


class StatusBar(Widget):
    """The bar: a plain widget that draws its last line (:meth:`render`) and repaints only
    itself when the line changes (about once a second, as the uptime ticks).

    Why not ``Static``: its ``update`` runs a layout pass of the whole screen, which repaints
    every line of it (at 1,000 peers, 15-25 ms of a Peers frame once a second), and
    ``update(text, layout=False)`` left the bar of a terminal console frozen on an old line.
    The bar is one line the screen's width whatever it says, so it never needs a layout.
    """

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    """

    _shown: Text | None = None

    @property
    def content(self) -> Text:
        """The line as last drawn."""
        return self._shown if self._shown is not None else Text()

    def render(self) -> Text:
        """The line as last drawn (``refresh`` asks for it again)."""
        return self.content

    def apply_fleet(
        self, summary: str, state: ConsoleState, current: str, views: list[tuple[str, str]]
    ) -> None:
        """The Fleet view's bar: the fleet in a few words instead of one node's line."""
        self.apply(state, current, views, headline=summary)

    def apply(
        self,
        state: ConsoleState,
        current: str,
        views: list[tuple[str, str]],
        *,
        headline: str | None = None,
    ) -> None:
        if headline is None and state.snapshot is None:
            headline = state.headline
        width = self.content_size.width or max(0, self.app.size.width - 2)
        text = self._line(state, current, views, headline, narrow=width < NARROW_BELOW)
        if text.cell_len > width:  # the long form does not fit: the short one cuts nothing
            text = self._line(state, current, views, headline, narrow=True)
        if text != self._shown:
            self._shown = text
            self.refresh()

    def _line(
        self,
        state: ConsoleState,
        current: str,
        views: list[tuple[str, str]],
        headline: str | None,
        *,
        narrow: bool,
    ) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        snap = state.snapshot
        if headline is not None:
            text.append(f"{headline}  ", style="bold")
            snap = None
            state_markers_only = True
        else:
            state_markers_only = False
        if state_markers_only:
            pass
        elif snap is None:
            text.append("zakura  ", style="bold")
            text.append("waiting..." if narrow else "waiting for the node...", style="italic")
        else:
            node = snap["node"]
            dialer = snap["dialer"]
            if narrow:
                text.append(f"{short_peer(node['label'])} ", style="bold")
                text.append(f"up {duration(float(node['uptime_s']))}  ")
            else:
                text.append(f"{node['label']} ", style="bold")
                text.append(f"{node['listen']}  up {duration(float(node['uptime_s']))}  ")
            text.append(f"peers {dialer['connected']}/{dialer['target']}  ")
            self._diagnostics(text, snap.get("diagnostics"), narrow)
        # The markers before the views: when they are on they matter most, and a narrow
        # terminal cuts the end of the line.
        if state.link_down is not None:
            text.append(" OFFLINE ", style="bold white on red")
            text.append(f" {state.link_down}  ")
        if state.paused:
            text.append(" PAUSED ", style="bold black on yellow")
            text.append(" ")
        if state.read_only:
            text.append(" READ-ONLY ", style="bold white on red")
            text.append(" ")
        for key, title in views:
            here = title == current
            label = f" {key} {title} " if here or not narrow else f" {key} "
            text.append(label, style="reverse bold" if here else "dim")
        return text

    def _diagnostics(self, text: Text, rows: object, narrow: bool) -> None:
        """``diagnostics N`` (``diag N`` when narrow), coloured by the worst severity."""
        if not isinstance(rows, list) or (narrow and not rows):
            return
        word = "diag" if narrow else "diagnostics"
        if not rows:
            text.append(f"{word} 0  ", style="dim")
            return
        critical = any(isinstance(r, dict) and r.get("severity") == "critical" for r in rows)
        token = self.app.get_css_variables().get("error" if critical else "warning", "")
        try:  # a theme colour ("#E5534B", or "ansi_red" in the ansi theme) as rich takes it
            colour = Color.parse(token).rich_color
        except ColorParseError:
            colour = None
        text.append(f"{word} {len(rows)}", style=Style(bold=True, color=colour))
        text.append("  ")

    def on_resize(self) -> None:
        """The narrow form depends on the width: re-render with the app's current state."""
        screen = self.screen
        refresh = getattr(screen, "refresh_view", None)
        if callable(refresh):
            refresh()
