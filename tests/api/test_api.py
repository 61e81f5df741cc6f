"""The control API against real node processes through a real HTTP client (issue 10).

Node A (``zakura node --api --allow-faults``) and node B (bootstrapped to A) are real
processes. Tokens are made with the same store ``zakura token`` uses, on A's data dir while A
runs (a revoked token stops working without a restart). Every route is tried with no token,
an unknown one, a revoked one, a viewer's and an operator's; bad bodies are refused with the
field named and change nothing; a panic through the API closes only that peer's connection
and the journal names the token; no token ever appears in a log, trace or journal.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node_core.api.tokens import TokenStore
from node_core.control import Role

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from prockit import NodeProc, Procs, wait_for_snapshot

pytestmark = pytest.mark.timeout(120)

READS = ("/api/v1/snapshot", "/api/v1/journal?since=0&limit=10", "/api/v1/misbehavior")


@dataclass
class Net:
    a: NodeProc
    b: NodeProc
    b_label: str
    tokens: dict[str, str]
    http: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return f"http://{self.a.api}{path}"

    def auth(self, who: str | None) -> dict[str, str]:
        if who is None:
            return {}
        token = self.tokens.get(who, who)
        return {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, who: str | None) -> tuple[int, Any]:
        async with self.http.get(self.url(path), headers=self.auth(who)) as resp:
            return resp.status, await resp.json(content_type=None)

    async def post(self, path: str, who: str | None, body: bytes | None = None) -> tuple[int, Any]:
        async with self.http.post(self.url(path), headers=self.auth(who), data=body) as resp:
            return resp.status, await resp.json(content_type=None)

    async def b_connection(self) -> tuple[int, list[str]]:
        """B's connection id on A and the states of its routines (to see nothing changed)."""
        _status, snap = await self.get("/api/v1/snapshot", "operator")
        peer = next(p for p in snap["peers"] if p["label"] == self.b_label)
        return peer["conn_id"], sorted(f"{r['service']}:{r['state']}" for r in peer["routines"])


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    procs = Procs()
    try:
        a = await procs.start(
            tmp_path / "a", "--allow-faults", "--blocks", "30", "--trace-dir", str(tmp_path / "tr")
        )
        b = await procs.start(tmp_path / "b", "--bootstrap", a.listen)
        store = TokenStore(a.data_dir)
        tokens = {
            "viewer": store.create("watcher", Role.VIEWER),
            "operator": store.create("ci-op", Role.OPERATOR),
            "revoked": store.create("old", Role.OPERATOR),
            "unknown": "zk_" + "A" * 43,
        }
        store.revoke("old")
        async with aiohttp.ClientSession() as http:
            snap = await wait_for_snapshot(
                http,
                b,
                lambda s: bool(s["peers"]) and s["chain"]["verified_tip"]["height"] == 30,
                30,
                "B synced to A",
            )
            b_label = snap["node"]["label"]
            await wait_for_snapshot(
                http,
                a,
                lambda s: any(
                    p["label"] == b_label
                    and {r["service"] for r in p["routines"] if r["state"] == "running"}
                    >= {"discovery", "header_sync", "block_sync"}
                    for p in s["peers"]
                ),
                20,
                "A to run B's routines",
            )
            yield Net(a, b, b_label, tokens, http)
    finally:
        await procs.stop_all()


async def test_open_routes_need_no_token(net: Net) -> None:
    for path in ("/healthz", "/metrics"):
        async with net.http.get(net.url(path)) as resp:
            assert resp.status == 200, path
    async with net.http.get(net.url("/metrics")) as resp:
        assert "zakura_pipe_panic_total" in await resp.text()


@pytest.mark.parametrize("who", [None, "unknown", "revoked", "Basic abc"])
async def test_every_api_route_refuses_a_missing_unknown_or_revoked_token(
    net: Net, who: str | None
) -> None:
    before = await net.b_connection()
    for path in (*READS, f"/api/v1/peers/{net.b_label}"):
        if who == "Basic abc":
            async with net.http.get(net.url(path), headers={"Authorization": who}) as resp:
                status = resp.status
        else:
            status, body = await net.get(path, who)
            assert "token" in body["error"]
        assert status == 401, (path, who)
    for action in ("disconnect", "panic", "park", "unpark", "stall", "throttle"):
        status, _ = await net.post(f"/api/v1/peers/{net.b_label}/{action}", who)
        assert status == 401, (action, who)
    assert await net.b_connection() == before


