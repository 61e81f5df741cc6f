"""One chart of the Charts view: a title line with the latest values, and a time-series plot.

The plot is textual-plot's ``PlotWidget`` (native Textual: it draws into its own canvas as
strips; see the Charts commit for why it over textual-plotext). Around it this module keeps
what the console needs:

- **what each chart shows** (:data:`CHARTS`): which history columns, their labels, and the
  theme colour token of each line, so every theme (the ANSI one too) colours them;
- **thinning**: an hour at 4 Hz is 14,400 rows, and a chart is at most a few hundred braille
  dots wide, so a series is cut into one bucket per dot and each bucket keeps its maximum
  (:func:`thin`): a spike of loop lag stays visible, and drawing costs the same at any
  history length;
- **compact axis labels**: ``12.4k`` and ``64M`` on the y axis, ``-5m`` (live: before now) or
  ``1:30`` (replay: into the recording) on the x axis, so 80 columns keep the plot;
- **ASCII**: with ``--ascii`` the lines are ``*`` marks, one per column, instead of braille.
  The axes, ticks and the replay cursor are the widget's own box-drawing characters; it has
  no option for ASCII ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from rich.style import Style
from textual.app import ComposeResult
from textual.color import Color, ColorParseError
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static
from textual_plot import HiResMode, NumericAxisFormatter, PlotWidget

from console.history import FIELDS

__all__ = [
    "CHARTS",
    "ChartLine",
    "ChartPanel",
    "ChartPlot",
    "ChartSpec",
    "ClockFormatter",
    "CompactFormatter",
    "compact",
    "thin",
]


@dataclass(frozen=True, slots=True)
class ChartLine:
    """One line of a chart: a history column, its label, its theme colour token."""

    field: str
    label: str
    color: str


@dataclass(frozen=True, slots=True)
class ChartSpec:
    """One chart: its title, unit (after the latest values) and lines."""

    key: str
    title: str
    unit: str
    lines: tuple[ChartLine, ...]
    #: The y axis starts at zero (rates, counts); tips keep their own range.
    from_zero: bool = True


CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec(
        "tips",
        "Tips",
        "",
        (
            ChartLine("header_tip", "header", "primary"),
            ChartLine("verified_tip", "verified", "success"),
        ),
        from_zero=False,
    ),
    ChartSpec("blocks", "Blocks/s", "", (ChartLine("blocks_per_s", "blocks/s", "primary"),)),
    ChartSpec("bytes", "MB/s", "MB/s", (ChartLine("mb_per_s", "download", "accent"),)),
    ChartSpec(
        "peers",
        "Peers",
        "",
        (
            ChartLine("peers", "connected", "primary"),
            ChartLine("peers_with_status", "status", "success"),
            ChartLine("peers_parked", "parked", "warning"),
            ChartLine("peers_left", "left", "error"),
        ),
    ),
    ChartSpec(
        "lag",
        "Loop lag",
        "ms",
        (ChartLine("lag_p50_ms", "p50", "success"), ChartLine("lag_p99_ms", "p99", "warning")),
    ),
    ChartSpec(
        "budget",
        "Byte budget",
        "MiB",
        (
            ChartLine("budget_reserved_mib", "reserved", "accent"),
            ChartLine("budget_max_mib", "limit", "error"),
        ),
    ),
)


def compact(value: float) -> str:
    """``12400`` -> ``12.4k``, ``3.1`` -> ``3.1``, ``67108864`` -> ``67.1M``: at most 5
    characters for the values a chart shows."""
    if not math.isfinite(value):
        return "-"
    size = abs(value)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= scale:
            scaled = value / scale
            return f"{scaled:.0f}{suffix}" if abs(scaled) >= 100 else f"{scaled:.3g}{suffix}"
    if size >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2g}" if size < 1 else f"{value:.3g}"


class CompactFormatter(NumericAxisFormatter):
    """The y axis: the widget's 1-2-5 ticks, labelled compactly (:func:`compact`)."""

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return [compact(t) for t in ticks]


