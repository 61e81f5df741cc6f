"""Hostile handshakes against a real node (docs/PROTOCOL.md §3, §4).

Each case reads the refusal from the wire (a control Close, or a CLOSE record once our Confirm
is written, then end-of-file), checks the victim's journal and metrics, and then shows that an
honest peer is still served.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
from rawpeer import (
    CAP_DISCOVERY,
    MIN_IDLE_TIMEOUT_MILLIS,
    MIN_MAX_FRAME_BYTES,
    MIN_MAX_MESSAGE_BYTES,
    NETWORK_REGTEST,
    RESOURCE,
    Ack,
    AckParams,
    ControlClose,
    DGetPeers,
    DGetServices,
    DHello,
    Key,
    Limits,
    RawPeer,
    control_frame,
    encode_confirm,
    encode_control_close,
    encode_hello,
    peer_label,
    u32,
)

from node_core.identity import peer_label as node_peer_label
from node_core.transport.config import TransportConfig
from node_core.transport.endpoint import DialError

if TYPE_CHECKING:
    from conftest import Harness

FAILED = "zakura_p2p_handshake_failed_total"
REJECTED = "zakura_p2p_conn_rejected_admission_total"


async def expect_refusal(peer: RawPeer, code: int, reason: str) -> None:
    """The victim answers with exactly one control Close and then closes the socket."""
    msg = await peer.read_control()
    assert msg == ControlClose(code, reason)
    assert await peer.expect_eof() == b""


async def expect_mux_refusal(peer: RawPeer, reason: str) -> None:
    """After our Confirm we are in the multiplexer: the refusal is a CLOSE record (§4.6)."""
    assert await peer.wait_close() == ControlClose(0, reason)
    assert peer.violations == []


async def check_failed(
    h: Harness, victim: Any, reason: str, *, punitive: bool, since: int = 0
) -> None:
    ev = await h.wait_event(victim, "handshake", "control.failed", since=since, reason=reason)
    assert ev.fields["punitive"] is punitive
    assert ev.fields["role"] == "responder"
    cls = "punitive" if punitive else "neutral"
    assert victim.metrics.value(FAILED, reason=reason, **{"class": cls}) == 1.0


# --------------------------------------------------------------------------- conformance


async def test_clean_handshake_matches_the_document(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.raw(victim)
    limits = Limits(max_message_bytes=123_456, max_open_streams=7, idle_timeout_millis=90_000)
    ack = await peer.handshake(
        harness.params(victim, capabilities=CAP_DISCOVERY | (1 << 40), limits=limits)
    )
    assert isinstance(ack, Ack)
    assert peer.violations == []  # the Ack signature verified over the §4.5 transcript
    assert ack.node_id == victim.node_id
    assert (ack.control_version, ack.selected_protocol) == (1, 1)
    assert (ack.network_id, ack.chain_id) == (NETWORK_REGTEST, victim.chain_id)
    assert ack.accepted_capabilities == CAP_DISCOVERY  # intersection
    assert ack.accepted_limits == Limits(
        max_frame_bytes=4 * 1024 * 1024 + 8,
        max_message_bytes=123_456,
        max_open_streams=7,
        max_inbound_queue_depth=4096,
        idle_timeout_millis=90_000,
    )  # minimum of both offers
    assert ack.listen_port == victim.transport.listen_port
    await harness.wait_event(victim, "conn", "accepted", peer=peer.label)
    ok = await harness.wait_event(victim, "handshake", "control.succeeded", peer=peer.label)
    assert ok.fields["selected_protocol"] == 1
    assert peer.label == node_peer_label(peer.node_id)
    assert victim.label == peer_label(victim.node_id)
    conn = victim.transport.peers.get(peer.node_id)
    assert conn is not None and not conn.closed
    assert conn.negotiated.limits.max_open_streams == 7


# --------------------------------------------------------------------------- malformed input


async def test_garbage_before_the_handshake(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.raw(victim)
    peer.send_raw(b"GET / HTTP/1.1\r\nHost: victim\r\n\r\n")
    await expect_refusal(peer, 0, "malformed")
    await check_failed(harness, victim, "malformed", punitive=True)
    assert harness.events(victim, "conn", "accepted") == []
    await harness.assert_serves_honest_peer(victim)


async def test_oversize_control_length_is_refused_before_the_payload(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.raw(victim)
    peer.send_raw(u32(16385))  # one byte over 16 KiB, and not a byte of payload follows
    await expect_refusal(peer, 0, "malformed")
    await check_failed(harness, victim, "malformed", punitive=True)
    await harness.assert_serves_honest_peer(victim)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(bytes([9]) + bytes(140), id="unknown-tag"),
        pytest.param(encode_confirm(bytes(64)), id="confirm-first"),
    ],
)
async def test_malformed_first_message(harness: Harness, payload: bytes) -> None:
    victim = await harness.victim()
    peer = await harness.raw(victim)
    peer.send_raw(control_frame(payload))
    await expect_refusal(peer, 0, "malformed")
    await check_failed(harness, victim, "malformed", punitive=True)
    await harness.assert_serves_honest_peer(victim)


async def test_hello_with_bad_magic(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.raw(victim)
    await peer.send_hello(harness.params(victim, magic=b"ZAKCTRL\x01"))
    await expect_refusal(peer, 0, "malformed")
    await check_failed(harness, victim, "malformed", punitive=True)


async def test_hello_with_trailing_byte(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.raw(victim)
    payload = encode_hello(harness.params(victim), peer.node_id, bytes(32))
    peer.send_raw(control_frame(payload + b"\x00"))
    await expect_refusal(peer, 0, "malformed")


# --------------------------------------------------------------------------- neutral refusals


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        pytest.param({"chain_id": b"\x01" * 32}, "wrong_chain", id="wrong-chain"),
        pytest.param({"network_id": 2}, "wrong_network", id="wrong-network"),
        pytest.param({"control_version": 2}, "unsupported_version", id="version"),
        pytest.param(
            {"protocol_min": 2, "protocol_max": 3}, "incompatible_protocol", id="protocol"
        ),
        pytest.param({"limits": Limits(max_open_streams=0)}, "resource_limit", id="zero-limit"),
        pytest.param(
            {"limits": Limits(max_inbound_queue_depth=0)}, "resource_limit", id="zero-queue-depth"
        ),
        pytest.param(
            {"limits": Limits(idle_timeout_millis=600_001)}, "resource_limit", id="idle-too-long"
        ),
        # §4.6 step 9: below the protocol minimums (16 KiB messages, 16 KiB + 8 frames, 1 s).
        pytest.param(
            {"limits": Limits(max_message_bytes=MIN_MAX_MESSAGE_BYTES - 1)},
            "resource_limit",
            id="message-below-minimum",
        ),
        pytest.param(
            {"limits": Limits(max_message_bytes=100)}, "resource_limit", id="message-100-bytes"
        ),
        pytest.param(
            {"limits": Limits(max_frame_bytes=MIN_MAX_FRAME_BYTES - 1)},
            "resource_limit",
            id="frame-below-minimum",
        ),
        pytest.param(
            {"limits": Limits(idle_timeout_millis=MIN_IDLE_TIMEOUT_MILLIS - 1)},
            "resource_limit",
            id="idle-below-minimum",
        ),
        pytest.param(
            {"limits": Limits(idle_timeout_millis=300)}, "resource_limit", id="idle-300-ms"
        ),
    ],
)
async def test_neutral_refusal(harness: Harness, overrides: dict[str, Any], reason: str) -> None:
    victim = await harness.victim()
    peer = await harness.raw(victim)
    await peer.send_hello(harness.params(victim, **overrides))
    await expect_refusal(peer, 0, reason)
    await check_failed(harness, victim, reason, punitive=False)
    assert victim.transport.peers.get(peer.node_id) is None
    await harness.assert_serves_honest_peer(victim)


async def test_hello_offering_exactly_the_minimums_is_accepted(harness: Harness) -> None:
    """§4.6 step 9 at the boundary: the minimums themselves are accepted and become the
    connection's limits; the victim then never sends a message above 16 KiB (§6)."""
    victim = await harness.victim()
    peer = await harness.raw(victim)
    ack = await peer.handshake(harness.params(victim, limits=Limits.minimums()))
    assert ack.accepted_limits == Limits(
        max_frame_bytes=MIN_MAX_FRAME_BYTES,
        max_message_bytes=MIN_MAX_MESSAGE_BYTES,
        max_open_streams=1,
        max_inbound_queue_depth=1,
        idle_timeout_millis=MIN_IDLE_TIMEOUT_MILLIS,
    )
    await harness.wait_event(victim, "conn", "accepted", peer=peer.label)
    sid = peer.open_stream()
    startup = [await peer.recv_discovery(sid) for _ in range(3)]
    assert [type(m) for m in startup] == [DHello, DGetPeers, DGetServices]
    assert peer.violations == []  # includes: no frame above the negotiated 16 KiB


