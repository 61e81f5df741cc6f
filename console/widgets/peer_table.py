"""The peer table: one row per peer, refreshed in place several times a second.

Why it is built the way it is (like dolphie's process list):

* Rows are keyed by peer label, so a row is the same row from frame to frame whatever the
  sort order, and the cursor follows a peer, not a row index (htop's "killed the wrong
  process because the list moved").
* Rows come from :class:`~console.widgets.peer_rows.RowBuilder`, which reuses last frame's
  row for a peer whose fields did not change; such rows are skipped outright. The others are
  diffed cell by cell against what was rendered; only changed cells are written, with
  ``update_width=False`` (widths are fixed, no column is re-measured), in one
  ``batch_update``. Rows come and go by set difference.
* The table re-sorts at most once per frame, and only when a row was added or a value in the
  sort column changed.
* ``DataTable`` keys its render caches (cells, rows, lines) on one counter that every
  ``update_cell`` bumps, so a single changed cell makes it re-render every visible line and
  cell (about 60 rows x 13 columns here, most of a frame's cost). :meth:`_render_line` and
  :meth:`_render_cell` put a second cache in front, keyed on serials bumped only when a row
  (or cell) is written, so unchanged lines and cells are not rendered again. Textual is
  pinned (``textual==8.2.8``) because this hooks two private methods; the view tests check
  what is drawn after updates, and anything that clears Textual's caches clears these.
* Columns are one space apart, not DataTable's two (``cell_padding`` pads both sides): with
  the header-sync columns the table has fourteen, and at two spaces they no longer fit a
  120-column terminal. :meth:`_render_cell` draws each cell one narrower and puts the gap in
  front, so cell values (``get_cell``) stay exactly the text.
"""

from __future__ import annotations

from typing import Any

from rich.console import JustifyMethod
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.coordinate import Coordinate
from textual.message import Message
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey

from console.client import Snapshot
from console.format import Glyphs
from console.widgets.peer_rows import (
    MISSING,
    Cell,
    ColumnSpec,
    PeerRow,
    RowBuilder,
    SortValue,
    columns_for,
    order_services,
)

#: Entries kept in the per-cell render cache before it is dropped and refilled.
RENDER_CACHE_LIMIT = 16_384

#: Spaces before every column (DataTable's own padding is off, see the module docstring).
GAP = 1


def _with_gap(lines: list[list[Segment]]) -> list[list[Segment]]:
    """Each line with :data:`GAP` spaces in front, in the line's own background (so the
    cursor bar has no holes) and with its click metadata (so a click there selects it)."""
    out = []
    for line in lines:
        first = line[0].style if line else None
        style = None
        if first is not None:
            style = Style(bgcolor=first.bgcolor) + Style.from_meta(first.meta)
        out.append([Segment(" " * GAP, style), *line])
    return out


