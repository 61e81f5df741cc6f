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
    """Reassembles frames from stream bytes.

    Frames wholly inside one fed chunk are cut out of it in place (one copy: the payload).
    A frame that spans chunks keeps only its own bytes here (its header once decoded, then
    its payload so far) and is joined with the rest of it in one copy once complete; the
    chunk that completes it is not appended here whole. (A sender cuts DATA records by
    credit, not by frame, so on a bulk stream nearly every frame spans two records.)
    """

    __slots__ = ("_buf", "_header", "max_payload")

    def __init__(self, max_payload: int) -> None:
        self.max_payload = max_payload
        #: The partial header while ``_header`` is None, else the partial payload.
        self._buf = bytearray()
        self._header: tuple[int, int, int] | None = None

    @property
    def at_boundary(self) -> bool:
        """True if no partial frame is buffered."""
        return self._header is None and not self._buf

    @property
    def buffered(self) -> int:
        """Bytes of a partial frame held here (with its header, once decoded)."""
        return len(self._buf) + (FRAME_HEADER_BYTES if self._header is not None else 0)

    def _decode_header(
        self, data: bytes | bytearray | memoryview, pos: int
    ) -> tuple[int, int, int]:
        header: tuple[int, int, int] = _HEADER.unpack_from(data, pos)
        if header[2] > self.max_payload:
            raise FrameOversize(header[2], self.max_payload)
        return header

    def feed(self, data: bytes | memoryview) -> list[Frame]:
        """Add bytes; return every frame they complete. Raises :class:`FrameOversize`."""
        out: list[Frame] = []
        buf = self._buf
        with memoryview(data) as view:
            pos = 0
            end = len(view)
            if buf or self._header is not None:
                pos = self._complete(view, out)
                if pos < 0:
                    return out
            while True:
                if end - pos < FRAME_HEADER_BYTES:
                    if pos < end:
                        buf += view[pos:end]
                    return out
                header = self._decode_header(view, pos)
                pos += FRAME_HEADER_BYTES
                stop = pos + header[2]
                if stop > end:
                    self._header = header
                    buf += view[pos:end]
                    return out
                out.append(Frame(header[0], header[1], view[pos:stop].tobytes()))
                pos = stop

    def _complete(self, view: memoryview, out: list[Frame]) -> int:
        """Continue the frame an earlier chunk began; where the rest of ``view`` starts,
        or -1 if all of it went into the still incomplete frame."""
        buf = self._buf
        pos = 0
        end = len(view)
        header = self._header
        if header is None:
            take = min(FRAME_HEADER_BYTES - len(buf), end)
            buf += view[:take]
            pos = take
            if len(buf) < FRAME_HEADER_BYTES:
                return -1
            header = self._header = self._decode_header(buf, 0)
            del buf[:]
        need = header[2] - len(buf)
        if end - pos < need:
            buf += view[pos:end]
            return -1
        stop = pos + need
        payload = b"".join((buf, view[pos:stop])) if buf else view[pos:stop].tobytes()
        out.append(Frame(header[0], header[1], payload))
        del buf[:]
        self._header = None
        return stop
