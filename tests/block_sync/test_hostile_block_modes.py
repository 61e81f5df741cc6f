"""Hostile block-sync peers (``--hostile-mode`` block modes) against an honest victim, on loopback.

Per mode: a victim that starts at genesis, the hostile node (its block sync replaced, its
header sync honest, so the victim syncs headers from it as from anyone) and an honest server,
all with the same seeded chain. The hostile node connects first, so it is certainly asked for
bodies before an honest server can serve everything; the honest server joins once the attack
was seen. Everything is asserted through what the victim exposes: its misbehavior records
(reason and action), its closed connections, its metrics, and at the end its chain (the
servers' verified tip, consistent), its work ledger (no invariant broken) and its byte budget
(empty). Waits are conditions with deadlines (``nodekit.wait_until``), never sleeps.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node_core.block_sync.core import SERVICE, BlockSyncConfig
from node_core.block_sync.hostile import (
    ALL_HOSTILE_MODES,
    ALL_MODE_HELP,
    BLOCK_HOSTILE_MODES,
    BLOCK_MODE_HELP,
    DEFAULT_HOSTILE_RATE,
    BlockHostileMode,
    HostileBlockSync,
    corrupt_body,
    parse_any_mode,
)
from node_core.block_sync.hostile import (
    SERVICE as HOSTILE_SERVICE,
)
from node_core.block_sync.service import BlockSyncService
from node_core.header_sync.hostile import HOSTILE_MODES, HostileMode
from node_core.node import Node, NodeConfig
from node_core.protocol.block_sync import BLOCK_SYNC_STREAM_KIND, DEFAULT_BLOCKS_PER_RESPONSE
from node_core.protocol.header_sync import HEADER_SYNC_STREAM_KIND
from node_core.transport.connection import Connection
from zakura.testnet import HOSTILE_LEAD_BLOCKS, Testnet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from nodekit import Cluster, wait_until

pytestmark = pytest.mark.timeout(90)

BLOCKS = 400
WAIT = 20.0
TIMED_OUT = "sync_block_request_timed_out_total"
NO_PROGRESS = "block_sync_no_block_progress"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.stop()


async def victim_and_hostile(
    cluster: Cluster, mode: BlockHostileMode, victim: BlockSyncConfig | None = None, **kw: Any
) -> tuple[Node, Node]:
    """A genesis victim and a hostile node with the chain that dials it."""
    v = await cluster.start(
        "victim", target_peers=4, block_sync=victim or BlockSyncConfig(), dial_interval=0.2
    )
    h = await cluster.start(
        "hostile",
        blocks=BLOCKS,
        target_peers=1,
        bootstrap=(("127.0.0.1", v.transport.listen_port),),
        hostile_mode=mode.value,
        **kw,
    )
    return v, h


async def honest_server(cluster: Cluster, victim: Node) -> Node:
    return await cluster.start(
        "server",
        blocks=BLOCKS,
        target_peers=2,
        bootstrap=(("127.0.0.1", victim.transport.listen_port),),
    )


def hostile_service(node: Node) -> HostileBlockSync:
    svc = node.registry.lookup(BLOCK_SYNC_STREAM_KIND)
    assert isinstance(svc, HostileBlockSync)
    return svc


def records(victim: Node, hostile: Node) -> list[tuple[str, str]]:
    """The victim's block-sync misbehavior records against ``hostile``: (reason, action)."""
    return [
        (r["reason"], r["action"])
        for r in victim.snapshot()["misbehavior"]
        if r["label"] == hostile.label and r["service"] == SERVICE
    ]


def all_records(victim: Node) -> list[tuple[str, str, str]]:
    return [(r["label"], r["service"], r["reason"]) for r in victim.snapshot()["misbehavior"]]


def closes(victim: Node, hostile: Node) -> list[str]:
    return [
        c["reason"] for c in victim.snapshot()["recently_closed"] if c["label"] == hostile.label
    ]


