"""Parked peers (``snapshot["parked"]``), one row each, with a selection that stays on its peer.

The list is short (a node parks a peer's header sync only when a never-drop command cannot be
queued), so the table is rebuilt when what it shows changes, never on an unchanged frame. The
``since`` column is an age on the snapshot's clock, bucketed like the Peers view's ages so a
still list does not rebuild every frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual.theme import Theme
from textual.widgets import DataTable

from console.format import clean
from console.widgets.palette import rich_style
from console.widgets.peer_rows import age_text

#: Column key, label and fixed width.
#: The reason (free text) comes last, so the numbers are whole on an 80-column terminal, and
#: peers show without their constant ``peer:`` prefix, as in the Peers view.
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("peer", "peer", 16),
    ("service", "service", 12),
    ("since", "parked for", 10),
    ("work", "work returned", 13),
    ("reason", "reason", 58),
)

#: The node's park reason codes, said the way an operator reads them (unknown codes show as
#: they are, so a newer node's reason is never hidden).
REASON_TEXT = {
    "headers_response_undeliverable": "queue full: a Headers answer could not be queued",
    "drop_expectation_undeliverable": "queue full: a DropExpectation could not be queued",
}


def reason_text(code: str) -> str:
    """``code`` with its explanation; ``fault:N`` is an operator's park (fault id N)."""
    if code.startswith("fault:"):
        return f"parked by the operator (fault {code.partition(':')[2]})"
    text = REASON_TEXT.get(code)
    return code if text is None else f"{text} ({code})"


#: One row as shown: peer, service, reason, age text, work returned.
ParkedRow = tuple[str, str, str, str, str]


def parked_rows(parked: Sequence[Mapping[str, Any]], now: float) -> tuple[ParkedRow, ...]:
    """The rows for ``snapshot["parked"]`` at snapshot time ``now`` (peer strings cleaned)."""
    rows = []
    for p in parked:
        since = p.get("since")
        age = age_text(max(0.0, now - float(since))) if since is not None else "—"
        work = p.get("work_returned")
        rows.append(
            (
                clean(p.get("label") or "?", 40),
                clean(p.get("service") or "-", 20),
                reason_text(clean(p.get("reason") or "-", 120)),
                age,
                "—" if work is None else clean(work, 12),
            )
        )
    return tuple(rows)


class ParkedTable(DataTable[Text]):
    """``snapshot["parked"]`` as rows: peer, service, reason, how long, work returned."""

    DEFAULT_CSS = """
    ParkedTable {
        height: 1fr;
        scrollbar-gutter: stable;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", id=id)
        self.rows_shown: tuple[ParkedRow, ...] = ()
        self._built = False

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)
        self.app.theme_changed_signal.subscribe(self, self._recolour)

    @property
    def selected_label(self) -> str | None:
        """Peer of the row under the cursor, if there is one."""
        if not self.row_count or not 0 <= self.cursor_row < len(self.rows_shown):
            return None
        return self.rows_shown[self.cursor_row][0]

    def set_rows(self, rows: tuple[ParkedRow, ...]) -> bool:
        """Show ``rows``; returns whether the table was rebuilt (False on an unchanged frame)."""
        if self._built and rows == self.rows_shown:
            return False
        selected = self.selected_label
        cursor = self.cursor_row
        self.rows_shown, self._built = rows, True
        self._refill(selected, cursor)
        return True

    def _refill(self, selected: str | None, cursor: int) -> None:
        self.clear()
        app = self.app
        for i, (peer, service, reason, age, work) in enumerate(self.rows_shown):
            self.add_row(
                Text(peer.removeprefix("peer:"), no_wrap=True),
                Text(service, style=rich_style(app, "$secondary")),
                Text(age, justify="right"),
                Text(work, justify="right"),
                Text(reason, style=rich_style(app, "$peer-parked"), overflow="ellipsis"),
                key=f"{i}:{peer}",
            )
        labels = [r[0] for r in self.rows_shown]
        if selected in labels:
            self.move_cursor(row=labels.index(selected), animate=False)
        elif labels:
            self.move_cursor(row=min(cursor, len(labels) - 1), animate=False)

    def _recolour(self, _theme: Theme) -> None:
        self._refill(self.selected_label, self.cursor_row)
