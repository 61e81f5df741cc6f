"""Discovery payload codec: round trips, hostile bytes, and every cap."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node_core.protocol import discovery as d
from node_core.protocol.codec import Writer
from node_core.protocol.discovery import (
    DiscoveryMessage,
    GetPeers,
    GetServices,
    Hello,
    NodeRecord,
    Peers,
    Services,
    ServiceSummary,
    SignedNodeRecord,
    SocketAddr,
    decode_discovery,
    decode_discovery_frame,
    decode_record_body,
    encode_discovery,
    encode_record_body,
)
from node_core.protocol.errors import (
    CodecError,
    InvalidFlag,
    InvalidValue,
    OverCap,
    TrailingBytes,
    Truncated,
    UnknownMessage,
)

# --- strategies ----------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
ids32 = st.binary(min_size=32, max_size=32)
service_ids = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64
)
socket_addrs = st.builds(
    SocketAddr,
    ip=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    port=st.integers(1, 0xFFFF),
)


@st.composite
def node_records(draw: st.DrawFn, max_addrs: int = 8, max_services: int = 32) -> NodeRecord:
    lo, hi = sorted((draw(u16), draw(u16)))
    return NodeRecord(
        node_id=draw(ids32),
        direct_addrs=tuple(draw(st.lists(socket_addrs, max_size=max_addrs))),
        services=tuple(draw(st.lists(service_ids, max_size=max_services))),
        protocol_min=lo,
        protocol_max=hi,
        network_id=draw(u32),
        chain_id=draw(ids32),
        sequence=draw(u64),
        expires_at_unix_secs=draw(u64),
    )


@st.composite
def signed_records(draw: st.DrawFn, max_addrs: int = 8, max_services: int = 32) -> SignedNodeRecord:
    rec = draw(node_records(max_addrs, max_services))
    signature = draw(st.binary(min_size=64, max_size=64))
    return SignedNodeRecord(format_version=1, body=encode_record_body(rec), signature=signature)


summaries = st.builds(
    ServiceSummary,
    service=service_ids,
    inbound_free=u16,
    outbound_free=u16,
    payload=st.binary(max_size=256),
)

messages: st.SearchStrategy[DiscoveryMessage] = st.one_of(
    st.builds(Hello, record=signed_records()),
    st.builds(
        GetPeers,
        limit=u16,
        wanted_services=st.lists(service_ids, max_size=32).map(tuple),
        exclude_node_ids=st.lists(ids32, max_size=256).map(tuple),
    ),
    # Records are kept small enough that 32 of them fit one message; the size cap itself
    # is tested separately below.
    st.builds(
        Peers,
        records=st.lists(signed_records(max_addrs=3, max_services=4), max_size=32).map(tuple),
    ),
    st.builds(GetServices, wanted_services=st.lists(service_ids, max_size=32).map(tuple)),
    st.builds(
        Services,
        node_id=ids32,
        expires_at_unix_secs=u64,
        summaries=st.lists(summaries, max_size=32).map(tuple),
    ),
)


def _decode_or_codec_error(data: bytes) -> None:
    """Hostile bytes either decode canonically or raise a CodecError; nothing else."""
    try:
        msg = decode_discovery(data)
    except CodecError:
        return
    # The encoding is canonical: whatever decodes re-encodes to the very same bytes.
    assert encode_discovery(msg) == data


# --- round trips and hostile bytes ---------------------------------------------------------


@settings(max_examples=300)
@given(msg=messages)
def test_round_trip(msg: DiscoveryMessage) -> None:
    data = encode_discovery(msg)
    assert len(data) <= d.MAX_DISCOVERY_MESSAGE_BYTES
    assert decode_discovery(data) == msg
    assert decode_discovery_frame(d.DISCOVERY_MESSAGE_TYPE, 0, data) == msg


@given(rec=node_records())
def test_record_body_round_trip(rec: NodeRecord) -> None:
    body = encode_record_body(rec)
    assert decode_record_body(body) == rec
    assert SignedNodeRecord(1, body, b"\x00" * 64).record == rec


@settings(max_examples=500)
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_only_raise_codec_errors(data: bytes) -> None:
    _decode_or_codec_error(data)


@settings(max_examples=300)
@given(data=st.binary(max_size=512), tag=st.integers(1, 5))
def test_arbitrary_bodies_after_a_valid_tag(data: bytes, tag: int) -> None:
    _decode_or_codec_error(bytes([tag]) + data)


@settings(max_examples=300)
@given(msg=messages, data=st.data())
def test_truncations_are_rejected(msg: DiscoveryMessage, data: st.DataObject) -> None:
    encoded = encode_discovery(msg)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(CodecError):
        decode_discovery(encoded[:cut])


@settings(max_examples=300)
@given(msg=messages, extra=st.binary(min_size=1, max_size=64))
def test_appended_bytes_are_rejected(msg: DiscoveryMessage, extra: bytes) -> None:
    with pytest.raises(TrailingBytes):
        decode_discovery(encode_discovery(msg) + extra)


@settings(max_examples=500)
@given(msg=messages, data=st.data())
def test_bit_flips_and_splices(msg: DiscoveryMessage, data: st.DataObject) -> None:
    encoded = bytearray(encode_discovery(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(encoded) - 1))
        encoded[pos] ^= 1 << data.draw(st.integers(0, 7))
    if data.draw(st.booleans()):
        pos = data.draw(st.integers(0, len(encoded)))
        encoded[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    _decode_or_codec_error(bytes(encoded))


# --- explicit hostile cases ----------------------------------------------------------------

NODE = b"\x11" * 32
CHAIN = b"\x22" * 32
V4 = SocketAddr(IPv4Address("127.0.0.1"), 9000)
V6 = SocketAddr(IPv6Address("::1"), 9001)


def _record(**overrides: object) -> NodeRecord:
    fields: dict[str, object] = {
        "node_id": NODE,
        "direct_addrs": (V4, V6),
        "services": ("header_sync", "block_sync"),
        "protocol_min": 1,
        "protocol_max": 1,
        "network_id": 4,
        "chain_id": CHAIN,
        "sequence": 7,
        "expires_at_unix_secs": 1_700_000_000,
    }
    fields.update(overrides)
    return NodeRecord(**fields)  # type: ignore[arg-type]


def _signed(rec: NodeRecord | None = None) -> SignedNodeRecord:
    return SignedNodeRecord(1, encode_record_body(rec or _record()), b"\x33" * 64)


def _hello_bytes(body: bytes, version: int = 1, sig: bytes = b"\x33" * 64) -> bytes:
    return Writer().u8(d.TAG_HELLO).u16(version).u16(len(body)).raw(body).raw(sig).getvalue()


def _body_with_addr(family: int, ip: bytes, port: int) -> bytes:
    w = Writer().raw(NODE).u16(1).u8(family).raw(ip).u16(port)
    return w.u16(0).u16(1).u16(1).u32(4).raw(CHAIN).u64(1).u64(2).getvalue()


SAMPLES: list[DiscoveryMessage] = [
    Hello(_signed()),
    GetPeers(limit=32, wanted_services=("header_sync",), exclude_node_ids=(NODE,)),
    GetPeers(limit=0, wanted_services=(), exclude_node_ids=()),
    Peers(records=(_signed(), _signed(_record(sequence=8)))),
    Peers(records=()),
    GetServices(wanted_services=()),
    Services(
        node_id=NODE,
        expires_at_unix_secs=5,
        summaries=(
            ServiceSummary("discovery", 1, 2, b""),
            ServiceSummary("header_sync", 0, 0, b"x"),
        ),
    ),
]


@pytest.mark.parametrize("msg", SAMPLES)
def test_trailing_byte_is_rejected(msg: DiscoveryMessage) -> None:
    data = encode_discovery(msg)
    assert decode_discovery(data) == msg
    with pytest.raises(TrailingBytes):
        decode_discovery(data + b"\x00")


def test_trailing_byte_inside_record_body_is_rejected() -> None:
    body = encode_record_body(_record()) + b"\x00"
    with pytest.raises(TrailingBytes):
        decode_discovery(_hello_bytes(body))


def test_empty_payload_is_truncated() -> None:
    with pytest.raises(Truncated):
        decode_discovery(b"")


@pytest.mark.parametrize("tag", [0, 6, 7, 0x80, 0xFF])
def test_unknown_tag(tag: int) -> None:
    with pytest.raises(UnknownMessage):
        decode_discovery(bytes([tag]) + b"\x00" * 16)


def test_frame_envelope() -> None:
    payload = encode_discovery(GetServices(()))
    with pytest.raises(UnknownMessage):
        decode_discovery_frame(2, 0, payload)
    with pytest.raises(UnknownMessage):
        decode_discovery_frame(0, 0, payload)
    for flags in (1, 0x8000, 0xFFFF):
        with pytest.raises(InvalidFlag):
            decode_discovery_frame(d.DISCOVERY_MESSAGE_TYPE, flags, payload)


def test_oversize_payload_rejected_before_decoding() -> None:
    # A valid-looking prefix followed by padding: the size check must fire first.
    data = encode_discovery(GetServices(())) + b"\x00" * d.MAX_DISCOVERY_MESSAGE_BYTES
    with pytest.raises(OverCap):
        decode_discovery(data)
    with pytest.raises(OverCap):
        decode_discovery(b"\xff" * (d.MAX_DISCOVERY_MESSAGE_BYTES + 1))


@pytest.mark.parametrize(
    "data",
    [
        # Only the count is present: an over-cap count must be rejected as OverCap, not
        # as Truncated, which proves no item was decoded first.
        Writer().u8(d.TAG_GET_PEERS).u16(5).u16(0).u16(d.MAX_EXCLUSIONS + 1).getvalue(),
        Writer().u8(d.TAG_GET_PEERS).u16(5).u16(d.MAX_RECORD_SERVICES + 1).getvalue(),
        Writer().u8(d.TAG_PEERS).u16(d.MAX_PEERS_RECORDS + 1).getvalue(),
        Writer().u8(d.TAG_PEERS).u16(0xFFFF).getvalue(),
        Writer().u8(d.TAG_GET_SERVICES).u16(d.MAX_RECORD_SERVICES + 1).getvalue(),
        Writer().u8(d.TAG_SERVICES).raw(NODE).u64(1).u16(d.MAX_SUMMARIES + 1).getvalue(),
        # Lengths likewise: a too-long declared string is OverCap with no bytes behind it.
        Writer().u8(d.TAG_GET_SERVICES).u16(1).u16(d.MAX_SERVICE_ID_BYTES + 1).getvalue(),
        Writer()
        .u8(d.TAG_SERVICES)
        .raw(NODE)
        .u64(1)
        .u16(1)
        .u16(1)
        .raw(b"s")
        .u16(0)
        .u16(0)
        .u16(d.MAX_SUMMARY_PAYLOAD + 1)
        .getvalue(),
        Writer().u8(d.TAG_HELLO).u16(1).u16(d.MAX_RECORD_BODY_BYTES + 1).getvalue(),
    ],
)
def test_over_cap_counts_and_lengths_rejected_before_items(data: bytes) -> None:
    with pytest.raises(OverCap):
        decode_discovery(data)


def test_over_cap_addrs_and_services_inside_record_body() -> None:
    addrs = Writer().raw(NODE).u16(d.MAX_RECORD_ADDRS + 1).getvalue()
    with pytest.raises(OverCap):
        decode_record_body(addrs)
    services = Writer().raw(NODE).u16(0).u16(d.MAX_RECORD_SERVICES + 1).getvalue()
    with pytest.raises(OverCap):
        decode_record_body(services)


@pytest.mark.parametrize("family", [0, 1, 5, 7, 46, 255])
def test_bad_address_family(family: int) -> None:
    with pytest.raises(InvalidValue, match="family"):
        decode_record_body(_body_with_addr(family, b"\x7f\x00\x00\x01", 9000))
    with pytest.raises(InvalidValue, match="family"):
        decode_discovery(_hello_bytes(_body_with_addr(family, b"\x7f\x00\x00\x01", 9000)))


def test_address_families_decode() -> None:
    v4 = decode_record_body(_body_with_addr(4, b"\x0a\x00\x00\x01", 80))
    assert v4.direct_addrs == (SocketAddr(IPv4Address("10.0.0.1"), 80),)
    assert v4.direct_addrs[0].family == 4
    v6 = decode_record_body(_body_with_addr(6, b"\x00" * 15 + b"\x01", 443))
    assert v6.direct_addrs == (SocketAddr(IPv6Address("::1"), 443),)
    assert v6.direct_addrs[0].family == 6
    assert str(v6.direct_addrs[0]) == "[::1]:443"
    # A v6 family with only 4 address bytes is truncated, not misread as v4.
    with pytest.raises(CodecError):
        decode_record_body(_body_with_addr(6, b"\x7f\x00\x00\x01", 80))


def test_port_zero_rejected_both_ways() -> None:
    with pytest.raises(InvalidValue, match="port 0"):
        decode_record_body(_body_with_addr(4, b"\x7f\x00\x00\x01", 0))
    with pytest.raises(InvalidValue, match="port 0"):
        encode_record_body(_record(direct_addrs=(SocketAddr(IPv4Address("127.0.0.1"), 0),)))


def test_protocol_range_must_be_ordered() -> None:
    with pytest.raises(InvalidValue):
        encode_record_body(_record(protocol_min=3, protocol_max=2))
    body = bytearray(encode_record_body(_record(protocol_min=1, protocol_max=2)))
    # protocol_min sits right after node id, addrs and services; swap it with max.
    off = body.index(struct.pack("<HH", 1, 2))
    body[off : off + 4] = struct.pack("<HH", 3, 2)
    with pytest.raises(InvalidValue):
        decode_record_body(bytes(body))


def test_signed_record_shape() -> None:
    body = encode_record_body(_record())
    with pytest.raises(InvalidValue, match="format version"):
        decode_discovery(_hello_bytes(body, version=2))
    with pytest.raises(InvalidValue, match="format version"):
        decode_discovery(_hello_bytes(body, version=0))
    with pytest.raises(InvalidValue, match="empty"):
        decode_discovery(_hello_bytes(b""))
    with pytest.raises(Truncated):
        decode_discovery(_hello_bytes(body, sig=b"\x33" * 63))
    with pytest.raises(InvalidValue):
        SignedNodeRecord(2, body, b"\x00" * 64)
    with pytest.raises(InvalidValue):
        SignedNodeRecord(1, body, b"\x00" * 63)
    with pytest.raises(InvalidValue):
        SignedNodeRecord(1, b"", b"\x00" * 64)
    with pytest.raises(Truncated):
        SignedNodeRecord(1, body[:-1], b"\x00" * 64)


def test_signed_record_equality_ignores_nothing_on_the_wire() -> None:
    a = _signed()
    assert a == _signed()
    assert hash(a) == hash(_signed())
    assert a != SignedNodeRecord(1, a.body, b"\x44" * 64)
    assert a.record == _record()


def test_malformed_record_body_in_peers_is_a_codec_error() -> None:
    good = encode_discovery(Peers((_signed(),)))
    # Corrupt the first record's address family.
    bad = bytearray(good)
    family_at = 1 + 2 + 2 + 2 + 32 + 2
    assert bad[family_at] == 4
    bad[family_at] = 9
    with pytest.raises(InvalidValue):
        decode_discovery(bytes(bad))


def test_non_ascii_and_unprintable_service_ids_rejected() -> None:
    for raw in (b"h\xe9llo", b"a\x00b", b"tab\t"):
        data = Writer().u8(d.TAG_GET_SERVICES).u16(1).u16(len(raw)).raw(raw).getvalue()
        with pytest.raises(InvalidValue):
            decode_discovery(data)
    empty = Writer().u8(d.TAG_GET_SERVICES).u16(1).u16(0).getvalue()
    with pytest.raises(InvalidValue):
        decode_discovery(empty)


def test_summary_payload_may_be_empty_but_service_may_not() -> None:
    msg = Services(NODE, 1, (ServiceSummary("discovery", 0, 0, b""),))
    assert decode_discovery(encode_discovery(msg)) == msg
    with pytest.raises(InvalidValue):
        encode_discovery(Services(NODE, 1, (ServiceSummary("", 0, 0, b""),)))


@pytest.mark.parametrize(
    "msg",
    [
        Peers(records=(_signed(),) * (d.MAX_PEERS_RECORDS + 1)),
        GetPeers(limit=1, wanted_services=(), exclude_node_ids=(NODE,) * (d.MAX_EXCLUSIONS + 1)),
        GetPeers(
            limit=1, wanted_services=("s",) * (d.MAX_RECORD_SERVICES + 1), exclude_node_ids=()
        ),
        GetServices(wanted_services=("x" * (d.MAX_SERVICE_ID_BYTES + 1),)),
        Services(NODE, 1, (ServiceSummary("s", 0, 0, b""),) * (d.MAX_SUMMARIES + 1)),
        Services(NODE, 1, (ServiceSummary("s", 0, 0, b"\x00" * (d.MAX_SUMMARY_PAYLOAD + 1)),)),
    ],
)
def test_encode_refuses_over_cap(msg: DiscoveryMessage) -> None:
    with pytest.raises(OverCap):
        encode_discovery(msg)


@pytest.mark.parametrize(
    "msg",
    [
        GetPeers(limit=1, wanted_services=(), exclude_node_ids=(b"\x00" * 31,)),
        GetPeers(limit=0x10000, wanted_services=(), exclude_node_ids=()),
        GetServices(wanted_services=("héllo",)),
        GetServices(wanted_services=("",)),
        Services(b"\x00" * 33, 1, ()),
        Services(NODE, -1, ()),
        Services(NODE, 1, (ServiceSummary("s", 0x10000, 0, b""),)),
    ],
)
def test_encode_refuses_invalid_values(msg: DiscoveryMessage) -> None:
    with pytest.raises(InvalidValue):
        encode_discovery(msg)


def test_encode_refuses_invalid_record_fields() -> None:
    for rec in (
        _record(node_id=b"\x00" * 31),
        _record(chain_id=b"\x00" * 33),
        _record(direct_addrs=(V4,) * (d.MAX_RECORD_ADDRS + 1)),
        _record(services=("s",) * (d.MAX_RECORD_SERVICES + 1)),
        _record(network_id=1 << 32),
        _record(sequence=-1),
    ):
        with pytest.raises(CodecError):
            encode_record_body(rec)


def test_peers_over_the_message_size_cap_is_refused() -> None:
    big = _signed(
        _record(
            direct_addrs=(V6,) * d.MAX_RECORD_ADDRS,
            services=tuple(f"{i:02d}" + "s" * 62 for i in range(d.MAX_RECORD_SERVICES)),
        )
    )
    assert d.encoded_signed_record_size(big) * d.MAX_PEERS_RECORDS > d.MAX_DISCOVERY_MESSAGE_BYTES
    with pytest.raises(OverCap, match="discovery message"):
        encode_discovery(Peers(records=(big,) * d.MAX_PEERS_RECORDS))
    # encoded_signed_record_size agrees with the actual encoding.
    assert len(
        encode_discovery(Peers((big,)))
    ) == d.PEERS_HEADER_BYTES + d.encoded_signed_record_size(big)
    assert len(encode_discovery(Hello(big))) == 1 + d.encoded_signed_record_size(big)


def test_largest_possible_record_fits_a_hello() -> None:
    rec = _record(
        direct_addrs=(V6,) * d.MAX_RECORD_ADDRS,
        services=tuple(f"{i:02d}" + "s" * 62 for i in range(d.MAX_RECORD_SERVICES)),
    )
    body = encode_record_body(rec)
    assert len(body) <= d.MAX_RECORD_BODY_BYTES
    assert decode_discovery(encode_discovery(Hello(_signed(rec)))) == Hello(_signed(rec))
