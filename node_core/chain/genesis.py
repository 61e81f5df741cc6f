"""Sans-I/O genesis headers per network and optional checkpoints.

Invariants:
- Genesis is fully determined by the network id: fixed time, body ``b"zakura genesis <label>"``
  and a nonce solved once and recorded here, so two nodes of one network agree on height 0
  without exchanging anything. The recorded hashes are asserted by the tests, so a change to the
  header encoding or hash cannot silently fork every network.
- :class:`Checkpoints` heights are strictly increasing and every hash is 32 bytes; a range whose
  last height is a checkpoint is *finalized* (header-sync requests it whole, as the reference
  does), and no header that contradicts a checkpoint can be accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from node_core.chain.model import (
    HASH_BYTES,
    HEADER_VERSION,
    ZERO_HASH,
    Block,
    BlockHeader,
    body_root,
)
from node_core.chain.pow import DEMO_BITS
from node_core.protocol.limits import NETWORK_LABELS, NetworkId

#: 2026-01-01T00:00:00Z; any fixed value works, this one just reads well in the console.
GENESIS_TIME = 1_767_225_600

#: Nonces found by :func:`node_core.chain.pow.solve` from 0 for each genesis header.
_GENESIS_NONCES: dict[NetworkId, int] = {
    NetworkId.MAINNET: 278,
    NetworkId.TESTNET: 119,
    NetworkId.REGTEST: 433,
    NetworkId.CONFIGURED: 91,
}

#: The resulting hashes; recorded so any drift is a loud test failure, not a silent fork.
GENESIS_HASHES: dict[NetworkId, bytes] = {
    NetworkId.MAINNET: bytes.fromhex(
        "00a68c93e7d584eb9d21c1283dadd795ca3e9e92b5380f5736d910254701f3e5"
    ),
    NetworkId.TESTNET: bytes.fromhex(
        "00e5f87799dc97ab5adb6ca0ca862cde2632cced9a5f628a07995e6228d495e1"
    ),
    NetworkId.REGTEST: bytes.fromhex(
        "0048d916b7c7dd5fe8376234962d869b7708373265bcb770cf515ce4b0fc674f"
    ),
    NetworkId.CONFIGURED: bytes.fromhex(
        "002ed8b86710f3776f45d4b69de16cd70648c483680b4c50e3d3a43c3eb7b861"
    ),
}


def genesis_body(network_id: NetworkId) -> bytes:
    """The fixed genesis body of a network."""
    return f"zakura genesis {NETWORK_LABELS[NetworkId(network_id)]}".encode("ascii")


def genesis_header(network_id: NetworkId) -> BlockHeader:
    """The genesis header of ``network_id`` (height 0, zero parent)."""
    nid = NetworkId(network_id)
    return BlockHeader(
        version=HEADER_VERSION,
        height=0,
        prev_hash=ZERO_HASH,
        body_root=body_root(genesis_body(nid)),
        time=GENESIS_TIME,
        bits=DEMO_BITS,
        nonce=_GENESIS_NONCES[nid],
    )


def genesis_block(network_id: NetworkId) -> Block:
    """The genesis block (header and body) of ``network_id``."""
    return Block(genesis_header(network_id), genesis_body(network_id))


def genesis_hash(network_id: NetworkId) -> bytes:
    """The recorded genesis hash of ``network_id``."""
    return GENESIS_HASHES[NetworkId(network_id)]


@dataclass(frozen=True, slots=True)
class Checkpoints:
    """Known-good ``height -> hash`` pairs, strictly increasing by height.

    Build with :meth:`from_mapping` or pass ``entries`` already sorted; the constructor validates
    either way so a bad ``--checkpoint`` option fails at startup, not mid-sync.
    """

    entries: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        last = -1
        for height, h in self.entries:
            if type(height) is not int or height < 0:
                raise ValueError(f"checkpoint height must be a non-negative int: {height!r}")
            if height <= last:
                raise ValueError(f"checkpoint heights must be strictly increasing at {height}")
            if type(h) is not bytes or len(h) != HASH_BYTES:
                raise ValueError(f"checkpoint at {height}: hash must be {HASH_BYTES} bytes")
            last = height

    @classmethod
    def from_mapping(cls, mapping: Mapping[int, bytes]) -> Checkpoints:
        return cls(tuple(sorted(mapping.items())))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, bytes]]) -> Checkpoints:
        """From unsorted pairs; duplicate heights are rejected rather than one silently won."""
        items = sorted(pairs, key=lambda p: p[0])
        return cls(tuple(items))

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def heights(self) -> tuple[int, ...]:
        return tuple(h for h, _ in self.entries)

    @property
    def finalized_height(self) -> int | None:
        """Height of the last checkpoint: no reorg may go below it."""
        return self.entries[-1][0] if self.entries else None

    def checkpoint_at(self, height: int) -> bytes | None:
        """The recorded hash at ``height``, or ``None`` if that height is not a checkpoint."""
        for h, hsh in self.entries:
            if h == height:
                return hsh
            if h > height:
                break
        return None

    def next_at_or_above(self, height: int) -> int | None:
        """The first checkpoint height ``>= height`` (for clamping ranges so they end on one)."""
        for h, _ in self.entries:
            if h >= height:
                return h
        return None

    def is_finalized_range(self, start: int, end: int) -> bool:
        """Whether the inclusive height range ``[start, end]`` ends exactly at a checkpoint."""
        if start > end:
            raise ValueError(f"empty range [{start}, {end}]")
        return self.checkpoint_at(end) is not None

    def contradicts(self, header: BlockHeader) -> bool:
        """Whether ``header`` sits at a checkpoint height with a different hash."""
        expected = self.checkpoint_at(header.height)
        return expected is not None and expected != header.hash
