"""A healed partition is redialed at once, not when the backoff its refusals built up ends
(issue 12: heal -> converge must not wait out 30 s of bootstrap or 60 s of book backoff).

Real nodes on loopback. Nothing is timed: each test waits (on conditions, with deadlines) until
the refused dials have pushed the next one seconds away, reads that deadline from the dialer,
heals, and checks from the journal that the connection came back before it.
"""

from __future__ import annotations

import math
import time

from nodekit import Cluster, wait_until

from node_core.discovery.dialer import Dialer
from node_core.node import Node
from node_core.observe.journal import JournalEvent
from node_core.transport.links import LinkTable

LOCAL = "127.0.0.1"
#: How far off the next dial must be before we heal: far more than a loopback redial takes.
MARGIN = 5.0


def connected(a: Node, b: Node) -> bool:
    ab, ba = a.transport.peers.get(b.node_id), b.transport.peers.get(a.node_id)
    return ab is not None and ba is not None and not ab.closed and not ba.closed


def next_dial(node: Dialer, peer: bytes) -> float:
    """When ``node`` would next dial ``peer`` on its own: the earliest of its bootstrap
    redials not connected and the book entry's backoff (monotonic; ``-inf`` while a dial is
    under way, since its deadline is then already past)."""
    times = [s.next_attempt_mono for s in node.bootstrap if not s.connected]
    entry = node.book.get(peer)
    if entry is not None:
        times.append(max(entry.backoff_until, entry.short_lived_until))
    return min(times, default=math.inf)


def accepted_after(node: Node, peer: Node, since: int) -> list[JournalEvent]:
    return [
        e
        for e in node.journal.since(since, 100_000)
        if (e.table, e.event) == ("conn", "accepted") and e.peer == peer.label
    ]


async def heal_and_check(healer: Node, other: Node) -> None:
    """Wait until ``healer`` would not dial ``other`` for ``MARGIN`` seconds, heal, and check
    the connection is back before that deadline and the retry was journaled first."""
    dialer = healer.dialer
    await wait_until(
        lambda: next_dial(dialer, other.node_id) - time.monotonic() > MARGIN,
        30,
        f"refused dials to push the next one {MARGIN:g} s away",
    )
    deadline = next_dial(dialer, other.node_id)
    since = healer.journal.last_seq
    outcome = await healer.faults.heal([other.node_id])
    assert outcome.healed == (other.node_id,)
    await wait_until(lambda: connected(healer, other), 60, "reconnected after heal")
    rows = list(healer.journal.since(since, 100_000))
    retry = [e for e in rows if (e.table, e.event) == ("discovery", "dial.retry")]
    assert len(retry) == 1 and retry[0].fields["reason"] == "links_healed", retry
    back = accepted_after(healer, other, since)
    assert back and back[0].seq > retry[0].seq
    assert back[0].mono < deadline, "the reconnect waited for the old backoff"


async def test_a_healed_partition_redials_the_bootstrap_peer_at_once(cluster: Cluster) -> None:
    """The leaf partitions its bootstrap peer: its own redials are refused and back off."""
    hub = await cluster.start("hub", target_peers=0)  # never dials: only the leaf can
    leaf = await cluster.start(
        "leaf",
        allow_faults=True,
        bootstrap=((LOCAL, hub.transport.listen_port),),
        target_peers=1,
    )
    await wait_until(lambda: connected(hub, leaf), 20, "leaf connected")
    await leaf.faults.partition([hub.node_id])
    await heal_and_check(leaf, hub)
    # The bootstrap redial may lose the race to the candidate dialer (a duplicate, then a
    # retry), but it comes back to its connection with a backoff reset by the heal.
    state = leaf.dialer.bootstrap[0]
    await wait_until(lambda: state.connected, 20, "bootstrap state connected")
    assert state.backoff <= 4.0  # 16 before the heal


async def test_a_healed_partition_redials_a_book_peer_at_once(cluster: Cluster) -> None:
    """The hub partitions a node it only knows from its address book (no bootstrap)."""
    hub = await cluster.start("hub", allow_faults=True, target_peers=1)
    leaf = await cluster.start("leaf", target_peers=0)  # never dials: only the hub can
    await leaf.transport.dial(LOCAL, hub.transport.listen_port)
    await wait_until(lambda: leaf.node_id in hub.book, 20, "hub learned the leaf's record")
    await hub.faults.partition([leaf.node_id])
    await heal_and_check(hub, leaf)
    entry = hub.book.get(leaf.node_id)
    assert entry is not None and entry.failures == 0


def test_only_a_lifted_partition_calls_the_heal_listeners() -> None:
    table = LinkTable(1)
    calls: list[list[bytes]] = []
    table.on_heal.append(calls.append)
    a, b, c = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
    table.delay([a], 100)
    table.partition([b, c])
    table.bandwidth([c], 64)
    assert table.heal([a]) == [a] and calls == []  # a delay refused no dial
    assert table.heal([b]) == [b] and calls == [[b]]
    assert table.heal() == [c] and calls == [[b], [c]]
    assert table.heal() == [] and calls == [[b], [c]]  # nothing left: nobody called
