"""``/api/v1/stream`` against a real node process through real WebSocket clients (issue 10).

- Every journal row arrives exactly once and in order across a forced reconnect with
  ``since=SEQ``, compared with the node's own journal over the read route.
- Ten clients that never read are cut off; the node's RSS stays within a stated bound while
  they are connected; a reading client keeps getting snapshots all along.
- The concurrent-stream cap answers 503 with a sentence; no token is 401.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from prockit import NodeProc, Procs, wait_for_snapshot

pytestmark = pytest.mark.timeout(180)

#: RSS growth allowed while ten clients refuse to read (the cut-off bound is 4 MiB each in
#: the node's socket buffers, plus the kernel's; far below this).
RSS_BOUND_MB = 80
#: Snapshots the reading client must receive while silent clients still hold their streams
#: (it gets one per 0.1 s interval, and the first cut-off comes seconds after they connect).
SERVED_WHILE_HELD = 10
#: Seconds a wait for the next message may take before the test fails.
WAIT = 30.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def auth(node: NodeProc) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token}"}


async def start(tmp_path: Path, *extra: str) -> tuple[Procs, NodeProc, NodeProc]:
    procs = Procs()
    a = await procs.start(tmp_path / "a", "--allow-faults", "--blocks", "200", *extra)
    b = await procs.start(tmp_path / "b", "--bootstrap", a.listen)
    return procs, a, b


async def read_rows(
    ws: aiohttp.ClientWebSocketResponse, until_seq: int, timeout: float
) -> tuple[list[dict[str, Any]], int]:
    """Journal rows until one with seq >= until_seq; returns them and the snapshots seen."""
    rows: list[dict[str, Any]] = []
    snapshots = 0
    deadline = time.monotonic() + timeout
    while not rows or rows[-1]["seq"] < until_seq:
        msg = await ws.receive_json(timeout=max(0.1, deadline - time.monotonic()))
        if msg["type"] == "journal":
            rows.append(msg["row"])
        elif msg["type"] == "snapshot":
            snapshots += 1
        else:
            assert msg["type"] != "gap", msg
    return rows, snapshots


async def test_every_row_exactly_once_across_a_reconnect(tmp_path: Path) -> None:
    procs, a, _b = await start(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://{a.api}/api/v1/stream?interval=0.2&since=0"
            async with http.ws_connect(url, headers=auth(a)) as ws:
                hello = await ws.receive_json(timeout=5)
                assert hello["type"] == "hello" and hello["first_seq"] == 1
                first, snapshots = await read_rows(ws, 5, 20)  # up to "node started"
            assert snapshots >= 1
            last = first[-1]["seq"]
            # The node goes on while we are away: B connects and syncs, and faults are
            # injected (each journals two rows).
            snap = await wait_for_snapshot(
                http, a, lambda s: bool(s["peers"]), 30, "B connected to A"
            )
            label = snap["peers"][0]["label"]
            for rate in (1, 0) * 5:
                async with http.post(
                    f"http://{a.api}/api/v1/peers/{label}/throttle",
                    headers=auth(a),
                    json={"rate": rate},
                ) as resp:
                    assert resp.status == 200, await resp.text()
            async with http.get(f"http://{a.api}/api/v1/snapshot", headers=auth(a)) as resp:
                target = (await resp.json())["journal_seq"]
            url = f"http://{a.api}/api/v1/stream?interval=0.2&since={last}"
            async with http.ws_connect(url, headers=auth(a)) as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "hello"
                second, _ = await read_rows(ws, target, 20)
            async with http.get(
                f"http://{a.api}/api/v1/journal?since=0&limit=5000", headers=auth(a)
            ) as resp:
                truth = [r for r in (await resp.json())["rows"] if r["seq"] <= target]
        got = first + [r for r in second if r["seq"] <= target]
        assert [r["seq"] for r in got] == list(range(1, target + 1))  # once, in order
        assert got == truth
    finally:
        await procs.stop_all()


async def test_clients_that_never_read_are_cut_off(tmp_path: Path) -> None:
    procs, a, _b = await start(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://{a.api}/api/v1/stream?interval=0.1&since=0"
            before = rss_mb(a.process.pid)
            silent = [await silent_client(a) for _ in range(10)]
            reader = await http.ws_connect(url, headers=auth(a))
            peak = before
            # Snapshots the reader received while a silent client still held its stream: each
            # is counted only if the cut-off count read after it is still below ten.
            served_while_held = 0
            deadline = time.monotonic() + 120
            try:
                while True:
                    await next_snapshot(reader)
                    peak = max(peak, rss_mb(a.process.pid))
                    if await metric(http, a, "zakura_api_stream_cut_off_total") >= 10:
                        break
                    served_while_held += 1
                    assert time.monotonic() < deadline, "the silent clients were never cut off"
                await next_snapshot(reader)  # and it is still served once they are gone
                assert await metric(http, a, "zakura_api_streams") == 1  # the reader only
            finally:
                await reader.close()
                for writer in silent:
                    writer.close()
        assert peak - before < RSS_BOUND_MB, (before, peak)
        # The reader kept getting snapshots while the silent clients stalled their own sends
        # (a cut-off takes SEND_TIMEOUT after a client's buffers fill, dozens of intervals):
        # a reader held up behind them would get none before they are cut off.
        assert served_while_held >= SERVED_WHILE_HELD, served_while_held
    finally:
        await procs.stop_all()


async def next_snapshot(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Read until a snapshot arrives; fail after :data:`WAIT` seconds without one (a deadline
    that stops a broken run, not a timing requirement)."""
    deadline = time.monotonic() + WAIT
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the reading client got no snapshot"
        msg = await ws.receive_json(timeout=remaining)
        if msg["type"] == "snapshot":
            return


