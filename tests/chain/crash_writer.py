"""Child process for the kill -9 test: writes header+body batches forever, resuming from the file.

Usage: ``python crash_writer.py DB_PATH SEED``. After each ``put_bodies`` commit returns it prints
the batch's last height and flushes, so every printed height is a block the store claimed durable.
Headers and bodies are a deterministic function of height, so the parent can verify content.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

from node_core.chain.store import ChainStore


def header_for(height: int, prev_hash: bytes) -> bytes:
    """Deterministic header bytes for ``height`` (opaque to the store)."""
    return height.to_bytes(8, "big") + prev_hash + b"hdr"


def body_for(height: int) -> bytes:
    """Deterministic body whose size varies with height (up to ~64 KiB)."""
    size = 16 + (height * 7919) % 65536
    seed = hashlib.blake2b(height.to_bytes(8, "big"), digest_size=32).digest()
    return (seed * (size // 32 + 1))[:size]


def hash_of(header: bytes) -> bytes:
    """BLAKE2b-256 of the header, as the chain model does."""
    return hashlib.blake2b(header, digest_size=32).digest()


def main() -> None:
    """Resume from the stored tips, then append batches until killed."""
    path, seed = Path(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    store = ChainStore(path)
    tip = store.header_tip()
    verified = store.verified_tip()
    # A crash may leave headers above the verified tip; fill their bodies first.
    if tip is not None:
        start = 0 if verified is None else verified + 1
        if start <= tip[0]:
            store.put_bodies([(h, body_for(h)) for h in range(start, tip[0] + 1)])
            print(tip[0], flush=True)
    height = 0 if tip is None else tip[0] + 1
    prev = b"\x00" * 32 if tip is None else tip[1]
    while True:
        n = rng.randint(1, 40)
        batch = []
        for h in range(height, height + n):
            header = header_for(h, prev)
            hash_ = hash_of(header)
            batch.append((hash_, prev, header))
            prev = hash_
        store.put_headers(height, batch)
        store.put_bodies([(h, body_for(h)) for h in range(height, height + n)])
        height += n
        print(height - 1, flush=True)


if __name__ == "__main__":
    main()
