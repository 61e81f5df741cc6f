"""Parking the natural way, and panics injected into the routine, on real nodes on loopback.

The peer under test runs a stand-in header-sync (it replaces the real one on kind 5 through
the node's extra-service seam) so it can misbehave in exactly one way: claim a high tip, flood
GetHeaders and never read. Everything on the victim side is the real service.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from node_core.header_sync.entries import HeaderSyncConfig
from node_core.node import Node
from node_core.transport.routine import RoutineState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from hskit import GreedyNonReader, bootstrap
from nodekit import Cluster, wait_until

pytestmark = pytest.mark.timeout(120)


async def test_a_peer_that_stops_reading_while_we_serve_it_is_parked(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        victim = await cluster.start("victim", blocks=2000)
        greedy = GreedyNonReader(tip=50_000, requests=1_500)
        peer = await cluster.start(
            "greedy", bootstrap=bootstrap(victim), extra_services=[greedy], target_peers=1
        )
        label = peer.label

        await wait_until(lambda: label in victim.header_sync.parked, 60, "the peer is parked")
        record = victim.header_sync.parked[label]
        assert record.reason == "headers_response_undeliverable"
        # The victim had asked this peer for headers (it claims 50,000): that work came back.
        assert record.work_returned >= 1
        queue = victim.header_sync.queue
        assert any(r.start_height == 2001 for r in queue.forward)
        assert all(label not in peers for peers in queue.assigned.values())
        assert queue.invariant_violations(victim.header_sync.live_generations()) == []

        conn = victim.transport.connection_for_label(label)
        assert conn is not None and not conn.closed
        hs = conn.routine("header_sync")
        assert hs is not None
        await wait_until(lambda: hs.exit is not None, 10, "the parked routine exited")
        assert hs.state is RoutineState.PARKED
        discovery = conn.routine("discovery")
        assert discovery is not None and discovery.running

        events = [(e.table, e.event) for e in victim.journal.since(0, 100_000) if e.peer == label]
        assert ("header_sync", "parked") in events
        snap = victim.snapshot()
        parked = [p for p in snap["parked"] if p["label"] == label]
        assert parked and parked[0]["service"] == "header_sync"
        assert parked[0]["work_returned"] == record.work_returned
        row = next(p for p in snap["peers"] if p["label"] == label)
        states = {r["service"]: r["state"] for r in row["routines"]}
        assert states == {
            "discovery": "running",
            "header_sync": "parked",
            "block_sync": "running",
        }
        assert victim.metrics.value("sync_header_peer_command_park_total") == 1.0
        # Parking is not misbehavior: nothing was recorded against the peer for it. (On a
        # loaded machine its requests can outrun our 10 serving slots: record-only spam.)
        against = [r for r in victim.misbehavior.records if r.label == label]
        assert all(r.reason == "get_headers_spam" and r.action == "recorded" for r in against)
    finally:
        await cluster.stop()


async def test_operator_park_returns_work_and_keeps_the_connection(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        victim = await cluster.start("victim", blocks=100, allow_faults=True)
        silent = GreedyNonReader(tip=10_000, requests=0)
        peer = await cluster.start(
            "silent", bootstrap=bootstrap(victim), extra_services=[silent], target_peers=1
        )
        label = peer.label
        reactor = victim.header_sync
        await wait_until(
            lambda: label in reactor.peers and bool(reactor.peers[label].outstanding),
            20,
            "the victim asked the silent peer for headers",
        )
        outcome = await victim.faults.park(label)
        assert outcome.effect == "service_parked"
        assert outcome.reason == "work_returned=1"
        assert label in reactor.parked and label not in reactor.peers
        assert any(r.start_height == 101 for r in reactor.queue.forward)
        assert reactor.queue.invariant_violations(reactor.live_generations()) == []
        conn = victim.transport.connection_for_label(label)
        assert conn is not None and not conn.closed
        # Disconnecting clears the parked record: there is no service left to describe.
        await victim.faults.disconnect(label)
        await wait_until(lambda: label not in reactor.parked, 10, "parked record cleared")
    finally:
        await cluster.stop()


async def _panic_and_check(victim: Node, label: str, when: str) -> None:
    reactor = victim.header_sync
    conn = victim.transport.connection_for_label(label)
    assert conn is not None
    old = reactor.peers[label].generation
    outcome = await victim.faults.panic(label, "header_sync")
    assert outcome.effect == "routine_panicked,connection_closed", when
    # The peer may redial at once; what matters is that the panicked session is gone.
    await wait_until(
        lambda: label not in reactor.peers or reactor.peers[label].generation != old,
        10,
        f"{when}: panicked session dropped",
    )
    await wait_until(lambda: not reactor._lifecycle, 10, f"{when}: lifecycle drained")
    violations = reactor.queue.invariant_violations(reactor.live_generations())
    assert violations == [], f"{when}: {violations}"
    for rng in reactor.queue.forward:
        # Every range is queued, assigned to a live peer under its generation, or covered.
        assert not reactor.queue.is_covered(rng) or rng.peer is not None, when


@pytest.mark.parametrize("point", ["idle", "holding_in_flight", "stalled", "pending_write"])
async def test_panic_at_each_injection_point_strands_no_work(tmp_path: Path, point: str) -> None:
    """Inject at each await the routine has; then the invariant check and the same tip."""
    cluster = Cluster(tmp_path)
    try:
        config = HeaderSyncConfig(request_timeout=60.0)
        victim_kwargs: dict[str, Any] = {
            "allow_faults": True,
            "header_sync": config,
            "target_peers": 3,
        }
        if point == "pending_write":
            victim_kwargs["blocks"] = 1500
        victim = await cluster.start("victim", **victim_kwargs)
        if point in ("holding_in_flight", "pending_write"):
            greedy = GreedyNonReader(tip=100_000, requests=600 if point == "pending_write" else 0)
            other = await cluster.start(
                "other", bootstrap=bootstrap(victim), extra_services=[greedy], target_peers=1
            )
            label = other.label
            reactor = victim.header_sync
            if point == "holding_in_flight":
                await wait_until(
                    lambda: label in reactor.peers and bool(reactor.peers[label].outstanding),
                    20,
                    "in flight to the peer",
                )
            else:
                routine = victim.header_sync_service
                await wait_until(
                    lambda: (
                        any(
                            r.pending_write is not None
                            for (_, _), r in routine.routines.items()
                            if r.ctx.peer.label == label
                        )
                        or label in reactor.parked
                    ),
                    30,
                    "a Headers answer waits for send space",
                )
                if label in reactor.parked:
                    pytest.skip("the peer was parked before the panic could land")
        else:
            other = await cluster.start("other", bootstrap=bootstrap(victim), target_peers=1)
            label = other.label
            await wait_until(
                lambda: victim.transport.connection_for_label(label) is not None, 10, "connected"
            )
            if point == "stalled":
                await victim.faults.stall(label, seconds=60)
        await _panic_and_check(victim, label, point)
        # The node still reaches the network's tip afterwards, from an honest source.
        source = await cluster.start("source", blocks=1500, bootstrap=bootstrap(victim))
        await wait_until(
            lambda: victim.chain.header_tip[0] >= 1500, 30, f"{point}: victim reached the tip"
        )
        assert victim.chain.header_tip == source.chain.header_tip
        assert victim.metrics.value("zakura_pipe_panic_total", service="header_sync") == 1.0
    finally:
        await asyncio.wait_for(cluster.stop(), 30)
