"""Sans-I/O block header and block model with a fixed little-endian encoding.

Invariants:
- A :class:`BlockHeader` always holds in-range field values (checked when it is built, from the
  wire or locally), so :meth:`BlockHeader.encode` cannot fail and its ``hash`` is always the
  BLAKE2b-256 of exactly :data:`HEADER_BYTES` bytes.
- :meth:`BlockHeader.decode` and :meth:`Block.decode` see peer-chosen bytes and raise only
  :class:`~node_core.protocol.errors.CodecError` subclasses; trailing bytes are rejected.
- A block body is opaque and at most :data:`MAX_BODY_BYTES`; its length is checked before the
  bytes are sliced. Whether the body matches ``body_root`` is consensus, not codec, and is checked
  by :func:`node_core.chain.miner.validate_block`.

Header layout (89 bytes, every integer little-endian)::

    version u32 | height u32 | prev_hash 32 | body_root 32 | time u64 | bits u8 | nonce u64
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from node_core.protocol.codec import Reader, Writer
from node_core.protocol.errors import InvalidValue, OverCap

HASH_BYTES = 32
#: Size of an encoded header; a header is fixed-size so a batch can be sliced without parsing.
HEADER_BYTES = 4 + 4 + HASH_BYTES + HASH_BYTES + 8 + 1 + 8
#: Offset of the nonce: everything before it is hashed unchanged while a miner searches.
NONCE_OFFSET = HEADER_BYTES - 8
HEADER_VERSION = 1
#: Largest block body; keeps one block (plus framing) well under the 4 MiB message cap.
#: 2 MiB less 1 KiB, so that any block (header, length, body) always fits one header-sync
#: NewBlock message, whose whole payload is capped at 2 MiB.
MAX_BODY_BYTES = 2 * 1024 * 1024 - 1024
#: ``bits`` counts leading zero bits of a 256-bit hash, so more than 256 cannot be met.
MAX_BITS = 8 * HASH_BYTES
ZERO_HASH = bytes(HASH_BYTES)

_U32_MAX = 0xFFFF_FFFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


def blake2b_256(data: bytes) -> bytes:
    """The one hash function of the chain: BLAKE2b with a 32-byte digest."""
    return hashlib.blake2b(data, digest_size=HASH_BYTES).digest()


def body_root(body: bytes) -> bytes:
    """Commitment a header makes to its body (the body is opaque, so a plain hash)."""
    return blake2b_256(body)


def work(bits: int) -> int:
    """Expected hashes to meet ``bits`` leading zero bits: the chain work one header adds."""
    if not 0 <= bits <= MAX_BITS:
        raise ValueError(f"bits out of range: {bits}")
    return 1 << bits


def hash_hex(h: bytes) -> str:
    """Full lowercase hex of a hash, for logs and the API."""
    return h.hex()


def short_hex(h: bytes, n: int = 8) -> str:
    """First ``n`` hex digits of a hash, for the console where columns are narrow."""
    return h.hex()[:n]


def hash_from_hex(text: str) -> bytes:
    """Parse a full hash from hex (e.g. a checkpoint given on the command line)."""
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError(f"not hex: {text!r}") from exc
    if len(raw) != HASH_BYTES:
        raise ValueError(f"a hash is {HASH_BYTES} bytes, got {len(raw)}")
    return raw


def _check(value: int, hi: int, what: str) -> None:
    # Type is checked too: a bool or float slipping in would encode but mean nothing.
    if type(value) is not int or not 0 <= value <= hi:
        raise InvalidValue(f"{what} out of range: {value!r}")


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """One header. ``hash`` is computed once at construction (headers are hashed constantly).

    Attributes:
        version: Header format version; :data:`HEADER_VERSION` today.
        height: Distance from genesis (genesis is 0).
        prev_hash: Hash of the parent header; all zeros for genesis.
        body_root: BLAKE2b-256 of the block body.
        time: Unix seconds at which the block was made.
        bits: Required leading zero bits of ``hash`` (the difficulty).
        nonce: Free field varied by the miner to meet ``bits``.
        hash: BLAKE2b-256 of :meth:`encode`; not part of the encoding or of equality.
    """

    version: int
    height: int
    prev_hash: bytes
    body_root: bytes
    time: int
    bits: int
    nonce: int
    hash: bytes = field(init=False, repr=False, compare=False)
    #: The canonical encoding, kept from hashing or decoding: headers are stored and sent far
    #: more often than they are built, and re-encoding them was a measurable share of sync.
    raw: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(self.version, _U32_MAX, "version")
        _check(self.height, _U32_MAX, "height")
        _check(self.time, _U64_MAX, "time")
        _check(self.bits, 0xFF, "bits")
        _check(self.nonce, _U64_MAX, "nonce")
        for name in ("prev_hash", "body_root"):
            value = getattr(self, name)
            if type(value) is not bytes or len(value) != HASH_BYTES:
                raise InvalidValue(f"{name}: expected {HASH_BYTES} bytes")
        raw = self._encode()
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "hash", blake2b_256(raw))

    def encode(self) -> bytes:
        """The fixed :data:`HEADER_BYTES`-byte little-endian encoding."""
        return self.raw

    def _encode(self) -> bytes:
        return (
            Writer()
            .u32(self.version)
            .u32(self.height)
            .fixed(self.prev_hash, HASH_BYTES, "prev_hash")
            .fixed(self.body_root, HASH_BYTES, "body_root")
            .u64(self.time)
            .u8(self.bits)
            .u64(self.nonce)
            .getvalue()
        )

    @classmethod
    def read(cls, r: Reader) -> BlockHeader:
        """Read one header from ``r`` (for codecs that embed headers in larger messages)."""
        return cls(
            version=r.u32("version"),
            height=r.u32("height"),
            prev_hash=r.take(HASH_BYTES, "prev_hash"),
            body_root=r.take(HASH_BYTES, "body_root"),
            time=r.u64("time"),
            bits=r.u8("bits"),
            nonce=r.u64("nonce"),
        )

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> BlockHeader:
        """Decode exactly one header; raises only ``CodecError``.

        Fast path for the exact size: every fixed-width field unpacks in range, so the input
        *is* the canonical encoding and is hashed as is (header-sync decodes thousands of
        headers per response; re-encoding to hash doubled its cost).
        """
        raw = bytes(data)
        if len(raw) != HEADER_BYTES:
            r = Reader(raw)
            header = cls.read(r)
            r.finish()
            return header
        header = object.__new__(cls)
        for name, value in zip(_FIELDS, _HEADER_STRUCT.unpack(raw), strict=True):
            object.__setattr__(header, name, value)
        object.__setattr__(header, "raw", raw)
        object.__setattr__(header, "hash", blake2b_256(raw))
        return header

    def with_nonce(self, nonce: int) -> BlockHeader:
        """A copy with another nonce (what a miner produces)."""
        return BlockHeader(
            self.version,
            self.height,
            self.prev_hash,
            self.body_root,
            self.time,
            self.bits,
            nonce,
        )

    @property
    def work(self) -> int:
        """Chain work this header adds (see :func:`work`)."""
        return work(self.bits)

    def label(self) -> str:
        """Short display form ``#height:hash8``; contains no peer-supplied text."""
        return f"#{self.height}:{short_hex(self.hash)}"


