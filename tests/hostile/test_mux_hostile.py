"""Hostile multiplexer and frame traffic against a real node (docs/PROTOCOL.md §5, §6, §8).

Every case reads the outcome from the wire (the CLOSE record or the stream's RESET record),
checks the victim's journal and metrics, and shows that the victim still serves peers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from rawpeer import (
    BAD_PRELUDE,
    CAP_DISCOVERY,
    CAP_HEADER_SYNC,
    DISCOVERY_MAX,
    MIN_IDLE_TIMEOUT_MILLIS,
    MIN_MAX_MESSAGE_BYTES,
    NEUTRAL,
    OVERSIZE,
    RATE_LIMIT,
    REC_CREDIT,
    REC_DATA,
    REC_OPEN,
    RECORD_HEADER,
    RESOURCE,
    UNKNOWN_STREAM,
    ControlClose,
    DGetPeers,
    DGetServices,
    DHello,
    DServices,
    Limits,
    RawPeer,
    d_get_peers,
    d_get_services,
    encode_frame,
    encode_frame_header,
    encode_prelude,
    encode_record,
    u32,
)

from node_core.node import Node
from node_core.transport.config import TransportConfig
from node_core.transport.connection import Connection
from node_core.transport.routine import RoutineContext
from node_core.transport.stream import Stream

if TYPE_CHECKING:
    from conftest import Harness

FRAME_OVERSIZE = "zakura_p2p_ratelimit_frame_oversize_total"
MESSAGE_OVERSIZE = "zakura_p2p_ratelimit_message_oversize_total"
THROTTLED = "zakura_p2p_ratelimit_message_throttled_total"
OPEN_THROTTLED = "zakura_p2p_ratelimit_stream_open_throttled_total"
RESETS = "zakura_p2p_stream_reset_total"
CLOSED = "zakura_p2p_conn_closed_total"


async def expect_close(
    h: Harness, victim: Node, peer: RawPeer, code: int, reason: str, *, punitive: bool
) -> None:
    """The victim sends exactly one CLOSE record with ``code``/``reason``, then EOF (§5.6),
    journals and counts that close, deregisters the peer, and still serves an honest peer."""
    assert await peer.wait_close() == ControlClose(code, reason)
    assert peer.violations == []
    event = "closed.punitive" if punitive else "closed.neutral"
    ev = await h.wait_event(victim, "conn", event, peer=peer.label)
    assert (ev.fields["code"], ev.fields["reason"], ev.fields["by"]) == (code, reason, "local")
    assert victim.metrics.value(CLOSED, code=str(code), reason=reason.split(":")[0]) == 1.0
    await h.wait_until_deregistered(victim, peer.node_id)
    await h.assert_serves_honest_peer(victim)


async def expect_alive(peer: RawPeer, sid: int) -> None:
    """The connection and the discovery routine on ``sid`` still answer (§7.4)."""
    peer.send_discovery(sid, d_get_services())
    services = await peer.recv_discovery_of(sid, DServices)
    assert isinstance(services, DServices)
    assert peer.close is None and not peer.eof
    assert peer.violations == []


def conn_of(victim: Node, peer: RawPeer) -> Connection:
    conn = victim.transport.peers.get(peer.node_id)
    assert conn is not None
    return conn


class HeaderSyncStandIn:
    """A second service (kind 5) on the victim. By default it only holds its streams.

    Args:
        frame_cap: Its per-kind frame cap (§6 step 1), header included.
        message_rate: Its own inbound message rate (§6 step 3); None: the transport's.
        finish: Half-close each accepted stream at once (the victim sends FIN, §5.6).
        routine: Run a supervised routine that reads until end-of-stream and lets a
            ``StreamReset`` escape (the supervisor classifies it, §5.6).
    """

    name = "header_sync"
    kind = 5
    version = 1
    capability = CAP_HEADER_SYNC

    def __init__(
        self,
        *,
        frame_cap: int = 1024 + 8,
        message_rate: float | None = None,
        finish: bool = False,
        routine: bool = False,
    ) -> None:
        self.frame_cap = frame_cap
        self.message_rate = message_rate
        self.finish = finish
        self.routine = routine
        self.accepted: list[int] = []

    def add_peer(self, conn: Connection, stream: Stream) -> None:
        self.accepted.append(stream.id)
        if self.finish:
            stream.finish()
        if self.routine:

            async def read_to_the_end(ctx: RoutineContext) -> None:
                while await stream.recv() is not None:
                    pass

            conn.launch(self.name, stream, read_to_the_end)

    def remove_peer(self, conn: Connection) -> None:
        pass


# --------------------------------------------------------------------------- frame caps (§6)


@pytest.mark.parametrize("declared", [DISCOVERY_MAX + 1, 64 * 1024 * 1024, 0xFFFF_FFFF])
async def test_frame_header_declaring_an_oversize_length(harness: Harness, declared: int) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    sid = peer.open_stream()
    peer.send_data(sid, encode_frame_header(1, 0, declared))  # the header alone, no payload
    await expect_close(harness, victim, peer, OVERSIZE, "frame.oversize", punitive=True)
    row = await harness.wait_event(victim, "ratelimit", "frame.oversize", peer=peer.label)
    assert row.fields["stream_kind"] == "discovery"
    assert (row.fields["declared"], row.fields["cap"]) == (declared, DISCOVERY_MAX)
    assert victim.metrics.value(FRAME_OVERSIZE, stream_kind="discovery") == 1.0


async def test_frame_at_the_cap_passes_the_transport(harness: Harness) -> None:
    """A 16 384-byte payload is not oversize; discovery then rejects it as malformed, a
    protocol reject journaled as punitive (§8)."""
    victim = await harness.victim()
    peer = await harness.session(victim)
    sid = peer.open_stream()
    peer.send_frame(sid, 1, bytes([99]) * DISCOVERY_MAX)
    await expect_close(harness, victim, peer, NEUTRAL, "discovery:malformed_message", punitive=True)
    assert victim.metrics.value(FRAME_OVERSIZE, stream_kind="discovery") == 0.0


async def test_message_over_the_negotiated_maximum(harness: Harness) -> None:
    """§6 step 2. The smallest negotiable maximum (16 KiB, §4.6 step 9) equals discovery's
    frame cap, so the check shows on a kind with a larger frame cap: a message of exactly the
    maximum is delivered, one byte more closes."""
    victim = await harness.victim(extra_services=[HeaderSyncStandIn(frame_cap=64 * 1024 + 8)])
    peer = await harness.session(
        victim,
        capabilities=CAP_DISCOVERY | CAP_HEADER_SYNC,
        limits=Limits(max_message_bytes=MIN_MAX_MESSAGE_BYTES),
    )
    assert conn_of(victim, peer).negotiated.limits.max_message_bytes == MIN_MAX_MESSAGE_BYTES
    sid = peer.open_stream(kind=5, version=1)
    peer.send_frame(sid, 1, bytes(MIN_MAX_MESSAGE_BYTES))
    conn = conn_of(victim, peer)
    await harness.wait_until(
        lambda: sid in conn.streams and conn.streams[sid].inbox_depth == 1,
        "the 16 KiB message delivered",
    )
    peer.send_frame(sid, 1, bytes(MIN_MAX_MESSAGE_BYTES + 1))
    await expect_close(harness, victim, peer, OVERSIZE, "message.oversize", punitive=True)
    row = await harness.wait_event(victim, "ratelimit", "message.oversize", peer=peer.label)
    assert (row.fields["stream_kind"], row.fields["size"]) == (
        "header_sync",
        MIN_MAX_MESSAGE_BYTES + 1,
    )
    assert victim.metrics.value(MESSAGE_OVERSIZE, stream_kind="header_sync") == 1.0


async def test_message_flood_past_the_rate(harness: Harness) -> None:
    victim = await harness.victim(transport=TransportConfig(message_rate=4.0))
    peer = await harness.session(victim)
    sid = peer.open_stream()
    # 20 well-formed GetServices in one DATA record: the bucket (burst 4) runs dry at #5.
    peer.send_data(sid, encode_frame(1, 0, d_get_services()) * 20)
    await expect_close(harness, victim, peer, RATE_LIMIT, "message.throttled", punitive=True)
    row = await harness.wait_event(victim, "ratelimit", "message.throttled", peer=peer.label)
    assert row.fields["stream_kind"] == "discovery"
    assert victim.metrics.value(THROTTLED, stream_kind="discovery") == 1.0


async def test_a_service_declares_its_own_message_rate(harness: Harness) -> None:
    """§6 step 3: kind 5 declares 4/s and is throttled at its 5th message in a burst; on the
    same connection discovery declares none and keeps the transport's 2048/s."""
    victim = await harness.victim(extra_services=[HeaderSyncStandIn(message_rate=4.0)])
    peer = await harness.session(victim, capabilities=CAP_DISCOVERY | CAP_HEADER_SYNC)
    sid = peer.open_stream()
    await peer.recv_discovery_of(sid, DGetServices)
    peer.send_data(sid, encode_frame(1, 0, d_get_services()) * 20)  # fine at 2048/s
    await peer.wait_until(
        lambda: sum(1 for f in peer.streams[sid].frames if f.payload[:1] == b"\x05") >= 20,
        5.0,
        "twenty Services replies",
    )
    other = peer.open_stream(kind=5, version=1)
    peer.send_data(other, encode_frame(1, 0, b"x") * 20)  # the burst of 4 runs dry at #5
    await expect_close(harness, victim, peer, RATE_LIMIT, "message.throttled", punitive=True)
    row = await harness.wait_event(victim, "ratelimit", "message.throttled", peer=peer.label)
    assert row.fields["stream_kind"] == "header_sync"
    assert victim.metrics.value(THROTTLED, stream_kind="discovery") == 0.0


