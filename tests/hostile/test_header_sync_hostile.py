"""Hostile header-sync traffic against a real node (docs/PROTOCOL.md §8).

Every case is checked through what a peer or an operator can observe: whether the victim
closes the connection (CLOSE code 0 ``header_sync:<reason>``, journaled ``closed.punitive``)
or keeps it (a later request on the same stream is still answered), and the misbehavior
record it leaves (journal ``misbehavior/recorded`` and the snapshot's ``misbehavior`` list,
service ``header_sync``, action ``disconnected`` or ``recorded``), per §8.6. The raw peer
builds every byte from the document; headers it receives are checked with its own BLAKE2b.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
from rawpeer import (
    CAP_DISCOVERY,
    CAP_HEADER_SYNC,
    DEMO_BITS,
    HEADER_LEN,
    HS_ADVERTISED_MAX_HEADERS,
    HS_ADVERTISED_MAX_INFLIGHT,
    HS_GET_HEADERS,
    HS_HEADERS,
    HS_MAX_HEADERS,
    HS_NEW_BLOCK,
    HS_STATUS,
    KIND_HEADER_SYNC,
    MAX_BLOCK_BODY,
    MIN_MAX_MESSAGE_BYTES,
    NEUTRAL,
    AckParams,
    ControlClose,
    HGetHeaders,
    HHeaders,
    HMessage,
    HStatus,
    Limits,
    RawHeader,
    RawPeer,
    RawPeerError,
    genesis,
    hs_get_headers,
    hs_headers,
    hs_new_block,
    hs_status,
    meets_pow,
    mine_chain,
    mine_child,
)

from node_core.header_sync.entries import HeaderSyncConfig
from node_core.node import Node

if TYPE_CHECKING:
    from conftest import Harness

SERVICE = "header_sync"
MISBEHAVIOR = "zakura_peer_misbehavior_total"
CLOSED = "zakura_p2p_conn_closed_total"
TIMEOUT_DROPPED = "sync_header_request_timeout_dropped_total"
#: Blocks every victim pre-generates unless a test says otherwise.
BLOCKS = 12
WAIT = 5.0


# --------------------------------------------------------------------------- helpers


async def hs_victim(h: Harness, blocks: int = BLOCKS, **kwargs: Any) -> Node:
    return await h.victim(blocks=blocks, chain_seed=7, **kwargs)


async def hs_session(h: Harness, victim: Node) -> tuple[RawPeer, int, HStatus]:
    """A raw peer offering header sync (§4.7) that opened the kind-5 stream (§8.1) and read
    the victim's first message, which must be its Status (§8.5 step 1)."""
    peer = await h.session(victim, capabilities=CAP_DISCOVERY | CAP_HEADER_SYNC)
    assert peer.ack is not None and peer.ack.accepted_capabilities & CAP_HEADER_SYNC
    sid = peer.open_header_sync()
    first = await peer.recv_hs(sid)
    assert isinstance(first, HStatus), first
    return peer, sid, first


def genesis_hash(victim: Node) -> bytes:
    g = genesis(victim.config.network_id)
    assert g.header.hash == victim.chain_id  # §8.2: the chain id is the genesis hash
    return g.header.hash


def our_status(victim: Node, tip: RawHeader | None = None, **fields: int) -> bytes:
    """A Status for a chain that ends at ``tip`` (default: genesis, below the victim's tip)."""
    if tip is None:
        return hs_status(0, genesis_hash(victim), **fields)
    return hs_status(tip.height, tip.hash, **fields)


async def fetch(peer: RawPeer, sid: int, start: int, count: int) -> HHeaders:
    """Ask for headers and return the answer, which must be the next Headers (§8.5 step 5)."""
    peer.send_hs(sid, hs_get_headers(start, count))
    msg = await next_answer(peer, sid)
    assert isinstance(msg, HHeaders), msg
    return msg


async def next_answer(peer: RawPeer, sid: int) -> HMessage:
    """The next message that is not a Status (the victim may refresh its Status any time)."""
    while True:
        msg = await peer.recv_hs(sid)
        if not isinstance(msg, HStatus):
            return msg


