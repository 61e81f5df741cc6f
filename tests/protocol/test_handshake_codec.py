"""Control handshake: codec round trips, hostile bytes, and the pure negotiation checks."""

from __future__ import annotations

import os
import struct
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node_core.identity import Identity, verify
from node_core.protocol import limits as L
from node_core.protocol.errors import (
    BadMagic,
    CodecError,
    InvalidValue,
    OverCap,
    TrailingBytes,
    Truncated,
    UnknownMessage,
)
from node_core.protocol.handshake import (
    DEFAULT_LIMITS,
    Ack,
    Close,
    Confirm,
    ControlMessage,
    HandshakeFailure,
    Hello,
    Limits,
    LocalParams,
    Negotiated,
    ack_transcript_body,
    check_ack,
    check_confirm,
    control_length,
    decode_control,
    decode_or_fail,
    encode_control,
    frame_control,
    initiator_signing_message,
    negotiate,
    responder_signing_message,
    transcript_hash,
)

U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFF_FFFF)
U64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
ID32 = st.binary(min_size=32, max_size=32)
SIG64 = st.binary(min_size=64, max_size=64)

limits_st = st.builds(
    Limits,
    max_frame_bytes=U32,
    max_message_bytes=U32,
    max_open_streams=U16,
    max_inbound_queue_depth=U16,
    idle_timeout_millis=U32,
)
#: Limits a node could be configured with: at or above the protocol minimums.
usable_limits_st = st.builds(
    Limits,
    max_frame_bytes=st.integers(L.MIN_MAX_FRAME_BYTES, 0xFFFF_FFFF),
    max_message_bytes=st.integers(L.MIN_MAX_MESSAGE_BYTES, 0xFFFF_FFFF),
    max_open_streams=st.integers(1, 0xFFFF),
    max_inbound_queue_depth=st.integers(1, 0xFFFF),
    idle_timeout_millis=st.integers(L.MIN_IDLE_TIMEOUT_MILLIS, L.LOCAL_MAX_IDLE_TIMEOUT_MILLIS),
)
hello_st = st.builds(
    Hello,
    control_version=U16,
    protocol_min=U16,
    protocol_max=U16,
    network_id=U32,
    chain_id=ID32,
    node_id=ID32,
    nonce=ID32,
    capabilities=U64,
    limits=limits_st,
    listen_port=U16,
)
ack_st = st.builds(
    Ack,
    control_version=U16,
    selected_protocol=U16,
    network_id=U32,
    chain_id=ID32,
    node_id=ID32,
    nonce=ID32,
    echo_nonce=ID32,
    accepted_capabilities=U64,
    accepted_limits=limits_st,
    listen_port=U16,
    signature=SIG64,
)
confirm_st = st.builds(Confirm, signature=SIG64)
printable_ascii = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=256
)
close_st = st.builds(Close, code=U16, reason=printable_ascii)
control_st: st.SearchStrategy[ControlMessage] = st.one_of(hello_st, ack_st, confirm_st, close_st)


def decode_only_codec_errors(data: bytes) -> None:
    """Decoding hostile bytes either raises a CodecError (nothing else) or succeeds, and then
    the encoding is canonical: re-encoding gives back exactly the input."""
    try:
        msg = decode_control(data)
    except CodecError:
        return
    assert encode_control(msg) == data


# --- codec ---------------------------------------------------------------------------------


@given(control_st)
def test_control_round_trip(msg: ControlMessage) -> None:
    payload = encode_control(msg)
    assert len(payload) <= L.MAX_CONTROL_PAYLOAD_BYTES
    assert decode_control(payload) == msg
    # The framed form carries the exact payload length.
    framed = frame_control(payload)
    assert control_length(framed[:4]) == len(payload)
    assert framed[4:] == payload


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_codec_error(data: bytes) -> None:
    decode_only_codec_errors(data)


@settings(max_examples=300)
@given(st.integers(1, 4), st.binary(max_size=300))
def test_arbitrary_tagged_bytes_raise_only_codec_error(tag: int, rest: bytes) -> None:
    # Steer past the tag byte so every message body parser is exercised.
    decode_only_codec_errors(bytes([tag]) + rest)


