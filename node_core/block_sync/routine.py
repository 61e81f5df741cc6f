"""The per-peer block-sync routine (reference §4.3-4.7).

One routine per peer owns that peer's block stream: it reads and decodes frames, keeps the
peer's status, issues requests within its window, matches bodies to requests, enforces
request deadlines and liveness, and hands verified bodies to the sequencer. The shared state
(work, budget, sequencer) lives in :class:`BlockSyncCore` and is only touched synchronously.

Invariants:

- **Nothing stranded.** Every height this session took is in one of its outstanding requests
  until it is received (held by the ledger until durable) or returned; every exit path
  (normal, cancel, protocol reject, panic) runs :meth:`BlockSyncRoutine.teardown`, which
  returns every unreceived height and releases its reservation. A reset of the shared view
  (``reset_epoch``) drops the outstanding requests in place, the transport untouched.
- **Local congestion pauses reading.** Frames are read only while our outbound stream has
  room, so a peer that floods requests while not reading our answers cannot grow our memory.
- **Liveness, not idleness.** With requests outstanding and no accepted block for
  ``liveness_timeout`` the peer is rejected (``block_sync_no_block_progress``) unless our own
  outbound is full; a peer with nothing outstanding is never reaped.
- **Probe first.** An unproven peer gets one request until its first accepted block (the
  window enforces it), so a silent peer can strand at most one request's heights, and only
  until its deadline.
- Serving is done by a supervised helper task on the same connection with a bounded request
  queue (``serving_slots``); a full queue answers RangeUnavailable instead of buffering.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from node_core.block_sync.registry import Slots
from node_core.block_sync.routine_view import routine_facts, routine_view
from node_core.block_sync.sequencer import BufferedBody
from node_core.block_sync.window import DownloadWindow
from node_core.block_sync.work import Owner, WorkItem
from node_core.chain.miner import ChainError, validate_header
from node_core.chain.model import BlockHeader, body_root
from node_core.protocol.block_sync import (
    MAX_BLOCK_BODY_BYTES,
    TAG_BLOCK,
    TAG_BLOCKS_DONE,
    TAG_GET_BLOCKS,
    TAG_RANGE_UNAVAILABLE,
    TAG_STATUS,
    Block,
    BlocksDone,
    GetBlocks,
    RangeUnavailable,
    Status,
    clamp_request_count,
    decode_block_sync_frame,
    encode_block_sync,
)
from node_core.protocol.errors import CodecError
from node_core.transport.doorbell import Doorbell
from node_core.transport.routine import RemoteProtocolError, RoutineContext
from node_core.transport.stream import SendResult, Stream

if TYPE_CHECKING:
    from node_core.block_sync.core import BlockSyncCore
    from node_core.observe.diagnostic_facts import BlockSyncFacts
    from node_core.observe.schema import BlockSyncRoutineView

#: Bodies larger than this many times their estimate are a size mismatch (reference: 200 %).
SIZE_TOLERANCE = 3
#: Minimum seconds between two Status messages we send for a growing servable range.
STATUS_MIN_INTERVAL = 0.5
#: Items handled back to back before the routine yields.
YIELD_EVERY = 64
#: Request starts remembered per session for telling late answers from unsolicited ones.
ASKED_MEMORY = 4096
#: Floor-lane bypass slots beyond a full window (reference: 2).
FLOOR_BYPASS_SLOTS = 2
#: Longest a height that failed with this peer waits before it is asked of it again; each
#: failure of the same height doubles the wait from ``retry_avoid`` up to this.
MAX_RETRY_AVOID = 8.0
#: Heights whose failures are remembered per session (oldest forgotten first).
FAILURE_MEMORY = 1024


@dataclass(slots=True)
class Outstanding:
    """One GetBlocks in flight: its heights and hashes, what arrived, and its clock."""

    start: int
    items: dict[int, WorkItem]
    queued_at: float
    deadline: float
    received: set[int] = field(default_factory=set)

    @property
    def count(self) -> int:
        return len(self.items)

    def unreceived(self) -> list[int]:
        return [h for h in self.items if h not in self.received]


class BlockSyncRoutine:
    """One session's loop; :meth:`run` is the supervised body, :meth:`teardown` the hook."""

    def __init__(
        self, ctx: RoutineContext, stream: Stream, core: BlockSyncCore, *, max_message: int
    ) -> None:
        self.ctx = ctx
        self.stream = stream
        self.core = core
        self.label = ctx.peer.label
        self.owner: Owner = (ctx.peer.label, ctx.generation)
        self.max_message = max_message
        self.bell = Doorbell()
        self.window = DownloadWindow()
        self.status: Status | None = None
        self.outstanding: dict[int, Outstanding] = {}
        self.avoid: dict[int, float] = {}
        self.liveness_deadline: float | None = None
        self.last_fill_stop = "no_status"
        self.sent_status: Status | None = None
        self.sent_status_at = 0.0
        self.epoch = core.reset_epoch
        self.serve_queue: asyncio.Queue[GetBlocks] = asyncio.Queue(core.config.serving_slots)
        self.accepted_blocks = 0
        self.stalled_until: float | None = None
        self.timed_out_since_progress = False
        #: Starts of the requests this session sent (newest last), to tell a late BlocksDone
        #: from an unsolicited one.
        self.asked: dict[int, None] = {}
        #: Failed deliveries per height (for the growing retry wait), oldest first.
        self.failures: dict[int, int] = {}
        #: The lowest height where this peer served a block of another chain than ours: it
        #: is not asked for that height or above until its Status changes.
        self.other_chain_from: int | None = None
        #: The highest servable height this session's peer claimed so far.
        self.best_servable = 0
        self._torn_down = False

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        stream, ctx = self.stream, self.ctx
        stream.on_event = self.bell.ring
        unsubscribe = self.core.subscribe(self.bell.ring)
        self.core.row("block_peer_connected", peer=self.label, generation=self.owner[1])
        try:
            self._maybe_send_status(time.monotonic(), force=True)
            handled = 0
            while True:
                if ctx.scope.cancelled:
                    return
                if handled >= YIELD_EVERY:
                    handled = 0
                    await ctx.sleep(0)
                now = time.monotonic()
                if self.core.reset_epoch != self.epoch:
                    self._on_reset()
                self._maybe_send_status(now)
                room = self._outbound_has_room()
                if room:
                    self._fill(now)
                    read = self._read_frames(YIELD_EVERY - handled)
                    if read:
                        handled += read
                        continue
                    if stream.remote_finished:
                        stream.finish()
                        return
                self._deadlines(now, room)
                self._publish(now)
                handled = 0
                await self.bell.wait(ctx, self._next_deadline(now, room))
        finally:
            unsubscribe()
            stream.on_event = None

    def _read_frames(self, limit: int) -> int:
        """Handle up to ``limit`` frames already received; the caller then fills once.

        A fill pass per burst of frames rather than per frame: between two blocks of an
        answer the window mostly has no room, so the burst is read until it may have some
        (fewer blocks unreceived than the cwnd) and only then filled. Each frame still gets
        its own clock reading, and reading stops as soon as our outbound is past half full
        (local congestion pauses reading).
        """
        stream, window, read = self.stream, self.window, 0
        while read < limit:
            frame = stream.try_recv()
            if frame is None:
                break
            self._on_frame(frame.message_type, frame.flags, frame.payload, time.monotonic())
            read += 1
            if stream.pending_bytes >= stream.max_pending_bytes // 2:
                break
            if frame.message_type != TAG_BLOCK or self.unreceived() < window.cwnd:
                break
        return read

    def _outbound_has_room(self) -> bool:
        """Whether to fill and read this turn: our outbound has room and no operator stall."""
        if self.stalled_until is not None:
            if time.monotonic() < self.stalled_until:
                return False
            self.stalled_until = None
        return self.stream.pending_bytes < self.stream.max_pending_bytes // 2

    def stall(self, seconds: float) -> None:
        """Operator fault: stop reading (and requesting) for ``seconds``.

        Treated like local write congestion: the peer's answers wait in its send window and
        the liveness rule does not blame the peer for our stall.
        """
        self.stalled_until = time.monotonic() + seconds
        self.bell.ring()

    def stalled_for(self) -> float | None:
        until = self.stalled_until
        left = None if until is None else until - time.monotonic()
        return None if left is None or left <= 0 else round(left, 1)

    def _next_deadline(self, now: float, room: bool) -> float:
        if self.stalled_until is not None:
            return max(0.0, self.stalled_until - now)
        if not room:
            return 0.01  # outbound full: poll for room (the reference's 10 ms)
        times = [o.deadline for o in self.outstanding.values()]
        floor = self.core.sequencer.next_height
        times += [
            o.queued_at + self.core.config.floor_rescue_timeout
            for o in self.outstanding.values()
            if floor in o.items and floor not in o.received
        ]
        if self.liveness_deadline is not None:
            times.append(self.liveness_deadline)
        if self.window.retry_at is not None:
            times.append(self.window.retry_at)
        times += [t for t in self.avoid.values()]
        return max(0.0, min(times) - now) if times else 3600.0

    # ------------------------------------------------------------------ status
    def _maybe_send_status(self, now: float, *, force: bool = False) -> None:
        last = self.sent_status
        # Our servable high is the verified tip (0 before any body): a Status is built only
        # once it grew past the one sent, not on every turn.
        if not force and last is not None:
            if self.core.chain.verified_tip[0] <= last.servable_high:
                return
            if now - self.sent_status_at < STATUS_MIN_INTERVAL:
                return
        status = self.core.local_status()
        if status == last:
            return
        if self.stream.try_send(TAG_STATUS, encode_block_sync(status)) is SendResult.OK:
            self.sent_status = status
            self.sent_status_at = now

    # ------------------------------------------------------------------ filling
    def _fill(self, now: float) -> None:
        """Issue requests while the window, the work and the budget allow (reference §4.5)."""
        status = self.status
        if status is None or status.is_empty_range or not status.has_valid_range:
            self._stop("no_status")
            return
        if self.avoid:
            for height in [h for h, t in self.avoid.items() if t <= now]:
                del self.avoid[height]
        core, work = self.core, self.core.work
        floor_next = core.sequencer.next_height
        count_cap = clamp_request_count(
            core.config.max_blocks_per_response, status.max_blocks_per_response
        )
        while True:
            low = max(status.servable_low, work.floor + 1)
            first = work.first_pending(low)
            if first is None or first > status.servable_high:
                self._stop("no_work")
                return
            if first in self.avoid:
                self._stop("retry_avoid")
                return
            if self.other_chain_from is not None and first >= self.other_chain_from:
                self._stop("other_chain")
                return
            is_floor = first <= floor_next
            unreceived = self.unreceived()
            slots = self.window.available_slots(
                len(self.outstanding), now, unreceived_blocks=unreceived
            )
            bypass = False
            if slots <= 0 and self.window.retry_at is not None:
                self._stop("retry_backoff")  # held back for lack of progress (see window)
                return
            if slots <= 0:
                # The floor may borrow bypass slots, but only if no other server of that
                # height has room in its normal window (it should take the floor instead).
                if (
                    not is_floor
                    or core.registry.floor_has_unsaturated_other_server(self.label, first)
                    or self.window.available_slots(
                        len(self.outstanding),
                        now,
                        bonus=FLOOR_BYPASS_SLOTS,
                        unreceived_blocks=unreceived,
                    )
                    <= 0
                ):
                    self._stop("cwnd_saturated")
                    return
                bypass = True
            if not is_floor and first > floor_next + core.config.lookahead_blocks:
                self._stop("lookahead_cap")
                return
            high = min(status.servable_high, first + count_cap - 1)
            if self.other_chain_from is not None:
                high = min(high, self.other_chain_from - 1)
            if is_floor:
                # The height the committer waits for must never starve: shed look-ahead
                # bodies to pay for it. Bytes reserved by requests in flight come back by
                # their answers or deadlines, so the budget is never overdrawn.
                core.fund_floor(work.estimate_at(first))
            items = work.take(
                self.owner,
                first,
                high,
                count_cap,
                min(status.max_response_bytes, core.config.max_response_bytes),
            )
            if not items:
                self._stop("inflight_budget")
                return
            request = GetBlocks(items[0].height, len(items))
            result = self.stream.try_send(TAG_GET_BLOCKS, encode_block_sync(request))
            if result is not SendResult.OK:
                work.return_heights(self.owner, [i.height for i in items], notify=False)
                self._stop("outbound_full" if result is SendResult.FULL else "send_error")
                return
            self.outstanding[request.start_height] = Outstanding(
                request.start_height,
                {i.height: i for i in items},
                now,
                now + core.config.request_timeout,
            )
            self.window.on_request_sent(len(items), now)
            self.asked[request.start_height] = None
            while len(self.asked) > ASKED_MEMORY:
                del self.asked[next(iter(self.asked))]
            core.note_outstanding()
            if self.liveness_deadline is None:
                self.liveness_deadline = now + core.config.liveness_timeout
            core.metrics.request_sent.inc()
            if bypass:
                core.metrics.floor_bypass.inc()
            if core.tracing:
                core.row(
                    "block_get_blocks_sent",
                    peer=self.label,
                    range_start=request.start_height,
                    range_count=request.count,
                    estimated_bytes=sum(i.estimate for i in items),
                    available_slots=slots,
                    peer_outstanding=len(self.outstanding),
                    floor_bypass=int(bypass),
                )

    def _publish(self, now: float) -> None:
        """Tell the registry what this session owes and how much room its window has.

        Once per idle turn (before waiting), not per body: the facts are for other peers'
        decisions, which only need to be as fresh as the last time we could act.
        """
        registry, label, gen = self.core.registry, self.label, self.owner[1]
        registry.set_outstanding(
            label,
            gen,
            {h: o.items[h].hash for o in self.outstanding.values() for h in o.unreceived()},
        )
        registry.publish_slots(
            label,
            gen,
            Slots(
                self.window.hard_cap,
                self.window.cwnd,
                self.window.available_slots(
                    len(self.outstanding), now, unreceived_blocks=self.unreceived()
                ),
                len(self.outstanding),
            ),
        )

    def unreceived(self) -> int:
        """Blocks asked of this peer and not received yet (what the window counts)."""
        return sum(o.count - len(o.received) for o in self.outstanding.values())

    def _stop(self, reason: str) -> None:
        if reason != self.last_fill_stop:
            self.core.metrics.fill_stop.labels(reason).inc()
        self.last_fill_stop = reason

    # ------------------------------------------------------------------ frames
    def _on_frame(self, message_type: int, flags: int, payload: bytes, now: float) -> None:
        try:
            msg = decode_block_sync_frame(message_type, flags, payload)
        except CodecError as exc:
            self.core.record(self.label, "malformed_message", disconnect=True)
            raise RemoteProtocolError("block_sync_malformed_frame", str(exc)) from None
        if isinstance(msg, Block):
            self._on_block(msg, now)
        elif isinstance(msg, Status):
            self._on_status(msg)
        elif isinstance(msg, GetBlocks):
            self._on_get_blocks(msg)
        elif isinstance(msg, BlocksDone):
            self._on_done(msg.start_height, msg.returned, now, unavailable=False)
        else:
            self._on_done(msg.start_height, 0, now, unavailable=True)

    def _on_status(self, status: Status) -> None:
        if not status.has_valid_range:
            self.core.record(self.label, "invalid_status")
            return
        previous, self.status = self.status, status
        if previous is None or previous.tip_hash != status.tip_hash:
            self.other_chain_from = None  # its chain moved: worth asking again
        self.window.set_hard_cap(status.max_inflight_requests)
        self.core.registry.upsert_status(self.label, self.owner[1], status)
        if status.servable_high > self.best_servable:
            self.core.on_peer_growth(self.best_servable, status.servable_high)
            self.best_servable = status.servable_high
        self.core.row(
            "block_status_received",
            peer=self.label,
            servable_low=status.servable_low,
            servable_high=status.servable_high,
        )

    def _on_get_blocks(self, msg: GetBlocks) -> None:
        if self.status is None:
            # Every session opens with a Status; asking before it is spam (record-only).
            self.core.record(self.label, "get_blocks_spam")
            return
        try:
            self.serve_queue.put_nowait(msg)
        except asyncio.QueueFull:
            answer = RangeUnavailable(msg.start_height, msg.count)
            self.stream.try_send(TAG_RANGE_UNAVAILABLE, encode_block_sync(answer))

    def _find(self, height: int) -> Outstanding | None:
        for o in self.outstanding.values():
            if height in o.items:
                return o
        return None

    def _on_block(self, msg: Block, now: float) -> None:
        core, work = self.core, self.core.work
        try:
            header = BlockHeader.decode(msg.header)
        except CodecError:
            core.record(self.label, "invalid_block")
            return
        height = header.height
        o = self._find(height)
        if o is None:
            if height <= work.floor or work.state(height) is not None:
                return  # stale: a late body after a timeout, a reset or a fan-out
            core.record(self.label, "unsolicited_block")
            return
        if height in o.received:
            return  # duplicate body
        item = o.items[height]
        if len(msg.body) > MAX_BLOCK_BODY_BYTES or body_root(msg.body) != header.body_root:
            core.record(self.label, "invalid_block")
            self._retry(o, [height], now)
            return
        if header.hash != item.hash:
            self._on_other_block(o, header, now)
            return
        nbytes = len(msg.body)
        if (
            nbytes > SIZE_TOLERANCE * item.estimate
            and nbytes - item.estimate > core.budget.available
        ):
            # Our estimate (a guess: headers carry no trusted size) was far too low and the
            # budget cannot absorb the difference: reserve the real size and ask again.
            # Not the peer's fault, so nothing is recorded.
            self._retry(o, [height], now)
            work.raise_estimate(height, nbytes)
            core.metrics.estimate_raised.inc()
            core.row("block_estimate_raised", peer=self.label, height=height, bytes=nbytes)
            return
        self.failures.pop(height, None)
        o.received.add(height)
        # None: the work moved on (a reset, the floor) and there is nothing to keep.
        if work.receive(self.owner, height, len(msg.body)) is not None:
            body = BufferedBody(height, item.hash, msg.header, msg.body, self.label)
            if not core.accept_body(body):
                work.unreceive(height)
        self.accepted_blocks += 1
        self.window.on_block(len(msg.body), now - o.queued_at, now)
        core.metrics.body_received.inc()
        self._rearm_liveness(now)
        if core.tracing:
            core.row(
                "block_body_received",
                peer=self.label,
                height=height,
                serialized_bytes=len(msg.body),
                budget_reserved_after=core.budget.used,
                request_start=o.start,
                request_range_count=o.count,
                request_elapsed_ms=round((now - o.queued_at) * 1000, 1),
                bbr_cwnd=self.window.cwnd,
            )
        # A fully received request stays outstanding until its BlocksDone, which must find
        # it (a server always ends an answer with BlocksDone); it no longer has a deadline.

    def _on_other_block(self, o: Outstanding, header: BlockHeader, now: float) -> None:
        """A block that is not the one our header chain has at its height.

        A block that is valid on its own (proof of work, bits, version) and matches its body
        comes from a peer whose chain differs from ours at that height: an honest peer on
        another branch, not a liar. It is not asked for that height or above until its
        Status changes; if no one else serves the height, block sync's watchdog gives up
        the header (see ``BlockSyncCore``). A header that is not even valid is
        ``invalid_block``.
        """
        core, height = self.core, header.height
        try:
            validate_header(header, min_bits=core.header_sync.config.min_bits)
        except ChainError:
            core.record(self.label, "invalid_block")
            self._retry(o, [height], now)
            return
        if self.other_chain_from is None or height < self.other_chain_from:
            self.other_chain_from = height
        core.metrics.other_chain.inc()
        core.row("block_other_chain", peer=self.label, height=height, hash=header.hash.hex())
        self._retry(o, [h for h in o.unreceived() if h >= height], now)

    def _on_done(self, start: int, returned: int, now: float, *, unavailable: bool) -> None:
        o = self.outstanding.get(start)
        if o is None:
            # The end of an answer we gave up on (timed out, every body refused, reset) is
            # late, not unsolicited; only a start this session never asked for is scored.
            if unavailable or start in self.asked or start <= self.core.work.floor:
                return
            self.core.record(self.label, "unsolicited_done")
            return
        missing = o.unreceived()
        self.window.on_request_complete(o.count, len(o.received), now)
        self._retry(o, missing, now)
        self._finish(o)

    def _retry(self, o: Outstanding, heights: Iterable[int], now: float) -> None:
        """Give ``heights`` back to everyone; this peer waits longer after each failure."""
        heights = list(heights)
        base = self.core.config.retry_avoid
        for h in heights:
            o.items.pop(h, None)
            o.received.discard(h)
            n = self.failures.pop(h, 0)
            self.failures[h] = n + 1
            self.avoid[h] = now + min(base * (2**n), MAX_RETRY_AVOID)
        while len(self.failures) > FAILURE_MEMORY:
            del self.failures[next(iter(self.failures))]
        self.core.work.return_heights(self.owner, heights)
        if not o.items:
            self._finish(o)

    def _finish(self, o: Outstanding) -> None:
        self.outstanding.pop(o.start, None)

    def _owes(self) -> bool:
        """Whether the peer owes us blocks: unanswered requests, or requests that timed out
        since its last accepted block (a timeout does not let a silent peer off the hook)."""
        if any(o.unreceived() for o in self.outstanding.values()):
            return True
        return self.window.requests_without_progress > 0 and self.timed_out_since_progress

    def _rearm_liveness(self, now: float) -> None:
        """An accepted block: the clock restarts while work is owed, else it disarms."""
        self.timed_out_since_progress = False
        owed = any(o.count > len(o.received) for o in self.outstanding.values())
        self.liveness_deadline = now + self.core.config.liveness_timeout if owed else None

    # ------------------------------------------------------------------ deadlines
    def _rescue_floor(self, now: float) -> None:
        """The committer waits on the floor height: a request holding it gets a short leash.

        Past ``floor_rescue_timeout`` the floor's unreceived heights go back to the queue and
        this peer avoids them for ``floor_avoid`` seconds, so a faster peer can take them; the
        peer is not blamed (reference: 2 s rescue leash, floor peer avoid cooldown).
        """
        floor = self.core.sequencer.next_height
        rescue = self.core.config.floor_rescue_timeout
        for o in list(self.outstanding.values()):
            if floor in o.items and floor not in o.received and now - o.queued_at >= rescue:
                missing = o.unreceived()
                self._retry(o, missing, now)
                until = now + self.core.config.floor_avoid
                for h in missing:
                    self.avoid[h] = until
                self.core.metrics.floor_rescued.inc()

    def _deadlines(self, now: float, room: bool) -> None:
        self._rescue_floor(now)
        for o in [o for o in self.outstanding.values() if o.deadline <= now]:
            if not o.unreceived():
                self.window.on_request_complete(o.count, o.count, now)
                self._finish(o)  # everything arrived; only the BlocksDone is late
                continue
            self.core.metrics.request_timed_out.inc()
            self.timed_out_since_progress = True
            self.window.on_timeout(now)
            self._retry(o, o.unreceived(), now)
            self._finish(o)
        deadline = self.liveness_deadline
        if deadline is not None and now >= deadline and not self._owes():
            self.liveness_deadline = None  # idle peers are never reaped
        elif deadline is not None and now >= deadline:
            if not room:
                self.liveness_deadline = now + self.core.config.request_timeout
                return
            self.core.row(
                "block_peer_protocol_reject",
                peer=self.label,
                reason="block_sync_no_block_progress",
                outstanding=len(self.outstanding),
            )
            self.core.record(self.label, "no_block_progress", disconnect=True)
            raise RemoteProtocolError("block_sync_no_block_progress")

    def _on_reset(self) -> None:
        """The shared view was reset: drop our requests in place (the heights are gone)."""
        self.epoch = self.core.reset_epoch
        for o in list(self.outstanding.values()):
            self.core.work.return_heights(self.owner, o.unreceived(), notify=False)
        self.outstanding.clear()
        self.avoid.clear()
        self.liveness_deadline = None

    # ------------------------------------------------------------------ serving
    async def serve(self, ctx: RoutineContext) -> None:
        """The serving helper: answers queued GetBlocks from the store, in order."""
        store = self.core.chain.store
        while True:
            msg = await self.serve_queue.get()
            verified = self.core.chain.verified_tip[0]
            count = min(msg.count, self.core.config.max_blocks_per_response)
            if msg.start_height < 1 or msg.start_height > verified:
                answer = RangeUnavailable(msg.start_height, msg.count)
                await self.stream.send(TAG_RANGE_UNAVAILABLE, encode_block_sync(answer))
                continue
            count = min(count, verified - msg.start_height + 1)
            budget = min(self.core.config.max_response_bytes, self.max_message * 8)
            blocks = await store.blocks_range(msg.start_height, count, budget)
            for header, body in blocks:
                frame = encode_block_sync(Block(header, body))
                if self.stream.try_send(TAG_BLOCK, frame) is not SendResult.OK:
                    await self.stream.send(TAG_BLOCK, frame)  # waits for room, or raises
            self.core.metrics.served.inc(len(blocks))
            done = BlocksDone(msg.start_height, len(blocks))
            await self.stream.send(TAG_BLOCKS_DONE, encode_block_sync(done))

    # ------------------------------------------------------------------ teardown
    def teardown(self) -> None:
        """Every exit path: return every unreceived height and release its bytes."""
        if self._torn_down:
            return
        self._torn_down = True
        self.core.work.return_all(self.owner)
        self.outstanding.clear()
        self.core.registry.clear_outstanding(self.label, self.owner[1])
        self.core.row("block_peer_disconnected", peer=self.label)

    def diagnostic_facts(self) -> BlockSyncFacts | None:
        """What diagnostics read of this session (see :func:`routine_facts`)."""
        return routine_facts(self)

    def view(self) -> BlockSyncRoutineView:
        return routine_view(self)