def check_links(parent_hash: bytes, start: int, headers: list[RawHeader]) -> None:
    """§8.2 with our own BLAKE2b: heights count up from ``start``, each header names its
    parent's hash, time never goes back, the proof of work holds at the demo bits."""
    prev_hash, prev_time = parent_hash, 0
    for i, hd in enumerate(headers):
        assert (hd.version, hd.height, hd.bits) == (1, start + i, DEMO_BITS)
        assert hd.prev_hash == prev_hash, f"header {hd.height} does not link"
        assert hd.time >= prev_time
        assert meets_pow(hd.hash, hd.bits)
        prev_hash, prev_time = hd.hash, hd.time


async def victim_chain(peer: RawPeer, sid: int, victim: Node) -> list[RawHeader]:
    """The victim's whole header chain, genesis first, fetched over the wire and checked."""
    tip = victim.chain.header_tip[0]
    got = (await fetch(peer, sid, 1, tip)).decoded()
    check_links(genesis_hash(victim), 1, got)
    return [genesis(victim.config.network_id).header, *got]


async def hs_fetch_chain_with_status(peer: RawPeer, sid: int, victim: Node) -> list[RawHeader]:
    """Send our (genesis) Status, then fetch and check the victim's chain."""
    peer.send_hs(sid, our_status(victim))
    return await victim_chain(peer, sid, victim)


def records(victim: Node, peer: RawPeer) -> list[dict[str, Any]]:
    """The snapshot's misbehavior rows for ``peer`` (what the console and the API show)."""
    return [
        {k: r[k] for k in ("service", "reason", "action")}
        for r in victim.snapshot()["misbehavior"]
        if r["label"] == peer.label
    ]


async def expect_reject(h: Harness, victim: Node, peer: RawPeer, reason: str) -> None:
    """§8.6 "connection closed": CLOSE code 0 ``header_sync:<reason>`` then end-of-file,
    journaled ``closed.punitive``, one ``disconnected`` misbehavior record, the routine exited
    with a protocol reject, the peer deregistered; an honest peer is still served."""
    assert await peer.wait_close() == ControlClose(NEUTRAL, f"{SERVICE}:{reason}")
    assert peer.violations == []
    closed = await h.wait_event(victim, "conn", "closed.punitive", peer=peer.label)
    assert (closed.fields["code"], closed.fields["reason"], closed.fields["by"]) == (
        NEUTRAL,
        f"{SERVICE}:{reason}",
        "local",
    )
    assert victim.metrics.value(CLOSED, code="0", reason=SERVICE) == 1.0
    rec = await h.wait_event(victim, "misbehavior", "recorded", peer=peer.label)
    assert (rec.service, rec.fields["reason"], rec.fields["action"]) == (
        SERVICE,
        reason,
        "disconnected",
    )
    assert records(victim, peer) == [
        {"service": SERVICE, "reason": reason, "action": "disconnected"}
    ]
    assert victim.metrics.value(MISBEHAVIOR, service=SERVICE, reason=reason) == 1.0
    exited = await h.wait_event(
        victim, "routine", "exited", peer=peer.label, service=SERVICE, cause="protocol_reject"
    )
    assert exited.fields["reason"] == reason
    await h.wait_until_deregistered(victim, peer.node_id)
    await assert_serves_honest_hs_peer(h, victim)


async def assert_serves_honest_hs_peer(h: Harness, victim: Node) -> None:
    peer, sid, status = await hs_session(h, victim)
    peer.send_hs(sid, our_status(victim))
    got = await fetch(peer, sid, 1, 1)
    assert len(got.headers) == min(1, status.tip_height)
    await peer.aclose()


async def expect_recorded(
    h: Harness, victim: Node, peer: RawPeer, reason: str, *, since: int = 0
) -> None:
    """§8.6 "recorded": a ``recorded`` misbehavior row, and the connection is not closed."""
    rec = await h.wait_event(
        victim, "misbehavior", "recorded", peer=peer.label, since=since, reason=reason
    )
    assert (rec.service, rec.fields["action"]) == (SERVICE, "recorded")
    assert {"service": SERVICE, "reason": reason, "action": "recorded"} in records(victim, peer)
    assert_open(victim, peer)


def assert_open(victim: Node, peer: RawPeer) -> None:
    assert peer.close is None and not peer.eof
    conn = victim.transport.peers.get(peer.node_id)
    assert conn is not None and not conn.closed
    assert all(r["action"] != "disconnected" for r in records(victim, peer))
    assert peer.violations == []


# --------------------------------------------------------------------------- conformance


