"""Sans-I/O codec for header-sync stream (kind 5) payloads: Status, GetHeaders, Headers, NewBlock.

We pick our own stream version (:data:`HEADER_SYNC_STREAM_VERSION` = 1) rather than the reference's
5: we drop tree-aux (docs/PROTOCOL.md §12, deviation 21), so neither
``GetHeaders.want_tree_aux_roots`` nor the ``Headers.has_roots`` byte and commitment roots exist on
our wire.

Invariants:
- A frame has ``flags == 0`` (:class:`UnsupportedFlags` otherwise) and a ``message_type``
  that fits a u8 and equals the payload's tag byte (:class:`MismatchedFrameMessageType`);
  see :func:`check_header_sync_frame` and :func:`decode_header_sync_frame`.
- A payload is ``[u8 tag][fields]``, at most :data:`MAX_HS_MESSAGE_BYTES` (checked before a
  single field is read), all integers little-endian, no trailing bytes.
- Headers are opaque fixed-size byte strings of ``header_bytes`` bytes (default
  :data:`HEADER_WIRE_BYTES`); this module never interprets them, ``node_core.chain`` does.
- Every count and length is checked against its cap before anything is allocated or sliced;
  a ``Headers`` count is capped by the request it answers, so a ``Headers`` payload can only
  be decoded with an :class:`ExpectedRange` (without one it is :class:`UnsolicitedHeaders`).
- ``Status.max_headers_per_response`` is clamped to 1..=4000 on encode *and* decode and
  ``Status.max_inflight_requests`` to 1..=16 on decode, as the reference does: a peer's
  out-of-range advertisement is tolerated, never trusted.
- Decoders raise only :class:`CodecError` subclasses; encoders enforce the same rules, so we
  never emit what we would reject from a peer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from node_core.protocol.codec import Reader, Writer
from node_core.protocol.errors import (
    CodecError,
    InvalidFlag,
    InvalidValue,
    OverCap,
    Truncated,
    UnknownMessage,
)
from node_core.protocol.limits import FRAME_HEADER_BYTES, MIB

_BODY_SIZE = struct.Struct("<I")

HEADER_SYNC_STREAM_KIND = 5
#: Our own version: the reference's v5 layout minus tree-aux roots (see module docstring).
HEADER_SYNC_STREAM_VERSION = 1

#: Whole-payload cap (tag included), checked before anything else is read.
MAX_HS_MESSAGE_BYTES = 2 * MIB
#: Receiver frame cap for the stream: one maximal message plus the frame header.
HS_FRAME_CAP = MAX_HS_MESSAGE_BYTES + FRAME_HEADER_BYTES
#: Size of one header on the wire: ``node_core.chain.model.HEADER_BYTES`` (a test keeps the two
#: equal; this package must not import the chain model, it stays a leaf).
HEADER_WIRE_BYTES = 89
#: Largest block body a NewBlock may declare. The whole-message cap binds first: the largest
#: body that actually fits a NewBlock is :func:`max_new_block_body_bytes`.
MAX_BLOCK_BODY_BYTES = 2 * MIB
HASH_BYTES = 32

MIN_HEADERS_PER_RESPONSE = 1
MAX_HEADERS_PER_RESPONSE = 4000
DEFAULT_HEADERS_PER_RESPONSE = 1000
MIN_INFLIGHT_REQUESTS = 1
MAX_INFLIGHT_REQUESTS = 16
DEFAULT_INFLIGHT_REQUESTS = 10

TAG_STATUS = 1
TAG_GET_HEADERS = 2
TAG_HEADERS = 3
TAG_NEW_BLOCK = 4
KNOWN_TAGS = frozenset({TAG_STATUS, TAG_GET_HEADERS, TAG_HEADERS, TAG_NEW_BLOCK})

#: Bytes of a Headers payload before its first header: tag and u32 count.
HEADERS_PREFIX_BYTES = 1 + 4
#: Bytes each header adds to a Headers payload besides the header itself (u32 body-size hint).
BODY_SIZE_HINT_BYTES = 4
#: Bytes of a NewBlock payload besides header and body: tag and u32 body length.
NEW_BLOCK_OVERHEAD_BYTES = 1 + 4


# --- errors --------------------------------------------------------------------------------


class UnsupportedFlags(InvalidFlag):
    """A header-sync frame set a flag bit; none is defined, so any bit is a violation."""

    reason = "unsupported_flags"


class MismatchedFrameMessageType(InvalidValue):
    """The frame's message type is not a u8 or differs from the payload tag it carries."""

    reason = "mismatched_frame_message_type"


