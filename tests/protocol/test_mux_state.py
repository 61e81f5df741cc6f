"""The multiplexer's stream rules (docs/PROTOCOL.md §5, §6) on the sans-I/O ``MuxState``.

No event loop and no socket: each case feeds records with an explicit ``now`` and reads the
events back, so every rule and every close reason is checked by plain function calls. The
hostile suite (``tests/hostile/test_mux_hostile.py``) checks the same rules on the wire.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from node_core.protocol.flow import stream_window
from node_core.protocol.frames import Frame, encode_frame_header
from node_core.protocol.limits import FRAME_HEADER_BYTES, MAX_MUX_RECORD_BYTES, CloseCode
from node_core.protocol.mux import (
    CloseInfo,
    RecordHeader,
    RecordType,
    StreamPrelude,
    encode_close,
    encode_credit,
    encode_ping,
    encode_prelude,
)
from node_core.protocol.mux_state import (
    CreditReceived,
    FramesReceived,
    IdleTimedOut,
    LimitExceeded,
    MuxEvent,
    MuxState,
    PeerClosed,
    PeerFinished,
    PeerReset,
    ProtocolViolation,
    SendPing,
    StreamAccepted,
    StreamRefused,
    StreamState,
)


@dataclass(frozen=True)
class Kind:
    """A service kind as the rules see it (the transport's ``Service`` in a node)."""

    name: str
    kind: int
    version: int
    capability: int
    frame_cap: int
    message_rate: float | None = None


DISCOVERY = Kind("discovery", 4, 1, 0x1, 16 * 1024 + FRAME_HEADER_BYTES)
HEADERS = Kind("header_sync", 5, 1, 0x2, 64 * 1024 + FRAME_HEADER_BYTES, message_rate=3.0)
BULK = Kind("bulk", 9, 1, 0x4, 16 * 1024 + FRAME_HEADER_BYTES, message_rate=1e6)
LEDGER = Kind("ledger", 10, 1, 0x8, 16 * 1024 + FRAME_HEADER_BYTES)  # served, not negotiated
KINDS = {k.kind: k for k in (DISCOVERY, HEADERS, BULK, LEDGER)}
NEGOTIATED = DISCOVERY.capability | HEADERS.capability | BULK.capability
MAX_MESSAGE = 16 * 1024
OPEN_RATE = 4.0
MESSAGE_RATE = 8.0
IDLE = 1.0
#: One largest bulk frame: 16 KiB on the wire, so a window holds a whole number of them.
CHUNK = encode_frame_header(1, 0, 16 * 1024 - FRAME_HEADER_BYTES) + bytes(
    16 * 1024 - FRAME_HEADER_BYTES
)


def machine(
    *, initiator: bool = False, max_open_streams: int = 4, keepalive: float = 10.0
) -> MuxState:
    """Our side of a connection (the responder unless ``initiator``), at time 0."""
    return MuxState(
        initiator=initiator,
        lookup=KINDS.get,
        capabilities=NEGOTIATED,
        max_open_streams=max_open_streams,
        max_message_bytes=MAX_MESSAGE,
        stream_open_rate=OPEN_RATE,
        message_rate=MESSAGE_RATE,
        idle_timeout=IDLE,
        keepalive_interval=keepalive,
        now=0.0,
    )


def feed(
    m: MuxState, rtype: RecordType, sid: int, payload: bytes = b"", now: float = 0.0
) -> list[MuxEvent]:
    return list(m.receive(RecordHeader(rtype, sid, len(payload)), payload, now))


def prelude(
    kind: Kind = DISCOVERY, *, version: int | None = None, request_id: int | None = None
) -> bytes:
    v = kind.version if version is None else version
    return encode_prelude(StreamPrelude(kind.kind, v, kind.frame_cap, request_id))


def frame(payload: bytes, message_type: int = 1) -> bytes:
    return encode_frame_header(message_type, 0, len(payload)) + payload


def opened(m: MuxState, sid: int = 1, kind: Kind = DISCOVERY, now: float = 0.0) -> None:
    events = feed(m, RecordType.OPEN, sid, prelude(kind), now)
    assert events == [StreamAccepted(sid, kind.kind, kind.name)]
    assert m.streams[sid].kind == kind.kind and not m.streams[sid].locally_opened


def machine_with_open() -> MuxState:
    """A machine with the peer's discovery stream 1 open."""
    m = machine()
    opened(m)
    return m


def machine_after_fin() -> MuxState:
    """A machine whose peer finished its discovery stream 1."""
    m = machine_with_open()
    feed(m, RecordType.FIN, 1)
    return m


def bulk_stream() -> tuple[MuxState, StreamState, int]:
    """A machine with the peer's bulk stream 1 open, that stream, and its window."""
    m = machine()
    opened(m, 1, BULK)
    return m, m.streams[1], stream_window(BULK.frame_cap)


def no_violation(events: Sequence[MuxEvent]) -> bool:
    """Frames were delivered and nothing closed."""
    return bool(events) and not any(isinstance(e, ProtocolViolation) for e in events)


def violation(events: Sequence[MuxEvent]) -> tuple[int, str]:
    """The one close the events end with."""
    last = events[-1]
    assert isinstance(last, ProtocolViolation), events
    return last.code, last.reason


# --------------------------------------------------------------------------- violations


def _rec(rtype: RecordType, sid: int, payload: bytes = b"") -> tuple[RecordType, int, bytes]:
    return (rtype, sid, payload)


OPEN, DATA, CREDIT, FIN = RecordType.OPEN, RecordType.DATA, RecordType.CREDIT, RecordType.FIN

#: (case, records fed in order, the close the last one causes). Every transport violation
#: PROTOCOL.md §10 lists as ``closed.punitive`` appears here with its code.
VIOLATIONS: list[tuple[str, list[tuple[RecordType, int, bytes]], tuple[int, str]]] = [
    (
        "OPEN with our own parity",
        [_rec(OPEN, 2, prelude())],
        (CloseCode.BAD_PRELUDE, "bad_stream_id"),
    ),
    ("OPEN of stream id 0", [_rec(OPEN, 0, prelude())], (CloseCode.BAD_PRELUDE, "bad_stream_id")),
    (
        "OPEN of an id that is open",
        [_rec(OPEN, 1, prelude()), _rec(OPEN, 1, prelude(HEADERS))],
        (CloseCode.BAD_PRELUDE, "bad_stream_id"),
    ),
    (
        "prelude that does not decode",
        [_rec(OPEN, 1, b"ZKSX" + bytes(9))],
        (CloseCode.BAD_PRELUDE, "bad_prelude"),
    ),
    (
        "prelude with max_frame_bytes 0",
        [_rec(OPEN, 1, prelude()[:-4] + bytes(4))],
        (CloseCode.BAD_PRELUDE, "bad_prelude"),
    ),
    (
        "prelude with a request id",
        [_rec(OPEN, 1, prelude(request_id=7))],
        (CloseCode.BAD_PRELUDE, "request_id_on_ordered_stream"),
    ),
    (
        "second stream of an open kind",
        [_rec(OPEN, 1, prelude()), _rec(OPEN, 3, prelude())],
        (CloseCode.BAD_PRELUDE, "duplicate_ordered_stream"),
    ),
    (
        "DATA after the peer's FIN",
        [_rec(OPEN, 1, prelude()), _rec(FIN, 1), _rec(DATA, 1, frame(b"x"))],
        (CloseCode.BAD_PRELUDE, "data_after_fin"),
    ),
    (
        "DATA beyond the window",
        [_rec(OPEN, 1, prelude()), _rec(DATA, 1, bytes(stream_window(DISCOVERY.frame_cap) + 1))],
        (CloseCode.RESOURCE, "flow_control"),
    ),
    (
        "frame header over the kind's frame cap",
        [_rec(OPEN, 1, prelude()), _rec(DATA, 1, encode_frame_header(1, 0, DISCOVERY.frame_cap))],
        (CloseCode.OVERSIZE, "frame.oversize"),
    ),
    (
        "frame over the accepted max_message_bytes",
        [_rec(OPEN, 5, prelude(HEADERS)), _rec(DATA, 5, frame(bytes(MAX_MESSAGE + 1)))],
        (CloseCode.OVERSIZE, "message.oversize"),
    ),
    (
        "more messages than the kind's bucket holds",
        [_rec(OPEN, 5, prelude(HEADERS)), _rec(DATA, 5, frame(b"a") * 4)],
        (CloseCode.RATE_LIMIT, "message.throttled"),
    ),
    (
        "CREDIT of zero",
        [_rec(OPEN, 1, prelude()), _rec(CREDIT, 1, bytes(4))],
        (CloseCode.NEUTRAL, "bad_credit"),
    ),
    (
        "CREDIT that does not decode",
        [_rec(OPEN, 1, prelude()), _rec(CREDIT, 1, b"\x01\x00")],
        (CloseCode.NEUTRAL, "bad_credit"),
    ),
    (
        "FIN in the middle of a frame",
        [_rec(OPEN, 1, prelude()), _rec(DATA, 1, frame(b"abc")[:5]), _rec(FIN, 1)],
        (CloseCode.NEUTRAL, "truncated_frame"),
    ),
]


@pytest.mark.parametrize(
    ("records", "expected"), [c[1:] for c in VIOLATIONS], ids=[c[0] for c in VIOLATIONS]
)
def test_each_violation_closes_with_its_reason(
    records: list[tuple[RecordType, int, bytes]], expected: tuple[int, str]
) -> None:
    m = machine()
    for rtype, sid, payload in records[:-1]:
        events = feed(m, rtype, sid, payload)
        assert not any(isinstance(e, ProtocolViolation) for e in events), events
    events = feed(m, *records[-1])
    assert violation(events) == expected
    assert m.ended == events[-1]
    # The first close wins: nothing after it is looked at, not even a valid record.
    assert feed(m, RecordType.OPEN, 7, prelude(HEADERS)) == []
    assert feed(m, RecordType.CLOSE, 0, encode_close(CloseInfo(0, "late"))) == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            struct.pack("<BII", RecordType.DATA, 1, MAX_MUX_RECORD_BYTES + 1),
            (CloseCode.OVERSIZE, "record.oversize"),
        ),
        (struct.pack("<BII", 42, 0, 0), (CloseCode.NEUTRAL, "bad_record")),
    ],
    ids=["length over 256 KiB", "unknown record type"],
)
def test_record_header_violations(header: bytes, expected: tuple[int, str]) -> None:
    m = machine()
    rec = m.receive_header(header)
    assert isinstance(rec, ProtocolViolation) and (rec.code, rec.reason) == expected
    assert m.ended == rec


