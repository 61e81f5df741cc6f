"""Sans-I/O codec for block-sync stream (kind 6) payloads: Status, GetBlocks, Block, BlocksDone,
RangeUnavailable.

We pick our own stream version (:data:`BLOCK_SYNC_STREAM_VERSION` = 1) rather than the
reference's 2: our Block carries our synthetic block encoding (89-byte header, ``u32`` body
length, opaque body), not a Zcash block, so a reference peer must be refused at the prelude
rather than misparsed.

Invariants:
- A frame has ``flags == 0`` (:class:`UnsupportedFlags` otherwise) and a ``message_type``
  that fits a u8 and equals the payload's tag byte (:class:`MismatchedFrameMessageType`);
  see :func:`check_block_sync_frame` and :func:`decode_block_sync_frame`. Both error classes
  are header-sync's: the envelope rules are the same, so a reason label means one thing.
- A payload is ``[u8 tag][fields]``, at most :data:`MAX_BS_MESSAGE_BYTES` (checked before a
  single field is read), all integers little-endian, no trailing bytes.
- Block headers and bodies are opaque bytes; this module never interprets them (and never
  imports ``node_core.chain``: the protocol package stays a leaf). A test keeps
  :data:`BLOCK_HEADER_BYTES` and :data:`MAX_BLOCK_BODY_BYTES` equal to the chain model's.
- Every count and length is checked against its cap before anything is sliced: request
  counts are 1..=128, a Block's ``body_len`` at most :data:`MAX_DECODABLE_BODY_BYTES`.
- A Block body *above* the consensus cap :data:`MAX_BLOCK_BODY_BYTES` but within
  :data:`MAX_DECODABLE_BODY_BYTES` decodes: like the reference (whose 3 MiB message cap sits
  deliberately above the 2 MB block cap), the codec hands a slightly oversized block to the
  node, which records it as ``invalid_block`` instead of closing the connection as for a
  malformed frame. Only a body that could not even fit the message cap is a codec error.
- ``Status``'s three serving caps are clamped on encode *and* decode (blocks per response
  1..=128, in-flight requests 1..=32768, response bytes 3 MiB..=32 MiB): a peer's
  out-of-range advertisement is tolerated, never trusted, and we never advertise a value a
  peer would have to clamp. ``servable_low > servable_high`` is *not* a codec error: it is
  policy (the routine records ``invalid_status``), and ``(1, 0)`` is the empty range.
- Decoders raise only :class:`CodecError` subclasses; encoders enforce the same rules, so we
  never emit what we would reject from a peer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from node_core.protocol.codec import Reader, Writer
from node_core.protocol.errors import InvalidValue, OverCap, UnknownMessage
from node_core.protocol.header_sync import (
    HASH_BYTES,
    MismatchedFrameMessageType,
    UnsupportedFlags,
)
from node_core.protocol.limits import FRAME_HEADER_BYTES, MIB

__all__ = [
    "BLOCK_HEADER_BYTES",
    "BLOCK_OVERHEAD_BYTES",
    "BLOCK_SYNC_STREAM_KIND",
    "BLOCK_SYNC_STREAM_VERSION",
    "BS_FRAME_CAP",
    "DEFAULT_BLOCKS_PER_RESPONSE",
    "DEFAULT_INFLIGHT_REQUESTS",
    "DEFAULT_RESPONSE_BYTES",
    "EMPTY_SERVABLE_HIGH",
    "EMPTY_SERVABLE_LOW",
    "MAX_BLOCKS_PER_REQUEST",
    "MAX_BLOCK_BODY_BYTES",
    "MAX_BS_MESSAGE_BYTES",
    "MAX_DECODABLE_BODY_BYTES",
    "MAX_INFLIGHT_REQUESTS",
    "MAX_RESPONSE_BYTES",
    "MIN_BLOCKS_PER_REQUEST",
    "MIN_INFLIGHT_REQUESTS",
    "MIN_RESPONSE_BYTES",
    "TAG_BLOCK",
    "TAG_BLOCKS_DONE",
    "TAG_GET_BLOCKS",
    "TAG_RANGE_UNAVAILABLE",
    "TAG_STATUS",
    "Block",
    "BlockBodyLimit",
    "BlockCountLimit",
    "BlockSyncMessage",
    "BlocksDone",
    "GetBlocks",
    "MismatchedFrameMessageType",
    "RangeUnavailable",
    "Status",
    "UnsupportedFlags",
    "ZeroBlockRequestCount",
    "block_wire_bytes",
    "check_block_sync_frame",
    "clamp_max_blocks",
    "clamp_max_inflight",
    "clamp_max_response_bytes",
    "clamp_request_count",
    "decode_block_sync",
    "decode_block_sync_frame",
    "encode_block_sync",
]

BLOCK_SYNC_STREAM_KIND = 6
#: Our own version: the reference's v2 messages carrying our block encoding (module docstring).
BLOCK_SYNC_STREAM_VERSION = 1

#: Whole-payload cap (tag included), checked before anything else is read. Deliberately above
#: the 2 MiB block cap (reference ``MAX_BS_MESSAGE_BYTES``): a slightly oversized block reaches
#: the codec and the node, which classify it, instead of being dropped by the transport.
MAX_BS_MESSAGE_BYTES = 3 * MIB
#: Receiver frame cap for the stream: one maximal message plus the frame header.
BS_FRAME_CAP = MAX_BS_MESSAGE_BYTES + FRAME_HEADER_BYTES
#: Size of one block header on the wire: ``node_core.chain.model.HEADER_BYTES`` (a test keeps
#: the two equal; this package must not import the chain model).
BLOCK_HEADER_BYTES = 89
#: The consensus body cap, ``node_core.chain.model.MAX_BODY_BYTES`` (a test keeps them equal).
#: Not a codec limit (see :data:`MAX_DECODABLE_BODY_BYTES`); exported so the node classifies
#: an oversized body against the same number the chain enforces.
MAX_BLOCK_BODY_BYTES = 2 * MIB - 1024

MIN_BLOCKS_PER_REQUEST = 1
#: Reference ``MAX_BS_BLOCKS_PER_REQUEST``: bounds every count on the wire and keeps a
#: per-request received bitmap within 128 bits.
MAX_BLOCKS_PER_REQUEST = 128
#: Our advertised ``max_blocks_per_response``. The reference's default of 1 is tuned for 2 MB
#: mainnet blocks; our demo chains are many small blocks on loopback, where one block per
#: round trip would make sync latency-bound for no memory benefit.
DEFAULT_BLOCKS_PER_RESPONSE = 16
MIN_INFLIGHT_REQUESTS = 1
#: Reference ``MAX_BS_INFLIGHT_REQUESTS``.
MAX_INFLIGHT_REQUESTS = 32_768
#: Reference default advertisement.
DEFAULT_INFLIGHT_REQUESTS = 32_000
#: Largest ``max_response_bytes`` a peer may advertise (and the reference default).
MAX_RESPONSE_BYTES = 32 * MIB
#: A response cap below one maximal message is clamped up: otherwise no block (and in
#: particular no slightly oversized one the node must be able to classify) could be served.
MIN_RESPONSE_BYTES = MAX_BS_MESSAGE_BYTES
DEFAULT_RESPONSE_BYTES = MAX_RESPONSE_BYTES

#: The empty servable range by convention (``low > high`` otherwise means an invalid Status).
EMPTY_SERVABLE_LOW = 1
EMPTY_SERVABLE_HIGH = 0

TAG_STATUS = 1
TAG_GET_BLOCKS = 2
TAG_BLOCK = 3
TAG_BLOCKS_DONE = 4
TAG_RANGE_UNAVAILABLE = 5
_BLOCK_TAG = bytes((TAG_BLOCK,))
_U32 = struct.Struct("<I")
KNOWN_TAGS = frozenset(
    {TAG_STATUS, TAG_GET_BLOCKS, TAG_BLOCK, TAG_BLOCKS_DONE, TAG_RANGE_UNAVAILABLE}
)

#: Bytes of a Block payload besides the body: tag, header and u32 body length.
BLOCK_OVERHEAD_BYTES = 1 + BLOCK_HEADER_BYTES + 4
#: Largest body a Block payload can declare: whatever the whole-message cap leaves. Larger
#: bodies (up to this) than :data:`MAX_BLOCK_BODY_BYTES` decode, for the node to classify.
MAX_DECODABLE_BODY_BYTES = MAX_BS_MESSAGE_BYTES - BLOCK_OVERHEAD_BYTES

_U32_MAX = 0xFFFF_FFFF


# --- errors --------------------------------------------------------------------------------


class ZeroBlockRequestCount(InvalidValue):
    """A GetBlocks or RangeUnavailable named zero blocks, which can only be a bug or a probe."""

    reason = "zero_block_request_count"


class BlockCountLimit(OverCap):
    """A block count exceeds :data:`MAX_BLOCKS_PER_REQUEST`: no request could have asked it."""

    reason = "block_count_limit"


class BlockBodyLimit(OverCap):
    """A Block declared a body longer than any Block payload can hold.

    Distinct from the consensus cap: a body between :data:`MAX_BLOCK_BODY_BYTES` and
    :data:`MAX_DECODABLE_BODY_BYTES` decodes (the node records ``invalid_block``), while one
    above it is a malformed frame.
    """

    reason = "block_body_limit"


# --- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    """The sender's servable block range and serving limits.

    Attributes:
        servable_low: Lowest height whose block the sender serves.
        servable_high: Highest height whose block the sender serves. ``(1, 0)`` is the empty
            range; any other ``servable_low > servable_high`` decodes but is an invalid
            Status for the routine to record.
        tip_hash: 32-byte hash of the header at ``servable_high``.
        max_blocks_per_response: Most Block frames the sender returns per GetBlocks
            (1..=128 after the codec's clamp).
        max_inflight_requests: GetBlocks the sender accepts concurrently (1..=32768).
        max_response_bytes: Most body bytes the sender returns per GetBlocks (3 MiB..=32 MiB).
    """

    servable_low: int
    servable_high: int
    tip_hash: bytes
    max_blocks_per_response: int = DEFAULT_BLOCKS_PER_RESPONSE
    max_inflight_requests: int = DEFAULT_INFLIGHT_REQUESTS
    max_response_bytes: int = DEFAULT_RESPONSE_BYTES

    @property
    def is_empty_range(self) -> bool:
        """The sender serves nothing (the ``(1, 0)`` convention)."""
        return (self.servable_low, self.servable_high) == (EMPTY_SERVABLE_LOW, EMPTY_SERVABLE_HIGH)

    @property
    def has_valid_range(self) -> bool:
        """``low <= high`` or the empty-range convention; anything else is ``invalid_status``."""
        return self.servable_low <= self.servable_high or self.is_empty_range


@dataclass(frozen=True, slots=True)
class GetBlocks:
    """Ask for ``count`` (1..=128) consecutive blocks starting at ``start_height``."""

    start_height: int
    count: int


@dataclass(frozen=True, slots=True)
class Block:
    """One block of a response: opaque 89-byte header and opaque body.

    The body may exceed the consensus cap :data:`MAX_BLOCK_BODY_BYTES` (up to
    :data:`MAX_DECODABLE_BODY_BYTES`) so that the node, not the codec, judges it.
    """

    header: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class BlocksDone:
    """Ends the answer to the GetBlocks at ``start_height``: ``returned`` (0..=128) blocks sent.

    ``returned`` may be 0 (the server started but had nothing to send after all): rejecting it
    would turn a harmless short answer into a malformed frame and a disconnect.
    """

    start_height: int
    returned: int


@dataclass(frozen=True, slots=True)
class RangeUnavailable:
    """The sender cannot serve the GetBlocks ``(start_height, count)``; ask someone else."""

    start_height: int
    count: int


BlockSyncMessage = Status | GetBlocks | Block | BlocksDone | RangeUnavailable


# --- clamps and byte accounting ------------------------------------------------------------


def clamp_max_blocks(value: int) -> int:
    """Clamp an advertised max_blocks_per_response to 1..=128."""
    return max(MIN_BLOCKS_PER_REQUEST, min(value, MAX_BLOCKS_PER_REQUEST))


def clamp_max_inflight(value: int) -> int:
    """Clamp an advertised max_inflight_requests to 1..=32768 (``MAX_BS_INFLIGHT_REQUESTS``)."""
    return max(MIN_INFLIGHT_REQUESTS, min(value, MAX_INFLIGHT_REQUESTS))


def clamp_max_response_bytes(value: int) -> int:
    """Clamp an advertised max_response_bytes to 3 MiB..=32 MiB (below one block is useless)."""
    return max(MIN_RESPONSE_BYTES, min(value, MAX_RESPONSE_BYTES))


def clamp_request_count(desired: int, peer_max: int) -> int:
    """The count to put in an outbound GetBlocks: ``max(1, min(desired, clamp(peer_max)))``.

    Asking for more than the peer serves per response would only earn a short answer, and a
    count of 0 or above 128 would not even encode.
    """
    return max(MIN_BLOCKS_PER_REQUEST, min(desired, clamp_max_blocks(peer_max)))


def block_wire_bytes(payload_len: int) -> int:
    """Body wire bytes a Block payload of ``payload_len`` bytes costs the byte budget.

    The payload length minus its tag byte (reference §4.1): the header and body length are
    accounted with the body, since that is what is retained while the block is buffered.

    Raises:
        InvalidValue: If ``payload_len`` cannot be a Block payload (shorter than tag, header
            and body length, or above the message cap): a caller bug, reported in the codec
            family so callers handle one error type.
    """
    if not BLOCK_OVERHEAD_BYTES <= payload_len <= MAX_BS_MESSAGE_BYTES:
        raise InvalidValue(
            f"block payload length {payload_len} not in "
            f"{BLOCK_OVERHEAD_BYTES}..={MAX_BS_MESSAGE_BYTES}"
        )
    return payload_len - 1


# --- frame envelope ------------------------------------------------------------------------


def check_block_sync_frame(message_type: int, flags: int) -> None:
    """Reject a frame header the block-sync stream does not define (before the payload).

    The routine reads ``message_type`` before decoding (a Block frame first reserves a slot
    downstream), so the envelope can be judged on its own.

    Raises:
        UnsupportedFlags: If ``flags`` is non-zero.
        MismatchedFrameMessageType: If ``message_type`` does not fit a u8 (no tag could match).
        UnknownMessage: If ``message_type`` is not one of the five defined tags.
    """
    if flags != 0:
        raise UnsupportedFlags(f"block-sync frame flags {flags:#06x} are not 0")
    if not 0 <= message_type <= 0xFF:
        raise MismatchedFrameMessageType(f"frame message type {message_type} does not fit u8")
    if message_type not in KNOWN_TAGS:
        raise UnknownMessage(f"block-sync frame message type {message_type}")


def decode_block_sync_frame(message_type: int, flags: int, payload: bytes) -> BlockSyncMessage:
    """Check the frame envelope and that its type equals the payload tag, then decode.

    The tag must agree with ``message_type`` because the routine acts on the type before the
    payload is decoded; a Status must not pass as a Block or the other way round.

    Raises:
        CodecError: Only this family (see :func:`check_block_sync_frame` and
            :func:`decode_block_sync`).
    """
    check_block_sync_frame(message_type, flags)
    if payload and payload[0] != message_type:
        raise MismatchedFrameMessageType(
            f"frame message type {message_type} but payload tag {payload[0]}"
        )
    return decode_block_sync(payload)


# --- encode --------------------------------------------------------------------------------


def encode_block_sync(msg: BlockSyncMessage) -> bytes:
    """Encode a block-sync payload (without the frame header); the tag is the frame type.

    Status's three caps are clamped (not rejected), as the decoder clamps them; every other
    out-of-range field is rejected. A Block body above the consensus cap but within
    :data:`MAX_DECODABLE_BODY_BYTES` encodes, because it decodes: callers that serve blocks
    only ever hold valid ones, and tests need to send the oversized ones.

    Raises:
        CodecError: If the message breaks any rule the decoder enforces, including the whole
            :data:`MAX_BS_MESSAGE_BYTES` cap.
    """
    if isinstance(msg, Block):
        # The bulk message: one join, so the body is copied once (the writer would copy it
        # twice); the same checks as the writer path.
        _check_body_len(len(msg.body))
        if len(msg.header) != BLOCK_HEADER_BYTES:
            raise InvalidValue(
                f"block header: expected {BLOCK_HEADER_BYTES} bytes, got {len(msg.header)}"
            )
        payload = b"".join((_BLOCK_TAG, msg.header, _U32.pack(len(msg.body)), msg.body))
        _check_message_size(payload)
        return payload
    w = Writer()
    if isinstance(msg, Status):
        w.u8(TAG_STATUS).u32(msg.servable_low).u32(msg.servable_high)
        w.fixed(msg.tip_hash, HASH_BYTES, "tip hash")
        w.u32(clamp_max_blocks(msg.max_blocks_per_response))
        w.u32(clamp_max_inflight(msg.max_inflight_requests))
        w.u32(clamp_max_response_bytes(msg.max_response_bytes))
    elif isinstance(msg, GetBlocks):
        _check_request_count(msg.count, "GetBlocks")
        w.u8(TAG_GET_BLOCKS).u32(msg.start_height).u32(msg.count)
    elif isinstance(msg, BlocksDone):
        _check_returned(msg.returned)
        w.u8(TAG_BLOCKS_DONE).u32(msg.start_height).u32(msg.returned)
    elif isinstance(msg, RangeUnavailable):
        _check_request_count(msg.count, "RangeUnavailable")
        w.u8(TAG_RANGE_UNAVAILABLE).u32(msg.start_height).u32(msg.count)
    else:  # pragma: no cover - exhaustive over BlockSyncMessage
        raise UnknownMessage(f"not a block-sync message: {type(msg).__name__}")
    payload = w.getvalue()
    _check_message_size(payload)
    return payload


# --- decode --------------------------------------------------------------------------------


def decode_block_sync(payload: bytes) -> BlockSyncMessage:
    """Decode any block-sync payload (without the frame header).

    Unlike header sync there is no correlation argument: a Block names its height in its
    header, and matching it (or a BlocksDone) to a request is the routine's job.

    Raises:
        CodecError: Only this family, for every malformed, over-cap or unknown input.
    """
    _check_message_size(payload)
    r = Reader(payload)
    tag = r.u8("block-sync tag")
    msg: BlockSyncMessage
    if tag == TAG_STATUS:
        msg = Status(
            servable_low=r.u32("servable_low"),
            servable_high=r.u32("servable_high"),
            tip_hash=r.take(HASH_BYTES, "tip hash"),
            max_blocks_per_response=clamp_max_blocks(r.u32("max_blocks_per_response")),
            max_inflight_requests=clamp_max_inflight(r.u32("max_inflight_requests")),
            max_response_bytes=clamp_max_response_bytes(r.u32("max_response_bytes")),
        )
    elif tag == TAG_GET_BLOCKS:
        start_height = r.u32("start_height")
        count = _check_request_count(r.u32("count"), "GetBlocks")
        msg = GetBlocks(start_height=start_height, count=count)
    elif tag == TAG_BLOCK:
        header = r.take(BLOCK_HEADER_BYTES, "block header")
        body_len = _check_body_len(r.u32("block body length"))
        msg = Block(header=header, body=r.take(body_len, "block body"))
    elif tag == TAG_BLOCKS_DONE:
        start_height = r.u32("start_height")
        returned = _check_returned(r.u32("returned"))
        msg = BlocksDone(start_height=start_height, returned=returned)
    elif tag == TAG_RANGE_UNAVAILABLE:
        start_height = r.u32("start_height")
        count = _check_request_count(r.u32("count"), "RangeUnavailable")
        msg = RangeUnavailable(start_height=start_height, count=count)
    else:
        raise UnknownMessage(f"block-sync tag {tag}")
    r.finish()
    return msg


# --- helpers -------------------------------------------------------------------------------


def _check_message_size(payload: bytes) -> None:
    if len(payload) > MAX_BS_MESSAGE_BYTES:
        raise OverCap(f"block-sync message: {len(payload)} bytes > cap {MAX_BS_MESSAGE_BYTES}")


def _check_request_count(count: int, what: str) -> int:
    if count == 0:
        raise ZeroBlockRequestCount(f"{what} block count is 0")
    if not 0 < count <= MAX_BLOCKS_PER_REQUEST:
        raise BlockCountLimit(f"{what} block count {count} not in 1..={MAX_BLOCKS_PER_REQUEST}")
    return count


def _check_returned(returned: int) -> int:
    if not 0 <= returned <= MAX_BLOCKS_PER_REQUEST:
        raise BlockCountLimit(f"BlocksDone returned {returned} not in 0..={MAX_BLOCKS_PER_REQUEST}")
    return returned


def _check_body_len(body_len: int) -> int:
    if body_len > MAX_DECODABLE_BODY_BYTES:
        raise BlockBodyLimit(
            f"block body: {body_len} bytes > {MAX_DECODABLE_BODY_BYTES} (what a message holds)"
        )
    return body_len
