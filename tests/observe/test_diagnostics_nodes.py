"""Each diagnostic triggered by a real fault on real nodes, and cleared once it is lifted.

Nodes run in this test's loop over loopback TCP, with short thresholds
(:class:`~node_core.observe.diagnostics.DiagnosticThresholds`, what ``--diag`` sets; the
command-line path itself is tested on node processes in ``test_diagnostics_cluster.py``).
Every fault goes through the node's fault injector, as the console's keys do. For each
diagnostic the test waits for it in the node's own evaluation, then checks that every
surface says the same: the snapshot's ``diagnostics``, the gauge
``zakura_diagnostic_active{id}``, the journal's ``diagnostic/started`` row (and, once the
fault is lifted, ``diagnostic/cleared``), and that the facts the node's evaluation reads from
its services are the ones its snapshot shows at that moment.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node_core.block_sync.core import BlockSyncConfig
from node_core.block_sync.work import MAX_ESTIMATE
from node_core.control import LOCAL_OPERATOR
from node_core.node import Node
from node_core.observe.diagnostic_facts import facts_from_snapshot
from node_core.observe.diagnostics import DiagnosticThresholds
from node_core.observe.diagnostics_task import node_facts
from node_core.observe.schema import validate_snapshot
from node_core.ssh.commands import run_command

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from nodekit import Cluster, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.stop()


#: Every threshold far away, so a test sees only the diagnostic it provokes.
QUIET = DiagnosticThresholds(
    stall_s=3600,
    parked_s=3600,
    queue_pct=100,
    loop_lag_ms=60_000,
    panics=10_000,
    behind_s=3600,
    budget_pct=100,
    budget_s=3600,
    floor_s=3600,
)


def quiet(**over: Any) -> DiagnosticThresholds:
    values: dict[str, Any] = {**QUIET.to_dict(), **over}
    values["panics"] = int(values["panics"])
    return DiagnosticThresholds(**values)


def bootstrap(*nodes: Node) -> tuple[tuple[str, int], ...]:
    return tuple(("127.0.0.1", n.transport.listen_port) for n in nodes)


def active(node: Node, diag: str, subject: str | None = None) -> bool:
    return any(
        d.id == diag and (subject is None or d.subject == subject) for d in node.diagnostics.active
    )


def journal_rows(node: Node, event: str, diag: str) -> list[Any]:
    return node.journal.find(
        lambda e: e.table == "diagnostic" and e.event == event and e.fields.get("id") == diag
    )


async def fires_everywhere(node: Node, diag: str, subject: str | None, timeout: float) -> None:
    """Wait for ``diag`` on ``node``, then check the snapshot, the gauge and the journal."""
    await wait_until(lambda: active(node, diag, subject), timeout, f"{diag} on {node.label}")
    # What the node's evaluation read of itself is what its snapshot shows (same moment).
    facts = node_facts(node)
    snap = validate_snapshot(node.snapshot())
    assert facts == facts_from_snapshot(snap)
    rows = [r for r in snap.get("diagnostics", []) if r["id"] == diag]
    assert rows and all(r["message"] for r in rows), snap.get("diagnostics")
    assert subject is None or subject in {r["subject"] for r in rows}
    assert node.metrics.value("zakura_diagnostic_active", id=diag) >= 1
    started = journal_rows(node, "started", diag)
    assert started and started[-1].fields["message"] == rows[-1]["message"]


async def clears_everywhere(node: Node, diag: str, timeout: float) -> None:
    """Wait until ``diag`` is no longer active, then check the gauge and the journal."""
    await wait_until(lambda: not active(node, diag), timeout, f"{diag} cleared on {node.label}")
    assert node.metrics.value("zakura_diagnostic_active", id=diag) == 0
    assert journal_rows(node, "cleared", diag), f"no diagnostic/cleared row for {diag}"
    assert all(r["id"] != diag for r in node.snapshot()["diagnostics"])


async def hub_and_leaf(
    cluster: Cluster, hub_diag: DiagnosticThresholds, **hub: Any
) -> tuple[Node, Node]:
    """A hub (faults allowed) with a chain and one leaf that synced it."""
    hub.setdefault("blocks", 20)
    a = await cluster.start("hub", allow_faults=True, diagnostics=hub_diag, **hub)
    b = await cluster.start("leaf", bootstrap=bootstrap(a), target_peers=1, diagnostics=QUIET)
    await wait_until(
        lambda: b.chain.verified_tip[0] >= hub["blocks"], 30, "the leaf synced the hub's chain"
    )
    await wait_until(lambda: services(a, b.label) >= {"header_sync", "block_sync"}, 10, "routines")
    return a, b


def services(node: Node, label: str) -> set[str]:
    return {
        r["service"]
        for p in node.snapshot()["peers"]
        if p["label"] == label
        for r in p["routines"]
        if r["state"] == "running"
    }


class _Out:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


async def ssh_diagnostics(node: Node) -> str:
    out, err = _Out(), _Out()
    assert await run_command(node, "diagnostics", LOCAL_OPERATOR, out, err) == 0, err.data
    return out.data.decode()


# ---------------------------------------------------------------------------------- tests


async def test_peer_parked_fires_and_clears_on_unpark(cluster: Cluster) -> None:
    hub, leaf = await hub_and_leaf(cluster, quiet(parked_s=1))
    assert (await ssh_diagnostics(hub)).startswith("no diagnostics: everything within")
    await hub.faults.park(leaf.label)
    await fires_everywhere(hub, "peer_parked", leaf.label, 15)
    line = await ssh_diagnostics(hub)
    assert line.startswith(f"warning\tpeer_parked\t{leaf.label}\t"), line
    await hub.faults.unpark(leaf.label)
    await clears_everywhere(hub, "peer_parked", 15)


async def test_a_stalled_header_sync_routine_and_its_full_queue(cluster: Cluster) -> None:
    """The miner's header-sync routine for the leaf stops taking commands: every mined block
    queues a NewBlock for it, nothing drains (routine_stalled), the queue fills
    (command_queue_full). When the stall ends the queue drains and both clear."""
    hub, leaf = await hub_and_leaf(cluster, quiet(stall_s=1, queue_pct=1), mine_interval=0.3)
    subject = f"{leaf.label} header_sync"
    await hub.faults.stall(leaf.label, "header_sync", seconds=8)
    await fires_everywhere(hub, "routine_stalled", subject, 15)
    await fires_everywhere(hub, "command_queue_full", leaf.label, 15)
    await clears_everywhere(hub, "routine_stalled", 30)
    await clears_everywhere(hub, "command_queue_full", 30)


async def test_panic_loop_fires_and_clears_after_the_window(cluster: Cluster) -> None:
    hub, leaf = await hub_and_leaf(cluster, quiet(panics=3, panic_window_s=10))
    for _ in range(3):
        await wait_until(lambda: "header_sync" in services(hub, leaf.label), 20, "reconnected")
        await hub.faults.panic(leaf.label, "header_sync")
    await fires_everywhere(hub, "panic_loop", leaf.label, 10)
    row = journal_rows(hub, "started", "panic_loop")[-1]
    assert "header_sync" in str(row.fields["message"])
    # No more panics: the oldest leaves the 10 s window and the count falls under 3.
    await clears_everywhere(hub, "panic_loop", 30)


async def test_loop_lag_high_fires_on_a_hog_and_clears(cluster: Cluster) -> None:
    node = await cluster.start("solo", diagnostics=quiet(loop_lag_ms=80))
    for _ in range(6):  # the fault: a synchronous hog holding the loop for 200 ms, 6 times
        seen = node.loop_lag.stats().samples
        time.sleep(0.2)  # noqa: ASYNC251 - blocking the loop is the fault under test
        await wait_until(lambda seen=seen: node.loop_lag.stats().samples > seen, 5, "a sample")
    await fires_everywhere(node, "loop_lag_high", "node", 10)
    assert journal_rows(node, "started", "loop_lag_high")[-1].fields["severity"] == "critical"
    # The hog is gone: its samples leave the 400-sample window (20 s) and p99 falls back.
    await clears_everywhere(node, "loop_lag_high", 60)


async def test_header_tip_behind_an_idle_peer_then_cleared(cluster: Cluster) -> None:
    """A hostile peer hands the victim a header whose body nobody has; the victim gives it
    up and refuses it, so the hostile peer still advertises one more header and sits idle
    (capped): the header tip is behind with an idle peer. Stopping the hostile node lifts it."""
    hub = await cluster.start("hub", blocks=10, diagnostics=QUIET)
    hostile = await cluster.start(
        "hostile",
        blocks=10,
        hostile_mode="header-without-body",
        bootstrap=bootstrap(hub),
        diagnostics=QUIET,
    )
    victim = await cluster.start(
        "victim",
        bootstrap=bootstrap(hub, hostile),
        target_peers=2,
        block_sync=BlockSyncConfig(body_unavailable_timeout=2.0),
        diagnostics=quiet(behind_s=1),
    )
    await fires_everywhere(victim, "header_tip_behind", "node", 60)
    await hostile.stop()
    await clears_everywhere(victim, "header_tip_behind", 30)


async def test_budget_saturated_while_the_store_is_locked(cluster: Cluster) -> None:
    """Another process holds the victim's database write lock mid-sync (a stuck disk, as far
    as the node can tell): bodies keep arriving and are held, the byte budget fills, nothing
    commits. Releasing the lock lets the committer through and the diagnostic clears."""
    hub = await cluster.start("hub", blocks=2000, diagnostics=QUIET)
    victim = await cluster.start(
        "victim",
        bootstrap=bootstrap(hub),
        target_peers=1,
        block_sync=BlockSyncConfig(max_inflight_bytes=MAX_ESTIMATE),
        diagnostics=quiet(budget_pct=90, budget_s=1),
    )
    await wait_until(lambda: victim.chain.verified_tip[0] >= 20, 30, "the sync under way")
    # Within the store's 10 s busy timeout, so the node's writer waits rather than fails.
    lock = sqlite3.connect(victim.chain.path, isolation_level=None, timeout=10)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        await fires_everywhere(victim, "budget_saturated", "block_sync", 8)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    await clears_everywhere(victim, "budget_saturated", 30)


async def test_window_floor_on_a_throttled_peer(cluster: Cluster) -> None:
    """The victim reads from its only block server at 8 KiB/s (about one body a second):
    its window shrinks to the floor with requests outstanding. Lifting the throttle lets
    the window grow again."""
    hub = await cluster.start("hub", blocks=400, diagnostics=QUIET)
    victim = await cluster.start(
        "victim",
        allow_faults=True,
        bootstrap=bootstrap(hub),
        target_peers=1,
        diagnostics=quiet(floor_s=1),
    )
    await wait_until(lambda: victim.chain.verified_tip[0] >= 5, 30, "the sync under way")
    await victim.faults.throttle(hub.label, 8 * 1024)
    await fires_everywhere(victim, "window_floor", hub.label, 90)
    await victim.faults.throttle(hub.label, None)
    await clears_everywhere(victim, "window_floor", 60)
