"""Block-sync payload codec: round trips, hostile bytes, clamps, caps and the frame envelope."""

from __future__ import annotations

import ast
import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node_core.protocol import block_sync as bs
from node_core.protocol import header_sync as hs
from node_core.protocol.block_sync import (
    BLOCK_HEADER_BYTES,
    BLOCK_OVERHEAD_BYTES,
    BS_FRAME_CAP,
    MAX_BLOCK_BODY_BYTES,
    MAX_BLOCKS_PER_REQUEST,
    MAX_BS_MESSAGE_BYTES,
    MAX_DECODABLE_BODY_BYTES,
    MAX_INFLIGHT_REQUESTS,
    MAX_RESPONSE_BYTES,
    MIN_RESPONSE_BYTES,
    Block,
    BlockBodyLimit,
    BlockCountLimit,
    BlocksDone,
    BlockSyncMessage,
    GetBlocks,
    MismatchedFrameMessageType,
    RangeUnavailable,
    Status,
    UnsupportedFlags,
    ZeroBlockRequestCount,
    block_wire_bytes,
    check_block_sync_frame,
    clamp_max_blocks,
    clamp_max_inflight,
    clamp_max_response_bytes,
    clamp_request_count,
    decode_block_sync,
    decode_block_sync_frame,
    encode_block_sync,
)
from node_core.protocol.errors import (
    CodecError,
    InvalidValue,
    OverCap,
    TrailingBytes,
    Truncated,
    UnknownMessage,
)
from node_core.protocol.limits import MIB, StreamKind

HB = BLOCK_HEADER_BYTES
ZERO_HASH = b"\x00" * 32

# --- strategies ----------------------------------------------------------------------------

u32 = st.integers(0, 0xFFFF_FFFF)
hashes = st.binary(min_size=32, max_size=32)
request_counts = st.integers(1, MAX_BLOCKS_PER_REQUEST)

statuses = st.builds(
    Status,
    servable_low=u32,
    servable_high=u32,
    tip_hash=hashes,
    max_blocks_per_response=request_counts,
    max_inflight_requests=st.integers(1, MAX_INFLIGHT_REQUESTS),
    max_response_bytes=st.integers(MIN_RESPONSE_BYTES, MAX_RESPONSE_BYTES),
)
get_blocks = st.builds(GetBlocks, start_height=u32, count=request_counts)
blocks = st.builds(Block, header=st.binary(min_size=HB, max_size=HB), body=st.binary(max_size=512))
blocks_done = st.builds(
    BlocksDone, start_height=u32, returned=st.integers(0, MAX_BLOCKS_PER_REQUEST)
)
range_unavailable = st.builds(RangeUnavailable, start_height=u32, count=request_counts)
messages: st.SearchStrategy[BlockSyncMessage] = st.one_of(
    statuses, get_blocks, blocks, blocks_done, range_unavailable
)


def _decode_any(payload: bytes) -> None:
    """Decode through the payload entry point; only CodecError may escape."""
    with contextlib.suppress(CodecError):
        decode_block_sync(payload)


def _status_payload(low: int, high: int, blocks: int, inflight: int, response: int) -> bytes:
    return (
        b"\x01"
        + struct.pack("<II", low, high)
        + ZERO_HASH
        + struct.pack("<III", blocks, inflight, response)
    )


# --- constants shared with the chain and the transport -------------------------------------


def test_header_size_is_the_chain_header_size() -> None:
    from node_core.chain.model import HEADER_BYTES

    assert BLOCK_HEADER_BYTES == HEADER_BYTES


def test_body_cap_is_the_chain_body_cap() -> None:
    from node_core.chain.model import MAX_BODY_BYTES

    assert MAX_BLOCK_BODY_BYTES == MAX_BODY_BYTES


def test_stream_constants() -> None:
    assert bs.BLOCK_SYNC_STREAM_KIND == 6
    assert int(StreamKind.BLOCK_SYNC) == bs.BLOCK_SYNC_STREAM_KIND
    assert bs.BLOCK_SYNC_STREAM_VERSION == 1
    assert MAX_BS_MESSAGE_BYTES == 3 * MIB
    assert BS_FRAME_CAP == 3 * MIB + 8
    assert MIN_RESPONSE_BYTES == MAX_BS_MESSAGE_BYTES
    assert MAX_RESPONSE_BYTES == 32 * MIB
    assert bs.DEFAULT_BLOCKS_PER_RESPONSE == 16
    assert bs.DEFAULT_INFLIGHT_REQUESTS == 32_000
    assert MAX_INFLIGHT_REQUESTS == 32_768
    # A maximal valid block fits one message with room for the codec to see larger ones.
    assert BLOCK_OVERHEAD_BYTES + MAX_BLOCK_BODY_BYTES < MAX_BS_MESSAGE_BYTES
    assert MAX_DECODABLE_BODY_BYTES == MAX_BS_MESSAGE_BYTES - 1 - HB - 4


