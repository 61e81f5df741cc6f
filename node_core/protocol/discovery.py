"""Sans-I/O codec for discovery stream (kind 4) payloads.

Invariants:
- A discovery frame has ``message_type == DISCOVERY_MESSAGE_TYPE`` and ``flags == 0``;
  anything else is a protocol violation (:func:`check_discovery_frame`).
- A payload is ``[u8 tag][fields]``, at most :data:`MAX_DISCOVERY_MESSAGE_BYTES` (checked
  before a single field is read), with no trailing bytes.
- Every count is checked against its cap before any item is decoded, and every length
  before any byte is sliced, so a hostile peer cannot make us allocate more than the
  payload it already sent.
- :func:`decode_discovery` raises only :class:`CodecError` subclasses; :func:`encode_discovery`
  enforces the very same rules, so we never emit what we would reject from a peer.
- A :class:`SignedNodeRecord` always carries a decodable body: the body is decoded when the
  object is built (from the wire or locally). Its signature is carried but **not** verified
  here; that is policy and lives in :mod:`node_core.discovery.records`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from node_core.protocol.codec import Reader, Writer
from node_core.protocol.errors import InvalidFlag, InvalidValue, OverCap, UnknownMessage

DISCOVERY_MESSAGE_TYPE = 1
MAX_DISCOVERY_MESSAGE_BYTES = 16 * 1024
MAX_PEERS_RECORDS = 32
MAX_RECORD_ADDRS = 8
MAX_RECORD_SERVICES = 32
MAX_SERVICE_ID_BYTES = 64
MAX_EXCLUSIONS = 256
MAX_SUMMARIES = 32
MAX_SUMMARY_PAYLOAD = 1024
RECORD_FORMAT_VERSION = 1
RECORD_SIGNING_DOMAIN = b"zakura-node-record-v1"

NODE_ID_BYTES = 32
CHAIN_ID_BYTES = 32
SIGNATURE_BYTES = 64

TAG_HELLO = 1
TAG_GET_PEERS = 2
TAG_PEERS = 3
TAG_GET_SERVICES = 4
TAG_SERVICES = 5

#: Bytes a signed record adds around its body: format version, body length, signature.
SIGNED_RECORD_OVERHEAD = 2 + 2 + SIGNATURE_BYTES
#: The largest body that still fits a Hello (tag + signed record) in one discovery message.
MAX_RECORD_BODY_BYTES = MAX_DISCOVERY_MESSAGE_BYTES - 1 - SIGNED_RECORD_OVERHEAD
#: Bytes of a Peers payload before its first record: tag and count.
PEERS_HEADER_BYTES = 1 + 2

FAMILY_V4 = 4
FAMILY_V6 = 6


@dataclass(frozen=True, slots=True)
class SocketAddr:
    """A dialable IP socket address as carried in node records.

    Wire: ``u8 family (4|6)``, then 4 or 16 raw address bytes, then ``u16 port`` (non-zero).
    The family is derived from ``ip`` rather than stored, so it can never disagree with it.
    """

    ip: IPv4Address | IPv6Address
    port: int

    @property
    def family(self) -> int:
        return FAMILY_V4 if isinstance(self.ip, IPv4Address) else FAMILY_V6

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}" if self.family == FAMILY_V4 else f"[{self.ip}]:{self.port}"


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """The signed content of a node record: who a node is, where and what it serves.

    Attributes:
        node_id: The node's 32-byte Ed25519 public key (the record's author).
        direct_addrs: Up to 8 addresses the node can be dialed on.
        services: Up to 32 service ids (non-empty printable ASCII, at most 64 bytes each).
        protocol_min: Lowest protocol version the node speaks (``<= protocol_max``).
        protocol_max: Highest protocol version the node speaks.
        network_id: Network the node is on (u32; see ``limits.NetworkId``).
        chain_id: Genesis hash of the node's chain (32 bytes).
        sequence: Monotonic per-node counter; a higher sequence supersedes a lower one.
        expires_at_unix_secs: Wall-clock second after which nobody should use the record.
    """

    node_id: bytes
    direct_addrs: tuple[SocketAddr, ...]
    services: tuple[str, ...]
    protocol_min: int
    protocol_max: int
    network_id: int
    chain_id: bytes
    sequence: int
    expires_at_unix_secs: int


@dataclass(frozen=True, slots=True)
class SignedNodeRecord:
    """A record body exactly as its author signed it, plus the signature.

    The body travels as opaque bytes because the signature covers those bytes; re-encoding a
    decoded record could differ and break verification. ``record`` is the decoded body,
    computed at construction: a malformed body therefore fails with a :class:`CodecError`
    the moment the object is built, and equality/hashing consider only the wire fields.

    Raises:
        CodecError: On construction, if the version is not 1, the body is empty, over
            :data:`MAX_RECORD_BODY_BYTES` or malformed, or the signature is not 64 bytes.
    """

    format_version: int
    body: bytes
    signature: bytes
    record: NodeRecord = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.format_version != RECORD_FORMAT_VERSION:
            raise InvalidValue(f"record format version {self.format_version} is not 1")
        if not self.body:
            raise InvalidValue("record body: empty")
        if len(self.body) > MAX_RECORD_BODY_BYTES:
            raise OverCap(f"record body: {len(self.body)} bytes > cap {MAX_RECORD_BODY_BYTES}")
        if len(self.signature) != SIGNATURE_BYTES:
            raise InvalidValue(f"record signature: {len(self.signature)} bytes, not 64")
        object.__setattr__(self, "record", decode_record_body(self.body))


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """A live, unsigned snapshot of one service's availability on the sending node.

    Attributes:
        service: The service id (printable ASCII, at most 64 bytes).
        inbound_free: Free inbound slots for that service.
        outbound_free: Free outbound slots for that service.
        payload: Service-specific summary bytes (may be empty, at most 1 KiB); decoded by
            the owning service, not here.
    """

    service: str
    inbound_free: int
    outbound_free: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Hello:
    """The sender's own current signed record; its author must be the authenticated peer."""

    record: SignedNodeRecord