@given(control_st, st.data())
def test_truncated_encoding_raises_codec_error(msg: ControlMessage, data: st.DataObject) -> None:
    payload = encode_control(msg)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(CodecError):
        decode_control(payload[:cut])


@given(control_st, st.binary(min_size=1, max_size=8))
def test_appended_bytes_rejected(msg: ControlMessage, extra: bytes) -> None:
    with pytest.raises(TrailingBytes):
        decode_control(encode_control(msg) + extra)


@given(control_st, st.data())
def test_flipped_byte_raises_only_codec_error(msg: ControlMessage, data: st.DataObject) -> None:
    payload = bytearray(encode_control(msg))
    i = data.draw(st.integers(0, len(payload) - 1))
    payload[i] ^= data.draw(st.integers(1, 255))
    decode_only_codec_errors(bytes(payload))


@given(control_st, st.data())
def test_mutated_encoding_raises_only_codec_error(msg: ControlMessage, data: st.DataObject) -> None:
    payload = bytearray(encode_control(msg))
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        i = data.draw(st.integers(0, max(0, len(payload) - 1)))
        if op == "flip" and payload:
            payload[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            payload.insert(i, data.draw(st.integers(0, 255)))
        elif payload:
            del payload[i]
    decode_only_codec_errors(bytes(payload))


def test_unknown_tag_rejected() -> None:
    for tag in (0, 5, 255):
        with pytest.raises(UnknownMessage):
            decode_control(bytes([tag]) + b"\x00" * 64)


def test_empty_payload_truncated() -> None:
    with pytest.raises(Truncated):
        decode_control(b"")


def test_bad_magic_rejected() -> None:
    hello = make_hello(os.urandom(32))
    payload = bytearray(encode_control(hello))
    payload[1] ^= 0xFF  # first magic byte, right after the tag
    with pytest.raises(BadMagic):
        decode_control(bytes(payload))
    ack_payload = bytearray(encode_control(make_unsigned_ack(hello, os.urandom(32))))
    ack_payload[8] ^= 0xFF  # last magic byte
    with pytest.raises(BadMagic):
        decode_control(bytes(ack_payload))


def test_hello_magic_is_not_accepted_for_ack() -> None:
    hello_payload = encode_control(make_hello(os.urandom(32)))
    with pytest.raises(CodecError):
        decode_control(bytes([2]) + hello_payload[1:])


def test_oversized_payload_rejected_before_parsing() -> None:
    with pytest.raises(OverCap):
        decode_control(b"\x03" + b"\x00" * L.MAX_CONTROL_PAYLOAD_BYTES)


@pytest.mark.parametrize(
    "reason",
    [
        b"",  # empty
        b"caf\xc3\xa9",  # not ASCII
        b"a\nb",  # ASCII but not printable
        b"\x00",
        b"x" * 257,  # over the cap
    ],
)
def test_close_reason_validated(reason: bytes) -> None:
    payload = b"\x04" + struct.pack("<HH", 0, len(reason)) + reason
    with pytest.raises(CodecError):
        decode_control(payload)


def test_close_reason_length_cap_is_256() -> None:
    ok = Close(0, "r" * 256)
    assert decode_control(encode_control(ok)) == ok
    with pytest.raises(OverCap):
        encode_control(Close(0, "r" * 257))
    with pytest.raises(InvalidValue):
        encode_control(Close(0, ""))


def test_encode_refuses_wrong_fixed_sizes() -> None:
    hello = make_hello(os.urandom(32))
    with pytest.raises(InvalidValue):
        encode_control(replace(hello, nonce=b"\x00" * 31))
    with pytest.raises(InvalidValue):
        encode_control(Confirm(signature=b"\x00" * 63))


# --- control_length ------------------------------------------------------------------------


def test_control_length_rejects_zero() -> None:
    with pytest.raises(InvalidValue):
        control_length(struct.pack("<I", 0))


@pytest.mark.parametrize("n", [L.MAX_CONTROL_PAYLOAD_BYTES + 1, 1 << 20, 0xFFFF_FFFF])
def test_control_length_rejects_over_16_kib(n: int) -> None:
    # Only the 4-byte prefix is handed over: the cap is enforced before any payload is read.
    with pytest.raises(OverCap):
        control_length(struct.pack("<I", n))


@pytest.mark.parametrize("n", [1, 100, L.MAX_CONTROL_PAYLOAD_BYTES])
def test_control_length_accepts_within_cap(n: int) -> None:
    assert L.MAX_CONTROL_PAYLOAD_BYTES == 16 * 1024
    assert control_length(struct.pack("<I", n)) == n


@pytest.mark.parametrize("prefix", [b"", b"\x01\x00\x00", b"\x01\x00\x00\x00\x00"])
def test_control_length_needs_exactly_four_bytes(prefix: bytes) -> None:
    with pytest.raises(CodecError):
        control_length(prefix)


@given(st.binary(max_size=8))
def test_control_length_raises_only_codec_error(prefix: bytes) -> None:
    try:
        n = control_length(prefix)
    except CodecError:
        return
    assert 1 <= n <= L.MAX_CONTROL_PAYLOAD_BYTES


# --- pure checks ---------------------------------------------------------------------------

CHAIN = bytes(range(32))
NETWORK = int(L.NetworkId.REGTEST)
ALL_CAPS = int(L.Capability.DISCOVERY | L.Capability.HEADER_SYNC | L.Capability.BLOCK_SYNC)


def make_local(node_id: bytes, **overrides: object) -> LocalParams:
    params = LocalParams(
        network_id=NETWORK,
        chain_id=CHAIN,
        node_id=node_id,
        capabilities=ALL_CAPS,
        limits=DEFAULT_LIMITS,
        listen_port=9000,
    )
    return replace(params, **overrides)  # type: ignore[arg-type]


def make_hello(node_id: bytes, **overrides: object) -> Hello:
    hello = Hello(
        control_version=L.CONTROL_VERSION,
        protocol_min=L.PROTOCOL_VERSION,
        protocol_max=L.PROTOCOL_VERSION,
        network_id=NETWORK,
        chain_id=CHAIN,
        node_id=node_id,
        nonce=os.urandom(32),
        capabilities=ALL_CAPS,
        limits=DEFAULT_LIMITS,
        listen_port=9001,
    )
    return replace(hello, **overrides)  # type: ignore[arg-type]


def make_unsigned_ack(
    hello: Hello, responder_id: bytes, negotiated: Negotiated | None = None
) -> Ack:
    return Ack(
        control_version=L.CONTROL_VERSION,
        selected_protocol=negotiated.protocol if negotiated else L.PROTOCOL_VERSION,
        network_id=NETWORK,
        chain_id=CHAIN,
        node_id=responder_id,
        nonce=os.urandom(32),
        echo_nonce=hello.nonce,
        accepted_capabilities=negotiated.capabilities if negotiated else hello.capabilities,
        accepted_limits=negotiated.limits if negotiated else hello.limits,
        listen_port=9000,
        signature=b"\x00" * 64,
    )


def sign_ack(ack: Ack, hello: Hello, responder: Identity) -> Ack:
    th = transcript_hash(encode_control(hello), ack_transcript_body(ack))
    return replace(ack, signature=responder.sign(responder_signing_message(th)))


def sign_confirm(hello: Hello, ack: Ack, initiator: Identity) -> Confirm:
    th = transcript_hash(encode_control(hello), ack_transcript_body(ack))
    return Confirm(signature=initiator.sign(initiator_signing_message(th)))


@pytest.fixture
def initiator() -> Identity:
    return Identity.generate()


@pytest.fixture
def responder() -> Identity:
    return Identity.generate()


@given(st.one_of(limits_st, usable_limits_st), usable_limits_st, U64, U64)
def test_negotiate_is_intersection_and_min(
    theirs: Limits, ours: Limits, their_caps: int, our_caps: int
) -> None:
    hello = make_hello(b"\x01" * 32, capabilities=their_caps, limits=theirs)
    local = make_local(b"\x02" * 32, capabilities=our_caps, limits=ours)
    if not theirs.usable() or not theirs.fits_within(
        Limits(0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF, 0xFFFF, L.LOCAL_MAX_IDLE_TIMEOUT_MILLIS)
    ):
        with pytest.raises(HandshakeFailure) as info:
            negotiate(local, hello)
        assert info.value.reason == "resource_limit"
        assert not info.value.punitive
        return
    got = negotiate(local, hello)
    assert got.protocol == L.PROTOCOL_VERSION
    assert got.capabilities == their_caps & our_caps
    assert got.limits == Limits(
        max_frame_bytes=min(theirs.max_frame_bytes, ours.max_frame_bytes),
        max_message_bytes=min(theirs.max_message_bytes, ours.max_message_bytes),
        max_open_streams=min(theirs.max_open_streams, ours.max_open_streams),
        max_inbound_queue_depth=min(theirs.max_inbound_queue_depth, ours.max_inbound_queue_depth),
        idle_timeout_millis=min(theirs.idle_timeout_millis, ours.idle_timeout_millis),
    )


def test_negotiate_concrete_example() -> None:
    theirs = Limits(100_000, 500_000, 10, 4096, 20_000)
    ours = Limits(200_000, 400_000, 20, 100, 30_000)
    hello = make_hello(
        b"\x01" * 32,
        capabilities=int(L.Capability.DISCOVERY | L.Capability.HEADER_SYNC),
        limits=theirs,
    )
    local = make_local(
        b"\x02" * 32,
        capabilities=int(L.Capability.HEADER_SYNC | L.Capability.BLOCK_SYNC),
        limits=ours,
    )
    got = negotiate(local, hello)
    assert got.capabilities == int(L.Capability.HEADER_SYNC)
    assert got.limits == Limits(100_000, 400_000, 10, 100, 20_000)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"network_id": int(L.NetworkId.MAINNET)}, "wrong_network"),
        ({"chain_id": b"\xee" * 32}, "wrong_chain"),
        ({"control_version": L.CONTROL_VERSION + 1}, "unsupported_version"),
        ({"control_version": 0}, "unsupported_version"),
        ({"node_id": b"\x02" * 32}, "self_connection"),
    ],
)
def test_negotiate_neutral_failures(overrides: dict[str, object], reason: str) -> None:
    local = make_local(b"\x02" * 32)
    hello = replace(make_hello(b"\x01" * 32), **overrides)  # type: ignore[arg-type]
    with pytest.raises(HandshakeFailure) as info:
        negotiate(local, hello)
    assert info.value.reason == reason
    assert info.value.punitive is False


