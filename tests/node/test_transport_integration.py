"""Transport behaviour between real nodes on loopback."""

from __future__ import annotations

import asyncio

import pytest
from nodekit import Cluster, ProbeService, wait_until

from node_core.discovery.service import DiscoveryConfig
from node_core.observe.trace import load_trace
from node_core.transport.config import TransportConfig
from node_core.transport.endpoint import DialError
from node_core.transport.stream import SendResult

LOCAL = "127.0.0.1"


async def test_stalled_stream_does_not_stall_its_neighbour(cluster: Cluster) -> None:
    """A routine that stops reading stalls only its own stream (per-stream credit)."""

    def services() -> list[ProbeService]:
        return [
            ProbeService("sink", 201, 1 << 9, stall=True),
            ProbeService("echo", 202, 1 << 10),
        ]

    a_services, b_services = services(), services()
    a = await cluster.start("a", extra_services=a_services)
    b = await cluster.start("b", extra_services=b_services)
    await b.transport.dial(LOCAL, a.transport.listen_port)
    await wait_until(
        lambda: a.node_id in b_services[0].streams and a.node_id in b_services[1].streams
    )
    sink = b_services[0].streams[a.node_id]
    echo = b_services[1].streams[a.node_id]
    # Fill the sink stream until the sender is refused with the window exhausted and the
    # bounded outbound queue full. Queued frames leave (and spend credit) when the connection
    # flushes at the end of a loop iteration, so fill, let it flush, and fill again.
    payload = b"x" * 16 * 1024
    sent = 0
    deadline = asyncio.get_running_loop().time() + 15.0
    while True:
        while sink.try_send(1, payload) is SendResult.OK:
            sent += 1
            assert sent < 10_000, "the stalled stream never pushed back"
        if sink.send_credit.available < len(payload) + 8:
            break
        assert asyncio.get_running_loop().time() < deadline, "the window was never spent"
        await asyncio.sleep(0.01)  # one flush of the connection's output
    assert sink.try_send(1, payload) is SendResult.FULL
    # The neighbour stream on the same connection still round-trips.
    for i in range(50):
        await echo.send(7, f"ping {i}".encode())
        frame = await asyncio.wait_for(echo.recv(), 5.0)
        assert frame is not None and frame.payload == f"ping {i}".encode()
    assert a_services[1].echoed == 50
    # Memory on the stalled side is bounded by the window.
    a_sink = a.transport.peers.get(b.node_id)
    assert a_sink is not None
    stalled = next(s for s in a_sink.streams.values() if s.kind == 201)
    assert stalled.recv_window.outstanding <= stalled.recv_window.window


async def test_duplicate_dial_keeps_one_connection(cluster: Cluster) -> None:
    a = await cluster.start("a", target_peers=0)
    b = await cluster.start("b", target_peers=0)
    first = await b.transport.dial(LOCAL, a.transport.listen_port)
    try:
        second = await b.transport.dial(LOCAL, a.transport.listen_port)
    except DialError as exc:
        assert exc.reason == "duplicate"
        survivor = first
    else:
        # The newcomer had the smaller transcript hash and replaced the incumbent.
        survivor = second
        await wait_until(lambda: first.closed, what="incumbent closed")
    await wait_until(lambda: len(a.transport.peers) == 1 and len(b.transport.peers) == 1)
    assert b.transport.peers.get(a.node_id) is survivor
    assert not survivor.closed
    await wait_until(
        lambda: (
            a.metrics.value("zakura_p2p_handshake_duplicate_total")
            + a.metrics.value("zakura_p2p_handshake_upgraded_total")
            + b.metrics.value("zakura_p2p_handshake_duplicate_total")
            + b.metrics.value("zakura_p2p_handshake_upgraded_total")
            >= 1
        ),
        what="duplicate resolution counted",
    )


