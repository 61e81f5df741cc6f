"""A raw, scriptable Zakura peer written from ``docs/PROTOCOL.md`` alone.

It deliberately imports nothing from ``node_core``: every byte it sends or parses is built here
with ``struct``, ``hashlib``, ``os`` and ``cryptography`` following the document, so the hostile
tests check the node against the document rather than against its own codecs. Section numbers
in comments (``§4.2``) point into ``docs/PROTOCOL.md``.

A :class:`RawPeer` can:

- speak the control handshake as initiator with its own Ed25519 key and chosen network, chain,
  capabilities and limits, or break it on purpose (garbage, wrong fields, a bad Confirm
  signature, stopping half-way); or listen, let a victim dial it and answer as responder with
  any Ack it likes;
- claim a node id it has no key for and forge signatures for it where plain RFC 8032
  verification allows (small-order and non-canonical keys, §2), or malleate a real signature;
- run the multiplexer: open streams with any prelude, send DATA/CREDIT/FIN/RESET/CLOSE/PING
  records and raw frame bytes, and read what the victim sends back with a background reader
  that also checks the victim against the document (``violations``);
- encode and decode discovery messages and signed node records;
- encode and decode header-sync messages, build 89-byte headers and mine small chains with
  their proof of work (§8).

Every wait has a timeout and waits on a condition (a record arriving, end-of-file), never on
a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# --- §2 identity ----------------------------------------------------------------------------
PEER_LABEL_PERSON = b"zakura-peer-lbl"
RESPONDER_DOMAIN = b"zakura-ctrl-responder-v1"
INITIATOR_DOMAIN = b"zakura-ctrl-initiator-v1"
RECORD_DOMAIN = b"zakura-node-record-v1"
#: §2: the field prime and the group order L; a signature's S must be below L.
FIELD_P = 2**255 - 19
GROUP_ORDER_L = 2**252 + 27742317777372353535851937790883648493
#: §2: the canonical encodings of the eight small-order points, as the document lists them.
SMALL_ORDER_IDS = tuple(
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    )
)
#: §2: the identity point, the small-order id a forger likes best (R = it, S = 0 "signs"
#: every message under a verifier without the §2 rules).
IDENTITY_POINT = SMALL_ORDER_IDS[0]

# --- §4 control handshake -------------------------------------------------------------------
CONTROL_MAX = 16384
TAG_HELLO, TAG_ACK, TAG_CONFIRM, TAG_CLOSE = 1, 2, 3, 4
HELLO_MAGIC = b"ZAKCTRL\x00"
ACK_MAGIC = b"ZAKACK\x00\x00"
HELLO_LEN = 141
ACK_LEN = 235
ACK_SIGNED_LEN = 171
TRANSCRIPT_PERSON = b"zakura-ctrl-v1"
NETWORK_REGTEST = 3
CONFIRM_LEN = 65
#: §4.6 step 9 / §10: the smallest limits a node accepts, in a Hello or in an Ack.
MIN_MAX_MESSAGE_BYTES = 16384
MIN_MAX_FRAME_BYTES = MIN_MAX_MESSAGE_BYTES + 8
MIN_IDLE_TIMEOUT_MILLIS = 1000

CAP_LEGACY_GOSSIP = 1 << 0
CAP_HEADER_SYNC = 1 << 1
CAP_DISCOVERY = 1 << 2
CAP_BLOCK_SYNC = 1 << 3

# --- §5 multiplexer -------------------------------------------------------------------------
REC_OPEN, REC_DATA, REC_CREDIT, REC_RESET, REC_FIN, REC_CLOSE, REC_PING = 1, 2, 3, 4, 5, 6, 7
RECORD_HEADER = struct.Struct("<BII")
MAX_RECORD = 262144
MIN_WINDOW = 262144
PRELUDE_MAGIC = b"ZKST"

# --- §6 frames ------------------------------------------------------------------------------
FRAME_HEADER = struct.Struct("<HHI")

# --- §7 discovery ---------------------------------------------------------------------------
KIND_DISCOVERY = 4
DISCOVERY_VERSION = 1
DISCOVERY_TYPE = 1
DISCOVERY_MAX = 16384
DISCOVERY_FRAME_CAP = DISCOVERY_MAX + 8
D_HELLO, D_GET_PEERS, D_PEERS, D_GET_SERVICES, D_SERVICES = 1, 2, 3, 4, 5
RECORD_FORMAT_VERSION = 1

# --- §8 header sync -------------------------------------------------------------------------
KIND_HEADER_SYNC = 5
HEADER_SYNC_VERSION = 1
HS_MAX = 2 * 1024 * 1024
HS_FRAME_CAP = HS_MAX + 8
HS_STATUS, HS_GET_HEADERS, HS_HEADERS, HS_NEW_BLOCK = 1, 2, 3, 4
HEADER_LEN = 89
HASH_LEN = 32
HS_MAX_HEADERS = 4000
HS_MAX_INFLIGHT = 16
#: §8.3: what a node advertises in its Status, and so the largest count it serves (§8.4).
HS_ADVERTISED_MAX_HEADERS = 1000
HS_ADVERTISED_MAX_INFLIGHT = 10
#: §8.2: largest block body; §8.3: the NewBlock codec's own body cap.
MAX_BLOCK_BODY = 2 * 1024 * 1024 - 1024
HS_BODY_CAP = 2 * 1024 * 1024
DEMO_BITS = 8
GENESIS_TIME = 1_767_225_600
NETWORK_NAMES = {1: "mainnet", 2: "testnet", 3: "regtest", 4: "configured"}
#: §8.5 / §8.6 timings.
HS_STATUS_INTERVAL = 5.0
HS_NEW_BLOCK_INTERVAL = 5.0

# --- §9 close codes -------------------------------------------------------------------------
NEUTRAL, RESOURCE, BAD_PRELUDE, RATE_LIMIT, OVERSIZE, UNKNOWN_STREAM = 0, 1, 2, 3, 4, 5

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def u16(v: int) -> bytes:
    return _U16.pack(v)


def u32(v: int) -> bytes:
    return _U32.pack(v)


def u64(v: int) -> bytes:
    return _U64.pack(v)


def bstr(text: str | bytes) -> bytes:
    """A bounded string: u16 length then the bytes (§1)."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    return u16(len(raw)) + raw


def stream_window(frame_cap: int) -> int:
    """§5.5: the per-stream, per-direction window."""
    return max(MIN_WINDOW, 2 * frame_cap)


def peer_label(node_id: bytes) -> str:
    """§2: ``peer:`` + 16 hex chars of a personalised 8-byte BLAKE2b of the node id."""
    return "peer:" + hashlib.blake2b(node_id, digest_size=8, person=PEER_LABEL_PERSON).hexdigest()


