"""Chain validation and a deterministic, seeded chain generator (sans-I/O).

Invariants:
- :func:`pregenerate` is a pure function of ``(network_id, n_blocks, seed, bits, avg_body,
  parent)``: the same arguments give a byte-identical chain on every machine and Python 3.11+
  (it uses only :class:`random.Random` with an explicit seed, whose ``randrange`` and
  ``randbytes`` are stable), so a testnet of many processes can pre-generate the same chain
  independently, and a different seed forks from the same parent.
- Every block it yields passes :func:`validate_block` against its predecessor.
- Validation raises only :class:`ChainError`, whose ``reason`` is a :class:`ChainReject` label,
  so header-sync can record or disconnect by reason without parsing messages.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from enum import StrEnum

from node_core.chain.genesis import genesis_header
from node_core.chain.model import (
    HEADER_VERSION,
    MAX_BODY_BYTES,
    Block,
    BlockHeader,
    body_root,
    work,
)
from node_core.chain.pow import DEMO_BITS, meets_pow, solve
from node_core.protocol.limits import NetworkId

#: Smallest pre-generated body: keeps every block non-trivial for block-sync byte accounting.
MIN_PREGEN_BODY = 1024
#: Seconds between pre-generated blocks are drawn from [1, this]: times strictly increase.
MAX_PREGEN_SPACING = 30


class ChainReject(StrEnum):
    """Why a header or block was rejected; values are stable metric/journal labels."""

    BAD_VERSION = "bad_version"
    LOW_DIFFICULTY = "low_difficulty"
    BAD_POW = "bad_pow"
    BAD_HEIGHT = "bad_height"
    BAD_PREV_HASH = "bad_prev_hash"
    TIME_BEFORE_PARENT = "time_before_parent"
    BAD_BODY_ROOT = "bad_body_root"
    BODY_TOO_LARGE = "body_too_large"


class ChainError(ValueError):
    """A header or block that breaks a consensus rule. ``reason`` says which."""

    def __init__(self, reason: ChainReject, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def validate_header(header: BlockHeader, *, min_bits: int = 0) -> None:
    """Context-free header checks: version, minimum difficulty and proof of work.

    Args:
        header: The header to check.
        min_bits: The network's minimum ``bits``; without it a peer could feed us headers
            that cost it nothing to make (they would lose on work, but cost us validation).
    """
    if header.version != HEADER_VERSION:
        raise ChainError(ChainReject.BAD_VERSION, f"version {header.version} at {header.label()}")
    if header.bits < min_bits:
        raise ChainError(
            ChainReject.LOW_DIFFICULTY, f"bits {header.bits} < {min_bits} at {header.label()}"
        )
    if not meets_pow(header):
        raise ChainError(ChainReject.BAD_POW, f"hash misses bits={header.bits} {header.label()}")


def validate_link(prev: BlockHeader, header: BlockHeader, *, min_bits: int = 0) -> None:
    """Check that ``header`` is a valid child of ``prev`` (and valid on its own).

    Time must not go backwards (equal is allowed: an interval miner may stamp two blocks in one
    second).
    """
    if header.height != prev.height + 1:
        raise ChainError(
            ChainReject.BAD_HEIGHT, f"height {header.height} after parent {prev.height}"
        )
    if header.prev_hash != prev.hash:
        raise ChainError(
            ChainReject.BAD_PREV_HASH, f"{header.label()} does not link to {prev.label()}"
        )
    if header.time < prev.time:
        raise ChainError(
            ChainReject.TIME_BEFORE_PARENT, f"time {header.time} < parent time {prev.time}"
        )
    validate_header(header, min_bits=min_bits)


def validate_headers(
    prev: BlockHeader, headers: Iterable[BlockHeader], *, min_bits: int = 0
) -> BlockHeader:
    """Validate a contiguous batch after ``prev``; returns the last header (``prev`` if empty)."""
    for header in headers:
        validate_link(prev, header, min_bits=min_bits)
        prev = header
    return prev


def validate_block(block: Block, prev: BlockHeader | None = None, *, min_bits: int = 0) -> None:
    """Check a block's body against its header, its proof of work and, given ``prev``, its link."""
    if len(block.body) > MAX_BODY_BYTES:  # Block() already refuses this; kept as the rule.
        raise ChainError(ChainReject.BODY_TOO_LARGE, f"{len(block.body)} bytes")
    if body_root(block.body) != block.header.body_root:
        raise ChainError(ChainReject.BAD_BODY_ROOT, f"body does not match {block.header.label()}")
    if prev is None:
        validate_header(block.header, min_bits=min_bits)
    else:
        validate_link(prev, block.header, min_bits=min_bits)


def chain_work(headers: Iterable[BlockHeader]) -> int:
    """Total work of ``headers`` (the most-work rule compares these sums)."""
    return sum(work(h.bits) for h in headers)


def make_block(prev: BlockHeader, body: bytes, *, time: int, bits: int = DEMO_BITS) -> Block:
    """Mine a child of ``prev`` carrying ``body`` (what the interval miner does each tick)."""
    header = BlockHeader(
        version=HEADER_VERSION,
        height=prev.height + 1,
        prev_hash=prev.hash,
        body_root=body_root(body),
        time=max(time, prev.time),
        bits=bits,
        nonce=0,
    )
    return Block(solve(header), body)


def pregenerate(
    network_id: NetworkId,
    n_blocks: int,
    seed: int,
    *,
    bits: int = DEMO_BITS,
    avg_body: int = 8192,
    parent: BlockHeader | None = None,
) -> Iterator[Block]:
    """Yield ``n_blocks`` deterministic blocks after ``parent`` (default: the genesis header).

    Body sizes are uniform in ``[lo, 2 * avg_body - lo]`` with ``lo = min(1 KiB, avg_body)``, so
    they vary while averaging ``avg_body``; body bytes and block spacing come from the same
    seeded RNG. Lazily generated, so a caller can stream 20,000 blocks into the store without
    holding them all.

    Args:
        network_id: Whose genesis to build on when ``parent`` is not given.
        n_blocks: How many blocks to yield.
        seed: RNG seed; same seed, same chain, byte for byte.
        bits: Difficulty of every generated header.
        avg_body: Mean body size in bytes.
        parent: Header to extend instead of genesis (e.g. to build a competing branch).
    """
    if n_blocks < 0:
        raise ValueError(f"n_blocks must be >= 0: {n_blocks}")
    if not 0 < avg_body <= MAX_BODY_BYTES // 2:
        raise ValueError(f"avg_body out of range: {avg_body}")
    rng = random.Random(seed)
    lo = min(MIN_PREGEN_BODY, avg_body)
    hi = 2 * avg_body - lo
    prev = genesis_header(network_id) if parent is None else parent
    for _ in range(n_blocks):
        size = rng.randint(lo, hi)
        body = rng.randbytes(size)
        block = make_block(
            prev, body, time=prev.time + rng.randint(1, MAX_PREGEN_SPACING), bits=bits
        )
        yield block
        prev = block.header
