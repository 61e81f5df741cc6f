"""The stream multiplexer's record codec and stream prelude (sans-I/O).

After the handshake, a TCP connection carries records: ``u8 type | u32 stream_id | u32 length |
payload``. The length is checked against :data:`MAX_MUX_RECORD_BYTES` before the payload is
read. Stream ids opened by the initiator are odd, by the responder even, so both sides can open
streams without coordination.

Records:
  OPEN   payload = stream prelude (``ZKST`` kind version request-id-flag [u64] max_frame)
  DATA   payload = stream bytes; never more than the sender's remaining credit on that stream
  CREDIT payload = u32 increment (> 0) of the receiver's window
  RESET  payload = u16 code, u16-prefixed ASCII reason; ends one stream, connection lives on
  FIN    no payload; the sender will write no more on that stream
  CLOSE  payload = u16 code, reason; ends the connection (the first close reason wins)
  PING   payload = u64 nonce; keepalive, counts as inbound activity
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from node_core.protocol.codec import Reader, Writer
from node_core.protocol.errors import (
    BadMagic,
    InvalidValue,
    OverCap,
    TrailingBytes,
    Truncated,
    UnknownMessage,
)
from node_core.protocol.limits import (
    MAX_CLOSE_REASON_BYTES,
    MAX_MUX_RECORD_BYTES,
    MUX_HEADER_BYTES,
    STREAM_PRELUDE_MAGIC,
)

_HEADER = struct.Struct("<BII")
_U32 = struct.Struct("<I")


class RecordType(IntEnum):
    OPEN = 1
    DATA = 2
    CREDIT = 3
    RESET = 4
    FIN = 5
    CLOSE = 6
    PING = 7


#: Record types by wire value: a dict lookup per record instead of an ``IntEnum`` call.
_RECORD_TYPES = {t.value: t for t in RecordType}


@dataclass(frozen=True, slots=True)
class RecordHeader:
    type: RecordType
    stream_id: int
    length: int


def encode_record_header(rtype: RecordType, stream_id: int, length: int) -> bytes:
    return _HEADER.pack(rtype, stream_id, length)


def encode_record(rtype: RecordType, stream_id: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_MUX_RECORD_BYTES:
        raise OverCap(f"record payload {len(payload)} > {MAX_MUX_RECORD_BYTES}")
    return _HEADER.pack(rtype, stream_id, len(payload)) + payload


def decode_record_header(data: bytes | memoryview) -> RecordHeader:
    """Decode the 9-byte record header; the payload length is cap-checked here."""
    if len(data) != MUX_HEADER_BYTES:
        raise InvalidValue(f"record header is {MUX_HEADER_BYTES} bytes, got {len(data)}")
    rtype, stream_id, length = _HEADER.unpack(data)
    kind = _RECORD_TYPES.get(rtype)
    if kind is None:
        raise UnknownMessage(f"record type {rtype}")
    if length > MAX_MUX_RECORD_BYTES:
        raise OverCap(f"record payload {length} > {MAX_MUX_RECORD_BYTES}")
    return RecordHeader(kind, stream_id, length)


@dataclass(frozen=True, slots=True)
class StreamPrelude:
    """Opens a stream: which service (kind, version) and the sender's frame cap."""

    kind: int
    version: int
    max_frame_bytes: int
    request_id: int | None = None


def encode_prelude(p: StreamPrelude) -> bytes:
    w = Writer().raw(STREAM_PRELUDE_MAGIC).u16(p.kind).u16(p.version)
    if p.request_id is None:
        w.u8(0)
    else:
        w.u8(1).u64(p.request_id)
    return w.u32(p.max_frame_bytes).getvalue()


def decode_prelude(data: bytes | memoryview) -> StreamPrelude:
    r = Reader(data)
    if r.take(4, "prelude magic") != STREAM_PRELUDE_MAGIC:
        raise BadMagic("stream prelude magic")
    kind = r.u16("kind")
    version = r.u16("version")
    request_id = r.u64("request_id") if r.flag("request_id flag") else None
    max_frame = r.u32("max_frame_bytes")
    r.finish()
    if max_frame == 0:
        raise InvalidValue("max_frame_bytes is zero")
    return StreamPrelude(kind, version, max_frame, request_id)


def encode_credit(increment: int) -> bytes:
    if not 0 < increment <= 0xFFFF_FFFF:
        raise InvalidValue(f"credit increment {increment} is not a positive u32")
    return _U32.pack(increment)


def decode_credit(data: bytes | memoryview) -> int:
    """The u32 increment of a CREDIT (one per quarter window of bulk data: kept cheap)."""
    if len(data) != 4:
        if len(data) < 4:
            raise Truncated(f"credit: need 4 bytes, have {len(data)}")
        raise TrailingBytes(f"{len(data) - 4} bytes after the credit")
    (n,) = _U32.unpack(data)
    if n == 0:
        raise InvalidValue("credit increment is zero")
    return int(n)


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """Payload of RESET and CLOSE records."""

    code: int
    reason: str


def encode_close(info: CloseInfo) -> bytes:
    reason = info.reason[:MAX_CLOSE_REASON_BYTES] or "unspecified"
    return Writer().u16(info.code).bounded_str(reason, MAX_CLOSE_REASON_BYTES).getvalue()


def decode_close(data: bytes | memoryview) -> CloseInfo:
    r = Reader(data)
    info = CloseInfo(r.u16("code"), r.bounded_str(MAX_CLOSE_REASON_BYTES, "reason"))
    r.finish()
    return info


def encode_ping(nonce: int) -> bytes:
    return Writer().u64(nonce).getvalue()


def decode_ping(data: bytes) -> int:
    r = Reader(data)
    n = r.u64("ping nonce")
    r.finish()
    return n
