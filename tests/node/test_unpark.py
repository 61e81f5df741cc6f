"""Unpark (issue 15) on real nodes over loopback TCP: a parked peer's header sync serves again.

Parking keeps a peer's connection and drops its header-sync session until a new one starts
(§3.12); unpark starts that session on the same connection, so the node learns the headers the
peer announced while it was parked, from that peer. The tests drive the control model
(:func:`node_core.control.apply`, what the console and the API call) and read the node's
journal, queue and snapshot. Every wait is on a condition, with a timeout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from nodekit import Cluster, wait_until

from node_core.chain.interval_miner import Miner
from node_core.control import Action, Principal, Refusal, Role, apply
from node_core.node import Node
from node_core.observe.journal import JournalEvent
from node_core.transport.routine import RoutineState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "header_sync"))
from hskit import GreedyNonReader

pytestmark = pytest.mark.timeout(120)

OPERATOR = Principal("ci", Role.OPERATOR, "127.0.0.1:6666")
VIEWER = Principal("dashboards", Role.VIEWER, "127.0.0.1:5555")


def bootstrap(node: Node) -> tuple[tuple[str, int]]:
    return (("127.0.0.1", node.transport.listen_port),)


def rows(node: Node, since: int, label: str) -> list[JournalEvent]:
    return [e for e in node.journal.since(since, 100_000) if e.peer == label]


def header_sync_generation(node: Node, label: str) -> int:
    conn = node.transport.connection_for_label(label)
    assert conn is not None
    handle = conn.routine("header_sync")
    assert handle is not None
    return handle.ctx.generation


async def test_unpark_resumes_header_sync_on_the_same_connection(cluster: Cluster) -> None:
    source = await cluster.start("source", blocks=200, target_peers=1)
    victim = await cluster.start(
        "victim", allow_faults=True, bootstrap=bootstrap(source), target_peers=1
    )
    label, reactor = source.label, victim.header_sync
    await wait_until(lambda: victim.chain.header_tip[0] == 200, 30, "the victim synced")
    await wait_until(lambda: label in reactor.peers, 10, "the source has a session")
    conn = victim.transport.connection_for_label(label)
    assert conn is not None
    parked_gen = header_sync_generation(victim, label)

    parked = await apply(victim, Action("park", label), principal=OPERATOR)
    assert parked.ok and parked.effect == "service_parked", parked
    assert label in reactor.parked
    # While it is parked the source mines: its NewBlocks go to a stream nobody reads.
    miner = Miner(source, 3600.0, seed=7)
    for height in (201, 202, 203):
        block = await miner.mine_one()
        assert block is not None and block.height == height
        # The next block builds on this one once it is stored with its body.
        await wait_until(lambda h=height: source.chain.verified_tip[0] == h, 10, "block stored")
    assert source.chain.header_tip[0] == 203
    assert victim.chain.header_tip[0] == 200

    # A viewer may not; the peer stays parked.
    refused = await apply(victim, Action("unpark", label), principal=VIEWER)
    assert refused.refusal is Refusal.ROLE and label in reactor.parked

    since = victim.journal.last_seq
    source_since = source.journal.last_seq
    done = await apply(victim, Action("unpark", label), principal=OPERATOR)
    assert done.ok and done.effect == "service_resumed", done
    assert done.message.startswith(f"unpark the header_sync service of {label}: service_resumed")

    # The parked record is cleared, a new session runs on the same connection, and the
    # parked session's routine is shown as over, not as still parked.
    snap = victim.snapshot()
    assert label not in reactor.parked and snap["parked"] == []
    row = next(p for p in snap["peers"] if p["label"] == label)
    assert [
        (r["generation"], r["state"]) for r in row["routines"] if r["service"] == "header_sync"
    ][-2:] == [(parked_gen, "exited"), (header_sync_generation(victim, label), "running")]
    assert "parked" not in snap["routines_summary"]["header_sync"]
    assert victim.transport.connection_for_label(label) is conn and not conn.closed
    handle = conn.routine("header_sync")
    assert handle is not None and handle.state is RoutineState.RUNNING
    assert handle.ctx.generation != parked_gen
    assert done.reason == f"generation={handle.ctx.generation}"
    assert reactor.peers[label].generation == handle.ctx.generation

    # It serves again: the headers mined while it was parked arrive, from that peer.
    await wait_until(
        lambda: victim.chain.header_tip == source.chain.header_tip, 30, "the victim caught up"
    )
    assert reactor.queue.invariant_violations(reactor.live_generations()) == []
    assert not victim.misbehavior.records
    assert not [e for e in rows(victim, since, label) if e.table == "conn"]  # nothing closed

    # Journaled like every fault, with who asked; the old stream reset, a new one opened.
    journal = rows(victim, since, label)
    faults = [(e.event, e.fields.get("kind")) for e in journal if e.table == "fault"]
    assert faults == [("injected", "unpark"), ("observed", "unpark")]
    injected = next(e for e in journal if e.table == "fault" and e.event == "injected")
    assert injected.service == "header_sync"
    assert (injected.fields["by"], injected.fields["role"], injected.fields["remote"]) == (
        "ci",
        "operator",
        "127.0.0.1:6666",
    )
    observed = next(e for e in journal if e.table == "fault" and e.event == "observed")
    assert observed.fields["effect"] == "service_resumed"
    fid = injected.fields["fault_id"]
    resets = [e for e in journal if e.table == "stream" and e.event == "reset"]
    assert [e.fields["reason"] for e in resets] == [f"fault:{fid}:unpark"]
    assert any(e.table == "stream" and e.event == "opened" for e in journal)
    assert [
        e.fields["generation"] for e in journal if (e.table, e.event) == ("routine", "started")
    ] == [handle.ctx.generation]
    # The source saw its session end (normally: not a fault of either side) and a new one.
    ended = [
        e
        for e in rows(source, source_since, victim.label)
        if (e.table, e.event, e.service) == ("routine", "exited", "header_sync")
    ]
    assert ended and ended[0].fields["cause"] == "normal"
    assert ended[0].fields["reason"] == f"stream_reset:peer:fault:{fid}:unpark"

    # Unparking again: nothing is parked, so a refusal that says so, and nothing journaled.
    again_since = victim.journal.last_seq
    again = await apply(victim, Action("unpark", label), principal=OPERATOR)
    assert again.refusal is Refusal.NOT_PARKED and not again.ok
    assert again.message == f"peer {label}: header_sync is not parked (it is running)"
    assert not [e for e in victim.journal.since(again_since) if e.table == "fault"]
    # And the resumed session can be parked again like any other.
    reparked = await apply(victim, Action("park", label), principal=OPERATOR)
    assert reparked.ok and label in reactor.parked


async def test_ranges_returned_at_park_are_not_returned_again_by_unpark(cluster: Cluster) -> None:
    """A peer parked with a range in flight: the range went back once, at park; the unpark
    returns nothing more, and the new session asks the peer again under its own generation."""
    victim = await cluster.start("victim", blocks=100, allow_faults=True)
    silent = GreedyNonReader(tip=10_000, requests=0)
    peer = await cluster.start(
        "silent", bootstrap=bootstrap(victim), extra_services=[silent], target_peers=1
    )
    label, reactor = peer.label, victim.header_sync
    await wait_until(
        lambda: label in reactor.peers and bool(reactor.peers[label].outstanding),
        20,
        "the victim asked the silent peer for headers",
    )
    parked = await apply(victim, Action("park", label), principal=OPERATOR)
    assert parked.ok and parked.reason == "work_returned=1"
    record = reactor.parked[label]
    assert record.work_returned == 1
    conn = victim.transport.connection_for_label(label)
    assert conn is not None
    old = conn.routine("header_sync")
    assert old is not None
    await wait_until(lambda: old.exit is not None, 10, "the parked routine exited")
    queued = [(r.start_height, r.count) for r in reactor.queue.forward]
    assert any(start == 101 for start, _count in queued)
    assert reactor.queue.invariant_violations(reactor.live_generations()) == []

    done = await apply(victim, Action("unpark", label), principal=OPERATOR)
    assert done.ok, done
    new_gen = reactor.peers[label].generation
    assert new_gen != old.ctx.generation
    # Nothing was re-queued by the unpark itself: the queue holds what it held.
    assert [(r.start_height, r.count) for r in reactor.queue.forward] == queued
    # The new session asks the peer again (it still claims 10,000), under its generation only.
    await wait_until(
        lambda: bool(reactor.peers[label].outstanding), 20, "the resumed session asks again"
    )
    assert all(o.generation == new_gen for o in reactor.peers[label].outstanding)
    for peers in reactor.queue.assigned.values():
        assert peers.get(label, new_gen) == new_gen
    assert reactor.queue.invariant_violations(reactor.live_generations()) == []
    assert not victim.misbehavior.records