def test_negotiate_missing_required_capability_is_neutral() -> None:
    local = make_local(b"\x02" * 32, required_capabilities=int(L.Capability.BLOCK_SYNC))
    hello = make_hello(b"\x01" * 32, capabilities=int(L.Capability.DISCOVERY))
    with pytest.raises(HandshakeFailure) as info:
        negotiate(local, hello)
    assert info.value.reason == "missing_capability"
    assert not info.value.punitive


def test_negotiate_zero_limit_is_resource_limit() -> None:
    hello = make_hello(b"\x01" * 32, limits=replace(DEFAULT_LIMITS, max_open_streams=0))
    with pytest.raises(HandshakeFailure) as info:
        negotiate(make_local(b"\x02" * 32), hello)
    assert info.value.reason == "resource_limit"
    assert not info.value.punitive


def test_negotiate_incompatible_protocol() -> None:
    hello = make_hello(b"\x01" * 32, protocol_min=7, protocol_max=9)
    with pytest.raises(HandshakeFailure) as info:
        negotiate(make_local(b"\x02" * 32), hello)
    assert info.value.reason == "incompatible_protocol"
    assert not info.value.punitive


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"network_id": int(L.NetworkId.TESTNET)}, "wrong_network"),
        ({"chain_id": b"\xee" * 32}, "wrong_chain"),
        ({"control_version": 9}, "unsupported_version"),
    ],
)
def test_check_ack_neutral_failures(
    initiator: Identity, responder: Identity, overrides: dict[str, object], reason: str
) -> None:
    hello = make_hello(initiator.node_id)
    ack = sign_ack(
        replace(make_unsigned_ack(hello, responder.node_id), **overrides),  # type: ignore[arg-type]
        hello,
        responder,
    )
    with pytest.raises(HandshakeFailure) as info:
        check_ack(make_local(initiator.node_id), hello, ack, verify)
    assert info.value.reason == reason
    assert info.value.punitive is False