class ZeroHeaderRequestCount(InvalidValue):
    """A GetHeaders asked for zero headers, which can only be a bug or a probe."""

    reason = "zero_header_request_count"


class HeaderCountLimit(OverCap):
    """A header count (requested or delivered) exceeds the cap that applies to it."""

    reason = "header_count_limit"


class UnsolicitedHeaders(CodecError):
    """A Headers payload arrived with no outstanding request to correlate it with.

    Its own reason because the reference treats it as distinct misbehavior (disconnect),
    separate from a merely malformed message.
    """

    reason = "unsolicited_headers"


# --- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    """The sender's chain view and serving limits.

    Attributes:
        tip_height: Height of the sender's best header.
        tip_hash: 32-byte hash of that header.
        anchor_height: Height the sender syncs from (its trusted anchor); may exceed
            ``tip_height`` on the wire, which the routine records as ``InvalidStatus``.
        max_headers_per_response: Most headers the sender serves per GetHeaders (1..=4000
            after the codec's clamp).
        max_inflight_requests: Requests the sender accepts concurrently (1..=16 after the
            decoder's clamp).
    """

    tip_height: int
    tip_hash: bytes
    anchor_height: int
    max_headers_per_response: int = DEFAULT_HEADERS_PER_RESPONSE
    max_inflight_requests: int = DEFAULT_INFLIGHT_REQUESTS


@dataclass(frozen=True, slots=True)
class GetHeaders:
    """Ask for ``count`` (1..=4000) consecutive headers starting at ``start_height``."""

    start_height: int
    count: int

    def expectation(self) -> ExpectedRange:
        """The expectation to record before this request is written (reference §3.4)."""
        return ExpectedRange(start_height=self.start_height, count=self.count)


@dataclass(frozen=True, slots=True)
class Headers:
    """A run of consecutive headers answering one GetHeaders, with advisory body sizes.

    ``body_sizes[i]`` is the sender's hint for the body of ``headers[i]`` (0 = unknown); it is
    advisory, never consensus. On the wire each header is followed by its hint, so a decoded
    Headers always has equally long tuples; encoding unequal tuples is rejected.
    """

    headers: tuple[bytes, ...]
    body_sizes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NewBlock:
    """A freshly mined or relayed block (tip flood): opaque header bytes and body bytes."""

    header: bytes
    body: bytes


HeaderSyncMessage = Status | GetHeaders | Headers | NewBlock


@dataclass(frozen=True, slots=True)
class ExpectedRange:
    """The outstanding request a Headers payload must answer (the routine's FIFO front).

    ``start_height`` is carried for correlation by the caller; the codec only uses ``count``,
    since without tree-aux roots there are no per-header heights on the wire to check.

    Raises:
        CodecError: On construction, if ``count`` is not 1..=4000 or ``start_height`` is not
            a u32: such a request could never have been sent, so nothing may answer it.
    """

    start_height: int
    count: int

    def __post_init__(self) -> None:
        _check_u32(self.start_height, "expected start_height")
        _check_request_count(self.count)


# --- clamps and byte budget ----------------------------------------------------------------


def clamp_max_headers(value: int) -> int:
    """Clamp an advertised max_headers_per_response to 1..=4000 (reference ``config.rs``)."""
    return max(MIN_HEADERS_PER_RESPONSE, min(value, MAX_HEADERS_PER_RESPONSE))


def clamp_max_inflight(value: int) -> int:
    """Clamp an advertised max_inflight_requests to 1..=16 (``LOCAL_MAX_HS_INFLIGHT_PER_PEER``)."""
    return max(MIN_INFLIGHT_REQUESTS, min(value, MAX_INFLIGHT_REQUESTS))


def header_count_by_byte_budget(frame_cap: int, header_bytes: int = HEADER_WIRE_BYTES) -> int:
    """How many headers fit one Headers frame under ``frame_cap``, clamped to 1..=4000.

    ``(min(2 MiB, frame_cap - 8) - 1 - 4) // (header_bytes + 4)``: the payload budget minus
    tag and count, divided by header plus body-size hint (the reference's formula without the
    has_roots byte and roots). Clamped to at least 1 so a request is always possible; a frame
    cap too small for even one header is a configuration error the frame layer reports.
    """
    _check_header_bytes(header_bytes)
    payload_budget = min(MAX_HS_MESSAGE_BYTES, frame_cap - FRAME_HEADER_BYTES)
    raw = (payload_budget - HEADERS_PREFIX_BYTES) // (header_bytes + BODY_SIZE_HINT_BYTES)
    return max(MIN_HEADERS_PER_RESPONSE, min(raw, MAX_HEADERS_PER_RESPONSE))


def clamp_request_count(
    desired: int, peer_max: int, frame_cap: int, header_bytes: int = HEADER_WIRE_BYTES
) -> int:
    """The count to put in an outbound GetHeaders: never more than the peer or a frame allows.

    ``max(1, min(desired, clamp(peer_max), 4000, byte budget))``: asking for more than the
    peer serves or than fits one frame would only earn a short or rejected response.
    """
    budget = header_count_by_byte_budget(frame_cap, header_bytes)
    return max(1, min(desired, clamp_max_headers(peer_max), MAX_HEADERS_PER_RESPONSE, budget))


def inbound_serving_limit(
    advertised_max: int, frame_cap: int, header_bytes: int = HEADER_WIRE_BYTES
) -> int:
    """Largest GetHeaders count we serve: our advertised cap, bounded by what fits a frame.

    The reference's inbound limit is the outbound formula applied to our own advertisement;
    a larger inbound request is recorded (``GetHeadersTooLong``), not served.
    """
    return clamp_request_count(MAX_HEADERS_PER_RESPONSE, advertised_max, frame_cap, header_bytes)


def max_new_block_body_bytes(header_bytes: int = HEADER_WIRE_BYTES) -> int:
    """Largest body a NewBlock can carry: the body cap or what the message cap leaves."""
    _check_header_bytes(header_bytes)
    room = MAX_HS_MESSAGE_BYTES - NEW_BLOCK_OVERHEAD_BYTES - header_bytes
    return min(MAX_BLOCK_BODY_BYTES, room)


# --- frame envelope ------------------------------------------------------------------------


def check_header_sync_frame(message_type: int, flags: int) -> None:
    """Reject a frame header the header-sync stream does not define (before the payload).

    Raises:
        UnsupportedFlags: If ``flags`` is non-zero.
        MismatchedFrameMessageType: If ``message_type`` does not fit a u8 (no tag could match).
        UnknownMessage: If ``message_type`` is not one of the four defined tags.
    """
    if flags != 0:
        raise UnsupportedFlags(f"header-sync frame flags {flags:#06x} are not 0")
    if not 0 <= message_type <= 0xFF:
        raise MismatchedFrameMessageType(f"frame message type {message_type} does not fit u8")
    if message_type not in KNOWN_TAGS:
        raise UnknownMessage(f"header-sync frame message type {message_type}")


def decode_header_sync_frame(
    message_type: int,
    flags: int,
    payload: bytes,
    *,
    expected: ExpectedRange | None = None,
    peer_max: int = MAX_HEADERS_PER_RESPONSE,
    header_bytes: int = HEADER_WIRE_BYTES,
) -> HeaderSyncMessage:
    """Check the frame envelope and that its type equals the payload tag, then decode.

    The routine reads ``message_type`` first to decide whether to pop its expectation FIFO,
    so the payload tag must agree with it: otherwise a Headers could hide behind a Status
    frame type and skip correlation.

    Raises:
        CodecError: Only this family (see :func:`check_header_sync_frame` and
            :func:`decode_header_sync`).
    """
    check_header_sync_frame(message_type, flags)
    if payload and payload[0] != message_type:
        raise MismatchedFrameMessageType(
            f"frame message type {message_type} but payload tag {payload[0]}"
        )
    return decode_header_sync(
        payload, expected=expected, peer_max=peer_max, header_bytes=header_bytes
    )


# --- encode --------------------------------------------------------------------------------


def encode_header_sync(msg: HeaderSyncMessage, header_bytes: int = HEADER_WIRE_BYTES) -> bytes:
    """Encode a header-sync payload (without the frame header); the tag is the frame type.

    Status.max_headers_per_response is clamped (not rejected) like the reference; every other
    out-of-range field is rejected.

    Raises:
        CodecError: If the message breaks any rule the decoder enforces, including the whole
            :data:`MAX_HS_MESSAGE_BYTES` cap.
    """
    _check_header_bytes(header_bytes)
    w = Writer()
    if isinstance(msg, Status):
        w.u8(TAG_STATUS).u32(msg.tip_height)
        w.fixed(msg.tip_hash, HASH_BYTES, "tip hash")
        w.u32(msg.anchor_height).u32(clamp_max_headers(msg.max_headers_per_response))
        w.u16(msg.max_inflight_requests)
    elif isinstance(msg, GetHeaders):
        _check_request_count(msg.count)
        w.u8(TAG_GET_HEADERS).u32(msg.start_height).u32(msg.count)
    elif isinstance(msg, Headers):
        n = len(msg.headers)
        if n != len(msg.body_sizes):
            raise InvalidValue(f"headers: {n} headers but {len(msg.body_sizes)} body sizes")
        if n > MAX_HEADERS_PER_RESPONSE:
            raise HeaderCountLimit(f"headers: {n} > cap {MAX_HEADERS_PER_RESPONSE}")
        w.u8(TAG_HEADERS).u32(n)
        # One join instead of two writer calls per header: a 4,000-header answer is the
        # hottest thing a server encodes. Same checks as ``fixed`` and ``u32``.
        parts: list[bytes] = []
        pack = _BODY_SIZE.pack
        for header, body_size in zip(msg.headers, msg.body_sizes, strict=True):
            if len(header) != header_bytes:
                raise InvalidValue(f"header: expected {header_bytes} bytes, got {len(header)}")
            if not 0 <= body_size <= 0xFFFF_FFFF:
                raise InvalidValue(f"u32 out of range: {body_size}")
            parts.append(header)
            parts.append(pack(body_size))
        w.raw(b"".join(parts))
    elif isinstance(msg, NewBlock):
        if len(msg.body) > MAX_BLOCK_BODY_BYTES:
            raise OverCap(f"block body: {len(msg.body)} bytes > cap {MAX_BLOCK_BODY_BYTES}")
        w.u8(TAG_NEW_BLOCK).fixed(msg.header, header_bytes, "block header")
        w.u32(len(msg.body)).raw(msg.body)
    else:  # pragma: no cover - exhaustive over HeaderSyncMessage
        raise UnknownMessage(f"not a header-sync message: {type(msg).__name__}")
    payload = w.getvalue()
    _check_message_size(payload)
    return payload


# --- decode --------------------------------------------------------------------------------


def decode_header_sync(
    payload: bytes,
    *,
    expected: ExpectedRange | None = None,
    peer_max: int = MAX_HEADERS_PER_RESPONSE,
    header_bytes: int = HEADER_WIRE_BYTES,
) -> HeaderSyncMessage:
    """Decode any header-sync payload (without the frame header).

    A Headers payload needs the request it answers: with ``expected`` it is decoded as by
    :func:`decode_headers`, without it it is rejected as :class:`UnsolicitedHeaders` before
    any header is read. ``expected`` and ``peer_max`` are ignored for the other messages.

    Raises:
        CodecError: Only this family, for every malformed, over-cap, unknown or unsolicited
            input.
    """
    _check_header_bytes(header_bytes)
    _check_message_size(payload)
    r = Reader(payload)
    tag = r.u8("header-sync tag")
    msg: HeaderSyncMessage
    if tag == TAG_STATUS:
        msg = Status(
            tip_height=r.u32("tip_height"),
            tip_hash=r.take(HASH_BYTES, "tip hash"),
            anchor_height=r.u32("anchor_height"),
            max_headers_per_response=clamp_max_headers(r.u32("max_headers_per_response")),
            max_inflight_requests=clamp_max_inflight(r.u16("max_inflight_requests")),
        )
    elif tag == TAG_GET_HEADERS:
        start_height = r.u32("start_height")
        count = r.u32("count")
        _check_request_count(count)
        msg = GetHeaders(start_height=start_height, count=count)
    elif tag == TAG_HEADERS:
        if expected is None:
            raise UnsolicitedHeaders("Headers payload with no outstanding request")
        msg = _read_headers_body(r, expected, peer_max, header_bytes)
    elif tag == TAG_NEW_BLOCK:
        header = r.take(header_bytes, "block header")
        body_len = r.u32("block body length")
        if body_len > MAX_BLOCK_BODY_BYTES:
            raise OverCap(f"block body: {body_len} bytes > cap {MAX_BLOCK_BODY_BYTES}")
        msg = NewBlock(header=header, body=r.take(body_len, "block body"))
    else:
        raise UnknownMessage(f"header-sync tag {tag}")
    r.finish()
    return msg


def decode_headers(
    payload: bytes,
    expected: ExpectedRange,
    peer_max: int = MAX_HEADERS_PER_RESPONSE,
    header_bytes: int = HEADER_WIRE_BYTES,
) -> Headers:
    """Decode a payload that must be the Headers response to ``expected``.

    The count is capped at ``min(expected.count, clamp(peer_max), 4000)`` before any header
    is read: a peer may answer short (or empty), never with more than we asked for or than it
    advertised, and a hostile count cannot make us allocate.

    Raises:
        UnknownMessage: If the payload's tag is not Headers.
        HeaderCountLimit: If the count exceeds the cap above.
        CodecError: For any other malformed input (truncation, trailing bytes, size).
    """
    _check_header_bytes(header_bytes)
    _check_message_size(payload)
    r = Reader(payload)
    tag = r.u8("header-sync tag")
    if tag != TAG_HEADERS:
        raise UnknownMessage(f"expected a Headers payload (tag 3), got tag {tag}")
    msg = _read_headers_body(r, expected, peer_max, header_bytes)
    r.finish()
    return msg


def _read_headers_body(
    r: Reader, expected: ExpectedRange, peer_max: int, header_bytes: int
) -> Headers:
    count = r.u32("headers count")
    cap = min(expected.count, clamp_max_headers(peer_max), MAX_HEADERS_PER_RESPONSE)
    if count > cap:
        raise HeaderCountLimit(
            f"headers: {count} > cap {cap} (requested {expected.count}, peer max {peer_max})"
        )
    item = header_bytes + BODY_SIZE_HINT_BYTES
    if count * item > r.remaining:
        # Fail before building any tuple: the payload cannot hold what the count declares.
        raise Truncated(f"headers: {count} x {item} bytes declared, {r.remaining} present")
    headers: list[bytes] = []
    body_sizes: list[int] = []
    for _ in range(count):
        headers.append(r.take(header_bytes, "header"))
        body_sizes.append(r.u32("body size hint"))
    return Headers(headers=tuple(headers), body_sizes=tuple(body_sizes))


# --- helpers -------------------------------------------------------------------------------


def _check_message_size(payload: bytes) -> None:
    if len(payload) > MAX_HS_MESSAGE_BYTES:
        raise OverCap(f"header-sync message: {len(payload)} bytes > cap {MAX_HS_MESSAGE_BYTES}")


def _check_request_count(count: int) -> None:
    if count == 0:
        raise ZeroHeaderRequestCount("header request count is 0")
    if not 0 < count <= MAX_HEADERS_PER_RESPONSE:
        raise HeaderCountLimit(
            f"header request count {count} not in 1..={MAX_HEADERS_PER_RESPONSE}"
        )


def _check_u32(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFF_FFFF:
        raise InvalidValue(f"{what} out of u32 range: {value}")
    return value


def _check_header_bytes(header_bytes: int) -> None:
    # A local configuration error, but raised as CodecError so callers have one family.
    if not 1 <= header_bytes < MAX_HS_MESSAGE_BYTES:
        raise InvalidValue(f"header size {header_bytes} is not a usable header size")