def verify(node_id: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(node_id).verify(sig, msg)
    except (InvalidSignature, ValueError):
        return False
    return True


def forge_small_order_signature(node_id: bytes, msg: bytes) -> bytes | None:
    """A signature ``R ‖ S`` with ``R`` a small-order point and ``S = 0`` that plain RFC 8032
    verification (the ``cryptography`` backend, without the §2 rules) accepts for ``node_id``
    over ``msg``, or None if no such ``R`` works for this message.

    With a small-order key ``A`` the check ``S·B = R + h·A`` becomes ``R = -h·A``, a
    small-order point, so one of the eight works for many messages (for the identity, always);
    a caller that can vary the message (a fresh nonce) simply tries again. This is the
    forgery the §2 rules exist to stop: a node must refuse it even though it "verifies".
    """
    for r in SMALL_ORDER_IDS:
        sig = r + bytes(32)
        if verify(node_id, msg, sig):
            return sig
    return None


def malleate(sig: bytes) -> bytes:
    """The same signature with ``S + L`` in place of ``S`` (a non-canonical S, §2)."""
    s = int.from_bytes(sig[32:], "little") + GROUP_ORDER_L
    return sig[:32] + s.to_bytes(32, "little")


class Key:
    """An Ed25519 key pair; the node id is the raw public key (§2)."""

    def __init__(self, private: Ed25519PrivateKey | None = None) -> None:
        self.private = private or Ed25519PrivateKey.generate()
        self.node_id = self.private.public_key().public_bytes_raw()
        self.label = peer_label(self.node_id)

    def sign(self, msg: bytes) -> bytes:
        return self.private.sign(msg)


class RawPeerError(Exception):
    """The exchange did not go the way the test scripted it (EOF, timeout, wrong message)."""


# =============================================================================================
# §4 control handshake
# =============================================================================================


@dataclass(slots=True)
class Limits:
    """§4.2 limits, in wire order. Defaults are what a node offers."""

    max_frame_bytes: int = 4 * 1024 * 1024 + 8
    max_message_bytes: int = 4 * 1024 * 1024
    max_open_streams: int = 1024
    max_inbound_queue_depth: int = 4096
    idle_timeout_millis: int = 150_000

    def encode(self) -> bytes:
        return struct.pack(
            "<IIHHI",
            self.max_frame_bytes,
            self.max_message_bytes,
            self.max_open_streams,
            self.max_inbound_queue_depth,
            self.idle_timeout_millis,
        )

    @classmethod
    def decode(cls, data: bytes) -> Limits:
        return cls(*struct.unpack("<IIHHI", data))

    @classmethod
    def minimums(cls) -> Limits:
        """The smallest limits a node accepts (§4.6 step 9, §10)."""
        return cls(MIN_MAX_FRAME_BYTES, MIN_MAX_MESSAGE_BYTES, 1, 1, MIN_IDLE_TIMEOUT_MILLIS)

    def fields(self) -> tuple[int, int, int, int, int]:
        return (
            self.max_frame_bytes,
            self.max_message_bytes,
            self.max_open_streams,
            self.max_inbound_queue_depth,
            self.idle_timeout_millis,
        )

    def within(self, low: Limits, high: Limits) -> bool:
        """Every limit between ``low`` and ``high``, inclusive."""
        return all(
            lo <= v <= hi
            for v, lo, hi in zip(self.fields(), low.fields(), high.fields(), strict=True)
        )


@dataclass(slots=True)
class HelloParams:
    """Everything an initiator puts in its Hello (§4.2); change a field to lie."""

    chain_id: bytes
    network_id: int = NETWORK_REGTEST
    capabilities: int = CAP_DISCOVERY
    limits: Limits = field(default_factory=Limits)
    listen_port: int = 0
    control_version: int = 1
    protocol_min: int = 1
    protocol_max: int = 1
    magic: bytes = HELLO_MAGIC
    #: Claim another node id than our key's (the signature then cannot verify).
    node_id: bytes | None = None
    nonce: bytes | None = None


def encode_hello(p: HelloParams, node_id: bytes, nonce: bytes) -> bytes:
    """The 141-byte Hello payload, tag included (§4.2)."""
    out = (
        bytes([TAG_HELLO])
        + p.magic
        + struct.pack("<HHHI", p.control_version, p.protocol_min, p.protocol_max, p.network_id)
        + p.chain_id
        + node_id
        + nonce
        + u64(p.capabilities)
        + p.limits.encode()
        + u16(p.listen_port)
    )
    assert len(out) == HELLO_LEN, len(out)
    return out


def control_frame(payload: bytes) -> bytes:
    """§4.1: u32 length then the payload."""
    return u32(len(payload)) + payload


def encode_confirm(signature: bytes) -> bytes:
    return bytes([TAG_CONFIRM]) + signature


def encode_control_close(code: int, reason: str) -> bytes:
    return bytes([TAG_CLOSE]) + u16(code) + bstr(reason)


@dataclass(frozen=True, slots=True)
class Ack:
    """A decoded Ack (§4.3). ``signed_part`` is the payload minus its signature."""

    control_version: int
    selected_protocol: int
    network_id: int
    chain_id: bytes
    node_id: bytes
    nonce: bytes
    echo_nonce: bytes
    accepted_capabilities: int
    accepted_limits: Limits
    listen_port: int
    signature: bytes
    signed_part: bytes


@dataclass(frozen=True, slots=True)
class ControlClose:
    """A control Close (§4.4) or a CLOSE/RESET record payload (§5.1): code and reason."""

    code: int
    reason: str


def decode_close_payload(data: bytes) -> ControlClose:
    """``u16 code`` then ``str≤256 reason``, nothing after (§4.4, §5.1)."""
    if len(data) < 4:
        raise RawPeerError(f"close payload too short: {data!r}")
    code, n = struct.unpack_from("<HH", data)
    if not 1 <= n <= 256 or len(data) != 4 + n:
        raise RawPeerError(f"bad close reason length {n} in {data!r}")
    reason = data[4:].decode("ascii")
    if not reason.isprintable():
        raise RawPeerError(f"close reason not printable: {reason!r}")
    return ControlClose(code, reason)


def decode_control(payload: bytes) -> Ack | ControlClose:
    """Decode what a responder may send: an Ack or a Close (§4.3, §4.4)."""
    tag = payload[0]
    if tag == TAG_CLOSE:
        return decode_close_payload(payload[1:])
    if tag != TAG_ACK:
        raise RawPeerError(f"unexpected control tag {tag}")
    if len(payload) != ACK_LEN:
        raise RawPeerError(f"ack is {len(payload)} bytes, not {ACK_LEN}")
    if payload[1:9] != ACK_MAGIC:
        raise RawPeerError(f"bad ack magic {payload[1:9]!r}")
    version, selected, network = struct.unpack_from("<HHI", payload, 9)
    return Ack(
        control_version=version,
        selected_protocol=selected,
        network_id=network,
        chain_id=payload[17:49],
        node_id=payload[49:81],
        nonce=payload[81:113],
        echo_nonce=payload[113:145],
        accepted_capabilities=_U64.unpack_from(payload, 145)[0],
        accepted_limits=Limits.decode(payload[153:169]),
        listen_port=_U16.unpack_from(payload, 169)[0],
        signature=payload[171:235],
        signed_part=payload[:ACK_SIGNED_LEN],
    )


def transcript_hash(hello_payload: bytes, ack_signed_part: bytes) -> bytes:
    """§4.5."""
    h = hashlib.blake2b(digest_size=32, person=TRANSCRIPT_PERSON)
    h.update(hello_payload)
    h.update(ack_signed_part)
    return h.digest()


# --- the responder's side, for a victim that dials us ---------------------------------------


@dataclass(frozen=True, slots=True)
class DecodedHello:
    """A Hello as a victim initiator sends it (§4.2); ``payload`` is all 141 bytes."""

    control_version: int
    protocol_min: int
    protocol_max: int
    network_id: int
    chain_id: bytes
    node_id: bytes
    nonce: bytes
    capabilities: int
    limits: Limits
    listen_port: int
    payload: bytes


def decode_hello(payload: bytes) -> DecodedHello:
    if len(payload) != HELLO_LEN or payload[0] != TAG_HELLO or payload[1:9] != HELLO_MAGIC:
        raise RawPeerError(f"not a {HELLO_LEN}-byte Hello: {payload[:9]!r}, {len(payload)} bytes")
    version, pmin, pmax, network = struct.unpack_from("<HHHI", payload, 9)
    return DecodedHello(
        control_version=version,
        protocol_min=pmin,
        protocol_max=pmax,
        network_id=network,
        chain_id=payload[19:51],
        node_id=payload[51:83],
        nonce=payload[83:115],
        capabilities=_U64.unpack_from(payload, 115)[0],
        limits=Limits.decode(payload[123:139]),
        listen_port=_U16.unpack_from(payload, 139)[0],
        payload=payload,
    )


@dataclass(slots=True)
class AckParams:
    """Everything a responder puts in its Ack (§4.3); by default the honest answer to the
    Hello (accepted capabilities and limits: the Hello's own offer)."""

    chain_id: bytes
    network_id: int = NETWORK_REGTEST
    control_version: int = 1
    selected_protocol: int = 1
    accepted_capabilities: int | None = None
    accepted_limits: Limits | None = None
    listen_port: int = 0
    #: Claim another node id than our key's.
    node_id: bytes | None = None
    #: Make the signature ourselves: called with the message to sign (§2: responder domain ‖
    #: transcript hash), returns the 64 signature bytes, or None to ask for another Ack nonce
    #: (and so another transcript) to try. Default: our key signs.
    signer: Callable[[bytes], bytes | None] | None = None


#: How many Ack nonces :func:`encode_ack` tries before giving up on a custom signer.
ACK_SIGNER_ATTEMPTS = 256


def encode_ack(key: Key, hello: DecodedHello, p: AckParams) -> bytes:
    """The 235-byte Ack payload, signed by ``key`` (or ``p.signer``) over the §4.5 transcript."""
    caps = hello.capabilities if p.accepted_capabilities is None else p.accepted_capabilities
    limits = hello.limits if p.accepted_limits is None else p.accepted_limits
    signer = p.signer or key.sign
    for _ in range(ACK_SIGNER_ATTEMPTS):
        signed = (
            bytes([TAG_ACK])
            + ACK_MAGIC
            + struct.pack("<HHI", p.control_version, p.selected_protocol, p.network_id)
            + p.chain_id
            + (key.node_id if p.node_id is None else p.node_id)
            + os.urandom(32)
            + hello.nonce
            + u64(caps)
            + limits.encode()
            + u16(p.listen_port)
        )
        assert len(signed) == ACK_SIGNED_LEN, len(signed)
        sig = signer(RESPONDER_DOMAIN + transcript_hash(hello.payload, signed))
        if sig is not None:
            return signed + sig
    raise RawPeerError(f"the Ack signer found no signature in {ACK_SIGNER_ATTEMPTS} transcripts")


# =============================================================================================
# §5 multiplexer and §6 frames
# =============================================================================================


def encode_record(rtype: int, stream_id: int, payload: bytes = b"") -> bytes:
    return RECORD_HEADER.pack(rtype, stream_id, len(payload)) + payload


def encode_prelude(
    kind: int, version: int, max_frame: int, request_id: int | None = None, *, magic: bytes = b""
) -> bytes:
    """§5.3: ``ZKST kind version flag [u64] max_frame``."""
    rid = b"\x00" if request_id is None else b"\x01" + u64(request_id)
    return (magic or PRELUDE_MAGIC) + u16(kind) + u16(version) + rid + u32(max_frame)


def encode_frame(message_type: int, flags: int, payload: bytes) -> bytes:
    """§6: ``u16 type, u16 flags, u32 length`` then the payload."""
    return FRAME_HEADER.pack(message_type, flags, len(payload)) + payload


def encode_frame_header(message_type: int, flags: int, declared_len: int) -> bytes:
    """A frame header alone, declaring any length (for oversize and truncation tests)."""
    return FRAME_HEADER.pack(message_type, flags, declared_len)


def encode_reset(code: int, reason: str) -> bytes:
    return u16(code) + bstr(reason)


@dataclass(frozen=True, slots=True)
class Frame:
    message_type: int
    flags: int
    payload: bytes


@dataclass(slots=True)
class StreamState:
    """What we know about one stream, from both directions."""

    sid: int
    frame_cap: int
    window: int
    send_credit: int
    inbuf: bytearray = field(default_factory=bytearray)
    frames: deque[Frame] = field(default_factory=deque)
    received: int = 0
    granted: int = 0  # window plus every CREDIT we sent
    owed: int = 0
    sent: int = 0  # DATA payload bytes we sent
    credited: int = 0  # sum of the victim's CREDIT increments
    fin: bool = False
    reset: ControlClose | None = None
    opened_by_peer: bytes | None = None  # the victim's prelude, if the victim opened it


# =============================================================================================
# §7 discovery
# =============================================================================================


@dataclass(frozen=True, slots=True)
class RecordBody:
    """A decoded node record body (§7.3)."""

    node_id: bytes
    addrs: tuple[tuple[str, int], ...]
    services: tuple[str, ...]
    protocol_min: int
    protocol_max: int
    network_id: int
    chain_id: bytes
    sequence: int
    expires_at_unix_secs: int


@dataclass(frozen=True, slots=True)
class SignedRecord:
    format_version: int
    body: bytes
    signature: bytes
    record: RecordBody

    def verifies(self) -> bool:
        msg = RECORD_DOMAIN + u16(self.format_version) + self.body
        return verify(self.record.node_id, msg, self.signature)

    def encode(self) -> bytes:
        return u16(self.format_version) + u16(len(self.body)) + self.body + self.signature


def encode_addr(host: str, port: int) -> bytes:
    ip = ipaddress.ip_address(host)
    return bytes([4 if ip.version == 4 else 6]) + ip.packed + u16(port)


def encode_record_body(
    node_id: bytes,
    *,
    chain_id: bytes,
    network_id: int = NETWORK_REGTEST,
    addrs: tuple[tuple[str, int], ...] = (),
    services: tuple[str, ...] = ("zakura.discovery.v1",),
    protocol_min: int = 1,
    protocol_max: int = 1,
    sequence: int = 1,
    expires_at: int | None = None,
) -> bytes:
    expires = int(time.time()) + 3600 if expires_at is None else expires_at
    out = node_id + u16(len(addrs)) + b"".join(encode_addr(h, p) for h, p in addrs)
    out += u16(len(services)) + b"".join(bstr(s) for s in services)
    out += struct.pack("<HHI", protocol_min, protocol_max, network_id) + chain_id
    return out + u64(sequence) + u64(expires)


def record_signing_message(body: bytes, format_version: int = RECORD_FORMAT_VERSION) -> bytes:
    """What a node record's signature covers (§2, §7.3)."""
    return RECORD_DOMAIN + u16(format_version) + body


def assemble_record(
    body: bytes, signature: bytes, format_version: int = RECORD_FORMAT_VERSION
) -> bytes:
    """The signed record bytes (§7.3) with whatever 64 signature bytes the caller made."""
    return u16(format_version) + u16(len(body)) + body + signature


def sign_record(key: Key, body: bytes, format_version: int = RECORD_FORMAT_VERSION) -> bytes:
    """The signed record bytes (§7.3), signed by ``key`` whatever the body claims."""
    sig = key.sign(record_signing_message(body, format_version))
    return assemble_record(body, sig, format_version)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise RawPeerError(f"truncated: need {n} at {self.pos} of {len(self.data)}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.take(8))[0])

    def count(self, cap: int) -> int:
        n = self.u16()
        if n > cap:
            raise RawPeerError(f"count {n} > cap {cap}")
        return n

    def bstr(self, cap: int) -> str:
        n = self.u16()
        if not 1 <= n <= cap:
            raise RawPeerError(f"string length {n} outside 1..{cap}")
        text = self.take(n).decode("ascii")
        if not text.isprintable():
            raise RawPeerError(f"string not printable: {text!r}")
        return text

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise RawPeerError(f"{len(self.data) - self.pos} trailing bytes")


def decode_record_body(body: bytes) -> RecordBody:
    c = _Cursor(body)
    node_id = c.take(32)
    addrs: list[tuple[str, int]] = []
    for _ in range(c.count(8)):
        family = c.u8()
        if family not in (4, 6):
            raise RawPeerError(f"address family {family}")
        ip = ipaddress.ip_address(c.take(4 if family == 4 else 16))
        port = c.u16()
        if port == 0:
            raise RawPeerError("port 0")
        addrs.append((str(ip), port))
    services = tuple(c.bstr(64) for _ in range(c.count(32)))
    pmin, pmax, network = c.u16(), c.u16(), c.u32()
    chain_id = c.take(32)
    sequence, expires = c.u64(), c.u64()
    c.finish()
    return RecordBody(
        node_id, tuple(addrs), services, pmin, pmax, network, chain_id, sequence, expires
    )


def _signed(c: _Cursor) -> SignedRecord:
    version = c.u16()
    if version != RECORD_FORMAT_VERSION:
        raise RawPeerError(f"record format version {version}")
    n = c.u16()
    if not 1 <= n <= DISCOVERY_MAX - 1 - 68:
        raise RawPeerError(f"record body length {n}")
    body = c.take(n)
    sig = c.take(64)
    return SignedRecord(version, body, sig, decode_record_body(body))


@dataclass(frozen=True, slots=True)
class DHello:
    record: SignedRecord


@dataclass(frozen=True, slots=True)
class DGetPeers:
    limit: int
    wanted: tuple[str, ...]
    exclude: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class DPeers:
    records: tuple[SignedRecord, ...]


@dataclass(frozen=True, slots=True)
class DGetServices:
    wanted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Summary:
    service: str
    inbound_free: int
    outbound_free: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class DServices:
    node_id: bytes
    expires_at_unix_secs: int
    summaries: tuple[Summary, ...]


DMessage = DHello | DGetPeers | DPeers | DGetServices | DServices


def decode_discovery(payload: bytes) -> DMessage:
    """§7.2."""
    if len(payload) > DISCOVERY_MAX:
        raise RawPeerError(f"discovery payload {len(payload)} > {DISCOVERY_MAX}")
    c = _Cursor(payload)
    tag = c.u8()
    msg: DMessage
    if tag == D_HELLO:
        msg = DHello(_signed(c))
    elif tag == D_GET_PEERS:
        limit = c.u16()
        wanted = tuple(c.bstr(64) for _ in range(c.count(32)))
        exclude = tuple(c.take(32) for _ in range(c.count(256)))
        msg = DGetPeers(limit, wanted, exclude)
    elif tag == D_PEERS:
        msg = DPeers(tuple(_signed(c) for _ in range(c.count(32))))
    elif tag == D_GET_SERVICES:
        msg = DGetServices(tuple(c.bstr(64) for _ in range(c.count(32))))
    elif tag == D_SERVICES:
        node_id = c.take(32)
        expires = c.u64()
        summaries = []
        for _ in range(c.count(32)):
            service = c.bstr(64)
            inbound, outbound, n = c.u16(), c.u16(), c.u16()
            if n > 1024:
                raise RawPeerError(f"summary payload {n} > 1024")
            summaries.append(Summary(service, inbound, outbound, c.take(n)))
        msg = DServices(node_id, expires, tuple(summaries))
    else:
        raise RawPeerError(f"unknown discovery tag {tag}")
    c.finish()
    return msg


def d_hello(signed_record: bytes) -> bytes:
    return bytes([D_HELLO]) + signed_record


def d_get_peers(
    limit: int = 32, wanted: tuple[str, ...] = (), exclude: tuple[bytes, ...] = ()
) -> bytes:
    return (
        bytes([D_GET_PEERS])
        + u16(limit)
        + u16(len(wanted))
        + b"".join(bstr(s) for s in wanted)
        + u16(len(exclude))
        + b"".join(exclude)
    )


def d_peers(signed_records: tuple[bytes, ...] = ()) -> bytes:
    return bytes([D_PEERS]) + u16(len(signed_records)) + b"".join(signed_records)


def d_get_services(wanted: tuple[str, ...] = ()) -> bytes:
    return bytes([D_GET_SERVICES]) + u16(len(wanted)) + b"".join(bstr(s) for s in wanted)


def d_services(
    node_id: bytes, expires: int | None = None, summaries: tuple[Summary, ...] = ()
) -> bytes:
    out = bytes([D_SERVICES]) + node_id + u64(expires or int(time.time()) + 30)
    out += u16(len(summaries))
    for s in summaries:
        out += bstr(s.service) + u16(s.inbound_free) + u16(s.outbound_free)
        out += u16(len(s.payload)) + s.payload
    return out


# =============================================================================================
# §8 header sync
# =============================================================================================


def blake2b_256(data: bytes) -> bytes:
    """§8.2: the chain's hash, plain BLAKE2b with a 32-byte digest."""
    return hashlib.blake2b(data, digest_size=HASH_LEN).digest()


def meets_pow(header_hash: bytes, bits: int) -> bool:
    """§8.2: the hash, as a big-endian integer, is below ``2 ** (256 - bits)``."""
    return int.from_bytes(header_hash, "big") < 1 << (8 * HASH_LEN - bits)


@dataclass(frozen=True, slots=True)
class RawHeader:
    """An 89-byte header (§8.2), field by field; ``encode`` never checks anything, so a test
    can build any header it likes, valid or not."""

    version: int
    height: int
    prev_hash: bytes
    body_root: bytes
    time: int
    bits: int
    nonce: int

    def encode(self) -> bytes:
        out = (
            struct.pack("<II", self.version, self.height)
            + self.prev_hash
            + self.body_root
            + struct.pack("<QBQ", self.time, self.bits, self.nonce)
        )
        assert len(out) == HEADER_LEN, len(out)
        return out

    @property
    def hash(self) -> bytes:
        return blake2b_256(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> RawHeader:
        if len(data) != HEADER_LEN:
            raise RawPeerError(f"a header is {HEADER_LEN} bytes, got {len(data)}")
        version, height = struct.unpack_from("<II", data, 0)
        time_, bits, nonce = struct.unpack_from("<QBQ", data, 72)
        return cls(version, height, data[8:40], data[40:72], time_, bits, nonce)

    def solved(self, start_nonce: int = 0) -> RawHeader:
        """The same header with the first nonce from ``start_nonce`` that meets its bits."""
        prefix = self.encode()[: HEADER_LEN - 8]
        nonce = start_nonce
        while not meets_pow(blake2b_256(prefix + u64(nonce)), self.bits):
            nonce += 1
        return RawHeader(
            self.version,
            self.height,
            self.prev_hash,
            self.body_root,
            self.time,
            self.bits,
            nonce,
        )


@dataclass(frozen=True, slots=True)
class RawBlock:
    """A header and its body (§8.2)."""

    header: RawHeader
    body: bytes


def genesis(network_id: int = NETWORK_REGTEST) -> RawBlock:
    """§8.2: the fixed genesis of ``network_id`` (its nonce is the first that meets bits 8)."""
    body = f"zakura genesis {NETWORK_NAMES[network_id]}".encode("ascii")
    header = RawHeader(1, 0, bytes(HASH_LEN), blake2b_256(body), GENESIS_TIME, DEMO_BITS, 0)
    return RawBlock(header.solved(), body)


def mine_child(
    parent: RawHeader, body: bytes, *, time_step: int = 1, bits: int = DEMO_BITS
) -> RawBlock:
    """A valid child of ``parent`` carrying ``body`` (§8.2 link rules and proof of work)."""
    header = RawHeader(
        1, parent.height + 1, parent.hash, blake2b_256(body), parent.time + time_step, bits, 0
    )
    return RawBlock(header.solved(), body)


def forge_child(
    parent: RawHeader,
    body: bytes,
    *,
    version: int = 1,
    height: int | None = None,
    prev_hash: bytes | None = None,
    time_step: int = 1,
    bits: int = DEMO_BITS,
    pow_ok: bool = True,
) -> RawBlock:
    """A child of ``parent`` that breaks any §8.2 rule a test chooses, and only those.

    Defaults give what :func:`mine_child` gives. ``height`` and ``prev_hash`` replace the
    parent's height + 1 and hash, ``time_step`` may be 0 (equal time) or negative (time going
    back), ``version`` and ``bits`` are written as given; the nonce is the first that meets
    ``bits`` or, with ``pow_ok=False``, the first that misses it.
    """
    header = RawHeader(
        version,
        parent.height + 1 if height is None else height,
        parent.hash if prev_hash is None else prev_hash,
        blake2b_256(body),
        parent.time + time_step,
        bits,
        0,
    )
    if pow_ok:
        return RawBlock(header.solved(), body)
    prefix = header.encode()[: HEADER_LEN - 8]
    nonce = 0
    while meets_pow(blake2b_256(prefix + u64(nonce)), bits):
        nonce += 1
    missed = RawHeader(
        header.version,
        header.height,
        header.prev_hash,
        header.body_root,
        header.time,
        header.bits,
        nonce,
    )
    return RawBlock(missed, body)


def mine_chain(parent: RawHeader, n: int, *, tag: bytes = b"raw") -> list[RawBlock]:
    """``n`` valid blocks after ``parent``, with small distinct bodies."""
    out: list[RawBlock] = []
    for _ in range(n):
        prev = out[-1].header if out else parent
        out.append(mine_child(prev, tag + b" block " + str(prev.height + 1).encode()))
    return out


def hs_status(
    tip_height: int,
    tip_hash: bytes,
    anchor_height: int = 0,
    max_headers: int = HS_ADVERTISED_MAX_HEADERS,
    max_inflight: int = HS_ADVERTISED_MAX_INFLIGHT,
) -> bytes:
    """§8.3 Status, 47 bytes; any field value the struct can hold (no clamping here)."""
    return (
        bytes([HS_STATUS])
        + u32(tip_height)
        + tip_hash
        + u32(anchor_height)
        + u32(max_headers)
        + u16(max_inflight)
    )


def hs_get_headers(start_height: int, count: int) -> bytes:
    """§8.3 GetHeaders, 9 bytes; any count (0 and > 4000 included)."""
    return bytes([HS_GET_HEADERS]) + u32(start_height) + u32(count)


def hs_headers(
    headers: tuple[bytes, ...] | list[bytes],
    hints: tuple[int, ...] | list[int] | None = None,
    *,
    count: int | None = None,
) -> bytes:
    """§8.3 Headers: ``count`` (default: the number of headers) then header ‖ u32 hint each."""
    sizes = [0] * len(headers) if hints is None else list(hints)
    n = len(headers) if count is None else count
    items = b"".join(h + u32(s) for h, s in zip(headers, sizes, strict=True))
    return bytes([HS_HEADERS]) + u32(n) + items


def hs_new_block(header: bytes, body: bytes, *, body_len: int | None = None) -> bytes:
    """§8.3 NewBlock: header, u32 body length (default: the body's), body."""
    n = len(body) if body_len is None else body_len
    return bytes([HS_NEW_BLOCK]) + header + u32(n) + body


@dataclass(frozen=True, slots=True)
class HStatus:
    tip_height: int
    tip_hash: bytes
    anchor_height: int
    max_headers_per_response: int
    max_inflight_requests: int


@dataclass(frozen=True, slots=True)
class HGetHeaders:
    start_height: int
    count: int


@dataclass(frozen=True, slots=True)
class HHeaders:
    headers: tuple[bytes, ...]
    hints: tuple[int, ...]

    def decoded(self) -> list[RawHeader]:
        return [RawHeader.decode(h) for h in self.headers]


@dataclass(frozen=True, slots=True)
class HNewBlock:
    header: bytes
    body: bytes


HMessage = HStatus | HGetHeaders | HHeaders | HNewBlock


def decode_hs(payload: bytes) -> HMessage:
    """§8.3, strictly: what the victim sends must follow the document to the byte.

    The victim's Status must already be inside the clamps it applies to others (a node sends
    1000 and 10), a GetHeaders count must be 1..4000; a Headers count is only checked against
    4000 and the payload (the caller checks it against its own request).
    """
    if not 1 <= len(payload) <= HS_MAX:
        raise RawPeerError(f"header-sync payload of {len(payload)} bytes")
    c = _Cursor(payload)
    tag = c.u8()
    msg: HMessage
    if tag == HS_STATUS:
        msg = HStatus(c.u32(), c.take(HASH_LEN), c.u32(), c.u32(), c.u16())
        if not 1 <= msg.max_headers_per_response <= HS_MAX_HEADERS:
            raise RawPeerError(f"status max_headers {msg.max_headers_per_response} unclamped")
        if not 1 <= msg.max_inflight_requests <= HS_MAX_INFLIGHT:
            raise RawPeerError(f"status max_inflight {msg.max_inflight_requests} unclamped")
    elif tag == HS_GET_HEADERS:
        msg = HGetHeaders(c.u32(), c.u32())
        if not 1 <= msg.count <= HS_MAX_HEADERS:
            raise RawPeerError(f"get_headers count {msg.count} outside 1..{HS_MAX_HEADERS}")
    elif tag == HS_HEADERS:
        n = c.u32()
        if n > HS_MAX_HEADERS:
            raise RawPeerError(f"headers count {n} > {HS_MAX_HEADERS}")
        headers, hints = [], []
        for _ in range(n):
            headers.append(c.take(HEADER_LEN))
            hints.append(c.u32())
        msg = HHeaders(tuple(headers), tuple(hints))
    elif tag == HS_NEW_BLOCK:
        header = c.take(HEADER_LEN)
        n = c.u32()
        if n > MAX_BLOCK_BODY:
            raise RawPeerError(f"new_block body of {n} bytes > {MAX_BLOCK_BODY}")
        msg = HNewBlock(header, c.take(n))
    else:
        raise RawPeerError(f"unknown header-sync tag {tag}")
    c.finish()
    return msg


# =============================================================================================
# the peer
# =============================================================================================

#: Frame caps of the kinds this document defines (§4.7); other kinds get the discovery cap.
FRAME_CAPS = {KIND_DISCOVERY: DISCOVERY_FRAME_CAP, KIND_HEADER_SYNC: HS_FRAME_CAP}


class RawPeer:
    """One raw TCP connection to a victim, driven step by step by a test."""

    def __init__(self, key: Key | None = None, *, auto_credit: bool = True) -> None:
        self.key = key or Key()
        self.node_id = self.key.node_id
        self.label = self.key.label
        self.auto_credit = auto_credit
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._cond = asyncio.Condition()
        self.initiator = True
        self.ack: Ack | None = None
        self.hello_payload = b""
        #: The limits both sides accepted (from the Ack, whichever side sent it).
        self.limits: Limits | None = None
        #: Responder mode (a victim dials us): the listener and the victim's Hello.
        self._server: asyncio.Server | None = None
        self._accepted: asyncio.Future[None] | None = None
        self.victim_hello: DecodedHello | None = None
        self.ack_payload = b""
        self.streams: dict[int, StreamState] = {}
        self.next_sid = 1
        self.close: ControlClose | None = None
        self.eof = False
        self.pings: list[int] = []
        self.records_in = 0
        self._batch: bytearray | None = None
        #: Ways the victim broke the document (checked by the tests: must stay empty).
        self.violations: list[str] = []

    # ------------------------------------------------------------------ socket
    async def connect(self, host: str, port: int) -> None:
        self._reader, self._writer = await asyncio.open_connection(host, port)

    @property
    def reader(self) -> asyncio.StreamReader:
        assert self._reader is not None, "not connected"
        return self._reader

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are; a victim that already closed is not an error here."""
        if self._batch is not None:
            self._batch += data
            return
        assert self._writer is not None, "not connected"
        if not self._writer.is_closing():
            self._writer.write(data)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Everything sent inside the block leaves in one socket write, so the victim reads
        the records together, with no chance for its routines to run in between."""
        self._batch = bytearray()
        try:
            yield
        finally:
            data, self._batch = bytes(self._batch), None
            self.send_raw(data)

    async def drain(self) -> None:
        assert self._writer is not None
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    # ------------------------------------------------------------------ control (§4)
    def send_control(self, payload: bytes) -> None:
        self.send_raw(control_frame(payload))

    async def read_control_payload(self, timeout: float = 5.0) -> bytes | None:
        """One control message's payload (§4.1); None on end-of-file."""
        try:
            async with asyncio.timeout(timeout):
                prefix = await self.reader.readexactly(4)
                n = _U32.unpack(prefix)[0]
                if not 1 <= n <= CONTROL_MAX:
                    raise RawPeerError(f"control length {n} outside 1..{CONTROL_MAX}")
                return await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def read_control(self, timeout: float = 5.0) -> Ack | ControlClose | None:
        """One control message from a responder; None on end-of-file."""
        payload = await self.read_control_payload(timeout)
        return None if payload is None else decode_control(payload)

    async def expect_eof(self, timeout: float = 5.0) -> bytes:
        """Read until end-of-file; returns whatever arrived before it."""
        data = bytearray()
        try:
            async with asyncio.timeout(timeout):
                while chunk := await self.reader.read(65536):
                    data += chunk
        except ConnectionError:
            pass
        return bytes(data)

    async def send_hello(self, params: HelloParams) -> bytes:
        node_id = params.node_id if params.node_id is not None else self.node_id
        nonce = params.nonce if params.nonce is not None else os.urandom(32)
        self.hello_payload = encode_hello(params, node_id, nonce)
        self.send_control(self.hello_payload)
        await self.drain()
        return self.hello_payload

    def confirm_message(self, ack: Ack) -> bytes:
        """What our Confirm signs (§4.4): the initiator domain ‖ the §4.5 transcript hash."""
        return INITIATOR_DOMAIN + transcript_hash(self.hello_payload, ack.signed_part)

    def confirm_signature(self, ack: Ack) -> bytes:
        return self.key.sign(self.confirm_message(ack))

    async def send_confirm(self, signature: bytes, *, start_mux: bool = True) -> None:
        """Finish a handshake left at ``confirm="none"`` with any 64 signature bytes."""
        self.send_control(encode_confirm(signature))
        await self.drain()
        if start_mux:
            self.start_mux()

    async def handshake(
        self,
        params: HelloParams,
        *,
        confirm: str | Callable[[bytes], bytes] = "good",
        start_mux: bool = True,
        timeout: float = 5.0,
    ) -> Ack:
        """Hello, Ack, Confirm as initiator (§4).

        Args:
            params: What to put in the Hello.
            confirm: ``"good"``, ``"bad_signature"`` (a signature over the wrong transcript),
                ``"none"`` (stop after reading the Ack), or a function given the message the
                Confirm signs (:meth:`confirm_message`) that returns the signature bytes.
            start_mux: Start the background record reader once Confirm is written.
            timeout: Seconds to wait for the Ack.

        Raises:
            RawPeerError: The victim sent a Close or EOF instead of an Ack; ``.args[0]`` says
                which. The Ack's own signature is checked against the document.
        """
        hello = await self.send_hello(params)
        reply = await self.read_control(timeout)
        if not isinstance(reply, Ack):
            raise RawPeerError(f"expected Ack, got {reply!r}")
        th = transcript_hash(hello, reply.signed_part)
        if not verify(reply.node_id, RESPONDER_DOMAIN + th, reply.signature):
            self.violations.append("ack signature does not verify per §4.5")
        if reply.echo_nonce != hello[83:115]:
            self.violations.append("ack does not echo our nonce")
        offered = Limits.decode(hello[123:139])
        if not reply.accepted_limits.within(Limits.minimums(), offered):
            self.violations.append(
                f"ack accepts limits {reply.accepted_limits} outside [minimums, our offer] (§4.6)"
            )
        self.ack = reply
        self.limits = reply.accepted_limits
        if callable(confirm):
            self.send_control(encode_confirm(confirm(self.confirm_message(reply))))
        elif confirm == "good":
            self.send_control(encode_confirm(self.confirm_signature(reply)))
        elif confirm == "bad_signature":
            self.send_control(encode_confirm(self.key.sign(INITIATOR_DOMAIN + bytes(32))))
        elif confirm != "none":
            raise ValueError(f"unknown confirm mode {confirm!r}")
        await self.drain()
        if confirm != "none" and start_mux:
            # Having written Confirm, the initiator is in the multiplexer (§4.1), whatever
            # the responder thinks of the signature.
            self.start_mux()
        return reply

    # ------------------------------------------------------------------ responder (§4)
    async def listen(self, host: str = "127.0.0.1") -> int:
        """Listen for a victim to dial us (we become the responder); returns the port.

        Only the first connection is kept; :meth:`respond` waits for it.
        """
        loop = asyncio.get_running_loop()
        accepted: asyncio.Future[None] = loop.create_future()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self._writer is not None:
                writer.close()
                return
            self._reader, self._writer = reader, writer
            if not accepted.done():
                accepted.set_result(None)

        self._accepted = accepted
        self._server = await asyncio.start_server(on_connect, host, 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def respond(self, params: AckParams, *, timeout: float = 5.0) -> DecodedHello:
        """As responder: wait for the victim's connection, read its Hello, send our Ack.

        The victim's answer (a Confirm, or a Close refusing our Ack) is read with
        :meth:`read_confirm`.
        """
        assert self._accepted is not None, "listen() first"
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._accepted)
        except TimeoutError as exc:
            raise RawPeerError(f"the victim did not dial within {timeout} s") from exc
        self.initiator = False
        self.next_sid = 2
        payload = await self.read_control_payload(timeout)
        if payload is None:
            raise RawPeerError("end-of-file instead of a Hello")
        hello = decode_hello(payload)
        self.victim_hello = hello
        ack = encode_ack(self.key, hello, params)
        self.ack_payload = ack
        self.limits = Limits.decode(ack[153:169])
        self.send_control(ack)
        await self.drain()
        return hello

    async def read_confirm(self, timeout: float = 5.0) -> bytes | ControlClose | None:
        """The victim's answer to our Ack: the Confirm's signature (checked against §4.5 under
        the Hello's node id; a mismatch is a violation), a Close, or None on end-of-file."""
        payload = await self.read_control_payload(timeout)
        if payload is None:
            return None
        if payload[0] == TAG_CLOSE:
            return decode_close_payload(payload[1:])
        if payload[0] != TAG_CONFIRM or len(payload) != CONFIRM_LEN:
            raise RawPeerError(f"expected Confirm or Close, got {payload[:1]!r} ({len(payload)} B)")
        hello = self.victim_hello
        assert hello is not None
        th = transcript_hash(hello.payload, self.ack_payload[:ACK_SIGNED_LEN])
        if not verify(hello.node_id, INITIATOR_DOMAIN + th, payload[1:]):
            self.violations.append("confirm signature does not verify per §4.5")
        return payload[1:]

    # ------------------------------------------------------------------ records (§5)
    def start_mux(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    def send_record(self, rtype: int, sid: int, payload: bytes = b"") -> None:
        self.send_raw(encode_record(rtype, sid, payload))

    def _state(self, sid: int, kind: int) -> StreamState:
        cap = FRAME_CAPS.get(kind, DISCOVERY_FRAME_CAP)
        window = stream_window(cap)
        st = StreamState(sid, cap, window, window, granted=window)
        self.streams[sid] = st
        return st

    def open_stream(
        self,
        kind: int = KIND_DISCOVERY,
        version: int = DISCOVERY_VERSION,
        *,
        max_frame: int | None = None,
        request_id: int | None = None,
        sid: int | None = None,
        prelude: bytes | None = None,
    ) -> int:
        """Send an OPEN (§5.3); returns the stream id (the next odd one unless given)."""
        if sid is None:
            sid = self.next_sid
            self.next_sid += 2
        cap = FRAME_CAPS.get(kind, DISCOVERY_FRAME_CAP)
        payload = (
            prelude
            if prelude is not None
            else encode_prelude(kind, version, max_frame or cap, request_id)
        )
        self._state(sid, kind)
        self.send_record(REC_OPEN, sid, payload)
        return sid

    def send_data(self, sid: int, data: bytes) -> None:
        """DATA records of at most 256 KiB each; credit is tracked but not enforced here."""
        st = self.streams.get(sid)
        for i in range(0, max(len(data), 1), MAX_RECORD):
            chunk = data[i : i + MAX_RECORD]
            if st is not None:
                st.send_credit -= len(chunk)
                st.sent += len(chunk)
            self.send_record(REC_DATA, sid, chunk)

    def send_frame(self, sid: int, message_type: int, payload: bytes, flags: int = 0) -> None:
        self.send_data(sid, encode_frame(message_type, flags, payload))

    def send_discovery(
        self, sid: int, payload: bytes, *, message_type: int = 1, flags: int = 0
    ) -> None:
        self.send_frame(sid, message_type, payload, flags)

    def send_fin(self, sid: int) -> None:
        self.send_record(REC_FIN, sid)

    def send_reset(self, sid: int, code: int, reason: str) -> None:
        self.send_record(REC_RESET, sid, encode_reset(code, reason))

    def send_close(self, code: int, reason: str) -> None:
        self.send_record(REC_CLOSE, 0, encode_reset(code, reason))

    def send_ping(self, nonce: int = 1) -> None:
        self.send_record(REC_PING, 0, u64(nonce))

    async def _read_loop(self) -> None:
        try:
            while True:
                header = await self.reader.readexactly(RECORD_HEADER.size)
                rtype, sid, length = RECORD_HEADER.unpack(header)
                if length > MAX_RECORD:
                    self.violations.append(f"record of {length} bytes > {MAX_RECORD}")
                    break
                payload = await self.reader.readexactly(length) if length else b""
                self.records_in += 1
                self._on_record(rtype, sid, payload)
                async with self._cond:
                    self._cond.notify_all()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.eof = True
            async with self._cond:
                self._cond.notify_all()

    def _on_record(self, rtype: int, sid: int, payload: bytes) -> None:
        if rtype == REC_CLOSE:
            if self.close is not None:
                self.violations.append("a second CLOSE record")
            self.close = decode_close_payload(payload)
        elif rtype == REC_PING:
            if len(payload) != 8:
                self.violations.append(f"PING payload of {len(payload)} bytes")
            else:
                self.pings.append(_U64.unpack(payload)[0])
        elif rtype == REC_RESET:
            st = self.streams.get(sid)
            if st is None:
                self.violations.append(f"RESET for unknown stream {sid}")
                return
            st.reset = decode_close_payload(payload)
        elif rtype == REC_CREDIT:
            st = self.streams.get(sid)
            if st is not None:
                if len(payload) != 4 or _U32.unpack(payload)[0] == 0:
                    self.violations.append(f"bad CREDIT payload {payload!r}")
                else:
                    st.send_credit += _U32.unpack(payload)[0]
                    st.credited += _U32.unpack(payload)[0]
                    if st.credited > st.sent:  # §5.5: credit only returns bytes consumed
                        self.violations.append(
                            f"victim credited {st.credited} bytes on stream {sid}, "
                            f"more than the {st.sent} we sent on it"
                        )
        elif rtype == REC_DATA:
            self._on_data(sid, payload)
        elif rtype == REC_FIN:
            st = self.streams.get(sid)
            if st is not None:
                st.fin = True
        elif rtype == REC_OPEN:
            if sid % 2 == (1 if self.initiator else 0):
                self.violations.append(f"victim opened stream {sid} with our parity")
            kind = _U16.unpack_from(payload, 4)[0] if len(payload) >= 6 else 0
            self._state(sid, kind).opened_by_peer = payload
        else:
            self.violations.append(f"unknown record type {rtype}")

    def _on_data(self, sid: int, payload: bytes) -> None:
        st = self.streams.get(sid)
        if st is None:
            self.violations.append(f"DATA for unknown stream {sid}")
            return
        st.received += len(payload)
        if st.received > st.granted:
            self.violations.append(f"victim overran our window on stream {sid}")
        st.inbuf += payload
        while len(st.inbuf) >= FRAME_HEADER.size:
            mtype, flags, n = FRAME_HEADER.unpack_from(st.inbuf)
            if n > st.frame_cap - FRAME_HEADER.size:
                self.violations.append(f"victim frame declares {n} bytes > cap on stream {sid}")
                st.inbuf.clear()
                return
            if self.limits is not None and n > self.limits.max_message_bytes:
                self.violations.append(
                    f"victim frame of {n} bytes > negotiated max_message_bytes on stream {sid}"
                )
            end = FRAME_HEADER.size + n
            if len(st.inbuf) < end:
                return
            st.frames.append(Frame(mtype, flags, bytes(st.inbuf[FRAME_HEADER.size : end])))
            del st.inbuf[:end]

    # ------------------------------------------------------------------ waiting
    async def wait_until(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``pred()`` holds; re-checked whenever a record arrives."""
        try:
            async with asyncio.timeout(timeout), self._cond:
                await self._cond.wait_for(lambda: pred() or self.eof)
        except TimeoutError as exc:
            raise RawPeerError(f"timed out after {timeout} s waiting for {what}") from exc
        if not pred():
            raise RawPeerError(f"connection ended (close={self.close}) while waiting for {what}")

    async def recv_frame(self, sid: int, timeout: float = 5.0) -> Frame:
        st = self.streams[sid]
        await self.wait_until(lambda: bool(st.frames), timeout, f"a frame on stream {sid}")
        frame = st.frames.popleft()
        if self.auto_credit:
            st.owed += FRAME_HEADER.size + len(frame.payload)
            if st.owed >= st.window // 4:
                self.send_record(REC_CREDIT, sid, u32(st.owed))
                st.granted += st.owed
                st.owed = 0
        return frame

    async def recv_discovery(self, sid: int, timeout: float = 5.0) -> DMessage:
        frame = await self.recv_frame(sid, timeout)
        if (frame.message_type, frame.flags) != (DISCOVERY_TYPE, 0):
            self.violations.append(f"discovery frame type/flags {frame.message_type}/{frame.flags}")
        return decode_discovery(frame.payload)

    async def recv_discovery_of(
        self, sid: int, kind: type[DMessage], timeout: float = 5.0
    ) -> DMessage:
        """The next discovery message of class ``kind``; messages of other classes are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv_discovery(sid, max(0.0, deadline - time.monotonic()))
            if isinstance(msg, kind):
                return msg

    # ------------------------------------------------------------------ header sync (§8)
    def open_header_sync(self) -> int:
        """Open the kind-5 stream (§8.1) as initiator; returns its id."""
        return self.open_stream(KIND_HEADER_SYNC, HEADER_SYNC_VERSION)

    async def victim_stream(self, kind: int, timeout: float = 5.0) -> int:
        """The id of the stream of ``kind`` the victim opened (when the victim dialed us)."""

        def find() -> int | None:
            for sid, st in self.streams.items():
                prelude = st.opened_by_peer
                if prelude is not None and _U16.unpack_from(prelude, 4)[0] == kind:
                    return sid
            return None

        await self.wait_until(lambda: find() is not None, timeout, f"a kind-{kind} stream")
        sid = find()
        assert sid is not None
        return sid

    def send_hs(
        self, sid: int, payload: bytes, *, message_type: int | None = None, flags: int = 0
    ) -> None:
        """One header-sync frame; its type is the payload's tag unless told otherwise (§8.1)."""
        mtype = (payload[0] if payload else 0) if message_type is None else message_type
        self.send_frame(sid, mtype, payload, flags)

    async def recv_hs(self, sid: int, timeout: float = 5.0) -> HMessage:
        """The victim's next header-sync message, checked against §8.1 and §8.3."""
        frame = await self.recv_frame(sid, timeout)
        if frame.flags != 0 or not frame.payload or frame.message_type != frame.payload[0]:
            self.violations.append(
                f"header-sync frame type/flags {frame.message_type}/{frame.flags}, "
                f"tag {frame.payload[:1]!r}"
            )
        try:
            return decode_hs(frame.payload)
        except RawPeerError as exc:
            self.violations.append(f"undecodable header-sync message from the victim: {exc}")
            raise

    async def recv_hs_of(self, sid: int, kind: type[HMessage], timeout: float = 5.0) -> HMessage:
        """The next header-sync message of class ``kind``; others are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv_hs(sid, max(0.0, deadline - time.monotonic()))
            if isinstance(msg, kind):
                return msg

    def pending_hs(self, sid: int) -> list[HMessage]:
        """Header-sync messages received on ``sid`` but not yet read (for "nothing more came")."""
        return [decode_hs(f.payload) for f in self.streams[sid].frames]

    async def wait_reset(self, sid: int, timeout: float = 5.0) -> ControlClose:
        st = self.streams[sid]
        await self.wait_until(lambda: st.reset is not None, timeout, f"RESET of stream {sid}")
        assert st.reset is not None
        return st.reset

    async def wait_close(self, timeout: float = 5.0) -> ControlClose:
        """The victim's CLOSE record, then end-of-file (§5.6)."""
        await self.wait_until(lambda: self.close is not None, timeout, "a CLOSE record")
        await self.wait_eof(timeout)
        assert self.close is not None
        return self.close

    async def wait_eof(self, timeout: float = 5.0) -> None:
        await self.wait_until(lambda: self.eof, timeout, "end-of-file")

    async def wait_ping(self, after: int = 0, timeout: float = 5.0) -> int:
        """Wait for a PING beyond the first ``after`` ones; proves the connection is alive."""
        await self.wait_until(lambda: len(self.pings) > after, timeout, "a PING")
        return self.pings[after]