def test_a_good_record_header_decodes() -> None:
    header = struct.pack("<BII", RecordType.DATA, 3, MAX_MUX_RECORD_BYTES)
    assert machine().receive_header(header) == RecordHeader(
        RecordType.DATA, 3, MAX_MUX_RECORD_BYTES
    )


def test_the_initiator_refuses_odd_ids_from_its_peer() -> None:
    m = machine(initiator=True)
    assert violation(feed(m, RecordType.OPEN, 1, prelude())) == (
        CloseCode.BAD_PRELUDE,
        "bad_stream_id",
    )
    m = machine(initiator=True)
    opened(m, 2)


def test_a_kind_open_in_our_direction_is_a_duplicate_too() -> None:
    m = machine()
    m.open_local(DISCOVERY.kind, DISCOVERY.frame_cap)
    assert violation(feed(m, RecordType.OPEN, 1, prelude())) == (
        CloseCode.BAD_PRELUDE,
        "duplicate_ordered_stream",
    )


def test_limit_violations_name_the_limit_and_deliver_the_frames_before() -> None:
    m = machine()
    opened(m, 5, HEADERS)
    events = feed(m, RecordType.DATA, 5, frame(b"a") + frame(b"b") + frame(bytes(MAX_MESSAGE + 1)))
    assert events[0] == FramesReceived(5, [Frame(1, 0, b"a"), Frame(1, 0, b"b")])
    assert events[1] == ProtocolViolation(
        CloseCode.OVERSIZE,
        "message.oversize",
        "",
        LimitExceeded("message.oversize", 5, "header_sync", {"size": MAX_MESSAGE + 1}),
    )

    m = machine()
    opened(m)
    events = feed(m, RecordType.DATA, 1, encode_frame_header(1, 0, 1 << 20))
    assert len(events) == 1 and isinstance(events[0], ProtocolViolation)
    cap = DISCOVERY.frame_cap - FRAME_HEADER_BYTES
    assert events[0].limit == LimitExceeded(
        "frame.oversize", 1, "discovery", {"declared": 1 << 20, "cap": cap}
    )