@dataclass(frozen=True, slots=True)
class GetPeers:
    """Ask for up to ``limit`` records offering all ``wanted_services``, minus exclusions."""

    limit: int
    wanted_services: tuple[str, ...]
    exclude_node_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Peers:
    """Signed records of other nodes, at most :data:`MAX_PEERS_RECORDS`."""

    records: tuple[SignedNodeRecord, ...]


@dataclass(frozen=True, slots=True)
class GetServices:
    """Ask for live summaries of ``wanted_services`` (empty means every service)."""

    wanted_services: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Services:
    """Live service summaries from ``node_id``, usable until ``expires_at_unix_secs``."""

    node_id: bytes
    expires_at_unix_secs: int
    summaries: tuple[ServiceSummary, ...]


DiscoveryMessage = Hello | GetPeers | Peers | GetServices | Services


# --- frame envelope ----------------------------------------------------------------------


def check_discovery_frame(message_type: int, flags: int) -> None:
    """Reject a frame header the discovery stream does not define.

    Raises:
        UnknownMessage: If ``message_type`` is not :data:`DISCOVERY_MESSAGE_TYPE`.
        InvalidFlag: If ``flags`` is non-zero (no flag is defined, so any set bit is a
            violation rather than something to ignore).
    """
    if message_type != DISCOVERY_MESSAGE_TYPE:
        raise UnknownMessage(f"discovery frame message type {message_type}")
    if flags != 0:
        raise InvalidFlag(f"discovery frame flags {flags:#06x} are not 0")


def decode_discovery_frame(message_type: int, flags: int, payload: bytes) -> DiscoveryMessage:
    """Check the frame envelope, then decode the payload."""
    check_discovery_frame(message_type, flags)
    return decode_discovery(payload)


# --- socket addresses and record bodies --------------------------------------------------


def _write_addr(w: Writer, addr: SocketAddr) -> None:
    if addr.port == 0:
        raise InvalidValue(f"socket address {addr}: port 0")
    w.u8(addr.family).raw(addr.ip.packed).u16(addr.port)


def _read_addr(r: Reader) -> SocketAddr:
    family = r.u8("address family")
    ip: IPv4Address | IPv6Address
    if family == FAMILY_V4:
        ip = IPv4Address(r.take(4, "ipv4 address"))
    elif family == FAMILY_V6:
        ip = IPv6Address(r.take(16, "ipv6 address"))
    else:
        raise InvalidValue(f"address family {family} is not 4 or 6")
    port = r.u16("port")
    if port == 0:
        raise InvalidValue("socket address: port 0")
    return SocketAddr(ip=ip, port=port)


def _write_services(w: Writer, services: tuple[str, ...], what: str) -> None:
    w.count(len(services), MAX_RECORD_SERVICES, what)
    for service in services:
        w.bounded_str(service, MAX_SERVICE_ID_BYTES, "service id")