def test_check_ack_self_connection(initiator: Identity) -> None:
    hello = make_hello(initiator.node_id)
    ack = sign_ack(make_unsigned_ack(hello, initiator.node_id), hello, initiator)
    with pytest.raises(HandshakeFailure) as info:
        check_ack(make_local(initiator.node_id), hello, ack, verify)
    assert info.value.reason == "self_connection"
    assert info.value.punitive is False


def test_check_ack_wrong_echo_nonce_is_punitive(initiator: Identity, responder: Identity) -> None:
    hello = make_hello(initiator.node_id)
    ack = make_unsigned_ack(hello, responder.node_id)
    ack = sign_ack(replace(ack, echo_nonce=bytes(b ^ 1 for b in hello.nonce)), hello, responder)
    with pytest.raises(HandshakeFailure) as info:
        check_ack(make_local(initiator.node_id), hello, ack, verify)
    assert info.value.reason == "nonce_mismatch"
    assert info.value.punitive is True


def test_check_ack_bad_signature_is_punitive(initiator: Identity, responder: Identity) -> None:
    hello = make_hello(initiator.node_id)
    ack = sign_ack(make_unsigned_ack(hello, responder.node_id), hello, responder)
    local = make_local(initiator.node_id)
    bad_sig = bytearray(ack.signature)
    bad_sig[0] ^= 1
    for forged in (
        replace(ack, signature=bytes(bad_sig)),
        replace(ack, signature=b"\x00" * 64),
        # Signed by someone else, claiming the responder's id.
        sign_ack(ack, hello, Identity.generate()),
        # Field changed after signing: the transcript no longer matches.
        replace(ack, listen_port=ack.listen_port + 1),
    ):
        with pytest.raises(HandshakeFailure) as info:
            check_ack(local, hello, forged, verify)
        assert info.value.reason == "bad_signature"
        assert info.value.punitive is True