def header_rows(headers: Iterable[BlockHeader]) -> list[tuple[bytes, bytes, bytes]]:
    """``(hash, prev_hash, encoding)`` per header: the rows ``ChainStore.put_headers`` takes."""
    return [(h.hash, h.prev_hash, h.raw) for h in headers]


_HEADER_STRUCT = struct.Struct("<II32s32sQBQ")
_FIELDS = ("version", "height", "prev_hash", "body_root", "time", "bits", "nonce")
assert _HEADER_STRUCT.size == HEADER_BYTES


def header_hash(header: BlockHeader) -> bytes:
    """The header's hash (cached on the header; this exists for call sites that want a function)."""
    return header.hash


_BODY_LEN = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Block:
    """A header and its opaque body. The body is *not* checked against the header here.

    Encoding: header (:data:`HEADER_BYTES`) | body length u32 | body.
    """

    header: BlockHeader
    body: bytes

    def __post_init__(self) -> None:
        if type(self.body) is not bytes:
            raise InvalidValue("body: expected bytes")
        if len(self.body) > MAX_BODY_BYTES:
            raise OverCap(f"body: {len(self.body)} bytes > cap {MAX_BODY_BYTES}")

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    def encode(self) -> bytes:
        return self.header.encode() + _BODY_LEN.pack(len(self.body)) + self.body

    @classmethod
    def read(cls, r: Reader) -> Block:
        header = BlockHeader.read(r)
        n = r.u32("body length")
        if n > MAX_BODY_BYTES:
            raise OverCap(f"body: {n} bytes > cap {MAX_BODY_BYTES}")
        return cls(header, r.take(n, "body"))

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Block:
        """Decode exactly one block; raises only ``CodecError``."""
        r = Reader(data)
        block = cls.read(r)
        r.finish()
        return block
