"""Control handshake codecs and the pure checks both sides run (sans-I/O).

Invariants:
- A control message is ``u32 length || payload`` with ``length <= MAX_CONTROL_PAYLOAD_BYTES``,
  checked before the payload is read; the payload is ``u8 tag || fields``.
- The initiator sends Hello, the responder answers Ack (or Close), the initiator finishes with
  Confirm (or Close). Each side signs the same transcript hash with its own domain string, so
  both prove possession of their key and both agree on the hash used for duplicate resolution.
- Validation order follows the reference: magic, version, protocol, network, chain, identity,
  capabilities, limits. Failures are typed: neutral ones (wrong network, version, limits) are
  not the peer's fault; punitive ones (malformed, identity or nonce mismatch, bad signature)
  may be.
- Signature checks are injected as a callable so this module stays free of key handling.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from node_core.protocol import limits as L
from node_core.protocol.codec import Reader, Writer
from node_core.protocol.errors import BadMagic, CodecError, InvalidValue, OverCap, UnknownMessage

TAG_HELLO = 1
TAG_ACK = 2
TAG_CONFIRM = 3
TAG_CLOSE = 4


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits a side advertises (hello) or the responder accepts (ack: min of both)."""

    max_frame_bytes: int
    max_message_bytes: int
    max_open_streams: int
    max_inbound_queue_depth: int
    idle_timeout_millis: int

    def min(self, other: Limits) -> Limits:
        return Limits(
            max_frame_bytes=min(self.max_frame_bytes, other.max_frame_bytes),
            max_message_bytes=min(self.max_message_bytes, other.max_message_bytes),
            max_open_streams=min(self.max_open_streams, other.max_open_streams),
            max_inbound_queue_depth=min(
                self.max_inbound_queue_depth, other.max_inbound_queue_depth
            ),
            idle_timeout_millis=min(self.idle_timeout_millis, other.idle_timeout_millis),
        )

    def usable(self) -> bool:
        """True if every limit is at least the protocol minimum (see ``limits.MIN_*``)."""
        return (
            self.max_frame_bytes >= L.MIN_MAX_FRAME_BYTES
            and self.max_message_bytes >= L.MIN_MAX_MESSAGE_BYTES
            and self.max_open_streams >= 1
            and self.max_inbound_queue_depth >= 1
            and self.idle_timeout_millis >= L.MIN_IDLE_TIMEOUT_MILLIS
        )

    def fits_within(self, other: Limits) -> bool:
        """True if every limit is non-zero and no larger than ``other``'s."""
        return all(
            0 < mine <= theirs
            for mine, theirs in (
                (self.max_frame_bytes, other.max_frame_bytes),
                (self.max_message_bytes, other.max_message_bytes),
                (self.max_open_streams, other.max_open_streams),
                (self.max_inbound_queue_depth, other.max_inbound_queue_depth),
                (self.idle_timeout_millis, other.idle_timeout_millis),
            )
        )


DEFAULT_LIMITS = Limits(
    max_frame_bytes=L.LOCAL_MAX_FRAME_BYTES,
    max_message_bytes=L.LOCAL_MAX_MESSAGE_BYTES,
    max_open_streams=L.LOCAL_MAX_OPEN_STREAMS,
    max_inbound_queue_depth=L.LOCAL_MAX_INBOUND_QUEUE_DEPTH,
    idle_timeout_millis=L.DEFAULT_IDLE_TIMEOUT_MILLIS,
)


@dataclass(frozen=True, slots=True)
class Hello:
    """Initiator's opening message."""

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


@dataclass(frozen=True, slots=True)
class Ack:
    """Responder's answer: what was accepted, plus its signature over the transcript."""

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


