"""Issue 16: one bad answer, or one big body, never stops block sync on real nodes.

- Defect 4: a node whose only peer answers its first GetBlocks with a wrong body used to
  never ask that peer again (the probe-first rule held it back for the whole session). Now
  the wrong body is recorded ``invalid_block``, the peer is held back for a growing backoff
  that the snapshot shows (``fill_stop = retry_backoff``, ``window.retry_in_s``), and then
  asked again; the node syncs from it without disconnecting it.
- Bodies above 3 x 16 KiB (the reservation for a body of unknown size) could never be
  downloaded (``size_mismatch`` on every try, a retry loop); now they are accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bskit import Cluster, ScriptedServer, assert_synced_and_sound, bootstrap, wait_until

from node_core.block_sync.work import DEFAULT_ESTIMATE
from node_core.chain.interval_miner import Miner
from node_core.node import Node
from node_core.observe.snapshot import build_snapshot

pytestmark = pytest.mark.timeout(120)

BLOCKS = 300


def block_view(client: Node, label: str) -> dict[str, Any] | None:
    for peer in build_snapshot(client)["peers"]:
        if peer["label"] != label:
            continue
        for routine in peer["routines"]:
            if routine["service"] == "block_sync" and "block_sync" in routine:
                view: dict[str, Any] = routine["block_sync"]
                return view
    return None


async def test_an_only_peer_that_sent_one_wrong_body_is_asked_again(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        first = True

        def policy(_msg: Any) -> str:
            nonlocal first
            action, first = ("corrupt" if first else "serve"), False
            return action

        scripted = ScriptedServer(policy)
        server = await cluster.start("server", blocks=BLOCKS, extra_services=[scripted])
        scripted.node = server
        client = await cluster.start("client", bootstrap=bootstrap(server), target_peers=1)
        seen: dict[str, Any] = {}

        def held_back_and_shown() -> bool:
            view = block_view(client, server.label)
            if view is not None and view["fill_stop"] == "retry_backoff":
                seen.update(view)
                return True
            return False

        await wait_until(held_back_and_shown, 20, "the snapshot to show the retry backoff")
        assert seen["window"]["retry_in_s"] is not None
        assert seen["window"]["proven"] is False
        assert {r.reason for r in client.misbehavior.records} == {"invalid_block"}
        await wait_until(lambda: client.chain.verified_tip[0] == BLOCKS, 60, "synced")
        # Asked again on the same connection, never disconnected.
        assert len(scripted.by_conn) == 1
        assert len(next(iter(scripted.by_conn.values()))) >= 2
        assert all(r.action == "recorded" for r in client.misbehavior.records)
        await assert_synced_and_sound(client, server)
    finally:
        await cluster.stop()


async def test_bodies_far_above_the_reservation_are_downloaded(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        server = await cluster.start("server", blocks=5)
        miner = Miner(server, 1.0, seed=3, avg_body=120_000)
        big = 0
        while server.chain.verified_tip[0] < 12:
            block = await miner.mine_one()
            if block is not None:
                big += len(block.body) > 3 * DEFAULT_ESTIMATE
            await wait_until(
                lambda: server.chain.verified_tip[0] == server.header_sync.index.tip_height,
                10,
                "the mined block verified",
            )
        assert big >= 3, "the chain needs bodies above three reservations"
        client = await cluster.start("client", bootstrap=bootstrap(server), target_peers=1)
        await wait_until(
            lambda: client.chain.verified_tip == server.chain.verified_tip, 60, "synced"
        )
        assert client.misbehavior.records == [] or all(
            r.reason not in ("size_mismatch", "invalid_block") for r in client.misbehavior.records
        )
        await assert_synced_and_sound(client, server)
    finally:
        await cluster.stop()
