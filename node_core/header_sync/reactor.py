"""The header-sync reactor: shared coordination for every peer's header-sync routine.

Routines own their peer's protocol state; the reactor owns only what is shared (reference
§3.10-3.13): the range queue and its production, per-peer outstanding requests and their
timeouts, commit ordering (through the header index and the committer of
:mod:`node_core.header_sync.committer`), serving slots,
the NewBlock pipeline and relay, status broadcasts, parking and misbehavior records.

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
  finalized height.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from node_core.chain.genesis import Checkpoints, genesis_header
from node_core.chain.miner import ChainError, validate_block
from node_core.chain.model import Block, BlockHeader
from node_core.chain.pow import DEMO_BITS
from node_core.header_sync.chain_index import (
    CommitPlan,
    HeaderIndex,
    LinkError,
    PlanKind,
    validate_run,
)
from node_core.header_sync.commands import (
    DropExpectation,
    EnqueueOutcome,
    ForwardNewBlock,
    HeaderSyncCommandSink,
    SendHeaders,
    Wake,
)
from node_core.header_sync.committer import (
    CommitBlock,
    CommitFailed,
    CommitHeaders,
    Committed,
    HeaderCommitter,
    ReorgHeaders,
    Result,
    ServeHeaders,
    ServeReady,
    TruncateHeaders,
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
from node_core.header_sync.observe import HeaderSyncMetrics, HeaderSyncTrace
from node_core.header_sync.peer_state import HsPeerState, RateMeter
from node_core.header_sync.range_queue import RangeRequest, ReturnReason, SharedHeaderRangeQueue
from node_core.header_sync.unavailable import UnavailableHeaders
from node_core.protocol.errors import CodecError
from node_core.protocol.header_sync import (
    DEFAULT_HEADERS_PER_RESPONSE,
    DEFAULT_INFLIGHT_REQUESTS,
    HS_FRAME_CAP,
    MAX_HEADERS_PER_RESPONSE,
    MAX_HS_MESSAGE_BYTES,
    NewBlock,
    Status,
    encode_header_sync,
    inbound_serving_limit,
)
from node_core.protocol.limits import FRAME_HEADER_BYTES
from node_core.tasks import stop_tasks

if TYPE_CHECKING:
    from node_core.chain.chainstate import ChainState
    from node_core.observe.journal import Journal
    from node_core.observe.misbehavior import MisbehaviorLog
    from node_core.observe.schema import HeaderSyncSection, ReactorDepths
    from node_core.transport.supervise import RoutineHandle

log = logging.getLogger(__name__)

SERVICE = "header_sync"
EVENTS_CAPACITY = 128
ACTIONS_CAPACITY = 128
SEEN_CAPACITY = 4096
#: Headers per store read when the index is rebuilt at start.
LOAD_CHUNK = 20_000
#: Window of the committed-headers rate shown by the console.
RATE_WINDOW_S = 5.0


@dataclass(frozen=True, slots=True)
class HeaderSyncConfig:
    """Header-sync settings; defaults are the reference's (§3.1) unless noted."""

    request_timeout: float = 30.0
    #: Reactor housekeeping tick (timeouts): ``min(request_timeout, 1 s)`` in the reference.
    tick_interval: float = 1.0
    max_headers_per_response: int = DEFAULT_HEADERS_PER_RESPONSE
    max_inflight_requests: int = DEFAULT_INFLIGHT_REQUESTS
    #: Minimum difficulty of every header (our synthetic chain's proof of work).
    min_bits: int = DEMO_BITS
    checkpoints: Checkpoints = field(default_factory=Checkpoints)
    accept_new_blocks: bool = True
    new_block_interval: float = 5.0
    #: First fork-search step below a failed anchor; each failed probe multiplies it by 4.
    fork_search_step: int = 16


@dataclass(slots=True)
class Outstanding:
    """A request the reactor times out: the range, its session and its deadline."""

    range: RangeRequest
    forward: bool
    generation: int
    deadline: float


@dataclass(slots=True)
class ForkSearch:
    """Where a peer's chain leaves ours: it agrees at ``low``, differs at or below ``high``."""

    low: int
    high: int
    step: int


