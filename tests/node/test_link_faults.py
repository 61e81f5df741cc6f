"""Link faults on real loopback nodes (issue 12 item 1): partition, delay, bandwidth, heal.

The node breaks its own links, per remote node id, at the transport boundary. Every wait is
on a condition with a deadline; the only timing assertions are lower bounds the fault itself
guarantees (a record held ``ms`` cannot arrive sooner; ``N`` bytes paced at ``R`` cannot all
leave in less than ``N / R``).
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from nodekit import Cluster, ProbeService, wait_until

from node_core.control import (
    LinkAction,
    Principal,
    Refusal,
    Role,
    apply,
)
from node_core.faults import FaultInvalid, FaultsDisabled
from node_core.node import Node
from node_core.observe.journal import JournalEvent
from node_core.ssh.commands import run_command
from node_core.transport.config import TransportConfig
from node_core.transport.endpoint import DialError
from node_core.transport.stream import Stream

LOCAL = "127.0.0.1"
CI = Principal("ci", Role.OPERATOR, "127.0.0.1:6666")


def bootstrap(node: Node) -> tuple[tuple[str, int]]:
    return ((LOCAL, node.transport.listen_port),)


def rows(node: Node, since: int = 0) -> list[JournalEvent]:
    return list(node.journal.since(since, 100_000))


def connected(a: Node, b: Node) -> bool:
    ab, ba = a.transport.peers.get(b.node_id), b.transport.peers.get(a.node_id)
    return ab is not None and ba is not None and not ab.closed and not ba.closed


def no_misbehavior(node: Node) -> None:
    """Nothing anywhere in ``node`` blames a peer: no record, no punitive close or failure."""
    assert list(node.misbehavior.records) == []
    for e in rows(node):
        assert e.event != "closed.punitive", e
        assert e.table != "misbehavior", e
        if e.table == "handshake" and e.event == "control.failed":
            assert e.fields["punitive"] is False, e


async def test_partition_closes_refuses_both_ways_until_heal(cluster: Cluster) -> None:
    hub = await cluster.start("hub", allow_faults=True, target_peers=2)
    leaf = await cluster.start("leaf", bootstrap=bootstrap(hub), target_peers=1)
    await wait_until(lambda: connected(hub, leaf), 20, "leaf connected")
    conn = hub.transport.peers.get(leaf.node_id)
    assert conn is not None
    since = hub.journal.last_seq

    done = await apply(hub, LinkAction("partition", (leaf.node_id,)), principal=CI)
    assert done.ok and done.effect == "link_partitioned" and done.reason == "closed=1", done
    assert done.to_dict()["closed"] == 1 and done.to_dict()["action"] == "partition"
    assert conn.closed and conn.close_reason == f"fault:{done.fault_id}:partition"
    assert not conn.close_is_punitive()
    faults = [e for e in rows(hub, since) if e.table == "fault"]
    assert [e.event for e in faults] == ["injected", "observed"]
    assert {k: faults[0].fields[k] for k in ("by", "role", "remote", "kind", "nodes")} == {
        "by": "ci",
        "role": "operator",
        "remote": "127.0.0.1:6666",
        "kind": "partition",
        "nodes": leaf.label,
    }
    assert faults[1].fields["effect"] == "link_partitioned" and faults[1].fields["closed"] == 1
    assert hub.faults.link_rows() == [
        {
            "node": leaf.node_id.hex(),
            "partitioned": True,
            "delay_ms": 0,
            "jitter_ms": 0,
            "kib_per_s": None,
        }
    ]

    # The leaf's bootstrap redials are refused at the handshake, on our side.
    def refused(direction: str) -> list[JournalEvent]:
        return [
            e
            for e in rows(hub, since)
            if (e.table, e.event) == ("conn", "rejected.partitioned")
            and e.fields["direction"] == direction
            and e.peer == leaf.label
        ]

    await wait_until(lambda: len(refused("inbound")) >= 2, 30, "two redials refused")
    assert any(
        e.table == "handshake"
        and e.event == "control.failed"
        and e.fields["reason"] == "peer_closed:partitioned"
        for e in rows(leaf)
    )
    # Our own dials are refused too: before connecting when the id is known, and right
    # after the Ack names the node when we dial by address.
    with pytest.raises(DialError) as known:
        await hub.transport.dial(LOCAL, leaf.transport.listen_port, leaf.node_id)
    assert known.value.reason == "partitioned"
    with pytest.raises(DialError) as by_address:
        await hub.transport.dial(LOCAL, leaf.transport.listen_port)
    assert by_address.value.reason == "handshake_partitioned"
    assert len(refused("outbound")) >= 2
    assert hub.transport.peers.get(leaf.node_id) is None
    assert leaf.transport.peers.get(hub.node_id) is None
    assert hub.metrics.value("zakura_p2p_conn_rejected_admission_total", reason="partitioned") > 0
    no_misbehavior(hub)
    no_misbehavior(leaf)

    healed = await apply(hub, LinkAction("heal"), principal=CI)
    assert healed.ok and healed.effect == "links_healed" and healed.reason == "healed=1"
    assert healed.to_dict()["healed"] == [leaf.node_id.hex()]
    assert hub.faults.link_rows() == []
    await wait_until(lambda: connected(hub, leaf), 60, "leaf reconnected after heal")
    no_misbehavior(hub)
    no_misbehavior(leaf)


async def test_partition_refuses_a_node_that_dials_us_by_address(cluster: Cluster) -> None:
    """A node not connected yet is refused too: the rule is on its id, not on a connection."""
    hub = await cluster.start("hub", allow_faults=True)
    stranger = await cluster.start("stranger")
    outcome = await hub.faults.partition([stranger.node_id])
    assert outcome.closed == 0
    with pytest.raises(DialError) as exc:
        await stranger.transport.dial(LOCAL, hub.transport.listen_port)
    assert exc.value.reason == "handshake_peer_closed:partitioned"
    await hub.faults.heal([stranger.node_id])
    conn = await stranger.transport.dial(LOCAL, hub.transport.listen_port)
    assert not conn.closed


def probes() -> list[ProbeService]:
    return [ProbeService("echo", 203, 1 << 11)]


async def echo_pair(cluster: Cluster, name: str) -> tuple[Node, Node, Stream, ProbeService]:
    """A hub that echoes (``allow_faults``) and a peer that dialed it, with the peer's stream."""
    hub_probe, peer_probe = probes(), probes()
    hub = await cluster.start(
        name, allow_faults=True, extra_services=hub_probe, transport=TransportConfig(link_seed=5)
    )
    peer = await cluster.start(f"{name}-peer", extra_services=peer_probe)
    await peer.transport.dial(LOCAL, hub.transport.listen_port)
    await wait_until(lambda: hub.node_id in peer_probe[0].streams, 10, "echo stream open")
    return hub, peer, peer_probe[0].streams[hub.node_id], hub_probe[0]