@dataclass(frozen=True, slots=True)
class Confirm:
    """Initiator's signature over the transcript; completes the handshake."""

    signature: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Sent by whichever side refuses the handshake, just before it closes the socket."""

    code: int
    reason: str


ControlMessage = Hello | Ack | Confirm | Close


class HandshakeFailure(Exception):
    """A typed handshake failure.

    Attributes:
        reason: stable label used in journal rows, metrics and the Close message.
        punitive: True if the peer may be at fault (malformed data, identity or signature).
        close_code: the code sent in the Close message (1 for admission refusals, else 0).
        after_ack: set by the responder when the failure came after its Ack, so the refusal
            must travel as a multiplexer CLOSE record (the initiator has left the handshake).
    """

    def __init__(
        self, reason: str, detail: str = "", *, punitive: bool = False, close_code: int = 0
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.punitive = punitive
        self.close_code = close_code
        self.after_ack = False


def _write_limits(w: Writer, limits: Limits) -> None:
    w.u32(limits.max_frame_bytes).u32(limits.max_message_bytes)
    w.u16(limits.max_open_streams).u16(limits.max_inbound_queue_depth)
    w.u32(limits.idle_timeout_millis)


def _read_limits(r: Reader) -> Limits:
    return Limits(
        max_frame_bytes=r.u32("max_frame_bytes"),
        max_message_bytes=r.u32("max_message_bytes"),
        max_open_streams=r.u16("max_open_streams"),
        max_inbound_queue_depth=r.u16("max_inbound_queue_depth"),
        idle_timeout_millis=r.u32("idle_timeout_millis"),
    )


def _ack_body(w: Writer, m: Ack) -> None:
    w.u8(TAG_ACK).raw(L.CONTROL_ACK_MAGIC).u16(m.control_version).u16(m.selected_protocol)
    w.u32(m.network_id).fixed(m.chain_id, 32, "chain_id").fixed(m.node_id, 32, "node_id")
    w.fixed(m.nonce, 32, "nonce").fixed(m.echo_nonce, 32, "echo_nonce")
    w.u64(m.accepted_capabilities)
    _write_limits(w, m.accepted_limits)
    w.u16(m.listen_port)


def ack_transcript_body(ack: Ack) -> bytes:
    """The Ack payload without its signature: the part the transcript hash covers."""
    w = Writer()
    _ack_body(w, ack)
    return w.getvalue()


def encode_control(msg: ControlMessage) -> bytes:
    """Encode a control message payload (without the u32 length prefix)."""
    w = Writer()
    if isinstance(msg, Hello):
        w.u8(TAG_HELLO).raw(L.CONTROL_HELLO_MAGIC).u16(msg.control_version)
        w.u16(msg.protocol_min).u16(msg.protocol_max).u32(msg.network_id)
        w.fixed(msg.chain_id, 32, "chain_id").fixed(msg.node_id, 32, "node_id")
        w.fixed(msg.nonce, 32, "nonce").u64(msg.capabilities)
        _write_limits(w, msg.limits)
        w.u16(msg.listen_port)
    elif isinstance(msg, Ack):
        _ack_body(w, msg)
        w.fixed(msg.signature, L.SIGNATURE_BYTES, "signature")
    elif isinstance(msg, Confirm):
        w.u8(TAG_CONFIRM).fixed(msg.signature, L.SIGNATURE_BYTES, "signature")
    else:
        w.u8(TAG_CLOSE).u16(msg.code).bounded_str(msg.reason, L.MAX_CLOSE_REASON_BYTES, "reason")
    out = w.getvalue()
    if len(out) > L.MAX_CONTROL_PAYLOAD_BYTES:
        raise OverCap(f"control payload {len(out)} > {L.MAX_CONTROL_PAYLOAD_BYTES}")
    return out


def frame_control(payload: bytes) -> bytes:
    """Prefix a control payload with its u32 little-endian length."""
    return Writer().u32(len(payload)).raw(payload).getvalue()


def control_length(prefix: bytes) -> int:
    """Decode and cap-check the 4-byte length prefix before the payload is read."""
    r = Reader(prefix)
    n = r.u32("control length")
    r.finish()
    if n == 0:
        raise InvalidValue("control payload is empty")
    if n > L.MAX_CONTROL_PAYLOAD_BYTES:
        raise OverCap(f"control payload {n} > {L.MAX_CONTROL_PAYLOAD_BYTES}")
    return n


def decode_control(payload: bytes) -> ControlMessage:
    """Decode a control payload; raises only :class:`CodecError`."""
    if len(payload) > L.MAX_CONTROL_PAYLOAD_BYTES:
        raise OverCap(f"control payload {len(payload)} > {L.MAX_CONTROL_PAYLOAD_BYTES}")
    r = Reader(payload)
    tag = r.u8("tag")
    msg: ControlMessage
    if tag == TAG_HELLO:
        if r.take(8, "magic") != L.CONTROL_HELLO_MAGIC:
            raise BadMagic("hello magic")
        msg = Hello(
            control_version=r.u16(),
            protocol_min=r.u16(),
            protocol_max=r.u16(),
            network_id=r.u32(),
            chain_id=r.take(32, "chain_id"),
            node_id=r.take(32, "node_id"),
            nonce=r.take(32, "nonce"),
            capabilities=r.u64(),
            limits=_read_limits(r),
            listen_port=r.u16(),
        )
    elif tag == TAG_ACK:
        if r.take(8, "magic") != L.CONTROL_ACK_MAGIC:
            raise BadMagic("ack magic")
        msg = Ack(
            control_version=r.u16(),
            selected_protocol=r.u16(),
            network_id=r.u32(),
            chain_id=r.take(32, "chain_id"),
            node_id=r.take(32, "node_id"),
            nonce=r.take(32, "nonce"),
            echo_nonce=r.take(32, "echo_nonce"),
            accepted_capabilities=r.u64(),
            accepted_limits=_read_limits(r),
            listen_port=r.u16(),
            signature=r.take(L.SIGNATURE_BYTES, "signature"),
        )
    elif tag == TAG_CONFIRM:
        msg = Confirm(signature=r.take(L.SIGNATURE_BYTES, "signature"))
    elif tag == TAG_CLOSE:
        msg = Close(code=r.u16("code"), reason=r.bounded_str(L.MAX_CLOSE_REASON_BYTES, "reason"))
    else:
        raise UnknownMessage(f"control tag {tag}")
    r.finish()
    return msg


def transcript_hash(hello_payload: bytes, ack_body: bytes) -> bytes:
    """BLAKE2b-256 over the encoded hello and the ack without its signature."""
    h = hashlib.blake2b(digest_size=L.TRANSCRIPT_HASH_BYTES, person=L.TRANSCRIPT_PERSON)
    h.update(hello_payload)
    h.update(ack_body)
    return h.digest()


def responder_signing_message(th: bytes) -> bytes:
    return L.RESPONDER_SIGNING_DOMAIN + th


def initiator_signing_message(th: bytes) -> bytes:
    return L.INITIATOR_SIGNING_DOMAIN + th


@dataclass(frozen=True, slots=True)
class LocalParams:
    """What this node offers in a handshake."""

    network_id: int
    chain_id: bytes
    node_id: bytes
    capabilities: int
    limits: Limits
    listen_port: int
    required_capabilities: int = 0
    protocol_min: int = L.PROTOCOL_VERSION
    protocol_max: int = L.PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The outcome both sides agree on."""

    protocol: int
    capabilities: int
    limits: Limits


