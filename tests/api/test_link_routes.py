"""The link-fault routes (``/api/v1/links``) against real node processes (issue 12 item 1).

Node A (``--allow-faults``) and node B (bootstrapped to A) are real processes, as in
``test_api.py``. Auth, roles and refusals are those of the peer actions: a viewer, a node
without ``--allow-faults`` and every bad body are refused, change nothing and journal
nothing; an operator's partition, delay, bandwidth and heal are journaled with the token's
name, role and address, and ``GET /api/v1/links`` shows exactly the rules in force.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from node_core.api.tokens import TokenStore
from node_core.control import Role

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from prockit import NodeProc, Procs, wait_for_snapshot

pytestmark = pytest.mark.timeout(180)

VERBS = ("partition", "delay", "bandwidth", "heal")


@dataclass
class Net:
    a: NodeProc
    b: NodeProc
    a_id: str
    b_id: str
    b_label: str
    tokens: dict[str, str]
    http: aiohttp.ClientSession

    def auth(self, who: str | None) -> dict[str, str]:
        return {} if who is None else {"Authorization": f"Bearer {self.tokens[who]}"}

    async def get(self, path: str, who: str | None = "operator") -> tuple[int, Any]:
        url = f"http://{self.a.api}{path}"
        async with self.http.get(url, headers=self.auth(who)) as resp:
            return resp.status, await resp.json(content_type=None)

    async def post(self, verb: str, body: object, who: str | None = "operator") -> tuple[int, Any]:
        url = f"http://{self.a.api}/api/v1/links/{verb}"
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        async with self.http.post(url, headers=self.auth(who), data=data) as resp:
            return resp.status, await resp.json(content_type=None)

    async def links(self) -> list[dict[str, Any]]:
        status, doc = await self.get("/api/v1/links", "viewer")
        assert status == 200, doc
        rows: list[dict[str, Any]] = doc["links"]
        return rows

    async def fault_rows(self) -> list[dict[str, Any]]:
        _status, journal = await self.get("/api/v1/journal?since=0&limit=5000")
        return [r for r in journal["rows"] if r["table"] == "fault"]

    async def wait_for_row(self, cond: Callable[[dict[str, Any]], bool], timeout: float) -> Any:
        """The first journal row of A for which ``cond`` holds, polled until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            _status, journal = await self.get("/api/v1/journal?since=0&limit=5000")
            for row in journal["rows"]:
                if cond(row):
                    return row
            assert time.monotonic() < deadline, f"no such row on A:\n{self.a.log_tail()}"
            await asyncio.sleep(0.05)

    async def b_connected(self) -> bool:
        _status, snap = await self.get("/api/v1/snapshot")
        return any(p["label"] == self.b_label for p in snap["peers"])


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    procs = Procs()
    try:
        a = await procs.start(tmp_path / "a", "--allow-faults")
        b = await procs.start(tmp_path / "b", "--bootstrap", a.listen)
        store = TokenStore(a.data_dir)
        tokens = {
            "viewer": store.create("watcher", Role.VIEWER),
            "operator": store.create("ci-op", Role.OPERATOR),
        }
        async with aiohttp.ClientSession() as http:
            b_snap = await wait_for_snapshot(http, b, lambda s: bool(s["peers"]), 30, "B up")
            a_snap = await wait_for_snapshot(
                http,
                a,
                lambda s: any(p["label"] == b_snap["node"]["label"] for p in s["peers"]),
                30,
                "A sees B",
            )
            yield Net(
                a,
                b,
                a_snap["node"]["id"],
                b_snap["node"]["id"],
                b_snap["node"]["label"],
                tokens,
                http,
            )
    finally:
        await procs.stop_all()