def test_message_buckets_use_the_kinds_rate_else_the_transports_and_refill() -> None:
    m = machine()
    opened(m, 5, HEADERS)  # its own rate: 3 a second
    opened(m, 1, DISCOVERY)  # none declared: the transport's 8
    assert feed(m, RecordType.DATA, 5, frame(b"h") * 3, now=0.0) == [
        FramesReceived(5, [Frame(1, 0, b"h")] * 3)
    ]
    assert feed(m, RecordType.DATA, 1, frame(b"d") * 8, now=0.0) == [
        FramesReceived(1, [Frame(1, 0, b"d")] * 8)
    ]
    assert feed(m, RecordType.DATA, 5, frame(b"h"), now=1.0) == [
        FramesReceived(5, [Frame(1, 0, b"h")])
    ]
    events = feed(m, RecordType.DATA, 1, frame(b"d") * 9, now=1.0)
    assert events[0] == FramesReceived(1, [Frame(1, 0, b"d")] * 8)
    assert violation(events) == (CloseCode.RATE_LIMIT, "message.throttled")


def test_a_kinds_message_bucket_outlives_its_stream() -> None:
    m = machine()
    opened(m, 5, HEADERS)
    assert no_violation(feed(m, RecordType.DATA, 5, frame(b"h") * 3))
    feed(m, RecordType.RESET, 5, encode_close(CloseInfo(0, "again")))
    opened(m, 7, HEADERS)  # a successor of the same kind spends the same bucket
    assert violation(feed(m, RecordType.DATA, 7, frame(b"h"))) == (
        CloseCode.RATE_LIMIT,
        "message.throttled",
    )


