"""The per-peer header-sync routine: the async loop around :class:`HsPeerState` (§3.3).

One routine per peer owns that peer's header-sync stream: it reads and decodes frames, keeps
the peer's protocol state, pulls work from the shared range queue and writes its own requests
and answers. It talks to the reactor only through bounded, non-blocking hand-offs.

Invariants:

- Priority order on every turn (reference §3.3, biased): cancellation, the command FIFO, the
  status slot (both via the sink, FIFO first), one inbound frame, then a work pull (which also
  covers the empty-retry timer and the queue's wake). One item per turn, so a flood of one
  source can delay but never starve another for long, and the routine yields to the event
  loop every :data:`YIELD_EVERY` items.
- Every wait goes through one :class:`Doorbell` future awaited via ``ctx.wait_future``, so an
  injected fault lands inside the routine at that await (docs/ARCHITECTURE.md, "The routine
  model").
- Writes never block. A Headers answer that does not fit the stream's send window waits in a
  one-item pending slot, and while it waits the routine takes no further commands: a peer
  that stops reading makes our command queue fill, and the reactor parks it the natural way
  (§3.12) instead of us buffering without bound. Every other write that does not fit is
  dropped (a later Status or a re-request repairs it, as in the reference).
- An operator *stall* (fault injection) stops command consumption for its duration in the
  same way, while frames are still read.
- Teardown (the launcher's ``on_teardown``) runs on every exit path: the in-flight range goes
  back under this session's generation, the sink closes, and ``PeerDisconnected`` goes on the
  reactor's unbounded lifecycle channel.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from node_core.header_sync.commands import (
    DropExpectation,
    ForwardNewBlock,
    HeaderSyncCommandSink,
    SendHeaders,
    StatusChanged,
    Wake,
)
from node_core.header_sync.events import PeerDisconnected
from node_core.header_sync.observe import session_outstanding
from node_core.header_sync.peer_state import HsPeerState
from node_core.observe.diagnostic_facts import HeaderSyncFacts, header_sync_matters
from node_core.protocol.header_sync import (
    TAG_GET_HEADERS,
    TAG_HEADERS,
    TAG_NEW_BLOCK,
    TAG_STATUS,
    GetHeaders,
    Headers,
    HeaderSyncMessage,
    Status,
    encode_header_sync,
)
from node_core.protocol.limits import FRAME_HEADER_BYTES
from node_core.transport.doorbell import Doorbell
from node_core.transport.routine import RemoteProtocolError, RoutineContext
from node_core.transport.stream import SendResult, Stream

if TYPE_CHECKING:
    from node_core.header_sync.observe import HeaderSyncMetrics
    from node_core.header_sync.reactor import HeaderSyncReactor
    from node_core.observe.schema import HeaderSyncRoutineView

#: Items processed back to back before the routine yields to the event loop.
YIELD_EVERY = 64

_TAGS = {Status: TAG_STATUS, GetHeaders: TAG_GET_HEADERS}


class HeaderSyncRoutine:
    """One session's loop; :meth:`run` is the supervised body, :meth:`teardown` the hook."""

    def __init__(
        self,
        ctx: RoutineContext,
        stream: Stream,
        sink: HeaderSyncCommandSink[Status],
        reactor: HeaderSyncReactor,
        metrics: HeaderSyncMetrics,
        *,
        frame_cap: int,
    ) -> None:
        self.ctx = ctx
        self.stream = stream
        self.sink = sink
        self.reactor = reactor
        self.metrics = metrics
        self.bell = Doorbell()
        self.stalled_until: float | None = None
        self.pending_write: tuple[int, bytes] | None = None
        self.state = HsPeerState(
            ctx.peer.label,
            ctx.generation,
            reactor.queue,
            reactor.offer,
            self._send,
            frame_cap,
            0,
            local_max_headers=reactor.config.max_headers_per_response,
        )
        self._torn_down = False

    # ------------------------------------------------------------------ writes
    def _send(self, msg: HeaderSyncMessage) -> bool:
        """Non-blocking write of a request (GetHeaders); False if it did not go out."""
        tag = _TAGS.get(type(msg))
        if tag is None:  # pragma: no cover - the state only sends GetHeaders
            raise TypeError(f"routine cannot send {type(msg).__name__}")
        return self.stream.try_send(tag, encode_header_sync(msg)) is SendResult.OK

    # ------------------------------------------------------------------ control
    def stall(self, seconds: float) -> None:
        """Stop taking commands for ``seconds`` (operator fault); frames are still read."""
        self.stalled_until = time.monotonic() + seconds
        self.bell.ring()

    def stalled_for(self, now: float | None = None) -> float | None:
        until = self.stalled_until
        if until is None:
            return None
        left = until - (time.monotonic() if now is None else now)
        return round(left, 1) if left > 0 else None

    # ------------------------------------------------------------------ the loop
    async def run(self) -> None:
        stream, sink, state, ctx = self.stream, self.sink, self.state, self.ctx
        stream.on_event = self.bell.ring
        sink.on_ready = self.bell.ring
        unsubscribe = self.reactor.subscribe_wake(self.bell.ring)
        try:
            state.try_pull(time.monotonic())
            handled = 0
            while True:
                if ctx.scope.cancelled:
                    return
                if handled >= YIELD_EVERY:
                    handled = 0
                    await ctx.sleep(0)
                now = time.monotonic()
                if self.pending_write is not None:
                    tag, payload = self.pending_write
                    if stream.try_send(tag, payload) is not SendResult.FULL:
                        self.pending_write = None
                stalled = self.stalled_until is not None and now < self.stalled_until
                if not stalled:
                    self.stalled_until = None
                if not stalled and self.pending_write is None:
                    item = sink.try_next()
                    if item is not None:
                        self._on_command(item, now)
                        handled += 1
                        continue
                    if sink.closed:
                        return
                frame = stream.try_recv()
                if frame is not None:
                    credits = state.late_covered_tolerance
                    verdict = state.on_frame(frame.message_type, frame.flags, frame.payload, now)
                    if state.late_covered_tolerance < credits:
                        self.metrics.response_late_covered_dropped.inc()
                    if verdict.rejected:
                        reason = verdict.reason.value if verdict.reason else "protocol_reject"
                        raise RemoteProtocolError(
                            reason, f"header_sync frame type {frame.message_type}"
                        )
                    handled += 1
                    continue
                if stream.remote_finished:
                    stream.finish()
                    return
                state.try_pull(now)
                deadlines = [
                    t for t in (state.empty_retry_until, self.stalled_until) if t is not None
                ]
                timeout = min(deadlines) - now if deadlines else None
                handled = 0
                await self.bell.wait(ctx, timeout)
        finally:
            unsubscribe()
            stream.on_event = None
            sink.on_ready = None

    def _on_command(
        self,
        item: SendHeaders | DropExpectation | ForwardNewBlock | Wake | StatusChanged[Status],
        now: float,
    ) -> None:
        stream = self.stream
        if isinstance(item, StatusChanged):
            stream.try_send(TAG_STATUS, encode_header_sync(item.status))
        elif isinstance(item, SendHeaders):
            payload = encode_header_sync(Headers(item.headers, item.body_sizes))
            if stream.try_send(TAG_HEADERS, payload) is SendResult.FULL:
                self.pending_write = (TAG_HEADERS, payload)
        elif isinstance(item, DropExpectation):
            before = self.state.in_flight
            applied = self.state.on_drop_expectation(
                item.generation, item.start_height, item.count, now
            )
            if applied and before is not None and self.state.in_flight is not before:
                self.metrics.request_timeout_dropped.inc()
        elif isinstance(item, ForwardNewBlock):
            if len(item.block) <= self.state.frame_cap - FRAME_HEADER_BYTES:
                stream.try_send(TAG_NEW_BLOCK, item.block)
        else:
            self.state.try_pull(now)

    # ------------------------------------------------------------------ teardown
    def teardown(self) -> None:
        """Every exit path: return in-flight work, close the sink, report on lifecycle."""
        if self._torn_down:
            return
        self._torn_down = True
        self.state.teardown()
        self.sink.close()
        self.reactor.lifecycle(PeerDisconnected(self.ctx.peer.label, self.ctx.generation))

    def diagnostic_facts(self, tip: int) -> HeaderSyncFacts | None:
        """What diagnostics read of this session: the fields of :meth:`view` they use, read
        without building the rest (the node evaluates them every second); None when the
        session can raise no diagnostic with our header tip at ``tip``
        (:func:`header_sync_matters`)."""
        state, sink = self.state, self.sink
        outstanding = session_outstanding(
            self.reactor.peers, self.ctx.peer.label, self.ctx.generation
        )
        received = state.received_status is not None
        queued = sink.queued
        if not header_sync_matters(queued, bool(outstanding), received, state.advertised_tip, tip):
            return None
        return HeaderSyncFacts(
            queue_depth=queued,
            queue_max=sink.depth,
            outstanding=outstanding,
            in_flight=state.in_flight is not None,
            received_status=received,
            advertised_tip=state.advertised_tip,
        )

    def view(self) -> HeaderSyncRoutineView:
        """This session's ``header_sync`` sub-document of the snapshot: the routine's own
        fields, then the reactor's (what we serve it, its outstanding requests, a fork search)."""
        st = self.state.view()
        side = self.reactor.peer_view(self.ctx.peer.label, self.ctx.generation)
        return {
            "queue_depth": self.sink.queued,
            "queue_max": self.sink.depth,
            "status_pending": self.sink.status_pending,
            "in_flight": st["in_flight"],
            "advertised_tip": st["advertised_tip"],
            "received_status": st["received_status"] is not None,
            "max_headers": st["max_headers"],
            "fifo_len": st["fifo_len"],
            "tolerance": st["tolerance"],
            "stalled_for_s": self.stalled_for(),
            "pending_write": self.pending_write is not None,
            "served_inflight": 0 if side is None else side["served_inflight"],
            "outstanding": [] if side is None else side["outstanding"],
            "fork_search": None if side is None else side["fork_search"],
        }