async def test_victim_status_matches_the_document(harness: Harness) -> None:
    """§8.3 / §8.5 step 1: the first message on the stream is the victim's Status with its
    header tip and the advertised limits 1000 and 10."""
    victim = await hs_victim(harness)
    peer, _sid, status = await hs_session(harness, victim)
    assert victim.chain.header_tip == (BLOCKS, status.tip_hash)
    assert status.tip_height == BLOCKS
    assert status.anchor_height <= status.tip_height
    assert (status.max_headers_per_response, status.max_inflight_requests) == (
        HS_ADVERTISED_MAX_HEADERS,
        HS_ADVERTISED_MAX_INFLIGHT,
    )
    assert peer.violations == []


async def test_victim_serves_linked_headers(harness: Harness) -> None:
    """§8.5 step 5: after our Status, GetHeaders(1, n) returns the n headers of heights 1..n,
    which link by BLAKE2b-256 to genesis and meet their proof of work; hints are body sizes."""
    victim = await hs_victim(harness)
    peer, sid, status = await hs_session(harness, victim)
    peer.send_hs(sid, our_status(victim))
    got = await fetch(peer, sid, 1, BLOCKS)
    assert len(got.headers) == BLOCKS
    assert all(len(hd) == HEADER_LEN for hd in got.headers)
    headers = got.decoded()
    check_links(genesis_hash(victim), 1, headers)
    assert headers[-1].hash == status.tip_hash
    for hd, hint in zip(headers, got.hints, strict=True):
        body = await victim.chain.store.body_at(hd.height)
        assert body is not None
        assert hint in (0, len(body))  # advisory: 0 = unknown (§8.3)
    # A tail request gets what exists, at most ``count``; past the tip, an empty answer.
    tail = await fetch(peer, sid, BLOCKS - 2, 10)
    assert [hd.height for hd in tail.decoded()] == [BLOCKS - 2, BLOCKS - 1, BLOCKS]
    assert tail.headers == got.headers[-3:]
    assert (await fetch(peer, sid, BLOCKS + 1, 5)).headers == ()
    # The serving limit itself (1000, §8.4) is served, not recorded.
    assert len((await fetch(peer, sid, 1, HS_ADVERTISED_MAX_HEADERS)).headers) == BLOCKS
    assert_open(victim, peer)
    assert records(victim, peer) == []


async def test_victim_asks_for_headers_one_request_at_a_time(harness: Harness) -> None:
    """§8.5 step 3: our Status above the victim's tip makes it ask GetHeaders(tip + 1, count
    ≤ our max_headers_per_response), one request in flight; each answer frees the slot, and
    the victim ends up with our headers."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    chain = await hs_fetch_chain_with_status(peer, sid, victim)
    ours = [b.header for b in mine_chain(chain[-1], 5)]  # heights BLOCKS+1 .. BLOCKS+5
    per_response = 2
    peer.send_hs(sid, our_status(victim, ours[-1], max_headers=per_response))
    by_height = {hd.height: hd for hd in ours}
    next_start = BLOCKS + 1
    while next_start <= ours[-1].height:
        req = await next_answer(peer, sid)
        assert isinstance(req, HGetHeaders), req
        assert req.start_height == next_start
        assert 1 <= req.count <= per_response
        # One in flight: a round trip of our own on the same stream comes back before any
        # second GetHeaders (the victim's frames are ordered).
        peer.send_hs(sid, hs_get_headers(1, 1))
        echo = await next_answer(peer, sid)
        assert isinstance(echo, HHeaders), f"a second request in flight: {echo}"
        wanted = range(req.start_height, req.start_height + req.count)
        answer = [by_height[hgt].encode() for hgt in wanted if hgt in by_height]
        peer.send_hs(sid, hs_headers(answer))
        next_start = req.start_height + len(answer)
    await harness.wait_until(
        lambda: victim.chain.header_tip == (ours[-1].height, ours[-1].hash),
        "the victim to adopt our headers",
    )
    assert records(victim, peer) == []
    assert_open(victim, peer)


async def test_victim_dials_and_opens_header_sync(harness: Harness) -> None:
    """§3 step 5: as initiator the victim opens the kind-5 stream itself (odd id) and sends
    its Status first."""
    victim = await hs_victim(harness)
    peer = RawPeer()
    harness.raws.append(peer)
    port = await peer.listen()
    task = asyncio.ensure_future(victim.transport.dial("127.0.0.1", port))
    hello = await peer.respond(AckParams(chain_id=victim.chain_id))
    assert hello.capabilities & CAP_HEADER_SYNC
    assert isinstance(await peer.read_confirm(), bytes)
    await asyncio.wait_for(task, WAIT)
    peer.start_mux()
    sid = await peer.victim_stream(KIND_HEADER_SYNC)
    assert sid % 2 == 1
    status = await peer.recv_hs(sid)
    assert isinstance(status, HStatus) and status.tip_height == BLOCKS
    assert peer.violations == []


# --------------------------------------------------------------------------- disconnects


@pytest.mark.parametrize("send_status", [False, True], ids=["before-status", "after-status"])
async def test_unsolicited_headers(harness: Harness, send_status: bool) -> None:
    """§8.6: a Headers with no request outstanding closes the connection."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    if send_status:
        peer.send_hs(sid, our_status(victim))
    peer.send_hs(sid, hs_headers([genesis(victim.config.network_id).header.encode()]))
    await expect_reject(harness, victim, peer, "unsolicited_headers")


