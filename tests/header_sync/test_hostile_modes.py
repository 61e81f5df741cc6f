"""Hostile header-sync peers (``--hostile-mode``) against an honest victim, on loopback.

One real victim node and one real hostile node bootstrapped to it, per mode. Everything is
asserted through what the victim exposes: its misbehavior records (reason and action), whether
the connection to the hostile node survives (same connection object, still open) or is closed
with the violation as reason, its header-sync metrics, its range queue and its snapshot. Waits
are conditions with deadlines (``nodekit.wait_until``), never sleeps.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node_core.header_sync.entries import SERVICE, HeaderSyncConfig
from node_core.header_sync.hostile import (
    HOSTILE_MODES,
    MODE_HELP,
    HostileHeaderSync,
    HostileMode,
)
from node_core.header_sync.service import HeaderSyncService
from node_core.node import Node, NodeConfig
from node_core.protocol.header_sync import HEADER_SYNC_STREAM_KIND
from node_core.transport.connection import Connection

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from nodekit import Cluster, wait_until

pytestmark = pytest.mark.timeout(60)

#: The chain the side that is ahead pre-generates.
BLOCKS = 300
WAIT = 10.0
TIMED_OUT = "sync_header_request_timed_out_total"
TIMEOUT_DROPPED = "sync_header_request_timeout_dropped_total"
#: A victim that times requests out after 1 s and checks every 0.1 s, so a hostile delay of
#: 2 s is unambiguously late (the late answer can never race the timeout check).
QUICK = HeaderSyncConfig(request_timeout=1.0, tick_interval=0.1)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.stop()


async def pair(
    cluster: Cluster,
    mode: HostileMode,
    *,
    victim_blocks: int = 0,
    hostile_blocks: int = 0,
    victim: dict[str, Any] | None = None,
    **hostile: Any,
) -> tuple[Node, Node]:
    """A victim and a hostile node that dials it (each keeps exactly that one connection)."""
    v = await cluster.start("victim", blocks=victim_blocks, target_peers=1, **(victim or {}))
    h = await cluster.start(
        "hostile",
        blocks=hostile_blocks,
        target_peers=1,
        bootstrap=(("127.0.0.1", v.transport.listen_port),),
        hostile_mode=mode.value,
        **hostile,
    )
    return v, h


def hostile_service(node: Node) -> HostileHeaderSync:
    svc = node.registry.lookup(HEADER_SYNC_STREAM_KIND)
    assert isinstance(svc, HostileHeaderSync)
    return svc


def records(victim: Node, hostile: Node) -> list[tuple[str, str]]:
    """The victim's header-sync misbehavior records against ``hostile``: (reason, action)."""
    return [
        (r["reason"], r["action"])
        for r in victim.snapshot()["misbehavior"]
        if r["label"] == hostile.label and r["service"] == SERVICE
    ]


def closes(victim: Node, hostile: Node) -> list[str]:
    """Reasons of the victim's recently closed connections to ``hostile``."""
    return [
        c["reason"] for c in victim.snapshot()["recently_closed"] if c["label"] == hostile.label
    ]


def hs_view(victim: Node, hostile: Node) -> dict[str, Any] | None:
    """The victim's header-sync routine view of its session with ``hostile`` (snapshot)."""
    for peer in victim.snapshot()["peers"]:
        if peer["label"] != hostile.label:
            continue
        for routine in peer["routines"]:
            if routine["service"] == SERVICE and "header_sync" in routine:
                view: dict[str, Any] = routine["header_sync"]
                return view
    return None


async def connected(victim: Node, hostile: Node) -> Connection:
    await wait_until(
        lambda: victim.transport.connection_for_label(hostile.label) is not None,
        WAIT,
        "the hostile node to connect",
    )
    conn = victim.transport.connection_for_label(hostile.label)
    assert conn is not None
    return conn


def still_connected(victim: Node, hostile: Node, conn: Connection) -> None:
    assert victim.transport.connection_for_label(hostile.label) is conn
    assert not conn.closed
    assert victim.snapshot()["parked"] == []


# --------------------------------------------------------------------------- wiring


def test_hostile_service_is_a_drop_in_for_the_honest_one() -> None:
    for attr in ("name", "kind", "version", "capability", "frame_cap", "message_rate"):
        assert getattr(HostileHeaderSync, attr) == getattr(HeaderSyncService, attr), attr
    assert set(MODE_HELP) == set(HostileMode)
    assert tuple(m.value for m in HostileMode) == HOSTILE_MODES


def test_node_config_rejects_an_unknown_mode_naming_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown hostile mode 'flood'") as info:
        NodeConfig(data_dir=tmp_path, hostile_mode="flood")
    assert all(mode in str(info.value) for mode in HOSTILE_MODES)
    with pytest.raises(ValueError, match="hostile_delay"):
        NodeConfig(data_dir=tmp_path, hostile_mode="slow-responder", hostile_delay=-1.0)


def test_hostile_mode_replaces_the_honest_service(tmp_path: Path) -> None:
    honest = Node(NodeConfig(data_dir=tmp_path / "honest"))
    assert honest.registry.lookup(HEADER_SYNC_STREAM_KIND) is honest.header_sync_service
    node = Node(NodeConfig(data_dir=tmp_path / "h", hostile_mode="silent", hostile_delay=2.0))
    svc = hostile_service(node)
    assert svc.mode is HostileMode.SILENT
    assert svc.delay == 2.0
    assert [s.kind for s in node.registry.services].count(HEADER_SYNC_STREAM_KIND) == 1


# --------------------------------------------------------------------------- record-only


