"""Hostile discovery traffic against a real node (docs/PROTOCOL.md §7).

A discovery protocol reject must close the offending connection (CLOSE code 0,
``discovery:<reason>``, journaled ``closed.punitive``) and leave a misbehavior record;
advisory record problems are ignored; other peers are never affected.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from rawpeer import (
    NEUTRAL,
    ControlClose,
    DGetPeers,
    DGetServices,
    DHello,
    DMessage,
    DPeers,
    DServices,
    Key,
    RawPeer,
    Summary,
    d_get_peers,
    d_get_services,
    d_hello,
    d_peers,
    d_services,
    encode_record_body,
    sign_record,
    u16,
)

from node_core.discovery.service import DiscoveryConfig
from node_core.node import Node

if TYPE_CHECKING:
    from conftest import Harness

MISBEHAVIOR = "zakura_peer_misbehavior_total"
CLOSED = "zakura_p2p_conn_closed_total"


async def start_exchange(
    h: Harness, victim: Node, key: Key | None = None
) -> tuple[RawPeer, int, list[DMessage]]:
    """Open the discovery stream and read the victim's three startup messages (§7.4 step 1)."""
    peer = await h.session(victim, key)
    sid = peer.open_stream()
    startup = [await peer.recv_discovery(sid) for _ in range(3)]
    return peer, sid, startup


def own_record(peer: RawPeer, victim: Node, **fields: object) -> bytes:
    body = encode_record_body(peer.node_id, chain_id=victim.chain_id, **fields)  # type: ignore[arg-type]
    return sign_record(peer.key, body)


async def expect_reject(h: Harness, victim: Node, peer: RawPeer, reason: str) -> None:
    """§7.4: CLOSE code 0 ``discovery:<reason>`` journaled ``closed.punitive`` (§8), a
    misbehavior record, the peer deregistered; an honest peer is still served."""
    assert await peer.wait_close() == ControlClose(NEUTRAL, f"discovery:{reason}")
    assert peer.violations == []
    closed = await h.wait_event(victim, "conn", "closed.punitive", peer=peer.label)
    assert (closed.fields["code"], closed.fields["reason"], closed.fields["by"]) == (
        NEUTRAL,
        f"discovery:{reason}",
        "local",
    )
    assert h.events(victim, "conn", "closed.neutral", peer.label) == []
    assert victim.metrics.value(CLOSED, code="0", reason="discovery") == 1.0
    rec = await h.wait_event(victim, "misbehavior", "recorded", peer=peer.label)
    assert (rec.service, rec.fields["reason"], rec.fields["action"]) == (
        "discovery",
        reason,
        "disconnected",
    )
    assert victim.metrics.value(MISBEHAVIOR, service="discovery", reason=reason) == 1.0
    exited = await h.wait_event(victim, "routine", "exited", peer=peer.label)
    assert (exited.fields["cause"], exited.fields["reason"]) == ("protocol_reject", reason)
    await h.wait_until_deregistered(victim, peer.node_id)
    await h.assert_serves_honest_peer(victim)


# --------------------------------------------------------------------------- conformance