async def test_unsolicited_headers_is_judged_by_the_frame_type(harness: Harness) -> None:
    """§8.1: type 3 is correlated before anything is decoded, so even a garbled frame of
    type 3 with no request outstanding is ``unsolicited_headers``, not malformed."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    peer.send_hs(sid, b"\x63garbage", message_type=HS_HEADERS, flags=1)
    await expect_reject(harness, victim, peer, "unsolicited_headers")


def _truncated(headers: list[bytes]) -> bytes:
    return hs_headers(headers, count=len(headers) + 1)


def _trailing(headers: list[bytes]) -> bytes:
    return hs_headers(headers) + b"\x00"


def _cut(headers: list[bytes]) -> bytes:
    return hs_headers(headers)[:-3]


def _too_many(headers: list[bytes]) -> bytes:
    # We advertised max_headers_per_response = 1, so 2 is more than the victim can have asked.
    return hs_headers(headers + headers)


def _wrong_tag(headers: list[bytes]) -> bytes:
    return bytes([HS_STATUS]) + hs_headers(headers)[1:]


@pytest.mark.parametrize(
    "garble",
    [
        pytest.param(_truncated, id="count-beyond-payload"),
        pytest.param(_trailing, id="trailing-byte"),
        pytest.param(_cut, id="cut-hint"),
        pytest.param(_too_many, id="more-than-asked"),
        pytest.param(_wrong_tag, id="payload-tag-not-3"),
    ],
)
async def test_correlated_but_malformed_headers(harness: Harness, garble: Any) -> None:
    """§8.6: a Headers answering the victim's own GetHeaders but not decodable against it is
    ``malformed_message`` (the request was outstanding, so not ``unsolicited_headers``)."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    chain = await hs_fetch_chain_with_status(peer, sid, victim)
    ours = [b.header for b in mine_chain(chain[-1], 3)]
    peer.send_hs(sid, our_status(victim, ours[-1], max_headers=1))
    req = await next_answer(peer, sid)
    assert isinstance(req, HGetHeaders) and (req.start_height, req.count) == (BLOCKS + 1, 1)
    payload = garble([ours[0].encode()])
    peer.send_hs(sid, payload, message_type=HS_HEADERS)
    await expect_reject(harness, victim, peer, "malformed_message")