async def silent_client(node: NodeProc) -> asyncio.StreamWriter:
    """A WebSocket client that upgrades, then never reads: a small receive buffer, so the
    node sees it stop at the TCP level within seconds rather than megabytes."""
    host, port = node.api.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(
        (
            "GET /api/v1/stream?interval=0.1&since=0 HTTP/1.1\r\n"
            f"Host: {node.api}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {node.token}\r\n\r\n"
        ).encode()
    )
    status = await asyncio.wait_for(reader.readline(), 5)
    assert b" 101 " in status, status
    return writer


async def metric(http: aiohttp.ClientSession, node: NodeProc, name: str) -> float:
    async with http.get(f"http://{node.api}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def test_stream_needs_a_token_and_a_sane_interval(tmp_path: Path) -> None:
    procs, a, _b = await start(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://{a.api}/api/v1/stream"
            async with http.get(url) as resp:
                assert resp.status == 401
            async with http.get(url + "?interval=0", headers=auth(a)) as resp:
                assert resp.status == 422 and (await resp.json())["field"] == "interval"
    finally:
        await procs.stop_all()


async def test_past_the_cap_a_client_gets_503_with_a_sentence(tmp_path: Path) -> None:
    from node_core.api.tokens import TokenStore
    from node_core.control import Role
    from node_core.node import Node, NodeConfig

    token = TokenStore(tmp_path / "n").create("t", Role.VIEWER)
    node = Node(NodeConfig(data_dir=tmp_path / "n", api=("127.0.0.1", 0)))
    await node.start()
    try:
        node.api.streams.max_streams = 2
        headers = {"Authorization": f"Bearer {token}"}
        url = f"http://{node.api_address}/api/v1/stream"
        async with aiohttp.ClientSession() as http:
            first = await http.ws_connect(url, headers=headers)
            second = await http.ws_connect(url, headers=headers)
            async with http.get(url, headers=headers) as resp:
                assert resp.status == 503
                assert "at most 2 streams" in (await resp.json())["error"]
            await first.close()
            await second.close()
    finally:
        await node.stop()
