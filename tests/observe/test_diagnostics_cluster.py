"""Diagnostics on ``zakura node`` processes: the ``--diag`` flag end to end, and silence on a
healthy network.

``test_no_diagnostic_on_a_healthy_six_node_demo_over_two_minutes`` is slow on purpose: it
runs the console's demo network (6 nodes, the demo chain, a block every 5 s) for two minutes
with the default thresholds and fails at the first ``diagnostic/started`` row in any node's
journal, so a threshold that fires on a normal sync is caught here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp
import pytest

from node_core.observe.diagnostics import DiagnosticThresholds
from node_core.observe.schema import Snapshot
from zakura.args import DEMO_BLOCKS, DEMO_MINE_INTERVAL
from zakura.chaos.cluster import Cluster

#: The observation window of the healthy-network test, in seconds.
HEALTHY_WINDOW_S = 120.0


def diagnostics(snap: Snapshot, diag: str) -> list[str]:
    return [d["subject"] for d in snap.get("diagnostics", []) if d["id"] == diag]


async def gauge(api: str, diag: str) -> float:
    """``zakura_diagnostic_active{id=diag}`` as the node's ``/metrics`` serves it."""
    async with aiohttp.ClientSession() as http, http.get(f"http://{api}/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(f'zakura_diagnostic_active{{id="{diag}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no zakura_diagnostic_active sample for {diag}")


@pytest.mark.timeout(120)
async def test_diag_flag_sets_the_threshold_on_node_processes() -> None:
    """``--diag parked_s=1``: a park on node 0 shows as ``peer_parked`` within seconds in its
    snapshot, ``/metrics`` and journal, and clears on unpark; the snapshot names the
    threshold it was given."""
    async with Cluster(3, blocks=20, node_args=("--diag", "parked_s=1")) as cluster:
        await cluster.connected(60)
        snaps = await cluster.snapshots([0])
        assert snaps[0].get("diagnostic_thresholds", {}).get("parked_s") == 1.0
        assert snaps[0].get("diagnostic_thresholds", {}).get("stall_s") == (
            DiagnosticThresholds().stall_s
        )
        parked = cluster.label(1)
        await cluster.park(0, 1)

        def parked_diag(snaps: Mapping[int, Snapshot]) -> bool:
            return parked in diagnostics(snaps[0], "peer_parked")

        await cluster.wait_for(parked_diag, 20, what="peer_parked on node 0", nodes=[0])
        assert await gauge(cluster.node(0).api, "peer_parked") == 1.0
        await cluster.unpark(0, 1)

        def cleared(snaps: Mapping[int, Snapshot]) -> bool:
            return not diagnostics(snaps[0], "peer_parked")

        await cluster.wait_for(cleared, 20, what="peer_parked cleared on node 0", nodes=[0])
        assert await gauge(cluster.node(0).api, "peer_parked") == 0.0
        rows = [r for r in await cluster.journal([0]) if r["table"] == "diagnostic"]
        assert [(r["event"], r["fields"]["id"]) for r in rows] == [
            ("started", "peer_parked"),
            ("cleared", "peer_parked"),
        ]
        assert rows[0]["fields"]["subject"] == parked


@pytest.mark.wallclock
@pytest.mark.timeout(HEALTHY_WINDOW_S + 150)
async def test_no_diagnostic_on_a_healthy_six_node_demo_over_two_minutes() -> None:
    """Slow (about 2.5 minutes): the demo network for two minutes, default thresholds."""
    async with Cluster(
        6, blocks=DEMO_BLOCKS, mine_interval=DEMO_MINE_INTERVAL, ready_timeout=60
    ) as cluster:
        end = time.monotonic() + HEALTHY_WINDOW_S
        while True:
            started = [
                r
                for r in await cluster.journal()
                if (r["table"], r["event"]) == ("diagnostic", "started")
            ]
            assert not started, f"diagnostics fired on a healthy network: {started}"
            if time.monotonic() >= end:
                break
            await asyncio.sleep(2.0)  # the observation window's pace, not a synchronisation
        snaps = await cluster.snapshots()
        assert all(s["chain"]["verified_tip"]["height"] >= DEMO_BLOCKS for s in snaps.values()), (
            cluster.describe(snaps)
        )
        assert all(s.get("diagnostics") == [] for s in snaps.values())