async def test_reads_for_viewer_and_operator(net: Net) -> None:
    for who in ("viewer", "operator"):
        for path in READS:
            status, _ = await net.get(path, who)
            assert status == 200, (path, who)
        status, doc = await net.get(f"/api/v1/peers/{net.b_label}", who)
        assert status == 200 and doc["peer"]["label"] == net.b_label
    status, doc = await net.get("/api/v1/peers/peer:ffffffffffffffff", "viewer")
    assert status == 404 and doc["field"] == "label"
    status, journal = await net.get("/api/v1/journal?since=0&limit=5", "viewer")
    assert [r["seq"] for r in journal["rows"]] == [1, 2, 3, 4, 5]
    assert journal["gap"] is False
    status, doc = await net.get("/api/v1/journal?limit=0", "viewer")
    assert status == 422 and doc["field"] == "limit"


async def test_a_viewer_is_refused_every_action_and_nothing_changes(net: Net) -> None:
    before = await net.b_connection()
    for action, body in (
        ("disconnect", None),
        ("panic", b'{"service": "block_sync"}'),
        ("park", None),
        ("unpark", None),
        ("stall", b'{"seconds": 5}'),
        ("throttle", b'{"rate": 1}'),
    ):
        status, doc = await net.post(f"/api/v1/peers/{net.b_label}/{action}", "viewer", body)
        assert status == 403 and doc["refusal"] == "role", (action, doc)
        assert "viewer" in doc["error"]
    assert await net.b_connection() == before


@pytest.mark.parametrize(
    ("action", "body", "status", "field"),
    [
        ("panic", b"", 422, "service"),  # missing field
        ("panic", b'{"service": "mempool"}', 422, "service"),  # unknown service
        ("panic", b'{"service": 7}', 422, "service"),  # wrong type
        ("stall", b'{"seconds": "ten"}', 422, "seconds"),
        ("stall", b'{"seconds": -5}', 422, "seconds"),
        ("stall", b'{"seconds": 1e9}', 422, "seconds"),
        ("unpark", b'{"service": "block_sync"}', 422, "service"),
        ("throttle", b'{"rate": -1}', 422, "rate"),
        ("throttle", b'{"rate": 1e300}', 422, "rate"),
        ("throttle", b'{"speed": 3}', 422, "speed"),  # unknown field
        ("throttle", b"[1, 2]", 422, "body"),
        ("throttle", b"{not json", 422, "body"),
        ("throttle", b'{"rate": "' + b"x" * (1024 * 1024) + b'"}', 413, "body"),  # 1 MB body
        ("explode", b"", 404, "action"),
    ],
    # Short ids: the test id lands in the environment of every child process.
    ids=lambda v: v.decode()[:24] if isinstance(v, bytes) else str(v),
)
async def test_bad_bodies_name_the_field_and_change_nothing(
    net: Net, action: str, body: bytes, status: int, field: str
) -> None:
    before = await net.b_connection()
    got, doc = await net.post(f"/api/v1/peers/{net.b_label}/{action}", "operator", body)
    assert (got, doc["field"]) == (status, field), doc
    assert doc["error"]
    assert await net.b_connection() == before


async def test_unknown_peer_and_routine_not_running(net: Net) -> None:
    status, doc = await net.post("/api/v1/peers/peer:ffffffffffffffff/disconnect", "operator")
    assert status == 404 and doc["refusal"] == "unknown_peer"
    status, doc = await net.post(f"/api/v1/peers/{net.b_label}/park", "operator")
    assert status == 200 and doc["effect"] == "service_parked"
    status, doc = await net.post(
        f"/api/v1/peers/{net.b_label}/stall", "operator", b'{"service": "header_sync"}'
    )
    assert status == 409 and doc["refusal"] == "not_running", doc


