"""Claiming a node id without its key (docs/PROTOCOL.md §2, §4.6, §7.3).

Issue 16 defect 3: node id ``01 00..00`` (the identity point) with the Confirm signature
``R = 01 00..00, S = 0`` completed the handshake, answered discovery and was listed in the
victim's snapshot. Plain RFC 8032 verification accepts such forgeries for every small-order
key (and for non-canonical encodings of them), so each case below sends a signature that the
``cryptography`` backend on its own *accepts* wherever one exists, and checks that the victim
refuses it by the §2 rules: at the handshake in both roles, and in discovery records. After
each, an honest peer is still served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from rawpeer import (
    FIELD_P,
    IDENTITY_POINT,
    SMALL_ORDER_IDS,
    AckParams,
    ControlClose,
    DServices,
    Key,
    RawPeer,
    assemble_record,
    d_get_services,
    d_hello,
    d_peers,
    encode_record_body,
    forge_small_order_signature,
    malleate,
    peer_label,
    record_signing_message,
    sign_record,
)

from node_core.node import Node
from node_core.transport.endpoint import DialError

if TYPE_CHECKING:
    from conftest import Harness

FAILED = "zakura_p2p_handshake_failed_total"
MISBEHAVIOR = "zakura_peer_misbehavior_total"
#: The exact signature of the report: R = identity, S = 0.
IDENTITY_FORGERY = IDENTITY_POINT + bytes(32)
#: How many transcripts (handshakes, record sequences) to try for a forgery the plain backend
#: accepts; one exists for a given message with probability >= 0.63, so 16 almost never miss.
FORGE_ATTEMPTS = 16

#: The order of each of SMALL_ORDER_IDS: §2 lists k·T for a point T of order 8, k = 0..7.
_ORDERS = (1, 8, 4, 8, 2, 8, 4, 8)
SMALL_ORDER = [
    pytest.param(enc, id=f"{k}T-order{order}")
    for k, (enc, order) in enumerate(zip(SMALL_ORDER_IDS, _ORDERS, strict=True))
]
#: Non-canonical encodings of small-order points (§2 rule 1); the backend accepts forgeries
#: for these too.
NON_CANONICAL = [
    pytest.param((FIELD_P + 1).to_bytes(32, "little"), id="identity-y=p+1"),
    pytest.param(FIELD_P.to_bytes(32, "little"), id="order4-y=p"),
    pytest.param(b"\x01" + bytes(30) + b"\x80", id="identity-x-sign-set"),
    pytest.param((FIELD_P - 1 | 1 << 255).to_bytes(32, "little"), id="order2-x-sign-set"),
]


def forger(node_id: bytes) -> Callable[[bytes], bytes | None]:
    """Signs ``msg`` "as" ``node_id`` with a small-order ``R`` and ``S = 0``, if the plain
    backend would accept that for this message."""
    return lambda msg: forge_small_order_signature(node_id, msg)


async def expect_mux_refusal(peer: RawPeer, reason: str) -> None:
    """After our Confirm we are in the multiplexer: the refusal is a CLOSE record (§4.6)."""
    assert await peer.wait_close() == ControlClose(0, reason)
    assert peer.violations == []


def assert_not_listed(h: Harness, victim: Node, node_id: bytes) -> None:
    """No session, no snapshot row, no address-book entry, no accepted connection."""
    assert victim.transport.peers.get(node_id) is None
    assert node_id.hex() not in {row["id"] for row in victim.snapshot()["peers"]}
    assert node_id not in victim.book
    assert h.events(victim, "conn", "accepted", peer_label(node_id)) == []


async def check_refused(
    h: Harness, victim: Node, node_id: bytes, *, role: str, reason: str = "bad_signature"
) -> None:
    ev = await h.wait_event(victim, "handshake", "control.failed", reason=reason)
    assert (ev.fields["role"], ev.fields["punitive"]) == (role, True)
    assert victim.metrics.value(FAILED, reason=reason, **{"class": "punitive"}) == 1.0
    assert_not_listed(h, victim, node_id)


async def forged_initiator(h: Harness, victim: Node, node_id: bytes) -> RawPeer:
    """A raw initiator claiming ``node_id`` whose Confirm carries a small-order forgery that
    the plain backend accepts.

    The transcript depends on the victim's Ack nonce, so a handshake whose transcript admits
    no forgery is abandoned and a new one started. Returns the peer, Confirm written and
    reading records. (Should no attempt find a forgery, the reported ``R = identity, S = 0``
    is sent anyway: it must be refused all the same.)
    """
    for attempt in range(FORGE_ATTEMPTS):
        peer = await h.raw(victim)
        ack = await peer.handshake(h.params(victim, node_id=node_id), confirm="none")
        assert ack.node_id == victim.node_id
        sig = forge_small_order_signature(node_id, peer.confirm_message(ack))
        if sig is not None or attempt == FORGE_ATTEMPTS - 1:
            await peer.send_confirm(IDENTITY_FORGERY if sig is None else sig)
            return peer
        await peer.aclose()
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- the report


async def test_identity_point_with_r_identity_s_zero_is_refused(harness: Harness) -> None:
    """The reported case, byte for byte: node id 01 00..00, Confirm R = 01 00..00, S = 0."""
    victim = await harness.victim()
    peer = await harness.raw(victim)
    await peer.handshake(
        harness.params(victim, node_id=IDENTITY_POINT), confirm=lambda _msg: IDENTITY_FORGERY
    )
    await expect_mux_refusal(peer, "bad_signature")
    await check_refused(harness, victim, IDENTITY_POINT, role="responder")
    await harness.assert_serves_honest_peer(victim)
    assert_not_listed(harness, victim, IDENTITY_POINT)


# --------------------------------------------------------------------------- victim responds


@pytest.mark.parametrize("node_id", SMALL_ORDER + NON_CANONICAL)
async def test_initiator_claiming_an_invalid_node_id_is_refused(
    harness: Harness, node_id: bytes
) -> None:
    """§2 / §4.6 step 11: a small-order or non-canonical node id fails the Confirm check."""
    victim = await harness.victim()
    peer = await forged_initiator(harness, victim, node_id)
    await expect_mux_refusal(peer, "bad_signature")
    await check_refused(harness, victim, node_id, role="responder")
    await harness.assert_serves_honest_peer(victim)


async def test_confirm_with_non_canonical_s_is_refused(harness: Harness) -> None:
    """§2: a real key's own signature with S + L in place of S is refused."""
    victim = await harness.victim()
    key = Key()
    peer = await harness.raw(victim, key)
    await peer.handshake(harness.params(victim), confirm=lambda msg: malleate(key.sign(msg)))
    await expect_mux_refusal(peer, "bad_signature")
    await check_refused(harness, victim, key.node_id, role="responder")
    await harness.assert_serves_honest_peer(victim)