async def round_trip(stream: Stream, payload: bytes) -> float:
    start = time.monotonic()
    await stream.send(7, payload)
    frame = await asyncio.wait_for(stream.recv(), 30)
    assert frame is not None and frame.payload == payload
    return time.monotonic() - start


async def test_delay_holds_frames_in_order_and_blocks_nobody(cluster: Cluster) -> None:
    hub, peer, stream, hub_probe = await echo_pair(cluster, "hub")
    since = hub.journal.last_seq
    done = await apply(hub, LinkAction("delay", (peer.node_id,), ms=200), principal=CI)
    assert done.ok and done.effect == "link_delayed", done
    assert (done.to_dict()["ms"], done.to_dict()["jitter_ms"]) == (200, 0)
    injected = next(e for e in rows(hub, since) if e.event == "injected")
    assert (injected.fields["ms"], injected.fields["jitter_ms"]) == (200, 0)
    assert injected.fields["by"] == "ci"
    # What the hub sends to the peer is held 200 ms: the round trip is at least that.
    assert await round_trip(stream, b"ping") >= 0.2

    # With jitter, each record is held 100 ± 100 ms, yet none overtakes an earlier one.
    await hub.faults.delay([peer.node_id], 100, 100)
    for i in range(60):
        await stream.send(7, i.to_bytes(2, "big"))
    got = []
    for _ in range(60):
        frame = await asyncio.wait_for(stream.recv(), 30)
        assert frame is not None
        got.append(int.from_bytes(frame.payload, "big"))
    assert got == list(range(60))

    # A long hold blocks neither the hub's reader (it reads and echoes everything while its
    # answers wait) nor its other connections (a second peer round-trips meanwhile).
    other = await cluster.start("other", extra_services=(other_probe := probes()))
    await other.transport.dial(LOCAL, hub.transport.listen_port)
    await wait_until(lambda: hub.node_id in other_probe[0].streams, 10, "second echo stream")
    await hub.faults.delay([peer.node_id], 60_000)
    echoed = hub_probe.echoed
    for i in range(20):
        await stream.send(7, f"held {i}".encode())
    await wait_until(lambda: hub_probe.echoed >= echoed + 20, 10, "hub read all 20 frames")
    conn = hub.transport.peers.get(peer.node_id)
    assert conn is not None and conn.held_bytes > 0
    await round_trip(other_probe[0].streams[hub.node_id], b"not held")
    assert stream.try_recv() is None  # the held answers are still held
    # Heal: what is held leaves now (not a minute from now), in order, then the link is plain.
    healed = await hub.faults.heal()
    assert healed.healed == (peer.node_id,) and conn.held_bytes == 0
    for i in range(20):
        frame = await asyncio.wait_for(stream.recv(), 30)
        assert frame is not None and frame.payload == f"held {i}".encode()
    await round_trip(stream, b"after heal")
    await hub.faults.delay([peer.node_id], 0)  # a rule that does nothing is not listed
    assert hub.faults.link_rows() == []


