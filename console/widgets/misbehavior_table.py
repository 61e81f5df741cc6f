"""Misbehavior records, newest first, with a selection that stays on its record.

Records arrive rarely and the node keeps at most its last hundred, so the table is rebuilt
whenever the list changes (never on an unchanged frame), and the cursor is put back on the
record it was on, found by key, so it does not jump to another peer under the operator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text

from console.format import clean, clock, short_peer
from console.widgets.palette import rich_style
from console.widgets.record_table import ColumnDef, RecordTable

#: Column key, label and fixed width (fixed widths: an update never re-measures a column).
#: The reason (free text) comes last, so what the node did is whole on an 80-column terminal,
#: and peers show without their constant ``peer:`` prefix, as in the Peers view.
COLUMNS: tuple[ColumnDef, ...] = (
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


class MisbehaviorTable(RecordTable):
    """``snapshot["misbehavior"]`` as rows: time, peer, service, reason, action."""

    COLUMNS = COLUMNS

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._records: tuple[tuple[Any, ...], ...] | None = None
        self._rows: list[tuple[str, Record]] = []
        self.labels: dict[str, str] = {}
        """Row key -> peer label of that record."""

    @property
    def selected_label(self) -> str | None:
        """Peer label of the record under the cursor, if there is one."""
        key = self.cursor_record()
        return None if key is None else self.labels.get(str(key))

    def records(self) -> list[str]:
        """Rows stand for their records' keys: the cursor stays on its record."""
        return [key for key, _record in self._rows]

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
        selected, cursor = self.cursor_record(), self.cursor_row
        keys = record_keys(records)
        self._rows = list(reversed(list(zip(keys, records, strict=True))))
        self.labels = {k: str(r.get("label")) for k, r in self._rows}
        self.refill(selected, cursor)
        return True

    def row_items(self) -> list[tuple[str, tuple[Text, ...]]]:
        return [(key, self._cells(record)) for key, record in self._rows]

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
