"""Multiplexer records, stream prelude, credit, close and ping codecs."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node_core.protocol.errors import (
    BadMagic,
    CodecError,
    InvalidFlag,
    InvalidValue,
    OverCap,
    TrailingBytes,
    Truncated,
    UnknownMessage,
)
from node_core.protocol.limits import (
    MAX_CLOSE_REASON_BYTES,
    MAX_MUX_RECORD_BYTES,
    MUX_HEADER_BYTES,
    STREAM_PRELUDE_MAGIC,
)
from node_core.protocol.mux import (
    CloseInfo,
    RecordHeader,
    RecordType,
    StreamPrelude,
    decode_close,
    decode_credit,
    decode_ping,
    decode_prelude,
    decode_record_header,
    encode_close,
    encode_credit,
    encode_ping,
    encode_prelude,
    encode_record,
    encode_record_header,
)

U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFF_FFFF)
U64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
printable_ascii = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    min_size=1,
    max_size=MAX_CLOSE_REASON_BYTES,
)
prelude_st = st.builds(
    StreamPrelude,
    kind=U16,
    version=U16,
    max_frame_bytes=st.integers(1, 0xFFFF_FFFF),
    request_id=st.none() | U64,
)
VALID_TYPES = {int(t) for t in RecordType}


# --- records -------------------------------------------------------------------------------


@given(st.sampled_from(list(RecordType)), U32, st.binary(max_size=512))
def test_record_round_trip(rtype: RecordType, stream_id: int, payload: bytes) -> None:
    wire = encode_record(rtype, stream_id, payload)
    assert len(wire) == MUX_HEADER_BYTES + len(payload)
    header = decode_record_header(wire[:MUX_HEADER_BYTES])
    assert header == RecordHeader(rtype, stream_id, len(payload))
    assert wire[MUX_HEADER_BYTES:] == payload


def test_record_header_layout_is_little_endian() -> None:
    assert encode_record_header(RecordType.DATA, 0x01020304, 0x0A0B) == (
        b"\x02" + b"\x04\x03\x02\x01" + b"\x0b\x0a\x00\x00"
    )


@pytest.mark.parametrize("rtype", [0, 8, 100, 255])
def test_unknown_record_type_rejected(rtype: int) -> None:
    with pytest.raises(UnknownMessage):
        decode_record_header(struct.pack("<BII", rtype, 1, 0))


def test_record_length_over_cap_rejected_from_header() -> None:
    assert decode_record_header(
        encode_record_header(RecordType.DATA, 3, MAX_MUX_RECORD_BYTES)
    ) == RecordHeader(RecordType.DATA, 3, MAX_MUX_RECORD_BYTES)
    for length in (MAX_MUX_RECORD_BYTES + 1, 0xFFFF_FFFF):
        with pytest.raises(OverCap):
            decode_record_header(encode_record_header(RecordType.DATA, 3, length))


def test_encode_record_refuses_over_cap() -> None:
    with pytest.raises(OverCap):
        encode_record(RecordType.DATA, 1, b"\x00" * (MAX_MUX_RECORD_BYTES + 1))


@pytest.mark.parametrize("n", [0, 1, MUX_HEADER_BYTES - 1, MUX_HEADER_BYTES + 1])
def test_record_header_needs_exactly_nine_bytes(n: int) -> None:
    with pytest.raises(CodecError):
        decode_record_header(b"\x02" * n)


@settings(max_examples=300)
@given(st.binary(min_size=MUX_HEADER_BYTES, max_size=MUX_HEADER_BYTES))
def test_record_header_arbitrary_bytes(data: bytes) -> None:
    rtype, stream_id, length = struct.unpack("<BII", data)
    try:
        header = decode_record_header(data)
    except UnknownMessage:
        assert rtype not in VALID_TYPES
        return
    except OverCap:
        assert length > MAX_MUX_RECORD_BYTES
        return
    assert header == RecordHeader(RecordType(rtype), stream_id, length)


# --- prelude -------------------------------------------------------------------------------


@given(prelude_st)
def test_prelude_round_trip(p: StreamPrelude) -> None:
    wire = encode_prelude(p)
    assert wire.startswith(STREAM_PRELUDE_MAGIC)
    assert len(wire) == (4 + 2 + 2 + 1 + 4) + (8 if p.request_id is not None else 0)
    assert decode_prelude(wire) == p


def test_prelude_layout() -> None:
    assert encode_prelude(StreamPrelude(5, 1, 0x100)) == (
        b"ZKST" + b"\x05\x00" + b"\x01\x00" + b"\x00" + b"\x00\x01\x00\x00"
    )
    with_request = encode_prelude(StreamPrelude(6, 2, 10, request_id=7))
    assert with_request == (
        b"ZKST" + b"\x06\x00\x02\x00" + b"\x01" + struct.pack("<Q", 7) + struct.pack("<I", 10)
    )
    assert decode_prelude(with_request).request_id == 7
    assert decode_prelude(encode_prelude(StreamPrelude(6, 2, 10, request_id=0))).request_id == 0


@given(prelude_st, st.binary(min_size=1, max_size=8))
def test_prelude_trailing_bytes_rejected(p: StreamPrelude, extra: bytes) -> None:
    with pytest.raises(TrailingBytes):
        decode_prelude(encode_prelude(p) + extra)


@given(prelude_st, st.data())
def test_prelude_truncation_rejected(p: StreamPrelude, data: st.DataObject) -> None:
    wire = encode_prelude(p)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(CodecError):
        decode_prelude(wire[:cut])


def test_prelude_bad_magic() -> None:
    wire = bytearray(encode_prelude(StreamPrelude(4, 1, 100)))
    wire[0:4] = b"ZKSX"
    with pytest.raises(BadMagic):
        decode_prelude(bytes(wire))


@pytest.mark.parametrize("flag", [2, 3, 0x80, 0xFF])
def test_prelude_invalid_flag_byte(flag: int) -> None:
    wire = bytearray(encode_prelude(StreamPrelude(4, 1, 100)))
    wire[8] = flag  # the request-id flag follows magic(4) kind(2) version(2)
    with pytest.raises(InvalidFlag):
        decode_prelude(bytes(wire))


def test_prelude_zero_max_frame_rejected() -> None:
    wire = b"ZKST" + struct.pack("<HHB", 4, 1, 0) + struct.pack("<I", 0)
    with pytest.raises(InvalidValue):
        decode_prelude(wire)


# --- credit, close, ping -------------------------------------------------------------------


@given(st.integers(1, 0xFFFF_FFFF))
def test_credit_round_trip(n: int) -> None:
    assert decode_credit(encode_credit(n)) == n


def test_credit_zero_rejected() -> None:
    with pytest.raises(InvalidValue):
        decode_credit(struct.pack("<I", 0))
    for bad in (0, -1):
        with pytest.raises(InvalidValue):
            encode_credit(bad)


def test_credit_wrong_size_rejected() -> None:
    with pytest.raises(Truncated):
        decode_credit(b"\x01\x00\x00")
    with pytest.raises(TrailingBytes):
        decode_credit(b"\x01\x00\x00\x00\x00")


@given(U16, printable_ascii)
def test_close_round_trip(code: int, reason: str) -> None:
    info = CloseInfo(code, reason)
    assert decode_close(encode_close(info)) == info


def test_close_encode_normalises_reason() -> None:
    assert decode_close(encode_close(CloseInfo(1, ""))) == CloseInfo(1, "unspecified")
    long = "x" * (MAX_CLOSE_REASON_BYTES + 50)
    assert decode_close(encode_close(CloseInfo(4, long))) == CloseInfo(
        4, "x" * MAX_CLOSE_REASON_BYTES
    )


@pytest.mark.parametrize(
    "reason",
    [b"", b"\xff\xfe", b"tab\there", b"x" * (MAX_CLOSE_REASON_BYTES + 1)],
)
def test_close_bad_reason_rejected(reason: bytes) -> None:
    with pytest.raises(CodecError):
        decode_close(struct.pack("<HH", 0, len(reason)) + reason)


def test_close_trailing_bytes_rejected() -> None:
    with pytest.raises(TrailingBytes):
        decode_close(encode_close(CloseInfo(0, "bye")) + b"\x00")


@given(U64)
def test_ping_round_trip(nonce: int) -> None:
    wire = encode_ping(nonce)
    assert len(wire) == 8
    assert decode_ping(wire) == nonce


def test_ping_wrong_size_rejected() -> None:
    with pytest.raises(Truncated):
        decode_ping(b"\x00" * 7)
    with pytest.raises(TrailingBytes):
        decode_ping(b"\x00" * 9)


# --- hostile bytes -------------------------------------------------------------------------

DECODERS: dict[str, Callable[[bytes], object]] = {
    "prelude": decode_prelude,
    "close": decode_close,
    "credit": decode_credit,
    "ping": decode_ping,
}


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=300)
@given(data=st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_codec_error(name: str, data: bytes) -> None:
    with contextlib.suppress(CodecError):
        DECODERS[name](data)


@settings(max_examples=300)
@given(st.binary(max_size=24))
def test_arbitrary_prelude_body_raises_only_codec_error(body: bytes) -> None:
    # Past the magic, so the field parsers themselves see the hostile bytes.
    try:
        p = decode_prelude(STREAM_PRELUDE_MAGIC + body)
    except CodecError:
        return
    assert encode_prelude(p) == STREAM_PRELUDE_MAGIC + body


@settings(max_examples=300)
@given(st.binary(min_size=2, max_size=2), st.binary(max_size=300))
def test_arbitrary_close_body_raises_only_codec_error(code: bytes, rest: bytes) -> None:
    data = code + struct.pack("<H", len(rest)) + rest
    try:
        info = decode_close(data)
    except CodecError:
        return
    assert encode_close(info) == data
