"""The read-only control API against a real node on loopback, through a real HTTP client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from node_core.node import Node, NodeConfig

ROUTES = ("/healthz", "/api/v1/snapshot", "/metrics")


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``cond`` as the loop runs until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """Node A serves the API; node B is bootstrapped to A so A has a peer to report."""
    a = Node(NodeConfig(data_dir=tmp_path / "a", api=("127.0.0.1", 0)))
    await a.start()
    b = Node(
        NodeConfig(data_dir=tmp_path / "b", bootstrap=(("127.0.0.1", a.transport.listen_port),))
    )
    try:
        await b.start()
        await wait_until(
            lambda: any(
                r["service"] == "discovery" and r["state"] == "running"
                for p in a.snapshot()["peers"]
                for r in p["routines"]
            ),
            what="A to run a discovery routine for B",
        )
        yield a, b
    finally:
        await b.stop()
        await a.stop()


def base_url(node: Node) -> str:
    assert node.api_address is not None
    return f"http://{node.api_address}"


async def test_api_is_loopback_and_ephemeral_port_is_reported(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    host, _, port = (a.api_address or "").rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0


async def test_healthz(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    async with aiohttp.ClientSession() as http, http.get(base_url(a) + "/healthz") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body["status"] == "ok"
    assert body["label"] == a.label
    assert body["peers"] >= 1


async def test_snapshot_document(pair: tuple[Node, Node]) -> None:
    a, b = pair
    async with aiohttp.ClientSession() as http, http.get(base_url(a) + "/api/v1/snapshot") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        snap = await resp.json()
    assert isinstance(snap["schema"], int)
    assert snap["node"]["id"] == a.node_id.hex()
    assert snap["node"]["label"] == a.label
    assert snap["node"]["listen"] == a.listen
    assert isinstance(snap["journal_seq"], int) and snap["journal_seq"] > 0
    peers = snap["peers"]
    assert isinstance(peers, list)
    by_label = {p["label"]: p for p in peers}
    assert b.label in by_label
    for peer in peers:
        assert isinstance(peer["addr"], str) and ":" in peer["addr"]
        assert peer["direction"] in ("inbound", "outbound")
        assert peer["routines"], peer
        for r in peer["routines"]:
            assert isinstance(r["service"], str)
            assert r["state"] in ("running", "parked", "exited", "panicked")
            assert isinstance(r["generation"], int)
    assert by_label[b.label]["direction"] == "inbound"
    assert "discovery" in {r["service"] for r in by_label[b.label]["routines"]}


async def test_metrics_is_prometheus_text(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    async with aiohttp.ClientSession() as http, http.get(base_url(a) + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert "zakura_pipe_panic_total" in text
    assert "# TYPE zakura_pipe_panic_total counter" in text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_writes_are_refused_and_change_nothing(pair: tuple[Node, Node], method: str) -> None:
    a, _ = pair

    def peers() -> set[tuple[str, int, str]]:
        return {(p["label"], p["conn_id"], p["direction"]) for p in a.snapshot()["peers"]}

    before = peers()
    async with aiohttp.ClientSession() as http:
        for route in ROUTES:
            async with http.request(method, base_url(a) + route, data=b'{"x": 1}') as resp:
                assert resp.status == 405, (method, route)
                assert "GET" in resp.headers.get("Allow", ""), (method, route)
        # The API still answers reads afterwards.
        async with http.get(base_url(a) + "/healthz") as resp:
            assert resp.status == 200
    assert peers() == before
    assert all(r["state"] == "running" for p in a.snapshot()["peers"] for r in p["routines"])