# --------------------------------------------------------------------------- victim dials


async def dial_forged_responder(
    h: Harness, victim: Node, ack: dict[str, Any], key: Key | None = None
) -> tuple[RawPeer, asyncio.Future[Any], bytes | ControlClose | None]:
    """The victim dials a raw responder (with ``key``) whose Ack is built from ``ack`` (over
    AckParams); returns the victim's answer to that Ack."""
    peer = RawPeer(key)
    h.raws.append(peer)
    port = await peer.listen()
    dial = asyncio.ensure_future(victim.transport.dial("127.0.0.1", port))
    await peer.respond(AckParams(chain_id=victim.chain_id, **ack))
    return peer, dial, await peer.read_confirm()


def grinding_forger(node_id: bytes) -> Callable[[bytes], bytes | None]:
    """An Ack signer that asks for a fresh Ack nonce until the plain backend accepts a
    small-order forgery, and falls back to R = identity, S = 0 if none turns up."""
    tries = 0

    def sign(msg: bytes) -> bytes | None:
        nonlocal tries
        tries += 1
        sig = forge_small_order_signature(node_id, msg)
        if sig is None and tries >= FORGE_ATTEMPTS:
            return IDENTITY_FORGERY
        return sig

    return sign


@pytest.mark.parametrize("node_id", SMALL_ORDER + NON_CANONICAL[:1])
async def test_victim_dialing_a_responder_with_an_invalid_node_id_refuses_it(
    harness: Harness, node_id: bytes
) -> None:
    """§4.6, the initiator's Ack check: a small-order responder id fails as `bad_signature`
    (control Close code 0, punitive); the dial fails and nothing is registered."""
    victim = await harness.victim()
    peer, dial, answer = await dial_forged_responder(
        harness, victim, {"node_id": node_id, "signer": grinding_forger(node_id)}
    )
    assert answer == ControlClose(0, "bad_signature")
    assert await peer.expect_eof() == b""
    with pytest.raises(DialError) as info:
        await dial
    assert info.value.reason == "handshake_bad_signature"
    await check_refused(harness, victim, node_id, role="initiator")
    assert peer.violations == []
    await harness.assert_serves_honest_peer(victim)


async def test_victim_dialing_a_responder_with_non_canonical_s_refuses_it(
    harness: Harness,
) -> None:
    """§2 / §4.6: the responder's own signature over the right transcript, S + L in place
    of S, is refused like any bad Ack signature."""
    victim = await harness.victim()
    key = Key()
    peer, dial, answer = await dial_forged_responder(
        harness, victim, {"signer": lambda msg: malleate(key.sign(msg))}, key
    )
    assert answer == ControlClose(0, "bad_signature")
    assert await peer.expect_eof() == b""
    assert peer.violations == []
    with pytest.raises(DialError) as info:
        await dial
    assert info.value.reason == "handshake_bad_signature"
    await check_refused(harness, victim, key.node_id, role="initiator")
    await harness.assert_serves_honest_peer(victim)


