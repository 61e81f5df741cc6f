"""What every view renders from: the latest snapshot plus the journal tail.

Kept as one plain object on the app so that pausing is trivial (stop replacing it) and every
screen sees the same frame of data.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from console.client import JournalRow, Snapshot

JOURNAL_KEEP = 5000


@dataclass
class ConsoleState:
    snapshot: Snapshot | None = None
    journal: deque[JournalRow] = field(default_factory=lambda: deque(maxlen=JOURNAL_KEEP))
    journal_seq: int = 0
    paused: bool = False
    read_only: bool = False
    frames: int = 0

    def add_journal(self, rows: list[JournalRow]) -> None:
        for row in rows:
            self.journal.append(row)
        if rows:
            self.journal_seq = int(rows[-1]["seq"])

    def peer(self, label: str) -> dict[str, object] | None:
        if self.snapshot is None:
            return None
        for p in self.snapshot["peers"]:
            if p["label"] == label:
                return p  # type: ignore[no-any-return]
        return None
