"""Service frames: codec, incremental decoder, and the cap checked before the payload."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node_core.protocol.errors import CodecError, OverCap, TrailingBytes, Truncated
from node_core.protocol.frames import (
    Frame,
    FrameDecoder,
    FrameOversize,
    decode_frame,
    encode_frame,
    encode_frame_header,
)
from node_core.protocol.limits import FRAME_HEADER_BYTES

CAP = 300
U16 = st.integers(0, 0xFFFF)
frame_st = st.builds(Frame, message_type=U16, flags=U16, payload=st.binary(max_size=CAP))


def wire(frames: list[Frame]) -> bytes:
    return b"".join(encode_frame(f.message_type, f.flags, f.payload, CAP) for f in frames)


@given(frame_st)
def test_frame_round_trip(frame: Frame) -> None:
    data = encode_frame(frame.message_type, frame.flags, frame.payload, CAP)
    assert len(data) == frame.wire_size == FRAME_HEADER_BYTES + len(frame.payload)
    assert decode_frame(data, CAP) == frame


def test_frame_header_layout() -> None:
    assert encode_frame(0x0102, 0x0304, b"ab", CAP) == b"\x02\x01\x04\x03\x02\x00\x00\x00ab"
    assert encode_frame_header(1, 0, 5) == struct.pack("<HHI", 1, 0, 5)


def test_encode_refuses_over_cap() -> None:
    assert decode_frame(encode_frame(1, 0, b"x" * CAP, CAP), CAP).payload == b"x" * CAP
    with pytest.raises(FrameOversize):
        encode_frame(1, 0, b"x" * (CAP + 1), CAP)


@given(frame_st, st.binary(min_size=1, max_size=16))
def test_decode_frame_rejects_trailing_bytes(frame: Frame, extra: bytes) -> None:
    data = encode_frame(frame.message_type, frame.flags, frame.payload, CAP)
    with pytest.raises(TrailingBytes):
        decode_frame(data + extra, CAP)


@given(frame_st, st.data())
def test_decode_frame_rejects_truncation(frame: Frame, data: st.DataObject) -> None:
    encoded = encode_frame(frame.message_type, frame.flags, frame.payload, CAP)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(Truncated):
        decode_frame(encoded[:cut], CAP)


def test_decode_frame_checks_cap_before_payload() -> None:
    # Only the header is present: the declared length alone must be enough to refuse.
    header = encode_frame_header(1, 0, CAP + 1)
    with pytest.raises(FrameOversize) as info:
        decode_frame(header, CAP)
    assert info.value.declared == CAP + 1
    assert info.value.cap == CAP
    assert isinstance(info.value, OverCap)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_decode_frame_arbitrary_bytes_raise_only_codec_error(data: bytes) -> None:
    try:
        frame = decode_frame(data, 32)
    except CodecError:
        return
    assert encode_frame(frame.message_type, frame.flags, frame.payload, 32) == data


# --- incremental decoder -------------------------------------------------------------------


@settings(max_examples=200)
@given(st.lists(frame_st, max_size=8), st.data())
def test_decoder_any_chunking_yields_same_frames(frames: list[Frame], data: st.DataObject) -> None:
    stream = wire(frames)
    cuts = sorted(
        data.draw(st.lists(st.integers(0, len(stream)), max_size=max(0, len(stream) // 4 + 3)))
    )
    decoder = FrameDecoder(CAP)
    out: list[Frame] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out.extend(decoder.feed(stream[prev:cut]))
        prev = cut
    assert out == frames
    assert decoder.at_boundary
    assert decoder.buffered == 0


@given(st.lists(frame_st, min_size=1, max_size=4))
def test_decoder_byte_by_byte(frames: list[Frame]) -> None:
    stream = wire(frames)
    decoder = FrameDecoder(CAP)
    out: list[Frame] = []
    for i in range(len(stream)):
        out.extend(decoder.feed(memoryview(stream)[i : i + 1]))
    assert out == frames
    assert decoder.at_boundary


def test_decoder_rejects_oversize_as_soon_as_header_is_in() -> None:
    decoder = FrameDecoder(CAP)
    header = encode_frame_header(9, 0, CAP + 1)
    # Seven header bytes: nothing to decide yet.
    assert decoder.feed(header[:7]) == []
    assert not decoder.at_boundary
    # The eighth byte completes the header: refused before any payload byte is fed.
    with pytest.raises(FrameOversize) as info:
        decoder.feed(header[7:])
    assert info.value.declared == CAP + 1
    assert info.value.cap == CAP


def test_decoder_rejects_oversize_after_valid_frames_in_same_chunk() -> None:
    decoder = FrameDecoder(CAP)
    good = encode_frame(1, 0, b"ok", CAP)
    with pytest.raises(FrameOversize):
        decoder.feed(good + encode_frame_header(2, 0, 0xFFFF_FFFF))


def test_decoder_payload_at_cap_is_accepted() -> None:
    decoder = FrameDecoder(CAP)
    assert decoder.feed(encode_frame(3, 1, b"z" * CAP, CAP)) == [Frame(3, 1, b"z" * CAP)]


def test_decoder_at_boundary_tracks_partial_frames() -> None:
    decoder = FrameDecoder(CAP)
    assert decoder.at_boundary
    data = encode_frame(7, 0, b"hello", CAP)
    assert decoder.feed(data[:3]) == []
    assert not decoder.at_boundary  # partial header
    assert decoder.feed(data[3:8]) == []
    assert not decoder.at_boundary  # header complete, no payload yet
    assert decoder.feed(data[8:10]) == []
    assert not decoder.at_boundary  # mid-payload
    assert decoder.feed(data[10:]) == [Frame(7, 0, b"hello")]
    assert decoder.at_boundary


def test_decoder_empty_payload_frames() -> None:
    decoder = FrameDecoder(CAP)
    data = encode_frame(1, 0, b"", CAP) * 3
    assert decoder.feed(data) == [Frame(1, 0, b"")] * 3
    assert decoder.at_boundary
    assert decoder.feed(b"") == []
    assert decoder.at_boundary
