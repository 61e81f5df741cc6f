"""Header-sync across real nodes on loopback: sync, reorg to more work, resume after restart."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from node_core.chain.chainstate import ChainState
from node_core.chain.miner import pregenerate
from node_core.chain.model import BlockHeader
from node_core.node import Node
from node_core.observe.journal import Journal
from node_core.protocol.limits import NetworkId

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from nodekit import Cluster, wait_until

pytestmark = pytest.mark.timeout(240)

CHAIN = 20_000


def bootstrap(*nodes: Node) -> tuple[tuple[str, int], ...]:
    return tuple(("127.0.0.1", n.transport.listen_port) for n in nodes)


def tips(nodes: list[Node]) -> set[tuple[int, bytes]]:
    return {n.chain.header_tip for n in nodes}


async def forked_data_dir(path: Path, common: int, branch: int, seed: int) -> tuple[int, bytes]:
    """A data dir holding the seed-1 chain up to ``common`` and then ``branch`` other blocks."""
    state = ChainState(path, int(NetworkId.REGTEST), Journal("fork"))
    await state.open()
    try:
        await state.pregenerate(common, 1)
        parent_raw = await state.store.header_at(common)
        assert parent_raw is not None
        blocks = list(
            pregenerate(
                NetworkId.REGTEST, branch, seed, parent=BlockHeader.decode(parent_raw), avg_body=64
            )
        )
        await state.store.put_headers(
            common + 1, [(b.hash, b.header.prev_hash, b.header.encode()) for b in blocks]
        )
        await state.refresh()
        return state.header_tip
    finally:
        await state.close()


async def test_six_nodes_sync_reorg_and_resume(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        # Headers only: this is header-sync's acceptance; six full copies of 165 MB of bodies
        # would only cost CI disk and time (block-sync has its own tests).
        miner = await cluster.start("n0", blocks=CHAIN, target_peers=5, sync_blocks=False)
        nodes = [miner]
        for i in range(1, 6):
            nodes.append(
                await cluster.start(
                    f"n{i}", bootstrap=bootstrap(*nodes), target_peers=5, sync_blocks=False
                )
            )
        await wait_until(
            lambda: tips(nodes) == {miner.chain.header_tip}, 120, "six nodes on one tip"
        )
        assert miner.chain.header_tip[0] == CHAIN
        for node in nodes[1:]:
            assert await node.chain.check_consistency() == []
            snap = node.snapshot()
            assert snap["chain"]["header_tip"]["height"] == CHAIN
            assert snap["header_sync"]["committed_total"] >= CHAIN
            assert snap["header_sync"]["range_queue"]["covered_to"] == CHAIN

        # A node on a competing branch that forks 100 below the tip and has 100 more blocks.
        fork_tip = await forked_data_dir(tmp_path / "fork", CHAIN - 100, 200, seed=77)
        assert fork_tip[0] == CHAIN + 100
        fork = await cluster.start(
            "fork", bootstrap=bootstrap(*nodes), target_peers=6, sync_blocks=False
        )
        await wait_until(
            lambda: tips([*nodes, fork]) == {fork_tip}, 120, "every node reorged to the branch"
        )
        for node in nodes[1:]:
            assert await node.chain.check_consistency() == []
        reorged = [n for n in nodes if n.header_sync.index.reorgs > 0]
        assert reorged, "at least one node switched by reorg"
        assert any(
            e.table == "header_sync" and e.event == "reorg"
            for e in reorged[0].journal.since(0, 10_000)
        )

        # Restart one node on its data dir: it resumes from the stored tip.
        victim = nodes[3]
        data_dir = victim.config.data_dir
        await victim.stop()
        cluster.nodes.remove(victim)
        again = await cluster.start(data_dir.name, sync_blocks=False)
        assert again.chain.header_tip == fork_tip
        assert again.header_sync.index.tip_height == fork_tip[0]
        assert again.header_sync.index.tip_hash == fork_tip[1]
    finally:
        await cluster.stop()


async def test_new_blocks_are_mined_relayed_and_synced(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        miner = await cluster.start("m", blocks=50, mine_interval=0.2, target_peers=3)
        a = await cluster.start("a", bootstrap=bootstrap(miner), target_peers=3)
        b = await cluster.start("b", bootstrap=bootstrap(a), target_peers=3)
        await wait_until(lambda: miner.chain.header_tip[0] >= 55, 30, "miner mined")
        target = miner.chain.header_tip[0] + 3
        await wait_until(
            lambda: all(n.chain.header_tip[0] >= target for n in (a, b)), 30, "relay reached b"
        )
        # Mined blocks carry bodies, so the miner's verified tip follows its header tip.
        assert miner.chain.verified_tip[0] >= 55
        relayed = miner.metrics.value("sync_header_tip_new_block_total", result="forwarded")
        assert relayed >= 1
        for node in (a, b):
            assert await node.chain.check_consistency() == []
    finally:
        await cluster.stop()