# --------------------------------------------------------------------------- discovery records


async def start_exchange(h: Harness, victim: Node) -> tuple[RawPeer, int]:
    """An honest session with the discovery stream open and the victim's startup read."""
    peer = await h.session(victim)
    sid = peer.open_stream()
    for _ in range(3):
        await peer.recv_discovery(sid)
    return peer, sid


async def expect_record_reject(h: Harness, victim: Node, peer: RawPeer, reason: str) -> None:
    """§7.4: a hard record problem is a protocol reject closing the connection."""
    assert await peer.wait_close() == ControlClose(0, f"discovery:{reason}")
    assert peer.violations == []
    rec = await h.wait_event(victim, "misbehavior", "recorded", peer=peer.label)
    assert (rec.service, rec.fields["reason"]) == ("discovery", reason)
    assert victim.metrics.value(MISBEHAVIOR, service="discovery", reason=reason) == 1.0
    await h.wait_until_deregistered(victim, peer.node_id)
    await h.assert_serves_honest_peer(victim)


def forged_record(victim: Node, node_id: bytes) -> bytes:
    """A node record claiming ``node_id``, signed with a small-order forgery the plain backend
    accepts (the sequence is varied until one exists; R = identity, S = 0 otherwise)."""
    for sequence in range(1, FORGE_ATTEMPTS + 1):
        body = encode_record_body(
            node_id, chain_id=victim.chain_id, addrs=(("127.0.0.1", 9),), sequence=sequence
        )
        sig = forge_small_order_signature(node_id, record_signing_message(body))
        if sig is not None:
            return assemble_record(body, sig)
    return assemble_record(body, IDENTITY_FORGERY)


@pytest.mark.parametrize(
    "node_id",
    [SMALL_ORDER[0], SMALL_ORDER[1], SMALL_ORDER[4], NON_CANONICAL[0]],
)
async def test_peers_carrying_a_record_by_an_invalid_node_id(
    harness: Harness, node_id: bytes
) -> None:
    """§7.3: a small-order or non-canonical record author is `record_invalid_node_id`, and the
    record never reaches the address book (nor, so, anyone the victim gossips to)."""
    victim = await harness.victim()
    peer, sid = await start_exchange(harness, victim)
    peer.send_discovery(sid, d_peers((forged_record(victim, node_id),)))
    await expect_record_reject(harness, victim, peer, "record_invalid_node_id")
    assert node_id not in victim.book


async def test_peers_carrying_a_record_with_non_canonical_s(harness: Harness) -> None:
    """§7.3: a real author's record whose signature has S + L is `record_bad_signature`."""
    victim = await harness.victim()
    peer, sid = await start_exchange(harness, victim)
    author = Key()
    body = encode_record_body(author.node_id, chain_id=victim.chain_id, addrs=(("127.0.0.1", 9),))
    sig = malleate(author.sign(record_signing_message(body)))
    peer.send_discovery(sid, d_peers((assemble_record(body, sig),)))
    await expect_record_reject(harness, victim, peer, "record_bad_signature")
    assert author.node_id not in victim.book


async def test_own_hello_record_with_non_canonical_s(harness: Harness) -> None:
    """§7.4: the peer's own discovery Hello, its signature malleated to S + L."""
    victim = await harness.victim()
    peer, sid = await start_exchange(harness, victim)
    body = encode_record_body(peer.node_id, chain_id=victim.chain_id, addrs=(("127.0.0.1", 9),))
    sig = malleate(peer.key.sign(record_signing_message(body)))
    peer.send_discovery(sid, d_hello(assemble_record(body, sig)))
    await expect_record_reject(harness, victim, peer, "record_bad_signature")
    assert peer.node_id not in victim.book


async def test_the_same_record_signed_honestly_is_imported(harness: Harness) -> None:
    """The control for the record cases: the same shape of record, honestly signed, is
    accepted and the peer is not blamed."""
    victim = await harness.victim()
    peer, sid = await start_exchange(harness, victim)
    author = Key()
    body = encode_record_body(author.node_id, chain_id=victim.chain_id, addrs=(("127.0.0.1", 9),))
    peer.send_discovery(sid, d_peers((sign_record(author, body),)))
    peer.send_discovery(sid, d_get_services())
    await peer.recv_discovery_of(sid, DServices)
    await harness.wait_until(lambda: author.node_id in victim.book, "the honest record")
    assert peer.close is None
    assert harness.events(victim, "misbehavior", "recorded", peer.label) == []