def _common_checks(
    local: LocalParams, network_id: int, chain_id: bytes, node_id: bytes, version: int
) -> None:
    if version != L.CONTROL_VERSION:
        raise HandshakeFailure("unsupported_version", f"control version {version}")
    if network_id != local.network_id:
        raise HandshakeFailure("wrong_network", f"peer network {network_id}")
    if chain_id != local.chain_id:
        raise HandshakeFailure("wrong_chain", f"peer chain {chain_id.hex()[:16]}")
    if node_id == local.node_id:
        raise HandshakeFailure("self_connection", "peer has our own node id")


def negotiate(local: LocalParams, hello: Hello) -> Negotiated:
    """Responder: validate a Hello and compute what is accepted (intersection, minimum)."""
    _common_checks(local, hello.network_id, hello.chain_id, hello.node_id, hello.control_version)
    selected = min(local.protocol_max, hello.protocol_max)
    if selected < max(local.protocol_min, hello.protocol_min):
        raise HandshakeFailure(
            "incompatible_protocol", f"peer {hello.protocol_min}..{hello.protocol_max}"
        )
    accepted_caps = hello.capabilities & local.capabilities
    if accepted_caps & local.required_capabilities != local.required_capabilities:
        raise HandshakeFailure("missing_capability", f"peer offers {hello.capabilities:#x}")
    if not hello.limits.fits_within(_MAX_ACCEPTABLE) or not hello.limits.usable():
        raise HandshakeFailure("resource_limit", "a limit is outside the protocol's range")
    return Negotiated(selected, accepted_caps, hello.limits.min(local.limits))