@pytest.mark.parametrize(
    ("message_type", "flags", "payload"),
    [
        pytest.param(99, 0, bytes([99]), id="unknown-tag-99"),
        pytest.param(0, 0, bytes([0]), id="tag-0"),
        pytest.param(HS_STATUS, 1, None, id="status-with-flags"),
        pytest.param(HS_GET_HEADERS, 0x8000, hs_get_headers(1, 1), id="get-headers-with-flags"),
        pytest.param(HS_STATUS, 0, hs_get_headers(1, 1), id="type-1-tag-2"),
        pytest.param(HS_GET_HEADERS, 0, None, id="type-2-tag-1"),
        pytest.param(0x101, 0, None, id="type-not-u8"),
        pytest.param(HS_STATUS, 0, b"", id="empty"),
        pytest.param(HS_STATUS, 0, "status[:-1]", id="status-truncated"),
        pytest.param(HS_STATUS, 0, "status+1", id="status-trailing"),
        pytest.param(HS_GET_HEADERS, 0, hs_get_headers(1, 1)[:-1], id="get-headers-truncated"),
        pytest.param(HS_GET_HEADERS, 0, hs_get_headers(1, 0), id="get-headers-count-0"),
        pytest.param(
            HS_GET_HEADERS, 0, hs_get_headers(1, HS_MAX_HEADERS + 1), id="get-headers-count-4001"
        ),
        pytest.param(HS_NEW_BLOCK, 0, bytes([HS_NEW_BLOCK]) + bytes(50), id="new-block-cut"),
        pytest.param(
            HS_NEW_BLOCK,
            0,
            hs_new_block(bytes(HEADER_LEN), b"", body_len=2 * 1024 * 1024 + 1),
            id="new-block-body-over-cap",
        ),
    ],
)
async def test_undecodable_frame(
    harness: Harness, message_type: int, flags: int, payload: bytes | str | None
) -> None:
    """§8.1 / §8.6: a frame that does not decode closes the connection,
    ``malformed_message``. GetHeaders counts 0 and 4001 do not decode (§8.3)."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    status = our_status(victim)
    if payload is None:
        raw = status
    elif payload == "status[:-1]":
        raw = status[:-1]
    elif payload == "status+1":
        raw = status + b"\x00"
    else:
        assert isinstance(payload, bytes)
        raw = payload
    if message_type == HS_GET_HEADERS and raw[:1] == bytes([HS_GET_HEADERS]):
        peer.send_hs(sid, status)  # so a decodable GetHeaders would be served, not recorded
    peer.send_hs(sid, raw, message_type=message_type, flags=flags)
    await expect_reject(harness, victim, peer, "malformed_message")


# --------------------------------------------------------------------------- record-only


async def test_get_headers_before_status_is_recorded_and_ignored(harness: Harness) -> None:
    """§8.5 step 5: a GetHeaders before our Status is ``get_headers_spam`` (recorded), not
    answered; the victim keeps processing: a Status then a GetHeaders is served."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    peer.send_hs(sid, hs_get_headers(1, 1))
    await expect_recorded(harness, victim, peer, "get_headers_spam")
    peer.send_hs(sid, our_status(victim))
    got = await fetch(peer, sid, 1, 3)
    assert [hd.height for hd in got.decoded()] == [1, 2, 3]  # the ignored request got nothing
    assert records(victim, peer) == [
        {"service": SERVICE, "reason": "get_headers_spam", "action": "recorded"}
    ]
    assert_open(victim, peer)


@pytest.mark.parametrize("count", [HS_ADVERTISED_MAX_HEADERS + 1, HS_MAX_HEADERS])
async def test_get_headers_above_the_serving_limit(harness: Harness, count: int) -> None:
    """§8.4: 1001..4000 decodes but exceeds the serving limit: ``get_headers_too_long``,
    recorded, not answered; the next request within the limit is served."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    peer.send_hs(sid, our_status(victim))
    peer.send_hs(sid, hs_get_headers(1, count))
    await expect_recorded(harness, victim, peer, "get_headers_too_long")
    got = await fetch(peer, sid, 1, 2)
    assert [hd.height for hd in got.decoded()] == [1, 2]
    assert records(victim, peer) == [
        {"service": SERVICE, "reason": "get_headers_too_long", "action": "recorded"}
    ]


async def test_status_with_anchor_above_tip(harness: Harness) -> None:
    """§8.5 step 2: anchor_height > tip_height is ``invalid_status``, recorded and not applied
    (a GetHeaders after it is still "before any Status"); a valid Status then is applied."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    peer.send_hs(sid, hs_status(3, bytes(32), anchor_height=4))
    await expect_recorded(harness, victim, peer, "invalid_status")
    since = victim.journal.last_seq
    peer.send_hs(sid, hs_get_headers(1, 1))
    await expect_recorded(harness, victim, peer, "get_headers_spam", since=since)
    peer.send_hs(sid, our_status(victim))
    assert len((await fetch(peer, sid, 1, 1)).headers) == 1
    assert [r["reason"] for r in records(victim, peer)] == ["invalid_status", "get_headers_spam"]


