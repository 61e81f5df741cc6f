"""The node's diagnostics task: evaluate once a second, journal and count what changed.

The evaluator (:mod:`node_core.observe.diagnostics`) is sans-I/O; this is the part that runs
it on the node's loop, so a headless node journals ``diagnostic/started`` and
``diagnostic/cleared`` and keeps ``zakura_diagnostic_active{id}`` current whether or not a
console is watching (docs/ARCHITECTURE.md, "Observation").

It hands the evaluator :class:`~node_core.observe.diagnostic_facts.NodeFacts` read straight
from the node (:func:`node_facts`), not a snapshot document: with 1,000 peers building the
document every second was about 100 ms of the loop each time (docs/ARCHITECTURE.md,
"Measuring performance"), and the facts are a few numbers per running sync routine.

Invariants:
    * One evaluation per :data:`~node_core.observe.diagnostics.EVAL_INTERVAL`; every
      ``routine/panicked`` row the journal still holds is handed to the evaluator once.
    * The facts are the ones :func:`~node_core.observe.diagnostic_facts.facts_from_snapshot`
      reads from the node's snapshot at the same moment (``tests/observe/test_diagnostics_nodes.py``
      checks it on running nodes).
    * A failing evaluation is logged and skipped: observers never break what they observe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from node_core.observe.diagnostic_facts import (
    BlockSyncFacts,
    HeaderSyncFacts,
    NodeFacts,
    ParkedFacts,
    RoutineFacts,
)
from node_core.observe.diagnostics import (
    DIAGNOSTICS,
    EVAL_INTERVAL,
    Diagnostic,
    DiagnosticsEvaluator,
    DiagnosticThresholds,
    PanicSeen,
)
from node_core.tasks import stop_tasks
from node_core.transport.routine import RoutineState

if TYPE_CHECKING:
    from node_core.block_sync.core import BlockSyncCore
    from node_core.chain.chainstate import ChainState
    from node_core.header_sync.reactor import HeaderSyncReactor
    from node_core.observe.journal import Journal
    from node_core.observe.looplag import LoopLagMonitor
    from node_core.observe.metrics import NodeMetrics
    from node_core.observe.schema import DiagnosticRow
    from node_core.transport.connection import Connection

__all__ = ["DiagnosticsMonitor", "FactsSource", "node_facts"]

_log = logging.getLogger(__name__)

F_co = TypeVar("F_co", covariant=True)


class RoutineFactViews(Protocol[F_co]):
    """What diagnostics read of a sync service: one session's facts, by connection and
    generation (``routine_facts`` beside the snapshot's ``routine_view``)."""

    def routine_facts(self, conn_id: int, generation: int) -> F_co | None: ...


class FactsSource(Protocol):
    """What :func:`node_facts` reads: a :class:`~node_core.node.Node` (mypy checks it)."""

    def connections(self) -> list[Connection]: ...
    @property
    def chain(self) -> ChainState: ...
    @property
    def header_sync(self) -> HeaderSyncReactor: ...
    @property
    def header_sync_service(self) -> RoutineFactViews[HeaderSyncFacts]: ...
    @property
    def block_sync(self) -> BlockSyncCore: ...
    @property
    def block_sync_service(self) -> RoutineFactViews[BlockSyncFacts]: ...
    @property
    def loop_lag(self) -> LoopLagMonitor: ...


def node_facts(node: FactsSource) -> NodeFacts:
    """The node's facts now: what ``facts_from_snapshot(node.snapshot())`` would read, in
    the same order, without building the document."""
    hs_service, bs_service = node.header_sync_service, node.block_sync_service
    running = RoutineState.RUNNING
    routines: list[RoutineFacts] = []
    for conn in node.connections():
        label, conn_id = conn.peer.label, conn.peer.conn_id
        for handle in conn.routines:
            if handle.state is not running:
                continue
            service = handle.service
            if service == "block_sync":
                generation = handle.ctx.generation
                bs = bs_service.routine_facts(conn_id, generation)
                if bs is not None:
                    routines.append(RoutineFacts(label, service, generation, block_sync=bs))
            elif service == "header_sync":
                generation = handle.ctx.generation
                hs = hs_service.routine_facts(conn_id, generation)
                if hs is not None:
                    routines.append(RoutineFacts(label, service, generation, header_sync=hs))
    reactor = node.header_sync
    depths = reactor.depths
    lag = node.loop_lag.stats()
    core = node.block_sync
    return NodeFacts(
        routines=routines,
        parked=[ParkedFacts(p.label, p.reason, p.since) for p in reactor.parked.values()],
        lag_samples=lag.samples,
        lag_p99_ms=lag.p99_ms,
        reactor_events=depths["events"],
        reactor_events_max=depths["events_max"],
        reactor_actions=depths["actions"],
        reactor_actions_max=depths["actions_max"],
        header_tip=node.chain.header_tip[0],
        committed_total=core.sequencer.committed_total,
        budget_reserved=core.budget.used,
        budget_max=core.budget.max_bytes,
    )


class DiagnosticsMonitor:
    """Runs a :class:`DiagnosticsEvaluator` on a timer against the node's own facts.

    Args:
        facts: Reads the node's facts now (:func:`node_facts`).
        journal: Where panics are read from and diagnostics journalled.
        metrics: Holds the ``zakura_diagnostic_active`` gauge.
        thresholds: When each diagnostic fires (``--diag``).
    """

    def __init__(
        self,
        facts: Callable[[], NodeFacts],
        journal: Journal,
        metrics: NodeMetrics,
        thresholds: DiagnosticThresholds,
    ) -> None:
        self.thresholds = thresholds
        self.evaluator = DiagnosticsEvaluator(thresholds)
        self._facts = facts
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
        result = self.evaluator.evaluate_facts(self._facts(), panics, time.time())
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
