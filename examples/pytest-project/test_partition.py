"""Partition a cluster in two while node 0 mines, heal it, and check that it comes back whole.

Node 0 is the miner, so only its side of the partition grows; the other side keeps the tip it
had when the links were cut. After the heal every node must reach the same best chain, and the
invariants must hold: one chain, sound stores, no stranded work, no unexpected panic.
"""

from __future__ import annotations

from typing import Any

import pytest

from zakura.chaos.cluster import Cluster
from zakura.chaos.invariants import assert_holds, check_cluster


def height(snapshot: dict[str, Any]) -> int:
    return int(snapshot["chain"]["verified_tip"]["height"])


@pytest.mark.zakura_cluster(nodes=4, blocks=100, mine_interval=1.0)
async def test_partition_mine_heal_converge(zakura_cluster: Cluster) -> None:
    c = zakura_cluster
    await c.converged(timeout=60)
    await c.connected(timeout=30)

    await c.partition([[0, 1], [2, 3]])
    cut = max(height(s) for s in (await c.snapshots()).values())
    # The miner's side grows; nobody on the other side may hear of it.
    snaps = await c.wait_for(
        lambda s: height(s[1]) >= cut + 3, timeout=60, what="node 1 to get 3 new blocks"
    )
    for i in (2, 3):
        assert height(snaps[i]) <= cut < height(snaps[1])
        peers = {p["label"] for p in snaps[i]["peers"]}
        assert not peers & {c.label(0), c.label(1)}, f"node {i} still talks across the cut"

    await c.heal()
    tip = await c.converged(timeout=90)
    assert tip.height >= cut + 3

    assert_holds(await check_cluster(c))
    assert [r.fault for r in c.timeline] == ["partition", "heal"]
