"""The journal as an append-only table that can follow the newest event or hold still.

Two rules make it cheap and predictable at 4 Hz with a busy node:

* Rows are only ever appended (keyed by ``seq``); a frame costs the new events, not the log.
  When the row count passes the cap by half, the table is rebuilt from its own copy of the
  newest ``cap`` rows (cells already built), so trimming costs one rebuild per ``cap / 2``
  events instead of an O(rows) ``remove_row`` per event.
* Following is explicit state. While following, every append moves the cursor to the newest
  row and scrolls to the end. Any move the operator makes (cursor up, page up, a click on an
  older row, the mouse wheel, the scrollbar) stops following, so new events never pull the
  view away from what they are reading; ``f`` or ctrl+end resumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.text import Text
from textual.coordinate import Coordinate
from textual.message import Message
from textual.theme import Theme
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from console.client import JournalRow
from console.widgets.journal_format import row_texts
from console.widgets.palette import event_style, rich_style, table_style

#: Column key, label and fixed width (``None``: fields, which takes the width left over).
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("time", "time", 12),
    ("seq", "seq", 6),
    ("table", "table", 11),
    ("event", "event", 18),
    ("peer", "peer", 16),
    ("service", "service", 11),
    ("fields", "fields", None),
)

#: Narrowest the fields column gets (it takes whatever the fixed columns leave).
FIELDS_MIN = 8

#: Default number of rows kept on screen.
DEFAULT_CAP = 2000


class JournalTable(DataTable[Text]):
    """Journal rows, oldest at the top; follows the newest unless the operator looks away."""

    DEFAULT_CSS = """
    JournalTable {
        height: 1fr;
        scrollbar-gutter: stable;
    }
    """

    @dataclass
    class FollowChanged(Message):
        """Following started or stopped (by a key, or because the operator scrolled)."""

        table: JournalTable
        following: bool

    def __init__(self, *, cap: int = DEFAULT_CAP, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, id=id)
        self.cap = cap
        self.following = True
        """Whether new rows move the view to the newest event."""
        self._rows: dict[str, JournalRow] = {}
        """The rows in the table, by row key (``str(seq)``), top to bottom."""
        self._rendered: dict[str, tuple[Text, ...]] = {}
        """Cells already built per row key: a trim re-adds rows without re-formatting them."""
        self._programmatic = 0

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width or FIELDS_MIN)
        self.app.theme_changed_signal.subscribe(self, self._recolour)

    # ------------------------------------------------------------------ data
    @property
    def shown_seqs(self) -> list[int]:
        """Seqs of the rows in the table, top to bottom."""
        return [int(k) for k in self._rows]

    def row_at(self, key: str | None) -> JournalRow | None:
        """The journal row behind a row key (from a ``RowHighlighted`` message)."""
        return None if key is None else self._rows.get(key)

    def append_rows(self, rows: Iterable[JournalRow]) -> int:
        """Append ``rows`` (oldest first); returns how many were added."""
        added = 0
        with self._ours():
            for row in rows:
                key = str(row["seq"])
                if key in self._rows:  # already shown: a replayed delta must not raise
                    continue
                self._rows[key] = row
                self.add_row(*self._cells_for(key, row), key=key)
                added += 1
            if added and self.row_count > self.cap + self.cap // 2:
                keep = list(self._rows.items())[-self.cap :]
                trimmed = len(self._rows) - len(keep)
                self._rows = dict(keep)
                self._rendered = {k: self._rendered[k] for k, _ in keep if k in self._rendered}
                self._rebuild(trimmed=trimmed)
        if added and self.following:
            self._to_end()
        return added

    def replace_rows(self, rows: Iterable[JournalRow]) -> None:
        """Show exactly ``rows`` (the newest ``cap`` of them): used when a filter changes."""
        kept = list(rows)[-self.cap :]
        self._rows = {str(r["seq"]): r for r in kept}
        self._rendered = {k: self._rendered[k] for k in self._rows if k in self._rendered}
        with self._ours():
            self._rebuild(trimmed=None)
        # New content: the old scroll position means nothing, so show the newest rows (still
        # without following, if the operator had stopped it).
        self._to_end()

    def _rebuild(self, trimmed: int | None) -> None:
        """Re-add the kept rows; ``trimmed`` rows vanished from the top (None: new content)."""
        cursor, scroll = self.cursor_row, self.scroll_y
        self._refill()
        if self.following or trimmed is None:
            return
        # Not following: keep the operator's place, which moved up by the trimmed rows.
        row, y = max(0, cursor - trimmed), max(0.0, scroll - trimmed)
        self.move_cursor(row=row, animate=False, scroll=False)
        self.call_after_refresh(self._restore_scroll, y)

    def _refill(self) -> None:
        self.clear()
        for key, row in self._rows.items():
            self.add_row(*self._cells_for(key, row), key=key)

    def _restore_scroll(self, y: float) -> None:
        with self._ours():
            self.scroll_to(y=y, animate=False, immediate=True)

    def _cells_for(self, key: str, row: JournalRow) -> tuple[Text, ...]:
        cells = self._rendered.get(key)
        if cells is None:
            cells = self._rendered[key] = self._cells(row)
        return cells

    def _cells(self, row: JournalRow) -> tuple[Text, ...]:
        time, seq, table, event, peer, service, fields = row_texts(row)
        app = self.app
        muted = rich_style(app, "$foreground-muted")
        return (
            Text(time, style=muted, no_wrap=True),
            Text(seq, style=muted, justify="right", no_wrap=True),
            Text(table, style=rich_style(app, table_style(table)), no_wrap=True),
            Text(event, style=rich_style(app, event_style(table, event)), no_wrap=True),
            Text(peer, no_wrap=True),
            Text(service, style=rich_style(app, "$secondary"), no_wrap=True),
            Text(fields, no_wrap=True, overflow="ellipsis"),
        )

    def on_resize(self) -> None:
        self._fit_fields()

    def _fit_fields(self) -> None:
        """Give the fields column exactly the width left over, so rows never scroll sideways.

        The whole row is always readable in the detail line under the table, so ellipsising
        long fields here loses nothing.
        """
        column = self.columns.get(ColumnKey("fields"))
        if column is None:
            return
        fixed = sum(c.get_render_width(self) for k, c in self.columns.items() if k != "fields")
        width = max(
            FIELDS_MIN, self.scrollable_content_region.width - fixed - 2 * self.cell_padding
        )
        if width != column.width:
            # ``Column.width`` is public, but a DataTable re-measures only when rows are
            # added: re-adding the kept rows (cells already built) lays them out anew, and
            # keeps the operator's place as a trim does.
            column.width = width
            with self._ours():
                self._rebuild(trimmed=0)
            if self.following:
                self._to_end()

    def _recolour(self, _theme: Theme) -> None:
        # Cells hold concrete colours, so a theme switch re-renders the kept rows.
        self._rendered.clear()
        with self._ours():
            self._rebuild(trimmed=0)
        if self.following:
            self._to_end()

    # ------------------------------------------------------------------ following
    def set_following(self, following: bool) -> None:
        """Start or stop following; starting jumps to the newest row."""
        changed = following != self.following
        self.following = following
        if following:
            self._to_end()
        if changed:
            self.post_message(self.FollowChanged(self, following))

    def _to_end(self) -> None:
        with self._ours():
            if self.row_count:
                self.move_cursor(row=self.row_count - 1, animate=False)
            self.scroll_end(animate=False)

    @contextmanager
    def _ours(self) -> Iterator[None]:
        """Mark cursor and scroll changes as the table's own, not the operator's."""
        self._programmatic += 1
        try:
            yield
        finally:
            self._programmatic -= 1

    def _operator_moved(self) -> None:
        if self.following and not self._programmatic:
            self.following = False
            self.post_message(self.FollowChanged(self, False))

    def watch_cursor_coordinate(self, old: Coordinate, new: Coordinate) -> None:
        super().watch_cursor_coordinate(old, new)
        if old != new and new.row < self.row_count - 1:
            self._operator_moved()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Only an upward move away from the end counts: appends and clamps on resize move
        # down or stay at the end.
        if new_value < old_value and new_value < self.max_scroll_y - 1:
            self._operator_moved()

    def action_scroll_bottom(self) -> None:
        """ctrl+end: jump to the newest row and follow again."""
        self.set_following(True)
