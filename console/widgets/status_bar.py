"""The one-line status bar: node, uptime, peers, views, and the PAUSED / READ-ONLY markers."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from console.format import duration
from console.state import ConsoleState


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    """

    def apply(self, state: ConsoleState, current: str, views: list[tuple[str, str]]) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        snap = state.snapshot
        if snap is None:
            text.append("zakura  ", style="bold")
            text.append("waiting for the node...", style="italic")
        else:
            node = snap["node"]
            dialer = snap["dialer"]
            text.append(f"{node['label']} ", style="bold")
            text.append(f"{node['listen']}  up {duration(float(node['uptime_s']))}  ")
            text.append(f"peers {dialer['connected']}/{dialer['target']}  ")
        for key, title in views:
            style = "reverse bold" if title == current else "dim"
            text.append(f" {key} {title} ", style=style)
        if state.paused:
            text.append("  PAUSED ", style="bold black on yellow")
        if state.read_only:
            text.append("  READ-ONLY ", style="bold white on red")
        self.update(text)
