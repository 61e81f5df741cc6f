"""Routine-level strand prevention (reference §6.4) and observability, on real nodes.

The sans-I/O rules are proven in ``test_peer_state.py`` / ``test_range_queue.py`` /
``test_commands.py``; these tests check that the async routine, the reactor and the transport
keep those promises together: a closed command channel ends the routine cleanly, a slow peer
does not wedge another, a cancelled routine gives its range back, and the trace and metrics
carry the reference's names.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from node_core.observe.trace import load_trace
from node_core.transport.routine import ExitCause

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from hskit import GreedyNonReader, bootstrap
from nodekit import Cluster, wait_until

pytestmark = pytest.mark.timeout(120)


async def test_a_closed_command_channel_ends_the_routine_cleanly(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        a = await cluster.start("a", blocks=10)
        b = await cluster.start("b", bootstrap=bootstrap(a), target_peers=1)
        await wait_until(lambda: b.chain.header_tip[0] == 10, 20, "synced")
        conn = a.transport.connection_for_label(b.label)
        assert conn is not None
        handle = conn.routine("header_sync")
        assert handle is not None
        routine = a.header_sync_service.routine_for(conn.peer.conn_id, handle.ctx.generation)
        assert routine is not None
        routine.sink.close()
        await wait_until(lambda: handle.exit is not None, 10, "routine exit")
        assert handle.exit is not None and handle.exit.cause is ExitCause.NORMAL
        # Only the service stopped: the connection and discovery carry on.
        assert not conn.closed
        discovery = conn.routine("discovery")
        assert discovery is not None and discovery.running
        await wait_until(lambda: b.label not in a.header_sync.peers, 10, "session dropped")
    finally:
        await cluster.stop()


async def test_a_peer_that_stops_reading_does_not_wedge_another(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        source = await cluster.start("source", blocks=3000, target_peers=2)
        greedy = GreedyNonReader(tip=0, requests=1500)
        await cluster.start(
            "greedy", bootstrap=bootstrap(source), extra_services=[greedy], target_peers=1
        )
        leecher = await cluster.start("leecher", bootstrap=bootstrap(source), target_peers=1)
        await wait_until(
            lambda: leecher.chain.header_tip == source.chain.header_tip, 60, "leecher synced"
        )
        assert await leecher.chain.check_consistency() == []
    finally:
        await cluster.stop()


async def test_a_cancelled_routine_returns_its_range(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        victim = await cluster.start("victim", blocks=100, allow_faults=True)
        silent = GreedyNonReader(tip=10_000, requests=0)
        peer = await cluster.start(
            "silent", bootstrap=bootstrap(victim), extra_services=[silent], target_peers=1
        )
        reactor = victim.header_sync
        label = peer.label
        await wait_until(
            lambda: label in reactor.peers and bool(reactor.peers[label].outstanding),
            20,
            "in flight to the silent peer",
        )
        old = reactor.peers[label].generation
        await victim.faults.disconnect(label)
        await wait_until(
            lambda: label not in reactor.peers or reactor.peers[label].generation != old,
            10,
            "the session ended",
        )
        assert any(r.start_height == 101 for r in reactor.queue.forward)
        for holders in reactor.queue.assigned.values():
            assert holders.get(label) != old
        assert reactor.queue.invariant_violations(reactor.live_generations()) == []
    finally:
        await cluster.stop()


async def test_trace_rows_and_metrics_use_the_reference_names(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        a = await cluster.start("a", blocks=1500, trace_dir=tmp_path / "trace-a")
        b = await cluster.start(
            "b", bootstrap=bootstrap(a), target_peers=1, trace_dir=tmp_path / "trace-b"
        )
        await wait_until(lambda: b.chain.header_tip[0] == 1500, 30, "synced")
        for node in (a, b):
            assert node.trace is not None
            node.trace.flush()
        rows_b = load_trace(tmp_path / "trace-b")["header_sync"]
        rows_a = load_trace(tmp_path / "trace-a")["header_sync"]
        events_b = {r["event"] for r in rows_b}
        assert {
            "header_status_sent",
            "header_status_received",
            "header_get_headers_sent",
            "header_headers_received",
            "header_range_committed",
        } <= events_b
        assert "header_headers_served" in {r["event"] for r in rows_a}
        first = next(r for r in rows_b if r["event"] == "header_range_committed")
        assert first["range_start"] == 1 and isinstance(first["range_count"], int)
        committed = sum(
            int(str(r["range_count"])) for r in rows_b if r["event"] == "header_range_committed"
        )
        assert committed == 1500
        keys = {frozenset(r) for r in rows_b if r["event"] == "header_get_headers_sent"}
        assert len(keys) == 1  # uniform rows: every reference key present, null when unset
        assert {"ts", "node", "event", "peer", "range_start", "range_count", "reason"} <= set(
            next(iter(keys))
        )

        text = b.metrics.render()[0].decode()
        for name in (
            "sync_header_request_sent_total",
            "sync_header_response_received_total",
            "sync_header_range_committed_total",
            "sync_header_peer_status_received_total",
            "sync_header_best_tip_height",
        ):
            assert name in text, name
        assert b.metrics.value("sync_header_best_tip_height") == 1500.0
        assert b.metrics.value("sync_header_headers_committed_total") == 1500.0
    finally:
        await cluster.stop()