async def connected(victim: Node, peer: Node) -> Connection:
    await wait_until(
        lambda: victim.transport.connection_for_label(peer.label) is not None,
        WAIT,
        f"{peer.label} to connect",
    )
    conn = victim.transport.connection_for_label(peer.label)
    assert conn is not None
    return conn


async def synced(victim: Node, server: Node) -> None:
    """Wait for the victim to reach the server's verified tip, then check it end to end."""
    await wait_until(
        lambda: victim.chain.verified_tip == server.chain.verified_tip,
        WAIT * 2,
        "the victim to reach the servers' verified tip",
    )
    assert victim.chain.verified_tip[0] == BLOCKS
    assert await victim.chain.check_consistency() == []
    assert victim.block_sync.work.invariant_violations() == []
    assert victim.block_sync.budget.used == 0


# --------------------------------------------------------------------------- wiring


def test_block_modes_are_a_registry_of_their_own_that_never_clashes() -> None:
    assert set(BLOCK_MODE_HELP) == set(BlockHostileMode)
    assert tuple(m.value for m in BlockHostileMode) == BLOCK_HOSTILE_MODES
    assert not set(HOSTILE_MODES) & set(BLOCK_HOSTILE_MODES)
    assert (*HOSTILE_MODES, *BLOCK_HOSTILE_MODES) == ALL_HOSTILE_MODES
    assert list(ALL_MODE_HELP) == list(ALL_HOSTILE_MODES)
    assert parse_any_mode("silent") is HostileMode.SILENT
    assert parse_any_mode("silent-blocks") is BlockHostileMode.SILENT_BLOCKS
    with pytest.raises(ValueError, match="unknown hostile mode 'flood'") as info:
        parse_any_mode("flood")
    assert all(mode in str(info.value) for mode in ALL_HOSTILE_MODES)
    assert HOSTILE_SERVICE == SERVICE
    for attr in ("name", "kind", "version", "capability", "frame_cap", "message_rate"):
        assert getattr(HostileBlockSync, attr) == getattr(BlockSyncService, attr), attr
    body = b"\x01\x02\x03"
    assert corrupt_body(body) != body and len(corrupt_body(body)) == len(body)
    assert corrupt_body(b"") == b"\x00"


def test_a_block_mode_replaces_only_the_block_service(tmp_path: Path) -> None:
    node = Node(NodeConfig(data_dir=tmp_path / "h", hostile_mode="slow-blocks"))
    svc = hostile_service(node)
    assert svc.mode is BlockHostileMode.SLOW_BLOCKS
    assert svc.rate == DEFAULT_HOSTILE_RATE == 65536
    assert node.registry.lookup(HEADER_SYNC_STREAM_KIND) is node.header_sync_service
    assert [s.kind for s in node.registry.services].count(BLOCK_SYNC_STREAM_KIND) == 1
    rated = Node(
        NodeConfig(data_dir=tmp_path / "r", hostile_mode="slow-blocks", hostile_rate_bytes=1000)
    )
    assert hostile_service(rated).rate == 1000
    with pytest.raises(ValueError, match="hostile_rate_bytes"):
        NodeConfig(data_dir=tmp_path, hostile_mode="slow-blocks", hostile_rate_bytes=0)
    with pytest.raises(ValueError, match="unknown hostile mode 'flood'") as info:
        NodeConfig(data_dir=tmp_path, hostile_mode="flood")
    assert all(mode in str(info.value) for mode in ALL_HOSTILE_MODES)


# --------------------------------------------------------------------------- record-only


async def test_wrong_body_is_recorded_and_refetched_from_honest_peers(cluster: Cluster) -> None:
    victim, hostile = await victim_and_hostile(cluster, BlockHostileMode.WRONG_BODY)
    svc = hostile_service(hostile)
    conn = await connected(victim, hostile)
    await wait_until(
        lambda: ("invalid_block", "recorded") in records(victim, hostile),
        WAIT,
        "an invalid_block record",
    )
    assert svc.sent["wrong_body"] >= 1 and svc.sent["block"] == 0
    assert victim.chain.verified_tip[0] == 0  # nothing it sent was taken
    server = await honest_server(cluster, victim)
    await synced(victim, server)
    assert {reason for reason, _ in records(victim, hostile)} == {"invalid_block"}
    assert {action for _, action in records(victim, hostile)} == {"recorded"}
    assert victim.transport.connection_for_label(hostile.label) is conn and not conn.closed
    assert all(label == hostile.label for label, _, _ in all_records(victim))


