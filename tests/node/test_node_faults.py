"""Faults against real nodes: panics and disconnects hurt only their peer."""

from __future__ import annotations

import pytest
from nodekit import Cluster, wait_until

from node_core.faults import FaultError, FaultsDisabled
from node_core.node import Node


def bootstrap(node: Node) -> tuple[tuple[str, int]]:
    return (("127.0.0.1", node.transport.listen_port),)


async def star(cluster: Cluster, n: int, **hub_kwargs: object) -> tuple[Node, list[Node]]:
    hub = await cluster.start("hub", allow_faults=True, target_peers=n, **hub_kwargs)
    leaves = [
        await cluster.start(f"leaf{i}", bootstrap=bootstrap(hub), target_peers=1) for i in range(n)
    ]
    await wait_until(lambda: len(hub.transport.peers) == n, what="all leaves connected")
    return hub, leaves


def routine_states(node: Node, label: str) -> dict[str, str]:
    for peer in node.snapshot()["peers"]:
        if peer["label"] == label:
            return {r["service"]: r["state"] for r in peer["routines"]}
    return {}


async def test_discovery_exchange_completes_and_snapshot_shows_routines(cluster: Cluster) -> None:
    hub, leaves = await star(cluster, 2)
    for leaf in leaves:
        await wait_until(
            lambda leaf=leaf: any(
                r.get("discovery", {}).get("outcome") == "complete"
                for p in hub.snapshot()["peers"]
                if p["label"] == leaf.label
                for r in p["routines"]
            ),
            what="exchange complete",
        )
    snap = hub.snapshot()
    assert snap["schema"] == 2
    assert snap["node"]["label"] == hub.label
    assert {p["label"] for p in snap["peers"]} == {leaf.label for leaf in leaves}
    for peer in snap["peers"]:
        assert [r["service"] for r in peer["routines"]] == [
            "discovery",
            "header_sync",
            "block_sync",
        ]
        assert all(r["state"] == "running" for r in peer["routines"])
        assert all(r["generation"] >= 1 for r in peer["routines"])
    # Each leaf learned of the other through the hub's Peers answer or a later refresh.
    assert hub.book.get(leaves[0].node_id) is not None


async def test_panic_in_discovery_closes_only_that_peer(cluster: Cluster) -> None:
    hub, leaves = await star(cluster, 3)
    victim, others = leaves[0], leaves[1:]
    since = hub.journal.last_seq
    outcome = await hub.faults.panic(victim.label, "discovery")
    assert outcome.effect == "routine_panicked,connection_closed"
    events = [(e.table, e.event) for e in hub.journal.since(since) if e.peer == victim.label]
    assert ("fault", "injected") in events
    assert ("routine", "panicked") in events
    assert ("routine", "exited") in events
    assert ("fault", "observed") in events
    closed = [
        e
        for e in hub.journal.since(since)
        if e.table == "conn" and e.event.startswith("closed") and e.peer == victim.label
    ]
    assert closed and closed[0].fields["reason"] == "panic:discovery"
    exited = [
        e
        for e in hub.journal.since(since)
        if e.table == "routine" and e.event == "exited" and e.peer == victim.label
    ]
    assert exited[0].fields["cause"] == "panic"
    assert hub.metrics.value("zakura_pipe_panic_total", service="discovery") == 1.0
    for other in others:
        assert routine_states(hub, other.label) == {
            "discovery": "running",
            "header_sync": "running",
            "block_sync": "running",
        }
        conn = hub.transport.peers.get(other.node_id)
        assert conn is not None and not conn.closed
    # The node keeps accepting: a new peer connects.
    newcomer = await cluster.start("newcomer", bootstrap=bootstrap(hub), target_peers=1)
    await wait_until(
        lambda: hub.transport.peers.get(newcomer.node_id) is not None, what="newcomer registered"
    )


async def test_disconnect_fault_closes_exactly_that_peer(cluster: Cluster) -> None:
    hub, leaves = await star(cluster, 3)
    target = leaves[1]
    conn = hub.transport.peers.get(target.node_id)
    assert conn is not None
    outcome = await hub.faults.disconnect(target.label)
    assert outcome.effect == "connection_closed"
    assert conn.closed and conn.close_reason == f"fault:{outcome.fault_id}:disconnect"
    for leaf in (leaves[0], leaves[2]):
        still = hub.transport.peers.get(leaf.node_id)
        assert still is not None and not still.closed
    # The routine on the closed connection exited by cancellation, never as a panic.
    await wait_until(lambda: conn.routines[0].exit is not None, what="routine exit")
    assert conn.routines[0].exit is not None
    assert conn.routines[0].exit.cause.value == "cancelled"


async def test_faults_refused_without_allow_faults(cluster: Cluster) -> None:
    hub = await cluster.start("hub", allow_faults=False)
    leaf = await cluster.start("leaf", bootstrap=bootstrap(hub), target_peers=1)
    await wait_until(lambda: len(hub.transport.peers) == 1)
    with pytest.raises(FaultsDisabled, match="--allow-faults"):
        await hub.faults.disconnect(leaf.label)
    with pytest.raises(FaultsDisabled):
        await hub.faults.panic(leaf.label, "discovery")
    assert hub.transport.peers.get(leaf.node_id) is not None


async def test_fault_target_errors_are_specific(cluster: Cluster) -> None:
    hub, leaves = await star(cluster, 1)
    with pytest.raises(FaultError, match="no connected peer"):
        await hub.faults.disconnect("peer:0000000000000000")
    with pytest.raises(FaultError, match="has no 'legacy_gossip' routine"):
        await hub.faults.panic(leaves[0].label, "legacy_gossip")