def test_codec_does_not_import_the_chain() -> None:
    # The protocol package is a leaf: block headers and bodies stay opaque bytes here.
    tree = ast.parse(Path(bs.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not {m for m in imported if m.startswith("node_core.chain")}


def test_generic_envelope_errors_are_header_syncs() -> None:
    # One class per reason across streams: no duplicate definitions.
    assert bs.UnsupportedFlags is hs.UnsupportedFlags
    assert bs.MismatchedFrameMessageType is hs.MismatchedFrameMessageType


# --- round trips ---------------------------------------------------------------------------


@settings(max_examples=400)
@given(msg=messages)
def test_round_trip(msg: BlockSyncMessage) -> None:
    payload = encode_block_sync(msg)
    assert len(payload) <= MAX_BS_MESSAGE_BYTES
    assert decode_block_sync(payload) == msg
    assert decode_block_sync_frame(payload[0], 0, payload) == msg


def test_exact_layouts() -> None:
    status = Status(2, 9, b"\xaa" * 32, 16, 32_000, 32 * MIB)
    assert encode_block_sync(status) == (
        b"\x01"
        + struct.pack("<II", 2, 9)
        + b"\xaa" * 32
        + struct.pack("<III", 16, 32_000, 32 * MIB)
    )
    assert len(encode_block_sync(status)) == 53
    assert encode_block_sync(GetBlocks(5, 6)) == b"\x02" + struct.pack("<II", 5, 6)
    block = Block(header=b"\x03" * HB, body=b"body")
    assert encode_block_sync(block) == b"\x03" + b"\x03" * HB + struct.pack("<I", 4) + b"body"
    assert encode_block_sync(BlocksDone(7, 3)) == b"\x04" + struct.pack("<II", 7, 3)
    assert encode_block_sync(RangeUnavailable(7, 8)) == b"\x05" + struct.pack("<II", 7, 8)


def test_status_defaults_are_our_advertisement() -> None:
    status = Status(0, 10, ZERO_HASH)
    assert status.max_blocks_per_response == 16
    assert status.max_inflight_requests == 32_000
    assert status.max_response_bytes == 32 * MIB
    assert decode_block_sync(encode_block_sync(status)) == status


# --- hostile bytes -------------------------------------------------------------------------


@settings(max_examples=500)
@given(data=st.binary(max_size=1024))
def test_arbitrary_bytes_only_raise_codec_errors(data: bytes) -> None:
    _decode_any(data)


@settings(max_examples=300)
@given(data=st.binary(max_size=1024), tag=st.integers(1, 5))
def test_arbitrary_bodies_after_a_valid_tag(data: bytes, tag: int) -> None:
    _decode_any(bytes([tag]) + data)


@settings(max_examples=500)
@given(msg=messages, data=st.data())
def test_mutations_only_raise_codec_errors(msg: BlockSyncMessage, data: st.DataObject) -> None:
    payload = bytearray(encode_block_sync(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete", "set_u32"]))
        if op == "flip" and payload:
            i = data.draw(st.integers(0, len(payload) - 1))
            payload[i] ^= data.draw(st.integers(1, 255))
        elif op == "truncate":
            del payload[data.draw(st.integers(0, len(payload))) :]
        elif op == "insert":
            i = data.draw(st.integers(0, len(payload)))
            payload[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and payload:
            i = data.draw(st.integers(0, len(payload) - 1))
            del payload[i]
        elif op == "set_u32" and len(payload) >= 5:
            i = data.draw(st.integers(0, len(payload) - 4))
            payload[i : i + 4] = struct.pack("<I", data.draw(u32))
    _decode_any(bytes(payload))
    with contextlib.suppress(CodecError):
        decode_block_sync_frame(
            data.draw(st.integers(-2, 300)),
            data.draw(st.sampled_from([0, 0, 1, 0x8000])),
            bytes(payload),
        )


@settings(max_examples=200)
@given(msg=messages, data=st.data())
def test_truncations_are_rejected(msg: BlockSyncMessage, data: st.DataObject) -> None:
    payload = encode_block_sync(msg)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(Truncated):
        decode_block_sync(payload[:cut])


@settings(max_examples=200)
@given(msg=messages, extra=st.binary(min_size=1, max_size=16))
def test_trailing_bytes_are_rejected(msg: BlockSyncMessage, extra: bytes) -> None:
    with pytest.raises(TrailingBytes):
        decode_block_sync(encode_block_sync(msg) + extra)


def test_oversized_payload_rejected_first() -> None:
    # The whole-payload cap is checked before the tag: even an unknown tag reports OverCap.
    with pytest.raises(OverCap) as info:
        decode_block_sync(b"\xff" * (MAX_BS_MESSAGE_BYTES + 1))
    assert info.value.reason == "over_cap"
    with pytest.raises(OverCap):
        decode_block_sync_frame(3, 0, b"\x03" * (MAX_BS_MESSAGE_BYTES + 1))


def test_unknown_payload_tag_and_empty_payload() -> None:
    for tag in (0, 6, 255):
        with pytest.raises(UnknownMessage):
            decode_block_sync(bytes([tag]) + b"\x00" * 8)
    with pytest.raises(Truncated):
        decode_block_sync(b"")
    with pytest.raises(Truncated):
        decode_block_sync_frame(1, 0, b"")


# --- Status clamps and the servable range --------------------------------------------------


@pytest.mark.parametrize(
    ("advertised", "expected"), [(0, 1), (1, 1), (16, 16), (128, 128), (129, 128), (2**32 - 1, 128)]
)
def test_status_max_blocks_clamped_on_decode(advertised: int, expected: int) -> None:
    decoded = decode_block_sync(_status_payload(0, 1, advertised, 1, MIN_RESPONSE_BYTES))
    assert isinstance(decoded, Status)
    assert decoded.max_blocks_per_response == expected


@pytest.mark.parametrize(
    ("advertised", "expected"),
    [(0, 1), (1, 1), (32_000, 32_000), (32_768, 32_768), (32_769, 32_768), (2**32 - 1, 32_768)],
)
def test_status_max_inflight_clamped_on_decode(advertised: int, expected: int) -> None:
    decoded = decode_block_sync(_status_payload(0, 1, 1, advertised, MIN_RESPONSE_BYTES))
    assert isinstance(decoded, Status)
    assert decoded.max_inflight_requests == expected


@pytest.mark.parametrize(
    ("advertised", "expected"),
    [
        (0, 3 * MIB),
        (3 * MIB - 1, 3 * MIB),
        (3 * MIB, 3 * MIB),
        (32 * MIB, 32 * MIB),
        (32 * MIB + 1, 32 * MIB),
        (2**32 - 1, 32 * MIB),
    ],
)
def test_status_max_response_bytes_clamped_on_decode(advertised: int, expected: int) -> None:
    decoded = decode_block_sync(_status_payload(0, 1, 1, 1, advertised))
    assert isinstance(decoded, Status)
    assert decoded.max_response_bytes == expected


@pytest.mark.parametrize(
    ("blocks", "inflight", "response", "wire"),
    [
        (0, 0, 0, (1, 1, 3 * MIB)),
        (-5, -5, -5, (1, 1, 3 * MIB)),
        (10**12, 10**12, 10**12, (128, 32_768, 32 * MIB)),
        (7, 99, 5 * MIB, (7, 99, 5 * MIB)),
    ],
)
def test_status_caps_clamped_on_encode(
    blocks: int, inflight: int, response: int, wire: tuple[int, int, int]
) -> None:
    payload = encode_block_sync(Status(0, 0, ZERO_HASH, blocks, inflight, response))
    assert struct.unpack_from("<III", payload, 1 + 4 + 4 + 32) == wire


def test_clamp_helpers() -> None:
    assert [clamp_max_blocks(v) for v in (-1, 0, 1, 128, 129)] == [1, 1, 1, 128, 128]
    assert [clamp_max_inflight(v) for v in (0, 1, 32_768, 32_769)] == [1, 1, 32_768, 32_768]
    assert clamp_max_response_bytes(0) == MIN_RESPONSE_BYTES
    assert clamp_max_response_bytes(MIN_RESPONSE_BYTES + 1) == MIN_RESPONSE_BYTES + 1
    assert clamp_max_response_bytes(10**10) == MAX_RESPONSE_BYTES


def test_status_low_above_high_is_not_a_codec_error() -> None:
    # invalid_status is record-only policy in the routine, not a decode failure.
    status = Status(servable_low=9, servable_high=5, tip_hash=ZERO_HASH)
    decoded = decode_block_sync(encode_block_sync(status))
    assert decoded == status
    assert isinstance(decoded, Status)
    assert not decoded.has_valid_range
    assert not decoded.is_empty_range


def test_status_empty_range_convention() -> None:
    empty = Status(bs.EMPTY_SERVABLE_LOW, bs.EMPTY_SERVABLE_HIGH, ZERO_HASH)
    assert (empty.servable_low, empty.servable_high) == (1, 0)
    assert empty.is_empty_range
    assert empty.has_valid_range
    assert decode_block_sync(encode_block_sync(empty)) == empty
    one = Status(0, 0, ZERO_HASH)
    assert one.has_valid_range
    assert not one.is_empty_range


@pytest.mark.parametrize("tip_hash", [b"", b"\x00" * 31, b"\x00" * 33])
def test_status_bad_hash_length_rejected_on_encode(tip_hash: bytes) -> None:
    with pytest.raises(InvalidValue):
        encode_block_sync(Status(0, 0, tip_hash))


@pytest.mark.parametrize(("low", "high"), [(-1, 0), (0, 2**32)])
def test_status_heights_must_be_u32_on_encode(low: int, high: int) -> None:
    with pytest.raises(InvalidValue):
        encode_block_sync(Status(low, high, ZERO_HASH))


# --- request counts (GetBlocks, RangeUnavailable) and BlocksDone ---------------------------


@pytest.mark.parametrize("tag", [2, 5])
def test_request_count_zero_rejected(tag: int) -> None:
    with pytest.raises(ZeroBlockRequestCount) as info:
        decode_block_sync(bytes([tag]) + struct.pack("<II", 0, 0))
    assert info.value.reason == "zero_block_request_count"


@pytest.mark.parametrize("tag", [2, 5])
@pytest.mark.parametrize("count", [129, 0xFFFF_FFFF])
def test_request_count_over_limit_rejected(tag: int, count: int) -> None:
    with pytest.raises(BlockCountLimit) as info:
        decode_block_sync(bytes([tag]) + struct.pack("<II", 0, count))
    assert info.value.reason == "block_count_limit"


@pytest.mark.parametrize("count", [0, 129, -1])
def test_request_count_rejected_on_encode(count: int) -> None:
    expected = ZeroBlockRequestCount if count == 0 else BlockCountLimit
    with pytest.raises(expected):
        encode_block_sync(GetBlocks(0, count))
    with pytest.raises(expected):
        encode_block_sync(RangeUnavailable(0, count))


def test_request_count_bounds_accepted() -> None:
    for count in (1, MAX_BLOCKS_PER_REQUEST):
        for msg in (GetBlocks(3, count), RangeUnavailable(3, count)):
            assert decode_block_sync(encode_block_sync(msg)) == msg


def test_blocks_done_returned_bounds() -> None:
    for returned in (0, 1, MAX_BLOCKS_PER_REQUEST):
        msg = BlocksDone(4, returned)
        assert decode_block_sync(encode_block_sync(msg)) == msg
    with pytest.raises(BlockCountLimit):
        decode_block_sync(b"\x04" + struct.pack("<II", 4, 129))
    with pytest.raises(BlockCountLimit):
        encode_block_sync(BlocksDone(4, 129))
    with pytest.raises(BlockCountLimit):
        encode_block_sync(BlocksDone(4, -1))


@pytest.mark.parametrize(
    "msg", [GetBlocks(2**32, 1), BlocksDone(-1, 0), RangeUnavailable(2**32, 1)]
)
def test_start_height_must_be_u32_on_encode(msg: BlockSyncMessage) -> None:
    with pytest.raises(InvalidValue):
        encode_block_sync(msg)


def test_clamp_request_count() -> None:
    assert clamp_request_count(100, 16) == 16
    assert clamp_request_count(5, 16) == 5
    assert clamp_request_count(0, 16) == 1  # never a zero request
    assert clamp_request_count(-3, 16) == 1
    assert clamp_request_count(500, 0) == 1  # a peer max of 0 reads as 1
    assert clamp_request_count(500, 10**6) == MAX_BLOCKS_PER_REQUEST


@settings(max_examples=200)
@given(desired=st.integers(-10, 10_000), peer_max=st.integers(-10, 10**10))
def test_clamped_request_always_encodes(desired: int, peer_max: int) -> None:
    count = clamp_request_count(desired, peer_max)
    assert 1 <= count <= min(MAX_BLOCKS_PER_REQUEST, max(1, desired), clamp_max_blocks(peer_max))
    assert decode_block_sync(encode_block_sync(GetBlocks(0, count))) == GetBlocks(0, count)


# --- Block bodies ----------------------------------------------------------------------------


def _block_payload(body_len: int, body: bytes = b"") -> bytes:
    return b"\x03" + b"\x00" * HB + struct.pack("<I", body_len) + body


def test_block_at_consensus_cap_round_trips() -> None:
    block = Block(header=b"\x01" * HB, body=b"\x02" * MAX_BLOCK_BODY_BYTES)
    payload = encode_block_sync(block)
    assert len(payload) == BLOCK_OVERHEAD_BYTES + MAX_BLOCK_BODY_BYTES
    assert decode_block_sync(payload) == block


def test_block_above_consensus_cap_still_decodes() -> None:
    # Classified by the node (invalid_block, recorded), not the codec (malformed, disconnect).
    block = Block(header=b"\x01" * HB, body=b"\x02" * (MAX_BLOCK_BODY_BYTES + 1))
    decoded = decode_block_sync(encode_block_sync(block))
    assert decoded == block
    assert isinstance(decoded, Block)
    assert len(decoded.body) > MAX_BLOCK_BODY_BYTES


def test_block_largest_decodable_body() -> None:
    block = Block(header=b"\x00" * HB, body=b"\x01" * MAX_DECODABLE_BODY_BYTES)
    payload = encode_block_sync(block)
    assert len(payload) == MAX_BS_MESSAGE_BYTES
    assert decode_block_sync(payload) == block
    with pytest.raises(BlockBodyLimit) as info:
        encode_block_sync(Block(header=b"\x00" * HB, body=b"\x01" * (MAX_DECODABLE_BODY_BYTES + 1)))
    assert info.value.reason == "block_body_limit"


@pytest.mark.parametrize("body_len", [MAX_DECODABLE_BODY_BYTES + 1, 0xFFFF_FFFF])
def test_block_body_len_over_cap_rejected_before_reading(body_len: int) -> None:
    # Only the length is present: the cap is checked before the body would be sliced.
    with pytest.raises(BlockBodyLimit):
        decode_block_sync(_block_payload(body_len))


def test_block_body_len_not_backed_by_bytes() -> None:
    with pytest.raises(Truncated):
        decode_block_sync(_block_payload(10, b"\x00" * 9))
    with pytest.raises(TrailingBytes):
        decode_block_sync(_block_payload(10, b"\x00" * 11))
    assert decode_block_sync(_block_payload(0)) == Block(header=b"\x00" * HB, body=b"")


@pytest.mark.parametrize("header_len", [0, HB - 1, HB + 1])
def test_block_header_must_be_89_bytes_on_encode(header_len: int) -> None:
    with pytest.raises(InvalidValue):
        encode_block_sync(Block(header=b"\x00" * header_len, body=b""))


def test_block_wire_bytes() -> None:
    payload = encode_block_sync(Block(header=b"\x00" * HB, body=b"\x01" * 100))
    assert block_wire_bytes(len(payload)) == len(payload) - 1 == HB + 4 + 100
    assert block_wire_bytes(BLOCK_OVERHEAD_BYTES) == HB + 4
    assert block_wire_bytes(MAX_BS_MESSAGE_BYTES) == MAX_BS_MESSAGE_BYTES - 1
    for impossible in (-1, 0, 1, BLOCK_OVERHEAD_BYTES - 1, MAX_BS_MESSAGE_BYTES + 1):
        with pytest.raises(InvalidValue):
            block_wire_bytes(impossible)


# --- frame envelope ------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [1, 0x8000, 0xFFFF])
def test_frame_flags_rejected(flags: int) -> None:
    with pytest.raises(UnsupportedFlags) as info:
        check_block_sync_frame(1, flags)
    assert info.value.reason == "unsupported_flags"
    with pytest.raises(UnsupportedFlags):
        decode_block_sync_frame(2, flags, encode_block_sync(GetBlocks(0, 1)))


def test_frame_message_type_must_match_tag() -> None:
    payload = encode_block_sync(GetBlocks(0, 1))
    with pytest.raises(MismatchedFrameMessageType) as info:
        decode_block_sync_frame(1, 0, payload)
    assert info.value.reason == "mismatched_frame_message_type"
    for message_type in (-1, 0x100, 0x102):
        with pytest.raises(MismatchedFrameMessageType):
            check_block_sync_frame(message_type, 0)
    assert decode_block_sync_frame(2, 0, payload) == GetBlocks(0, 1)


@pytest.mark.parametrize("message_type", [0, 6, 7, 255])
def test_frame_unknown_message_type(message_type: int) -> None:
    with pytest.raises(UnknownMessage):
        check_block_sync_frame(message_type, 0)


@pytest.mark.parametrize("message_type", [1, 2, 3, 4, 5])
def test_frame_known_message_types_pass(message_type: int) -> None:
    check_block_sync_frame(message_type, 0)
