"""Service frames carried on a stream: ``u16 type | u16 flags | u32 length | payload``.

Invariants:
- The declared payload length is checked against the stream's cap as soon as the 8-byte
  header is complete, before a single payload byte is buffered.
- :class:`FrameDecoder` is incremental: the multiplexer feeds it stream bytes in whatever
  chunks arrive and gets back whole frames. ``at_boundary`` tells whether a stream that ends
  now ended cleanly or in the middle of a frame (a truncated frame).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from node_core.protocol.errors import OverCap, TrailingBytes, Truncated
from node_core.protocol.limits import FRAME_HEADER_BYTES

_HEADER = struct.Struct("<HHI")


@dataclass(frozen=True, slots=True)
class Frame:
    """One service message as the transport delivers it."""

    message_type: int
    flags: int
    payload: bytes

    @property
    def wire_size(self) -> int:
        return FRAME_HEADER_BYTES + len(self.payload)


class FrameOversize(OverCap):
    """A frame header declared a payload larger than the stream's cap."""

    reason = "frame_oversize"

    def __init__(self, declared: int, cap: int) -> None:
        super().__init__(f"declared payload {declared} > cap {cap}")
        self.declared = declared
        self.cap = cap


def encode_frame_header(message_type: int, flags: int, length: int) -> bytes:
    return _HEADER.pack(message_type, flags, length)


def encode_frame(message_type: int, flags: int, payload: bytes, max_payload: int) -> bytes:
    """Encode one frame; refuses to build what the receiver would reject."""
    if len(payload) > max_payload:
        raise FrameOversize(len(payload), max_payload)
    return _HEADER.pack(message_type, flags, len(payload)) + payload


def decode_frame(data: bytes, max_payload: int) -> Frame:
    """Decode exactly one frame from ``data``; trailing bytes are rejected."""
    if len(data) < FRAME_HEADER_BYTES:
        raise Truncated(f"frame header needs {FRAME_HEADER_BYTES} bytes, have {len(data)}")
    message_type, flags, length = _HEADER.unpack_from(data)
    if length > max_payload:
        raise FrameOversize(length, max_payload)
    end = FRAME_HEADER_BYTES + length
    if len(data) < end:
        raise Truncated(f"frame payload needs {length} bytes, have {len(data) - 8}")
    if len(data) > end:
        raise TrailingBytes(f"{len(data) - end} bytes after the frame")
    return Frame(message_type, flags, bytes(data[FRAME_HEADER_BYTES:end]))


class FrameDecoder:
    """Reassembles frames from stream bytes."""

    __slots__ = ("_buf", "_header", "_need", "max_payload")

    def __init__(self, max_payload: int) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._header: tuple[int, int, int] | None = None
        self._need = FRAME_HEADER_BYTES

    @property
    def at_boundary(self) -> bool:
        """True if no partial frame is buffered."""
        return self._header is None and not self._buf

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | memoryview) -> list[Frame]:
        """Add bytes; return every frame they complete. Raises :class:`FrameOversize`."""
        buf = self._buf
        src: bytes | memoryview | bytearray
        if buf:
            buf += data
            src = buf
        else:
            src = data  # fast path: parse in place, buffer only an incomplete tail
        out: list[Frame] = []
        pos = 0
        end = len(src)
        with memoryview(src) as view:
            while True:
                if self._header is None:
                    if end - pos < FRAME_HEADER_BYTES:
                        break
                    header = _HEADER.unpack_from(view, pos)
                    if header[2] > self.max_payload:
                        raise FrameOversize(header[2], self.max_payload)
                    self._header = header
                    pos += FRAME_HEADER_BYTES
                length = self._header[2]
                if end - pos < length:
                    break
                out.append(
                    Frame(self._header[0], self._header[1], view[pos : pos + length].tobytes())
                )
                pos += length
                self._header = None
            if src is not buf and pos < end:
                buf += view[pos:]
        if src is buf and pos:
            del buf[:pos]
        return out
