"""How a node reads a peer's records off the socket (``node_core/transport/receiver.py``).

The node reads large chunks into its own buffer and carries out every record in them in one
pass; these attack the edges of that: records that arrive in the same segment as the
handshake's last message, records dribbled a byte at a time, a peer that ends the stream,
and the operator's throttle, which must still pace each record by its size.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rawpeer import (
    DISCOVERY_FRAME_CAP,
    DISCOVERY_VERSION,
    KIND_DISCOVERY,
    REC_OPEN,
    DHello,
    encode_confirm,
    encode_prelude,
    encode_record,
)

if TYPE_CHECKING:
    from conftest import Harness


async def test_records_in_the_same_segment_as_the_confirm(harness: Harness) -> None:
    """The handshake's reader already holds them: they are carried out first, in order."""
    victim = await harness.victim()
    peer = await harness.raw(victim)
    ack = await peer.handshake(harness.params(victim), confirm="none")
    with peer.batch():
        peer.send_control(encode_confirm(peer.confirm_signature(ack)))
        sid = peer.open_stream()
        peer.send_ping(7)
    peer.start_mux()
    hello = await peer.recv_discovery_of(sid, DHello)
    assert isinstance(hello, DHello)
    assert hello.record.record.node_id == victim.node_id
    assert peer.violations == []


async def test_records_dribbled_a_byte_at_a_time(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    sid = peer.open_stream()
    await peer.recv_discovery_of(sid, DHello)
    # A second discovery OPEN, a byte per write: the victim can only refuse it as a duplicate
    # ordered stream if it put the dribbled record back together whole.
    prelude = encode_prelude(KIND_DISCOVERY, DISCOVERY_VERSION, DISCOVERY_FRAME_CAP)
    data = encode_record(REC_OPEN, sid + 2, prelude)
    for i in range(len(data)):
        peer.send_raw(data[i : i + 1])
        await peer.drain()
        await asyncio.sleep(0)  # a loop turn, so the victim may read each byte on its own
    ev = await harness.wait_event(victim, "conn", "closed.punitive", peer=peer.label)
    assert ev.fields["reason"] == "duplicate_ordered_stream"


async def test_a_peer_that_ends_the_stream_closes_with_eof(harness: Harness) -> None:
    victim = await harness.victim()
    peer = await harness.session(victim)
    await peer.aclose()
    ev = await harness.wait_event(victim, "conn", "closed.neutral", peer=peer.label)
    assert (ev.fields["reason"], ev.fields["by"]) == ("eof", "remote")


async def test_a_throttled_peer_is_read_one_record_at_a_time(harness: Harness) -> None:
    """The operator's throttle pauses reading after each record for its size / rate."""
    victim = await harness.victim(allow_faults=True)
    peer = await harness.session(victim)
    conn = victim.transport.peers.get(peer.node_id)
    assert conn is not None
    ping = 9 + 8  # a PING record: header and u64 nonce
    await victim.faults.throttle(peer.label, ping / 2)  # two seconds per PING
    base = conn.bytes_in
    with peer.batch():
        for nonce in (1, 2, 3):
            peer.send_ping(nonce)
    await harness.wait_until(lambda: conn.bytes_in >= base + ping, "the first PING read")
    assert conn.bytes_in < base + 3 * ping  # the others wait for the throttle
    await victim.faults.throttle(peer.label, None)
    await harness.wait_until(lambda: conn.bytes_in >= base + 3 * ping, "the rest read")
    assert not conn.closed
