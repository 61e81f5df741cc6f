"""Sans-I/O proof of work: a header's hash must start with ``bits`` zero bits.

Leading zero bits are counted most-significant-bit first over the 32 hash bytes in order, i.e.
the hash read as a big-endian 256-bit integer must be below ``2 ** (256 - bits)``. Difficulty is
per header (``bits``), and chain work is ``2 ** bits`` per header (:func:`model.work`), so the
most-work rule compares chains by the hashing they prove, not by their length.

The solver hashes the encoded header prefix plus a packed nonce directly instead of building a
:class:`BlockHeader` per try: a pre-generated chain of 20,000 blocks at ``bits=8`` costs about
five million hashes, and object construction would dominate.
"""

from __future__ import annotations

import hashlib
import struct

from node_core.chain.model import HASH_BYTES, MAX_BITS, NONCE_OFFSET, BlockHeader

#: Difficulty of the demo networks: ~256 hashes per block keeps pre-generation fast.
DEMO_BITS = 8

_NONCE = struct.Struct("<Q")
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


def target(bits: int) -> int:
    """Exclusive upper bound on the hash (big-endian integer) for ``bits`` leading zeros."""
    if not 0 <= bits <= MAX_BITS:
        raise ValueError(f"bits out of range: {bits}")
    return 1 << (8 * HASH_BYTES - bits)


def leading_zero_bits(h: bytes) -> int:
    """Leading zero bits of ``h``, MSB first (256 for an all-zero 32-byte hash)."""
    value = int.from_bytes(h, "big")
    return 8 * len(h) - value.bit_length()


def meets_pow(header: BlockHeader) -> bool:
    """Whether the header's hash has at least ``header.bits`` leading zero bits."""
    return int.from_bytes(header.hash, "big") < target(header.bits)


def solve(header: BlockHeader, start_nonce: int = 0, max_tries: int | None = None) -> BlockHeader:
    """Return ``header`` with the first nonce at or after ``start_nonce`` that meets its bits.

    Args:
        header: The header to mine; its own nonce is ignored.
        start_nonce: First nonce tried (lets parallel miners split the nonce space).
        max_tries: Give up after this many hashes (``None``: until the nonce space ends).

    Raises:
        ValueError: No nonce was found within ``max_tries`` or before the u64 space ran out.
    """
    if not 0 <= start_nonce <= _U64_MAX:
        raise ValueError(f"start_nonce out of range: {start_nonce}")
    prefix = header.encode()[:NONCE_OFFSET]
    bound = target(header.bits)
    stop = _U64_MAX + 1 if max_tries is None else min(_U64_MAX + 1, start_nonce + max_tries)
    # Local names: this loop runs ~2**bits times per block.
    blake2b = hashlib.blake2b
    pack = _NONCE.pack
    from_bytes = int.from_bytes
    for nonce in range(start_nonce, stop):
        digest = blake2b(prefix + pack(nonce), digest_size=HASH_BYTES).digest()
        if from_bytes(digest, "big") < bound:
            solved = header.with_nonce(nonce)
            # The fast path must agree with the model's own hash; a mismatch is a bug here.
            assert solved.hash == digest
            return solved
    raise ValueError(f"no nonce in [{start_nonce}, {stop}) meets bits={header.bits}")
