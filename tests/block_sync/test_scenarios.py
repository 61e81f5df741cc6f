"""Block-sync scenarios on real nodes (modelled on reference §6.5), each ending in the same
invariant check: the client reaches the servers' verified tip with a consistent store, every
height committed exactly once (the ledger is empty and balanced), peak reserved bytes within
the budget and peak outstanding requests within the advertised windows."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from bskit import Cluster, ScriptedServer, assert_synced_and_sound, bootstrap, wait_until

from node_core.block_sync.core import BlockSyncConfig
from node_core.chain.miner import ChainError, ChainReject, validate_header, validate_link
from node_core.chain.model import BlockHeader
from node_core.chain.pow import DEMO_BITS
from node_core.header_sync.hostile import HostileHeaderSync, HostileMode
from node_core.node import Node
from node_core.observe.journal import JournalEvent
from node_core.protocol.header_sync import HEADER_SYNC_STREAM_KIND

pytestmark = pytest.mark.timeout(180)

BLOCKS = 1500
#: A budget of 4 MiB forces the floor lane, shedding and back-pressure to do real work.
SMALL = BlockSyncConfig(max_inflight_bytes=4 * 1024 * 1024)


def no_disconnects(node: Node) -> list[str]:
    return [r.reason for r in node.misbehavior.records if r.action == "disconnected"]


async def servers(cluster: Cluster, n: int, blocks: int = BLOCKS) -> list[Node]:
    return [await cluster.start(f"s{i}", blocks=blocks, target_peers=6) for i in range(n)]


async def test_steady_three_fast_peers_small_budget(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        srv = await servers(cluster, 3)
        client = await cluster.start(
            "client", bootstrap=bootstrap(*srv), block_sync=SMALL, target_peers=3
        )
        await wait_until(lambda: client.chain.verified_tip[0] == BLOCKS, 90, "synced")
        await assert_synced_and_sound(client, srv[0])
        assert client.block_sync.sequencer.committed_total == BLOCKS  # each height once
        assert no_disconnects(client) == []
    finally:
        await cluster.stop()


async def test_one_slow_peer_with_two_fast_ones_converges(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        srv = await servers(cluster, 3)
        client = await cluster.start(
            "client", bootstrap=bootstrap(*srv), allow_faults=True, target_peers=3
        )
        await wait_until(lambda: len(client.block_sync.routines) == 3, 20, "three block peers")
        await client.faults.throttle(srv[0].label, 64 * 1024)
        await wait_until(lambda: client.chain.verified_tip[0] == BLOCKS, 120, "synced")
        await assert_synced_and_sound(client, srv[0])
        assert no_disconnects(client) == []  # zero protocol rejects
        slow = next(r for r in client.block_sync.routines.values() if r.label == srv[0].label)
        fast = [r for r in client.block_sync.routines.values() if r.label != srv[0].label]
        assert slow.accepted_blocks < max(f.accepted_blocks for f in fast)
    finally:
        await cluster.stop()


async def test_idle_peer_that_withholds_a_range(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        srv = await servers(cluster, 2)
        withholder = ScriptedServer(
            lambda m: "withhold" if 500 <= m.start_height <= 1000 else "serve"
        )
        idle = await cluster.start("idle", blocks=BLOCKS, extra_services=[withholder])
        withholder.node = idle
        client = await cluster.start(
            "client", bootstrap=bootstrap(idle, *srv), block_sync=SMALL, target_peers=3
        )
        await wait_until(lambda: client.chain.verified_tip[0] == BLOCKS, 90, "synced")
        await assert_synced_and_sound(client, srv[0])
        assert no_disconnects(client) == []
    finally:
        await cluster.stop()


async def test_a_silently_dropping_peer(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        srv = await servers(cluster, 2)
        rng = random.Random(7)
        dropper = ScriptedServer(lambda _m: "drop" if rng.random() < 0.5 else "serve")
        drop_node = await cluster.start("dropper", blocks=BLOCKS, extra_services=[dropper])
        dropper.node = drop_node
        client = await cluster.start("client", bootstrap=bootstrap(drop_node, *srv), target_peers=3)
        await wait_until(lambda: client.chain.verified_tip[0] == BLOCKS, 90, "synced")
        await assert_synced_and_sound(client, srv[0])
        assert dropper.requests, "the dropping peer was asked"
    finally:
        await cluster.stop()


async def test_a_fully_silent_unproven_peer_gets_one_request_then_is_rejected(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path)
    try:
        config = BlockSyncConfig(request_timeout=1.0, liveness_timeout=2.0)
        silent = ScriptedServer(lambda _m: "ignore")
        quiet = await cluster.start("silent", blocks=BLOCKS, extra_services=[silent])
        silent.node = quiet
        client = await cluster.start(
            "client", bootstrap=bootstrap(quiet), block_sync=config, target_peers=2
        )
        await wait_until(lambda: len(silent.requests) >= 1, 30, "the silent peer was asked")
        honest = await cluster.start("honest", blocks=BLOCKS, bootstrap=bootstrap(client))
        await wait_until(lambda: client.chain.verified_tip[0] == BLOCKS, 90, "synced")
        await wait_until(
            lambda: "no_block_progress" in no_disconnects(client), 30, "the silent peer rejected"
        )
        # Probe-first: in each session the unproven peer got one request, never a second.
        assert silent.by_conn and all(len(v) == 1 for v in silent.by_conn.values())
        await assert_synced_and_sound(client, honest)
    finally:
        await cluster.stop()


async def test_churn_storm(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        srv = await servers(cluster, 3)
        client = await cluster.start(
            "client",
            bootstrap=bootstrap(*srv),
            allow_faults=True,
            block_sync=SMALL,
            target_peers=3,
        )
        rng = random.Random(11)
        for _ in range(12):
            if client.chain.verified_tip[0] == BLOCKS:
                break
            await wait_until(lambda: len(client.transport.peers) >= 1, 30, "a peer")
            victim = rng.choice(list(client.transport.peers.connections()))
            progress = client.chain.verified_tip[0]
            await client.faults.disconnect(victim.peer.label)
            await wait_until(
                lambda p=progress: (
                    client.chain.verified_tip[0] > p or client.chain.verified_tip[0] == BLOCKS
                ),
                60,
                "progress after a disconnect",
            )
        await wait_until(lambda: client.chain.verified_tip[0] == BLOCKS, 120, "synced")
        await assert_synced_and_sound(client, srv[0])
    finally:
        await cluster.stop()


async def test_growing_chain(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        miner = await cluster.start("miner", blocks=BLOCKS, mine_interval=0.1, target_peers=3)
        client = await cluster.start("client", bootstrap=bootstrap(miner), target_peers=2)
        await wait_until(lambda: miner.chain.verified_tip[0] >= BLOCKS + 10, 60, "mining")
        target = miner.chain.verified_tip[0] + 5
        await wait_until(lambda: client.chain.verified_tip[0] >= target, 90, "caught up")
        assert await client.chain.check_consistency() == []
        assert client.block_sync.work.invariant_violations() == []
    finally:
        await cluster.stop()


async def test_trace_rows_and_metrics_use_the_reference_names(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        srv = await servers(cluster, 1, blocks=300)
        client = await cluster.start(
            "client", bootstrap=bootstrap(*srv), trace_dir=tmp_path / "trace", target_peers=1
        )
        await wait_until(lambda: client.chain.verified_tip[0] == 300, 60, "synced")
        await wait_until(
            lambda: client.metrics.value("sync_block_committed_total") == 300.0, 10, "metric"
        )
        assert client.trace is not None
        await wait_until(
            lambda: client.trace is not None and client.trace.written > 0, 10, "trace rows"
        )
        client.trace.flush()
        from node_core.observe.trace import load_trace

        rows = load_trace(tmp_path / "trace")["block_sync"]
        events = {r["event"] for r in rows}
        assert {
            "block_peer_connected",
            "block_status_received",
            "block_get_blocks_sent",
            "block_body_received",
            "block_apply_finished",
        } <= events
        received = [r for r in rows if r["event"] == "block_body_received"]
        assert sorted(int(str(r["height"])) for r in received) == list(range(1, 301))
        sent = next(r for r in rows if r["event"] == "block_get_blocks_sent")
        assert {"peer", "range_start", "range_count", "estimated_bytes", "floor_bypass"} <= set(
            sent
        )
        text = client.metrics.render()[0].decode()
        for name in (
            "sync_block_request_sent_total",
            "sync_block_body_received_total",
            "sync_block_fill_stop_total",
            "sync_block_committed_total",
            "sync_block_download_floor",
        ):
            assert name in text, name
        assert client.metrics.value("sync_block_body_received_total") == 300.0
    finally:
        await cluster.stop()


async def forked_node_dir(path: Path, common: int, branch: int) -> tuple[int, bytes]:
    """A data dir with the seed-1 chain to ``common`` then ``branch`` other blocks, bodies too."""
    from node_core.chain.chainstate import ChainState
    from node_core.chain.miner import pregenerate
    from node_core.chain.model import BlockHeader
    from node_core.observe.journal import Journal
    from node_core.protocol.limits import NetworkId

    state = ChainState(path, int(NetworkId.REGTEST), Journal("fork"))
    await state.open()
    try:
        await state.pregenerate(common, 1)
        parent_raw = await state.store.header_at(common)
        assert parent_raw is not None
        parent = BlockHeader.decode(parent_raw)
        blocks = list(pregenerate(NetworkId.REGTEST, branch, 99, parent=parent, avg_body=2048))
        await state.store.put_headers(
            common + 1, [(b.hash, b.header.prev_hash, b.header.encode()) for b in blocks]
        )
        await state.store.put_bodies([(b.height, b.body) for b in blocks])
        await state.refresh()
        assert state.verified_tip == state.header_tip
        return state.header_tip
    finally:
        await state.close()


async def test_a_reorg_to_a_longer_branch_resets_block_work_above_the_fork(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        srv = await servers(cluster, 1)
        client = await cluster.start("client", bootstrap=bootstrap(*srv), target_peers=3)
        await wait_until(lambda: client.chain.verified_tip[0] == BLOCKS, 60, "synced")
        fork_tip = await forked_node_dir(tmp_path / "fork", BLOCKS - 100, 200)
        fork = await cluster.start("fork", bootstrap=bootstrap(client), target_peers=3)
        await wait_until(lambda: client.chain.verified_tip == fork_tip, 90, "reorged and synced")
        assert client.chain.header_tip == fork_tip
        assert client.header_sync.index.reorgs >= 1
        assert client.block_sync.reset_epoch >= 1
        await assert_synced_and_sound(client, fork)
    finally:
        await cluster.stop()


# ------------------------------------------------------------------ forged headers (issue 16)
#: The client's ``body_unavailable_timeout`` in the forged-header scenarios (default 15 s).
GIVE_UP = 3.0
#: How long after its verified tip reached the servers' the client may take to give the
#: forged header up: the watchdog notices on its next tick (``tick_interval``, 1 s), waits
#: GIVE_UP, and acts on the tick after that; the rest is margin for a loaded machine.
GIVE_UP_BOUND = GIVE_UP + 2 * BlockSyncConfig().tick_interval + 10.0


def hostile_headers(node: Node) -> HostileHeaderSync:
    svc = node.registry.lookup(HEADER_SYNC_STREAM_KIND)
    assert isinstance(svc, HostileHeaderSync)
    return svc


async def header_at(node: Node, height: int) -> BlockHeader:
    raw = await node.chain.store.header_at(height)
    assert raw is not None
    return BlockHeader.decode(raw)


def header_commits_above(node: Node, height: int) -> list[JournalEvent]:
    """The node's header-sync commits that moved its stored header tip above ``height``."""
    return node.journal.find(
        lambda e: (
            e.table == "header_sync"
            and e.event == "committed"
            and int(str(e.fields["tip"])) > height
        )
    )