def _read_services(r: Reader, what: str) -> tuple[str, ...]:
    return r.items(MAX_RECORD_SERVICES, lambda rr: rr.bounded_str(MAX_SERVICE_ID_BYTES), what)


def encode_record_body(rec: NodeRecord) -> bytes:
    """Encode the signed part of a record.

    Raises:
        CodecError: If any field breaks a cap or rule :func:`decode_record_body` enforces.
    """
    if rec.protocol_min > rec.protocol_max:
        raise InvalidValue(f"protocol_min {rec.protocol_min} > protocol_max {rec.protocol_max}")
    w = Writer()
    w.fixed(rec.node_id, NODE_ID_BYTES, "node id")
    w.count(len(rec.direct_addrs), MAX_RECORD_ADDRS, "direct addrs")
    for addr in rec.direct_addrs:
        _write_addr(w, addr)
    _write_services(w, rec.services, "services")
    w.u16(rec.protocol_min).u16(rec.protocol_max).u32(rec.network_id)
    w.fixed(rec.chain_id, CHAIN_ID_BYTES, "chain id")
    w.u64(rec.sequence).u64(rec.expires_at_unix_secs)
    body = w.getvalue()
    if len(body) > MAX_RECORD_BODY_BYTES:
        raise OverCap(f"record body: {len(body)} bytes > cap {MAX_RECORD_BODY_BYTES}")
    return body


def decode_record_body(data: bytes) -> NodeRecord:
    """Decode the signed part of a record (the whole of ``data``, no trailing bytes).

    Raises:
        CodecError: On any malformed, over-cap or inconsistent field.
    """
    r = Reader(data)
    node_id = r.take(NODE_ID_BYTES, "node id")
    addrs = r.items(MAX_RECORD_ADDRS, _read_addr, "direct addrs")
    services = _read_services(r, "services")
    protocol_min = r.u16("protocol_min")
    protocol_max = r.u16("protocol_max")
    if protocol_min > protocol_max:
        raise InvalidValue(f"protocol_min {protocol_min} > protocol_max {protocol_max}")
    network_id = r.u32("network id")
    chain_id = r.take(CHAIN_ID_BYTES, "chain id")
    sequence = r.u64("sequence")
    expires = r.u64("expires_at_unix_secs")
    r.finish()
    return NodeRecord(
        node_id=node_id,
        direct_addrs=addrs,
        services=services,
        protocol_min=protocol_min,
        protocol_max=protocol_max,
        network_id=network_id,
        chain_id=chain_id,
        sequence=sequence,
        expires_at_unix_secs=expires,
    )


def _write_signed(w: Writer, signed: SignedNodeRecord) -> None:
    # The constructor already validated every field; write them exactly as carried.
    w.u16(signed.format_version)
    w.bounded_bytes(signed.body, MAX_RECORD_BODY_BYTES, "record body")
    w.fixed(signed.signature, SIGNATURE_BYTES, "record signature")


def _read_signed(r: Reader) -> SignedNodeRecord:
    version = r.u16("record format version")
    if version != RECORD_FORMAT_VERSION:
        # Checked before the body is read: a different version may lay the body out
        # differently, so there is nothing meaningful left to decode.
        raise InvalidValue(f"record format version {version} is not 1")
    body = r.bounded_bytes(MAX_RECORD_BODY_BYTES, "record body")
    signature = r.take(SIGNATURE_BYTES, "record signature")
    return SignedNodeRecord(format_version=version, body=body, signature=signature)


def encoded_signed_record_size(signed: SignedNodeRecord) -> int:
    """Bytes ``signed`` occupies inside a Hello or Peers payload.

    Lets a sender fit a Peers reply under :data:`MAX_DISCOVERY_MESSAGE_BYTES` without
    encoding it twice: 32 records of maximal size would not fit.
    """
    return SIGNED_RECORD_OVERHEAD + len(signed.body)


# --- service summaries -------------------------------------------------------------------


def _write_summary(w: Writer, s: ServiceSummary) -> None:
    w.bounded_str(s.service, MAX_SERVICE_ID_BYTES, "summary service")
    w.u16(s.inbound_free).u16(s.outbound_free)
    # Unlike other byte strings the payload may be empty (a service with nothing to add).
    if len(s.payload) > MAX_SUMMARY_PAYLOAD:
        raise OverCap(f"summary payload: {len(s.payload)} bytes > cap {MAX_SUMMARY_PAYLOAD}")
    w.u16(len(s.payload)).raw(s.payload)


