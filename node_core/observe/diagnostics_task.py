"""The node's diagnostics task: evaluate once a second, journal and count what changed.

The evaluator (:mod:`node_core.observe.diagnostics`) is sans-I/O; this is the part that runs
it on the node's loop, so a headless node journals ``diagnostic/started`` and
``diagnostic/cleared`` and keeps ``zakura_diagnostic_active{id}`` current whether or not a
console is watching (docs/ARCHITECTURE.md, "Observation").

Invariants:
    * One evaluation per :data:`~node_core.observe.diagnostics.EVAL_INTERVAL`; every
      ``routine/panicked`` row the journal still holds is handed to the evaluator once.
    * A failing evaluation is logged and skipped: observers never break what they observe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from node_core.observe.diagnostics import (
    DIAGNOSTICS,
    EVAL_INTERVAL,
    Diagnostic,
    DiagnosticsEvaluator,
    DiagnosticThresholds,
    PanicSeen,
)
from node_core.tasks import stop_tasks

if TYPE_CHECKING:
    from node_core.observe.journal import Journal
    from node_core.observe.metrics import NodeMetrics
    from node_core.observe.schema import DiagnosticRow, Snapshot

__all__ = ["DiagnosticsMonitor"]

_log = logging.getLogger(__name__)


class DiagnosticsMonitor:
    """Runs a :class:`DiagnosticsEvaluator` on a timer against the node's own snapshot.

    Args:
        snapshot: Builds the node's snapshot document now.
        journal: Where panics are read from and diagnostics journalled.
        metrics: Holds the ``zakura_diagnostic_active`` gauge.
        thresholds: When each diagnostic fires (``--diag``).
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        journal: Journal,
        metrics: NodeMetrics,
        thresholds: DiagnosticThresholds,
    ) -> None:
        self.thresholds = thresholds
        self.evaluator = DiagnosticsEvaluator(thresholds)
        self._snapshot = snapshot
        self._journal = journal
        self._metrics = metrics
        self._seq = journal.last_seq
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> tuple[Diagnostic, ...]:
        return self.evaluator.active

    def rows(self) -> list[DiagnosticRow]:
        """The snapshot's ``diagnostics`` section."""
        return [d.row() for d in self.evaluator.active]

    def start(self) -> None:
        """Start evaluating on the running loop; a no-op if already running."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="diagnostics")

    async def stop(self) -> None:
        """Stop evaluating; idempotent. The last evaluation's diagnostics stay readable."""
        task, self._task = self._task, None
        await stop_tasks([] if task is None else [task])

    def evaluate_now(self) -> None:
        """One evaluation: read new panics, evaluate, journal the changes, set the gauge."""
        events = self._journal.since(self._seq)
        if events:
            self._seq = events[-1].seq
        panics = [
            PanicSeen(ev.peer, ev.service or "", ev.wall)
            for ev in events
            if ev.table == "routine" and ev.event == "panicked" and ev.peer is not None
        ]
        result = self.evaluator.evaluate(self._snapshot(), panics, time.time())
        for kind, changed in (("started", result.started), ("cleared", result.cleared)):
            for d in changed:
                self._journal.emit(
                    "diagnostic",
                    kind,
                    id=d.id,
                    severity=d.severity,
                    subject=d.subject,
                    since=d.since,
                    message=d.message,
                )
        counts = dict.fromkeys(DIAGNOSTICS, 0)
        for d in result.active:
            counts[d.id] = counts.get(d.id, 0) + 1
        self._metrics.record_diagnostics(counts)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(EVAL_INTERVAL)
            try:
                self.evaluate_now()
            except Exception:
                _log.exception("diagnostics evaluation failed")
