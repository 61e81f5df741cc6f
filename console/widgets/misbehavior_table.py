"""Misbehavior records, newest first, with a selection that stays on its record.

Records arrive rarely and the node keeps at most its last hundred, so the table is rebuilt
whenever the list changes (never on an unchanged frame), and the cursor is put back on the
record it was on, found by key, so it does not jump to another peer under the operator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual.theme import Theme
from textual.widgets import DataTable

from console.format import clean, clock, short_peer
from console.widgets.palette import rich_style

#: Column key, label and fixed width (fixed widths: an update never re-measures a column).
#: The reason (free text) comes last, so what the node did is whole on an 80-column terminal,
#: and peers show without their constant ``peer:`` prefix, as in the Peers view.
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("time", "time", 8),
    ("peer", "peer", 16),
    ("service", "service", 12),
    ("action", "action", 12),
    ("reason", "reason", 28),
)

Record = Mapping[str, Any]


def record_keys(records: Sequence[Record]) -> list[str]:
    """A stable key per record: its fields, plus a counter for exact repeats."""
    seen: dict[str, int] = {}
    keys = []
    for r in records:
        base = f"{r.get('time')!r}|{r.get('label')}|{r.get('service')}|{r.get('reason')}"
        n = seen.get(base, 0)
        seen[base] = n + 1
        keys.append(f"{base}|{n}")
    return keys


class MisbehaviorTable(DataTable[Text]):
    """``snapshot["misbehavior"]`` as rows: time, peer, service, reason, action."""

    DEFAULT_CSS = """
    MisbehaviorTable {
        height: 1fr;
        scrollbar-gutter: stable;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", id=id)
        self._records: tuple[tuple[Any, ...], ...] | None = None
        self._rows: list[tuple[str, Record]] = []
        self.labels: dict[str, str] = {}
        """Row key -> peer label of that record."""

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)
        self.app.theme_changed_signal.subscribe(self, self._recolour)

    @property
    def selected_label(self) -> str | None:
        """Peer label of the record under the cursor, if there is one."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return None if key is None else self.labels.get(key)

    def set_records(self, records: Sequence[Record]) -> bool:
        """Show ``records`` (oldest first, as the snapshot lists them) newest first.

        Returns:
            Whether the table was rebuilt (False on an unchanged frame).
        """
        ident = tuple(
            (r.get("time"), r.get("label"), r.get("service"), r.get("reason"), r.get("action"))
            for r in records
        )
        if ident == self._records:
            return False
        self._records = ident
        keys = record_keys(records)
        self._rows = list(reversed(list(zip(keys, records, strict=True))))
        self.labels = {k: str(r.get("label")) for k, r in self._rows}
        self._refill()
        return True

    def _refill(self) -> None:
        selected = None
        if self.row_count:
            selected = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        cursor = self.cursor_row
        self.clear()
        for key, record in self._rows:
            self.add_row(*self._cells(record), key=key)
        if selected is not None and selected in self.labels:
            self.move_cursor(row=self.get_row_index(selected), animate=False)
        elif self._rows:
            self.move_cursor(row=min(cursor, len(self._rows) - 1), animate=False)

    def _cells(self, r: Record) -> tuple[Text, ...]:
        app = self.app
        action = clean(r.get("action") or "?", 16)
        action_spec = "$misbehaving bold" if action == "disconnected" else "$peer-parked"
        return (
            Text(clock(float(r.get("time") or 0.0)), style=rich_style(app, "$foreground-muted")),
            Text(short_peer(r.get("label") or "?", 32), no_wrap=True),
            Text(clean(r.get("service") or "-", 16), style=rich_style(app, "$secondary")),
            Text(action, style=rich_style(app, action_spec)),
            Text(clean(r.get("reason") or "-", 80), style=rich_style(app, "$misbehaving")),
        )

    def _recolour(self, _theme: Theme) -> None:
        self._refill()