async def test_victim_exchange_matches_the_document(harness: Harness) -> None:
    victim = await harness.victim()
    peer, sid, startup = await start_exchange(harness, victim)
    hello, get_peers, get_services = startup
    # Hello: the victim's own signed record (§7.3).
    assert isinstance(hello, DHello)
    assert hello.record.verifies()
    rec = hello.record.record
    assert rec.node_id == victim.node_id
    assert rec.addrs == (("127.0.0.1", victim.transport.listen_port),)
    assert rec.services == ("zakura.discovery.v1",)
    assert (rec.protocol_min, rec.protocol_max, rec.network_id) == (1, 1, 3)
    assert rec.chain_id == victim.chain_id
    assert abs(rec.expires_at_unix_secs - (time.time() + 24 * 3600)) < 60
    # GetPeers then GetServices, in that order.
    assert get_peers == DGetPeers(32, (), tuple(sorted({victim.node_id, peer.node_id})))
    assert get_services == DGetServices(())
    # Answer all three: the exchange completes and the victim keeps serving.
    peer.send_discovery(sid, d_hello(own_record(peer, victim)))
    peer.send_discovery(sid, d_peers())
    peer.send_discovery(sid, d_services(peer.node_id))
    peer.send_discovery(sid, d_get_services())
    services = await peer.recv_discovery_of(sid, DServices)
    assert isinstance(services, DServices)
    assert services.node_id == victim.node_id
    assert abs(services.expires_at_unix_secs - (time.time() + 30)) <= 2
    free = victim.transport.config.max_connections - 1
    assert services.summaries == (Summary("zakura.discovery.v1", free, free, b""),)
    peer.send_discovery(sid, d_get_peers(limit=5))
    peers = await peer.recv_discovery_of(sid, DPeers)
    assert peers == DPeers(())  # the book holds nobody but the requester
    conn = victim.transport.peers.get(peer.node_id)
    assert conn is not None
    state = victim.discovery.exchanges[conn.peer.conn_id]
    assert state.complete and state.phase == "serving"
    assert peer.violations == []


async def test_victim_gossips_an_honest_nodes_record(harness: Harness) -> None:
    victim = await harness.victim()
    honest = await harness.honest_node(victim)
    await harness.wait_until(lambda: honest.node_id in victim.book, "the honest record")
    peer, sid, _ = await start_exchange(harness, victim)
    peer.send_discovery(sid, d_get_peers(limit=32))
    peers = await peer.recv_discovery_of(sid, DPeers)
    assert isinstance(peers, DPeers)
    [record] = peers.records
    assert record.verifies()
    assert record.record.node_id == honest.node_id
    assert record.record.addrs == (("127.0.0.1", honest.transport.listen_port),)


async def test_serving_phase_refreshes_with_get_peers(harness: Harness) -> None:
    victim = await harness.victim(
        discovery=DiscoveryConfig(settle_timeout=0.3, refresh_interval=0.3)
    )
    peer, sid, _ = await start_exchange(harness, victim)
    peer.send_discovery(sid, d_peers())  # answers the startup GetPeers
    again = await peer.recv_discovery_of(sid, DGetPeers)
    assert isinstance(again, DGetPeers) and again.limit == 32
    peer.send_discovery(sid, d_peers())  # solicited by the refresh: accepted
    await peer.recv_discovery_of(sid, DGetPeers)  # and the next refresh comes
    assert peer.close is None and peer.violations == []


async def test_discovery_only_disconnect_when_configured(harness: Harness) -> None:
    victim = await harness.victim(discovery=DiscoveryConfig(disconnect_after_exchange=True))
    peer, sid, _ = await start_exchange(harness, victim)
    peer.send_discovery(sid, d_hello(own_record(peer, victim)))
    peer.send_discovery(sid, d_peers())
    peer.send_discovery(sid, d_services(peer.node_id))
    assert await peer.wait_close() == ControlClose(NEUTRAL, "discovery_only")
    # Our own decision, not the peer's fault: neutral (§8).
    ev = await harness.wait_event(victim, "conn", "closed.neutral", peer=peer.label)
    assert (ev.fields["code"], ev.fields["reason"], ev.fields["by"]) == (
        NEUTRAL,
        "discovery_only",
        "local",
    )
    assert harness.events(victim, "conn", "closed.punitive", peer.label) == []
    assert harness.events(victim, "misbehavior", "recorded", peer.label) == []


# --------------------------------------------------------------------------- envelope


async def test_frame_message_type_99(harness: Harness) -> None:
    victim = await harness.victim()
    peer, sid, _ = await start_exchange(harness, victim)
    peer.send_discovery(sid, d_get_services(), message_type=99)
    await expect_reject(harness, victim, peer, "malformed_message")


