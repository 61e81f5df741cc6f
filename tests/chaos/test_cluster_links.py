"""Cluster link faults against the node's /api/v1/links routes: a partition cuts exactly the
links between groups, delay and bandwidth are set on the node asked, heal brings it all back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from zakura.chaos.cluster import Cluster

pytestmark = pytest.mark.timeout(180)


async def test_partition_delay_bandwidth_heal() -> None:
    async with Cluster(nodes=3, blocks=50) as c:
        await c.connected(30)
        await c.partition([[0, 1], [2]])
        labels = {i: c.label(i) for i in range(3)}

        def two_is_cut_off(snaps: Mapping[int, Any]) -> bool:
            peers = {i: {p["label"] for p in s["peers"]} for i, s in snaps.items()}
            return (
                not peers[2] & {labels[0], labels[1]}
                and labels[2] not in peers[0] | peers[1]
                and labels[1] in peers[0]
            )

        await c.wait_for(two_is_cut_off, 30, what="node 2 cut off, nodes 0 and 1 together")
        assert c.node(0).id in str(await c.links(2)) and c.node(2).id in str(await c.links(0))

        await c.delay(0, to=1, ms=50, jitter_ms=10)
        await c.bandwidth(0, to=[1], kib_per_s=256)
        assert c.node(1).id in str(await c.links(0))

        await c.heal()
        await c.connected(60)
        assert c.node(2).id not in str(await c.links(0))
        assert [(r.node, r.fault, r.ok) for r in c.timeline] == [
            (None, "partition", True),
            (0, "delay", True),
            (0, "bandwidth", True),
            (None, "heal", True),
        ]
