"""Giving up header chains whose bodies nobody serves, and taking them back when a body shows.

Why a module of its own: this is the header-sync half of docs/ARCHITECTURE.md, "Bodies nobody
serves". Block sync decides *when* to give up (``BlockSyncCore.check_starved``); this module
does the giving up, across everything header sync holds: the index, the competing branch, the
range queue, every peer's fork search and cap, the store (through the committer) and block
sync (through the reorg callback). What stays refused, and for how long, is
:mod:`node_core.header_sync.unavailable`; this module only fills and empties it.

:class:`Abandonment` is owned by the reactor (:mod:`node_core.header_sync.reactor`), whose
public ``abandon_above`` and ``block_available`` delegate to it; it runs inside the reactor's
synchronous sections and never imports the reactor.

Invariants:

- Never below the finalized height, and only when there is something above the height.
- Exactly like a reorg down to the height: index, branch, queue, store and block sync all
  drop what lies above it in the same synchronous section, so nothing above it survives in
  one place and not in another.
- Only a body lifts a refusal (:meth:`Abandonment.block_available`): a Status claiming the
  block proves nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from node_core.header_sync.chain_index import HeaderIndex
from node_core.header_sync.committer import HeaderCommitter, TruncateHeaders
from node_core.header_sync.entries import SERVICE
from node_core.header_sync.range_queue import SharedHeaderRangeQueue
from node_core.header_sync.unavailable import UnavailableHeaders

if TYPE_CHECKING:
    from node_core.header_sync.entries import PeerEntry
    from node_core.header_sync.observe import HeaderSyncMetrics
    from node_core.observe.journal import Journal

__all__ = ["Abandonment"]


class Abandonment:
    """Abandons header chains above a height and lifts refusals; see the module docstring.

    ``reorged`` tells block sync to forget its work above a height, ``schedule`` plans and
    wakes routines: the reactor's own methods.
    """

    def __init__(
        self,
        *,
        peers: Mapping[str, PeerEntry],
        index: HeaderIndex,
        queue: SharedHeaderRangeQueue,
        unavailable: UnavailableHeaders,
        committer: HeaderCommitter,
        metrics: HeaderSyncMetrics,
        journal: Journal,
        reorged: Callable[[int], None],
        schedule: Callable[[], None],
    ) -> None:
        self.peers = peers
        self.index = index
        self.queue = queue
        self.unavailable = unavailable
        self.committer = committer
        self.metrics = metrics
        self.journal = journal
        self._reorged = reorged
        self._schedule = schedule
        #: Header chains given up so far (the snapshot's ``header_sync.abandoned``).
        self.count = 0

    def abandon_above(self, height: int, reason: str) -> bool:
        """Give up the header chain above ``height``: nobody serves the bodies above it.

        The index and the store drop the headers above ``height`` (they have no bodies, so
        nothing verified is lost), the header at ``height + 1`` is refused for a while so the
        peers that still advertise it cannot hand it straight back, and block sync resets
        above ``height`` exactly as for a reorg. Returns False when there is nothing above
        ``height`` or it is below the finalized height.
        """
        index = self.index
        if height >= index.tip_height or height < index.finalized_height:
            return False
        now = time.monotonic()
        dropped = index.hash_at(height + 1)
        assert dropped is not None
        old_tip = index.tip_height
        self.unavailable.add(dropped, height + 1, now)
        index.truncate_to(height)
        branch = index.branch
        if branch is not None and branch.fork_height > height:
            index.drop_branch()
        self.queue.reset_above(height)
        self.queue.uncover_above(height)
        for entry in self.peers.values():
            entry.fork = None
            status = entry.status
            if status is not None and self.unavailable.height_of(status.tip_hash, now) is not None:
                self.queue.cap_peer(entry.label, height)
        self.count += 1
        self.metrics.abandoned.inc()
        self.journal.emit(
            "header_sync",
            "abandoned",
            service=SERVICE,
            height=height + 1,
            hash=dropped.hex(),
            dropped=old_tip - height,
            reason=reason,
        )
        self.committer.put(TruncateHeaders(height, index.tip_hash))
        self._reorged(height)
        self._schedule()
        return True

    def block_available(self, hash_: bytes) -> None:
        """A peer sent the block ``hash_`` with a valid body: stop refusing its header.

        Only a body proves it: a Status claiming a block proves nothing (a hostile peer could
        lift every refusal with one).
        """
        if not self.unavailable.discard(hash_):
            return
        for label in self.peers:
            self.queue.uncap_peer(label)
        self._schedule()