async def test_frame_with_flags(harness: Harness) -> None:
    victim = await harness.victim()
    peer, sid, _ = await start_exchange(harness, victim)
    peer.send_discovery(sid, d_get_services(), flags=1)
    await expect_reject(harness, victim, peer, "malformed_message")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(bytes([99]), id="unknown-tag"),
        pytest.param(b"", id="empty"),
        pytest.param(d_get_peers()[:-1], id="truncated"),
        pytest.param(d_get_services() + b"\x00", id="trailing"),
        pytest.param(bytes([2]) + u16(32) + u16(0) + u16(257), id="exclusions-over-cap"),
        pytest.param(bytes([4, 1, 0, 0, 0]), id="empty-service-id"),
        pytest.param(bytes([3, 1, 0]) + u16(2) + u16(4) + b"body" + bytes(64), id="record-v2"),
        pytest.param(bytes([4, 1, 0, 1, 0, 7]), id="unprintable-service-id"),
    ],
)
async def test_malformed_discovery_payload(harness: Harness, payload: bytes) -> None:
    victim = await harness.victim()
    peer, sid, _ = await start_exchange(harness, victim)
    peer.send_discovery(sid, payload)
    await expect_reject(harness, victim, peer, "malformed_message")


# --------------------------------------------------------------------------- authorship


async def test_hello_authored_by_another_key(harness: Harness) -> None:
    victim = await harness.victim()
    peer, sid, _ = await start_exchange(harness, victim)
    other = Key()
    body = encode_record_body(other.node_id, chain_id=victim.chain_id)
    peer.send_discovery(sid, d_hello(sign_record(other, body)))  # validly signed, not ours
    await expect_reject(harness, victim, peer, "hello_node_id_mismatch")
    assert other.node_id not in victim.book


async def test_hello_with_a_forged_signature(harness: Harness) -> None:
    victim = await harness.victim()
    peer, sid, _ = await start_exchange(harness, victim)
    body = encode_record_body(peer.node_id, chain_id=victim.chain_id)
    peer.send_discovery(sid, d_hello(sign_record(Key(), body)))  # our id, someone's signature
    await expect_reject(harness, victim, peer, "record_bad_signature")


async def test_services_for_another_node(harness: Harness) -> None:
    victim = await harness.victim()
    peer, sid, _ = await start_exchange(harness, victim)
    peer.send_discovery(sid, d_services(Key().node_id))
    await expect_reject(harness, victim, peer, "services_node_id_mismatch")


# --------------------------------------------------------------------------- solicitation


async def test_two_peers_responses_to_one_get_peers(harness: Harness) -> None:
    victim = await harness.victim()
    honest = await harness.honest_node(victim)
    peer, sid, _ = await start_exchange(harness, victim)
    peer.send_discovery(sid, d_peers())
    peer.send_discovery(sid, d_get_services())
    await peer.recv_discovery_of(sid, DServices)  # the first Peers was accepted
    started = time.monotonic()
    peer.send_discovery(sid, d_peers())
    await expect_reject(harness, victim, peer, "unsolicited_peers")
    assert time.monotonic() - started < 1.0
    # The well-behaved peer is untouched, on both ends.
    conn = victim.transport.peers.get(honest.node_id)
    assert conn is not None and not conn.closed
    back = honest.transport.peers.get(victim.node_id)
    assert back is not None and not back.closed


async def test_second_services_response(harness: Harness) -> None:
    victim = await harness.victim()
    peer, sid, _ = await start_exchange(harness, victim)
    peer.send_discovery(sid, d_services(peer.node_id))
    peer.send_discovery(sid, d_services(peer.node_id))
    await expect_reject(harness, victim, peer, "unsolicited_services")


# --------------------------------------------------------------------------- records