async def test_unsolicited_blocks_are_recorded_unless_stale(cluster: Cluster) -> None:
    # A short look-ahead: heights far above the floor are not tracked yet, so a pushed tip
    # block is unsolicited; once synced every pushed block is at or below the floor (stale).
    victim, hostile = await victim_and_hostile(
        cluster, BlockHostileMode.UNSOLICITED_BLOCKS, BlockSyncConfig(lookahead_blocks=32)
    )
    svc = hostile_service(hostile)
    conn = await connected(victim, hostile)
    await wait_until(
        lambda: ("unsolicited_block", "recorded") in records(victim, hostile),
        WAIT,
        "an unsolicited_block record",
    )
    server = await honest_server(cluster, victim)
    await synced(victim, server)
    seen = len(records(victim, hostile))
    pushed = svc.sent["unsolicited_block"]
    await wait_until(
        lambda: svc.sent["unsolicited_block"] >= pushed + 3, WAIT, "three stale pushes"
    )
    assert len(records(victim, hostile)) == seen, "stale pushes must be ignored silently"
    assert set(records(victim, hostile)) == {("unsolicited_block", "recorded")}
    assert victim.transport.connection_for_label(hostile.label) is conn and not conn.closed
    assert victim.block_sync.budget.used == 0


async def test_the_blocks_done_ending_a_rejected_answer_is_not_unsolicited(
    cluster: Cluster,
) -> None:
    victim, hostile = await victim_and_hostile(cluster, BlockHostileMode.WRONG_BODY)
    per_request = DEFAULT_BLOCKS_PER_RESPONSE

    def routine() -> Any:
        return next(
            (r for r in victim.block_sync.routines.values() if r.label == hostile.label), None
        )

    # The probe answer: every body refused, then its BlocksDone (frames arrive in order).
    await wait_until(
        lambda: (
            records(victim, hostile).count(("invalid_block", "recorded")) >= per_request
            and (r := routine()) is not None
            and bool(r.asked)
            and not r.outstanding
            and hostile_service(hostile).sent.get("blocks_done", 0) >= 1
        ),
        WAIT,
        "the refused probe answer and its BlocksDone",
    )
    conn = await connected(victim, hostile)
    await wait_until(
        lambda: all(st.inbox_depth == 0 for st in conn.streams.values() if st.kind == 6),
        WAIT,
        "the victim read everything the hostile peer sent",
    )
    assert set(records(victim, hostile)) == {("invalid_block", "recorded")}


# --------------------------------------------------------------------------- timeouts


async def test_silent_peer_is_disconnected_once_liveness_passes(cluster: Cluster) -> None:
    """Liveness shorter than the request deadline: the probe request is still outstanding."""
    config = BlockSyncConfig(request_timeout=3.0, liveness_timeout=1.0)
    victim, hostile = await victim_and_hostile(cluster, BlockHostileMode.SILENT_BLOCKS, config)
    svc = hostile_service(hostile)
    await wait_until(
        lambda: any(NO_PROGRESS in r for r in closes(victim, hostile)),
        WAIT,
        "the victim to close the silent peer for no block progress",
    )
    assert records(victim, hostile)[0] == ("no_block_progress", "disconnected")
    assert {r for r, _ in records(victim, hostile)} == {"no_block_progress"}
    assert svc.sent == {"status": svc.sent["status"]} and svc.requests >= 1
    server = await honest_server(cluster, victim)
    await synced(victim, server)
    assert all(label == hostile.label for label, _, _ in all_records(victim))


