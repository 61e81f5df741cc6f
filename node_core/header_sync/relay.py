"""The NewBlock pipeline: check a relayed block, adopt it on our tip, forward it to the rest.

Why a module of its own: relay is a concept apart from range sync. A NewBlock is checked in
a fixed order (known peer, decodes, not seen before, the peer's NewBlock meter, a valid
block), remembered so no copy of it is handled twice, and adopted only when it extends our
index tip exactly; anything else waits for range sync, which the sender's Status drives. An
adopted block (relayed, or our own miner's through :meth:`NewBlockRelay.accept`) is committed
with its body and forwarded once to every other peer not already at its height.

:class:`NewBlockRelay` is owned by the reactor (:mod:`node_core.header_sync.reactor`) and runs
inside its synchronous handlers; it reaches the reactor's shared state only through what the
reactor hands it at construction, and never imports the reactor.

Invariants:

- At most :data:`SEEN_CAPACITY` block hashes are remembered (oldest dropped first).
- A block is adopted only on the index tip (parent, height and time), so adopting it never
  reorganises anything.
- A block is forwarded only as a droppable command (:mod:`node_core.header_sync.commands`): a
  peer whose command queue is full misses it and is never parked for it; our next Status lets
  it fetch the block by range sync.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from node_core.chain.miner import ChainError, validate_block
from node_core.chain.model import Block, BlockHeader
from node_core.header_sync.chain_index import CommitPlan, HeaderIndex, PlanKind
from node_core.header_sync.commands import EnqueueOutcome, ForwardNewBlock
from node_core.header_sync.committer import CommitBlock, HeaderCommitter
from node_core.header_sync.events import MisbehaviorReason, NewBlockCandidate
from node_core.protocol.errors import CodecError
from node_core.protocol.header_sync import NewBlock, encode_header_sync

if TYPE_CHECKING:
    from node_core.header_sync.entries import HeaderSyncConfig, PeerEntry
    from node_core.header_sync.observe import HeaderSyncMetrics, HeaderSyncTrace

__all__ = ["SEEN_CAPACITY", "NewBlockRelay"]

#: Block hashes remembered so a block relayed by several peers is handled once.
SEEN_CAPACITY = 4096


class NewBlockRelay:
    """The NewBlock pipeline of one node's header sync; see the module docstring.

    ``record`` records a peer's misbehavior, ``cover`` marks heights held, ``command`` offers a
    command to a peer's sink, ``schedule`` plans and wakes routines, ``block_available`` lifts
    the refusal of an abandoned header: the reactor's own methods.
    """

    def __init__(
        self,
        *,
        peers: Mapping[str, PeerEntry],
        index: HeaderIndex,
        committer: HeaderCommitter,
        config: HeaderSyncConfig,
        metrics: HeaderSyncMetrics,
        trace: HeaderSyncTrace,
        record: Callable[[str, MisbehaviorReason], None],
        cover: Callable[[int, int], None],
        command: Callable[[PeerEntry, ForwardNewBlock, str], EnqueueOutcome],
        schedule: Callable[[], None],
        block_available: Callable[[bytes], None],
    ) -> None:
        self.peers = peers
        self.index = index
        self.committer = committer
        self.config = config
        self.metrics = metrics
        self.trace = trace
        self._record = record
        self._cover = cover
        self._command = command
        self._schedule = schedule
        self._block_available = block_available
        #: Hashes of blocks already handled, oldest first.
        self.seen: OrderedDict[bytes, None] = OrderedDict()

    def on_new_block(self, ev: NewBlockCandidate) -> None:
        """A peer relayed a block: check it, and adopt it if it extends our tip."""
        entry = self.peers.get(ev.peer)
        if entry is None:
            self._record(ev.peer, MisbehaviorReason.UNKNOWN_PEER)
            return
        self.metrics.new_block.labels("received").inc()
        try:
            block = Block(BlockHeader.decode(ev.block_header), ev.block_body)
        except CodecError:
            self._record(ev.peer, MisbehaviorReason.MALFORMED_MESSAGE)
            return
        hash_ = block.hash
        if hash_ in self.seen:
            self.metrics.new_block.labels("deduped").inc()
            self.trace.row("header_new_block_deduped", peer=ev.peer, reason="seen_cache")
            return
        if not entry.new_block_meter.try_take(time.monotonic()):
            self._record(ev.peer, MisbehaviorReason.NEW_BLOCK_SPAM)
            return
        try:
            validate_block(block, None, min_bits=self.config.min_bits)
        except ChainError:
            self.metrics.new_block.labels("rejected").inc()
            self._record(ev.peer, MisbehaviorReason.INVALID_NEW_BLOCK)
            return
        header = block.header
        self.remember(hash_)
        # A block with its body: if we had abandoned its header for want of one, it is back.
        self._block_available(hash_)
        self.trace.row(
            "header_new_block_received", peer=ev.peer, height=header.height, hash=hash_.hex()
        )
        if self.index.hash_at(header.height) == hash_:
            self.metrics.new_block.labels("deduped").inc()
            self.trace.row("header_new_block_deduped", peer=ev.peer, reason="already_in_chain")
            return
        if not self.config.accept_new_blocks:
            self.metrics.new_block.labels("acceptance_unavailable").inc()
            return
        if (
            header.prev_hash != self.index.tip_hash
            or header.height != self.index.tip_height + 1
            or header.time < self.index.times[-1]
        ):
            # Not on our tip: the peer's Status (it advanced) drives a range sync instead.
            self.metrics.new_block.labels("unconnectable").inc()
            return
        self.accept(block, source=ev.peer)

    def remember(self, hash_: bytes) -> None:
        self.seen[hash_] = None
        while len(self.seen) > SEEN_CAPACITY:
            self.seen.popitem(last=False)

    def accept(self, block: Block, *, source: str | None) -> None:
        """Adopt ``block`` on our tip, commit it and forward it (``source``: who sent it)."""
        header = block.header
        self.remember(block.hash)
        self.index.apply(CommitPlan(PlanKind.EXTEND, header.height, (header,)))
        self._cover(header.height, header.height)
        self.committer.put(CommitBlock(block))
        payload = encode_header_sync(NewBlock(header.encode(), block.body))
        forwarded = 0
        for label in sorted(self.peers):
            entry = self.peers[label]
            if label == source:
                continue
            if entry.status is not None and entry.status.tip_height >= header.height:
                continue
            if len(payload) > entry.max_message:
                # This peer negotiated smaller messages: it gets the block by range sync.
                self.metrics.new_block.labels("too_large_for_peer").inc()
                continue
            outcome = self._command(entry, ForwardNewBlock(payload), "new_block")
            forwarded += outcome is EnqueueOutcome.QUEUED
        self.metrics.new_block.labels("forwarded").inc(forwarded)
        self.trace.row(
            "header_new_block_forwarded",
            source_peer=source,
            height=header.height,
            hash=block.hash.hex(),
            destination_peer_count=forwarded,
        )
        self._schedule()