class PeerTable(DataTable[Text]):
    """The Peers view's table. Call :meth:`show` with each snapshot."""

    DEFAULT_CSS = """
    PeerTable {
        height: 1fr;
    }
    """

    class SortChanged(Message):
        """The sort column or direction changed (the screen's summary shows it)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.services: tuple[str, ...] = ()
        self.specs: tuple[ColumnSpec, ...] = ()
        self.sort_column = "conn"
        self.sort_reverse = False
        self.filter_text = ""
        self._builder = RowBuilder()
        #: Rows in the table (by label) and the cells rendered for each.
        self._rows: dict[str, PeerRow] = {}
        self._rendered: dict[str, tuple[Cell, ...]] = {}
        #: The label cell object of each row: ``DataTable.sort`` hands its key function cell
        #: values, and this is how a cell finds its way back to its row.
        self._label_cells: dict[str, Text] = {}
        self._sort_values: dict[str, SortValue] = {}
        # Render caches keyed on write serials (see the module docstring).
        self._serial = 0
        self._cell_serial: dict[tuple[Any, Any], int] = {}
        self._row_serial: dict[Any, int] = {}
        self._header_serial = 0
        self._cell_lines: dict[tuple[Any, ...], list[list[Segment]]] = {}
        self._strips: dict[tuple[Any, ...], Strip] = {}
        #: Counters for tests and the benchmark: cells written, rows added, sorts done.
        self.cell_updates = 0
        self.rows_added = 0
        self.sorts = 0
        # Set last: its watcher clears the render caches above (see the module docstring).
        self.cell_padding = 0

    # ------------------------------------------------------------------ public API
    @property
    def live_count(self) -> int:
        """Rows of connected peers (after the filter)."""
        return sum(1 for r in self._rows.values() if r.live)

    @property
    def closed_count(self) -> int:
        """Rows of peers that just left (after the filter)."""
        return sum(1 for r in self._rows.values() if not r.live)

    def cursor_label(self) -> str | None:
        """The label of the row under the cursor, live or closed."""
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key
        except CellDoesNotExist:
            return None
        return key.value

    def selected_label(self) -> str | None:
        """The label under the cursor if that peer is still connected (actions target it)."""
        label = self.cursor_label()
        row = self._rows.get(label) if label is not None else None
        return label if row is not None and row.live else None

    def rendered_cells(self, label: str) -> tuple[Cell, ...] | None:
        """What the table shows for ``label`` (for tests and the benchmark's check)."""
        return self._rendered.get(label)

    def row_labels(self) -> list[str]:
        """Labels in display order."""
        return [row.key.value or "" for row in self.ordered_rows]

    def on_mount(self) -> None:
        """Rows are drawn with the app's glyphs (``--ascii`` makes them letters)."""
        glyphs = getattr(self.app, "glyphs", None)
        if isinstance(glyphs, Glyphs):
            self._builder.glyphs = glyphs

    def _arrow(self) -> str:
        glyphs = self._builder.glyphs
        return glyphs.sort_down if self.sort_reverse else glyphs.sort_up

    def sort_description(self) -> str:
        """``in/s ▼``: the sort column's header and direction, for the summary line."""
        spec = next((s for s in self.specs if s.key == self.sort_column), None)
        title = spec.title if spec is not None else self.sort_column
        return f"{title} {self._arrow()}"

    def show(self, snapshot: Snapshot) -> None:
        """Render ``snapshot``: diff it against the table and write only what changed."""
        rows = self._builder.build(snapshot, self.filter_text)
        with self.app.batch_update():
            selected, index = self.cursor_label(), self.cursor_row
            # Columns only grow: a service whose last peer left keeps its column, so the
            # table does not rebuild (and jump) each time such a peer comes and goes.
            if not self.specs or not self._builder.new_services <= set(self.services):
                self._set_columns(order_services({*self.services, *self._builder.new_services}))
            added = self._sync_rows(rows)
            values = {label: row.sort_value(self.sort_column) for label, row in rows.items()}
            if added or values != self._sort_values:
                self._sort_values = values
                self._sort()
            self._restore_cursor(selected, index)

    def set_filter(self, text: str) -> None:
        """Narrow rows to those whose label, address, direction or states contain ``text``.

        Takes effect on the next :meth:`show` (the screen calls it at once).
        """
        self.filter_text = text.strip().lower()

    def sort_by(self, column: str, *, reverse: bool | None = None) -> None:
        """Sort by ``column`` now (the same column again flips the direction)."""
        if column not in {s.key for s in self.specs}:
            return
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column, reverse
        self._resort_now()

    def cycle_sort(self) -> None:
        """Sort by the next column (``o``), ascending."""
        keys = [s.key for s in self.specs]
        if not keys:
            return
        current = keys.index(self.sort_column) if self.sort_column in keys else -1
        self.sort_column, self.sort_reverse = keys[(current + 1) % len(keys)], False
        self._resort_now()

    def reverse_sort(self) -> None:
        """Flip the sort direction (``O``)."""
        self.sort_reverse = not self.sort_reverse
        self._resort_now()

    # ------------------------------------------------------------------ events
    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """Clicking a header sorts by it; clicking it again reverses."""
        event.stop()
        if event.column_key.value is not None:
            self.sort_by(event.column_key.value)

    # ------------------------------------------------------------------ table upkeep
    def _set_columns(self, services: tuple[str, ...]) -> None:
        """(Re)build the columns: on the first frame and when a new service appears."""
        self.services = services
        self.specs = columns_for(services)
        if self.sort_column not in {s.key for s in self.specs}:
            self.sort_column, self.sort_reverse = "conn", False
        self.clear(columns=True)
        self._rendered.clear()
        self._label_cells.clear()
        self._cell_serial.clear()
        self._row_serial.clear()
        self._header_serial += 1
        self._sort_values = {}
        for spec in self.specs:
            self.add_column(self._header(spec), width=spec.width + GAP, key=spec.key)

    def _header(self, spec: ColumnSpec) -> Text:
        title = spec.title
        if spec.key == self.sort_column:
            title += self._arrow()
        return Text(title, justify="right" if spec.right else "left", no_wrap=True)

    def _text(self, index: int, cell: Cell) -> Text:
        text, style = cell
        justify: JustifyMethod = "right" if self.specs[index].right else "left"
        return Text(text, style=style, justify=justify, no_wrap=True, overflow="ellipsis", end="")

    def _sync_rows(self, rows: dict[str, PeerRow]) -> bool:
        """Remove, add and update rows by set difference; returns whether any was added."""
        rendered, before, specs = self._rendered, self._rows, self.specs
        for label in rendered.keys() - rows.keys():
            self.remove_row(label)
            del rendered[label]
            self._label_cells.pop(label, None)
            self._row_serial.pop(label, None)
            for spec in specs:
                self._cell_serial.pop((label, spec.key), None)
        added = False
        services = self.services
        for label, row in rows.items():
            old = rendered.get(label)
            if old is not None and before.get(label) is row:
                continue  # last frame's row object: nothing in it changed
            cells = row.cells(services)
            if old is None:
                texts = [self._text(i, c) for i, c in enumerate(cells)]
                self.add_row(*texts, key=label)
                self._serial += 1  # a label that comes back must not hit old renders
                self._row_serial[label] = self._serial
                for spec in specs:
                    self._cell_serial[(label, spec.key)] = self._serial
                self._label_cells[label] = texts[0]
                rendered[label] = cells
                self.rows_added += 1
                added = True
            elif old != cells:
                for i, (was, now) in enumerate(zip(old, cells, strict=True)):
                    if was != now:
                        self._write(label, i, now)
                rendered[label] = cells
        self._rows = rows
        return added

    def _write(self, label: str, index: int, cell: Cell) -> None:
        """Write one changed cell (and mark it for re-rendering)."""
        text = self._text(index, cell)
        key = self.specs[index].key
        self.update_cell(label, key, text, update_width=False)
        self._serial += 1
        self._cell_serial[(label, key)] = self._row_serial[label] = self._serial
        if index == 0:
            self._label_cells[label] = text
        self.cell_updates += 1

    def _sort(self) -> None:
        """One ``DataTable.sort`` by the current column, ties broken by label."""
        by_cell = {
            id(self._label_cells[label]): (value, label)
            for label, value in self._sort_values.items()
            if label in self._label_cells
        }
        for spec in self.specs:  # the arrow moves with the sort column
            self.columns[ColumnKey(spec.key)].label = self._header(spec)
        self._header_serial += 1
        self.sort(
            "label",
            key=lambda cell: by_cell.get(id(cell), (MISSING, "")),
            reverse=self.sort_reverse,
        )
        self.sorts += 1

    def _resort_now(self) -> None:
        """Re-sort the rows already shown (a key or a header click), keeping the cursor."""
        if not self.specs:
            return
        with self.app.batch_update():
            selected, index = self.cursor_label(), self.cursor_row
            self._sort_values = {
                label: row.sort_value(self.sort_column) for label, row in self._rows.items()
            }
            self._sort()
            self._restore_cursor(selected, index)
        self.post_message(self.SortChanged())

    def _restore_cursor(self, selected: str | None, index: int) -> None:
        """Keep the cursor on the same peer; if it left, on the same row index."""
        if self.row_count == 0:
            return
        if selected is not None and selected in self._rendered:
            target = self.get_row_index(selected)
        else:
            target = min(max(index, 0), self.row_count - 1)
        if target != self.cursor_row:
            self.move_cursor(row=target)

    # ------------------------------------------------------------------ rendering
    def _clear_caches(self) -> None:
        """Whatever makes Textual drop its render caches (styles, theme, resize of the
        padding, ``clear``) drops these too."""
        super()._clear_caches()
        self._cell_lines.clear()
        self._strips.clear()

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        """``DataTable._render_line`` behind a cache keyed on the row's write serial.

        For the row cursor, a line's look depends on its row's content (the serial), where
        it is (row index: click metadata), the crop and width, the base style, and whether
        the cursor or the hover is on it; nothing else of the cursor position matters.
        """
        if self.cursor_type != "row":
            return super()._render_line(y, x1, x2, base_style)
        try:
            row_key, line_no = self._get_offsets(y)
        except LookupError:
            return super()._render_line(y, x1, x2, base_style)
        if row_key is self._header_row_key:
            serial, row_index = self._header_serial, -1
        else:
            index = self._row_locations.get(row_key)
            serial, row_index = self._row_serial.get(row_key, -1), -2 if index is None else index
        key = (
            row_key,
            serial,
            row_index,
            line_no,
            x1,
            x2,
            self.size.width,
            base_style,
            self.cursor_coordinate.row == row_index,
            self.hover_coordinate.row == row_index,
            self.show_cursor,
            self._show_hover_cursor,
            self._pseudo_class_state,
        )
        strip = self._strips.get(key)
        if strip is None:
            if len(self._strips) >= RENDER_CACHE_LIMIT:
                self._strips.clear()
            strip = super()._render_line(y, x1, x2, base_style)
            self._strips[key] = strip
        return strip

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        """``DataTable._render_cell`` behind a cache that survives other cells' updates.

        The key holds everything the rendering depends on: which cell (row and column key,
        and its write serial), where it is (row index, used in the click metadata), and how
        it is drawn (styles, cursor, hover, width). Header and row-label cells go straight
        to Textual's own cache (the header changes with the sort arrow). Every cell but the
        row label is drawn :data:`GAP` narrower, behind its gap.
        """
        if column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        if row_index < 0:
            return _with_gap(
                super()._render_cell(
                    row_index, column_index, base_style, width - GAP, cursor, hover
                )
            )
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        key = (
            row_key,
            column_key,
            self._cell_serial.get((row_key, column_key), 0),
            row_index,
            base_style,
            width,
            cursor,
            hover,
            self._show_hover_cursor,
            self._pseudo_class_state,
        )
        lines = self._cell_lines.get(key)
        if lines is None:
            if len(self._cell_lines) >= RENDER_CACHE_LIMIT:
                self._cell_lines.clear()
            lines = _with_gap(
                super()._render_cell(
                    row_index, column_index, base_style, width - GAP, cursor, hover
                )
            )
            self._cell_lines[key] = lines
        return lines
