"""Signing and verifying node records: the policy half of discovery's record handling.

The codec (:mod:`node_core.protocol.discovery`) only guarantees a record is well formed. This
module decides whether it is *authentic* and *useful*, and classifies every rejection:

- **hard** (``advisory=False``): the sender forwarded something no honest node produces or
  accepts: wrong format version, a node id that is not an Ed25519 key, a bad signature, or a
  record for another network or chain. The discovery routine treats these as a protocol
  violation by the peer that sent them.
- **advisory** (``advisory=True``): an honest record we merely cannot use right now: it has
  expired, its expiry lies further ahead than any honest TTL allows (beyond the maximum TTL
  plus clock skew), or none of its addresses can be dialed. These are dropped quietly, as
  the reference does, because clocks drift and honest nodes legitimately gossip such
  records.

Hard checks run before advisory ones, so a forged record is reported as forged even if it
also happens to be expired.

Deviation from the reference: the Rust node gossips only globally routable addresses. Our
testnets run every node on ``127.0.0.0/8`` (and operators run private LANs), so loopback and
private addresses are *usable* here. Still unusable: the unspecified address (``0.0.0.0``,
``::``), multicast, the IPv4 limited broadcast address, IPv6 link-local (it cannot be dialed
without a scope id, which the wire does not carry), and port 0.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from ipaddress import IPv4Address

from node_core.identity import Identity, is_valid_node_id, verify
from node_core.protocol.discovery import (
    MAX_PEERS_RECORDS,
    RECORD_FORMAT_VERSION,
    RECORD_SIGNING_DOMAIN,
    TAG_PEERS,
    NodeRecord,
    SignedNodeRecord,
    SocketAddr,
    encode_record_body,
)

DEFAULT_RECORD_TTL_SECS = 24 * 3600
DEFAULT_MAX_RECORD_TTL_SECS = 24 * 3600
DEFAULT_CLOCK_SKEW_SECS = 300

_U16 = struct.Struct("<H")
_LIMITED_BROADCAST = IPv4Address("255.255.255.255")
_PEERS_TAG = bytes((TAG_PEERS,))


class RecordError(Exception):
    """A signed record was rejected.

    Attributes:
        reason: Short stable label for logs, metrics and the journal (``bad_signature``,
            ``expired``, ...).
        advisory: True if the record should simply be ignored; False if forwarding it is
            misbehaviour by the sender.
    """

    def __init__(self, reason: str, detail: str, *, advisory: bool) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.advisory = advisory


def signing_payload(format_version: int, body: bytes) -> bytes:
    """What a record's signature covers: domain || u16le(format_version) || body.

    The domain string keeps a record signature from ever being replayed as a handshake
    signature (or anything else the same key signs), and vice versa.
    """
    return RECORD_SIGNING_DOMAIN + _U16.pack(format_version) + bytes(body)


def record_wire(signed: SignedNodeRecord) -> bytes:
    """``signed`` exactly as a Hello or Peers payload carries it: ``u16 format_version``,
    ``u16 body length``, body, signature (docs/PROTOCOL.md §7.3).

    A signed record is immutable until its author replaces it, so the address book encodes it
    once when it stores it and every Peers answer joins these bytes
    (:func:`peers_payload`) instead of re-encoding up to 32 records per GetPeers: with 1,000
    peers refreshing every 10 s that encoding was a third of each answer's cost
    (docs/ARCHITECTURE.md, "Measuring performance"). The constructor of
    :class:`SignedNodeRecord` already checked every field against its cap.
    """
    return (
        _U16.pack(signed.format_version)
        + _U16.pack(len(signed.body))
        + signed.body
        + signed.signature
    )


def peers_payload(wires: Sequence[bytes]) -> bytes:
    """A Peers payload (tag, count, records) from records already in wire form
    (:func:`record_wire`); byte for byte what ``encode_discovery(Peers(...))`` writes.

    Raises:
        ValueError: On more than :data:`MAX_PEERS_RECORDS` records (the sample never returns
            more, and it trims to the message cap, so this is a caller's bug).
    """
    if len(wires) > MAX_PEERS_RECORDS:
        raise ValueError(f"{len(wires)} records > cap {MAX_PEERS_RECORDS}")
    return _PEERS_TAG + _U16.pack(len(wires)) + b"".join(wires)


def make_record(
    identity: Identity,
    *,
    addrs: Sequence[SocketAddr],
    services: Sequence[str],
    network_id: int,
    chain_id: bytes,
    protocol_min: int,
    protocol_max: int,
    sequence: int,
    now_unix: float,
    ttl_secs: int = DEFAULT_RECORD_TTL_SECS,
) -> SignedNodeRecord:
    """Build and sign this node's record.

    Args:
        identity: The signing identity; its node id becomes the record's author.
        addrs: Addresses peers should dial (at most 8).
        services: Service ids this node offers (at most 32).
        network_id: Network id (u32).
        chain_id: Genesis hash (32 bytes).
        protocol_min: Lowest supported protocol version.
        protocol_max: Highest supported protocol version.
        sequence: Must grow with every new record so peers replace the old one.
        now_unix: Current wall-clock time in seconds.
        ttl_secs: Lifetime; expiry is ``int(now_unix) + ttl_secs``.

    Raises:
        CodecError: If a field breaks a wire cap; we refuse to sign what peers would reject.
    """
    record = NodeRecord(
        node_id=identity.node_id,
        direct_addrs=tuple(addrs),
        services=tuple(services),
        protocol_min=protocol_min,
        protocol_max=protocol_max,
        network_id=network_id,
        chain_id=bytes(chain_id),
        sequence=sequence,
        expires_at_unix_secs=int(now_unix) + ttl_secs,
    )
    body = encode_record_body(record)
    signature = identity.sign(signing_payload(RECORD_FORMAT_VERSION, body))
    return SignedNodeRecord(format_version=RECORD_FORMAT_VERSION, body=body, signature=signature)


def is_usable_addr(addr: SocketAddr) -> bool:
    """True if a node could plausibly dial ``addr`` (see the module docstring for policy)."""
    ip = addr.ip
    if addr.port == 0 or ip.is_unspecified or ip.is_multicast:
        return False
    if isinstance(ip, IPv4Address):
        return ip != _LIMITED_BROADCAST
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return is_usable_addr(SocketAddr(ip=mapped, port=addr.port))
    return not ip.is_link_local


def usable_addrs(record: NodeRecord) -> tuple[SocketAddr, ...]:
    """The record's addresses that pass :func:`is_usable_addr`, in the author's order."""
    return tuple(a for a in record.direct_addrs if is_usable_addr(a))


def verify_record(
    signed: SignedNodeRecord,
    *,
    network_id: int,
    chain_id: bytes,
    now_unix: float,
    max_ttl_secs: int = DEFAULT_MAX_RECORD_TTL_SECS,
    clock_skew_secs: int = DEFAULT_CLOCK_SKEW_SECS,
) -> NodeRecord:
    """Check a record's authenticity and usefulness; return its decoded body.

    Args:
        signed: The record as received.
        network_id: Our network id; records for another network are rejected.
        chain_id: Our genesis hash; records for another chain are rejected.
        now_unix: Current wall-clock time in seconds.
        max_ttl_secs: Longest lifetime an honest record may claim.
        clock_skew_secs: Tolerated difference between the author's clock and ours.

    Raises:
        RecordError: Hard for forged or foreign records, advisory for unusable ones.
    """
    if signed.format_version != RECORD_FORMAT_VERSION:
        raise RecordError(
            "bad_format_version",
            f"record format version {signed.format_version}",
            advisory=False,
        )
    record = signed.record
    if not is_valid_node_id(record.node_id):
        raise RecordError("invalid_node_id", "node id is not an Ed25519 key", advisory=False)
    if not verify(
        record.node_id, signing_payload(signed.format_version, signed.body), signed.signature
    ):
        raise RecordError("bad_signature", "record signature does not verify", advisory=False)
    if record.network_id != network_id:
        raise RecordError(
            "wrong_network",
            f"record is for network {record.network_id}, we are on {network_id}",
            advisory=False,
        )
    if record.chain_id != chain_id:
        raise RecordError(
            "wrong_chain",
            f"record is for chain {record.chain_id.hex()[:16]}..., "
            f"ours is {chain_id.hex()[:16]}...",
            advisory=False,
        )
    if record.expires_at_unix_secs <= now_unix:
        raise RecordError(
            "expired",
            f"expired at {record.expires_at_unix_secs}, now {now_unix:.0f}",
            advisory=True,
        )
    horizon = now_unix + max_ttl_secs + clock_skew_secs
    if record.expires_at_unix_secs > horizon:
        raise RecordError(
            "far_future_expiry",
            f"expiry {record.expires_at_unix_secs} is beyond the {max_ttl_secs} s maximum TTL "
            f"plus {clock_skew_secs} s clock skew",
            advisory=True,
        )
    if not usable_addrs(record):
        raise RecordError("no_usable_address", "no dialable direct address", advisory=True)
    return record