async def test_status_spam_and_a_rising_tip(harness: Harness) -> None:
    """§8.5 step 2: a second Status with the same tip within 5 s is ``status_spam``
    (recorded); a Status with a higher tip is applied at once, unrecorded, and makes the
    victim ask us for the new headers."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    chain = await hs_fetch_chain_with_status(peer, sid, victim)
    started = time.monotonic()
    peer.send_hs(sid, our_status(victim))  # same tip as the Status already applied
    await expect_recorded(harness, victim, peer, "status_spam")
    assert time.monotonic() - started < 5.0
    ours = [b.header for b in mine_chain(chain[-1], 2)]
    since = victim.journal.last_seq
    peer.send_hs(sid, our_status(victim, ours[-1]))
    req = await next_answer(peer, sid)
    assert isinstance(req, HGetHeaders) and req.start_height == BLOCKS + 1
    assert harness.events(victim, "misbehavior", "recorded", peer.label)[-1].seq <= since
    assert [r["reason"] for r in records(victim, peer)] == ["status_spam"]
    assert_open(victim, peer)


# --------------------------------------------------------------------------- NewBlock


async def test_new_block_flood_second_dropped_before_decode(harness: Harness) -> None:
    """§8.5 step 6: of two NewBlocks within 5 s the first is processed (the victim adopts
    it) and the second is dropped unread: even an undecodable one costs no record and no
    disconnect."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    chain = await hs_fetch_chain_with_status(peer, sid, victim)
    block = mine_child(chain[-1], b"flood one")
    with peer.batch():
        peer.send_hs(sid, hs_new_block(block.header.encode(), block.body))
        peer.send_hs(sid, bytes([HS_NEW_BLOCK, 1, 2, 3]))  # would be malformed if decoded
    await harness.wait_until(
        lambda: victim.chain.header_tip == (BLOCKS + 1, block.header.hash),
        "the victim to adopt the first NewBlock",
    )
    assert len((await fetch(peer, sid, 1, 1)).headers) == 1  # a round trip after both
    assert records(victim, peer) == []
    assert_open(victim, peer)


async def test_new_block_flood_two_distinct_blocks(harness: Harness) -> None:
    """§8.5 step 6: two distinct valid blocks at one height within 5 s: the first is adopted,
    the second never is, and nothing is recorded."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    chain = await hs_fetch_chain_with_status(peer, sid, victim)
    first = mine_child(chain[-1], b"flood a")
    second = mine_child(chain[-1], b"flood b", time_step=2)
    assert first.header.hash != second.header.hash
    with peer.batch():
        peer.send_hs(sid, hs_new_block(first.header.encode(), first.body))
        peer.send_hs(sid, hs_new_block(second.header.encode(), second.body))
    await harness.wait_until(
        lambda: victim.chain.header_tip == (BLOCKS + 1, first.header.hash),
        "the victim to adopt the first NewBlock",
    )
    got = await fetch(peer, sid, BLOCKS + 1, 1)  # a round trip after both
    assert got.headers == (first.header.encode(),)
    assert await victim.chain.store.height_of(second.header.hash) is None
    assert records(victim, peer) == []
    assert_open(victim, peer)


async def test_new_block_with_a_bad_proof_of_work_is_recorded(harness: Harness) -> None:
    """§8.5 step 6: a decoded NewBlock that fails §8.2 is ``invalid_new_block``, recorded;
    the connection stays and the victim's tip does not move."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    chain = await hs_fetch_chain_with_status(peer, sid, victim)
    good = mine_child(chain[-1], b"bad pow")
    nonce = good.header.nonce + 1
    while meets_pow(replace(good.header, nonce=nonce).hash, DEMO_BITS):
        nonce += 1
    bad = replace(good.header, nonce=nonce)
    peer.send_hs(sid, hs_new_block(bad.encode(), good.body))
    await expect_recorded(harness, victim, peer, "invalid_new_block")
    assert len((await fetch(peer, sid, 1, 1)).headers) == 1
    assert victim.chain.header_tip[0] == BLOCKS


