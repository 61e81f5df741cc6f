"""Block-sync shared coordination: work production, the committer, status, observation.

Per-peer routines own their peer's requests, deadlines, liveness and window; this core keeps
only what peers share (reference §4.2, §4.13): the :class:`WorkQueue` and its byte budget, the
:class:`Sequencer`, the producer that turns committed headers into needed heights, and the
committer task that makes bodies durable in order.

Invariants:

- Shared structures are touched only in synchronous sections; the committer's awaits are
  store I/O between two such sections, and it re-checks what it read against the sequencer's
  epoch, so a reset while a write was in flight is never undone by the write's result.
- Held bytes are released only when the store's verified tip moved past them (the durable
  frontier), never when a body merely arrived or was verified (docs/ARCHITECTURE.md, "The
  chain and the store").
- Work is produced only for heights whose header is durable, at most ``lookahead_blocks``
  above the floor, so the queue's size is bounded whatever the header tip is.
- Every change that can let a routine do more (new work, returned work, freed bytes, a reset)
  rings every routine's doorbell; routines re-poll, so a coalesced ring loses nothing.
- **Bodies nobody serves are given up, not waited for.** Headers arrive before bodies, so a
  peer can hand us a valid header whose body nobody has. When the height the committer waits
  for has been pending (nobody fetching it) for ``body_unavailable_timeout`` seconds while
  peers with a Status are connected and no peer still below that height raised its servable
  range to a new high meanwhile (peers catching up restart the wait, but never beyond
  ``STARVED_MAX_FACTOR`` times the timeout in all, so a peer inching its claim up cannot
  hold the node forever), the header chain above the verified tip is abandoned
  (``HeaderSyncReactor.abandon_above``), exactly like a reorg down to it, so the node
  follows a chain someone can serve.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from node_core.block_sync.registry import PeerRegistry
from node_core.block_sync.sequencer import BufferedBody, Sequencer
from node_core.block_sync.work import ByteBudget, WorkQueue, WorkState
from node_core.chain.store import StoreError
from node_core.observe.trace import TableTrace
from node_core.protocol.block_sync import (
    DEFAULT_BLOCKS_PER_RESPONSE,
    DEFAULT_INFLIGHT_REQUESTS,
    DEFAULT_RESPONSE_BYTES,
    EMPTY_SERVABLE_HIGH,
    EMPTY_SERVABLE_LOW,
    Status,
)
from node_core.tasks import stop_tasks

if TYPE_CHECKING:
    from node_core.chain.chainstate import ChainState
    from node_core.header_sync.reactor import HeaderSyncReactor
    from node_core.observe.journal import Journal
    from node_core.observe.metrics import NodeMetrics
    from node_core.observe.misbehavior import MisbehaviorLog
    from node_core.observe.schema import BlockSyncSection, BlockSyncStall
    from node_core.observe.trace import TraceWriter

log = logging.getLogger(__name__)

SERVICE = "block_sync"
TRACE_TABLE = "block_sync"
RATE_WINDOW_S = 5.0
#: Peers catching up may restart the starvation wait, but it never lasts longer than this
#: many ``body_unavailable_timeout`` s in all.
STARVED_MAX_FACTOR = 4
#: Bodies per commit transaction the committer waits for while more are in flight.
COMMIT_BATCH_TARGET = 256
#: How long it waits for them (one fsync costs about as much).
COMMIT_COALESCE_S = 0.01


@dataclass(frozen=True, slots=True)
class BlockSyncConfig:
    """Block-sync settings. Defaults follow the reference scaled to a laptop (PROTOCOL.md)."""

    #: The byte budget: reserved request estimates plus held bodies (reference 6 GiB).
    max_inflight_bytes: int = 64 * 1024 * 1024
    max_blocks_per_response: int = DEFAULT_BLOCKS_PER_RESPONSE
    max_inflight_requests: int = DEFAULT_INFLIGHT_REQUESTS
    max_response_bytes: int = DEFAULT_RESPONSE_BYTES
    request_timeout: float = 8.0
    #: No accepted block for this long with requests outstanding: protocol reject.
    liveness_timeout: float = 32.0
    #: Heights produced above the floor at most (bounds the work queue).
    lookahead_blocks: int = 4096
    retry_avoid: float = 0.05
    #: A request holding the height the committer waits for is given up after this long.
    floor_rescue_timeout: float = 2.0
    #: ... and that peer is not asked for those heights again for this long.
    floor_avoid: float = 8.0
    #: Concurrent GetBlocks answers per peer; beyond it the answer is RangeUnavailable.
    serving_slots: int = 4
    tick_interval: float = 1.0
    #: The next height to commit pending this long with nobody serving it: give up the
    #: headers above the verified tip (see the module docstring).
    body_unavailable_timeout: float = 15.0


class BlockSyncMetrics:
    """The ``sync_block_*`` metrics (reference §5.3)."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.request_sent = metrics.counter("sync_block_request_sent", "GetBlocks sent")
        self.floor_bypass = metrics.counter(
            "sync_block_request_floor_bypass", "Floor requests sent beyond a full window"
        )
        self.body_received = metrics.counter("sync_block_body_received", "Bodies accepted")
        self.fill_stop = metrics.counter(
            "sync_block_fill_stop", "Why a fill pass stopped", ("reason",)
        )
        self.floor_rescued = metrics.counter(
            "sync_block_floor_rescued", "Floor requests given up after the rescue leash"
        )
        self.request_timed_out = metrics.counter(
            "sync_block_request_timed_out", "Block requests past their deadline"
        )
        self.committed = metrics.counter("sync_block_committed", "Bodies made durable")
        self.commit_rejected = metrics.counter(
            "sync_block_commit_rejected", "Bodies the committer refused"
        )
        self.served = metrics.counter("sync_block_served", "Blocks served to peers")
        self.download_floor = metrics.gauge("sync_block_download_floor", "Download floor")
        self.budget_used = metrics.gauge("sync_block_budget_used_bytes", "Bytes reserved+held")
        self.other_chain = metrics.counter(
            "sync_block_other_chain", "Blocks of another chain than ours at the height asked"
        )
        self.estimate_raised = metrics.counter(
            "sync_block_estimate_raised", "Bodies refetched with a larger reservation"
        )
        self.body_unavailable = metrics.counter(
            "sync_block_body_unavailable", "Header chains given up: no peer served the body"
        )


