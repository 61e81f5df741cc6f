"""The header-sync reactor: shared coordination for every peer's header-sync routine.

Routines own their peer's protocol state; the reactor owns only what is shared (reference
§3.10-3.13): the range queue and its production, per-peer outstanding requests and their
timeouts, commit ordering (through the header index and the committer of
:mod:`node_core.header_sync.committer`), serving slots,
the NewBlock pipeline and relay, status broadcasts, parking and misbehavior records.

The reactor holds that state and routes every event to its handler. Each part of the work
that is a concept of its own lives in its own module, which the reactor owns or calls and
which never imports the reactor: the records it keeps (:mod:`~node_core.header_sync.entries`),
which ranges to ask for and fork search (:mod:`~node_core.header_sync.planning`), Headers
responses to our requests (:mod:`~node_core.header_sync.responses`), the NewBlock relay
(:mod:`~node_core.header_sync.relay`), giving up headers whose bodies nobody serves
(:mod:`~node_core.header_sync.abandon`) and what it shows the operator
(:mod:`~node_core.header_sync.observe`).

Invariants:

- The reactor never awaits inside a handler: every handler is a synchronous section, so an
  exception can never leave the queue, the index or a peer entry half-updated
  (docs/ARCHITECTURE.md, "The routine model").
  Store I/O happens in the committer task; its results come back on an unbounded channel.
- Inputs are three channels, drained in priority order: ``lifecycle`` (unbounded: a
  disconnect can never be lost to a full queue), committer ``results`` (unbounded: a commit is
  never forgotten) and ``events`` (bounded at 128: a routine that finds it full treats the
  forward as a local reject and carries on, reference §3.5).
- Events are generation-scoped: ``PeerWorkAssigned`` and ``PeerDisconnected`` of a session
  that is not the peer's current one are ignored, so a stale session never touches the state
  of the peer's reconnected session (§3.9).
- A never-drop command (Headers response, DropExpectation) that a peer's sink cannot take
  parks that peer's header-sync (§3.12): its outstanding work is returned under its own
  generation, only its header-sync service scope is cancelled, and its events are ignored
  until a new session connects. Nothing else ever parks a peer.
- Forward ranges start at the index tip, which the index moves as soon as a commit is
  *planned*; the store follows in plan order (one committer, FIFO), and the durable tip in
  :class:`ChainState` moves only when the write returned. Our Status advertises the durable
  tip, so we never offer headers we could not serve after a crash.
- Reorgs (a deviation, docs/PROTOCOL.md): a response that does not link to its anchor from a
  peer claiming a higher tip starts a *fork search* for that peer: probes anchored further
  and further below (affine ranges only that peer takes) until one links; the part that
  differs becomes the competing branch, which that peer extends until it has more work than
  ours above the fork, and then the store switches to it in one transaction. Never below the
  finalized height (:mod:`~node_core.header_sync.planning`,
  :mod:`~node_core.header_sync.responses`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from node_core.chain.genesis import genesis_header
from node_core.chain.model import Block, BlockHeader
from node_core.header_sync.abandon import Abandonment
from node_core.header_sync.chain_index import HeaderIndex
from node_core.header_sync.commands import (
    DropExpectation,
    EnqueueOutcome,
    ForwardNewBlock,
    SendHeaders,
    Wake,
)
from node_core.header_sync.committer import (
    CommitFailed,
    Committed,
    HeaderCommitter,
    Result,
    ServeHeaders,
    ServeReady,
)
from node_core.header_sync.entries import (
    SERVICE,
    HeaderSyncConfig,
    Outstanding,
    ParkRecord,
    PeerEntry,
)
from node_core.header_sync.events import (
    InboundGetHeadersRequested,
    MisbehaviorReason,
    NewBlockCandidate,
    PeerDisconnected,
    PeerHeadersReceived,
    PeerMisbehavior,
    PeerStatusUpdated,
    PeerWorkAssigned,
    RoutineEvent,
)
from node_core.header_sync.observe import (
    CommitRate,
    HeaderSyncMetrics,
    HeaderSyncTrace,
    header_sync_section,
    peer_session_view,
    reactor_depths,
)
from node_core.header_sync.planning import (
    ProbeEnd,
    best_advertised,
    branch_extension,
    forward_ranges,
    next_probe,
    pipeline,
)
from node_core.header_sync.range_queue import RangeRequest, ReturnReason, SharedHeaderRangeQueue
from node_core.header_sync.relay import NewBlockRelay
from node_core.header_sync.responses import HeadersResponses
from node_core.header_sync.unavailable import UnavailableHeaders
from node_core.protocol.header_sync import (
    HS_FRAME_CAP,
    MAX_HEADERS_PER_RESPONSE,
    Status,
    inbound_serving_limit,
)
from node_core.protocol.limits import FRAME_HEADER_BYTES
from node_core.tasks import stop_tasks

if TYPE_CHECKING:
    from node_core.chain.chainstate import ChainState
    from node_core.observe.journal import Journal
    from node_core.observe.misbehavior import MisbehaviorLog
    from node_core.observe.schema import HeaderSyncSection, ReactorDepths

log = logging.getLogger(__name__)

EVENTS_CAPACITY = 128
#: Headers per store read when the index is rebuilt at start.
LOAD_CHUNK = 20_000


class HeaderSyncReactor:
    """Owns the shared header-sync state of one node; see the module docstring."""

    def __init__(
        self,
        *,
        chain: ChainState,
        journal: Journal,
        misbehavior: MisbehaviorLog,
        metrics: HeaderSyncMetrics,
        trace: HeaderSyncTrace,
        config: HeaderSyncConfig | None = None,
    ) -> None:
        self.chain = chain
        self.journal = journal
        self.misbehavior = misbehavior
        self.metrics = metrics
        self.trace = trace
        self.config = config or HeaderSyncConfig()
        self.queue = SharedHeaderRangeQueue(self._wake_routines)
        finalized = self.config.checkpoints.finalized_height or 0
        self.index = HeaderIndex(genesis_header(chain.network_id), finalized_height=finalized)
        #: Headers abandoned because no peer served their bodies (refused for a while).
        self.unavailable = UnavailableHeaders()
        self.peers: dict[str, PeerEntry] = {}
        self.parked: dict[str, ParkRecord] = {}
        self._wakers: set[Callable[[], None]] = set()
        self._events: deque[RoutineEvent] = deque()
        self._lifecycle: deque[PeerDisconnected] = deque()
        self._results: deque[Result] = deque()
        self.committer = HeaderCommitter(lambda: self.chain.store, self._on_committer_result)
        self._bell = asyncio.Event()
        self.committed_total = 0
        self._rate = CommitRate()
        self._tasks: list[asyncio.Task[None]] = []
        #: Components that follow the durable header tip (block-sync produces work from it).
        self.tip_listeners: list[Callable[[int, bytes], None]] = []
        #: Called with the fork height when the index switches to another branch (block-sync
        #: forgets its work above it).
        self.on_reorg: Callable[[int], None] | None = None
        self.responses = HeadersResponses(
            peers=self.peers,
            index=self.index,
            queue=self.queue,
            unavailable=self.unavailable,
            committer=self.committer,
            config=self.config,
            metrics=metrics,
            trace=trace,
            journal=journal,
            record=self._record,
            command=self._command,
            park=self._park,
            schedule=self._schedule,
            reorged=self._reorged,
        )
        self.relay = NewBlockRelay(
            peers=self.peers,
            index=self.index,
            committer=self.committer,
            config=self.config,
            metrics=metrics,
            trace=trace,
            record=self._record,
            cover=self.responses.cover,
            command=self._command,
            schedule=self._schedule,
            block_available=self.block_available,
        )
        self._abandonment = Abandonment(
            peers=self.peers,
            index=self.index,
            queue=self.queue,
            unavailable=self.unavailable,
            committer=self.committer,
            metrics=metrics,
            journal=journal,
            reorged=self._reorged,
            schedule=self._schedule,
        )

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Rebuild the index from the store, mark what we hold covered, start the tasks."""
        store = self.chain.store
        tip = self.chain.header_tip[0]
        height = 1
        while height <= tip:
            raw = await store.headers_range(height, min(LOAD_CHUNK, tip - height + 1))
            if not raw:
                break
            self.index.load(BlockHeader.decode(b) for b in raw)
            height += len(raw)
        self.queue.mark_range_covered(0, self.index.tip_height)
        self.metrics.best_tip.set(self.chain.header_tip[0])
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name="header-sync-reactor"),
            loop.create_task(self.committer.run(), name="header-sync-committer"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await stop_tasks(tasks)

    # ------------------------------------------------------------------ routine-facing
    def offer(self, event: RoutineEvent) -> bool:
        """Bounded, non-blocking hand-off from a routine; False when the queue is full."""
        if len(self._events) >= EVENTS_CAPACITY:
            return False
        self._events.append(event)
        self._bell.set()
        return True

    def lifecycle(self, event: PeerDisconnected) -> None:
        """Unbounded hand-off for session ends: never lost."""
        self._lifecycle.append(event)
        self._bell.set()

    def subscribe_wake(self, waker: Callable[[], None]) -> Callable[[], None]:
        """Ring ``waker`` when the range queue has new work; returns the unsubscribe call."""
        self._wakers.add(waker)
        return lambda: self._wakers.discard(waker)

    def _wake_routines(self) -> None:
        # Nothing queued, nothing any routine could pull: waking every routine would cost
        # O(peers) task switches per tick and per Status for nothing (1,000 a second at
        # 1,000 peers; bench/scale_peers.py).
        if not (self.queue.forward or self.queue.backward):
            return
        for waker in tuple(self._wakers):
            waker()

    # ------------------------------------------------------------------ service-facing
    def serve_cap(self, entry: PeerEntry) -> int:
        """Most headers one answer to ``entry`` may carry: our cap, and what fits its limit."""
        frame_cap = min(HS_FRAME_CAP, entry.max_message + FRAME_HEADER_BYTES)
        return inbound_serving_limit(self.config.max_headers_per_response, frame_cap)

    def our_status(self, entry: PeerEntry) -> Status:
        """Our Status for ``entry``: the durable tip, and a cap its message limit can carry."""
        height, hash_ = self.chain.header_tip
        return Status(
            tip_height=height,
            tip_hash=hash_,
            # A node still below its last checkpoint anchors at its tip: an anchor above the
            # tip is an invalid Status (§8.5 step 2) that peers would refuse.
            anchor_height=min(self.index.finalized_height, height),
            max_headers_per_response=self.serve_cap(entry),
            max_inflight_requests=self.config.max_inflight_requests,
        )

    def peer_connected(self, entry: PeerEntry) -> None:
        """A new session (§3.13 PeerConnected): un-park, reset, send our Status, schedule."""
        self.parked.pop(entry.label, None)
        self.queue.forget_peer(entry.label)
        self.index.drop_branch(entry.label)
        self.peers[entry.label] = entry
        self._send_status(entry, self.our_status(entry))
        self._schedule()

    def peer_removed(self, label: str) -> None:
        """The connection itself closed: a parked record has nothing left to describe."""
        self.parked.pop(label, None)

    def park(self, label: str, reason: str) -> int:
        """Park ``label``'s header-sync (§3.12); returns how many ranges were returned."""
        entry = self.peers.get(label)
        if entry is None:
            return 0
        return self._park(entry, reason)

    def abandon_above(self, height: int, reason: str) -> bool:
        """Give up the header chain above ``height``: nobody serves the bodies above it.

        Called by block sync (docs/ARCHITECTURE.md, "Bodies nobody serves"); see
        :meth:`Abandonment.abandon_above`. False when there is nothing to give up.
        """
        return self._abandonment.abandon_above(height, reason)

    def block_available(self, hash_: bytes) -> None:
        """A peer sent the block ``hash_`` with a valid body: stop refusing its header."""
        self._abandonment.block_available(hash_)

    @property
    def abandoned(self) -> int:
        """Header chains given up so far because no peer served their bodies."""
        return self._abandonment.count

    def submit_local_block(self, block: Block) -> bool:
        """A block our own miner made: accept it like a relayed one, announce it to all."""
        header = block.header
        if header.prev_hash != self.index.tip_hash or header.height != self.index.tip_height + 1:
            return False
        self.relay.accept(block, source=None)
        return True

    # ------------------------------------------------------------------ observation
    @property
    def depths(self) -> ReactorDepths:
        return reactor_depths(
            events=len(self._events),
            events_max=EVENTS_CAPACITY,
            lifecycle=len(self._lifecycle),
            actions=len(self.committer),
        )

    def headers_per_s(self, now: float | None = None) -> float:
        return self._rate.per_s(time.monotonic() if now is None else now)

    def live_generations(self) -> dict[str, int]:
        """Each live (unparked) peer's current generation, for the invariant check."""
        return {label: e.generation for label, e in self.peers.items()}

    def snapshot(self) -> HeaderSyncSection:
        return header_sync_section(
            queue=self.queue,
            index=self.index,
            peers=self.peers,
            parked=len(self.parked),
            depths=self.depths,
            pending_commits=self.committer.pending_commits,
            seen_cache=len(self.relay.seen),
            abandoned=self.abandoned,
            unavailable=self.unavailable.view(time.monotonic()),
            headers_per_s=self.headers_per_s(),
            committed_total=self.committed_total,
        )

    def peer_view(self, label: str, generation: int) -> dict[str, Any] | None:
        """The reactor-side fields of one session (outstanding, serving slots)."""
        entry = self.peers.get(label)
        if entry is None or entry.generation != generation:
            return None
        return peer_session_view(entry, time.monotonic())

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        next_tick = time.monotonic() + self.config.tick_interval
        responses = self.responses
        while True:
            self._bell.clear()
            deadline = time.perf_counter() + self.config.turn_budget
            if not responses.checking:  # a check in pieces is atomic for everything else
                while self._lifecycle:
                    self._guarded(self._on_disconnected, self._lifecycle.popleft())
                while self._results:
                    self._guarded(self._on_result, self._results.popleft())
            # Until the turn's budget is spent: the answer being checked, then held answers
            # before any later event (the order they always had), then events.
            while True:
                if responses.checking:
                    self._guarded(responses.advance, deadline)
                if responses.checking or time.perf_counter() >= deadline:
                    break
                if responses.releasable():
                    self._guarded(lambda _: responses.release_held(), None)
                elif self._events:
                    self._guarded(self._on_event, self._events.popleft())
                else:
                    break
            now = time.monotonic()
            if now >= next_tick and not responses.checking:
                self._guarded(responses.time_out, now)
                next_tick = now + self.config.tick_interval
            if (
                self._events
                or self._lifecycle
                or self._results
                or responses.checking
                or responses.releasable()
            ):
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_tick - time.monotonic())):
                    await self._bell.wait()

    def _guarded(self, handler: Callable[[Any], None], item: object) -> None:
        """One handler; a bug in it is logged and journaled, never fatal to the reactor."""
        try:
            handler(item)
        except Exception as exc:
            log.exception("header-sync reactor handler failed on %r", type(item).__name__)
            self.journal.emit(
                "header_sync", "reactor_error", service=SERVICE, error=repr(exc)[:300]
            )

    # ------------------------------------------------------------------ events
    def _on_event(self, ev: RoutineEvent) -> None:
        if isinstance(ev, PeerDisconnected):
            self._on_disconnected(ev)
            return
        if ev.peer in self.parked:
            return  # §3.12: a parked peer's events are ignored until it reconnects
        if isinstance(ev, PeerMisbehavior):
            self._record(ev.peer, ev.reason, disconnect=ev.disconnect)
        elif isinstance(ev, PeerStatusUpdated):
            self._on_status(ev)
        elif isinstance(ev, PeerWorkAssigned):
            self._on_work_assigned(ev)
        elif isinstance(ev, PeerHeadersReceived):
            self.responses.on_headers(ev)
        elif isinstance(ev, InboundGetHeadersRequested):
            self._on_get_headers(ev)
        elif isinstance(ev, NewBlockCandidate):
            self.relay.on_new_block(ev)

    def _on_disconnected(self, ev: PeerDisconnected) -> None:
        entry = self.peers.get(ev.peer)
        if entry is None or entry.generation != ev.generation:
            return  # a stale session, or already parked
        del self.peers[ev.peer]
        self.queue.forget_peer(ev.peer)
        self.index.drop_branch(ev.peer)
        self._schedule()

    def _on_status(self, ev: PeerStatusUpdated) -> None:
        entry = self.peers.get(ev.peer)
        if entry is None:
            return
        previous, entry.status = entry.status, ev.status
        self.metrics.status_received.inc()
        if previous is None or previous.tip_hash != ev.status.tip_hash:
            self.queue.uncap_peer(ev.peer)
        refused = self.unavailable.height_of(ev.status.tip_hash, time.monotonic())
        if refused is not None:
            # Its tip is a header we abandoned: nothing above the parent is worth asking.
            self.queue.cap_peer(ev.peer, refused - 1)
        self.trace.row(
            "header_status_received",
            peer=ev.peer,
            height=ev.status.tip_height,
            hash=ev.status.tip_hash.hex(),
            advertised_cap=ev.status.max_headers_per_response,
        )
        self._schedule()
        self._command(entry, Wake(), "wake")

    def _on_work_assigned(self, ev: PeerWorkAssigned) -> None:
        entry = self.peers.get(ev.peer)
        if entry is None or entry.generation != ev.generation:
            return
        rng = RangeRequest(
            ev.start_height, ev.count, ev.anchor_hash, ev.finalized, ev.priority, ev.affine_peer
        )
        deadline = time.monotonic() + self.config.request_timeout
        entry.outstanding.append(Outstanding(rng, ev.forward, ev.generation, deadline))
        self.metrics.request_sent.inc()
        self.trace.row(
            "header_get_headers_sent",
            peer=ev.peer,
            range_start=ev.start_height,
            range_count=ev.count,
            in_flight_count=len(entry.outstanding),
        )

    def _on_get_headers(self, ev: InboundGetHeadersRequested) -> None:
        entry = self.peers.get(ev.peer)
        if entry is None or entry.status is None:
            self._record(ev.peer, MisbehaviorReason.GET_HEADERS_SPAM)
            return
        if not 1 <= ev.count <= MAX_HEADERS_PER_RESPONSE:
            self._record(ev.peer, MisbehaviorReason.GET_HEADERS_TOO_LONG)
            return
        if entry.served_inflight >= self.config.max_inflight_requests:
            self._record(ev.peer, MisbehaviorReason.GET_HEADERS_SPAM)
            return
        entry.served_inflight += 1
        # Never more than fits the peer's negotiated message size: a shorter answer is valid
        # (the peer treats it like an answer near our tip), an oversize one cannot be sent.
        count = min(ev.count, self.serve_cap(entry))
        self.committer.put(ServeHeaders(ev.peer, entry.generation, ev.start_height, count))

    # ------------------------------------------------------------------ results
    def _on_committer_result(self, res: Result) -> None:
        self._results.append(res)
        self._bell.set()

    def _on_result(self, res: Result) -> None:
        if isinstance(res, ServeReady):
            self._on_serve_ready(res)
        elif isinstance(res, Committed):
            self._on_committed(res)
        else:
            self._on_commit_failed(res)

    def _on_serve_ready(self, res: ServeReady) -> None:
        entry = self.peers.get(res.peer)
        if entry is None or entry.generation != res.generation:
            return
        entry.served_inflight = max(0, entry.served_inflight - 1)
        cmd = SendHeaders(res.headers, res.body_sizes)
        if self._command(entry, cmd, "headers_response") is EnqueueOutcome.PARKED:
            self._park(entry, "headers_response_undeliverable")
            return
        self.trace.row(
            "header_headers_served",
            peer=res.peer,
            range_start=res.start,
            range_count=len(res.headers),
            expected_count=res.count,
        )

    def _on_committed(self, res: Committed) -> None:
        self.chain.header_tip = (res.tip_height, res.tip_hash)
        if res.verified is not None:
            verified_hash = self.index.hash_at(res.verified)
            if verified_hash is not None:
                self.chain.verified_tip = (res.verified, verified_hash)
        self.committed_total += res.count
        self._rate.add(time.monotonic(), res.count)
        self.metrics.range_committed.inc()
        self.metrics.headers_committed.inc(res.count)
        self.metrics.best_tip.set(res.tip_height)
        self.trace.row(
            "header_range_committed",
            range_start=res.start,
            range_count=res.count,
            height=res.tip_height,
            hash=res.tip_hash.hex(),
            kind=res.kind,
        )
        self.journal.emit(
            "header_sync",
            "committed",
            service=SERVICE,
            start=res.start,
            count=res.count,
            tip=res.tip_height,
            kind=res.kind,
        )
        for entry in self.peers.values():
            self._send_status(entry, self.our_status(entry))
        for listener in self.tip_listeners:
            listener(res.tip_height, res.tip_hash)

    def _on_commit_failed(self, res: CommitFailed) -> None:
        """The store refused a write the index planned: fall back to the durable tip."""
        durable = self.chain.header_tip[0]
        self.journal.emit(
            "header_sync", "commit_failed", service=SERVICE, start=res.start, error=res.error
        )
        if self.index.tip_height > durable:
            self.index.truncate_to(durable)
            self.queue.reset_above(durable)
            self.queue.uncover_above(durable)
        self._schedule()

    def _reorged(self, fork_height: int) -> None:
        """The index dropped what lies above ``fork_height``: block sync forgets it too."""
        if self.on_reorg is not None:
            self.on_reorg(fork_height)

    # ------------------------------------------------------------------ scheduling
    def _schedule(self) -> None:
        """Produce forward work, fork-search probes and branch extensions; wake routines.

        What to ask for is :mod:`node_core.header_sync.planning`; this queues it.
        """
        best = best_advertised(self.peers.values())
        if best >= 0:
            self.chain.note_advertised(best)
        for forward in forward_ranges(
            self.index,
            best,
            self.config.checkpoints,
            *pipeline(self.peers.values(), self.config.ranges_ahead),
        ):
            self.queue.ensure_forward(forward)
        for entry in self.peers.values():
            probe = next_probe(entry, self.index)
            if isinstance(probe, RangeRequest):
                self.queue.ensure_forward(probe)
            elif probe is not None:
                entry.fork = None
                if probe is ProbeEnd.EXHAUSTED:
                    self._record(entry.label, MisbehaviorReason.INVALID_RANGE)
        extension = branch_extension(self.index, self.peers)
        if extension is not None:
            self.queue.ensure_forward(extension)
        self._wake_routines()

    # ------------------------------------------------------------------ commands, parking
    def _command(
        self,
        entry: PeerEntry,
        cmd: SendHeaders | DropExpectation | ForwardNewBlock | Wake,
        kind: str,
    ) -> EnqueueOutcome:
        outcome = entry.sink.enqueue(cmd)
        self.metrics.command_enqueued.labels(kind, outcome.value).inc()
        if outcome is not EnqueueOutcome.QUEUED or kind != "wake":
            self.trace.row(
                "header_command_enqueued", peer=entry.label, kind=kind, result=outcome.value
            )
        return outcome

    def _send_status(self, entry: PeerEntry, status: Status) -> None:
        if entry.last_sent_status == status:
            self.metrics.status_suppressed.inc()
            return
        if entry.sink.set_status(status) is EnqueueOutcome.QUEUED:
            entry.last_sent_status = status
            self.metrics.status_sent.inc()
            self.trace.row(
                "header_status_sent",
                peer=entry.label,
                height=status.tip_height,
                hash=status.tip_hash.hex(),
            )

    def _park(self, entry: PeerEntry, reason: str) -> int:
        """§3.12: return work, forget, cancel only this service, remember why."""
        label = entry.label
        if self.peers.get(label) is not entry:
            return 0
        self.metrics.command_park.inc()
        del self.peers[label]
        returned = 0
        for o in entry.outstanding:
            self.queue.return_work(
                label, o.generation, o.range, ReturnReason.TEARDOWN, forward=o.forward
            )
            returned += 1
        entry.outstanding.clear()
        self.queue.forget_peer(label)
        self.index.drop_branch(label)
        self.parked[label] = ParkRecord(label, SERVICE, reason, time.time(), returned)
        entry.sink.close()
        handle = entry.handle
        if handle is not None:
            from node_core.transport.routine import RoutineState

            handle.state = RoutineState.PARKED
            handle.ctx.scope.cancel(f"{SERVICE}:parked:{reason}")
        self.trace.row("header_command_enqueued", peer=label, kind="park", result="parked")
        self.journal.emit(
            "header_sync",
            "parked",
            peer=label,
            service=SERVICE,
            reason=reason,
            work_returned=returned,
            generation=entry.generation,
        )
        self._schedule()
        return returned

    def _record(self, label: str, reason: MisbehaviorReason, *, disconnect: bool = False) -> None:
        if label in self.parked:
            return
        self.misbehavior.record(
            label, SERVICE, reason.value, action="disconnected" if disconnect else "recorded"
        )
        self.trace.row("header_peer_violation", peer=label, reason=reason.value)
        self.trace.row("header_peer_disconnect_requested", peer=label, reason=reason.value)
