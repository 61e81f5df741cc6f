"""The node's chain: its store, its genesis, its tips and the seeded pre-generated chain.

Invariants:
- Once :meth:`ChainState.open` returns, the store holds this network's genesis header *and body*
  at height 0; a data dir whose height 0 is another network's genesis is refused, never mixed.
- ``header_tip`` and ``verified_tip`` are in-memory copies of committed store state: they are
  updated only after the write that moved them has committed, so a snapshot never shows a tip
  that a crash could take back. Before ``open`` both are genesis (known without I/O), so a
  snapshot of an unstarted node is still well-formed.
- :meth:`ChainState.pregenerate` is resumable: the chain for a seed is a fixed sequence, so a
  restart regenerates (cheaply, in memory) what is stored, checks that the stored chain is that
  chain, and writes only what is missing. Headers of a batch commit before its bodies, so a
  crash between the two leaves a header tip above the verified tip, which the next run fills.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

from node_core.chain.genesis import genesis_block
from node_core.chain.miner import pregenerate
from node_core.chain.model import Block, header_rows
from node_core.chain.store import AsyncChainStore
from node_core.observe.journal import Journal
from node_core.protocol.limits import NETWORK_LABELS, NetworkId

__all__ = ["CHAIN_FILE", "PREGEN_BATCH", "ChainState", "ChainStateError"]

#: The store's file name inside the node's data dir.
CHAIN_FILE = "chain.sqlite3"
#: Blocks per committed batch: amortises the fsync of ``synchronous=FULL`` without holding
#: more than a few MB of bodies in memory at once.
PREGEN_BATCH = 500


class ChainStateError(Exception):
    """The data dir's chain cannot be used as asked (another network's, another seed's)."""


class ChainState:
    """The chain a node owns: an :class:`AsyncChainStore` plus cached tips for the snapshot.

    Create in ``Node.__init__`` (no I/O), ``await open()`` in ``Node.start``, ``await close()`` in
    ``Node.stop``.

    Args:
        data_dir: The node's data dir; the store is ``data_dir / CHAIN_FILE``.
        network_id: Whose genesis the chain starts from.
        journal: Where progress and tip changes are journaled (table ``chain``).
    """

    def __init__(self, data_dir: Path, network_id: int, journal: Journal) -> None:
        self.network_id = NetworkId(network_id)
        self.network = NETWORK_LABELS[self.network_id]
        self.path = Path(data_dir) / CHAIN_FILE
        self.journal = journal
        self.genesis = genesis_block(self.network_id)
        self._store: AsyncChainStore | None = None
        self.header_tip: tuple[int, bytes] = (0, self.genesis.hash)
        self.verified_tip: tuple[int, bytes] = (0, self.genesis.hash)
        self._advertised = 0

    # ------------------------------------------------------------------ facts
    @property
    def store(self) -> AsyncChainStore:
        """The open store (raises before :meth:`open` and after :meth:`close`)."""
        if self._store is None:
            raise ChainStateError(f"chain store {self.path} is not open")
        return self._store

    @property
    def is_open(self) -> bool:
        return self._store is not None

    @property
    def target(self) -> int:
        """Height we are syncing towards: the best tip any peer advertised, or our own."""
        return max(self.header_tip[0], self._advertised)

    def note_advertised(self, height: int) -> None:
        """A peer advertised a tip at ``height``; the target only ever rises."""
        if height > self._advertised:
            self._advertised = height

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """Open (or create, or resume) the store and make sure genesis is stored whole."""
        if self._store is not None:
            raise ChainStateError("chain state already open")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        store = await AsyncChainStore.open(self.path)
        try:
            stored = await store.hash_at(0)
            if stored is not None and stored != self.genesis.hash:
                raise ChainStateError(
                    f"{self.path} holds a chain with genesis {stored.hex()[:16]}, not the "
                    f"{self.network} genesis {self.genesis.hash.hex()[:16]}: use another data dir"
                )
            if stored is None:
                await store.put_headers(0, header_rows([self.genesis.header]))
            if await store.body_at(0) is None:
                await store.put_bodies([(0, self.genesis.body)])
        except BaseException:
            await store.close()
            raise
        self._store = store
        await self.refresh()
        self.journal.emit(
            "chain",
            "opened",
            network=self.network,
            path=str(self.path),
            header_tip=self.header_tip[0],
            verified_tip=self.verified_tip[0],
        )

    async def close(self) -> None:
        """Close the store; every committed write is already durable."""
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    async def refresh(self) -> None:
        """Re-read both tips from the store (after writes made through ``store`` directly)."""
        store = self.store
        tip = await store.header_tip()
        if tip is not None:
            self.header_tip = tip
        verified = await store.verified_tip()
        if verified is not None:
            hash_ = await store.hash_at(verified)
            if hash_ is not None:
                self.verified_tip = (verified, hash_)

    async def check_consistency(self) -> list[str]:
        """The store's invariant check (empty list: consistent)."""
        return await self.store.check_consistency()

    # ------------------------------------------------------------------ pre-generation
    async def pregenerate(self, n_blocks: int, seed: int, *, batch: int = PREGEN_BATCH) -> int:
        """Make the store hold the seeded chain up to height ``n_blocks``; returns blocks written.

        Resumes: the stored prefix of the chain (both headers and bodies) is skipped. Generation
        runs on a worker thread so a long run does not stall the event loop.

        Raises:
            ChainStateError: The stored chain is not this seed's chain (another seed, or a chain
                synced from peers); nothing is written.
        """
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0: {n_blocks}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1: {batch}")
        store = self.store
        await self.refresh()
        # Resume from the lower tip: a crash between a batch's header and body commits leaves
        # bodies to fill under stored headers (put_headers skips identical stored headers).
        done = min(self.header_tip[0], self.verified_tip[0])
        if done >= n_blocks:
            return 0
        self.journal.emit(
            "chain", "pregenerate.started", height=done, of=n_blocks, seed=seed, batch=batch
        )
        blocks: Iterator[Block] = pregenerate(self.network_id, n_blocks, seed)
        if done > 0:
            skipped = await asyncio.to_thread(
                lambda: list(itertools.islice(blocks, done - 1, done))
            )
            if not skipped or skipped[0].hash != await store.hash_at(done):
                raise ChainStateError(
                    f"{self.path} holds a chain that is not the seed-{seed} chain at height "
                    f"{done}: use another data dir or seed"
                )
        written = 0
        while True:
            chunk = await asyncio.to_thread(lambda: list(itertools.islice(blocks, batch)))
            if not chunk:
                break
            start = chunk[0].height
            await store.put_headers(start, header_rows(b.header for b in chunk))
            await store.put_bodies([(b.height, b.body) for b in chunk])
            await self.refresh()
            written += len(chunk)
            self.journal.emit("chain", "pregenerate.progress", height=chunk[-1].height, of=n_blocks)
        self.journal.emit(
            "chain",
            "pregenerate.finished",
            height=self.header_tip[0],
            of=n_blocks,
            written=written,
            tip=self.header_tip[1].hex(),
        )
        return written