# --------------------------------------------------------------------------- refusals


def test_opens_refused_with_a_reset_keep_the_connection() -> None:
    m = machine()
    unknown = encode_prelude(StreamPrelude(77, 1, 100))
    assert feed(m, RecordType.OPEN, 1, unknown) == [
        StreamRefused(1, CloseCode.UNKNOWN_STREAM, "unknown_stream", "77")
    ]
    assert feed(m, RecordType.OPEN, 3, prelude(DISCOVERY, version=2)) == [
        StreamRefused(3, CloseCode.UNKNOWN_STREAM, "unknown_stream", "4")
    ]
    assert feed(m, RecordType.OPEN, 5, prelude(LEDGER)) == [
        StreamRefused(5, CloseCode.UNKNOWN_STREAM, "capability_not_negotiated", "ledger")
    ]
    assert m.ended is None and m.streams == {}
    opened(m, 1)  # a refused id was never open: it may be opened again


def test_max_open_streams_counts_both_directions() -> None:
    m = machine(max_open_streams=2)
    m.open_local(HEADERS.kind, HEADERS.frame_cap)
    opened(m, 1, DISCOVERY)
    assert feed(m, RecordType.OPEN, 3, prelude(BULK)) == [
        StreamRefused(3, CloseCode.RESOURCE, "max_open_streams", None)
    ]
    assert m.ended is None and m.streams.keys() == {1, 2}


def test_the_open_bucket_is_charged_before_the_prelude_and_refills() -> None:
    m = machine()
    for sid in (1, 3, 5, 7):  # the burst: OPEN_RATE tokens, spent on unknown kinds
        (refused,) = feed(m, RecordType.OPEN, sid, encode_prelude(StreamPrelude(77, 1, 100)))
        assert isinstance(refused, StreamRefused) and refused.reason == "unknown_stream"
    # Empty: refused before the prelude is parsed, so even garbage is only a RESET.
    assert feed(m, RecordType.OPEN, 9, b"not a prelude") == [
        StreamRefused(9, CloseCode.RATE_LIMIT, "stream_open_rate", None, throttled=True)
    ]
    assert m.ended is None
    opened(m, 11, now=1.0 / OPEN_RATE)  # one token back a quarter second later


