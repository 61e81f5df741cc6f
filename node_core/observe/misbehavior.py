"""Misbehavior records: what a peer did wrong and what we did about it.

Every record is also a journal event (``misbehavior/recorded``) so the console, traces and
tests see the same thing. ``action`` is ``recorded`` (record-only) or ``disconnected``.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass

from node_core.observe.journal import Journal
from node_core.observe.metrics import NodeMetrics


@dataclass(frozen=True, slots=True)
class MisbehaviorRecord:
    wall: float
    label: str
    service: str
    reason: str
    action: str
    detail: str


class MisbehaviorLog:
    """The node's recent misbehavior records and tallies by (service, reason)."""

    def __init__(self, journal: Journal, metrics: NodeMetrics, capacity: int = 1000) -> None:
        self.journal = journal
        self.metrics = metrics
        self.records: deque[MisbehaviorRecord] = deque(maxlen=capacity)
        self.tally: Counter[tuple[str, str]] = Counter()

    def record(
        self, label: str, service: str, reason: str, *, action: str, detail: str = ""
    ) -> MisbehaviorRecord:
        rec = MisbehaviorRecord(time.time(), label, service, reason, action, detail[:300])
        self.records.append(rec)
        self.tally[(service, reason)] += 1
        self.metrics.misbehavior.labels(service, reason).inc()
        self.journal.emit(
            "misbehavior",
            "recorded",
            peer=label,
            service=service,
            reason=reason,
            action=action,
            detail=rec.detail,
        )
        return rec
