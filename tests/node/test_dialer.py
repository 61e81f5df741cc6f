"""The dialer: bootstrap redial and dialing peers learned through discovery."""

from __future__ import annotations

from nodekit import Cluster, wait_until

from node_core.node import Node, NodeConfig


async def test_bootstrap_peer_is_redialed_after_it_restarts(cluster: Cluster) -> None:
    boot = await cluster.start("boot", target_peers=0)
    port = boot.transport.listen_port
    leaf = await cluster.start("leaf", bootstrap=(("127.0.0.1", port),), target_peers=1)
    await wait_until(lambda: leaf.transport.peers.get(boot.node_id) is not None)
    await boot.stop()
    await wait_until(lambda: leaf.transport.peers.get(boot.node_id) is None, what="gone")
    # Same data dir (same identity) on the same port: the maintained redial finds it again.
    again = Node(NodeConfig(data_dir=cluster.root / "boot", listen_port=port, target_peers=0))
    await again.start()
    cluster.nodes.append(again)
    assert again.node_id == boot.node_id
    await wait_until(
        lambda: leaf.transport.peers.get(again.node_id) is not None,
        timeout=15.0,
        what="bootstrap redial",
    )
    state = leaf.dialer.bootstrap[0]
    assert state.attempts >= 2 and state.connected


async def test_dialer_reaches_target_through_gossip(cluster: Cluster) -> None:
    """Leaves only know the hub; they find each other from its Peers answers and dial."""
    hub = await cluster.start("hub", target_peers=8)
    boot = (("127.0.0.1", hub.transport.listen_port),)
    leaves = [await cluster.start(f"leaf{i}", bootstrap=boot, target_peers=3) for i in range(4)]
    await wait_until(
        lambda: all(len(leaf.transport.peers) >= 3 for leaf in leaves),
        timeout=20.0,
        what="every leaf at its target",
    )
    for leaf in leaves:
        status = leaf.dialer.status()
        assert status["reached"] is True
        others = {p.node_id for p in leaves if p is not leaf} | {hub.node_id}
        assert set(leaf.transport.peers.by_id) <= others
    # At least one connection between leaves exists that no bootstrap flag created.
    assert any(
        conn.peer.direction == "outbound" and conn.peer.node_id != hub.node_id
        for leaf in leaves
        for conn in leaf.transport.peers.connections()
    )


async def test_failed_dials_back_off(cluster: Cluster) -> None:
    leaf = await cluster.start("leaf", bootstrap=(("127.0.0.1", 1),), target_peers=1)
    state = leaf.dialer.bootstrap[0]
    await wait_until(lambda: state.failures >= 2, timeout=10.0, what="two failed dials")
    assert state.last_error == "connect_failed"
    assert not state.connected
