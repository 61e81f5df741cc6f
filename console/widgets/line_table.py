"""A keyed table drawn line by line on Textual's public Line API (``ScrollView.render_line``).

Why not ``DataTable``: the Peers view writes a few hundred cells per frame into a table of
1,000 rows. ``DataTable`` keys its render caches on one counter that every ``update_cell``
bumps, so one changed cell re-renders every visible cell; keeping it fast meant overriding its
private ``_render_line``/``_render_cell`` (and pinning Textual for them). This widget owns its
data and its caches instead, and uses only public API: ``ScrollView`` and ``virtual_size``,
``render_line(y) -> Strip``, ``refresh(region)``, ``scroll_to_region``, component classes
(``get_component_rich_style``) and mouse-event style metadata.

What it draws is what ``DataTable`` drew for the Peers view, to the cell: the same component
classes and CSS (header, cursor, hover; focus tints), each cell rendered by Rich as
``DataTable`` renders one (``Styled(Padding(text))``), columns one space apart (the gap in
front of each cell, in the cell's background), the line extended to the widget's width in the
row's style, and the same ``row``/``column`` metadata on every segment (a click or a hover
finds its row and column from it).

Caches, all keyed on what the output depends on, so no event has to clear them for
correctness (a style update clears them to free memory):

* a cell's segments, by its text, style, width, alignment and the styles around it (cells
  with the same content share one render, whichever row they are in);
* a line's strip, per row key, by the row's cells object (a row whose cells did not change
  keeps the same tuple), its index, cursor and hover, the base style, the crop and width.

A changed row repaints its own line only (``refresh(region)``); a new order, an added or a
removed row repaints the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from rich.console import JustifyMethod
from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size, Spacing
from textual.message import Message
from textual.renderables.styled import Styled
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.widgets.cells import Cell, ColumnSpec

#: Spaces before every column: one, not DataTable's two (it pads both sides of a cell).
GAP = 1

#: Entries kept in the per-cell render cache before it is dropped and refilled.
CELL_CACHE_LIMIT = 16_384

#: Entries kept in the style-sum cache (a cell style plus a cell's metadata) likewise.
STYLE_CACHE_LIMIT = 65_536

#: Entries kept in the per-line cell cache (:meth:`LineTable.line_segments`) likewise.
LINE_CELL_CACHE_LIMIT = 65_536

#: The row index of the header in metadata and hover (as ``DataTable`` numbers it).
HEADER = -1


class LineTable(ScrollView, can_focus=True):
    """Rows of :data:`Cell` tuples by key, a header, a row cursor; see the module docstring."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "linetable--cursor",
        "linetable--hover",
        "linetable--header",
        "linetable--header-cursor",
        "linetable--header-hover",
    }

    # DataTable's look, under this widget's own names (only what a row-cursor table uses).
    DEFAULT_CSS = """
    LineTable {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .linetable--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .linetable--header {
                background-tint: $foreground 5%;
            }
        }
        & > .linetable--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .linetable--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .linetable--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .linetable--header-cursor {
            background: $accent-darken-1;
            color: $foreground;
        }
        & > .linetable--header-hover {
            background: $accent 30%;
        }
        & > .linetable--hover {
            background: $block-hover-background;
        }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("ctrl+home", "cursor_top", "Top", show=False),
        Binding("ctrl+end", "cursor_bottom", "Bottom", show=False),
        Binding("home", "scroll_home", "Home", show=False),
        Binding("end", "scroll_end", "End", show=False),
    ]

    class RowSelected(Message):
        """Enter on a row, or a click on the row under the cursor."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.table_columns: tuple[ColumnSpec, ...] = ()
        self._headers: tuple[Cell, ...] = ()
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._cursor = 0
        self._hover = 0
        self._show_hover = False
        self._cell_cache: dict[tuple[Any, ...], list[Segment]] = {}
        self._strip_cache: dict[str, tuple[tuple[Any, ...], Strip]] = {}
        self._meta: dict[tuple[int, int], Style] = {}
        self._summed: dict[tuple[Style | None, Style, bool], Style] = {}
        #: A line's look (header, cursor, hover, base style) -> (its number, row style,
        #: component style, forced foreground); see :meth:`line_segments`.
        self._looks: dict[tuple[bool, bool, bool, Style], tuple[int, Style, Style, Style]] = {}
        #: (look number, row index, column index, text, style) -> that cell's segments.
        self._line_cells: dict[tuple[int, int, int, Any, str], list[Segment]] = {}

    # ------------------------------------------------------------------ data
    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def cursor_row(self) -> int:
        return self._cursor

    def keys(self) -> list[str]:
        """Row keys in display order."""
        return list(self._order)

    def get_row_index(self, key: str) -> int:
        """Where row ``key`` is shown (``KeyError`` if it is not)."""
        return self._index[key]

    def cursor_key(self) -> str | None:
        """The key of the row under the cursor (``None`` on an empty table)."""
        return self._order[self._cursor] if 0 <= self._cursor < len(self._order) else None

    def column_widths(self) -> list[int]:
        """Each column's width on screen, its gap included."""
        return [c.width + GAP for c in self.table_columns]

    def set_columns(self, columns: Sequence[ColumnSpec]) -> None:
        """New columns: every row is dropped (its cells were laid out for the old ones)."""
        self.table_columns = tuple(columns)
        self._headers = tuple((c.title, "") for c in self.table_columns)
        self._order, self._index, self._cells = [], {}, {}
        self._strip_cache.clear()
        self._line_cells.clear()  # keyed by column index: the columns moved
        self._resized()

    def set_header(self, index: int, title: str) -> None:
        """Change one column's header text (a sort arrow moving)."""
        headers = list(self._headers)
        headers[index] = (title, "")
        self._headers = tuple(headers)
        self.refresh(Region(0, 0, self.size.width, 1))

    def put_row(self, key: str, cells: tuple[Cell, ...]) -> None:
        """Add row ``key`` (at the end) or replace its cells (repainting only its line)."""
        index = self._index.get(key)
        self._cells[key] = cells
        if index is None:
            self._index[key] = len(self._order)
            self._order.append(key)
            self._resized()
        else:
            self._refresh_row(index)

    def update_rows(self, rows: Iterable[tuple[str, tuple[Cell, ...]]]) -> None:
        """Replace the cells of rows already in the table, repainting only the visible lines
        among them: the scroll position and size are read once for the whole batch (each
        read walks the widget tree; per row, that was most of a 1,000-peer frame's upkeep)."""
        top = int(self.scroll_y)
        width, height = self.size
        for key, cells in rows:
            self._cells[key] = cells
            y = self._index[key] + 1 - top
            if 1 <= y < height:
                self.refresh(Region(0, y, width, 1))

    def remove_rows(self, keys: Iterable[str]) -> None:
        """Drop these rows (the others keep their order)."""
        gone = set(keys)
        if not gone:
            return
        for key in gone:
            del self._cells[key]
            self._strip_cache.pop(key, None)
        self._order = [k for k in self._order if k not in gone]
        self._index = {k: i for i, k in enumerate(self._order)}
        self._resized()

    def set_order(self, keys: Iterable[str]) -> None:
        """Show the rows in this order (the same keys, re-ordered)."""
        order = list(keys)
        if order == self._order:
            return
        self._order = order
        self._index = {k: i for i, k in enumerate(order)}
        self.refresh()

    def row_cells(self, key: str) -> tuple[Cell, ...] | None:
        return self._cells.get(key)

    def _resized(self) -> None:
        width = sum(self.column_widths())
        self.virtual_size = Size(width, len(self._order) + 1)
        self.refresh()

    def _refresh_row(self, index: int) -> None:
        y = index + 1 - int(self.scroll_y)
        if 1 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    # ------------------------------------------------------------------ cursor
    def move_cursor(self, *, row: int, animate: bool = False, scroll: bool = True) -> None:
        """Put the cursor on ``row`` (clamped to the rows there are) and show it."""
        row = min(max(row, 0), max(len(self._order) - 1, 0))
        if row != self._cursor:
            self._refresh_row(self._cursor)
            self._cursor = row
            self._refresh_row(row)
        if scroll:
            self._scroll_cursor_into_view(animate)

    def _scroll_cursor_into_view(self, animate: bool = False) -> None:
        width = max(self.size.width, self.virtual_size.width)
        region = Region(int(self.scroll_x), self._cursor + 1, width, 1)
        self.scroll_to_region(region, animate=animate, spacing=Spacing(1, 0, 0, 0), force=True)

    def _set_hover(self, active: bool, row: int | None = None) -> None:
        before = self._hover if self._show_hover else None
        self._show_hover = active
        if row is not None:
            self._hover = row
        if before != (self._hover if active else None):
            for index in {before, self._hover}:
                if index is not None:
                    self._refresh_any(index)

    def _refresh_any(self, index: int) -> None:
        if index == HEADER:
            self.refresh(Region(0, 0, self.size.width, 1))
        else:
            self._refresh_row(index)

    def action_cursor_up(self) -> None:
        self._set_hover(False)
        self.move_cursor(row=self._cursor - 1)

    def action_cursor_down(self) -> None:
        self._set_hover(False)
        self.move_cursor(row=self._cursor + 1)

    def action_cursor_top(self) -> None:
        self._set_hover(False)
        self.move_cursor(row=0)

    def action_cursor_bottom(self) -> None:
        self._set_hover(False)
        self.move_cursor(row=len(self._order) - 1)

    def action_page_down(self) -> None:
        self._set_hover(False)
        height = self.scrollable_content_region.height - 1
        self.scroll_relative(y=height, animate=False, force=True)
        self.move_cursor(row=self._cursor + height)

    def action_page_up(self) -> None:
        self._set_hover(False)
        height = self.scrollable_content_region.height - 1
        self.scroll_relative(y=-height, animate=False)
        self.move_cursor(row=self._cursor - height)

    def action_scroll_home(self) -> None:
        self._set_hover(False)
        self.scroll_x = 0

    def action_scroll_end(self) -> None:
        self._set_hover(False)
        self.scroll_x = self.max_scroll_x

    def action_select_cursor(self) -> None:
        self._set_hover(False)
        key = self.cursor_key()
        if key is not None:
            self.post_message(self.RowSelected(key))

    def header_clicked(self, column: ColumnSpec) -> None:
        """A click on ``column``'s header (subclasses sort on it)."""

    # ------------------------------------------------------------------ mouse
    def on_mouse_move(self, event: events.MouseMove) -> None:
        meta = event.style.meta
        if "row" in meta:
            self._set_hover(True, meta["row"])
        else:
            self._set_hover(False)

    def on_leave(self, _event: events.Leave) -> None:
        self._set_hover(False)

    def on_click(self, event: events.Click) -> None:
        meta = event.style.meta
        if "row" not in meta or "column" not in meta:
            return
        self._set_hover(True, meta["row"])
        row, column = meta["row"], meta["column"]
        if row == HEADER:
            if 0 <= column < len(self.table_columns):
                self.header_clicked(self.table_columns[column])
            return
        event.stop()
        if row == self._cursor:
            self.action_select_cursor()
            self._set_hover(True)
        self.move_cursor(row=row, animate=True)

    # ------------------------------------------------------------------ drawing
    def notify_style_update(self) -> None:
        """A theme or CSS change: drop the caches (their keys hold the old styles anyway)."""
        super().notify_style_update()
        self._cell_cache.clear()
        self._strip_cache.clear()
        self._summed.clear()
        self._looks.clear()
        self._line_cells.clear()
        self.refresh()

    def render_line(self, y: int) -> Strip:
        base = self.rich_style
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        if y == 0:
            index, key, cells = HEADER, "", self._headers
        else:
            index = y - 1 + scroll_y
            if index >= len(self._order):
                return Strip.blank(width, base)
            key = self._order[index]
            cells = self._cells[key]
        cursor = index == self._cursor
        hover = self._show_hover and index == self._hover
        ident = (cells, index, cursor, hover, base, width, scroll_x, self.table_columns)
        hit = self._strip_cache.get(key)
        if hit is not None and hit[0] == ident:
            return hit[1]
        segments = self.line_segments(index, cells, base)
        strip = (
            Strip(segments)
            .crop(scroll_x, scroll_x + width)
            .adjust_cell_length(width, base)
            .simplify()
        )
        self._strip_cache[key] = (ident, strip)
        return strip

    def line_segments(self, index: int, cells: tuple[Cell, ...], base: Style) -> list[Segment]:
        """One whole line (every column, then the fill to the widget's width).

        Each cell's segments, gap and metadata included, are remembered by the line's look
        (header, cursor, hover, base style: a small number per look), the row's index, the
        column's and the cell itself: a line whose age or rate cell changed takes every
        other cell from there, in one lookup each, with no style hashed."""
        header = index == HEADER
        cursor = index == self._cursor
        hover = self._show_hover and index == self._hover
        look = self._looks.get((header, cursor, hover, base))
        if look is None:
            row_style = (
                self.get_component_styles("linetable--header").rich_style if header else base
            )
            component, post = self._component(header, cursor, hover)
            look = (len(self._looks), row_style, component, post)
            self._looks[(header, cursor, hover, base)] = look
        look_id, row_style, component, post = look
        done = self._line_cells
        if len(done) >= LINE_CELL_CACHE_LIMIT:
            done.clear()
        segments: list[Segment] = []
        for column_index, (column, (text, style)) in enumerate(
            zip(self.table_columns, cells, strict=True)
        ):
            key = (look_id, index, column_index, text, style)
            cell = done.get(key)
            if cell is None:
                meta = self._meta_style(index, column_index)
                drawn = self._cell(text, style, column, header, row_style, component, post)
                # The gap wears the cell's background (the cursor bar has no holes) and its
                # metadata (a click on it selects the cell).
                gap = None if not drawn else self._with_meta(drawn[0].style, meta, gap=True)
                cell = [Segment(" " * GAP, gap)]
                cell += [Segment(s.text, self._with_meta(s.style, meta)) for s in drawn]
                done[key] = cell
            segments += cell
        fill = max(0, self.size.width - sum(self.column_widths()))
        fill_key = (look_id, index, -1, fill, "")
        cell = done.get(fill_key)
        if cell is None:
            extend, _ = self._component(header, cursor, hover)
            extend = (
                row_style
                + extend
                + Style.from_meta({"row": index, "column": 0, "out_of_bounds": True})
            )
            cell = done[fill_key] = [Segment(" " * fill, extend)]
        segments += cell
        return segments

    def _component(self, header: bool, cursor: bool, hover: bool) -> tuple[Style, Style]:
        """The cursor/hover component style over a cell, and what it forces on top (its
        foreground: the cursor's text colour wins over a cell's own)."""
        style = Style()
        if hover:
            style += self.get_component_rich_style("linetable--hover")
            if header:
                style += self.get_component_rich_style("linetable--header-hover")
        if cursor:
            style += self.get_component_rich_style("linetable--cursor")
            if header:
                style += self.get_component_rich_style("linetable--header-cursor")
        return style, Style.from_color(color=style.color) + Style.null()

    def _with_meta(self, style: Style | None, meta: Style, *, gap: bool = False) -> Style:
        """``style + meta`` (``gap``: only its background, + ``meta``), remembered: Rich's own
        cache of style sums holds 1,024, fewer than one screen of a wide table's cells, and
        a sum costs a copy of the style."""
        key = (style, meta, gap)
        summed = self._summed.get(key)
        if summed is None:
            if len(self._summed) >= STYLE_CACHE_LIMIT:
                self._summed.clear()
            base = style or Style()
            summed = (Style(bgcolor=base.bgcolor) if gap else base) + meta
            self._summed[key] = summed
        return summed

    def _meta_style(self, row: int, column: int) -> Style:
        style = self._meta.get((row, column))
        if style is None:
            style = self._meta[(row, column)] = Style.from_meta({"row": row, "column": column})
        return style

    def _cell(
        self,
        text: str,
        style: str,
        column: ColumnSpec,
        header: bool,
        row_style: Style,
        component: Style,
        post: Style,
    ) -> list[Segment]:
        """One cell's segments as Rich draws it, shared by every cell with the same look."""
        key = (text, style, column.width, column.right, header, row_style, component, post)
        drawn = self._cell_cache.get(key)
        if drawn is None:
            if len(self._cell_cache) >= CELL_CACHE_LIMIT:
                self._cell_cache.clear()
            justify: JustifyMethod = "right" if column.right else "left"
            if header:
                renderable = Text(text, justify=justify, no_wrap=True)
            elif not text:  # an empty cell draws blank in the row's style, not its own
                renderable = Text(no_wrap=True, end="")
            else:
                renderable = Text(
                    text, style=style, justify=justify, no_wrap=True, overflow="ellipsis", end=""
                )
            options = self.app.console_options.update_dimensions(column.width, 1)
            lines = self.app.console.render_lines(
                Styled(
                    Padding(renderable, (0, 0)), pre_style=row_style + component, post_style=post
                ),
                options.update(no_wrap=True),
            )
            drawn = self._cell_cache[key] = lines[0]
        return drawn

    def drawn_cells(self, key: str) -> list[str]:
        """What row ``key`` shows in each column, as drawn (for tests and the benchmark)."""
        cells = self._cells[key]
        line = Strip(self.line_segments(self._index[key], cells, self.rich_style)).text
        out, x = [], 0
        for width in self.column_widths():
            out.append(line[x + GAP : x + width].strip())
            x += width
        return out
