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

from console.format import clean
from console.widgets.palette import rich_style
from console.widgets.peer_rows import age_text
from console.widgets.record_table import ColumnDef, RecordTable

#: Column key, label and fixed width.
#: The reason (free text) comes last, so the numbers are whole on an 80-column terminal, and
#: peers show without their constant ``peer:`` prefix, as in the Peers view.
COLUMNS: tuple[ColumnDef, ...] = (
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


class ParkedTable(RecordTable):
    """``snapshot["parked"]`` as rows: peer, service, reason, how long, work returned."""

    COLUMNS = COLUMNS

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows_shown: tuple[ParkedRow, ...] = ()
        self._built = False

    @property
    def selected_label(self) -> str | None:
        """Peer of the row under the cursor, if there is one."""
        label = self.cursor_record()
        return None if label is None else str(label)

    def records(self) -> list[str]:
        """Rows stand for their peers: the cursor stays on the peer it was on."""
        return [r[0] for r in self.rows_shown]

    def set_rows(self, rows: tuple[ParkedRow, ...]) -> bool:
        """Show ``rows``; returns whether the table was rebuilt (False on an unchanged frame)."""
        if self._built and rows == self.rows_shown:
            return False
        selected, cursor = self.selected_label, self.cursor_row
        self.rows_shown, self._built = rows, True
        self.refill(selected, cursor)
        return True

    def row_items(self) -> list[tuple[str, tuple[Text, ...]]]:
        app = self.app
        return [
            (
                f"{i}:{peer}",
                (
                    Text(peer.removeprefix("peer:"), no_wrap=True),
                    Text(service, style=rich_style(app, "$secondary")),
                    Text(age, justify="right"),
                    Text(work, justify="right"),
                    Text(reason, style=rich_style(app, "$peer-parked"), overflow="ellipsis"),
                ),
            )
            for i, (peer, service, reason, age, work) in enumerate(self.rows_shown)
        ]
