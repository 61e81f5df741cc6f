"""Signed node records: signing, verification, and hard vs advisory rejections."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node_core.discovery.records import (
    RecordError,
    is_usable_addr,
    make_record,
    peers_payload,
    record_wire,
    signing_payload,
    usable_addrs,
    verify_record,
)
from node_core.identity import Identity, is_valid_node_id, verify
from node_core.protocol.discovery import (
    MAX_PEERS_RECORDS,
    RECORD_SIGNING_DOMAIN,
    Hello,
    NodeRecord,
    Peers,
    SignedNodeRecord,
    SocketAddr,
    decode_discovery,
    encode_discovery,
    encode_record_body,
)
from node_core.protocol.errors import CodecError, OverCap

NOW = 1_750_000_000.0
NETWORK = 4
CHAIN = bytes(range(32))
ALICE = Identity.from_seed(b"\x01" * 32)
MALLORY = Identity.from_seed(b"\x02" * 32)
LOOPBACK = SocketAddr(IPv4Address("127.0.0.1"), 18_000)


def _make(identity: Identity = ALICE, **overrides: object) -> SignedNodeRecord:
    kwargs: dict[str, object] = {
        "addrs": (LOOPBACK,),
        "services": ("discovery", "header_sync"),
        "network_id": NETWORK,
        "chain_id": CHAIN,
        "protocol_min": 1,
        "protocol_max": 1,
        "sequence": 1,
        "now_unix": NOW,
    }
    kwargs.update(overrides)
    return make_record(identity, **kwargs)  # type: ignore[arg-type]


def _verify(signed: SignedNodeRecord, now_unix: float = NOW) -> NodeRecord:
    return verify_record(signed, network_id=NETWORK, chain_id=CHAIN, now_unix=now_unix)


def _reject(
    signed: SignedNodeRecord, reason: str, *, advisory: bool, now_unix: float = NOW
) -> None:
    with pytest.raises(RecordError) as info:
        _verify(signed, now_unix)
    assert info.value.reason == reason
    assert info.value.advisory is advisory


def _forge(rec: NodeRecord, signer: Identity) -> SignedNodeRecord:
    body = encode_record_body(rec)
    return SignedNodeRecord(1, body, signer.sign(signing_payload(1, body)))


def test_make_and_verify() -> None:
    signed = _make(sequence=9, ttl_secs=600)
    rec = _verify(signed)
    assert rec == signed.record
    assert rec.node_id == ALICE.node_id
    assert rec.direct_addrs == (LOOPBACK,)
    assert rec.services == ("discovery", "header_sync")
    assert rec.sequence == 9
    assert rec.expires_at_unix_secs == int(NOW) + 600
    assert (rec.network_id, rec.chain_id, rec.protocol_min, rec.protocol_max) == (
        NETWORK,
        CHAIN,
        1,
        1,
    )


def test_default_ttl_is_a_day() -> None:
    assert _make().record.expires_at_unix_secs == int(NOW) + 24 * 3600


def test_signature_covers_domain_version_and_body() -> None:
    signed = _make()
    # Rebuild the signed message by hand rather than through signing_payload.
    message = b"zakura-node-record-v1" + struct.pack("<H", 1) + signed.body
    assert RECORD_SIGNING_DOMAIN == b"zakura-node-record-v1"
    assert signing_payload(1, signed.body) == message
    assert verify(ALICE.node_id, message, signed.signature)
    # Domain separation: the same key's signature over the bare body is something else.
    assert not verify(ALICE.node_id, signed.body, signed.signature)


def test_make_record_refuses_what_the_wire_rejects() -> None:
    with pytest.raises(OverCap):
        _make(addrs=(LOOPBACK,) * 9)
    with pytest.raises(CodecError):
        _make(services=("",))
    with pytest.raises(CodecError):
        _make(protocol_min=2, protocol_max=1)


# --- hard rejections -----------------------------------------------------------------------


def test_bad_signature_is_hard() -> None:
    signed = _make()
    flipped = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
    _reject(SignedNodeRecord(1, signed.body, flipped), "bad_signature", advisory=False)


def test_record_signed_by_someone_else_is_hard() -> None:
    claimed = _make().record  # claims to be Alice ...
    _reject(_forge(claimed, MALLORY), "bad_signature", advisory=False)  # ... signed by Mallory


def test_tampered_body_is_hard() -> None:
    signed = _make(sequence=1)
    tampered = encode_record_body(_make(sequence=2).record)
    _reject(SignedNodeRecord(1, tampered, signed.signature), "bad_signature", advisory=False)


def test_node_id_that_is_not_a_key_is_hard() -> None:
    off_curve = next(
        c for y in range(2, 1000) if not is_valid_node_id(c := y.to_bytes(32, "little"))
    )
    rec = NodeRecord(
        node_id=off_curve,
        direct_addrs=(LOOPBACK,),
        services=(),
        protocol_min=1,
        protocol_max=1,
        network_id=NETWORK,
        chain_id=CHAIN,
        sequence=1,
        expires_at_unix_secs=int(NOW) + 60,
    )
    _reject(_forge(rec, ALICE), "invalid_node_id", advisory=False)


def test_wrong_network_and_chain_are_hard() -> None:
    _reject(_make(network_id=NETWORK + 1), "wrong_network", advisory=False)
    _reject(_make(chain_id=b"\x00" * 32), "wrong_chain", advisory=False)


def test_wrong_format_version_is_hard() -> None:
    # The codec already refuses version != 1; this guards records built some other way.
    signed = _make()
    object.__setattr__(signed, "format_version", 2)
    _reject(signed, "bad_format_version", advisory=False)


def test_hard_errors_win_over_advisory_ones() -> None:
    expired_and_forged = _forge(_make(ttl_secs=1).record, MALLORY)
    _reject(expired_and_forged, "bad_signature", advisory=False, now_unix=NOW + 10)
    _reject(_make(network_id=9, addrs=()), "wrong_network", advisory=False)


@settings(max_examples=200)
@given(data=st.data())
def test_any_bit_flip_breaks_the_record(data: st.DataObject) -> None:
    signed = _make()
    wire = bytearray(signed.body + signed.signature)
    pos = data.draw(st.integers(0, len(wire) - 1))
    wire[pos] ^= 1 << data.draw(st.integers(0, 7))
    split = len(signed.body)
    try:
        mutated = SignedNodeRecord(1, bytes(wire[:split]), bytes(wire[split:]))
    except CodecError:
        return
    with pytest.raises(RecordError) as info:
        _verify(mutated)
    assert info.value.advisory is False


# --- advisory rejections -------------------------------------------------------------------


def test_expired_is_advisory() -> None:
    signed = _make(ttl_secs=60)
    _verify(signed, NOW + 59)
    _reject(signed, "expired", advisory=True, now_unix=NOW + 60)
    _reject(signed, "expired", advisory=True, now_unix=NOW + 3600)


def test_far_future_expiry_is_advisory() -> None:
    limit = 24 * 3600 + 300
    _verify(_make(ttl_secs=limit))
    _reject(_make(ttl_secs=limit + 1), "far_future_expiry", advisory=True)
    signed = _make(ttl_secs=7 * 24 * 3600)
    with pytest.raises(RecordError):
        _verify(signed)
    # A node that allows longer TTLs accepts it.
    rec = verify_record(
        signed, network_id=NETWORK, chain_id=CHAIN, now_unix=NOW, max_ttl_secs=7 * 24 * 3600
    )
    assert rec.node_id == ALICE.node_id


def test_clock_skew_is_tolerated() -> None:
    # The author's clock runs 4 minutes ahead of ours: still fine.
    _verify(_make(now_unix=NOW + 240))
    _reject(_make(now_unix=NOW + 400), "far_future_expiry", advisory=True)


UNUSABLE = [
    SocketAddr(IPv4Address("0.0.0.0"), 8000),
    SocketAddr(IPv6Address("::"), 8000),
    SocketAddr(IPv4Address("224.0.0.1"), 8000),
    SocketAddr(IPv4Address("239.1.2.3"), 8000),
    SocketAddr(IPv6Address("ff02::1"), 8000),
    SocketAddr(IPv4Address("255.255.255.255"), 8000),
    SocketAddr(IPv6Address("fe80::1"), 8000),
    SocketAddr(IPv6Address("::ffff:0.0.0.0"), 8000),
    SocketAddr(IPv6Address("::ffff:224.0.0.1"), 8000),
    SocketAddr(IPv4Address("127.0.0.1"), 0),
]
USABLE = [
    SocketAddr(ip_address(ip), 8000)
    for ip in (
        "127.0.0.1",
        "127.3.4.5",
        "10.0.0.7",
        "192.168.1.20",
        "172.16.0.1",
        "169.254.1.1",
        "8.8.8.8",
        "::1",
        "fd00::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
    )
]


@pytest.mark.parametrize("addr", UNUSABLE, ids=str)
def test_unusable_addresses(addr: SocketAddr) -> None:
    assert not is_usable_addr(addr)


@pytest.mark.parametrize("addr", USABLE, ids=str)
def test_loopback_and_private_addresses_are_usable(addr: SocketAddr) -> None:
    assert is_usable_addr(addr)
    assert _verify(_make(addrs=(addr,))).direct_addrs == (addr,)


def test_no_usable_address_is_advisory() -> None:
    _reject(_make(addrs=()), "no_usable_address", advisory=True)
    dialable_ones = [a for a in UNUSABLE if a.port != 0][:8]  # the wire refuses port 0
    _reject(_make(addrs=dialable_ones), "no_usable_address", advisory=True)


def test_one_usable_address_is_enough() -> None:
    rec = _verify(_make(addrs=(UNUSABLE[0], LOOPBACK, UNUSABLE[2])))
    assert usable_addrs(rec) == (LOOPBACK,)


def test_port_zero_is_unusable_even_if_built_locally() -> None:
    rec = NodeRecord(
        node_id=ALICE.node_id,
        direct_addrs=(SocketAddr(IPv4Address("127.0.0.1"), 0), LOOPBACK),
        services=(),
        protocol_min=1,
        protocol_max=1,
        network_id=NETWORK,
        chain_id=CHAIN,
        sequence=1,
        expires_at_unix_secs=int(NOW) + 60,
    )
    assert usable_addrs(rec) == (LOOPBACK,)


def test_record_error_message() -> None:
    err = RecordError("expired", "at 5", advisory=True)
    assert str(err) == "expired: at 5"
    assert err.reason == "expired" and err.detail == "at 5" and err.advisory


# --- cached wire form -----------------------------------------------------------------------


def test_record_wire_is_the_codecs_encoding_of_a_signed_record() -> None:
    signed = _make()
    hello = encode_discovery(Hello(signed))
    assert hello[1:] == record_wire(signed)  # a Hello is its tag and the signed record


def test_peers_payload_round_trips_and_refuses_more_than_the_cap() -> None:
    records = tuple(
        _make(Identity.from_seed(bytes([i + 1]) * 32)) for i in range(MAX_PEERS_RECORDS)
    )
    payload = peers_payload([record_wire(r) for r in records])
    assert payload == encode_discovery(Peers(records))
    assert decode_discovery(payload) == Peers(records)
    assert peers_payload([]) == encode_discovery(Peers(()))
    with pytest.raises(ValueError):
        peers_payload([record_wire(records[0])] * (MAX_PEERS_RECORDS + 1))