async def test_wrong_network_is_checked_before_chain(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.raw(victim)
    await peer.send_hello(harness.params(victim, network_id=1, chain_id=b"\x02" * 32))
    await expect_refusal(peer, 0, "wrong_network")


async def test_hello_claiming_the_victims_own_id(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.raw(victim)
    await peer.send_hello(harness.params(victim, node_id=victim.node_id))
    await expect_refusal(peer, 0, "self_connection")
    await check_failed(harness, victim, "self_connection", punitive=False)


# --------------------------------------------------------------------------- punitive refusals


async def test_bad_signature_in_confirm(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.raw(victim)
    ack = await peer.handshake(harness.params(victim), confirm="bad_signature")
    assert ack.node_id == victim.node_id
    await expect_mux_refusal(peer, "bad_signature")
    await check_failed(harness, victim, "bad_signature", punitive=True)
    assert harness.events(victim, "conn", "accepted") == []
    await harness.assert_serves_honest_peer(victim)


async def test_hello_for_someone_elses_key(harness: Harness) -> None:
    """Claiming another node id: our Confirm signature cannot verify under it."""
    victim = await harness.victim()
    peer = await harness.raw(victim)
    await peer.handshake(harness.params(victim, node_id=Key().node_id))
    await expect_mux_refusal(peer, "bad_signature")
    await check_failed(harness, victim, "bad_signature", punitive=True)


async def test_hello_with_a_node_id_that_is_not_a_key(harness: Harness) -> None:
    """§2: an invalid node id is caught by the Confirm check (no valid signature exists)."""
    victim = await harness.victim()
    peer = await harness.raw(victim)
    not_a_point = b"\x02" + b"\x00" * 31  # y = 2 has no x on the curve
    await peer.handshake(harness.params(victim, node_id=not_a_point))
    await expect_mux_refusal(peer, "bad_signature")


async def test_peer_close_instead_of_hello(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.raw(victim)
    peer.send_raw(control_frame(encode_control_close(0, "not today")))
    assert await peer.expect_eof() == b""  # no Close is sent back to a peer that closed
    ev = await harness.wait_event(victim, "handshake", "control.failed")
    assert ev.fields["reason"] == "peer_closed:not today"
    assert ev.fields["punitive"] is False


# --------------------------------------------------------------------------- the victim dials


async def dial_raw(
    h: Harness, victim: Any, ack: dict[str, Any]
) -> tuple[RawPeer, asyncio.Task[Any], bytes | ControlClose | None]:
    """The victim dials a raw responder, which answers its Hello with an Ack built from
    ``ack`` (over :class:`AckParams`); returns the victim's answer to that Ack (§4.6)."""
    peer = RawPeer()
    h.raws.append(peer)
    port = await peer.listen()
    dial = asyncio.ensure_future(victim.transport.dial("127.0.0.1", port))
    await peer.respond(AckParams(chain_id=victim.chain_id, **ack))
    return peer, dial, await peer.read_confirm()


@pytest.mark.parametrize(
    "below",
    [
        pytest.param({"max_message_bytes": MIN_MAX_MESSAGE_BYTES - 1}, id="message"),
        pytest.param({"max_frame_bytes": MIN_MAX_FRAME_BYTES - 1}, id="frame"),
        pytest.param({"idle_timeout_millis": MIN_IDLE_TIMEOUT_MILLIS - 1}, id="idle"),
        pytest.param({"max_open_streams": 0}, id="zero-streams"),
    ],
)
async def test_initiator_refuses_an_ack_below_the_minimums(
    harness: Harness, below: dict[str, int]
) -> None:
    """§4.6: accepted limits within the initiator's offer but below a protocol minimum are
    refused with a control Close ``resource_limit`` (neutral); nothing is registered."""
    victim = await harness.victim()
    # Within what the victim offers (the §4.2 defaults), below a minimum in one field only.
    peer, dial, answer = await dial_raw(
        harness, victim, {"accepted_limits": replace(Limits(), **below)}
    )
    assert peer.victim_hello is not None and peer.victim_hello.limits == Limits()
    assert answer == ControlClose(0, "resource_limit")
    assert await peer.expect_eof() == b""
    with pytest.raises(DialError) as info:
        await dial
    assert info.value.reason == "handshake_resource_limit"
    ev = await harness.wait_event(victim, "handshake", "control.failed", reason="resource_limit")
    assert (ev.fields["role"], ev.fields["punitive"]) == ("initiator", False)
    assert victim.metrics.value(FAILED, reason="resource_limit", **{"class": "neutral"}) == 1.0
    assert victim.transport.peers.get(peer.node_id) is None
    assert peer.violations == []


async def test_initiator_accepts_an_ack_at_the_minimums(harness: Harness) -> None:
    """The boundary of the previous test: an Ack accepting exactly the minimums is confirmed,
    the connection runs with them, and the victim's discovery stays within 16 KiB (§6)."""
    victim = await harness.victim()
    peer, dial, answer = await dial_raw(harness, victim, {"accepted_limits": Limits.minimums()})
    assert isinstance(answer, bytes) and len(answer) == 64
    assert peer.violations == []  # the Confirm signature verified (§4.5)
    conn = await asyncio.wait_for(dial, 5.0)
    assert conn.negotiated.limits.max_message_bytes == MIN_MAX_MESSAGE_BYTES
    assert conn.negotiated.limits.idle_timeout_millis == MIN_IDLE_TIMEOUT_MILLIS
    peer.start_mux()
    # The initiator opens the discovery stream (§3 step 5), with an odd id.
    await peer.wait_until(lambda: 1 in peer.streams, 5.0, "the victim's discovery OPEN")
    startup = [await peer.recv_discovery(1) for _ in range(3)]
    assert [type(m) for m in startup] == [DHello, DGetPeers, DGetServices]
    assert peer.violations == []


# --------------------------------------------------------------------------- time bound


@pytest.mark.parametrize("stop_after", ["nothing", "half-hello", "ack"])
async def test_handshake_that_never_completes(harness: Harness, stop_after: str) -> None:
    victim = await harness.victim(transport=TransportConfig(handshake_timeout=1.0))
    peer = await harness.raw(victim)
    started = time.monotonic()
    if stop_after == "half-hello":
        peer.send_raw(u32(141) + bytes([1]) + b"ZAKCTRL\x00")
    elif stop_after == "ack":
        ack = await peer.handshake(harness.params(victim), confirm="none")
        assert ack.node_id == victim.node_id
    await expect_refusal(peer, 0, "timeout")
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 4.0, elapsed
    await check_failed(harness, victim, "timeout", punitive=False)
    assert victim.transport.pending_handshakes == 0
    await harness.assert_serves_honest_peer(victim)


# --------------------------------------------------------------------------- admission


async def test_pending_handshake_cap(harness: Harness) -> None:
    victim = await harness.victim(transport=TransportConfig(max_pending_handshakes=1))
    stalled = await harness.raw(victim)
    await harness.wait_event(victim, "handshake", "control.started")
    peer = await harness.raw(victim)
    await expect_refusal(peer, RESOURCE, "pending_handshake")
    ev = await harness.wait_event(victim, "conn", "rejected.admission")
    assert ev.fields["reason"] == "pending_handshake"
    assert victim.metrics.value(REJECTED, reason="pending_handshake") == 1.0
    await stalled.aclose()
    await harness.wait_event(victim, "handshake", "control.failed", reason="eof")
    await harness.assert_serves_honest_peer(victim)


async def test_connection_cap(harness: Harness) -> None:
    victim = await harness.victim(transport=TransportConfig(max_connections=1))
    first = await harness.session(victim)
    peer = await harness.raw(victim)
    await expect_refusal(peer, RESOURCE, "admission")
    assert victim.metrics.value(REJECTED, reason="admission") == 1.0
    conn = victim.transport.peers.get(first.node_id)
    assert conn is not None and not conn.closed  # the admitted peer is untouched
    await first.aclose()
    await harness.wait_event(victim, "conn", "closed.neutral", peer=first.label)
    await harness.wait_until_deregistered(victim, first.node_id)
    await harness.assert_serves_honest_peer(victim)


async def test_per_ip_cap_refuses_instead_of_the_ack(harness: Harness) -> None:
    victim = await harness.victim(transport=TransportConfig(max_connections_per_ip=1))
    first = await harness.session(victim)
    second = await harness.raw(victim)
    await second.send_hello(harness.params(victim))
    await expect_refusal(second, RESOURCE, "per_ip")
    ev = await harness.wait_event(victim, "conn", "rejected.admission")
    assert ev.fields["reason"] == "per_ip"
    assert victim.metrics.value(REJECTED, reason="per_ip") == 1.0
    await check_failed(harness, victim, "per_ip", punitive=False)
    assert victim.transport.peers.get(second.node_id) is None
    conn = victim.transport.peers.get(first.node_id)
    assert conn is not None and not conn.closed


async def test_per_ip_cap_exempts_a_redial_of_a_registered_peer(harness: Harness) -> None:
    victim = await harness.victim(transport=TransportConfig(max_connections_per_ip=1))
    key = Key()
    await harness.session(victim, key)
    again = await harness.raw(victim, key)
    ack = await again.handshake(harness.params(victim))  # no per_ip refusal: an Ack comes
    assert ack.node_id == victim.node_id


async def test_duplicate_session_keeps_one_connection(harness: Harness) -> None:
    """§3 step 4: a second session of the same key leaves exactly one registered."""
    victim = await harness.victim()
    key = Key()
    first = await harness.session(victim, key)
    second = await harness.raw(victim, key)
    await second.handshake(harness.params(victim))
    # Whichever transcript hash is smaller survives; the loser gets CLOSE code 0.
    loser_close = await asyncio.wait_for(_first_closed(first, second), timeout=5.0)
    assert loser_close.code == 0
    assert loser_close.reason in ("duplicate", "duplicate_replaced")
    conn = victim.transport.peers.get(key.node_id)
    assert conn is not None and not conn.closed


async def _first_closed(a: RawPeer, b: RawPeer) -> ControlClose:
    tasks = [asyncio.ensure_future(p.wait_close()) for p in (a, b)]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    return next(iter(done)).result()