def test_check_ack_wrong_domain_signature_rejected(
    initiator: Identity, responder: Identity
) -> None:
    # An initiator-domain signature must not pass as a responder signature.
    hello = make_hello(initiator.node_id)
    ack = make_unsigned_ack(hello, responder.node_id)
    th = transcript_hash(encode_control(hello), ack_transcript_body(ack))
    ack = replace(ack, signature=responder.sign(initiator_signing_message(th)))
    with pytest.raises(HandshakeFailure) as info:
        check_ack(make_local(initiator.node_id), hello, ack, verify)
    assert info.value.reason == "bad_signature"


def test_check_ack_identity_mismatch_is_punitive(initiator: Identity, responder: Identity) -> None:
    hello = make_hello(initiator.node_id)
    ack = sign_ack(make_unsigned_ack(hello, responder.node_id), hello, responder)
    with pytest.raises(HandshakeFailure) as info:
        check_ack(
            make_local(initiator.node_id),
            hello,
            ack,
            verify,
            expected_node_id=Identity.generate().node_id,
        )
    assert info.value.reason == "identity_mismatch"
    assert info.value.punitive is True


def test_check_ack_unoffered_capability_is_punitive(
    initiator: Identity, responder: Identity
) -> None:
    hello = make_hello(initiator.node_id, capabilities=int(L.Capability.DISCOVERY))
    ack = make_unsigned_ack(hello, responder.node_id)
    ack = sign_ack(
        replace(ack, accepted_capabilities=int(L.Capability.DISCOVERY | L.Capability.BLOCK_SYNC)),
        hello,
        responder,
    )
    with pytest.raises(HandshakeFailure) as info:
        check_ack(make_local(initiator.node_id), hello, ack, verify)
    assert info.value.punitive is True