async def test_refusals_change_nothing_and_journal_nothing(net: Net) -> None:
    good = {"nodes": [net.b_id], "ms": 100, "kib_per_s": 64}
    bodies = {
        "partition": {"nodes": [net.b_id]},
        "delay": {"nodes": [net.b_id], "ms": 100},
        "bandwidth": {"nodes": [net.b_id], "kib_per_s": 64},
        "heal": {},
    }
    for verb, body in bodies.items():
        status, doc = await net.post(verb, body, who=None)
        assert status == 401 and "token" in doc["error"], (verb, doc)
        status, doc = await net.post(verb, body, who="viewer")
        assert status == 403 and doc["refusal"] == "role" and "viewer" in doc["error"], doc
    status, _doc = await net.get("/api/v1/links", who=None)
    assert status == 401

    bad: list[tuple[str, object, int, str]] = [
        ("partition", {}, 422, "nodes"),  # nodes missing
        ("partition", {"nodes": []}, 422, "nodes"),  # empty list
        ("partition", {"nodes": net.b_id}, 422, "nodes"),  # a string, not a list
        ("partition", {"nodes": [net.b_id[:-2]]}, 422, "nodes"),  # wrong length
        ("partition", {"nodes": ["zz" * 32]}, 422, "nodes"),  # not hex
        ("partition", {"nodes": [net.b_id[:32] + " " + net.b_id[33:]]}, 422, "nodes"),
        ("partition", {"nodes": [7]}, 422, "nodes"),
        ("partition", {"nodes": [net.a_id]}, 422, "nodes"),  # our own node id
        ("heal", {"nodes": []}, 422, "nodes"),
        ("heal", {"nodes": [net.a_id]}, 422, "nodes"),
        ("partition", {"nodes": [net.b_id], "ms": 5}, 422, "ms"),  # a key it does not take
        ("delay", {"nodes": [net.b_id]}, 422, "ms"),  # ms missing
        ("delay", {"nodes": [net.b_id], "ms": -1}, 422, "ms"),
        ("delay", {"nodes": [net.b_id], "ms": 60_001}, 422, "ms"),
        ("delay", {"nodes": [net.b_id], "ms": 1.5}, 422, "ms"),
        ("delay", {"nodes": [net.b_id], "ms": "ten"}, 422, "ms"),
        ("delay", {"nodes": [net.b_id], "ms": True}, 422, "ms"),
        ("delay", {"nodes": [net.b_id], "ms": 5, "jitter_ms": 60_001}, 422, "jitter_ms"),
        ("delay", {"nodes": [net.b_id], "ms": 5, "jitter": 1}, 422, "jitter"),  # unknown key
        ("bandwidth", {"nodes": [net.b_id]}, 422, "kib_per_s"),
        ("bandwidth", {"nodes": [net.b_id], "kib_per_s": 0}, 422, "kib_per_s"),
        ("bandwidth", {"nodes": [net.b_id], "kib_per_s": 1_048_577}, 422, "kib_per_s"),
        ("bandwidth", good, 422, "ms"),
        ("heal", b"[1]", 422, "body"),
        ("heal", b"{not json", 422, "body"),
        ("explode", {}, 404, "action"),
    ]
    for verb, body, status, field in bad:
        got, doc = await net.post(verb, body)
        assert (got, doc.get("field")) == (status, field), (verb, body, doc)
        assert doc["error"]
    assert await net.links() == []
    assert await net.fault_rows() == []
    assert await net.b_connected()


