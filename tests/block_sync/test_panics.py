"""A panic injected into a block-sync routine at each of its await points strands nothing.

The routine awaits in three places: its doorbell (idle, or waiting for bodies with requests
outstanding, or sitting out an operator stall) and its periodic yield while busy. For each,
the panic must close only that peer's connection, the teardown must return every unreceived
height and release its bytes, and the node must still reach the network's tip with a sound
store and an empty ledger.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from bskit import Cluster, ScriptedServer, assert_synced_and_sound, bootstrap, wait_until

from node_core.block_sync.core import BlockSyncConfig
from node_core.node import Node
from zakura.chaos.invariants import assert_holds, no_stranded_work, panics_match, store_sound

pytestmark = pytest.mark.timeout(180)

BLOCKS = 1200


def routine_of(node: Node, label: str) -> object | None:
    return next((r for r in node.block_sync.routines.values() if r.label == label), None)


async def panic_and_check(client: Node, label: str, when: str) -> None:
    core = client.block_sync
    routine = routine_of(client, label)
    assert routine is not None, when
    outcome = await client.faults.panic(label, "block_sync")
    assert "routine_panicked" in outcome.effect, when
    await wait_until(lambda: routine_of(client, label) is not routine, 10, f"{when}: torn down")
    live = {r.label: r.owner[1] for r in core.routines.values()}
    assert core.work.invariant_violations(live) == [], when
    # Nothing of the panicked session is still in flight (bodies it delivered stay held
    # until they are durable: that is the ledger, not a strand).
    gone = routine.owner  # type: ignore[attr-defined]
    assert not [
        h for h, state, owner in core.work.items() if state == "in_flight" and owner == gone
    ]
    assert client.metrics.value("zakura_pipe_panic_total", service="block_sync") >= 1.0


@pytest.mark.parametrize("point", ["idle", "awaiting_bodies", "stalled", "mid_sync"])
async def test_panic_at_each_injection_point(tmp_path: Path, point: str) -> None:
    cluster = Cluster(tmp_path)
    try:
        config = BlockSyncConfig(request_timeout=30.0, liveness_timeout=60.0)
        if point == "awaiting_bodies":
            silent = ScriptedServer(lambda _m: "ignore")
            target = await cluster.start("silent", blocks=BLOCKS, extra_services=[silent])
            silent.node = target
            client = await cluster.start(
                "client",
                bootstrap=bootstrap(target),
                allow_faults=True,
                block_sync=config,
                target_peers=3,
            )
            label = target.label
            await wait_until(
                lambda: (r := routine_of(client, label)) is not None and bool(r.outstanding),  # type: ignore[attr-defined]
                30,
                "bodies owed by the silent peer",
            )
            assert client.block_sync.budget.used > 0
        else:
            target = await cluster.start("server", blocks=BLOCKS, target_peers=3)
            client = await cluster.start(
                "client",
                bootstrap=bootstrap(target),
                allow_faults=True,
                block_sync=config,
                target_peers=3,
            )
            label = target.label
            if point == "idle":
                await wait_until(
                    lambda: client.chain.verified_tip[0] == BLOCKS, 60, "synced (idle)"
                )
            elif point == "stalled":
                await wait_until(lambda: routine_of(client, label) is not None, 20, "routine")
                await client.faults.stall(label, "block_sync", seconds=60)
            else:
                await wait_until(lambda: client.chain.verified_tip[0] > 0, 60, "the sync under way")
        await panic_and_check(client, label, point)
        honest = await cluster.start("honest", blocks=BLOCKS, bootstrap=bootstrap(client))
        await wait_until(
            lambda: client.chain.verified_tip[0] == BLOCKS, 120, f"{point}: reached the tip"
        )
        await wait_until(lambda: client.block_sync.budget.used == 0, 30, "ledger drained")
        await assert_synced_and_sound(client, honest)

        # The invariants the chaos cluster checks, on this node's own snapshot, journal, store.
        def idle() -> bool:
            return no_stranded_work(client.snapshot(), client.label).ok

        with contextlib.suppress(AssertionError):  # the verdict below says what is stranded
            await wait_until(idle, 30, "no stranded work")
        journal = [e.to_dict() for e in client.journal.since(0, 100_000)]
        assert_holds(
            [
                no_stranded_work(client.snapshot(), client.label),
                panics_match(journal),
                store_sound(client.chain.path, client.label),
            ]
        )
    finally:
        await cluster.stop()