def header_sync_records(node: Node, peer: Node) -> set[tuple[str, str]]:
    """(reason, action) of ``node``'s header-sync misbehavior records against ``peer``."""
    return {
        (r["reason"], r["action"])
        for r in node.snapshot()["misbehavior"]
        if r["label"] == peer.label and r["service"] == "header_sync"
    }


async def forging_layout(cluster: Cluster, mode: HostileMode) -> tuple[list[Node], Node, Node]:
    """Two honest servers and a hostile node in ``mode``, all with the same BLOCKS-block chain
    (so the forged header sits at BLOCKS + 1), and a client at genesis that dials all three."""
    srv = await servers(cluster, 2)
    hostile = await cluster.start("hostile", blocks=BLOCKS, target_peers=6, hostile_mode=mode)
    client = await cluster.start(
        "client",
        bootstrap=bootstrap(*srv, hostile),
        block_sync=BlockSyncConfig(body_unavailable_timeout=GIVE_UP),
        target_peers=3,
    )
    return srv, hostile, client


async def test_a_header_whose_body_nobody_serves_is_given_up(tmp_path: Path) -> None:
    """Issue 16, defect 1: one peer hands out one valid header it never serves the body of.

    The client takes it (it is valid), syncs every body below it from the honest servers,
    finds nobody serves the forged one's, gives the header up after GIVE_UP and refuses it
    while the hostile node still advertises it: it ends on the servers' chain, sound.
    """
    cluster = Cluster(tmp_path)
    try:
        srv, hostile, client = await forging_layout(cluster, HostileMode.HEADER_WITHOUT_BODY)
        forged = await hostile_headers(hostile).forged_header()
        validate_link(await header_at(hostile, BLOCKS), forged, min_bits=DEMO_BITS)  # all valid
        await wait_until(
            lambda: (
                client.header_sync.index.tip_height == forged.height
                or bool(header_commits_above(client, BLOCKS))
            ),
            60,
            "the client to take the forged header",
        )
        assert hostile_headers(hostile).sent["forged_headers"] >= 1
        await wait_until(
            lambda: client.chain.verified_tip == srv[0].chain.verified_tip, 90, "bodies synced"
        )
        await wait_until(
            lambda: client.header_sync.abandoned >= 1,
            GIVE_UP_BOUND,
            f"the forged header given up within {GIVE_UP_BOUND:g} s",
        )
        await wait_until(
            lambda: client.chain.header_tip[0] == BLOCKS, 10, "the truncation to be durable"
        )
        assert client.header_sync.index.tip_height == BLOCKS
        [event] = client.journal.find(lambda e: e.table == "header_sync" and e.event == "abandoned")
        assert event.fields["height"] == forged.height
        assert event.fields["hash"] == forged.hash.hex()
        snap = client.snapshot()["header_sync"]
        assert snap["abandoned"] == 1
        assert [u["hash"] for u in snap["unavailable"]] == [forged.hash.hex()]
        # Still advertised by the hostile node (and by the servers until their own 15 s run
        # out: they relay headers, so they took it too), still refused: the header tip stays
        # on the last block with a body.
        assert client.chain.header_tip == client.chain.verified_tip
        await assert_synced_and_sound(client, srv[0])
        assert no_disconnects(client) == []
    finally:
        await cluster.stop()


