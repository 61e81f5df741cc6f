"""Header-sync payload codec: round trips, hostile bytes, clamps, caps and the byte budget."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node_core.protocol import header_sync as hs
from node_core.protocol.errors import (
    CodecError,
    InvalidValue,
    OverCap,
    TrailingBytes,
    Truncated,
    UnknownMessage,
)
from node_core.protocol.header_sync import (
    HEADER_WIRE_BYTES,
    MAX_BLOCK_BODY_BYTES,
    MAX_HEADERS_PER_RESPONSE,
    MAX_HS_MESSAGE_BYTES,
    ExpectedRange,
    GetHeaders,
    HeaderCountLimit,
    Headers,
    HeaderSyncMessage,
    MismatchedFrameMessageType,
    NewBlock,
    Status,
    UnsolicitedHeaders,
    UnsupportedFlags,
    ZeroHeaderRequestCount,
    clamp_request_count,
    decode_header_sync,
    decode_header_sync_frame,
    decode_headers,
    encode_header_sync,
    header_count_by_byte_budget,
    inbound_serving_limit,
    max_new_block_body_bytes,
)

HB = HEADER_WIRE_BYTES

# --- strategies ----------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
hashes = st.binary(min_size=32, max_size=32)
header_blobs = st.binary(min_size=HB, max_size=HB)
request_counts = st.integers(1, MAX_HEADERS_PER_RESPONSE)

statuses = st.builds(
    Status,
    tip_height=u32,
    tip_hash=hashes,
    anchor_height=u32,
    max_headers_per_response=request_counts,
    max_inflight_requests=st.integers(1, 16),
)
get_headers = st.builds(GetHeaders, start_height=u32, count=request_counts)


@st.composite
def headers_msgs(draw: st.DrawFn, max_count: int = 40) -> Headers:
    n = draw(st.integers(0, max_count))
    blobs = draw(st.lists(header_blobs, min_size=n, max_size=n))
    sizes = draw(st.lists(u32, min_size=n, max_size=n))
    return Headers(headers=tuple(blobs), body_sizes=tuple(sizes))


new_blocks = st.builds(NewBlock, header=header_blobs, body=st.binary(max_size=512))
messages: st.SearchStrategy[HeaderSyncMessage] = st.one_of(
    statuses, get_headers, headers_msgs(), new_blocks
)


def _expect_for(msg: HeaderSyncMessage) -> ExpectedRange | None:
    """A matching expectation for a Headers message (any other message needs none)."""
    if isinstance(msg, Headers):
        return ExpectedRange(start_height=7, count=max(1, len(msg.headers)))
    return None


def _decode_any(payload: bytes, expected: ExpectedRange | None, peer_max: int) -> None:
    """Decode through both payload entry points; only CodecError may escape."""
    with contextlib.suppress(CodecError):
        decode_header_sync(payload, expected=expected, peer_max=peer_max)
    with contextlib.suppress(CodecError):
        decode_headers(payload, expected or ExpectedRange(0, 4000), peer_max)


# --- round trips ---------------------------------------------------------------------------


@settings(max_examples=300)
@given(msg=messages)
def test_round_trip(msg: HeaderSyncMessage) -> None:
    payload = encode_header_sync(msg)
    assert len(payload) <= MAX_HS_MESSAGE_BYTES
    assert decode_header_sync(payload, expected=_expect_for(msg)) == msg
    assert decode_header_sync_frame(payload[0], 0, payload, expected=_expect_for(msg)) == msg


@settings(max_examples=100)
@given(msg=headers_msgs(), extra=st.integers(0, 100))
def test_headers_round_trip_through_decode_headers(msg: Headers, extra: int) -> None:
    expected = ExpectedRange(start_height=0, count=min(4000, max(1, len(msg.headers)) + extra))
    assert decode_headers(encode_header_sync(msg), expected) == msg


@given(
    blobs=st.lists(st.binary(min_size=177, max_size=177), max_size=5),
    sizes=st.data(),
)
def test_other_header_sizes_round_trip(blobs: list[bytes], sizes: st.DataObject) -> None:
    hints = sizes.draw(st.lists(u32, min_size=len(blobs), max_size=len(blobs)))
    msg = Headers(headers=tuple(blobs), body_sizes=tuple(hints))
    payload = encode_header_sync(msg, header_bytes=177)
    assert len(payload) == 5 + len(blobs) * 181
    expected = ExpectedRange(0, max(1, len(blobs)))
    assert decode_headers(payload, expected, header_bytes=177) == msg
    block = NewBlock(header=b"\x01" * 177, body=b"xyz")
    enc = encode_header_sync(block, header_bytes=177)
    assert decode_header_sync(enc, header_bytes=177) == block


def test_exact_layouts() -> None:
    status = Status(1, b"\xaa" * 32, 2, 1000, 10)
    assert encode_header_sync(status) == (
        b"\x01" + struct.pack("<I", 1) + b"\xaa" * 32 + struct.pack("<IIH", 2, 1000, 10)
    )
    assert encode_header_sync(GetHeaders(5, 6)) == b"\x02" + struct.pack("<II", 5, 6)
    headers = Headers(headers=(b"\x01" * HB, b"\x02" * HB), body_sizes=(0, 9))
    assert encode_header_sync(headers) == (
        b"\x03"
        + struct.pack("<I", 2)
        + b"\x01" * HB
        + struct.pack("<I", 0)
        + b"\x02" * HB
        + struct.pack("<I", 9)
    )
    block = NewBlock(header=b"\x03" * HB, body=b"body")
    assert encode_header_sync(block) == b"\x04" + b"\x03" * HB + struct.pack("<I", 4) + b"body"


def test_empty_headers_response_is_valid() -> None:
    empty = Headers(headers=(), body_sizes=())
    assert decode_headers(encode_header_sync(empty), ExpectedRange(0, 10)) == empty


# --- hostile bytes -------------------------------------------------------------------------


@settings(max_examples=500)
@given(
    data=st.binary(max_size=1024),
    expect=st.none() | st.builds(ExpectedRange, u32, request_counts),
    peer_max=st.integers(-5, 5000),
)
def test_arbitrary_bytes_only_raise_codec_errors(
    data: bytes, expect: ExpectedRange | None, peer_max: int
) -> None:
    _decode_any(data, expect, peer_max)


@settings(max_examples=300)
@given(data=st.binary(max_size=1024), tag=st.integers(1, 4), expect_count=request_counts)
def test_arbitrary_bodies_after_a_valid_tag(data: bytes, tag: int, expect_count: int) -> None:
    _decode_any(bytes([tag]) + data, ExpectedRange(0, expect_count), 4000)


@settings(max_examples=500)
@given(msg=messages, data=st.data())
def test_mutations_only_raise_codec_errors(msg: HeaderSyncMessage, data: st.DataObject) -> None:
    payload = bytearray(encode_header_sync(msg))
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
    expect = data.draw(st.none() | st.just(_expect_for(msg)))
    _decode_any(bytes(payload), expect, data.draw(st.integers(0, 5000)))
    with contextlib.suppress(CodecError):
        decode_header_sync_frame(
            data.draw(st.integers(0, 300)),
            data.draw(st.sampled_from([0, 0, 1, 0x8000])),
            bytes(payload),
            expected=expect,
        )


@settings(max_examples=200)
@given(msg=messages, data=st.data())
def test_truncations_are_rejected(msg: HeaderSyncMessage, data: st.DataObject) -> None:
    payload = encode_header_sync(msg)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(CodecError):
        decode_header_sync(payload[:cut], expected=_expect_for(msg))


@settings(max_examples=200)
@given(msg=messages, extra=st.binary(min_size=1, max_size=16))
def test_trailing_bytes_are_rejected(msg: HeaderSyncMessage, extra: bytes) -> None:
    payload = encode_header_sync(msg) + extra
    with pytest.raises(CodecError):
        decode_header_sync(payload, expected=_expect_for(msg))


@pytest.mark.parametrize(
    "msg",
    [
        Status(1, b"\x00" * 32, 0),
        GetHeaders(0, 1),
        NewBlock(header=b"\x00" * HB, body=b""),
    ],
)
def test_one_trailing_byte_is_trailing_bytes(msg: HeaderSyncMessage) -> None:
    with pytest.raises(TrailingBytes):
        decode_header_sync(encode_header_sync(msg) + b"\x00")


def test_trailing_byte_after_headers() -> None:
    payload = encode_header_sync(Headers((b"\x00" * HB,), (1,))) + b"\x00"
    with pytest.raises(TrailingBytes):
        decode_headers(payload, ExpectedRange(0, 1))


# --- Status clamps -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("advertised", "expected"),
    [(0, 1), (1, 1), (1000, 1000), (4000, 4000), (4001, 4000), (0xFFFF_FFFF, 4000)],
)
def test_status_max_headers_clamped_on_decode(advertised: int, expected: int) -> None:
    raw = b"\x01" + struct.pack("<I", 9) + b"\x00" * 32 + struct.pack("<IIH", 0, advertised, 4)
    decoded = decode_header_sync(raw)
    assert isinstance(decoded, Status)
    assert decoded.max_headers_per_response == expected


@pytest.mark.parametrize(
    ("advertised", "expected"), [(0, 1), (-3, 1), (4001, 4000), (10**12, 4000)]
)
def test_status_max_headers_clamped_on_encode(advertised: int, expected: int) -> None:
    payload = encode_header_sync(Status(0, b"\x00" * 32, 0, advertised, 1))
    assert struct.unpack_from("<I", payload, 1 + 4 + 32 + 4)[0] == expected


@pytest.mark.parametrize(
    ("advertised", "expected"), [(0, 1), (1, 1), (16, 16), (17, 16), (0xFFFF, 16)]
)
def test_status_max_inflight_clamped_on_decode(advertised: int, expected: int) -> None:
    payload = encode_header_sync(Status(0, b"\x00" * 32, 0, 1000, advertised))
    decoded = decode_header_sync(payload)
    assert isinstance(decoded, Status)
    assert decoded.max_inflight_requests == expected


def test_status_anchor_above_tip_is_not_a_codec_error() -> None:
    # InvalidStatus is record-only policy in the routine, not a decode failure.
    status = Status(tip_height=5, tip_hash=b"\x00" * 32, anchor_height=9)
    assert decode_header_sync(encode_header_sync(status)) == status


def test_status_bad_hash_length_rejected_on_encode() -> None:
    with pytest.raises(InvalidValue):
        encode_header_sync(Status(0, b"\x00" * 31, 0))


# --- GetHeaders counts ---------------------------------------------------------------------


def test_get_headers_count_zero_rejected() -> None:
    with pytest.raises(ZeroHeaderRequestCount) as info:
        decode_header_sync(b"\x02" + struct.pack("<II", 0, 0))
    assert info.value.reason == "zero_header_request_count"
    with pytest.raises(ZeroHeaderRequestCount):
        encode_header_sync(GetHeaders(0, 0))


@pytest.mark.parametrize("count", [4001, 0xFFFF_FFFF])
def test_get_headers_count_over_limit_rejected(count: int) -> None:
    with pytest.raises(HeaderCountLimit) as info:
        decode_header_sync(b"\x02" + struct.pack("<II", 0, count))
    assert info.value.reason == "header_count_limit"
    with pytest.raises(HeaderCountLimit):
        encode_header_sync(GetHeaders(0, count))


def test_get_headers_bounds_accepted() -> None:
    for count in (1, 4000):
        assert decode_header_sync(encode_header_sync(GetHeaders(3, count))) == GetHeaders(3, count)


def test_get_headers_expectation() -> None:
    assert GetHeaders(10, 20).expectation() == ExpectedRange(10, 20)


@pytest.mark.parametrize(("start", "count"), [(0, 0), (0, 4001), (-1, 1), (2**32, 1)])
def test_expected_range_rejects_impossible_requests(start: int, count: int) -> None:
    with pytest.raises(CodecError):
        ExpectedRange(start, count)


# --- Headers correlation and caps ----------------------------------------------------------


def _headers_payload(n: int, header_bytes: int = HB) -> bytes:
    return b"\x03" + struct.pack("<I", n) + (b"\x00" * header_bytes + b"\x00" * 4) * n


def test_unsolicited_headers_rejected() -> None:
    with pytest.raises(UnsolicitedHeaders) as info:
        decode_header_sync(_headers_payload(1))
    assert info.value.reason == "unsolicited_headers"
    # Even an empty or malformed Headers body is unsolicited first: nothing is read.
    with pytest.raises(UnsolicitedHeaders):
        decode_header_sync(b"\x03")
    with pytest.raises(UnsolicitedHeaders):
        decode_header_sync_frame(3, 0, _headers_payload(0))


def test_more_headers_than_requested_rejected() -> None:
    assert len(decode_headers(_headers_payload(5), ExpectedRange(0, 5)).headers) == 5
    with pytest.raises(HeaderCountLimit):
        decode_headers(_headers_payload(6), ExpectedRange(0, 5))
    with pytest.raises(HeaderCountLimit):
        decode_header_sync(_headers_payload(6), expected=ExpectedRange(0, 5))


def test_more_headers_than_peer_max_rejected() -> None:
    assert len(decode_headers(_headers_payload(3), ExpectedRange(0, 10), peer_max=3).headers) == 3
    with pytest.raises(HeaderCountLimit):
        decode_headers(_headers_payload(4), ExpectedRange(0, 10), peer_max=3)
    # peer_max is clamped like the Status field: 0 means 1, not "nothing allowed".
    assert len(decode_headers(_headers_payload(1), ExpectedRange(0, 10), peer_max=0).headers) == 1


def test_huge_declared_count_rejected_before_allocation() -> None:
    with pytest.raises(HeaderCountLimit):
        decode_headers(b"\x03" + struct.pack("<I", 0xFFFF_FFFF), ExpectedRange(0, 4000))
    # Within the cap but not backed by bytes: Truncated, before any header is built.
    with pytest.raises(Truncated):
        decode_headers(b"\x03" + struct.pack("<I", 4000), ExpectedRange(0, 4000))


def test_wrong_header_length_rejected() -> None:
    # One byte short per header: the declared count no longer fits the payload.
    with pytest.raises(Truncated):
        decode_headers(_headers_payload(2, HB - 1), ExpectedRange(0, 2))
    # One byte long: the single header decodes but a byte is left over.
    with pytest.raises(TrailingBytes):
        decode_headers(_headers_payload(1, HB + 1), ExpectedRange(0, 1))
    with pytest.raises(InvalidValue):
        encode_header_sync(Headers((b"\x00" * (HB - 1),), (0,)))
    with pytest.raises(InvalidValue):
        encode_header_sync(NewBlock(header=b"\x00" * (HB + 1), body=b""))


def test_headers_encode_rejects_inconsistent_or_oversized() -> None:
    with pytest.raises(InvalidValue):
        encode_header_sync(Headers((b"\x00" * HB,), ()))
    n = MAX_HEADERS_PER_RESPONSE + 1
    with pytest.raises(HeaderCountLimit):
        encode_header_sync(Headers((b"\x00" * HB,) * n, (0,) * n))


def test_decode_headers_requires_headers_tag() -> None:
    with pytest.raises(UnknownMessage):
        decode_headers(encode_header_sync(GetHeaders(0, 1)), ExpectedRange(0, 1))


def test_max_headers_response_fits_the_message_cap() -> None:
    n = MAX_HEADERS_PER_RESPONSE
    msg = Headers((b"\x11" * HB,) * n, tuple(range(n)))
    assert decode_headers(encode_header_sync(msg), ExpectedRange(0, n)) == msg


# --- NewBlock ------------------------------------------------------------------------------


def test_new_block_body_cap() -> None:
    too_long = b"\x04" + b"\x00" * HB + struct.pack("<I", MAX_BLOCK_BODY_BYTES + 1)
    with pytest.raises(OverCap):
        decode_header_sync(too_long)
    with pytest.raises(OverCap):
        encode_header_sync(NewBlock(header=b"\x00" * HB, body=b"\x00" * (MAX_BLOCK_BODY_BYTES + 1)))


def test_new_block_largest_body_that_fits() -> None:
    largest = max_new_block_body_bytes()
    assert largest == MAX_HS_MESSAGE_BYTES - 1 - HB - 4
    block = NewBlock(header=b"\x00" * HB, body=b"\x01" * largest)
    payload = encode_header_sync(block)
    assert len(payload) == MAX_HS_MESSAGE_BYTES
    assert decode_header_sync(payload) == block
    # One byte more is over the whole-message cap, though under the body cap.
    with pytest.raises(OverCap):
        encode_header_sync(NewBlock(header=b"\x00" * HB, body=b"\x01" * (largest + 1)))


def test_oversized_payload_rejected_first() -> None:
    # The whole-payload cap is checked before the tag: even an unknown tag reports OverCap.
    with pytest.raises(OverCap):
        decode_header_sync(b"\xff" * (MAX_HS_MESSAGE_BYTES + 1))


# --- frame envelope ------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [1, 0x8000, 0xFFFF])
def test_frame_flags_rejected(flags: int) -> None:
    with pytest.raises(UnsupportedFlags) as info:
        hs.check_header_sync_frame(1, flags)
    assert info.value.reason == "unsupported_flags"


def test_frame_message_type_must_match_tag() -> None:
    payload = encode_header_sync(GetHeaders(0, 1))
    with pytest.raises(MismatchedFrameMessageType) as info:
        decode_header_sync_frame(1, 0, payload)
    assert info.value.reason == "mismatched_frame_message_type"
    with pytest.raises(MismatchedFrameMessageType):
        hs.check_header_sync_frame(0x102, 0)
    assert decode_header_sync_frame(2, 0, payload) == GetHeaders(0, 1)


@pytest.mark.parametrize("message_type", [0, 5, 255])
def test_frame_unknown_message_type(message_type: int) -> None:
    with pytest.raises(UnknownMessage):
        hs.check_header_sync_frame(message_type, 0)


def test_unknown_payload_tag_and_empty_payload() -> None:
    with pytest.raises(UnknownMessage):
        decode_header_sync(b"\x05")
    with pytest.raises(Truncated):
        decode_header_sync(b"")
    with pytest.raises(Truncated):
        decode_header_sync_frame(1, 0, b"")


# --- byte budget and request clamps --------------------------------------------------------


def test_byte_budget_examples() -> None:
    per = HB + 4  # 93
    assert header_count_by_byte_budget(8 + 5 + per * 10) == 10
    assert header_count_by_byte_budget(8 + 5 + per * 10 - 1) == 9
    assert header_count_by_byte_budget(8 + 5 + per * 10 + per - 1) == 10
    # A frame cap too small for one header still yields 1 (never a zero request).
    assert header_count_by_byte_budget(8) == 1
    assert header_count_by_byte_budget(0) == 1
    # The full stream frame cap (2 MiB + 8) allows 22 549 raw, clamped to 4000.
    assert (MAX_HS_MESSAGE_BYTES - 5) // per == 22_549
    assert header_count_by_byte_budget(hs.HS_FRAME_CAP) == 4000
    # The payload budget is min(2 MiB, frame_cap - 8): a larger frame cap does not help.
    assert header_count_by_byte_budget(64 * 1024 * 1024, header_bytes=1487) == (
        (MAX_HS_MESSAGE_BYTES - 5) // (1487 + 4)
    )
    assert header_count_by_byte_budget(64 * 1024 * 1024, header_bytes=1487) == 1406
    assert header_count_by_byte_budget(hs.HS_FRAME_CAP, header_bytes=177) == 4000


def test_clamp_request_count_examples() -> None:
    cap = hs.HS_FRAME_CAP
    assert clamp_request_count(1000, 4000, cap) == 1000
    assert clamp_request_count(5000, 4000, cap) == 4000
    assert clamp_request_count(1000, 300, cap) == 300
    assert clamp_request_count(1000, 0, cap) == 1  # peer_max 0 clamps to 1
    assert clamp_request_count(1000, 99_999, cap) == 1000
    assert clamp_request_count(0, 4000, cap) == 1  # never a zero request
    assert clamp_request_count(1000, 4000, 8 + 5 + 96 * 10) == 10
    assert clamp_request_count(4000, 4000, cap, header_bytes=1487) == 1406
    assert inbound_serving_limit(1000, cap) == 1000
    assert inbound_serving_limit(9000, cap) == 4000
    assert inbound_serving_limit(1000, 8 + 5 + 96 * 7) == 7


@settings(max_examples=300)
@given(
    desired=st.integers(-10, 10_000),
    peer_max=st.integers(-10, 10_000),
    frame_cap=st.integers(0, 4 * MAX_HS_MESSAGE_BYTES),
    header_bytes=st.integers(1, 4096),
)
def test_clamped_request_always_fits_and_is_accepted(
    desired: int, peer_max: int, frame_cap: int, header_bytes: int
) -> None:
    count = clamp_request_count(desired, peer_max, frame_cap, header_bytes)
    assert 1 <= count <= MAX_HEADERS_PER_RESPONSE
    assert count <= max(1, desired)
    # A GetHeaders with the clamped count always encodes, and its full answer decodes.
    assert decode_header_sync(encode_header_sync(GetHeaders(0, count))) == GetHeaders(0, count)
    payload_budget = min(MAX_HS_MESSAGE_BYTES, frame_cap - 8)
    if payload_budget >= 5 + header_bytes + 4:
        assert 5 + count * (header_bytes + 4) <= payload_budget


def test_wire_header_size_is_the_chain_header_size() -> None:
    from node_core.chain.model import HEADER_BYTES

    assert HEADER_WIRE_BYTES == HEADER_BYTES