async def test_silent_peer_times_out_then_is_disconnected_for_no_progress(
    cluster: Cluster,
) -> None:
    """The default shape (request deadline < liveness): time out, re-fetch, then disconnect.

    Needs a timeout to keep the liveness clock running: at the routine as committed before
    the current liveness work, a timeout disarmed liveness and the next probe re-armed it, so
    a silent peer was never disconnected with the default 8 s / 32 s.
    """
    config = BlockSyncConfig(request_timeout=0.5, liveness_timeout=1.5)
    victim, hostile = await victim_and_hostile(cluster, BlockHostileMode.SILENT_BLOCKS, config)
    server = await honest_server(cluster, victim)
    await wait_until(lambda: victim.metrics.value(TIMED_OUT) >= 1, WAIT, "a request timeout")
    await synced(victim, server)  # its heights were re-fetched from the honest server
    await wait_until(
        lambda: any(NO_PROGRESS in r for r in closes(victim, hostile)),
        4 * config.liveness_timeout + 2 * config.request_timeout,
        "the victim to close the silent peer for no block progress",
    )


async def test_slow_peer_is_used_little_and_never_blamed(cluster: Cluster) -> None:
    victim, hostile = await victim_and_hostile(cluster, BlockHostileMode.SLOW_BLOCKS)
    svc = hostile_service(hostile)
    assert svc.rate == 64 * 1024
    conn = await connected(victim, hostile)
    await wait_until(lambda: svc.requests >= 1, WAIT, "the slow peer to be asked")
    started = time.monotonic()
    server = await honest_server(cluster, victim)
    await synced(victim, server)
    elapsed = time.monotonic() - started
    assert svc.sent["block"] >= 1, "the slow peer served at least its probe"
    # Throttled: never meaningfully above the rate (one frame of slack at the start).
    assert svc.bytes_sent <= svc.rate * (elapsed + 1.0) + 64 * 1024
    assert all_records(victim) == []
    assert victim.metrics.value(TIMED_OUT) == 0
    assert victim.transport.connection_for_label(hostile.label) is conn and not conn.closed
    slow = accepted_by(victim, hostile)
    fast = accepted_by(victim, server)
    assert slow < fast, (slow, fast)


def accepted_by(victim: Node, peer: Node) -> int:
    """Blocks the victim accepted from ``peer`` over its live sessions."""
    return sum(
        r.accepted_blocks for r in victim.block_sync.routines.values() if r.label == peer.label
    )


# --------------------------------------------------------------------------- testnet


async def test_testnet_runs_a_hostile_block_server(tmp_path: Path) -> None:
    """A real testnet with one wrong-body node: an honest node records invalid_block."""
    net = Testnet(
        3,
        data_dir=tmp_path,
        api_base_port=0,
        blocks=300,
        hostile=1,
        hostile_mode="wrong-body",
        log_level="warning",
    )
    cmd = net.command(2, "127.0.0.1:1")
    assert cmd[cmd.index("--hostile-mode") + 1] == "wrong-body"
    # Node 0's chain and a lead only it can serve, so honest nodes must ask it for bodies.
    assert cmd[cmd.index("--blocks") + 1] == str(300 + HOSTILE_LEAD_BLOCKS)
    await net.start()
    try:
        hostile = net.nodes[2].label
        snap: dict[str, Any] | None = None

        def seen(s: dict[str, Any] | None) -> bool:
            return s is not None and any(
                m["label"] == hostile and m["reason"] == "invalid_block" for m in s["misbehavior"]
            )

        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while not seen(snap):
                assert time.monotonic() < deadline, "node 1 recorded no invalid_block"
                auth = {"Authorization": f"Bearer {net.nodes[1].token}"}
                url = f"http://{net.nodes[1].api}/api/v1/snapshot"
                async with http.get(url, headers=auth) as resp:
                    snap = await resp.json() if resp.status == 200 else None
                await asyncio.sleep(0.2)  # a poll interval, not a synchronisation
            assert snap is not None
            assert {m["action"] for m in snap["misbehavior"] if m["label"] == hostile} == {
                "recorded"
            }
    finally:
        await net.stop()
    assert "HOSTILE block sync (wrong-body)" in (tmp_path / "node-02" / "node.log").read_text()
