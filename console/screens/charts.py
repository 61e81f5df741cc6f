"""The Charts view (key 7): the node over time.

Six charts (:data:`~console.widgets.chart.CHARTS`): header and verified tips, blocks/s,
MB/s, peers by state, event-loop lag p50/p99, and the byte budget reserved against its limit.
Live they cover the console's history (:mod:`console.history`, up to an hour, x running up
to "now"); in a replay, the whole recording with a cursor at the replay position (the
app's :meth:`~console.app.ZakuraConsole.chart_source` says which).

**Layout.** As many charts as fit at seven rows or more each, in two columns from 110
columns on: all six at 120x40, three at a time at 80x24, where ``c`` shows the next ones
(the summary line says which page is shown).

**Cost.** Drawing a plot costs about 10 ms (more on a loaded machine), and a history holds up
to 14,400 rows, so the view does as little as it can per frame: each series is thinned to one
point per braille dot of its width (:func:`~console.widgets.chart.thin`), a chart is drawn
again only when its numbers or its cursor changed, and at most :data:`PER_FRAME` charts are
redrawn per frame, the stalest first, each at most once per :data:`REDRAW_SECS`. Showing the
view, resizing it, changing the page or the theme, and seeking a paused replay draw every
visible chart at once. ``bench/charts_refresh.py`` measures a frame with an hour of history.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.geometry import Size
from textual.widgets import Static

from console.charts_source import ChartSource
from console.format import ASCII_GLYPHS
from console.history import FIELDS
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.chart import CHARTS, ChartData, ChartPanel

__all__ = ["ChartsScreen", "layout_for"]

#: Rows a chart needs: its title, five rows of plot, its time labels.
MIN_ROWS = 7
#: From this width on, charts sit in two columns.
TWO_COLUMNS = 110
#: Charts redrawn per frame at most, and how often one chart is redrawn at most (seconds).
PER_FRAME = 1
REDRAW_SECS = 1.0


@dataclass(frozen=True, slots=True)
class Drawn:
    """A chart's last drawing: the data it showed (history version, cursor, axis), its size
    then, and when (monotonic)."""

    stamp: tuple[object, ...]
    size: Size
    at: float


def layout_for(width: int, height: int, charts: int = len(CHARTS)) -> tuple[int, int]:
    """``(columns, rows)`` of charts shown at once in a ``width`` x ``height`` area."""
    columns = 2 if width >= TWO_COLUMNS else 1
    rows = max(1, height // MIN_ROWS)
    rows = min(rows, math.ceil(charts / columns))
    return columns, rows


class ChartsScreen(ConsoleScreen):
    """A summary line, then a grid of charts (a page of them when they do not all fit)."""

    VIEW_TITLE = "Charts"
    BINDINGS = [Binding("c", "next_page", "More charts", tooltip="show the next charts")]
    DEFAULT_CSS = """
    ChartsScreen #charts-summary {
        height: 1;
        padding: 0 1;
        background: $boost;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    ChartsScreen #charts-grid {
        layout: grid;
        grid-size: 2 3;
        grid-gutter: 0 2;
        height: 1fr;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.page = 0
        self._layout: tuple[int, int, int] = (0, 0, -1)  # columns, rows, page drawn
        #: Per chart: what it was last drawn from, at which size, and when.
        self._drawn: dict[str, Drawn] = {}
        self._theme = ""
        self._cursor: float | None = None
        self._summary = ""

    def compose_body(self) -> ComposeResult:
        yield Static(id="charts-summary", markup=False)
        with Container(id="charts-grid"):
            ascii = self.console.glyphs == ASCII_GLYPHS
            for spec in CHARTS:
                yield ChartPanel(spec, ascii=ascii)

    # ------------------------------------------------------------------ layout
    @property
    def per_page(self) -> int:
        columns, rows, _page = self._layout
        return max(1, columns * rows)

    @property
    def pages(self) -> int:
        return math.ceil(len(CHARTS) / self.per_page)

    def _lay_out(self) -> bool:
        """Fit the grid to the space it has; ``True`` when what is shown changed."""
        grid = self.query_one("#charts-grid", Container)
        columns, rows = layout_for(grid.size.width, grid.size.height)
        if (columns, rows, self.page) == self._layout:
            return False
        self._layout = (columns, rows, self.page)
        self.page %= self.pages
        self._layout = (columns, rows, self.page)
        grid.styles.grid_size_columns = columns
        grid.styles.grid_size_rows = rows
        first = self.page * self.per_page
        for i, panel in enumerate(self.query(ChartPanel)):
            panel.display = first <= i < first + self.per_page
        self._drawn.clear()
        return True

    def on_resize(self) -> None:
        self.call_after_refresh(self.refresh_view)

    def action_next_page(self) -> None:
        if self.pages == 1:
            self.notify("every chart is shown", timeout=2)
            return
        self.page = (self.page + 1) % self.pages
        self.refresh_view()
        # The page's charts have no size until the next layout: draw them once they do,
        # instead of leaving them blank until the next poll.
        self.call_after_refresh(self.refresh_view)

    @property
    def settled(self) -> bool:
        """Every chart on the page is laid out and drawn at its current size (tests wait on
        this before comparing a frame)."""
        visible = [p for p in self.query(ChartPanel) if p.display]
        return bool(visible) and all(
            p.size.width > 8 and self._drawn_size(p) == p.size for p in visible
        )

    # ------------------------------------------------------------------ drawing
    def apply(self, state: ConsoleState) -> None:
        source = self.console.chart_source()
        theme = self.app.theme
        relaid = self._lay_out()
        force = relaid or theme != self._theme
        if source.cursor != self._cursor and state.paused:
            force = True  # a seek while paused: show where it landed now
        self._theme, self._cursor = theme, source.cursor
        summary = self.summary(source)
        if summary != self._summary:  # an update costs a layout pass; most frames keep it
            self._summary = summary
            self.query_one("#charts-summary", Static).update(summary)
        stamp = (source.history.version, source.cursor, source.xmin, source.xmax)
        now = time.monotonic()
        # A chart not laid out yet has no width to thin to: it waits for its size.
        visible = [p for p in self.query(ChartPanel) if p.display and p.size.width > 8]
        stale = [p for p in visible if not self._current(p, stamp)]
        if not force:
            # A chart whose size changed is redrawn now (its old drawing no longer fits);
            # the others wait their turn.
            resized = [p for p in stale if self._drawn_size(p) != p.size]
            due = [p for p in stale if p not in resized and now - self._drawn_at(p) >= REDRAW_SECS]
            stale = resized + sorted(due, key=self._drawn_at)[: max(0, PER_FRAME - len(resized))]
        if not stale:
            return
        times, values = source.history.columns()
        x = times - source.origin
        at = len(times) - 1
        if source.cursor is not None:
            at = int(np.searchsorted(times, source.cursor, side="right")) - 1
        for panel in stale:
            cols = [FIELDS.index(line.field) for line in panel.spec.lines]
            latest = tuple(float(values[at, c]) if at >= 0 else math.nan for c in cols)
            data = ChartData(
                x=x,
                ys=tuple(values[:, c] for c in cols),
                latest=latest,
                xmin=source.xmin,
                xmax=source.xmax,
                cursor=None if source.cursor is None else source.cursor - source.origin,
            )
            panel.draw(data, relative=source.relative)
            self._drawn[panel.spec.key] = Drawn(stamp, panel.size, now)

    def _current(self, panel: ChartPanel, stamp: tuple[object, ...]) -> bool:
        drawn = self._drawn.get(panel.spec.key)
        return drawn is not None and drawn.stamp == stamp and drawn.size == panel.size

    def _drawn_size(self, panel: ChartPanel) -> Size | None:
        drawn = self._drawn.get(panel.spec.key)
        return None if drawn is None else drawn.size

    def _drawn_at(self, panel: ChartPanel) -> float:
        drawn = self._drawn.get(panel.spec.key)
        return 0.0 if drawn is None else drawn.at

    def summary(self, source: ChartSource) -> str:
        """The source in words, and which charts are shown when they do not all fit."""
        if self.pages > 1:
            return f"charts {self.page + 1}/{self.pages} (c: next)  ·  {source.note}"
        return source.note