async def test_unpark_through_the_api(net: Net) -> None:
    """POST .../unpark: 409 while the peer is not parked, 403 for a viewer, and for an
    operator a new header-sync session on the same connection, journaled with the token."""
    url = f"/api/v1/peers/{net.b_label}/unpark"
    status, doc = await net.post(url, "operator")
    assert status == 409 and doc["refusal"] == "not_parked", doc
    assert doc["error"] == f"peer {net.b_label}: header_sync is not parked (it is running)"
    status, doc = await net.post(f"/api/v1/peers/{net.b_label}/park", "operator")
    assert status == 200 and doc["effect"] == "service_parked", doc
    conn_id, routines = await net.b_connection()
    assert "header_sync:parked" in routines

    status, doc = await net.post(url, "viewer")
    assert status == 403 and doc["refusal"] == "role", doc
    _status, snap = await net.get("/api/v1/snapshot", "viewer")
    assert [p["label"] for p in snap["parked"]] == [net.b_label]  # still parked

    status, doc = await net.post(url, "operator", b'{"service": "header_sync"}')
    assert status == 200 and doc["ok"] and doc["effect"] == "service_resumed", doc
    _status, snap = await net.get("/api/v1/snapshot", "operator")
    assert snap["parked"] == []
    peer = next(p for p in snap["peers"] if p["label"] == net.b_label)
    assert peer["conn_id"] == conn_id  # the connection stayed up
    header_sync = [r for r in peer["routines"] if r["service"] == "header_sync"]
    assert header_sync[-1]["state"] == "running"
    assert doc["reason"] == f"generation={header_sync[-1]['generation']}"

    _status, journal = await net.get("/api/v1/journal?since=0&limit=5000", "operator")
    faults = [
        r for r in journal["rows"] if r["table"] == "fault" and r["fields"]["kind"] == "unpark"
    ]
    assert [r["event"] for r in faults] == ["injected", "observed"]
    fields = faults[0]["fields"]
    assert (fields["by"], fields["role"]) == ("ci-op", "operator")
    assert fields["remote"].startswith("127.0.0.1")
    assert faults[1]["fields"]["effect"] == "service_resumed"
    assert faults[0]["fields"]["fault_id"] == doc["fault_id"]


async def test_faults_disabled_is_a_403_that_says_so(tmp_path: Path) -> None:
    procs = Procs()
    try:
        a = await procs.start(tmp_path / "a")
        async with aiohttp.ClientSession() as http:
            url = f"http://{a.api}/api/v1/peers/peer:ffffffffffffffff/disconnect"
            async with http.post(url, headers={"Authorization": f"Bearer {a.token}"}) as resp:
                doc = await resp.json()
                assert resp.status == 403 and doc["refusal"] == "faults_disabled"
                assert "--allow-faults" in doc["error"]
    finally:
        await procs.stop_all()


async def test_a_panic_through_the_api_closes_only_that_peer(net: Net) -> None:
    status, doc = await net.post(
        f"/api/v1/peers/{net.b_label}/panic", "operator", b'{"service": "block_sync"}'
    )
    assert status == 200, doc
    assert doc["ok"] and doc["fault_id"] >= 1
    assert doc["effect"] == "routine_panicked,connection_closed"
    _status, journal = await net.get("/api/v1/journal?since=0&limit=5000", "operator")
    injected = [r for r in journal["rows"] if r["table"] == "fault" and r["event"] == "injected"]
    assert len(injected) == 1
    fields = injected[0]["fields"]
    assert (fields["by"], fields["role"]) == ("ci-op", "operator")
    assert fields["remote"].startswith("127.0.0.1")
    closed = [
        r for r in journal["rows"] if r["table"] == "conn" and r["event"].startswith("closed")
    ]
    # Only B's connections closed (B may redial and lose a duplicate race under load, so
    # count peers, not closes); the first close is the panic's.
    assert {r["peer"] for r in closed} == {net.b_label}
    assert str(closed[0]["fields"]["reason"]).startswith("panic:")
    # A keeps serving: its API answers, and B comes back by redialing.
    await wait_for_snapshot(
        net.http,
        net.a,
        lambda s: any(p["label"] == net.b_label for p in s["peers"]),
        20,
        "B reconnected",
    )


async def test_tokens_never_reach_logs_traces_or_the_journal(net: Net) -> None:
    for who in ("viewer", "operator", "unknown", "revoked"):
        await net.get("/api/v1/snapshot", who)
        await net.post(f"/api/v1/peers/{net.b_label}/throttle", who, b'{"rate": 0}')
    _status, journal = await net.get("/api/v1/journal?since=0&limit=5000", "operator")
    traces = net.a.data_dir.parent / "tr"
    trace_text = "".join(p.read_text(errors="replace") for p in traces.rglob("*.jsonl"))
    assert "fault" in trace_text  # the traces did record the actions
    text = str(journal) + net.a.log.read_text(errors="replace") + trace_text
    stored = (net.a.data_dir / "api_tokens.json").read_text()
    for token in net.tokens.values():
        assert token not in text
        assert token not in stored
    assert (net.a.data_dir / "api_tokens.json").stat().st_mode & 0o077 == 0


async def test_a_non_loopback_api_without_tokens_is_refused_at_start(tmp_path: Path) -> None:
    """The node refuses before binding anything: one line naming --api and the fix, exit 2."""
    import asyncio

    from prockit import ZAKURA

    proc = await asyncio.create_subprocess_exec(
        *ZAKURA, "node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "n"),
        "--api", "0.0.0.0:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, (out, err)
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and "--api" in lines[0] and "zakura token create" in lines[0], lines
    assert not (tmp_path / "n" / "api_tokens.json").exists()