async def test_peers_carrying_a_forged_record(harness: Harness) -> None:
    victim = await harness.victim()
    peer, sid, _ = await start_exchange(harness, victim)
    victim_claim = Key()
    body = encode_record_body(
        victim_claim.node_id, chain_id=victim.chain_id, addrs=(("127.0.0.1", 9),)
    )
    peer.send_discovery(sid, d_peers((sign_record(Key(), body),)))
    await expect_reject(harness, victim, peer, "record_bad_signature")
    assert victim_claim.node_id not in victim.book


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        pytest.param({"network_id": 2}, "record_wrong_network", id="network"),
        pytest.param({"chain_id": b"\x07" * 32}, "record_wrong_chain", id="chain"),
    ],
)
async def test_peers_carrying_a_foreign_record(
    harness: Harness, fields: dict[str, object], reason: str
) -> None:

    victim = await harness.victim()
    peer, sid, _ = await start_exchange(harness, victim)
    other = Key()
    args: dict[str, object] = {"chain_id": victim.chain_id, "addrs": (("127.0.0.1", 9),)}
    args.update(fields)
    body = encode_record_body(other.node_id, **args)  # type: ignore[arg-type]
    peer.send_discovery(sid, d_peers((sign_record(other, body),)))
    await expect_reject(harness, victim, peer, reason)


async def test_peers_carrying_a_record_by_an_invalid_key(harness: Harness) -> None:
    victim = await harness.victim()
    peer, sid, _ = await start_exchange(harness, victim)
    bogus = b"\x02" + bytes(31)  # not a point on the curve
    body = encode_record_body(bogus, chain_id=victim.chain_id, addrs=(("127.0.0.1", 9),))
    peer.send_discovery(sid, d_peers((sign_record(Key(), body),)))
    await expect_reject(harness, victim, peer, "record_invalid_node_id")


async def test_advisory_records_are_ignored(harness: Harness) -> None:
    """§7.3: expired, far-future or address-less records are dropped, the peer is not blamed."""
    victim = await harness.victim()
    peer, sid, _ = await start_exchange(harness, victim)
    keys = [Key(), Key(), Key(), Key()]
    now = int(time.time())
    bodies = [
        encode_record_body(
            keys[0].node_id, chain_id=victim.chain_id, addrs=(("127.0.0.1", 9),), expires_at=now - 1
        ),
        encode_record_body(
            keys[1].node_id,
            chain_id=victim.chain_id,
            addrs=(("127.0.0.1", 9),),
            expires_at=now + 48 * 3600,
        ),
        encode_record_body(keys[2].node_id, chain_id=victim.chain_id, addrs=()),
        encode_record_body(keys[3].node_id, chain_id=victim.chain_id, addrs=(("0.0.0.0", 9),)),
    ]
    records = tuple(sign_record(k, b) for k, b in zip(keys, bodies, strict=True))
    peer.send_discovery(sid, d_peers(records))
    peer.send_discovery(sid, d_get_services())
    await peer.recv_discovery_of(sid, DServices)  # still served after the Peers
    assert peer.close is None
    assert all(k.node_id not in victim.book for k in keys)
    assert harness.events(victim, "misbehavior", "recorded", peer.label) == []


async def test_loopback_records_are_imported_and_gossiped(harness: Harness) -> None:
    """§10 deviation 10: loopback addresses are usable; a record learned is passed on."""
    victim = await harness.victim()
    gossiper, sid, _ = await start_exchange(harness, victim)
    gossiper.send_discovery(sid, d_hello(own_record(gossiper, victim, addrs=(("127.0.0.1", 9),))))
    await harness.wait_until(lambda: gossiper.node_id in victim.book, "the gossiper's record")
    reader, rsid, _ = await start_exchange(harness, victim)
    reader.send_discovery(rsid, d_get_peers())
    peers = await reader.recv_discovery_of(rsid, DPeers)
    assert isinstance(peers, DPeers)
    assert [r.record.node_id for r in peers.records] == [gossiper.node_id]
    assert peers.records[0].verifies()
