"""The peer table: one row per peer, refreshed in place several times a second.

Why it is built the way it is (like dolphie's process list):

* Rows are keyed by peer label, so a row is the same row from frame to frame whatever the
  sort order, and the cursor follows a peer, not a row index (htop's "killed the wrong
  process because the list moved").
* Rows come from :class:`~console.widgets.peer_rows.RowBuilder`, which reuses last frame's
  row for a peer whose fields did not change; such rows are skipped outright. The others are
  compared with what is shown, and only a row whose cells changed is written (and only its
  line repainted). Rows come and go by set difference.
* The table re-sorts at most once per frame, and only when a row was added or a value in the
  sort column changed.
* Drawing is :class:`~console.widgets.line_table.LineTable`'s: Textual's public Line API, with
  render caches keyed on the cells themselves (a ``DataTable`` re-rendered every visible cell
  whenever one cell changed). Columns are one space apart, so the fourteen columns with the
  header-sync set fit a 120-column terminal.
"""

from __future__ import annotations

from dataclasses import replace
from operator import ne

from textual.message import Message

from console.client import Snapshot
from console.format import Glyphs
from console.widgets.cells import Cell, ColumnSpec
from console.widgets.line_table import LineTable
from console.widgets.peer_rows import (
    MISSING,
    PeerRow,
    RowBuilder,
    SortValue,
    columns_for,
    order_services,
)


class PeerTable(LineTable):
    """The Peers view's table. Call :meth:`show` with each snapshot."""

    DEFAULT_CSS = """
    PeerTable {
        height: 1fr;
    }
    """

    class SortChanged(Message):
        """The sort column or direction changed (the screen's summary shows it)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.services: tuple[str, ...] = ()
        self.specs: tuple[ColumnSpec, ...] = ()
        self.sort_column = "conn"
        self.sort_reverse = False
        self.filter_text = ""
        self._builder = RowBuilder()
        #: Rows in the table (by label) as last built.
        self._rows: dict[str, PeerRow] = {}
        self._sort_values: dict[str, SortValue] = {}
        #: Counters for tests and the benchmark: cells written, rows added, sorts done.
        self.cell_updates = 0
        #: (label, cells shown before, cells now) of each row the last :meth:`show` replaced:
        #: which columns changed is worked out only when a test asks (:attr:`last_written`).
        self._replaced: list[tuple[str, tuple[Cell, ...], tuple[Cell, ...]]] = []
        self.rows_added = 0
        self.sorts = 0

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
        return self.cursor_key()

    def selected_label(self) -> str | None:
        """The label under the cursor if that peer is still connected (actions target it)."""
        label = self.cursor_label()
        row = self._rows.get(label) if label is not None else None
        return label if row is not None and row.live else None

    @property
    def last_written(self) -> list[tuple[str, str]]:
        """(label, column key) of each cell the last :meth:`show` wrote."""
        return [
            (label, spec.key)
            for label, old, new in self._replaced
            for spec, was, now in zip(self.specs, old, new, strict=True)
            if was != now
        ]

    def rendered_cells(self, label: str) -> tuple[Cell, ...] | None:
        """What the table shows for ``label`` (for tests and the benchmark's check)."""
        return self.row_cells(label)

    def row_labels(self) -> list[str]:
        """Labels in display order."""
        return self.keys()

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

    def header_clicked(self, column: ColumnSpec) -> None:
        """Clicking a header sorts by it; clicking it again reverses."""
        self.sort_by(column.key)

    # ------------------------------------------------------------------ table upkeep
    def _set_columns(self, services: tuple[str, ...]) -> None:
        """(Re)build the columns: on the first frame and when a new service appears."""
        self.services = services
        self.specs = columns_for(services)
        if self.sort_column not in {s.key for s in self.specs}:
            self.sort_column, self.sort_reverse = "conn", False
        self._sort_values = {}
        self._rows = {}
        self.set_columns([replace(s, title=self._title(s)) for s in self.specs])

    def _title(self, spec: ColumnSpec) -> str:
        return spec.title + (self._arrow() if spec.key == self.sort_column else "")

    def _sync_rows(self, rows: dict[str, PeerRow]) -> bool:
        """Remove, add and update rows by set difference; returns whether any was added."""
        before, services = self._rows, self.services
        self._replaced = []
        self.remove_rows([k for k in self.keys() if k not in rows])
        added = False
        changed: list[tuple[str, tuple[Cell, ...]]] = []
        for label, row in rows.items():
            old = self.row_cells(label)
            if old is not None and before.get(label) is row:
                continue  # last frame's row object: nothing in it changed
            cells = row.cells(services)
            if old is None:
                self.put_row(label, cells)
                self.rows_added += 1
                added = True
            elif old != cells:
                self._replaced.append((label, old, cells))
                self.cell_updates += sum(map(ne, old, cells))  # cells that differ, in C
                changed.append((label, cells))
        self.update_rows(changed)
        self._rows = rows
        return added

    def _sort(self) -> None:
        """Order the rows by the current column, ties broken by label."""
        values = self._sort_values
        for i, spec in enumerate(self.specs):  # the arrow moves with the sort column
            self.set_header(i, self._title(spec))
        self.set_order(
            sorted(
                self.keys(),
                key=lambda label: (values.get(label, MISSING), label),
                reverse=self.sort_reverse,
            )
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
        if selected is not None and self.row_cells(selected) is not None:
            target = self.get_row_index(selected)
        else:
            target = min(max(index, 0), self.row_count - 1)
        if target != self.cursor_row:
            self.move_cursor(row=target)