_MAX_ACCEPTABLE = Limits(0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF, 0xFFFF, L.LOCAL_MAX_IDLE_TIMEOUT_MILLIS)


def check_ack(
    local: LocalParams,
    hello: Hello,
    ack: Ack,
    verify: Callable[[bytes, bytes, bytes], bool],
    expected_node_id: bytes | None = None,
) -> Negotiated:
    """Initiator: validate the responder's Ack, including its transcript signature."""
    _common_checks(local, ack.network_id, ack.chain_id, ack.node_id, ack.control_version)
    if not hello.protocol_min <= ack.selected_protocol <= hello.protocol_max:
        raise HandshakeFailure("incompatible_protocol", f"selected {ack.selected_protocol}")
    if expected_node_id is not None and ack.node_id != expected_node_id:
        raise HandshakeFailure("identity_mismatch", "responder is not who we dialed", punitive=True)
    if ack.echo_nonce != hello.nonce:
        raise HandshakeFailure("nonce_mismatch", "ack does not echo our nonce", punitive=True)
    if ack.accepted_capabilities & ~hello.capabilities:
        raise HandshakeFailure(
            "malformed", "ack accepts capabilities we never offered", punitive=True
        )
    if not ack.accepted_limits.fits_within(hello.limits) or not ack.accepted_limits.usable():
        raise HandshakeFailure("resource_limit", "accepted limits are outside what we offered")
    th = transcript_hash(encode_control(hello), ack_transcript_body(ack))
    if not verify(ack.node_id, responder_signing_message(th), ack.signature):
        raise HandshakeFailure("bad_signature", "responder signature", punitive=True)
    return Negotiated(ack.selected_protocol, ack.accepted_capabilities, ack.accepted_limits)


def check_confirm(
    hello: Hello, ack: Ack, confirm: Confirm, verify: Callable[[bytes, bytes, bytes], bool]
) -> bytes:
    """Responder: verify the initiator's signature; returns the transcript hash."""
    th = transcript_hash(encode_control(hello), ack_transcript_body(ack))
    if not verify(hello.node_id, initiator_signing_message(th), confirm.signature):
        raise HandshakeFailure("bad_signature", "initiator signature", punitive=True)
    return th


def expect(msg: ControlMessage, kind: type[Hello] | type[Ack] | type[Confirm]) -> None:
    """Raise the right failure if the peer sent Close or an unexpected message."""
    if isinstance(msg, Close):
        raise HandshakeFailure(f"peer_closed:{msg.reason}", f"code {msg.code}")
    if not isinstance(msg, kind):
        raise HandshakeFailure("malformed", f"expected {kind.__name__}", punitive=True)


def decode_or_fail(payload: bytes) -> ControlMessage:
    """Decode a control payload, turning codec errors into a punitive failure."""
    try:
        return decode_control(payload)
    except CodecError as exc:
        raise HandshakeFailure("malformed", str(exc), punitive=True) from exc
