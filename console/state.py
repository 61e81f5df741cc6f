"""What every view renders from: the latest snapshot plus the journal tail.

Kept as one plain object on the app so that pausing is trivial (stop replacing it) and every
screen sees the same frame of data.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from console.client import JournalRow, Snapshot

JOURNAL_KEEP = 5000
LAG_HISTORY = 120


@dataclass
class ConsoleState:
    snapshot: Snapshot | None = None
    journal: deque[JournalRow] = field(default_factory=lambda: deque(maxlen=JOURNAL_KEEP))
    journal_seq: int = 0
    paused: bool = False
    read_only: bool = False
    frames: int = 0
    #: Node event-loop lag p99 (ms), one point per frame, for the Overview sparkline.
    lag_p99: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_HISTORY))
    #: Why the node cannot be read now (None: it can); shown in the status bar.
    link_down: str | None = None
    #: Restarts of the node seen (its boot id changed).
    restarts: int = 0
    #: What the status bar says in place of the node while there is no snapshot (``None``:
    #: "waiting for the node"); a replay of a trace, which never has one, names the trace.
    headline: str | None = None

    def set_snapshot(self, snapshot: Snapshot) -> None:
        previous = self.snapshot
        self.snapshot = snapshot
        self.frames += 1
        if previous is not None and previous.get("boot_id") != snapshot.get("boot_id"):
            # The node restarted: its journal seq started again, so read it from the start
            # (the rows we have stay, the new run's rows follow them).
            self.restarts += 1
            self.journal_seq = 0
        lag = snapshot.get("loop_lag") or {}
        # One point per distinct snapshot: re-reading the same frame adds nothing.
        fresh = previous is None or previous.get("generated_at") != snapshot.get("generated_at")
        if fresh and lag.get("samples"):
            self.lag_p99.append(float(lag.get("p99_ms") or 0.0))

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
