"""The stream rules of one multiplexed connection, as a sans-I/O state machine.

docs/PROTOCOL.md §5 and §6 say what a node does with every record a peer sends; this module
is where those rules are decided, and nothing else decides them. It never touches a socket,
a task or a clock: the connection (``node_core/transport/connection.py``) reads a record,
hands it here with the time it arrived, and carries out the events that come back, in order
(h11 and aioquic keep the same split). So every rule and every close reason is tested here
with plain function calls (``tests/protocol/test_mux_state.py``).

Rules, with the reason a violation closes the connection with (PROTOCOL.md §5, §6):

- **record header**: length over 256 KiB -> OVERSIZE ``record.oversize``; unknown type ->
  NEUTRAL ``bad_record``;
- **OPEN**, in admission order (§5.4): wrong parity, id 0 or an open id -> BAD_PRELUDE
  ``bad_stream_id``; the stream-open bucket is charged before the prelude is parsed, empty ->
  RESET RATE_LIMIT ``stream_open_rate``; undecodable prelude -> BAD_PRELUDE ``bad_prelude``;
  a request id -> BAD_PRELUDE ``request_id_on_ordered_stream``; unknown (kind, version) ->
  RESET UNKNOWN_STREAM ``unknown_stream``; capability not negotiated -> RESET UNKNOWN_STREAM
  ``capability_not_negotiated``; a stream of that kind already open -> BAD_PRELUDE
  ``duplicate_ordered_stream``; ``max_open_streams`` reached -> RESET RESOURCE
  ``max_open_streams``; else the stream is accepted;
- **DATA** (§5.5, §6), on an open stream only (others are discarded): after the peer's FIN ->
  BAD_PRELUDE ``data_after_fin``; beyond the window -> RESOURCE ``flow_control``; a frame
  header over the kind's frame cap -> OVERSIZE ``frame.oversize``; a frame over the accepted
  ``max_message_bytes`` -> OVERSIZE ``message.oversize``; the kind's message bucket empty ->
  RATE_LIMIT ``message.throttled``. Frames before the offending one are still delivered;
- **CREDIT**: an increment that does not decode (or is zero) -> NEUTRAL ``bad_credit``;
- **FIN**: in the middle of a frame -> NEUTRAL ``truncated_frame``; once both sides sent FIN
  the stream is forgotten and its id and kind are free again;
- **RESET**: the stream is forgotten at once (an undecodable payload reads as
  ``malformed_reset``); **CLOSE**: the peer's close, reason ``peer:<reason>`` (or
  ``peer:malformed_close``); **PING**: liveness only;
- **liveness** (§5.7): every complete record restarts the idle timer; :meth:`MuxState.tick`
  answers with a PING to send or, past the idle timeout, the ``idle_timeout`` close.

Invariants:
- Records for a stream id that is not open are discarded, whatever their type (§5.2).
- The first close wins: after a violation or the peer's CLOSE, :meth:`MuxState.receive`
  returns nothing, so no later record can change the reported reason.
- A stream's receive window bounds what the peer may have outstanding on it; its send credit
  bounds what we may write. Both live in :class:`StreamState`, next to the FIN flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from node_core.protocol import mux
from node_core.protocol.errors import CodecError, OverCap
from node_core.protocol.flow import RecvWindow, SendCredit, stream_window
from node_core.protocol.frames import Frame, FrameDecoder, FrameOversize
from node_core.protocol.limits import FRAME_HEADER_BYTES, STREAM_KIND_LABELS, CloseCode
from node_core.protocol.ratelimit import TokenBucket

RecordType = mux.RecordType


class KindRules(Protocol):
    """What the rules need to know of a service kind (a transport ``Service`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def capability(self) -> int: ...
    @property
    def frame_cap(self) -> int:
        """Largest frame (header included) this service accepts; authoritative per kind."""
        ...

    @property
    def message_rate(self) -> float | None:
        """Inbound messages per second per connection for this kind (None: transport default).

        Bulk services raise it: an honest sender that respects credit must never be closed
        for rate; floods of small messages are what the bucket is for.
        """
        ...


class KindLookup(Protocol):
    """The node's services by stream kind (``ServiceRegistry.lookup``)."""

    def __call__(self, kind: int, /) -> KindRules | None: ...


class StreamState:
    """The protocol state of one open stream: its window, credit, frame decoder and FINs."""

    __slots__ = (
        "bytes_in",
        "decoder",
        "fin_sent",
        "frame_cap",
        "id",
        "kind",
        "kind_label",
        "locally_opened",
        "recv_window",
        "remote_finished",
        "send_credit",
    )

    def __init__(self, stream_id: int, kind: int, frame_cap: int, *, locally_opened: bool) -> None:
        window = stream_window(frame_cap)
        self.id = stream_id
        self.kind = kind
        self.kind_label = STREAM_KIND_LABELS.get(kind, str(kind))
        self.frame_cap = frame_cap
        self.locally_opened = locally_opened
        self.decoder = FrameDecoder(frame_cap - FRAME_HEADER_BYTES)
        self.recv_window = RecvWindow(window)
        self.send_credit = SendCredit(window)
        #: Stream bytes the peer sent us that were within its credit.
        self.bytes_in = 0
        self.remote_finished = False
        self.fin_sent = False


# --------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class StreamAccepted:
    """The peer opened a stream we serve: start its routine."""

    stream_id: int
    kind: int
    name: str


@dataclass(frozen=True, slots=True)
class StreamRefused:
    """Answer the peer's OPEN with a RESET; the connection lives on."""

    stream_id: int
    code: int
    reason: str
    stream_kind: str | None
    #: Refused by the stream-open bucket (journaled and counted as a rate limit too).
    throttled: bool = False


@dataclass(frozen=True, slots=True)
class FramesReceived:
    """Whole frames arrived on an open stream, in order: deliver them to its routine."""

    stream_id: int
    frames: list[Frame]


@dataclass(frozen=True, slots=True)
class CreditReceived:
    """The peer granted credit on an open stream: write what waits for it."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PeerFinished:
    """The peer half-closed an open stream at a frame boundary."""

    stream_id: int
    #: Both sides have now sent FIN: the stream was forgotten.
    forgotten: bool


@dataclass(frozen=True, slots=True)
class PeerReset:
    """The peer reset an open stream; it is forgotten already."""

    stream_id: int
    code: int
    #: The peer's own reason, without the ``peer:`` prefix the routine sees.
    reason: str


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The peer closed the connection (nothing is sent back)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class LimitExceeded:
    """A per-stream limit of §6 that a violation broke: journaled ``ratelimit/<event>``."""

    event: str
    stream_id: int
    stream_kind: str
    fields: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The peer broke a rule: close the connection, punitively, with ``code`` and ``reason``."""

    code: int
    reason: str
    detail: str
    limit: LimitExceeded | None = None


@dataclass(frozen=True, slots=True)
class SendPing:
    """Liveness: write a PING with this nonce (counting up from 1)."""

    nonce: int


@dataclass(frozen=True, slots=True)
class IdleTimedOut:
    """Nothing came in for longer than the idle timeout: close, neutrally."""

    code: int = CloseCode.NEUTRAL
    reason: str = "idle_timeout"


MuxEvent = (
    StreamAccepted
    | StreamRefused
    | FramesReceived
    | CreditReceived
    | PeerFinished
    | PeerReset
    | PeerClosed
    | ProtocolViolation
)

_NONE: tuple[MuxEvent, ...] = ()  # what a discarded record yields


# --------------------------------------------------------------------------- the machine
class MuxState:
    """The stream rules of one connection, from one side (``initiator`` or not)."""

    def __init__(
        self,
        *,
        initiator: bool,
        lookup: KindLookup,
        capabilities: int,
        max_open_streams: int,
        max_message_bytes: int,
        stream_open_rate: float,
        message_rate: float,
        idle_timeout: float,
        keepalive_interval: float,
        now: float,
    ) -> None:
        self.initiator = initiator
        self._lookup = lookup
        self._capabilities = capabilities
        self._max_open_streams = max_open_streams
        self._max_message_bytes = max_message_bytes
        self._message_rate = message_rate
        self.idle_timeout = idle_timeout
        #: How often :meth:`tick` is due: at most every ``idle_timeout / 3``.
        self.keepalive_interval = min(keepalive_interval, idle_timeout / 3)
        self.streams: dict[int, StreamState] = {}
        self.last_inbound = now
        #: The close this machine returned (a violation or the peer's CLOSE), if any.
        self.ended: ProtocolViolation | PeerClosed | None = None
        self._next_local_id = 1 if initiator else 2
        self._peer_parity = 0 if initiator else 1
        self._open_bucket = TokenBucket(stream_open_rate, now=now)
        self._message_buckets: dict[int, TokenBucket] = {}
        self._ping_nonce = 0

    # ------------------------------------------------------------------ inbound
    def receive_header(self, data: bytes | memoryview) -> mux.RecordHeader | ProtocolViolation:
        """Decode a record header, or the violation that closes the connection (§5.1)."""
        try:
            return mux.decode_record_header(data)
        except OverCap as exc:
            return self._violation(CloseCode.OVERSIZE, "record.oversize", str(exc))
        except CodecError as exc:
            return self._violation(CloseCode.NEUTRAL, "bad_record", str(exc))

    def receive(
        self, rec: mux.RecordHeader, payload: bytes | memoryview, now: float
    ) -> Sequence[MuxEvent]:
        """Apply one complete record that arrived at ``now``; the events to act on, in order.

        ``payload`` may be a view of the connection's read buffer: it is read during this
        call only (DATA is copied into whole frames or the stream's partial-frame buffer).
        """
        if self.ended is not None:
            return _NONE
        self.last_inbound = now
        t = rec.type
        if t is RecordType.DATA:
            return self._on_data(rec.stream_id, payload, now)
        if t is RecordType.CREDIT:
            return self._on_credit(rec.stream_id, payload)
        if t is RecordType.OPEN:
            return self._on_open(rec.stream_id, payload, now)
        if t is RecordType.FIN:
            return self._on_fin(rec.stream_id)
        if t is RecordType.RESET:
            return self._on_reset(rec.stream_id, payload)
        if t is RecordType.CLOSE:
            try:
                info = mux.decode_close(payload)
                closed = PeerClosed(info.code, f"peer:{info.reason}")
            except CodecError:
                closed = PeerClosed(CloseCode.NEUTRAL, "peer:malformed_close")
            return [self._end(closed)]
        return _NONE  # PING: liveness only, already recorded in last_inbound

    def _end(self, event: PeerClosed) -> PeerClosed:
        self.ended = event
        return event

    def _violation(
        self, code: int, reason: str, detail: str, limit: LimitExceeded | None = None
    ) -> ProtocolViolation:
        violation = ProtocolViolation(code, reason, detail, limit)
        self.ended = violation
        return violation

    def _on_open(self, sid: int, payload: bytes | memoryview, now: float) -> Sequence[MuxEvent]:
        if sid % 2 != self._peer_parity or sid in self.streams or sid == 0:
            return [self._violation(CloseCode.BAD_PRELUDE, "bad_stream_id", f"stream id {sid}")]
        # Charge the stream-open bucket before parsing anything (reference §1.6 step 1).
        if not self._open_bucket.try_take(now):
            return [StreamRefused(sid, CloseCode.RATE_LIMIT, "stream_open_rate", None, True)]
        try:
            prelude = mux.decode_prelude(payload)
        except CodecError as exc:
            return [self._violation(CloseCode.BAD_PRELUDE, "bad_prelude", str(exc))]
        if prelude.request_id is not None:
            return [self._violation(CloseCode.BAD_PRELUDE, "request_id_on_ordered_stream", "")]
        svc = self._lookup(prelude.kind)
        if svc is None or svc.version != prelude.version:
            code = CloseCode.UNKNOWN_STREAM
            return [StreamRefused(sid, code, "unknown_stream", str(prelude.kind))]
        if not svc.capability & self._capabilities:
            code = CloseCode.UNKNOWN_STREAM
            return [StreamRefused(sid, code, "capability_not_negotiated", svc.name)]
        if any(s.kind == svc.kind for s in self.streams.values()):
            return [self._violation(CloseCode.BAD_PRELUDE, "duplicate_ordered_stream", svc.name)]
        if len(self.streams) >= self._max_open_streams:
            return [StreamRefused(sid, CloseCode.RESOURCE, "max_open_streams", None)]
        self.streams[sid] = StreamState(sid, svc.kind, svc.frame_cap, locally_opened=False)
        return [StreamAccepted(sid, svc.kind, svc.name)]

    def _on_data(self, sid: int, payload: bytes | memoryview, now: float) -> Sequence[MuxEvent]:
        st = self.streams.get(sid)
        if st is None:
            return _NONE  # data in flight for a stream that is no longer open: discard
        if st.remote_finished:
            return [self._violation(CloseCode.BAD_PRELUDE, "data_after_fin", f"stream {sid}")]
        if not st.recv_window.on_data(len(payload)):
            detail = f"stream {sid} overran its window"
            return [self._violation(CloseCode.RESOURCE, "flow_control", detail)]
        st.bytes_in += len(payload)
        try:
            frames = st.decoder.feed(payload)
        except FrameOversize as exc:
            fields = {"declared": exc.declared, "cap": exc.cap}
            limit = LimitExceeded("frame.oversize", sid, st.kind_label, fields)
            return [self._violation(CloseCode.OVERSIZE, "frame.oversize", str(exc), limit)]
        if not frames:
            return _NONE
        bucket = self._message_buckets.get(st.kind)
        if bucket is None:
            svc = self._lookup(st.kind)
            rate = (svc.message_rate if svc is not None else None) or self._message_rate
            bucket = TokenBucket(rate, now=now)
            self._message_buckets[st.kind] = bucket
        max_message = self._max_message_bytes
        for i, frame in enumerate(frames):
            if len(frame.payload) > max_message:
                fields = {"size": len(frame.payload)}
                limit = LimitExceeded("message.oversize", sid, st.kind_label, fields)
                violation = self._violation(CloseCode.OVERSIZE, "message.oversize", "", limit)
                return self._delivered_then(sid, frames[:i], violation)
            if not bucket.try_take(now):
                # Dropping a frame of an ordered stream would leave a permanent gap: close.
                limit = LimitExceeded("message.throttled", sid, st.kind_label)
                violation = self._violation(CloseCode.RATE_LIMIT, "message.throttled", "", limit)
                return self._delivered_then(sid, frames[:i], violation)
        return [FramesReceived(sid, frames)]

    @staticmethod
    def _delivered_then(
        sid: int, frames: list[Frame], violation: ProtocolViolation
    ) -> Sequence[MuxEvent]:
        if frames:
            return [FramesReceived(sid, frames), violation]
        return [violation]

    def _on_credit(self, sid: int, payload: bytes | memoryview) -> Sequence[MuxEvent]:
        st = self.streams.get(sid)
        if st is None:
            return _NONE
        try:
            st.send_credit.grant(mux.decode_credit(payload))
        except CodecError as exc:
            return [self._violation(CloseCode.NEUTRAL, "bad_credit", str(exc))]
        return [CreditReceived(sid)]

    def _on_fin(self, sid: int) -> Sequence[MuxEvent]:
        st = self.streams.get(sid)
        if st is None:
            return _NONE
        if not st.decoder.at_boundary:
            detail = f"stream {sid} ended mid-frame"
            return [self._violation(CloseCode.NEUTRAL, "truncated_frame", detail)]
        st.remote_finished = True
        return [PeerFinished(sid, self._forget_if_done(st))]

    def _on_reset(self, sid: int, payload: bytes | memoryview) -> Sequence[MuxEvent]:
        if self.streams.pop(sid, None) is None:
            return _NONE
        try:
            info = mux.decode_close(payload)
        except CodecError:
            info = mux.CloseInfo(CloseCode.NEUTRAL, "malformed_reset")
        return [PeerReset(sid, info.code, info.reason)]

    # ------------------------------------------------------------------ local actions
    def open_local(self, kind: int, frame_cap: int) -> StreamState:
        """Open a stream of ours: the next id of our parity (the OPEN goes out at once)."""
        sid = self._next_local_id
        self._next_local_id += 2
        st = StreamState(sid, kind, frame_cap, locally_opened=True)
        self.streams[sid] = st
        return st

    def is_open(self, st: StreamState) -> bool:
        """``st`` is still open (identity, not id: a forgotten id may have a successor)."""
        return self.streams.get(st.id) is st

    def reset_local(self, st: StreamState) -> bool:
        """We reset ``st``: forget it. False if it was no longer open (nothing to send)."""
        if not self.is_open(st):
            return False
        del self.streams[st.id]
        return True

    def sent_fin(self, st: StreamState) -> bool:
        """We wrote ``st``'s FIN; True if the peer's FIN came first and ``st`` is forgotten."""
        st.fin_sent = True
        return self._forget_if_done(st)

    def consumed(self, st: StreamState, n: int) -> int:
        """The routine read ``n`` bytes of ``st``: the CREDIT increment to send now, or 0."""
        grant = st.recv_window.on_consumed(n)
        # The credit of a stream that is gone is never granted to a successor with its id.
        return grant if grant and self.is_open(st) else 0

    def _forget_if_done(self, st: StreamState) -> bool:
        """Both sides finished: the stream id and its kind are free again."""
        if st.fin_sent and st.remote_finished and self.is_open(st):
            del self.streams[st.id]
            return True
        return False

    # ------------------------------------------------------------------ liveness
    def tick(self, now: float) -> SendPing | IdleTimedOut:
        """A keepalive check at ``now`` (due every :attr:`keepalive_interval`)."""
        if now - self.last_inbound > self.idle_timeout:
            return IdleTimedOut()
        self._ping_nonce += 1
        return SendPing(self._ping_nonce)
