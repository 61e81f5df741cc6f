"""Cutting a byte stream into mux records (``node_core/protocol/record_split.py``).

No event loop and no socket: chunks are fed by hand. The header rules themselves (cap,
unknown type) are ``MuxState.receive_header``'s, so the splitter is driven by it here too.
"""

from __future__ import annotations

import random
import struct

import pytest

from node_core.protocol.limits import MAX_MUX_RECORD_BYTES, MUX_HEADER_BYTES, CloseCode
from node_core.protocol.mux import RecordHeader, RecordType, encode_record
from node_core.protocol.mux_state import MuxState, ProtocolViolation
from node_core.protocol.record_split import RecordSplitter


def rules() -> MuxState:
    return MuxState(
        initiator=False,
        lookup=lambda _kind: None,
        capabilities=0,
        max_open_streams=8,
        max_message_bytes=1 << 20,
        stream_open_rate=10.0,
        message_rate=100.0,
        idle_timeout=30.0,
        keepalive_interval=10.0,
        now=0.0,
    )


def splitter() -> RecordSplitter:
    return RecordSplitter(rules().receive_header)


def drain(split: RecordSplitter) -> list[tuple[RecordType, int, bytes]]:
    """Every complete record so far, payloads copied out."""
    out: list[tuple[RecordType, int, bytes]] = []
    while (got := split.next()) is not None:
        assert not isinstance(got, ProtocolViolation), got
        rec, payload = got
        assert len(payload) == rec.length
        out.append((rec.type, rec.stream_id, bytes(payload)))
    return out


def records(rng: random.Random, n: int) -> list[tuple[RecordType, int, bytes]]:
    sizes = [0, 1, 8, 9, 10, 1000, 65_536 + 8, MAX_MUX_RECORD_BYTES]
    return [
        (rng.choice(list(RecordType)), rng.randrange(1 << 32), rng.randbytes(rng.choice(sizes)))
        for _ in range(n)
    ]


def wire(recs: list[tuple[RecordType, int, bytes]]) -> bytes:
    return b"".join(encode_record(t, sid, payload) for t, sid, payload in recs)


@pytest.mark.parametrize("seed", range(8))
def test_any_chunking_yields_the_same_records_in_order(seed: int) -> None:
    rng = random.Random(seed)
    recs = records(rng, 40)
    data = wire(recs)
    split = splitter()
    got: list[tuple[RecordType, int, bytes]] = []
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 2, 9, 10, 4096, 65_536, 300_000])
        split.feed(data[pos : pos + step])
        pos += step
        got += drain(split)
    assert got == recs
    assert split.buffered == 0


def test_one_byte_at_a_time() -> None:
    recs = [(RecordType.DATA, 3, b"hello"), (RecordType.FIN, 3, b""), (RecordType.PING, 0, b"x")]
    data = wire(recs)
    split = splitter()
    got = []
    for i in range(len(data)):
        split.feed(data[i : i + 1])
        got += drain(split)
    assert got == recs


def test_a_record_within_one_chunk_is_a_view_of_it() -> None:
    chunk = encode_record(RecordType.DATA, 1, b"abc") + encode_record(RecordType.DATA, 1, b"de")
    split = splitter()
    split.feed(chunk)
    first = split.next()
    assert isinstance(first, tuple)
    assert first[0] == RecordHeader(RecordType.DATA, 1, 3)
    assert first[1].obj is chunk  # no copy
    assert bytes(first[1]) == b"abc"


def test_a_payload_that_spanned_chunks_is_not_overwritten_later() -> None:
    data = wire([(RecordType.DATA, 1, b"A" * 100), (RecordType.DATA, 1, b"B" * 100)])
    split = splitter()
    split.feed(data[:50])
    assert split.next() is None
    split.feed(data[50:120])
    got = split.next()
    assert isinstance(got, tuple)
    kept = got[1]
    assert split.next() is None
    split.feed(data[120:])
    assert isinstance(split.next(), tuple)
    assert bytes(kept) == b"A" * 100


@pytest.mark.parametrize("cut", [0, 1, 4, 8])
def test_an_oversize_header_is_refused_before_any_payload_is_kept(cut: int) -> None:
    header = struct.pack("<BII", RecordType.DATA, 1, MAX_MUX_RECORD_BYTES + 1)
    split = splitter()
    if cut:
        split.feed(header[:cut])
        assert split.next() is None
        assert split.buffered == cut
        split.feed(header[cut:] + b"x" * 1000)
    else:
        split.feed(header + b"x" * 1000)
    got = split.next()
    assert isinstance(got, ProtocolViolation)
    assert (got.code, got.reason) == (CloseCode.OVERSIZE, "record.oversize")


def test_an_unknown_record_type_is_refused() -> None:
    split = splitter()
    split.feed(struct.pack("<BII", 99, 1, 0))
    got = split.next()
    assert isinstance(got, ProtocolViolation)
    assert (got.code, got.reason) == (CloseCode.NEUTRAL, "bad_record")


def test_what_is_kept_between_chunks_is_at_most_one_record() -> None:
    """A peer dribbling a maximal record keeps at most that record here, never more."""
    data = wire([(RecordType.DATA, 1, bytes(MAX_MUX_RECORD_BYTES))] * 3)
    split = splitter()
    most = 0
    for pos in range(0, len(data), 7_000):
        split.feed(data[pos : pos + 7_000])
        while split.next() is not None:
            pass
        most = max(most, split.buffered)
    assert most < MUX_HEADER_BYTES + MAX_MUX_RECORD_BYTES


def test_feeding_before_the_chunk_is_parsed_is_a_bug() -> None:
    split = splitter()
    split.feed(wire([(RecordType.PING, 0, b"12345678")] * 2))
    assert isinstance(split.next(), tuple)
    with pytest.raises(RuntimeError):
        split.feed(b"more")