class BlockSyncCore:
    """The shared half of block-sync; one per node."""

    def __init__(
        self,
        *,
        chain: ChainState,
        header_sync: HeaderSyncReactor,
        journal: Journal,
        misbehavior: MisbehaviorLog,
        metrics: BlockSyncMetrics,
        trace: TraceWriter | None,
        config: BlockSyncConfig | None = None,
    ) -> None:
        self.chain = chain
        self.header_sync = header_sync
        self.journal = journal
        self.misbehavior = misbehavior
        self.metrics = metrics
        self.trace = trace
        self._rows = TableTrace(trace, TRACE_TABLE)
        #: Whether rows are written: per-block rows are not even built without a trace.
        self.tracing = trace is not None
        self.config = config or BlockSyncConfig()
        self.budget = ByteBudget(self.config.max_inflight_bytes)
        self.work = WorkQueue(self.budget, 0, on_work=self.ring)
        self.sequencer = Sequencer(0)
        self.registry = PeerRegistry()
        #: How many times each height's body was committed since start (exactly-once check;
        #: a reorg forgets the heights above its fork, whose bodies the store dropped).
        self.commits: dict[int, int] = {}
        self._bells: set[Callable[[], None]] = set()
        self._commit_bell = asyncio.Event()
        self._produced_to = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._rate: deque[tuple[float, int, int]] = deque()
        self.peak_outstanding = 0
        self.reset_epoch = 0
        self.routines: dict[tuple[int, int], Any] = {}
        #: Since when the height the committer waits for has been pending with nobody on it
        #: (restarted by a peer catching up), and since when in all.
        self._starved_since: float | None = None
        self._starved_first = 0.0
        self._starved_height = 0
        #: When a peer's servable range last grew (peers catching up: not a stall).
        self._last_growth = 0.0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        verified = self.chain.verified_tip[0]
        self.work = WorkQueue(self.budget, verified, on_work=self.ring)
        self.sequencer = Sequencer(verified)
        self._produced_to = verified
        self.produce()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._commit_loop(), name="block-sync-committer"),
            loop.create_task(self._tick_loop(), name="block-sync-tick"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await stop_tasks(tasks)

    # ------------------------------------------------------------------ wake-ups
    def subscribe(self, bell: Callable[[], None]) -> Callable[[], None]:
        self._bells.add(bell)
        return lambda: self._bells.discard(bell)

    def ring(self) -> None:
        for bell in tuple(self._bells):
            bell()

    # ------------------------------------------------------------------ producer
    def produce(self) -> int:
        """Queue needed heights up to the durable header tip, within the look-ahead."""
        floor = self.work.floor
        start = max(self._produced_to, floor) + 1
        top = min(self.chain.header_tip[0], floor + self.config.lookahead_blocks)
        # A slice of the index's main chain: it holds every height up to its tip.
        hashes = self.header_sync.index.hashes[start : top + 1] if start <= top else []
        if hashes:
            self._produced_to = start + len(hashes) - 1
        return self.work.extend((height, hash_, None) for height, hash_ in enumerate(hashes, start))

    def on_header_tip(self, _height: int, _hash: bytes) -> None:
        """Headers became durable: there may be bodies to fetch now."""
        self.produce()

    def on_header_reorg(self, fork_height: int) -> None:
        """Headers above ``fork_height`` changed: forget work, bodies and the floor above it.

        The store drops bodies above the fork in the same transaction as the new headers, so
        the floor comes down with it; requests in flight for old-branch heights find no work
        entry when their bodies arrive and are ignored as stale.
        """
        self.sequencer.reset_to(fork_height)
        for height in [h for h in self.commits if h > fork_height]:
            del self.commits[height]
        if fork_height < self.work.floor:
            self.work.lower_floor(fork_height)
        else:
            self.work.reset_above(fork_height)
        self._produced_to = min(self._produced_to, fork_height)
        self.reset_epoch += 1
        self.produce()
        self.ring()

    # ------------------------------------------------------------------ routines
    def local_status(self) -> Status:
        verified, hash_ = self.chain.verified_tip
        low, high = (1, verified) if verified >= 1 else (EMPTY_SERVABLE_LOW, EMPTY_SERVABLE_HIGH)
        return Status(
            low,
            high,
            hash_,
            self.config.max_blocks_per_response,
            self.config.max_inflight_requests,
            self.config.max_response_bytes,
        )

    def on_peer_growth(self, previous_best: int, servable_high: int) -> None:
        """A peer's servable range reached a new high for its session.

        Only a peer that was still below the height we wait for counts as catching up; a
        claim is not trusted for more (a Status proves nothing about holding a block).
        """
        if servable_high > previous_best and previous_best < self.sequencer.next_height:
            self._last_growth = time.monotonic()

    def accept_body(self, body: BufferedBody) -> bool:
        """A routine's verified body: buffer it for the committer (False: redundant)."""
        if not self.sequencer.accept(body):
            return False
        if self.sequencer.ready():
            self._commit_bell.set()
        return True

    @property
    def peak_budget_used(self) -> int:
        """The most bytes the budget ever held (derived from the budget, not sampled)."""
        return self.budget.peak

    def note_outstanding(self) -> None:
        """Record the peak of requests in flight across all peers (scenario invariants)."""
        total = sum(len(r.outstanding) for r in self.routines.values())
        self.peak_outstanding = max(self.peak_outstanding, total)

    def fund_floor(self, needed: int) -> bool:
        """Free bytes for the floor lane by shedding the highest look-ahead body."""
        while self.budget.available < needed:
            body = self.sequencer.shed_highest(self.sequencer.next_height)
            if body is None:
                return False
            self.work.unreceive(body.height)
        return True

    def record(self, label: str, reason: str, *, disconnect: bool = False) -> None:
        self.misbehavior.record(
            label, SERVICE, reason, action="disconnected" if disconnect else "recorded"
        )

    def row(self, event: str, **fields: object) -> None:
        self._rows.row(event, **fields)

    # ------------------------------------------------------------------ committer
    async def _commit_loop(self) -> None:
        store = self.chain.store
        while True:
            await self._commit_bell.wait()
            self._commit_bell.clear()
            if self._ready_run() < COMMIT_BATCH_TARGET and self._in_flight():
                # Each transaction pays an fsync: let bodies already on the wire join this
                # one (measured: 16 bodies/commit 30 MB/s, 400 bodies/commit 100 MB/s).
                await asyncio.sleep(COMMIT_COALESCE_S)
            batch = self.sequencer.drain()
            if not batch:
                continue
            epoch = self.sequencer.apply_epoch
            try:
                await self._commit(store, batch, epoch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or a store failure: keep the committer alive
                log.exception("block-sync commit failed")
                self.journal.emit(
                    "block_sync", "commit_failed", service=SERVICE, error=repr(exc)[:300]
                )
                for body in self.sequencer.on_rejected(batch[0].height):
                    self.work.unreceive(body.height)
            if self.sequencer.ready():
                self._commit_bell.set()

    def _ready_run(self) -> int:
        """Bodies drainable right now (the contiguous run at the sequencer's next height)."""
        seq, n = self.sequencer, 0
        while seq.next_height + n in seq.buffer:
            n += 1
        return n

    def _in_flight(self) -> bool:
        return any(r.outstanding for r in self.routines.values())

    async def _commit(self, store: Any, batch: list[BufferedBody], epoch: int) -> None:
        stored = await store.headers_range(batch[0].height, len(batch))
        good = 0
        for body, header in zip(batch, stored, strict=False):
            if self.header_sync.index.hash_at(body.height) != body.hash or header != body.header:
                break
            good += 1
        if epoch != self.sequencer.apply_epoch:
            return  # a reset happened while we read: its drops already released the bytes
        if good < len(batch):
            rejected = batch[good].height
            self.metrics.commit_rejected.inc(len(batch) - good)
            self.row("block_apply_finished", height=rejected, result="rejected")
            for dropped in self.sequencer.on_rejected(rejected):
                self.work.unreceive(dropped.height)
            batch = batch[:good]
            if not batch:
                self.ring()
                return
        try:
            verified = await store.put_bodies([(b.height, b.body) for b in batch])
        except StoreError as exc:
            self.journal.emit("block_sync", "commit_failed", service=SERVICE, error=str(exc))
            for dropped in self.sequencer.on_rejected(batch[0].height):
                self.work.unreceive(dropped.height)
            return
        if verified is None:
            return
        for body in batch:
            self.commits[body.height] = self.commits.get(body.height, 0) + 1
        self.sequencer.on_durable(verified)
        freed = self.work.advance_floor(verified)
        verified_hash = self.header_sync.index.hash_at(verified)
        if verified_hash is not None:
            self.chain.verified_tip = (verified, verified_hash)
        nbytes = sum(b.nbytes for b in batch)
        self._rate.append((time.monotonic(), len(batch), nbytes))
        self.metrics.committed.inc(len(batch))
        self.metrics.download_floor.set(self.sequencer.download_floor)
        self.metrics.budget_used.set(self.budget.used)
        self.row(
            "block_apply_finished",
            height=verified,
            result="committed",
            count=len(batch),
            released_bytes=freed,
        )
        self.produce()
        self.ring()

    # ------------------------------------------------------------------ ticks
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval)
            self.produce()
            starved = self.check_starved(time.monotonic())
            self.metrics.budget_used.set(self.budget.used)
            self.row("block_sync_state", **self.state_row())
            if starved or self._tick_has_news():
                self.ring()

    def _tick_has_news(self) -> bool:
        """Whether the tick's ring would give a routine something to do: heights waiting to
        be requested (or retried once the budget frees), or a grown Status that a routine has
        not sent yet (held back by its minimum interval, or a full stream). A routine's own
        deadlines wake it without the tick. Why it matters: ringing 1,000 idle routines every
        second cost the loop 60-100 ms each time (docs/ARCHITECTURE.md, "Measuring
        performance")."""
        if self.work.pending_count:
            return True
        high = self.local_status().servable_high
        return any(
            r.sent_status is None or r.sent_status.servable_high < high
            for r in self.routines.values()
        )

    def check_starved(self, now: float) -> bool:
        """The watchdog of the module docstring; True when it gave headers up just now."""
        h = self.sequencer.next_height
        waiting = (
            h <= self.header_sync.index.tip_height
            and self.work.state(h) is WorkState.PENDING
            and any(r.status is not None for r in self.routines.values())
        )
        if not waiting:
            self._starved_since = None
            return False
        timeout = self.config.body_unavailable_timeout
        if self._starved_since is None or self._starved_height != h:
            self._starved_since = self._starved_first = now
            self._starved_height = h
            return False
        if self._last_growth > self._starved_since:
            self._starved_since = now  # a peer is catching up: give it time
        if (
            now - self._starved_since < timeout
            and now - self._starved_first < STARVED_MAX_FACTOR * timeout
        ):
            return False
        waited = now - self._starved_first
        self._starved_since = None
        self.metrics.body_unavailable.inc()
        self.row("block_body_unavailable", height=h, waited_s=round(waited, 1))
        return self.header_sync.abandon_above(h - 1, "no_peer_serves_body")

    def stall_view(self, now: float) -> BlockSyncStall | None:
        """Why nothing is downloading, when the committer's next height has nobody on it."""
        since = self._starved_since
        if since is None:
            return None
        stops: dict[str, int] = {}
        for routine in self.routines.values():
            stops[routine.last_fill_stop] = stops.get(routine.last_fill_stop, 0) + 1
        waited = now - since
        return {
            "height": self._starved_height,
            "waiting_s": round(waited, 1),
            "give_up_in_s": round(max(0.0, self.config.body_unavailable_timeout - waited), 1),
            "peer_stops": stops,
        }

    def state_row(self) -> dict[str, Any]:
        counts = self.work.counts()
        return {
            "body_download_floor": self.sequencer.download_floor,
            "verified_block_tip": self.chain.verified_tip[0],
            "best_header_tip": self.chain.header_tip[0],
            "body_lag": self.chain.header_tip[0] - self.chain.verified_tip[0],
            "applying": len(self.sequencer.applying),
            "reorder": len(self.sequencer.buffer),
            "outstanding": counts["in_flight"],
            "budget_available": self.budget.available,
            "budget_reserved": self.budget.used,
            "peers": len(self.routines),
        }

    def rates(self) -> tuple[float, float]:
        now = time.monotonic()
        while self._rate and self._rate[0][0] < now - RATE_WINDOW_S:
            self._rate.popleft()
        blocks = sum(r[1] for r in self._rate) / RATE_WINDOW_S
        nbytes = sum(r[2] for r in self._rate) / RATE_WINDOW_S
        return round(blocks, 1), round(nbytes, 1)

    def snapshot(self) -> BlockSyncSection:
        counts = self.work.counts()
        by_state = self.work.bytes_by_state()
        blocks_per_s, bytes_per_s = self.rates()
        return {
            "download_floor": self.sequencer.download_floor,
            "verified_tip": self.chain.verified_tip[0],
            "budget_reserved": self.budget.used,
            "budget_max": self.budget.max_bytes,
            "budget_peak": self.budget.peak,
            "peak_outstanding_requests": self.peak_outstanding,
            "reserved_bytes": by_state["reserved"],
            "held_bytes": by_state["held"],
            "reorder_count": len(self.sequencer.buffer),
            "reorder_bytes": self.sequencer.reorder_bytes,
            "applying_count": len(self.sequencer.applying),
            "pending": counts["pending"],
            "in_flight": counts["in_flight"],
            "received": counts["received"],
            "blocks_per_s": blocks_per_s,
            "bytes_per_s": bytes_per_s,
            "committed_total": self.sequencer.committed_total,
            "reset_epoch": self.reset_epoch,
            "stall": self.stall_view(time.monotonic()),
            "peers": self.registry.slot_summary(),
        }
