"""Chain model, proof of work, genesis, checkpoints and the seeded chain generator.

Everything here is sans-I/O: pure functions and frozen dataclasses that the store, header-sync
and block-sync build on. The store (:mod:`node_core.chain.store`) is the only I/O in the package
and is imported from its own module, never from here, so importing the model stays cheap.
"""

from __future__ import annotations

from node_core.chain.genesis import (
    GENESIS_HASHES,
    Checkpoints,
    genesis_block,
    genesis_hash,
    genesis_header,
)
from node_core.chain.miner import (
    ChainError,
    ChainReject,
    chain_work,
    make_block,
    pregenerate,
    validate_block,
    validate_header,
    validate_headers,
    validate_link,
)
from node_core.chain.model import (
    HASH_BYTES,
    HEADER_BYTES,
    HEADER_VERSION,
    MAX_BODY_BYTES,
    ZERO_HASH,
    Block,
    BlockHeader,
    body_root,
    hash_hex,
    header_hash,
    short_hex,
    work,
)
from node_core.chain.pow import DEMO_BITS, meets_pow, solve

__all__ = [
    "DEMO_BITS",
    "GENESIS_HASHES",
    "HASH_BYTES",
    "HEADER_BYTES",
    "HEADER_VERSION",
    "MAX_BODY_BYTES",
    "ZERO_HASH",
    "Block",
    "BlockHeader",
    "ChainError",
    "ChainReject",
    "Checkpoints",
    "body_root",
    "chain_work",
    "genesis_block",
    "genesis_hash",
    "genesis_header",
    "hash_hex",
    "header_hash",
    "make_block",
    "meets_pow",
    "pregenerate",
    "short_hex",
    "solve",
    "validate_block",
    "validate_header",
    "validate_headers",
    "validate_link",
    "work",
]