# --------------------------------------------------------------------------- discarded records


@pytest.mark.parametrize(
    ("rtype", "payload"),
    [
        (RecordType.DATA, b"xyz"),
        (RecordType.CREDIT, encode_credit(5)),
        (RecordType.CREDIT, bytes(4)),  # not even decoded
        (RecordType.FIN, b""),
        (RecordType.RESET, b"garbage"),
    ],
    ids=["DATA", "CREDIT", "zero CREDIT", "FIN", "RESET"],
)
def test_records_for_a_stream_that_is_not_open_are_discarded(
    rtype: RecordType, payload: bytes
) -> None:
    m = machine()
    assert feed(m, rtype, 99, payload) == []
    opened(m, 1)
    assert feed(m, RecordType.RESET, 1, encode_close(CloseInfo(0, "done"))) == [
        PeerReset(1, 0, "done")
    ]
    assert feed(m, rtype, 1, payload) == []  # in flight for the stream that was reset
    assert m.ended is None


def test_ping_counts_as_activity_and_nothing_else() -> None:
    m = machine()
    assert feed(m, RecordType.PING, 0, encode_ping(1), now=0.9) == []
    assert feed(m, RecordType.PING, 0, b"any payload", now=1.5) == []
    assert m.last_inbound == 1.5 and m.ended is None


# --------------------------------------------------------------------------- data and credit


def test_frames_are_reassembled_across_records() -> None:
    m = machine()
    opened(m)
    wire = frame(b"hello") + frame(b"world", message_type=2)
    assert feed(m, RecordType.DATA, 1, wire[:3]) == []
    assert feed(m, RecordType.DATA, 1, wire[3:20]) == [FramesReceived(1, [Frame(1, 0, b"hello")])]
    assert feed(m, RecordType.DATA, 1, wire[20:]) == [FramesReceived(1, [Frame(2, 0, b"world")])]
    assert m.streams[1].bytes_in == len(wire)