async def test_new_block_body_above_the_block_cap_is_recorded(harness: Harness) -> None:
    """§8.3: a NewBlock body of 2 MiB - 1 KiB + 1 still fits the message (so it decodes) but
    is no block (§8.2): ``malformed_message``, recorded only; the connection stays."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    chain = await hs_fetch_chain_with_status(peer, sid, victim)
    body = bytes(MAX_BLOCK_BODY + 1)
    block = mine_child(chain[-1], body)
    peer.send_hs(sid, hs_new_block(block.header.encode(), body))
    await expect_recorded(harness, victim, peer, "malformed_message")
    assert len((await fetch(peer, sid, 1, 1)).headers) == 1
    assert victim.chain.header_tip[0] == BLOCKS


# --------------------------------------------------------------------------- answers and slots


async def test_answer_that_does_not_verify_is_recorded(harness: Harness) -> None:
    """§8.6: a decodable answer whose headers link but miss their proof of work is
    ``invalid_range``, recorded only; nothing is adopted and the connection stays."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    chain = await hs_fetch_chain_with_status(peer, sid, victim)
    ours = [b.header for b in mine_chain(chain[-1], 2)]
    peer.send_hs(sid, our_status(victim, ours[-1]))
    req = await next_answer(peer, sid)
    assert isinstance(req, HGetHeaders) and req.start_height == BLOCKS + 1
    first = ours[0]
    nonce = first.nonce + 1
    while meets_pow(replace(first, nonce=nonce).hash, DEMO_BITS):
        nonce += 1
    peer.send_hs(sid, hs_headers([replace(first, nonce=nonce).encode()]))
    await expect_recorded(harness, victim, peer, "invalid_range")
    assert len((await fetch(peer, sid, 1, 1)).headers) == 1
    assert victim.chain.header_tip[0] == BLOCKS


async def test_empty_answer_frees_the_slot_after_one_second(harness: Harness) -> None:
    """§8.5 step 4: an empty Headers is no misbehavior; the victim asks again, but not
    before the 1 s empty-answer window lapsed."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    chain = await hs_fetch_chain_with_status(peer, sid, victim)
    ours = [b.header for b in mine_chain(chain[-1], 2)]
    peer.send_hs(sid, our_status(victim, ours[-1]))
    req = await next_answer(peer, sid)
    assert isinstance(req, HGetHeaders) and req.start_height == BLOCKS + 1
    answered = time.monotonic()
    peer.send_hs(sid, hs_headers([]))
    again = await next_answer(peer, sid)
    assert isinstance(again, HGetHeaders) and again.start_height == BLOCKS + 1
    assert time.monotonic() - answered >= 0.9
    assert records(victim, peer) == []
    assert_open(victim, peer)


async def test_serving_slots_are_the_advertised_inflight_limit(harness: Harness) -> None:
    """§8.5 step 5: 11 GetHeaders arriving together: 10 are served (the advertised
    ``max_inflight_requests``), the 11th is ``get_headers_spam``, recorded only."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    peer.send_hs(sid, our_status(victim))
    assert len((await fetch(peer, sid, 1, 1)).headers) == 1  # our Status is applied
    n = HS_ADVERTISED_MAX_INFLIGHT + 1
    with peer.batch():
        for i in range(n):
            peer.send_hs(sid, hs_get_headers(1 + i, 1))
    await expect_recorded(harness, victim, peer, "get_headers_spam")
    served = [await next_answer(peer, sid) for _ in range(HS_ADVERTISED_MAX_INFLIGHT)]
    assert all(isinstance(m, HHeaders) and len(m.headers) == 1 for m in served)
    got = await fetch(peer, sid, 1, 3)  # the next answer is this one: the 11th got none
    assert len(got.headers) == 3
    assert [r["reason"] for r in records(victim, peer)] == ["get_headers_spam"]


async def test_serving_respects_the_negotiated_message_size(harness: Harness) -> None:
    """§6 and §8.4: with the smallest negotiable ``max_message_bytes`` (16 KiB) a peer may
    still ask for up to 1000 headers; the victim must not break the negotiated limit nor
    drop the connection over its own answer (at most (16384 - 5) // 93 = 176 headers fit)."""
    blocks = 200
    victim = await hs_victim(harness, blocks=blocks)
    peer = await harness.session(
        victim, capabilities=CAP_DISCOVERY | CAP_HEADER_SYNC, limits=Limits.minimums()
    )
    sid = peer.open_header_sync()
    assert isinstance(await peer.recv_hs(sid), HStatus)
    peer.send_hs(sid, our_status(victim))
    peer.send_hs(sid, hs_get_headers(1, blocks))
    with contextlib.suppress(RawPeerError):
        await peer.wait_until(
            lambda: any(f.message_type == HS_HEADERS for f in peer.streams[sid].frames),
            WAIT,
            "a Headers answer",
        )
    panics = [e.fields["error"] for e in harness.events(victim, "routine", "panicked", peer.label)]
    assert peer.close is None, f"the victim closed with {peer.close}; panics: {panics}"
    msg = await next_answer(peer, sid)
    assert isinstance(msg, HHeaders)
    assert 1 <= len(msg.headers) <= (MIN_MAX_MESSAGE_BYTES - 5) // 93
    check_links(genesis_hash(victim), 1, msg.decoded())
    assert_open(victim, peer)