async def test_stale_incumbent_is_evicted(cluster: Cluster) -> None:
    cfg = TransportConfig(duplicate_evict_min_age=0.0)
    a = await cluster.start("a", target_peers=0, transport=cfg)
    b = await cluster.start("b", target_peers=0, transport=cfg)
    first = await b.transport.dial(LOCAL, a.transport.listen_port)
    with pytest.raises(DialError):
        while True:  # dial until the newcomer loses the hash comparison
            await wait_until(lambda: len(b.transport.peers) == 1)
            first = b.transport.peers.connections()[0]
            await b.transport.dial(LOCAL, a.transport.listen_port)
    # A losing newcomer against an incumbent older than the evict age closes both.
    await wait_until(lambda: first.closed, what="stale incumbent evicted")
    total = b.metrics.value("zakura_p2p_conn_duplicate_evicted_stale_total") + a.metrics.value(
        "zakura_p2p_conn_duplicate_evicted_stale_total"
    )
    assert total >= 1


async def test_admission_cap_refuses_with_reason(cluster: Cluster) -> None:
    hub = await cluster.start("hub", target_peers=0, transport=TransportConfig(max_connections=1))
    one = await cluster.start("one", target_peers=0)
    two = await cluster.start("two", target_peers=0)
    await one.transport.dial(LOCAL, hub.transport.listen_port)
    with pytest.raises(DialError):
        await two.transport.dial(LOCAL, hub.transport.listen_port)
    rejected = hub.journal.find(lambda e: e.table == "conn" and e.event == "rejected.admission")
    assert rejected and rejected[0].fields["reason"] == "admission"
    assert hub.metrics.value("zakura_p2p_conn_rejected_admission_total", reason="admission") == 1


async def test_per_ip_cap_refuses_after_handshake(cluster: Cluster) -> None:
    hub = await cluster.start(
        "hub", target_peers=0, transport=TransportConfig(max_connections_per_ip=1)
    )
    one = await cluster.start("one", target_peers=0)
    two = await cluster.start("two", target_peers=0)
    await one.transport.dial(LOCAL, hub.transport.listen_port)
    with pytest.raises(DialError):
        await two.transport.dial(LOCAL, hub.transport.listen_port)
    await wait_until(
        lambda: hub.metrics.value("zakura_p2p_conn_rejected_admission_total", reason="per_ip") == 1
    )
    assert len(hub.transport.peers) == 1


async def test_discovery_only_disconnect_when_enabled(cluster: Cluster) -> None:
    dcfg = DiscoveryConfig(disconnect_after_exchange=True)
    a = await cluster.start("a", target_peers=0, discovery=dcfg)
    b = await cluster.start("b", target_peers=0, discovery=dcfg)
    conn = await b.transport.dial(LOCAL, a.transport.listen_port)
    await wait_until(lambda: conn.closed, what="discovery-only disconnect")
    assert conn.close_reason in ("discovery_only", "peer:discovery_only")
    handle = conn.routines[0]
    await wait_until(lambda: handle.exit is not None)
    # Both sides imported each other's record before leaving.
    assert b.book.get(a.node_id) is not None


async def test_trace_dir_writes_reference_tables(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    trace_dir = tmp_path_factory.mktemp("trace")
    a = await cluster.start("a", target_peers=0, trace_dir=trace_dir)
    b = await cluster.start("b", target_peers=0)
    await b.transport.dial(LOCAL, a.transport.listen_port)
    await wait_until(lambda: len(a.transport.peers) == 1)
    await a.stop()
    tables = load_trace(trace_dir)
    for table in ("handshake", "conn", "stream", "routine"):
        assert table in tables, f"missing {table}.jsonl"
    handshake_events = [r["event"] for r in tables["handshake"]]
    assert handshake_events[:2] == ["control.started", "control.succeeded"]
    accepted = [r for r in tables["conn"] if r["event"] == "accepted"]
    assert accepted
    for key in (
        "ts",
        "node",
        "event",
        "conn",
        "stream",
        "peer",
        "role",
        "phase",
        "reason",
        "selected_protocol",
        "direction",
        "stream_kind",
        "network",
    ):
        assert key in accepted[0], key
    assert accepted[0]["node"] == a.label
    assert accepted[0]["peer"] == b.label