def test_credit_is_granted_per_quarter_window_of_consumed_bytes() -> None:
    m, st, window = bulk_stream()
    quarter = window // 4
    for _ in range(window // len(CHUNK)):
        assert feed(m, RecordType.DATA, 1, CHUNK) == [
            FramesReceived(1, [Frame(1, 0, CHUNK[FRAME_HEADER_BYTES:])])
        ]
    assert m.consumed(st, quarter - 1) == 0  # owed, under a quarter window: not yet
    assert m.consumed(st, 1) == quarter
    assert no_violation(feed(m, RecordType.DATA, 1, CHUNK * (quarter // len(CHUNK))))
    assert violation(feed(m, RecordType.DATA, 1, b"\0")) == (CloseCode.RESOURCE, "flow_control")


def test_owed_and_outstanding_bytes_both_hold_the_window() -> None:
    m, st, window = bulk_stream()
    small = frame(bytes(100))
    assert feed(m, RecordType.DATA, 1, small)
    assert m.consumed(st, len(small)) == 0  # read, but the credit is still owed
    full, rest = divmod(window - len(small) - 1, len(CHUNK))
    partial = encode_frame_header(1, 0, len(CHUNK) - FRAME_HEADER_BYTES)
    assert no_violation(feed(m, RecordType.DATA, 1, CHUNK * full))
    assert feed(m, RecordType.DATA, 1, partial + bytes(rest - len(partial))) == []
    assert violation(feed(m, RecordType.DATA, 1, bytes(2))) == (CloseCode.RESOURCE, "flow_control")


def test_credit_of_a_stream_that_is_gone_is_never_granted() -> None:
    m, st, window = bulk_stream()
    half = CHUNK * (window // 2 // len(CHUNK))
    assert no_violation(feed(m, RecordType.DATA, 1, half))
    assert feed(m, RecordType.RESET, 1, encode_close(CloseInfo(0, "bye"))) == [
        PeerReset(1, 0, "bye")
    ]
    opened(m, 1, BULK)  # a successor with the same id
    assert m.consumed(st, len(half)) == 0  # due, but the stream it was for is gone
    assert m.streams[1].recv_window.outstanding == 0


def test_peer_credit_adds_to_what_we_may_send() -> None:
    m = machine()
    st = m.open_local(DISCOVERY.kind, DISCOVERY.frame_cap)
    st.send_credit.consume(st.send_credit.available)
    assert feed(m, RecordType.CREDIT, st.id, encode_credit(1000)) == [CreditReceived(st.id)]
    assert st.send_credit.available == 1000


# --------------------------------------------------------------------------- FIN, RESET, CLOSE


def test_a_stream_is_forgotten_once_both_sides_sent_fin_either_order() -> None:
    m = machine_with_open()
    assert feed(m, RecordType.FIN, 1) == [PeerFinished(1, forgotten=False)]
    assert m.streams[1].remote_finished
    assert violation(feed(machine_after_fin(), RecordType.DATA, 1, b"x")) == (
        CloseCode.BAD_PRELUDE,
        "data_after_fin",
    )
    assert m.sent_fin(m.streams[1]) is True
    assert 1 not in m.streams
    assert feed(m, RecordType.DATA, 1, b"late") == []  # discarded like any stream not open
    opened(m, 1)  # id and kind are free again

    m = machine_with_open()
    assert m.sent_fin(m.streams[1]) is False
    assert feed(m, RecordType.FIN, 1) == [PeerFinished(1, forgotten=True)]
    opened(m, 3)


def test_one_fin_does_not_free_the_kind() -> None:
    m = machine_with_open()
    feed(m, RecordType.FIN, 1)
    assert violation(feed(m, RecordType.OPEN, 3, prelude())) == (
        CloseCode.BAD_PRELUDE,
        "duplicate_ordered_stream",
    )


def test_a_peer_reset_forgets_the_stream_and_frees_its_kind() -> None:
    m = machine_with_open()
    assert feed(m, RecordType.RESET, 1, b"\x01") == [
        PeerReset(1, CloseCode.NEUTRAL, "malformed_reset")
    ]
    assert m.streams == {}
    opened(m, 3)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (encode_close(CloseInfo(3, "going away")), PeerClosed(3, "peer:going away")),
        (b"\x00", PeerClosed(CloseCode.NEUTRAL, "peer:malformed_close")),
    ],
    ids=["close", "malformed close"],
)
def test_the_peers_close_ends_the_machine(payload: bytes, expected: PeerClosed) -> None:
    m = machine_with_open()
    assert feed(m, RecordType.CLOSE, 0, payload) == [expected]
    assert m.ended == expected
    assert feed(m, RecordType.DATA, 1, frame(b"x")) == []


# --------------------------------------------------------------------------- local actions


@pytest.mark.parametrize(("initiator", "ids"), [(True, [1, 3, 5]), (False, [2, 4, 6])])
def test_local_streams_take_ids_of_our_parity(initiator: bool, ids: list[int]) -> None:
    m = machine(initiator=initiator)
    streams = [m.open_local(k.kind, k.frame_cap) for k in (DISCOVERY, HEADERS, BULK)]
    assert [st.id for st in streams] == ids
    assert all(st.locally_opened for st in streams)


def test_a_local_reset_forgets_the_stream_once() -> None:
    m = machine()
    st = m.open_local(DISCOVERY.kind, DISCOVERY.frame_cap)
    assert m.is_open(st)
    assert m.reset_local(st) is True
    assert m.reset_local(st) is False
    assert not m.is_open(st)


# --------------------------------------------------------------------------- liveness


def test_keepalive_pings_until_nothing_came_in_for_longer_than_the_idle_timeout() -> None:
    m = machine()
    assert m.keepalive_interval == IDLE / 3  # never rarer than idle/3
    assert machine(keepalive=0.1).keepalive_interval == 0.1
    assert [m.tick(t) for t in (0.34, 0.67, 1.0)] == [SendPing(1), SendPing(2), SendPing(3)]
    assert m.tick(1.01) == IdleTimedOut(CloseCode.NEUTRAL, "idle_timeout")
    feed(m, RecordType.PING, 0, encode_ping(9), now=1.01)  # any record restarts the timer
    assert m.tick(2.0) == SendPing(4)
    assert m.tick(2.02) == IdleTimedOut()
