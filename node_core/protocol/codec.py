"""Little-endian primitive readers and writers shared by every message codec.

Rules every decoder built on :class:`Reader` inherits:
- every integer is little-endian;
- a bounded byte string is u16-length-prefixed, non-empty, and its length is checked against
  its cap *before* the bytes are sliced;
- counts of repeated items are checked against their cap before any item is decoded;
- :meth:`Reader.finish` rejects trailing bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeVar

from node_core.protocol.errors import InvalidFlag, InvalidValue, OverCap, TrailingBytes, Truncated

T = TypeVar("T")

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class Reader:
    """A cursor over an immutable buffer that raises :class:`CodecError` subclasses only."""

    __slots__ = ("_buf", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._buf = bytes(data)
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._buf) - self._pos

    def take(self, n: int, what: str = "bytes") -> bytes:
        if n < 0 or self._pos + n > len(self._buf):
            raise Truncated(f"{what}: need {n} bytes, have {self.remaining}")
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def u8(self, what: str = "u8") -> int:
        return self.take(1, what)[0]

    def u16(self, what: str = "u16") -> int:
        return int(_U16.unpack(self.take(2, what))[0])

    def u32(self, what: str = "u32") -> int:
        return int(_U32.unpack(self.take(4, what))[0])

    def u64(self, what: str = "u64") -> int:
        return int(_U64.unpack(self.take(8, what))[0])

    def flag(self, what: str = "flag") -> bool:
        value = self.u8(what)
        if value > 1:
            raise InvalidFlag(f"{what}: flag byte {value} is not 0 or 1")
        return value == 1

    def bounded_bytes(self, cap: int, what: str = "bytes") -> bytes:
        """A u16-length-prefixed, non-empty byte string of at most ``cap`` bytes."""
        n = self.u16(what)
        if n == 0:
            raise InvalidValue(f"{what}: empty")
        if n > cap:
            raise OverCap(f"{what}: {n} bytes > cap {cap}")
        return self.take(n, what)

    def bounded_str(self, cap: int, what: str = "str") -> str:
        raw = self.bounded_bytes(cap, what)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise InvalidValue(f"{what}: not ASCII") from exc
        if not text.isprintable():
            raise InvalidValue(f"{what}: not printable")
        return text

    def count(self, cap: int, what: str = "count") -> int:
        """A u16 item count, checked against ``cap`` before any item is read."""
        n = self.u16(what)
        if n > cap:
            raise OverCap(f"{what}: {n} items > cap {cap}")
        return n

    def items(self, cap: int, item: Callable[[Reader], T], what: str = "items") -> tuple[T, ...]:
        return tuple(item(self) for _ in range(self.count(cap, what)))

    def finish(self) -> None:
        if self.remaining:
            raise TrailingBytes(f"{self.remaining} bytes after the message")


class Writer:
    """Builds a message; the encode side checks the same caps the decoder enforces."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def raw(self, data: bytes) -> Writer:
        self._parts.append(bytes(data))
        return self

    def u8(self, v: int) -> Writer:
        self._parts.append(bytes((_check_range(v, 0xFF, "u8"),)))
        return self

    def u16(self, v: int) -> Writer:
        self._parts.append(_U16.pack(_check_range(v, 0xFFFF, "u16")))
        return self

    def u32(self, v: int) -> Writer:
        self._parts.append(_U32.pack(_check_range(v, 0xFFFF_FFFF, "u32")))
        return self

    def u64(self, v: int) -> Writer:
        self._parts.append(_U64.pack(_check_range(v, 0xFFFF_FFFF_FFFF_FFFF, "u64")))
        return self

    def flag(self, v: bool) -> Writer:
        return self.u8(1 if v else 0)

    def fixed(self, data: bytes, size: int, what: str = "bytes") -> Writer:
        if len(data) != size:
            raise InvalidValue(f"{what}: expected {size} bytes, got {len(data)}")
        return self.raw(data)

    def bounded_bytes(self, data: bytes, cap: int, what: str = "bytes") -> Writer:
        if not data:
            raise InvalidValue(f"{what}: empty")
        if len(data) > cap:
            raise OverCap(f"{what}: {len(data)} bytes > cap {cap}")
        return self.u16(len(data)).raw(data)

    def bounded_str(self, text: str, cap: int, what: str = "str") -> Writer:
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError as exc:
            raise InvalidValue(f"{what}: not ASCII") from exc
        if not text.isprintable():
            raise InvalidValue(f"{what}: not printable")
        return self.bounded_bytes(raw, cap, what)

    def count(self, n: int, cap: int, what: str = "count") -> Writer:
        if n > cap:
            raise OverCap(f"{what}: {n} items > cap {cap}")
        return self.u16(n)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def _check_range(v: int, hi: int, what: str) -> int:
    if not 0 <= v <= hi:
        raise InvalidValue(f"{what} out of range: {v}")
    return v