async def test_relay_respects_each_peers_negotiated_message_size(harness: Harness) -> None:
    """§8.5 step 6 and §6: a block accepted from one peer is relayed to the others, but a
    peer that negotiated 16 KiB messages must not be dropped because the block (here a
    20 000-byte body) does not fit: one peer's block cannot disconnect another peer."""
    victim = await hs_victim(harness)
    small = await harness.session(
        victim, capabilities=CAP_DISCOVERY | CAP_HEADER_SYNC, limits=Limits.minimums()
    )
    small_sid = small.open_header_sync()
    assert isinstance(await small.recv_hs(small_sid), HStatus)
    small.send_hs(small_sid, our_status(victim))  # tip 0: the relay targets it (§8.5 step 6)
    assert len((await fetch(small, small_sid, 1, 1)).headers) == 1
    miner, sid, _ = await hs_session(harness, victim)
    chain = await hs_fetch_chain_with_status(miner, sid, victim)
    block = mine_child(chain[-1], bytes(range(256)) * 78 + bytes(32))  # 20 000 bytes
    miner.send_hs(sid, hs_new_block(block.header.encode(), block.body))
    await harness.wait_until(
        lambda: victim.chain.header_tip == (BLOCKS + 1, block.header.hash),
        "the victim to adopt the NewBlock",
    )
    with contextlib.suppress(RawPeerError):
        small.send_hs(small_sid, hs_get_headers(BLOCKS + 1, 1))
        await small.wait_until(
            lambda: any(f.message_type == HS_HEADERS for f in small.streams[small_sid].frames),
            WAIT,
            "a Headers answer",
        )
    panics = [e.fields["error"] for e in harness.events(victim, "routine", "panicked", small.label)]
    assert small.close is None, f"the victim closed with {small.close}; panics: {panics}"
    assert_open(victim, small)
    assert_open(victim, miner)


async def test_late_answer_after_a_timeout_is_absorbed_once(harness: Harness) -> None:
    """§8.5 step 4: a request unanswered past the timeout (shortened here) frees the slot;
    the peer's late answer is absorbed silently, once; a second one is unsolicited."""
    victim = await hs_victim(
        harness, header_sync=HeaderSyncConfig(request_timeout=0.3, tick_interval=0.05)
    )
    peer, sid, _ = await hs_session(harness, victim)
    chain = await hs_fetch_chain_with_status(peer, sid, victim)
    ours = [b.header for b in mine_chain(chain[-1], 2)]
    peer.send_hs(sid, our_status(victim, ours[-1]))
    req = await next_answer(peer, sid)
    assert isinstance(req, HGetHeaders) and req.start_height == BLOCKS + 1
    await harness.wait_until(
        lambda: victim.metrics.value(TIMEOUT_DROPPED) == 1.0, "the request to time out"
    )
    late = hs_headers([hd.encode() for hd in ours[: req.count]])
    peer.send_hs(sid, late)
    assert len((await fetch(peer, sid, 1, 1)).headers) == 1  # absorbed: still served
    assert records(victim, peer) == []
    assert victim.chain.header_tip[0] == BLOCKS  # absorbed unread, not adopted
    peer.send_hs(sid, late)
    await expect_reject(harness, victim, peer, "unsolicited_headers")


async def test_fin_ends_the_session_not_the_connection(harness: Harness) -> None:
    """§8.5 step 8: our FIN ends the victim's routine, which FINs back; the connection stays
    and a new kind-5 stream starts a new session with a fresh Status."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    peer.send_hs(sid, our_status(victim))
    assert len((await fetch(peer, sid, 1, 1)).headers) == 1
    peer.send_fin(sid)
    await peer.wait_until(lambda: peer.streams[sid].fin, WAIT, "the victim's FIN")
    exited = await harness.wait_event(victim, "routine", "exited", peer=peer.label, service=SERVICE)
    assert exited.fields["cause"] == "normal"
    again = peer.open_header_sync()
    status = await peer.recv_hs(again)
    assert isinstance(status, HStatus) and status.tip_height == BLOCKS
    peer.send_hs(again, our_status(victim))  # a new session: its Status meter is fresh
    assert len((await fetch(peer, again, 1, 2)).headers) == 2
    assert records(victim, peer) == []
    assert_open(victim, peer)