class ClockFormatter(NumericAxisFormatter):
    """The x axis, in seconds: ticks at whole seconds, minutes or hours.

    Args:
        relative: ``True`` for the live view (x is seconds before now, ``-5m``), ``False``
            for a replay (seconds into the recording, ``1:30``).
    """

    STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)

    def __init__(self, relative: bool) -> None:
        self.relative = relative

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        span = max_ - min_
        if not span > 0:
            return [min_]
        step = next((s for s in self.STEPS if span / s <= 4), self.STEPS[-1] * 2)
        first = math.ceil(min_ / step) * step
        ticks = [float(first + k * step) for k in range(int((max_ - first) // step) + 1)]
        if ticks and max_ - ticks[-1] < step * 0.05:
            # The end of a recording lands a hair past a round time: the tick is its end, so
            # the widget right-aligns its label inside the plot instead of cutting it.
            ticks[-1] = max_
        return ticks

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return [self.label(t) for t in ticks]

    def label(self, t: float) -> str:
        if self.relative:
            ago = -t
            if abs(ago) < 0.5:
                return "now"
            for unit, secs in (("h", 3600), ("m", 60)):
                if abs(ago) >= secs and ago % secs == 0:
                    return f"-{ago / secs:.0f}{unit}"
            return f"-{ago:.0f}s"
        whole = round(t)
        hours, rest = divmod(whole, 3600)
        return (
            f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
            if hours
            else f"{rest // 60}:{rest % 60:02d}"
        )


def thin(
    x: NDArray[np.float64], y: NDArray[np.float64], buckets: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """At most ``buckets`` points: each bucket of consecutive rows becomes one point at its
    last time holding its largest value (NaN only when every row of it is NaN)."""
    n = len(x)
    if n <= buckets or buckets < 1:
        return x, y
    edges = np.unique(np.linspace(0, n, buckets + 1).astype(np.int64))[:-1]
    ends = np.r_[edges[1:], n] - 1
    peaks = np.fmax.reduceat(y, edges)
    return x[ends], peaks


def rich_color(token_value: str) -> str:
    """A theme colour (``#5fafff``, ``ansi_blue``) as a Rich style string for the plot."""
    try:
        color = Color.parse(token_value)
    except ColorParseError:
        return "default"
    return str(Style(color=color.rich_color))


class ChartPlot(PlotWidget, can_focus=False):
    """The plot, without the widget's own keys and mouse zoom (the console's keys stay the
    console's), and with the theme's muted foreground for axes and ticks."""

    DEFAULT_CSS = """
    ChartPlot {
        & > .plot--axis { color: $foreground-muted; }
        & > .plot--tick { color: $foreground-muted; text-style: none; }
        & > .plot--label { color: $foreground-muted; text-style: none; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, allow_pan_and_zoom=False)

    def on_resize(self) -> None:
        """Fit the canvases to the new size: the widget does so only on a layout refresh,
        and a grid cell changing size is not one, which left lines drawn past the axes."""
        self.refresh(layout=True)


@dataclass(frozen=True, slots=True)
class ChartData:
    """What one drawing of a chart needs: times, values per line, and where the cursor is."""

    x: NDArray[np.float64]
    ys: tuple[NDArray[np.float64], ...]
    latest: tuple[float, ...]
    xmin: float
    xmax: float
    cursor: float | None


class ChartPanel(Vertical):
    """A chart: the title line (name, each line's latest value in its colour) over the plot."""

    DEFAULT_CSS = """
    ChartPanel {
        height: 1fr;
        min-height: 7;
    }
    ChartPanel > .chart-title {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    ChartPanel > ChartPlot {
        height: 1fr;
    }
    """

    def __init__(self, spec: ChartSpec, *, ascii: bool = False) -> None:
        super().__init__(id=f"chart-{spec.key}")
        self.spec = spec
        self.ascii = ascii

    def compose(self) -> ComposeResult:
        yield Static(classes="chart-title", markup=False)
        yield ChartPlot()

    def on_mount(self) -> None:
        plot = self.query_one(ChartPlot)
        plot.margin_top = 0
        plot.margin_bottom = 1
        plot.margin_left = 6
        plot.set_y_formatter(CompactFormatter())

    @property
    def columns(self) -> int:
        """Plot columns (the widget's width less its y labels)."""
        return max(1, self.size.width - 8)

    def draw(self, data: ChartData, *, relative: bool) -> None:
        """Plot ``data``: a line per series (thinned to the width), the cursor if any."""
        plot = self.query_one(ChartPlot)
        theme = self.app.theme_variables
        plot.clear()
        plot.set_x_formatter(ClockFormatter(relative))
        plot.set_xlimits(data.xmin, data.xmax)
        finite = [y[np.isfinite(y)] for y in data.ys]
        top = max((float(f.max()) for f in finite if len(f)), default=1.0)
        if self.spec.from_zero:
            plot.set_ylimits(0.0, top * 1.1 if top > 0 else 1.0)
        else:
            plot.set_ylimits(None, None)
        dots = self.columns if self.ascii else self.columns * 2
        for line, y in zip(self.spec.lines, data.ys, strict=True):
            x, v = thin(data.x, y, dots)
            style = rich_color(theme.get(line.color, "white"))
            if self.ascii:
                plot.scatter(x, v, marker="*", marker_style=style)
            else:
                plot.plot(x, v, line_style=style, hires_mode=HiResMode.BRAILLE)
        if data.cursor is not None:
            plot.add_v_line(data.cursor, rich_color(theme.get("foreground", "white")))
        self.query_one(".chart-title", Static).update(self.title_text(data.latest))

    def title_text(self, latest: Sequence[float]) -> Content:
        """``Tips  ━ header 12.4k  ━ verified 7.3k``: each line's colour names it."""
        parts: list[tuple[str, str] | str] = [(self.spec.title, "bold")]
        mark = "*" if self.ascii else "━"
        for line, value in zip(self.spec.lines, latest, strict=True):
            parts += ["  ", (mark, f"${line.color}"), f" {line.label} ", (compact(value), "bold")]
        if self.spec.unit:
            parts.append((f" {self.spec.unit}", "$foreground-muted"))
        return Content.assemble(*parts)


def column_of(field: str) -> int:
    """The history column of ``field``."""
    return FIELDS.index(field)