async def test_bandwidth_paces_bytes(cluster: Cluster) -> None:
    hub, peer, stream, _probe = await echo_pair(cluster, "hub")
    since = hub.journal.last_seq
    done = await apply(hub, LinkAction("bandwidth", (peer.node_id,), kib_per_s=64), principal=CI)
    assert done.ok and done.effect == "link_paced" and done.to_dict()["kib_per_s"] == 64
    injected, observed = (e for e in rows(hub, since) if e.table == "fault")
    assert (injected.fields["kib_per_s"], injected.fields["by"]) == (64, "ci")
    assert (observed.fields["effect"], observed.fields["reason"]) == ("link_paced", "rate=64KiB/s")
    chunk, count = b"z" * 8192, 16  # 128 KiB echoed back through a 64 KiB/s link
    start = time.monotonic()

    async def sender() -> None:
        for _ in range(count):
            await stream.send(7, chunk)

    task = asyncio.create_task(sender())
    for _ in range(count):
        frame = await asyncio.wait_for(stream.recv(), 60)
        assert frame is not None and frame.payload == chunk
    await task
    assert time.monotonic() - start >= count * len(chunk) / (64 * 1024)
    assert hub.faults.link_rows()[0]["kib_per_s"] == 64
    await hub.faults.heal([peer.node_id])
    assert hub.faults.link_rows() == []


async def test_refusals_change_nothing_and_journal_nothing(cluster: Cluster) -> None:
    hub = await cluster.start("hub", allow_faults=True)
    closed = await cluster.start("closed")  # no --allow-faults
    peer = await cluster.start("peer", bootstrap=bootstrap(hub))
    await wait_until(lambda: connected(hub, peer), 20, "peer connected")
    since = hub.journal.last_seq
    closed_since = closed.journal.last_seq

    disabled = await apply(closed, LinkAction("partition", (peer.node_id,)), principal=CI)
    assert disabled.refusal is Refusal.FAULTS_DISABLED
    with pytest.raises(FaultsDisabled):
        await closed.faults.heal()
    viewer = Principal("watcher", Role.VIEWER, "127.0.0.1:1")
    refused = await apply(hub, LinkAction("partition", (peer.node_id,)), principal=viewer)
    assert refused.refusal is Refusal.ROLE
    own = await apply(hub, LinkAction("delay", (hub.node_id,), ms=5), principal=CI)
    assert (own.refusal, own.field) == (Refusal.INVALID, "nodes")
    with pytest.raises(FaultInvalid) as bad:
        await hub.faults.delay([peer.node_id], 70_000)
    assert bad.value.field == "ms"

    assert hub.faults.link_rows() == [] and closed.faults.link_rows() == []
    assert connected(hub, peer)
    assert not [e for e in rows(hub, since) if e.table == "fault"]
    assert not [e for e in rows(closed, closed_since) if e.table == "fault"]


class Buffer:
    """An SSH channel's output, collected (what ``run_command`` writes to)."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


async def test_link_faults_as_ssh_script_commands(cluster: Cluster) -> None:
    """``fault partition|delay|bandwidth|heal NODE_ID... [k=v]`` and ``links`` over SSH go
    through the same control model as the API, as the key's principal."""
    hub = await cluster.start("hub", allow_faults=True)
    other = await cluster.start("other")
    alice = Principal("alice", Role.OPERATOR, "127.0.0.1:2222")
    viewer = Principal("bob", Role.VIEWER, "127.0.0.1:2222")

    async def ssh(command: str, who: Principal = alice) -> tuple[int, str, str]:
        out, err = Buffer(), Buffer()
        code = await run_command(hub, command, who, out, err)
        return code, out.data.decode(), err.data.decode()

    node = other.node_id.hex()
    code, out, _ = await ssh(f"fault delay {node} ms=150 jitter_ms=20")
    assert code == 0 and "link_delayed" in out
    code, out, _ = await ssh(f"fault bandwidth {node} kib_per_s=32")
    assert code == 0 and "link_paced" in out
    code, out, _ = await ssh("links")
    rule = {"node": node, "partitioned": False, "delay_ms": 150, "jitter_ms": 20, "kib_per_s": 32}
    assert code == 0 and orjson.loads(out) == {"links": [rule]}
    injected = [e for e in rows(hub) if (e.table, e.event) == ("fault", "injected")]
    assert {(e.fields["by"], e.fields["role"]) for e in injected} == {("alice", "operator")}

    since = hub.journal.last_seq
    code, _, err = await ssh(f"fault partition {node}", viewer)
    assert code == 1 and "refused (role)" in err
    code, _, err = await ssh(f"fault delay {node} ms=70000")
    assert code == 2 and err.startswith("zakura: ms:")
    code, _, err = await ssh(f"fault partition {hub.node_id.hex()}")
    assert code == 1 and "own id" in err
    assert not [e for e in rows(hub, since) if e.table == "fault"]
    code, out, _ = await ssh("fault heal")
    assert code == 0 and "links_healed (healed=1)" in out
    assert hub.faults.link_rows() == []