async def test_a_header_stamped_before_its_parent_is_refused(tmp_path: Path) -> None:
    """Issue 16, defect 2: the forged header's time is 1000 s before its parent's.

    The client records invalid_range against the hostile node for every answer carrying it,
    never stores it (no header commit above the servers' tip, nothing to give up) and syncs
    from the honest servers.
    """
    cluster = Cluster(tmp_path)
    try:
        srv, hostile, client = await forging_layout(cluster, HostileMode.BACKWARDS_TIME)
        forged = await hostile_headers(hostile).forged_header()
        parent = await header_at(hostile, BLOCKS)
        with pytest.raises(ChainError) as refused:
            validate_link(parent, forged, min_bits=DEMO_BITS)
        assert refused.value.reason is ChainReject.TIME_BEFORE_PARENT
        assert forged.time == parent.time - 1000
        # Nothing else is wrong with it: height, link, version, difficulty, proof of work.
        assert (forged.height, forged.prev_hash) == (BLOCKS + 1, parent.hash)
        validate_header(forged, min_bits=DEMO_BITS)
        await wait_until(
            lambda: ("invalid_range", "recorded") in header_sync_records(client, hostile),
            60,
            "invalid_range recorded against the hostile node",
        )
        assert hostile_headers(hostile).sent["forged_headers"] >= 1
        # Refused by a consensus rule, not for failing to link or decode.
        assert client.metrics.value("sync_header_range_rejected_total", stage="stateless") >= 1
        await wait_until(
            lambda: client.chain.verified_tip == srv[0].chain.verified_tip, 90, "bodies synced"
        )
        assert client.header_sync.index.tip_height == BLOCKS
        assert client.chain.header_tip == client.chain.verified_tip
        assert header_commits_above(client, BLOCKS) == []
        assert client.header_sync.abandoned == 0
        assert header_sync_records(client, hostile) == {("invalid_range", "recorded")}
        await assert_synced_and_sound(client, srv[0])
        assert no_disconnects(client) == []
    finally:
        await cluster.stop()
