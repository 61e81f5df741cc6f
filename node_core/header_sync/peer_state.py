"""Sans-I/O state of one peer's header-sync routine (reference §3.2-3.7, §3.14).

The async routine that reads frames, commands and timers wraps :class:`HsPeerState`; this
module never awaits and takes time as an explicit ``now`` (seconds, monotonic), so every
rule below is testable without a loop.

Invariants:

- **Expectation before request.** :meth:`HsPeerState.try_pull` takes a range, sends
  GetHeaders, records the expectation and sets ``in_flight``, then emits
  ``PeerWorkAssigned`` in one synchronous call: no response can be decoded before its
  expectation exists, and the reactor never times out a request the FIFO does not hold.
- **One outbound slot.** At most one range is in flight; a pull happens only when the slot
  is free, a valid Status has set the peer's cap, and no empty-retry window is open.
- **Every taken range is accounted for.** A taken range is either in ``in_flight`` or was
  handed back to the queue (``SendFailed``, ``EmptyResponse``, ``Teardown``); teardown
  returns ``in_flight`` under this session's generation, so it can never clear the
  assignment of a reconnected session of the same peer.
- **Correlation.** Each Headers frame pops the FIFO front. With nothing expected, a
  late-covered credit (granted by :meth:`HsPeerState.on_drop_expectation`) absorbs it
  silently; otherwise it is ``unsolicited_headers`` and a protocol reject. If the reactor
  queue is full when a solicited response is forwarded, the expectation goes back to the
  FIFO *front* and the slot stays occupied, so the reactor's outstanding record and ours
  agree and its timeout later frees both.
- **Disconnect vs record-only** (§3.14): only undecodable frames and unsolicited Headers
  reject the stream; everything else is recorded via ``PeerMisbehavior(disconnect=False)``.
- Every state mutation precedes the emit that reports it, so an exception raised by
  ``emit`` (a "panic") leaves state that :meth:`HsPeerState.teardown` can unwind cleanly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from node_core.header_sync.events import (
    InboundGetHeadersRequested,
    MisbehaviorReason,
    NewBlockCandidate,
    PeerHeadersReceived,
    PeerMisbehavior,
    PeerStatusUpdated,
    PeerWorkAssigned,
    RoutineEvent,
)
from node_core.header_sync.range_queue import (
    HeaderWork,
    PeerId,
    RangeRequest,
    ReturnReason,
    SharedHeaderRangeQueue,
)
from node_core.protocol.errors import CodecError
from node_core.protocol.header_sync import (
    DEFAULT_HEADERS_PER_RESPONSE,
    HEADER_WIRE_BYTES,
    HEADERS_PREFIX_BYTES,
    HS_FRAME_CAP,
    MAX_HEADERS_PER_RESPONSE,
    TAG_HEADERS,
    TAG_NEW_BLOCK,
    ExpectedRange,
    GetHeaders,
    Headers,
    HeaderSyncMessage,
    NewBlock,
    Status,
    clamp_max_headers,
    clamp_max_inflight,
    decode_header_sync_frame,
    inbound_serving_limit,
)

#: Offset of the u32 height inside an encoded header (after the u32 version).
HEIGHT_OFFSET = 4

STATUS_MIN_INTERVAL = 5.0
"""Seconds between applied Status frames that do not advance the tip (reference)."""

NEW_BLOCK_MIN_INTERVAL = 5.0
"""Seconds between NewBlock frames we decode at all from one peer (reference)."""

EMPTY_RETRY_INTERVAL = 1.0
"""Seconds the slot stays logically occupied after an empty Headers response."""


class RateMeter:
    """One event per ``interval``: ``try_take(now)`` succeeds iff ``now >= next_allowed``.

    Not a token bucket on purpose: the reference meters have no burst, and a fresh meter is
    immediately available so the first Status or NewBlock of a session is never throttled.
    """

    __slots__ = ("interval", "next_allowed")

    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.next_allowed: float | None = None

    def try_take(self, now: float) -> bool:
        """Take the slot if it is open, closing it for ``interval`` seconds from ``now``."""
        if self.next_allowed is not None and now < self.next_allowed:
            return False
        self.next_allowed = now + self.interval
        return True


class HeadersOutcome(StrEnum):
    """What the last solicited Headers response did to the slot."""

    FILLED = "filled"
    EMPTY = "empty"


class VerdictKind(StrEnum):
    """Whether the routine keeps the stream after a frame."""

    CONTINUE = "continue"
    PROTOCOL_REJECT = "protocol_reject"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of one inbound frame; only ``PROTOCOL_REJECT`` ends the routine."""

    kind: VerdictKind
    reason: MisbehaviorReason | None = None

    @property
    def rejected(self) -> bool:
        """True when the routine must exit with a protocol error (connection closed)."""
        return self.kind is VerdictKind.PROTOCOL_REJECT

    @staticmethod
    def protocol_reject(reason: MisbehaviorReason) -> Verdict:
        """A disconnecting verdict carrying the misbehavior that caused it."""
        return Verdict(VerdictKind.PROTOCOL_REJECT, reason)