def test_check_ack_limits_above_offer_is_resource_limit(
    initiator: Identity, responder: Identity
) -> None:
    hello = make_hello(initiator.node_id, limits=Limits(1000, 1000, 10, 10, 1000))
    ack = make_unsigned_ack(hello, responder.node_id)
    ack = sign_ack(replace(ack, accepted_limits=Limits(1000, 1001, 10, 10, 1000)), hello, responder)
    with pytest.raises(HandshakeFailure) as info:
        check_ack(make_local(initiator.node_id), hello, ack, verify)
    assert info.value.reason == "resource_limit"
    assert not info.value.punitive


def test_full_handshake_happy_path(initiator: Identity, responder: Identity) -> None:
    initiator_local = make_local(initiator.node_id, listen_port=9001)
    responder_local = make_local(
        responder.node_id,
        capabilities=int(L.Capability.DISCOVERY | L.Capability.HEADER_SYNC),
        limits=Limits(1 << 20, 1 << 20, 64, 256, 60_000),
    )
    # Initiator -> Hello, through the codec as it would cross the wire.
    hello = make_hello(initiator.node_id)
    hello_wire = decode_control(encode_control(hello))
    assert isinstance(hello_wire, Hello)

    # Responder validates, negotiates and signs its Ack.
    negotiated = negotiate(responder_local, hello_wire)
    ack = sign_ack(make_unsigned_ack(hello_wire, responder.node_id, negotiated), hello, responder)
    ack_wire = decode_control(encode_control(ack))
    assert isinstance(ack_wire, Ack)

    # Initiator checks the Ack and the responder's signature.
    got = check_ack(initiator_local, hello, ack_wire, verify, expected_node_id=responder.node_id)
    assert got == negotiated
    assert got.capabilities == int(L.Capability.DISCOVERY | L.Capability.HEADER_SYNC)
    assert got.limits == Limits(1 << 20, 1 << 20, 64, 256, 60_000)

    # Initiator -> Confirm; the responder verifies it and both know the same transcript hash.
    confirm = decode_control(encode_control(sign_confirm(hello, ack_wire, initiator)))
    assert isinstance(confirm, Confirm)
    th = check_confirm(hello_wire, ack, confirm, verify)
    assert th == transcript_hash(encode_control(hello), ack_transcript_body(ack))
    assert len(th) == L.TRANSCRIPT_HASH_BYTES

    # A Confirm signed by a different key fails, punitively.
    forged = sign_confirm(hello, ack, Identity.generate())
    with pytest.raises(HandshakeFailure) as info:
        check_confirm(hello_wire, ack, forged, verify)
    assert info.value.reason == "bad_signature"
    assert info.value.punitive is True

    # So does a responder-domain signature presented as a Confirm.
    wrong_domain = Confirm(signature=initiator.sign(responder_signing_message(th)))
    with pytest.raises(HandshakeFailure):
        check_confirm(hello_wire, ack, wrong_domain, verify)


def test_transcript_binds_every_field(initiator: Identity, responder: Identity) -> None:
    hello = make_hello(initiator.node_id)
    ack = make_unsigned_ack(hello, responder.node_id)
    base = transcript_hash(encode_control(hello), ack_transcript_body(ack))
    assert (
        transcript_hash(encode_control(replace(hello, listen_port=1)), ack_transcript_body(ack))
        != base
    )
    assert (
        transcript_hash(encode_control(hello), ack_transcript_body(replace(ack, listen_port=1)))
        != base
    )
    # The Ack signature is not part of what it signs.
    assert (
        transcript_hash(
            encode_control(hello), ack_transcript_body(replace(ack, signature=b"\x07" * 64))
        )
        == base
    )


def test_decode_or_fail_turns_codec_errors_punitive() -> None:
    with pytest.raises(HandshakeFailure) as info:
        decode_or_fail(b"\x09garbage")
    assert info.value.reason == "malformed"
    assert info.value.punitive is True
