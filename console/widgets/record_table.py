"""A short table of records, rebuilt whole when its list changes, whose cursor stays on its
record: the base of the Misbehavior and Parked tables.

Why rebuilt whole: these lists are short (the node keeps at most a hundred misbehavior
records, and parks few peers), change rarely, and never on an unchanged frame (the subclasses
compare before calling :meth:`RecordTable.refill`), so a rebuild costs nothing worth
diffing. Why the cursor is put back by record, not by row index: a new record would otherwise
slide the row under the operator to another peer just before they press ``d``.

Cells hold concrete colours (:func:`console.widgets.palette.rich_style`), so a theme switch
rebuilds the rows in the new theme's colours.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.theme import Theme
from textual.widgets import DataTable

#: Column key, label and fixed width (fixed widths: an update never re-measures a column).
ColumnDef = tuple[str, str, int]


class RecordTable(DataTable[Text]):
    """Rows from :meth:`row_items`; subclasses say what a row's record is (:meth:`records`)."""

    DEFAULT_CSS = """
    RecordTable {
        height: 1fr;
        scrollbar-gutter: stable;
    }
    """

    COLUMNS: ClassVar[tuple[ColumnDef, ...]] = ()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", id=id)

    def on_mount(self) -> None:
        for key, label, width in self.COLUMNS:
            self.add_column(label, key=key, width=width)
        self.app.theme_changed_signal.subscribe(self, self._recolour)

    def row_items(self) -> Sequence[tuple[str, tuple[Text, ...]]]:
        """Each row's key and cells, top to bottom."""
        raise NotImplementedError

    def records(self) -> Sequence[Hashable]:
        """What each row (top to bottom) stands for: the cursor stays on its record."""
        raise NotImplementedError

    def cursor_record(self) -> Hashable | None:
        """The record under the cursor, if there is one."""
        shown = self.records()
        if not self.row_count or not 0 <= self.cursor_row < len(shown):
            return None
        return shown[self.cursor_row]

    def refill(self, selected: Hashable | None, cursor: int) -> None:
        """Rebuild the rows; the cursor goes back to ``selected`` if it is still listed,
        else to row ``cursor`` (or the last row)."""
        self.clear()
        for key, cells in self.row_items():
            self.add_row(*cells, key=key)
        shown = list(self.records())
        if selected is not None and selected in shown:
            self.move_cursor(row=shown.index(selected), animate=False)
        elif shown:
            self.move_cursor(row=min(cursor, len(shown) - 1), animate=False)

    def _recolour(self, _theme: Theme) -> None:
        self.refill(self.cursor_record(), self.cursor_row)