CONTINUE = Verdict(VerdictKind.CONTINUE)
"""The shared non-reject verdict (throttled, record-only and forwarded frames alike)."""


class HsPeerState:
    """Everything one header-sync session owns, driven by frames, commands and ``now``.

    ``emit`` hands an event to the bounded reactor queue and returns False when it is full;
    ``send`` writes a message on this routine's stream and returns False when the write
    failed. Neither may block; both may raise (a panic), which the wrapper answers with
    :meth:`teardown`.
    """

    def __init__(
        self,
        peer: PeerId,
        generation: int,
        queue: SharedHeaderRangeQueue,
        emit: Callable[[RoutineEvent], bool],
        send: Callable[[HeaderSyncMessage], bool],
        frame_cap: int,
        advertised_tip_start: int,
        *,
        local_max_headers: int = DEFAULT_HEADERS_PER_RESPONSE,
        header_bytes: int = HEADER_WIRE_BYTES,
    ) -> None:
        self.peer = peer
        self.generation = generation
        self._queue = queue
        self._emit = emit
        self._send = send
        self.frame_cap = frame_cap
        self.header_bytes = header_bytes
        # Requests we serve are checked against our own cap; the reactor trims each answer to
        # what the connection's message size carries, so a peer that negotiated small
        # messages gets shorter answers rather than a record against it.
        self.serving_limit = inbound_serving_limit(local_max_headers, HS_FRAME_CAP, header_bytes)
        self.expected: deque[ExpectedRange] = deque()
        self.in_flight: HeaderWork | None = None
        self.received_status: Status | None = None
        self.advertised_tip = advertised_tip_start
        self.max_headers: int | None = None
        self.max_inflight: int | None = None
        self.status_meter = RateMeter(STATUS_MIN_INTERVAL)
        self.new_block_meter = RateMeter(NEW_BLOCK_MIN_INTERVAL)
        self.empty_retry_until: float | None = None
        self.last_outcome: HeadersOutcome | None = None
        self.late_covered_tolerance = 0
        self.torn_down = False

    # --- work pull (§3.4) ------------------------------------------------------------------

    def can_pull(self, now: float) -> bool:
        """The §3.4 gate; clears an expired empty-retry window first (so it is not pure)."""
        if self.empty_retry_until is not None and now >= self.empty_retry_until:
            self.empty_retry_until = None
        return not (
            self.torn_down
            or self.in_flight is not None
            or self.received_status is None
            or self.max_headers is None
            or self.empty_retry_until is not None
        )

    def try_pull(self, now: float) -> bool:
        """Take, send, record, report: returns True when a GetHeaders went out.

        The expectation is recorded right after the send succeeds and before the event, all
        without yielding; a failed send hands the range back (``SendFailed``) and leaves the
        slot free, since the peer never saw the request.
        """
        if not self.can_pull(now) or self.max_headers is None:
            return False
        work = self._queue.take_for_peer(
            self.peer, self.generation, self.advertised_tip, self.max_headers, self.frame_cap
        )
        if work is None:
            return False
        rng = work.range
        try:
            expectation = ExpectedRange(rng.start_height, work.count)
        except CodecError:  # impossible: the queue clamps counts to 1..=4000
            self._return(work, ReturnReason.SEND_FAILED)
            return False
        if not self._send(GetHeaders(rng.start_height, work.count)):
            self._return(work, ReturnReason.SEND_FAILED)
            return False
        self.expected.append(expectation)
        self.in_flight = work
        self._emit(
            PeerWorkAssigned(
                self.peer,
                self.generation,
                rng.start_height,
                work.count,
                rng.anchor_hash,
                rng.finalized,
                work.forward,
                rng.priority,
                rng.peer,
            )
        )  # a dropped event only means no reactor timeout; a response or teardown frees us
        return True

    def on_wake(self, now: float) -> bool:
        """The queue woke routines (or the reactor sent ``Wake``): try to pull."""
        return self.try_pull(now)

    def on_empty_retry_due(self, now: float) -> bool:
        """The empty-retry timer fired: the gate clears the window if it lapsed, then pull."""
        return self.try_pull(now)

    def _return(self, work: HeaderWork, reason: ReturnReason) -> None:
        self._queue.return_work(
            self.peer, self.generation, work.range, reason, forward=work.forward
        )

    # --- commands (§3.6) -------------------------------------------------------------------

    def on_drop_expectation(self, generation: int, start: int, count: int, now: float) -> bool:
        """The reactor timed out ``(start, count)``: pop it, credit a late answer, free slot.

        Ignored for another generation (a stale command for a previous session). Idempotent:
        once the response arrived the front no longer matches and nothing happens. Returns
        True when the command was applied (generation matched); a pull follows either way.
        """
        if generation != self.generation or self.torn_down:
            return False
        front_matched = False
        if self.expected:
            front = self.expected[0]
            if front.start_height == start and front.count == count:
                self.expected.popleft()
                self.late_covered_tolerance += 1
                front_matched = True
        if front_matched or (
            self.in_flight is not None and self.in_flight.range.start_height == start
        ):
            self.in_flight = None
            self.empty_retry_until = None
        self.try_pull(now)
        return True

    # --- inbound pipeline (§3.5) -----------------------------------------------------------

    def on_frame(self, message_type: int, flags: int, payload: bytes, now: float) -> Verdict:
        """Run one inbound frame through gate → correlate → decode → ingest → outcome.

        Returns :data:`CONTINUE` for throttled, record-only, forwarded and locally failed
        frames; a protocol reject only for an undecodable frame or unsolicited Headers.
        """
        if self.torn_down:
            return CONTINUE
        if message_type == TAG_NEW_BLOCK and not self.new_block_meter.try_take(now):
            return CONTINUE  # dropped before decode: honest re-floods are not penalized
        expected: ExpectedRange | None = None
        if message_type == TAG_HEADERS:
            if not self.expected:
                if self.late_covered_tolerance > 0:
                    self.late_covered_tolerance -= 1
                    return CONTINUE
                return self._reject(MisbehaviorReason.UNSOLICITED_HEADERS)
            if self.late_covered_tolerance > 0 and self._answers_other_range(payload):
                # The late answer to a request the reactor dropped, arriving after we already
                # asked for the next range: absorb it instead of mis-correlating it with the
                # new expectation (which would reject an honest peer's answer as invalid).
                self.late_covered_tolerance -= 1
                return CONTINUE
            expected = self.expected.popleft()
        try:
            msg = decode_header_sync_frame(
                message_type,
                flags,
                payload,
                expected=expected,
                peer_max=self.max_headers or MAX_HEADERS_PER_RESPONSE,
                header_bytes=self.header_bytes,
            )
        except CodecError:
            # The popped expectation is discarded: the peer is going away, teardown returns
            # the in-flight range.
            return self._reject(MisbehaviorReason.MALFORMED_MESSAGE)
        outcome: HeadersOutcome | None = None
        if isinstance(msg, Status):
            self._on_status(msg, now)
        elif isinstance(msg, Headers):
            assert expected is not None  # decode requires it
            outcome = self._on_headers(msg, expected)
        elif isinstance(msg, GetHeaders):
            self._on_get_headers(msg)
        elif isinstance(msg, NewBlock):
            self._emit(NewBlockCandidate(self.peer, msg.header, msg.body))
        if outcome is not None:
            self._apply_outcome(outcome, now)
        return CONTINUE

    def _answers_other_range(self, payload: bytes) -> bool:
        """Whether a Headers payload's first header is not at the front expectation's start.

        Headers carry their height (u32 after the u32 version), so a response is matched to
        its request by content, not only by order. Undecidable (empty or short) payloads are
        taken as answering the front, as the reference does.
        """
        first = HEADERS_PREFIX_BYTES + HEIGHT_OFFSET
        if len(payload) < first + 4 or payload[1:5] == b"\x00\x00\x00\x00":
            return False
        height = int.from_bytes(payload[first : first + 4], "little")
        return height != self.expected[0].start_height

    def _reject(self, reason: MisbehaviorReason) -> Verdict:
        self._emit(PeerMisbehavior(self.peer, reason, disconnect=True))
        return Verdict.protocol_reject(reason)

    def _record(self, reason: MisbehaviorReason) -> None:
        self._emit(PeerMisbehavior(self.peer, reason, disconnect=False))

    def _on_status(self, status: Status, now: float) -> None:
        """Apply a Status if it advances the tip or the 5 s meter allows; else record spam.

        No pull here: the forward range a new tip enables only exists once the reactor has
        processed ``PeerStatusUpdated``, and its targeted ``Wake`` drives that pull.
        """
        if status.anchor_height > status.tip_height:
            self._record(MisbehaviorReason.INVALID_STATUS)
            return
        if not (status.tip_height > self.advertised_tip or self.status_meter.try_take(now)):
            self._record(MisbehaviorReason.STATUS_SPAM)
            return
        clamped = Status(
            tip_height=status.tip_height,
            tip_hash=status.tip_hash,
            anchor_height=status.anchor_height,
            max_headers_per_response=clamp_max_headers(status.max_headers_per_response),
            max_inflight_requests=clamp_max_inflight(status.max_inflight_requests),
        )
        self.advertised_tip = clamped.tip_height
        self.received_status = clamped
        self.max_headers = clamped.max_headers_per_response
        self.max_inflight = clamped.max_inflight_requests
        self._emit(PeerStatusUpdated(self.peer, clamped))

    def _on_headers(self, msg: Headers, expected: ExpectedRange) -> HeadersOutcome | None:
        """Forward a solicited response; None (slot kept) if the reactor queue is full."""
        if len(msg.body_sizes) != len(msg.headers):
            self._record(MisbehaviorReason.MALFORMED_MESSAGE)
            return HeadersOutcome.FILLED
        event = PeerHeadersReceived(self.peer, msg.headers, msg.body_sizes)
        if not self._emit(event):
            # The reactor still has the range outstanding: keep it correlated here too, so
            # its timeout's DropExpectation pops this entry and frees the slot.
            self.expected.appendleft(expected)
            return None
        return HeadersOutcome.FILLED if msg.headers else HeadersOutcome.EMPTY

    def _on_get_headers(self, msg: GetHeaders) -> None:
        if self.received_status is None:
            self._record(MisbehaviorReason.GET_HEADERS_SPAM)
        elif not 1 <= msg.count <= self.serving_limit:
            self._record(MisbehaviorReason.GET_HEADERS_TOO_LONG)
        else:
            self._emit(InboundGetHeadersRequested(self.peer, msg.start_height, msg.count))

    def _apply_outcome(self, outcome: HeadersOutcome, now: float) -> None:
        """Filled frees the slot and pulls; Empty hands the range back and waits 1 s."""
        self.last_outcome = outcome
        work, self.in_flight = self.in_flight, None
        if outcome is HeadersOutcome.FILLED:
            self.empty_retry_until = None
            self.try_pull(now)
            return
        self.empty_retry_until = now + EMPTY_RETRY_INTERVAL
        if work is not None:
            self._return(work, ReturnReason.EMPTY_RESPONSE)

    # --- teardown (§3.7) -------------------------------------------------------------------

    def teardown(self) -> RangeRequest | None:
        """Return ``in_flight`` (``Teardown``, own generation) and stop; idempotent.

        Under its own generation, so a stale session cannot clear the assignment of the
        peer's reconnected session. The wrapper sends ``PeerDisconnected`` on the lifecycle
        channel; this method does not, because that channel must not be the bounded ``emit``.
        """
        self.torn_down = True
        work, self.in_flight = self.in_flight, None
        self.expected.clear()
        self.empty_retry_until = None
        if work is None:
            return None
        self._return(work, ReturnReason.TEARDOWN)
        return work.range

    # --- observability ---------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """A JSON-ready snapshot for the operator console (reference §7.1)."""
        work = self.in_flight
        status = self.received_status
        return {
            "peer": self.peer,
            "generation": self.generation,
            "in_flight": None
            if work is None
            else {
                "start_height": work.range.start_height,
                "count": work.count,
                "forward": work.forward,
                "finalized": work.range.finalized,
            },
            "fifo_len": len(self.expected),
            "advertised_tip": self.advertised_tip,
            "max_headers": self.max_headers,
            "max_inflight": self.max_inflight,
            "received_status": None
            if status is None
            else {
                "tip_height": status.tip_height,
                "tip_hash": status.tip_hash.hex(),
                "anchor_height": status.anchor_height,
                "max_headers_per_response": status.max_headers_per_response,
                "max_inflight_requests": status.max_inflight_requests,
            },
            "tolerance": self.late_covered_tolerance,
            "empty_retry_until": self.empty_retry_until,
            "last_outcome": None if self.last_outcome is None else str(self.last_outcome),
            "torn_down": self.torn_down,
        }
