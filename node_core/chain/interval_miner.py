"""The interval miner: a block on our verified tip every ``interval`` s, announced with NewBlock.

It exists so a demo or test network keeps moving after pre-generation: every node sees
NewBlock relay, tips advancing and the console's progress bar filling. The block goes
through the header-sync reactor exactly like a relayed one (index, store, relay to every peer
behind us), so mining exercises the same path as receiving.

Bodies are random with the same size distribution as :func:`pregenerate`, from a seeded RNG
when a seed is given, so a test can reproduce a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import TYPE_CHECKING, Protocol

from node_core.chain.miner import MIN_PREGEN_BODY, make_block
from node_core.chain.model import Block, BlockHeader

if TYPE_CHECKING:
    from node_core.chain.chainstate import ChainState
    from node_core.header_sync.reactor import HeaderSyncReactor
    from node_core.observe.journal import Journal

log = logging.getLogger(__name__)


class MinerHost(Protocol):
    """The parts of a node the miner uses (a :class:`~node_core.node.Node`, which builds the
    miner and so must not be imported by it)."""

    @property
    def chain(self) -> ChainState: ...
    @property
    def header_sync(self) -> HeaderSyncReactor: ...
    @property
    def journal(self) -> Journal: ...


class Miner:
    """Mines on the node's best header tip once its body is verified; start/stop with the node."""

    def __init__(
        self, node: MinerHost, interval: float, *, seed: int | None = None, avg_body: int = 8192
    ) -> None:
        if interval <= 0:
            raise ValueError(f"mine interval must be positive: {interval}")
        self.node = node
        self.interval = interval
        self.rng = random.Random(seed)
        self.avg_body = avg_body
        self.mined = 0
        #: The last round was skipped because our header tip has no verified body yet.
        self.waiting_for_bodies = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="miner")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.mine_one()
            except Exception:  # a bad round must not stop the miner for good
                log.exception("mining round failed")

    async def mine_one(self) -> Block | None:
        """Mine one block on the current tip; None if there is no block to build on.

        Only a tip whose body we hold and verified is built on. A header tip without its
        body may be one a peer made up and never serves; building on it would make our own
        blocks unverifiable by anyone and stall the whole network's block sync behind that
        one header (issue 16). Until block sync catches up the round is skipped.
        """
        reactor = self.node.header_sync
        tip_height, tip_hash = reactor.index.tip_height, reactor.index.tip_hash
        if self.node.chain.verified_tip != (tip_height, tip_hash):
            self.waiting_for_bodies = True
            return None
        self.waiting_for_bodies = False
        raw = await self.node.chain.store.header_at(tip_height)
        if raw is None:
            return None  # the tip's commit is still in flight; next round
        prev = BlockHeader.decode(raw)
        if prev.hash != tip_hash:
            return None
        lo = min(MIN_PREGEN_BODY, self.avg_body)
        body = self.rng.randbytes(self.rng.randint(lo, 2 * self.avg_body - lo))
        block = await asyncio.to_thread(make_block, prev, body, time=int(time.time()))
        if not reactor.submit_local_block(block):
            return None
        self.mined += 1
        self.node.journal.emit(
            "chain", "mined", height=block.height, hash=block.hash.hex(), body_bytes=len(body)
        )
        return block
