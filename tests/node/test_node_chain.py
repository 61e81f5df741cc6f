"""The node's chain: chain id = genesis hash, pre-generated blocks before listening, the
snapshot's ``chain`` section, resume on restart, and refusal of peers on another chain."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from nodekit import Cluster, wait_until

from node_core.chain import genesis_hash, pregenerate
from node_core.node import Node, NodeConfig
from node_core.observe.journal import JournalEvent
from node_core.protocol.limits import NetworkId
from zakura.cli import build_parser
from zakura.node_cmd import node_config_from_args
from zakura.testnet import Testnet


async def test_chain_id_is_the_network_genesis_hash(cluster: Cluster) -> None:
    node = await cluster.start("a")
    assert node.chain_id == genesis_hash(NetworkId.REGTEST)
    snap = node.snapshot()
    assert snap["node"]["chain_id"] == genesis_hash(NetworkId.REGTEST).hex()
    genesis = {"height": 0, "hash": genesis_hash(NetworkId.REGTEST).hex()}
    assert snap["chain"] == {
        "header_tip": genesis,
        "verified_tip": genesis,
        "target": 0,
        "network": "regtest",
        "finalized_height": 0,
    }
    # An explicit chain id still overrides the genesis hash.
    other = await cluster.start("b", chain_id=b"\x05" * 32)
    assert other.chain_id == b"\x05" * 32


async def test_node_with_blocks_starts_with_its_chain(tmp_path: Path) -> None:
    config = NodeConfig(data_dir=tmp_path / "miner", blocks=300, chain_seed=4)
    last = list(pregenerate(NetworkId.REGTEST, 300, 4))[-1]
    node = Node(config)
    await node.start()
    try:
        snap = orjson.loads(orjson.dumps(node.snapshot()))
        tip = {"height": 300, "hash": last.hash.hex()}
        assert snap["chain"]["header_tip"] == tip
        assert snap["chain"]["verified_tip"] == tip
        assert snap["chain"]["target"] == 300
        # Pre-generation finished before the node listened.
        events = [(e.table, e.event) for e in node.journal.since(0)]
        assert events.index(("chain", "pregenerate.finished")) < events.index(("node", "started"))
        assert await node.chain.check_consistency() == []
    finally:
        await node.stop()
    assert not node.chain.is_open

    again = Node(config)
    await again.start()
    try:
        assert again.chain.header_tip == (300, last.hash)
        assert not again.journal.find(lambda e: e.event == "pregenerate.progress")
    finally:
        await again.stop()


def _refused(reason: str) -> Callable[[JournalEvent], bool]:
    def match(e: JournalEvent) -> bool:
        return (
            e.table == "handshake"
            and e.event == "control.failed"
            and e.fields.get("reason") == reason
        )

    return match


async def test_nodes_on_different_networks_refuse_each_other(cluster: Cluster) -> None:
    a = await cluster.start("a", network_id=int(NetworkId.REGTEST))
    b = await cluster.start(
        "b",
        network_id=int(NetworkId.TESTNET),
        bootstrap=(("127.0.0.1", a.transport.listen_port),),
        dial_interval=0.1,
    )
    assert a.chain_id != b.chain_id
    assert b.chain_id == genesis_hash(NetworkId.TESTNET)
    assert b.snapshot()["chain"]["network"] == "testnet"
    await wait_until(
        lambda: bool(a.journal.find(_refused("wrong_network"))),
        what="a refusing b's handshake",
    )
    assert not a.transport.peers.connections()
    assert not b.transport.peers.connections()


async def test_nodes_with_another_genesis_refuse_each_other(cluster: Cluster) -> None:
    # Same network id, but b claims the testnet genesis as its chain: a different chain.
    a = await cluster.start("a")
    b = await cluster.start(
        "b",
        chain_id=genesis_hash(NetworkId.TESTNET),
        bootstrap=(("127.0.0.1", a.transport.listen_port),),
        dial_interval=0.1,
    )
    await wait_until(
        lambda: bool(a.journal.find(_refused("wrong_chain"))),
        what="a refusing b's chain",
    )
    assert not a.transport.peers.connections()
    assert not b.transport.peers.connections()


def test_testnet_gives_blocks_to_node_zero_only(tmp_path: Path) -> None:
    net = Testnet(3, data_dir=tmp_path, blocks=500, seed=9)
    miner = net.command(0, None)
    assert miner[miner.index("--blocks") + 1] == "500"
    assert miner[miner.index("--seed") + 1] == "9"
    for i in (1, 2):
        assert "--blocks" not in net.command(i, "127.0.0.1:1")
    assert "--blocks" not in Testnet(2, data_dir=tmp_path).command(0, None)


def test_node_flags_reach_the_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path), "--blocks", "300"]
    )
    config = node_config_from_args(args)
    assert (config.blocks, config.chain_seed) == (300, 1)
    args = build_parser().parse_args(
        ["node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path), "--seed", "5"]
    )
    assert (node_config_from_args(args).blocks, node_config_from_args(args).chain_seed) == (0, 5)