async def test_truncated_frame_then_fin(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    sid = peer.open_stream()
    peer.send_data(sid, encode_frame_header(1, 0, 8) + b"\x04\x00\x00")  # 3 of 8 bytes
    peer.send_fin(sid)
    await expect_close(harness, victim, peer, NEUTRAL, "truncated_frame", punitive=True)


async def test_fin_at_a_frame_boundary_ends_only_the_stream(harness: Harness) -> None:
    victim = await harness.victim(transport=TransportConfig(keepalive_interval=0.2))
    peer = await harness.session(victim)
    sid = peer.open_stream()
    await peer.recv_discovery_of(sid, DHello)
    peer.send_fin(sid)
    ev = await harness.wait_event(victim, "routine", "exited", peer=peer.label)
    assert ev.fields["cause"] == "normal"
    seen = len(peer.pings)
    await peer.wait_ping(after=seen)  # the connection is still up and keeping alive
    assert not conn_of(victim, peer).closed


async def test_a_discovery_stream_finished_by_the_peer_is_finished_back(harness: Harness) -> None:
    """§7.4 step 4: the discovery routine ends on our FIN and FINs back, so the stream is
    forgotten (§5.6) and a second discovery stream on the same connection is served."""
    victim = await harness.victim()
    peer = await harness.session(victim)
    sid = peer.open_stream()
    await peer.recv_discovery_of(sid, DGetServices)
    peer.send_fin(sid)
    ev = await harness.wait_event(victim, "routine", "exited", peer=peer.label)
    assert ev.fields["cause"] == "normal"
    await harness.wait_until(lambda: sid not in conn_of(victim, peer).streams, "stream forgotten")
    second = peer.open_stream()
    await peer.recv_discovery_of(second, DGetServices)
    assert not conn_of(victim, peer).closed


async def test_data_after_fin(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    sid = peer.open_stream()
    peer.send_fin(sid)
    peer.send_frame(sid, 1, d_get_services())
    await expect_close(harness, victim, peer, BAD_PRELUDE, "data_after_fin", punitive=True)


# --------------------------------------------------------------------------- stream admission


async def test_unknown_stream_kind_is_reset_and_the_connection_kept(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    bogus = peer.open_stream(kind=9, version=1)
    assert await peer.wait_reset(bogus) == ControlClose(UNKNOWN_STREAM, "unknown_stream")
    row = await harness.wait_event(victim, "stream", "rejected", peer=peer.label)
    assert (row.fields["reason"], row.fields["code"], row.fields["stream_kind"]) == (
        "unknown_stream",
        5,
        "9",
    )
    assert victim.metrics.value(RESETS, code="5") == 1.0
    sid = peer.open_stream()  # discovery still answers on the same connection
    hello = await peer.recv_discovery_of(sid, DHello)
    assert isinstance(hello, DHello) and hello.record.record.node_id == victim.node_id
    await expect_alive(peer, sid)
    await harness.assert_serves_honest_peer(victim)


async def test_known_kind_at_unknown_version_is_reset(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    bogus = peer.open_stream(kind=4, version=99)
    assert await peer.wait_reset(bogus) == ControlClose(UNKNOWN_STREAM, "unknown_stream")
    sid = peer.open_stream()
    await expect_alive(peer, sid)
    await harness.assert_serves_honest_peer(victim)


async def test_stream_of_a_capability_not_negotiated_is_reset(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim, capabilities=0)
    sid = peer.open_stream()
    assert await peer.wait_reset(sid) == ControlClose(UNKNOWN_STREAM, "capability_not_negotiated")
    assert not conn_of(victim, peer).closed


async def test_request_id_on_an_ordered_stream(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    peer.open_stream(request_id=7)
    await expect_close(
        harness, victim, peer, BAD_PRELUDE, "request_id_on_ordered_stream", punitive=True
    )


async def test_request_id_is_checked_before_the_kind(harness: Harness) -> None:
    """§10 deviation 5: an unknown kind carrying a request id closes (it is not a RESET)."""
    victim = await harness.victim()
    peer = await harness.session(victim)
    peer.open_stream(kind=9, request_id=1)
    await expect_close(
        harness, victim, peer, BAD_PRELUDE, "request_id_on_ordered_stream", punitive=True
    )


@pytest.mark.parametrize(
    "prelude",
    [
        pytest.param(encode_prelude(4, 1, 16392, magic=b"ZKSX"), id="magic"),
        pytest.param(encode_prelude(4, 1, 16392)[:8] + b"\x02" + u32(16392), id="flag-2"),
        pytest.param(encode_prelude(4, 1, 16392) + b"\x00", id="trailing"),
        pytest.param(encode_prelude(4, 1, 0), id="zero-frame-cap"),
        pytest.param(encode_prelude(4, 1, 16392)[:10], id="truncated"),
    ],
)
async def test_bad_prelude(harness: Harness, prelude: bytes) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    peer.open_stream(prelude=prelude)
    await expect_close(harness, victim, peer, BAD_PRELUDE, "bad_prelude", punitive=True)


@pytest.mark.parametrize("sid", [0, 2])
async def test_stream_id_of_the_wrong_parity(harness: Harness, sid: int) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    peer.open_stream(sid=sid)
    await expect_close(harness, victim, peer, BAD_PRELUDE, "bad_stream_id", punitive=True)


async def test_second_stream_of_the_same_kind(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    peer.open_stream()
    peer.open_stream()
    await expect_close(
        harness, victim, peer, BAD_PRELUDE, "duplicate_ordered_stream", punitive=True
    )


async def test_stream_ids_in_use_cannot_be_reopened(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    sid = peer.open_stream()
    peer.send_record(REC_OPEN, sid, encode_prelude(9, 1, 64))
    await expect_close(harness, victim, peer, BAD_PRELUDE, "bad_stream_id", punitive=True)


async def test_max_open_streams(harness: Harness) -> None:
    victim = await harness.victim(extra_services=[HeaderSyncStandIn()])
    peer = await harness.session(
        victim, capabilities=CAP_DISCOVERY | CAP_HEADER_SYNC, limits=Limits(max_open_streams=1)
    )
    sid = peer.open_stream()
    second = peer.open_stream(kind=5, version=1)
    assert await peer.wait_reset(second) == ControlClose(RESOURCE, "max_open_streams")
    await expect_alive(peer, sid)


async def test_stream_open_flood_resets_and_keeps_the_connection(harness: Harness) -> None:
    victim = await harness.victim(transport=TransportConfig(stream_open_rate=4.0))
    peer = await harness.session(victim)
    sid = peer.open_stream()  # 1 of the 4 tokens
    flood = [peer.open_stream(kind=9) for _ in range(10)]
    codes = [(await peer.wait_reset(s)).code for s in flood]
    # Charged before the prelude is parsed: 3 tokens left for unknown kinds (RESET 5),
    # the rest find the bucket empty (RESET 3). The connection is kept.
    assert codes == [UNKNOWN_STREAM] * 3 + [RATE_LIMIT] * 7
    assert peer.streams[flood[-1]].reset == ControlClose(RATE_LIMIT, "stream_open_rate")
    assert victim.metrics.value(OPEN_THROTTLED) == 7.0
    assert len(harness.events(victim, "ratelimit", "stream.open_throttled", peer.label)) == 7
    await expect_alive(peer, sid)
    await harness.assert_serves_honest_peer(victim)


async def test_stream_open_bucket_is_charged_before_the_prelude_is_parsed(
    harness: Harness,
) -> None:
    """§5.4 step 2 before step 3: an over-rate OPEN is reset even if its prelude is garbage."""
    victim = await harness.victim(transport=TransportConfig(stream_open_rate=1.0))
    peer = await harness.session(victim)
    sid = peer.open_stream()  # the only token
    junk = peer.open_stream(prelude=b"not a prelude")
    assert await peer.wait_reset(junk) == ControlClose(RATE_LIMIT, "stream_open_rate")
    await expect_alive(peer, sid)


# --------------------------------------------------------------------------- records (§5.1)


async def test_flow_control_overrun(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    sid = peer.open_stream()
    window = peer.streams[sid].window
    assert window == 262144
    # 4 bytes of a frame header stay outstanding (no frame completes, nothing is consumed);
    # one full window more overruns the credit whatever the victim has read meanwhile.
    peer.send_data(sid, b"\x01\x00\x00\x00")
    peer.send_data(sid, bytes(window))
    await expect_close(harness, victim, peer, RESOURCE, "flow_control", punitive=True)


async def test_record_over_256_kib(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    sid = peer.open_stream()
    peer.send_raw(RECORD_HEADER.pack(REC_DATA, sid, 262145))
    await expect_close(harness, victim, peer, OVERSIZE, "record.oversize", punitive=True)


async def test_unknown_record_type(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    peer.send_record(42, 0, b"")
    await expect_close(harness, victim, peer, NEUTRAL, "bad_record", punitive=True)


async def test_zero_credit(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    sid = peer.open_stream()
    peer.send_record(REC_CREDIT, sid, u32(0))
    await expect_close(harness, victim, peer, NEUTRAL, "bad_credit", punitive=True)


async def test_records_for_unknown_streams_are_discarded(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    for rtype, payload in ((REC_DATA, b"xyz"), (REC_CREDIT, u32(5)), (5, b"")):
        peer.send_raw(encode_record(rtype, 99, payload))
    sid = peer.open_stream()
    await expect_alive(peer, sid)


async def test_first_close_reason_wins(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    sid = peer.open_stream()
    # Two violations in one write: only the first is sent, journaled and counted.
    peer.send_data(sid, encode_frame_header(1, 0, DISCOVERY_MAX + 1))
    peer.open_stream(sid=2)
    await expect_close(harness, victim, peer, OVERSIZE, "frame.oversize", punitive=True)
    closes = harness.events(victim, "conn", None, peer.label)
    assert [e.fields["reason"] for e in closes if e.event.startswith("closed")] == [
        "frame.oversize"
    ]


async def test_peer_close_record(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    peer.send_close(0, "going away")
    await peer.wait_eof()
    assert peer.close is None  # nothing is sent back to a peer that closed
    ev = await harness.wait_event(victim, "conn", "closed.neutral", peer=peer.label)
    assert (ev.fields["reason"], ev.fields["by"]) == ("peer:going away", "remote")


async def test_operator_disconnect_is_neutral(harness: Harness) -> None:
    """§8: a close the peer did not cause is sent like any other but journaled neutral."""
    victim = await harness.victim()
    peer = await harness.session(victim)
    assert victim.transport.disconnect(peer.node_id)
    await expect_close(harness, victim, peer, NEUTRAL, "disconnect_requested", punitive=False)
    assert harness.events(victim, "conn", "closed.punitive", peer.label) == []


# --------------------------------------------------------------------------- liveness (§5.7)


async def test_idle_timeout(harness: Harness) -> None:
    """The smallest idle timeout a node accepts (1 s, §4.6 step 9): PINGs every idle/3, then
    a close once nothing came in for longer than the timeout.

    Read from the order of the victim's records, not a stopwatch: its checks come idle/3
    apart and each one that finds the peer quiet for less than the timeout sends a PING, so
    the close follows two PINGs (the checks at 1/3 and 2/3 of the timeout) and comes at the
    first check past the timeout, before a fourth PING could go out.
    """
    victim = await harness.victim()
    peer = await harness.session(victim, limits=Limits(idle_timeout_millis=MIN_IDLE_TIMEOUT_MILLIS))
    assert await peer.wait_close() == ControlClose(NEUTRAL, "idle_timeout")
    assert peer.pings in ([1, 2], [1, 2, 3]), peer.pings  # nonces counting from 1
    ev = await harness.wait_event(victim, "conn", "closed.neutral", peer=peer.label)
    assert (ev.fields["reason"], ev.fields["code"], ev.fields["by"]) == ("idle_timeout", 0, "local")


async def test_pings_keep_an_idle_connection_alive(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim, limits=Limits(idle_timeout_millis=MIN_IDLE_TIMEOUT_MILLIS))
    # Seven PINGs are seven of the victim's checks, idle/3 apart by its own clock: past twice
    # the idle timeout, and each found the peer's last PING recent enough to ping again.
    for i in range(7):
        await peer.wait_ping(after=i)
        peer.send_ping(i)
    assert peer.pings[:7] == list(range(1, 8))
    assert peer.close is None
    assert not conn_of(victim, peer).closed


# --------------------------------------------------------------------------- FIN and RESET (§5.6)


async def test_peer_reset_of_its_discovery_stream_is_not_a_panic(harness: Harness) -> None:
    """§5.6: the discovery routine ends normally (outcome ``stream_reset``), the connection
    stays up, and the kind is free again: a new discovery stream is served."""
    victim = await harness.victim(transport=TransportConfig(keepalive_interval=0.2))
    peer = await harness.session(victim)
    sid = peer.open_stream()
    await peer.recv_discovery_of(sid, DGetPeers)
    peer.send_reset(sid, 0, "done")
    ev = await harness.wait_event(victim, "routine", "exited", peer=peer.label)
    assert (ev.service, ev.fields["cause"], ev.fields["reason"]) == ("discovery", "normal", None)
    row = await harness.wait_event(victim, "stream", "reset", peer=peer.label, stream=sid)
    assert (row.fields["by"], row.fields["code"], row.fields["reason"]) == ("remote", 0, "done")
    conn = conn_of(victim, peer)
    assert victim.discovery.exchanges[conn.peer.conn_id].outcome == "stream_reset"
    assert victim.metrics.value("zakura_pipe_panic_total", service="discovery") == 0.0
    assert harness.events(victim, "routine", "panicked") == []
    await peer.wait_ping(after=len(peer.pings))
    assert not conn.closed
    again = peer.open_stream()
    hello = await peer.recv_discovery_of(again, DHello)
    assert isinstance(hello, DHello) and hello.record.record.node_id == victim.node_id
    await expect_alive(peer, again)


async def test_an_uncaught_stream_reset_is_a_normal_routine_exit(harness: Harness) -> None:
    """§5.6: a routine that lets the peer's RESET escape exits ``normal`` with reason
    ``stream_reset:<reason>``; nothing panics and the connection stays up."""
    victim = await harness.victim(extra_services=[HeaderSyncStandIn(routine=True)])
    peer = await harness.session(victim, capabilities=CAP_DISCOVERY | CAP_HEADER_SYNC)
    sid = peer.open_stream()
    await peer.recv_discovery_of(sid, DGetServices)
    other = peer.open_stream(kind=5, version=1)
    await harness.wait_event(victim, "routine", "started", peer=peer.label, service="header_sync")
    peer.send_reset(other, 0, "done")
    ev = await harness.wait_event(
        victim, "routine", "exited", peer=peer.label, service="header_sync"
    )
    assert (ev.fields["cause"], ev.fields["reason"]) == ("normal", "stream_reset:peer:done")
    assert victim.metrics.value("zakura_pipe_panic_total", service="header_sync") == 0.0
    assert harness.events(victim, "routine", "panicked") == []
    await expect_alive(peer, sid)
    assert not conn_of(victim, peer).closed


@pytest.mark.parametrize("we_fin", [True, False], ids=["both-fin", "victim-fin-only"])
async def test_a_stream_finished_both_ways_frees_its_kind(harness: Harness, we_fin: bool) -> None:
    """§5.4 step 7, §5.6: once both sides have sent FIN the stream is forgotten and its kind
    may be opened again on the same connection; one FIN is not enough."""
    service = HeaderSyncStandIn(finish=True)
    victim = await harness.victim(extra_services=[service])
    peer = await harness.session(victim, capabilities=CAP_DISCOVERY | CAP_HEADER_SYNC)
    first = peer.open_stream(kind=5, version=1)
    await peer.wait_until(lambda: peer.streams[first].fin, 5.0, "the victim's FIN")
    if not we_fin:
        peer.open_stream(kind=5, version=1)
        await expect_close(
            harness, victim, peer, BAD_PRELUDE, "duplicate_ordered_stream", punitive=True
        )
        return
    peer.send_fin(first)
    conn = conn_of(victim, peer)
    await harness.wait_until(lambda: first not in conn.streams, "the stream to be forgotten")
    # Records for a forgotten stream are discarded like those of any stream not open (§5.2).
    peer.send_frame(first, 1, b"late")
    second = peer.open_stream(kind=5, version=1)
    await peer.wait_until(lambda: peer.streams[second].fin, 5.0, "the FIN of the new stream")
    assert service.accepted == [first, second]
    accepted = harness.events(victim, "stream", "accepted", peer.label)
    assert [e.fields["stream"] for e in accepted] == [first, second]
    sid = peer.open_stream()
    await expect_alive(peer, sid)


def get_peers_frame(exclusions: int) -> bytes:
    """A well-formed GetPeers frame of ``15 + 32 * exclusions`` bytes (§6, §7.2)."""
    exclude = tuple(bytes([i % 256, i // 256]) * 16 for i in range(exclusions))
    return encode_frame(1, 0, d_get_peers(limit=1, exclude=exclude))


def answered_frames_of_exactly(total: int) -> tuple[bytes, int]:
    """Well-formed discovery requests whose frames add up to exactly ``total`` (≥ 100) bytes
    on the wire; the victim answers each with one message. Returns the bytes and the count."""
    big = get_peers_frame(250)
    frames: list[bytes] = []
    left = total
    while left - len(big) >= 100:
        frames.append(big)
        left -= len(big)
    # A GetPeers of k exclusions is 15 + 32k bytes, a GetServices wanting one n-character
    # service 13 + n bytes: one of each fills ``left`` exactly.
    n = (left - 29) % 32 + 1
    frames.append(get_peers_frame((left - 28 - n) // 32))
    frames.append(encode_frame(1, 0, d_get_services(("x" * n,))))
    out = b"".join(frames)
    assert len(out) == total
    return out, len(frames)


async def test_discovery_routine_survives_our_unread_replies(harness: Harness) -> None:
    """A peer that never reads only fills its own window; the victim does not close."""
    victim = await harness.victim(transport=TransportConfig(keepalive_interval=0.2))
    peer = await harness.session(victim)
    sid = peer.open_stream()
    await peer.recv_discovery_of(sid, DGetServices)
    for _ in range(3):
        peer.send_discovery(sid, d_get_services())
    await peer.wait_until(
        lambda: sum(1 for f in peer.streams[sid].frames if f.payload[:1] == b"\x05") >= 3,
        5.0,
        "three Services replies",
    )
    await peer.wait_ping(after=len(peer.pings))
    assert peer.violations == []


# --------------------------------------------------------------------------- stream id reuse


async def test_credit_of_a_reset_stream_never_reaches_its_successor(harness: Harness) -> None:
    """§5.2, §5.5: credit only returns bytes consumed on the stream the CREDIT names. A peer
    that trusted a stray grant would overrun the window and be closed with flow_control."""
    victim = await harness.victim()
    peer = await harness.session(victim)
    sid = peer.open_stream()
    await peer.recv_discovery_of(sid, DGetServices)
    quarter = peer.streams[sid].window // 4
    # The victim reads these and owes us quarter - 6 bytes: just short of a CREDIT.
    frames, count = answered_frames_of_exactly(quarter - 6)
    peer.send_data(sid, frames)
    await peer.wait_until(
        lambda: (
            sum(1 for f in peer.streams[sid].frames if f.payload[:1] in (b"\x03", b"\x05")) >= count
        ),
        5.0,
        "an answer to each request",
    )
    assert peer.streams[sid].credited == 0
    # One more 11-byte frame, our RESET and an OPEN reusing the id, read together: the old
    # routine reads the frame after the reset and its credit falls due.
    with peer.batch():
        peer.send_discovery(sid, d_get_services())
        peer.send_reset(sid, 0, "bye")
        again = peer.open_stream(sid=sid)
    await harness.wait_event(victim, "routine", "exited", peer=peer.label)  # the old routine
    await expect_alive(peer, again)  # the victim wrote any CREDIT before this reply
    assert peer.streams[again].credited == 0