async def test_partition_delay_bandwidth_heal_through_the_api(net: Net) -> None:
    assert await net.links() == []
    status, doc = await net.post("partition", {"nodes": [net.b_id]})
    assert status == 200, doc
    assert doc["ok"] and doc["fault_id"] >= 1 and doc["action"] == "partition"
    assert (doc["nodes"], doc["closed"], doc["effect"]) == ([net.b_id], 1, "link_partitioned")
    assert await net.links() == [
        {"node": net.b_id, "partitioned": True, "delay_ms": 0, "jitter_ms": 0, "kib_per_s": None}
    ]
    # B is cut off: its redials are refused by A at the handshake, neutrally.
    refused = await net.wait_for_row(
        lambda r: (
            (r["table"], r["event"]) == ("conn", "rejected.partitioned")
            and r["fields"]["direction"] == "inbound"
        ),
        30,
    )
    assert refused["peer"] == net.b_label
    assert not await net.b_connected()
    _status, journal = await net.get("/api/v1/journal?since=0&limit=5000")
    closes = [
        r
        for r in journal["rows"]
        if r["table"] == "conn" and r["event"].startswith("closed") and r["peer"] == net.b_label
    ]
    assert closes[0]["event"] == "closed.neutral"
    assert closes[0]["fields"]["reason"] == f"fault:{doc['fault_id']}:partition"

    status, doc = await net.post("delay", {"nodes": [net.b_id], "ms": 200, "jitter_ms": 50})
    assert status == 200 and (doc["action"], doc["ms"], doc["jitter_ms"]) == ("delay", 200, 50)
    status, doc = await net.post("bandwidth", {"nodes": [net.b_id], "kib_per_s": 64.0})
    assert status == 200 and (doc["action"], doc["kib_per_s"]) == ("bandwidth", 64), doc
    assert await net.links() == [
        {"node": net.b_id, "partitioned": True, "delay_ms": 200, "jitter_ms": 50, "kib_per_s": 64}
    ]

    status, doc = await net.post("heal", {"nodes": [net.b_id]})
    assert status == 200 and doc["action"] == "heal" and doc["healed"] == [net.b_id], doc
    assert await net.links() == []
    status, doc = await net.post("heal", {})
    assert status == 200 and doc["healed"] == [] and doc["nodes"] is None, doc
    await wait_for_snapshot(
        net.http,
        net.a,
        lambda s: any(p["label"] == net.b_label for p in s["peers"]),
        60,
        "B reconnected after heal",
    )

    faults = await net.fault_rows()
    kinds = [(r["event"], r["fields"]["kind"]) for r in faults]
    assert kinds == [
        (event, kind)
        for kind in ("partition", "delay", "bandwidth", "heal", "heal")
        for event in ("injected", "observed")
    ]
    for row in faults:
        if row["event"] == "injected":
            fields = row["fields"]
            assert (fields["by"], fields["role"]) == ("ci-op", "operator")
            assert fields["remote"].startswith("127.0.0.1")
    effects = [r["fields"]["effect"] for r in faults if r["event"] == "observed"]
    assert effects == [
        "link_partitioned",
        "link_delayed",
        "link_paced",
        "links_healed",
        "links_healed",
    ]


async def test_link_faults_disabled_is_a_403_that_says_so(tmp_path: Path) -> None:
    procs = Procs()
    try:
        a = await procs.start(tmp_path / "a")
        headers = {"Authorization": f"Bearer {a.token}"}
        async with aiohttp.ClientSession() as http:
            for verb in VERBS:
                body = {"nodes": ["ab" * 32], "ms": 5} if verb == "delay" else {}
                if verb == "partition":
                    body = {"nodes": ["ab" * 32]}
                if verb == "bandwidth":
                    body = {"nodes": ["ab" * 32], "kib_per_s": 8}
                url = f"http://{a.api}/api/v1/links/{verb}"
                async with http.post(url, headers=headers, data=orjson.dumps(body)) as resp:
                    doc = await resp.json()
                    assert resp.status == 403 and doc["refusal"] == "faults_disabled", doc
                    assert "--allow-faults" in doc["error"]
            async with http.get(f"http://{a.api}/api/v1/links", headers=headers) as resp:
                assert resp.status == 200 and (await resp.json()) == {"links": []}
            async with http.get(
                f"http://{a.api}/api/v1/journal?since=0&limit=5000", headers=headers
            ) as resp:
                rows = (await resp.json())["rows"]
                assert not [r for r in rows if r["table"] == "fault"]
    finally:
        await procs.stop_all()