def _read_summary(r: Reader) -> ServiceSummary:
    service = r.bounded_str(MAX_SERVICE_ID_BYTES, "summary service")
    inbound_free = r.u16("inbound_free")
    outbound_free = r.u16("outbound_free")
    n = r.u16("summary payload length")
    if n > MAX_SUMMARY_PAYLOAD:
        raise OverCap(f"summary payload: {n} bytes > cap {MAX_SUMMARY_PAYLOAD}")
    payload = r.take(n, "summary payload")
    return ServiceSummary(service, inbound_free, outbound_free, payload)


def _read_node_id(r: Reader) -> bytes:
    return r.take(NODE_ID_BYTES, "node id")


# --- messages ----------------------------------------------------------------------------


def encode_discovery(msg: DiscoveryMessage) -> bytes:
    """Encode a discovery payload (without the frame header).

    Raises:
        CodecError: If the message breaks any cap or rule the decoder enforces, including
            the overall :data:`MAX_DISCOVERY_MESSAGE_BYTES`.
    """
    w = Writer()
    if isinstance(msg, Hello):
        w.u8(TAG_HELLO)
        _write_signed(w, msg.record)
    elif isinstance(msg, GetPeers):
        w.u8(TAG_GET_PEERS).u16(msg.limit)
        _write_services(w, msg.wanted_services, "wanted services")
        w.count(len(msg.exclude_node_ids), MAX_EXCLUSIONS, "excluded node ids")
        for node_id in msg.exclude_node_ids:
            w.fixed(node_id, NODE_ID_BYTES, "excluded node id")
    elif isinstance(msg, Peers):
        w.u8(TAG_PEERS).count(len(msg.records), MAX_PEERS_RECORDS, "peer records")
        for signed in msg.records:
            _write_signed(w, signed)
    elif isinstance(msg, GetServices):
        w.u8(TAG_GET_SERVICES)
        _write_services(w, msg.wanted_services, "wanted services")
    elif isinstance(msg, Services):
        w.u8(TAG_SERVICES).fixed(msg.node_id, NODE_ID_BYTES, "node id")
        w.u64(msg.expires_at_unix_secs)
        w.count(len(msg.summaries), MAX_SUMMARIES, "summaries")
        for summary in msg.summaries:
            _write_summary(w, summary)
    else:  # pragma: no cover - exhaustive over DiscoveryMessage
        raise UnknownMessage(f"not a discovery message: {type(msg).__name__}")
    payload = w.getvalue()
    if len(payload) > MAX_DISCOVERY_MESSAGE_BYTES:
        raise OverCap(
            f"discovery message: {len(payload)} bytes > cap {MAX_DISCOVERY_MESSAGE_BYTES}"
        )
    return payload


def decode_discovery(payload: bytes) -> DiscoveryMessage:
    """Decode a discovery payload (without the frame header).

    Raises:
        CodecError: Only this family, for every malformed, over-cap or unknown input.
    """
    if len(payload) > MAX_DISCOVERY_MESSAGE_BYTES:
        raise OverCap(
            f"discovery message: {len(payload)} bytes > cap {MAX_DISCOVERY_MESSAGE_BYTES}"
        )
    r = Reader(payload)
    tag = r.u8("discovery tag")
    msg: DiscoveryMessage
    if tag == TAG_HELLO:
        msg = Hello(record=_read_signed(r))
    elif tag == TAG_GET_PEERS:
        limit = r.u16("limit")
        wanted = _read_services(r, "wanted services")
        exclude = r.items(MAX_EXCLUSIONS, _read_node_id, "excluded node ids")
        msg = GetPeers(limit=limit, wanted_services=wanted, exclude_node_ids=exclude)
    elif tag == TAG_PEERS:
        msg = Peers(records=r.items(MAX_PEERS_RECORDS, _read_signed, "peer records"))
    elif tag == TAG_GET_SERVICES:
        msg = GetServices(wanted_services=_read_services(r, "wanted services"))
    elif tag == TAG_SERVICES:
        node_id = _read_node_id(r)
        expires = r.u64("expires_at_unix_secs")
        summaries = r.items(MAX_SUMMARIES, _read_summary, "summaries")
        msg = Services(node_id=node_id, expires_at_unix_secs=expires, summaries=summaries)
    else:
        raise UnknownMessage(f"discovery tag {tag}")
    r.finish()
    return msg