@dataclass(slots=True)
class PeerEntry:
    """The reactor's record of one peer's current header-sync session."""

    label: str
    generation: int
    sink: HeaderSyncCommandSink[Status]
    #: The connection's negotiated ``max_message_bytes``: what we send this peer must fit it.
    max_message: int = MAX_HS_MESSAGE_BYTES
    state: HsPeerState | None = None
    handle: RoutineHandle | None = None
    status: Status | None = None
    outstanding: deque[Outstanding] = field(default_factory=deque)
    late_covered: int = 0
    served_inflight: int = 0
    last_sent_status: Status | None = None
    new_block_meter: RateMeter = field(default_factory=lambda: RateMeter(5.0))
    fork: ForkSearch | None = None


@dataclass(frozen=True, slots=True)
class ParkRecord:
    """A parked peer, as the Parked view shows it."""

    label: str
    service: str
    reason: str
    since: float
    work_returned: int


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
        self.abandoned = 0
        self.peers: dict[str, PeerEntry] = {}
        self.parked: dict[str, ParkRecord] = {}
        self._wakers: set[Callable[[], None]] = set()
        self._events: deque[RoutineEvent] = deque()
        self._lifecycle: deque[PeerDisconnected] = deque()
        self._results: deque[Result] = deque()
        self.committer = HeaderCommitter(lambda: self.chain.store, self._on_committer_result)
        self._bell = asyncio.Event()
        self.seen: OrderedDict[bytes, None] = OrderedDict()
        self.committed_total = 0
        self._rate: deque[tuple[float, int]] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        #: Components that follow the durable header tip (block-sync produces work from it).
        self.tip_listeners: list[Callable[[int, bytes], None]] = []
        #: Called with the fork height when the index switches to another branch (block-sync
        #: forgets its work above it).
        self.on_reorg: Callable[[int], None] | None = None

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

        Called by block sync when the height after ``height`` has had no body and no request
        in flight for too long (docs/ARCHITECTURE.md, "Bodies nobody serves"). The index and
        the store drop the headers above ``height`` (they have no bodies, so nothing verified
        is lost), the header at ``height + 1`` is refused for a while so the peers that still
        advertise it cannot hand it straight back, and block sync resets above ``height``
        exactly as for a reorg. Returns False when there is nothing above ``height`` or it is
        below the finalized height.
        """
        index = self.index
        if height >= index.tip_height or height < index.finalized_height:
            return False
        now = time.monotonic()
        dropped = index.hash_at(height + 1)
        assert dropped is not None
        old_tip = index.tip_height
        self.unavailable.add(dropped, height + 1, now)
        index.truncate_to(height)
        branch = index.branch
        if branch is not None and branch.fork_height > height:
            index.drop_branch()
        self.queue.reset_above(height)
        self.queue.uncover_above(height)
        for entry in self.peers.values():
            entry.fork = None
            status = entry.status
            if status is not None and self.unavailable.height_of(status.tip_hash, now) is not None:
                self.queue.cap_peer(entry.label, height)
        self.abandoned += 1
        self.metrics.abandoned.inc()
        self.journal.emit(
            "header_sync",
            "abandoned",
            service=SERVICE,
            height=height + 1,
            hash=dropped.hex(),
            dropped=old_tip - height,
            reason=reason,
        )
        self.committer.put(TruncateHeaders(height, index.tip_hash))
        if self.on_reorg is not None:
            self.on_reorg(height)
        self._schedule()
        return True

    def block_available(self, hash_: bytes) -> None:
        """A peer sent the block ``hash_`` with a valid body: stop refusing its header.

        Only a body proves it: a Status claiming a block proves nothing (a hostile peer could
        lift every refusal with one).
        """
        if not self.unavailable.discard(hash_):
            return
        for label in self.peers:
            self.queue.uncap_peer(label)
        self._schedule()

    def submit_local_block(self, block: Block) -> bool:
        """A block our own miner made: accept it like a relayed one, announce it to all."""
        header = block.header
        if header.prev_hash != self.index.tip_hash or header.height != self.index.tip_height + 1:
            return False
        self._accept_block(block, source=None)
        return True

    # ------------------------------------------------------------------ observation
    @property
    def depths(self) -> ReactorDepths:
        return {
            "events": len(self._events),
            "events_max": EVENTS_CAPACITY,
            "lifecycle": len(self._lifecycle),
            "actions": len(self.committer),
            "actions_max": ACTIONS_CAPACITY,
        }

    def headers_per_s(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._rate and self._rate[0][0] < now - RATE_WINDOW_S:
            self._rate.popleft()
        if not self._rate:
            return 0.0
        return sum(n for _, n in self._rate) / RATE_WINDOW_S

    def live_generations(self) -> dict[str, int]:
        """Each live (unparked) peer's current generation, for the invariant check."""
        return {label: e.generation for label, e in self.peers.items()}

    def snapshot(self) -> HeaderSyncSection:
        q = self.queue
        covered = q.covered
        branch = self.index.branch
        return {
            "range_queue": {
                "forward": len(q.forward),
                "backward": len(q.backward),
                "assigned": len(q.assigned),
                "covered_intervals": len(covered),
                "covered_to": covered[0][1] if covered and covered[0][0] == 0 else -1,
            },
            "reactor": self.depths,
            "peers": len(self.peers),
            "peers_with_status": sum(1 for e in self.peers.values() if e.status is not None),
            "parked": len(self.parked),
            "anchor": {"height": self.index.tip_height, "hash": self.index.tip_hash.hex()},
            "candidate": None
            if branch is None
            else {
                "fork_height": branch.fork_height,
                "tip_height": branch.tip_height,
                "peer": branch.peer,
            },
            "pending_commits": self.committer.pending_commits,
            "seen_cache": len(self.seen),
            "reorgs": self.index.reorgs,
            "abandoned": self.abandoned,
            "unavailable": self.unavailable.view(time.monotonic()),
            "headers_per_s": round(self.headers_per_s(), 1),
            "committed_total": self.committed_total,
        }

    def peer_view(self, label: str, generation: int) -> dict[str, Any] | None:
        """The reactor-side fields of one session (outstanding, serving slots)."""
        entry = self.peers.get(label)
        if entry is None or entry.generation != generation:
            return None
        now = time.monotonic()
        return {
            "served_inflight": entry.served_inflight,
            "outstanding": [
                {
                    "start_height": o.range.start_height,
                    "count": o.range.count,
                    "deadline_in_s": round(o.deadline - now, 1),
                }
                for o in entry.outstanding
            ],
            "fork_search": None
            if entry.fork is None
            else {"low": entry.fork.low, "high": entry.fork.high},
        }

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        tick = self.config.tick_interval
        next_tick = time.monotonic() + tick
        while True:
            self._bell.clear()
            budget = 64
            while self._lifecycle:
                self._guarded(self._on_disconnected, self._lifecycle.popleft())
            while self._results:
                self._guarded(self._on_result, self._results.popleft())
            while self._events and budget > 0:
                budget -= 1
                self._guarded(self._on_event, self._events.popleft())
            now = time.monotonic()
            if now >= next_tick:
                self._guarded(self._handle_timeouts, now)
                next_tick = now + tick
            if self._events or self._lifecycle or self._results:
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
            self._on_headers(ev)
        elif isinstance(ev, InboundGetHeadersRequested):
            self._on_get_headers(ev)
        elif isinstance(ev, NewBlockCandidate):
            self._on_new_block(ev)

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

    def _retry(self, o: Outstanding) -> None:
        if o.range.peer is None:
            self.queue.retry(o.range, forward=o.forward)

    def _on_headers(self, ev: PeerHeadersReceived) -> None:
        entry = self.peers.get(ev.peer)
        if entry is None:
            self._record(ev.peer, MisbehaviorReason.UNSOLICITED_HEADERS)
            return
        if not entry.outstanding:
            if entry.late_covered > 0:
                entry.late_covered -= 1
                self.metrics.response_late_covered_dropped.inc()
                return
            self._record(ev.peer, MisbehaviorReason.UNSOLICITED_HEADERS)
            return
        o = entry.outstanding.popleft()
        if o.range.peer is not None:
            # An affine range is answered once; scheduling makes the next one if needed.
            self.queue.clear_assignment(o.range)
        self.metrics.response_received.inc()
        self.trace.row(
            "header_headers_received",
            peer=ev.peer,
            range_start=o.range.start_height,
            range_count=len(ev.headers),
            expected_count=o.range.count,
        )
        if len(ev.body_sizes) != len(ev.headers):
            self._record(ev.peer, MisbehaviorReason.MALFORMED_MESSAGE)
            self._retry(o)
            return
        if not ev.headers:
            self.metrics.response_empty_returned.inc()
            return  # the routine already returned the range and holds its slot for 1 s
        if len(ev.headers) > o.range.count:
            self._record(ev.peer, MisbehaviorReason.RESPONSE_TOO_LONG)
            self._retry(o)
            return
        try:
            headers = tuple(BlockHeader.decode(raw) for raw in ev.headers)
        except CodecError:
            self._reject_range(entry, o, "decode")
            return
        if any(self.config.checkpoints.contradicts(h) for h in headers):
            self._reject_range(entry, o, "checkpoint")
            return
        try:
            validate_run(
                o.range.start_height,
                o.range.anchor_hash,
                headers,
                # The anchor is ours (main chain or branch): its time bounds the first header.
                anchor_time=self.index.time_at(o.range.start_height - 1, o.range.anchor_hash),
                min_bits=self.config.min_bits,
            )
        except LinkError:
            self._on_link_failure(entry, o)
            return
        except ChainError:
            self._reject_range(entry, o, "stateless")
            return
        cut = self.unavailable.first_refused(headers, time.monotonic())
        if cut is not None:
            # The peer's chain runs through a header we abandoned for want of its body:
            # keep what comes before it, and ask this peer for nothing above it for now.
            self.queue.cap_peer(entry.label, headers[cut].height - 1)
            self.trace.row(
                "header_range_rejected",
                peer=entry.label,
                range_start=o.range.start_height,
                range_count=o.range.count,
                reason="abandoned_header",
                stage="unavailable",
            )
            headers = headers[:cut]
            if not headers:
                self._retry(o)
                self._schedule()
                return
        if o.range.finalized and (
            len(headers) != o.range.count
            or self.config.checkpoints.checkpoint_at(headers[-1].height) != headers[-1].hash
        ):
            self._reject_range(entry, o, "checkpoint")
            return
        self._apply_plan(entry, o, self.index.plan(entry.label, headers))

    def _reject_range(self, entry: PeerEntry, o: Outstanding, stage: str) -> None:
        self.metrics.range_rejected.labels(stage).inc()
        self.trace.row(
            "header_range_rejected",
            peer=entry.label,
            range_start=o.range.start_height,
            range_count=o.range.count,
            reason="invalid_peer_range",
            stage=stage,
        )
        self._record(entry.label, MisbehaviorReason.INVALID_RANGE)
        self._retry(o)

    def _on_link_failure(self, entry: PeerEntry, o: Outstanding) -> None:
        self.metrics.stale_anchor_link_failure.inc()
        if o.range.peer is None:
            self._retry(o)
        best_known = self.index.tip_height
        branch = self.index.branch
        if branch is not None:
            best_known = max(best_known, branch.tip_height)
        claims_more = entry.status is not None and entry.status.tip_height > best_known
        if not claims_more:
            self._reject_range(entry, o, "link")
            return
        failed_anchor = o.range.start_height - 1
        search = entry.fork
        if search is None:
            entry.fork = ForkSearch(
                self.index.finalized_height, failed_anchor, self.config.fork_search_step
            )
        else:
            search.high = min(search.high, failed_anchor)
            search.step *= 4
        self.trace.row(
            "header_fork_search",
            peer=entry.label,
            range_start=o.range.start_height,
            reason="link_failure",
        )
        self._schedule()

    def _apply_plan(self, entry: PeerEntry, o: Outstanding, plan: CommitPlan) -> None:
        kind = plan.kind
        if kind is PlanKind.STALE:
            return  # anchored on a chain we no longer follow: nothing to learn
        if kind is PlanKind.BELOW_FINALIZED:
            self._reject_range(entry, o, "checkpoint")
            return
        if entry.fork is not None and plan.matched_to >= 0:
            entry.fork.low = max(entry.fork.low, plan.matched_to)
        if kind is PlanKind.IDENTICAL:
            if entry.fork is not None and entry.fork.low >= entry.fork.high:
                entry.fork = None  # it agrees where it disagreed: it moved; start over
            self._cover(o.range.start_height, plan.matched_to)
            self._schedule()
            return
        self.index.apply(plan)
        entry.fork = None
        if kind is PlanKind.EXTEND:
            self._cover(o.range.start_height, self.index.tip_height)
            self.committer.put(CommitHeaders(plan.start, plan.headers))
        elif kind is PlanKind.REORG:
            assert plan.fork_height is not None
            self.queue.reset_above(plan.fork_height)
            self.queue.uncover_above(plan.fork_height)
            self._cover(0, self.index.tip_height)
            for other in self.peers.values():
                other.fork = None
            self.metrics.reorged.inc()
            self.journal.emit(
                "header_sync",
                "reorg",
                peer=entry.label,
                service=SERVICE,
                fork_height=plan.fork_height,
                new_tip=self.index.tip_height,
            )
            self.committer.put(ReorgHeaders(plan.fork_height, plan.headers))
            if self.on_reorg is not None:
                self.on_reorg(plan.fork_height)
        elif kind is PlanKind.BRANCH:
            branch = self.index.branch
            self.journal.emit(
                "header_sync",
                "branch",
                peer=entry.label,
                service=SERVICE,
                fork_height=plan.fork_height,
                tip_height=None if branch is None else branch.tip_height,
            )
        self._schedule()

    def _cover(self, start: int, end: int) -> None:
        if end < start:
            return
        self.queue.mark_range_covered(start, end)
        self._cancel_covered_outstanding()

    def _cancel_covered_outstanding(self) -> None:
        """Outstanding shared requests now covered are dropped; their answers are absorbed."""
        for entry in list(self.peers.values()):
            keep: deque[Outstanding] = deque()
            dropped: list[Outstanding] = []
            for o in entry.outstanding:
                if o.range.peer is None and self.queue.is_covered(o.range):
                    dropped.append(o)
                else:
                    keep.append(o)
            if not dropped:
                continue
            entry.outstanding = keep
            for o in dropped:
                entry.late_covered += 1
                cmd = DropExpectation(o.generation, o.range.start_height, o.range.count)
                if self._command(entry, cmd, "drop_expectation") is EnqueueOutcome.PARKED:
                    self._park(entry, "drop_expectation_undeliverable")
                    break

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

    def _on_new_block(self, ev: NewBlockCandidate) -> None:
        entry = self.peers.get(ev.peer)
        if entry is None:
            self._record(ev.peer, MisbehaviorReason.UNKNOWN_PEER)
            return
        self.metrics.new_block.labels("received").inc()
        try:
            block = Block(BlockHeader.decode(ev.block_header), ev.block_body)
        except CodecError:
            self._record(ev.peer, MisbehaviorReason.MALFORMED_MESSAGE)
            return
        hash_ = block.hash
        if hash_ in self.seen:
            self.metrics.new_block.labels("deduped").inc()
            self.trace.row("header_new_block_deduped", peer=ev.peer, reason="seen_cache")
            return
        if not entry.new_block_meter.try_take(time.monotonic()):
            self._record(ev.peer, MisbehaviorReason.NEW_BLOCK_SPAM)
            return
        try:
            validate_block(block, None, min_bits=self.config.min_bits)
        except ChainError:
            self.metrics.new_block.labels("rejected").inc()
            self._record(ev.peer, MisbehaviorReason.INVALID_NEW_BLOCK)
            return
        header = block.header
        self._remember(hash_)
        # A block with its body: if we had abandoned its header for want of one, it is back.
        self.block_available(hash_)
        self.trace.row(
            "header_new_block_received", peer=ev.peer, height=header.height, hash=hash_.hex()
        )
        if self.index.hash_at(header.height) == hash_:
            self.metrics.new_block.labels("deduped").inc()
            self.trace.row("header_new_block_deduped", peer=ev.peer, reason="already_in_chain")
            return
        if not self.config.accept_new_blocks:
            self.metrics.new_block.labels("acceptance_unavailable").inc()
            return
        if (
            header.prev_hash != self.index.tip_hash
            or header.height != self.index.tip_height + 1
            or header.time < self.index.times[-1]
        ):
            # Not on our tip: the peer's Status (it advanced) drives a range sync instead.
            self.metrics.new_block.labels("unconnectable").inc()
            return
        self._accept_block(block, source=ev.peer)

    def _remember(self, hash_: bytes) -> None:
        self.seen[hash_] = None
        while len(self.seen) > SEEN_CAPACITY:
            self.seen.popitem(last=False)

    def _accept_block(self, block: Block, *, source: str | None) -> None:
        header = block.header
        self._remember(block.hash)
        self.index.apply(CommitPlan(PlanKind.EXTEND, header.height, (header,)))
        self._cover(header.height, header.height)
        self.committer.put(CommitBlock(block))
        payload = encode_header_sync(NewBlock(header.encode(), block.body))
        forwarded = 0
        for label in sorted(self.peers):
            entry = self.peers[label]
            if label == source:
                continue
            if entry.status is not None and entry.status.tip_height >= header.height:
                continue
            if len(payload) > entry.max_message:
                # This peer negotiated smaller messages: it gets the block by range sync.
                self.metrics.new_block.labels("too_large_for_peer").inc()
                continue
            outcome = self._command(entry, ForwardNewBlock(payload), "new_block")
            forwarded += outcome is EnqueueOutcome.QUEUED
        self.metrics.new_block.labels("forwarded").inc(forwarded)
        self.trace.row(
            "header_new_block_forwarded",
            source_peer=source,
            height=header.height,
            hash=block.hash.hex(),
            destination_peer_count=forwarded,
        )
        self._schedule()

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
        self._rate.append((time.monotonic(), res.count))
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

    # ------------------------------------------------------------------ timeouts
    def _handle_timeouts(self, now: float) -> None:
        for entry in list(self.peers.values()):
            expired = [o for o in entry.outstanding if o.deadline <= now]
            if not expired:
                continue
            entry.outstanding = deque(o for o in entry.outstanding if o.deadline > now)
            for o in expired:
                self.metrics.request_timed_out.inc()
                if o.range.peer is not None:
                    self.queue.clear_assignment(o.range)
                else:
                    self.queue.return_work(
                        entry.label, o.generation, o.range, ReturnReason.TIMEOUT, forward=o.forward
                    )
                if entry.generation != o.generation or entry.label not in self.peers:
                    continue
                cmd = DropExpectation(o.generation, o.range.start_height, o.range.count)
                if self._command(entry, cmd, "drop_expectation") is EnqueueOutcome.PARKED:
                    self._park(entry, "drop_expectation_undeliverable")
                    break
        self._schedule()

    # ------------------------------------------------------------------ scheduling
    def _schedule(self) -> None:
        """Produce forward work, fork-search probes and branch extensions; wake routines."""
        best = -1
        for entry in self.peers.values():
            if entry.status is not None:
                best = max(best, entry.status.tip_height)
        if best >= 0:
            self.chain.note_advertised(best)
        index = self.index
        tip = index.tip_height
        if best > tip:
            start = tip + 1
            end = min(best, tip + MAX_HEADERS_PER_RESPONSE)
            finalized = False
            cp = self.config.checkpoints.next_at_or_above(start)
            if cp is not None and cp <= end:
                end, finalized = cp, True
            self.queue.ensure_forward(
                RangeRequest(start, end - start + 1, index.tip_hash, finalized)
            )
        for entry in self.peers.values():
            self._schedule_probe(entry)
        branch = index.branch
        if branch is not None:
            owner = self.peers.get(branch.peer)
            if owner is not None and owner.status is not None:
                ahead = owner.status.tip_height - branch.tip_height
                if ahead > 0:
                    self.queue.ensure_forward(
                        RangeRequest(
                            branch.tip_height + 1,
                            min(ahead, MAX_HEADERS_PER_RESPONSE),
                            branch.tip_hash,
                            False,
                            owner.generation,
                            owner.label,
                        )
                    )
        self._wake_routines()

    def _schedule_probe(self, entry: PeerEntry) -> None:
        search = entry.fork
        if search is None or entry.status is None:
            return
        if search.high <= search.low:
            entry.fork = None
            self._record(entry.label, MisbehaviorReason.INVALID_RANGE)
            return
        mid = max(search.low, search.high - search.step)
        anchor = self.index.hash_at(mid)
        if anchor is None:
            entry.fork = None
            return
        count = min(search.high - mid, MAX_HEADERS_PER_RESPONSE)
        self.queue.ensure_forward(
            RangeRequest(mid + 1, count, anchor, False, entry.generation, entry.label)
        )

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