async def test_status_spam_is_recorded_and_the_connection_kept(cluster: Cluster) -> None:
    victim, hostile = await pair(cluster, HostileMode.STATUS_SPAM, victim_blocks=BLOCKS)
    conn = await connected(victim, hostile)
    await wait_until(lambda: len(records(victim, hostile)) >= 5, WAIT, "five status_spam records")
    assert set(records(victim, hostile)) == {("status_spam", "recorded")}
    assert hostile_service(hostile).sent["status"] >= 6  # the first Status was applied
    still_connected(victim, hostile, conn)


async def test_early_get_headers_is_recorded_and_the_connection_kept(cluster: Cluster) -> None:
    victim, hostile = await pair(cluster, HostileMode.EARLY_GET_HEADERS, victim_blocks=BLOCKS)
    conn = await connected(victim, hostile)
    await wait_until(
        lambda: len(records(victim, hostile)) >= 3, WAIT, "three get_headers_spam records"
    )
    assert set(records(victim, hostile)) == {("get_headers_spam", "recorded")}
    sent = hostile_service(hostile).sent
    assert sent["status"] == 0 and sent["get_headers"] >= 3
    still_connected(victim, hostile, conn)


# --------------------------------------------------------------------------- disconnect


async def test_unsolicited_headers_disconnect(cluster: Cluster) -> None:
    victim, hostile = await pair(cluster, HostileMode.UNSOLICITED_HEADERS, victim_blocks=BLOCKS)
    await wait_until(
        lambda: any("unsolicited_headers" in r for r in closes(victim, hostile)),
        WAIT,
        "the victim to close the hostile connection for unsolicited_headers",
    )
    assert records(victim, hostile)[0] == ("unsolicited_headers", "disconnected")
    assert {reason for reason, _ in records(victim, hostile)} == {"unsolicited_headers"}
    assert victim.chain.header_tip[0] == BLOCKS  # nothing it sent was taken


async def test_malformed_headers_disconnect(cluster: Cluster) -> None:
    victim, hostile = await pair(cluster, HostileMode.MALFORMED_HEADERS, hostile_blocks=BLOCKS)
    await wait_until(
        lambda: any("malformed_message" in r for r in closes(victim, hostile)),
        WAIT,
        "the victim to close the hostile connection for malformed_message",
    )
    assert records(victim, hostile)[0] == ("malformed_message", "disconnected")
    assert {reason for reason, _ in records(victim, hostile)} == {"malformed_message"}
    assert hostile_service(hostile).sent["malformed_headers"] >= 1
    assert victim.chain.header_tip[0] == 0


# --------------------------------------------------------------------------- timeouts


async def test_slow_responder_times_out_and_the_late_answer_is_absorbed(
    cluster: Cluster,
) -> None:
    victim, hostile = await pair(
        cluster,
        HostileMode.SLOW_RESPONDER,
        hostile_blocks=BLOCKS,
        victim={"header_sync": QUICK},
        hostile_delay=2.0,
    )
    svc = hostile_service(hostile)
    conn = await connected(victim, hostile)
    await wait_until(lambda: victim.metrics.value(TIMED_OUT) >= 1, WAIT, "a request timeout")
    # The range went back to the queue; the routine dropped the expectation and holds a credit.
    assert any(r.start_height == 1 for r in victim.header_sync.queue.forward)
    assert victim.snapshot()["header_sync"]["range_queue"]["forward"] >= 1
    await wait_until(
        lambda: victim.metrics.value(TIMEOUT_DROPPED) >= 1, WAIT, "DropExpectation applied"
    )
    view = hs_view(victim, hostile)
    assert view is not None and view["in_flight"] is None
    assert svc.sent["headers"] == 0, "the answer must come after the timeout"
    assert view["tolerance"] >= 1

    # The late answer arrives and is absorbed by the credit: no misbehavior, no disconnect.
    await wait_until(lambda: svc.sent["headers"] >= 1, WAIT, "the late answer")
    await wait_until(
        lambda: (v := hs_view(victim, hostile)) is not None and v["tolerance"] == 0,
        WAIT,
        "the late answer to use up the tolerance credit",
    )
    assert records(victim, hostile) == []
    assert victim.chain.header_tip[0] == 0  # a timed-out answer is never applied
    still_connected(victim, hostile, conn)


async def test_silent_peer_times_out_but_is_never_parked_or_disconnected(
    cluster: Cluster,
) -> None:
    victim, hostile = await pair(
        cluster, HostileMode.SILENT, hostile_blocks=BLOCKS, victim={"header_sync": QUICK}
    )
    conn = await connected(victim, hostile)
    await wait_until(lambda: victim.metrics.value(TIMED_OUT) >= 1, WAIT, "a request timeout")
    assert any(r.start_height == 1 for r in victim.header_sync.queue.forward)
    # Outlive the timeout several times over: still the same connection, nothing recorded.
    await wait_until(lambda: conn.age >= 3 * QUICK.request_timeout, WAIT, "the connection age")
    assert records(victim, hostile) == []
    assert hostile_service(hostile).sent == {"status": 1}
    still_connected(victim, hostile, conn)
    assert victim.chain.header_tip[0] == 0


async def test_slow_responder_serves_correct_headers_when_patience_allows(
    cluster: Cluster,
) -> None:
    """The same mode with a delay under the victim's timeout: its answers are real headers."""
    victim, hostile = await pair(
        cluster,
        HostileMode.SLOW_RESPONDER,
        hostile_blocks=BLOCKS,
        victim={"header_sync": HeaderSyncConfig(request_timeout=5.0)},
        hostile_delay=0.2,
    )
    await wait_until(
        lambda: victim.chain.header_tip == hostile.chain.header_tip, WAIT, "the victim to sync"
    )
    assert victim.chain.header_tip[0] == BLOCKS
    assert victim.metrics.value(TIMED_OUT) == 0
    assert records(victim, hostile) == []
