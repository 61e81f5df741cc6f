"""``GET /api/v1/snapshot?peers=brief[&detail=LABEL]`` against real node processes (issue 14).

Node A (``zakura node --api``) and node B (bootstrapped to A, syncing a 30-block chain) are
real processes read through a real HTTP client. Checked: the brief document has every section
of the full one, each peer cut to the schema's ``BriefPeerRow`` with the same values as the
full entry (the fields that cannot move between two reads); ``detail`` is B's full entry, or
null for a peer that is not connected; the full document is unchanged; bad parameters are a
422 naming the field; the route needs a token like every ``/api/v1`` read; and the remote
console client puts the detail entry in place of the brief one.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from console.remote import RemoteNodeClient
from node_core.api.tokens import TokenStore
from node_core.control import Role
from node_core.observe.peer_rates import SAMPLE_EVERY_S
from node_core.observe.schema import BriefSnapshot, PeerRow, validate_snapshot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from prockit import NodeProc, Procs, wait_for_snapshot

pytestmark = pytest.mark.timeout(120)

#: Fields of a peer entry that do not move between two reads of an idle connection.
STABLE = ("label", "addr", "direction", "conn_id", "connected_at", "misbehavior_count", "close")


@dataclass
class Pair:
    a: NodeProc
    b_label: str
    token: str
    http: aiohttp.ClientSession

    async def get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        async with self.http.get(f"http://{self.a.api}{path}", headers=headers) as resp:
            return resp.status, await resp.read()


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    procs = Procs()
    try:
        a = await procs.start(tmp_path / "a", "--blocks", "30")
        b = await procs.start(tmp_path / "b", "--bootstrap", a.listen)
        token = TokenStore(a.data_dir).create("watcher", Role.VIEWER)
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
            yield Pair(a, b_label, token, http)
    finally:
        await procs.stop_all()


#: What a brief peer carries beyond the full entry: the node's byte rates (peer_rates.py).
BRIEF_ONLY = ("bytes_in_per_s", "bytes_out_per_s")


def _subset(brief: Any, full: Any, path: str) -> None:
    """Every key of ``brief`` is in ``full``, nested dicts likewise (values may have moved),
    but a peer's :data:`BRIEF_ONLY` rates."""
    if isinstance(brief, dict):
        assert isinstance(full, dict), path
        for key, value in brief.items():
            if path == "$.peers" and key in BRIEF_ONLY:
                continue
            assert key in full, f"{path}.{key}"
            _subset(value, full[key], f"{path}.{key}")


async def test_the_brief_document_has_every_section_and_each_peer_cut_to_its_row(
    pair: Pair,
) -> None:
    status, body = await pair.get("/api/v1/snapshot?peers=brief")
    assert status == 200
    brief = msgspec.json.decode(body, type=BriefSnapshot, strict=True)
    status, full_body = await pair.get("/api/v1/snapshot")
    full = validate_snapshot(msgspec.json.decode(full_body))
    raw_full = msgspec.json.decode(full_body)
    assert "brief" not in raw_full and "detail" not in raw_full  # the full document is as it was
    assert brief["brief"] is True and brief["detail"] is None
    assert set(brief) == set(raw_full) | {"brief", "detail"}
    assert len(body) < len(full_body)
    assert [p["label"] for p in brief["peers"]] == [p["label"] for p in full["peers"]]
    for cut, whole in zip(brief["peers"], full["peers"], strict=True):
        assert {k: cut[k] for k in STABLE} == {k: whole[k] for k in STABLE}  # type: ignore[literal-required]
        _subset(cut, whole, "$.peers")
        assert [(r["service"], r["state"], r["generation"]) for r in cut["routines"]] == [
            (r["service"], r["state"], r["generation"]) for r in whole["routines"]
        ]
        services = {r["service"] for r in cut["routines"] if r["service"] in r}
        assert services == {"header_sync", "block_sync"}  # a view for the row's sync columns
    assert brief["routines_summary"] == full["routines_summary"]


async def test_each_brief_peer_carries_its_byte_rates_from_the_node(pair: Pair) -> None:
    """Null until the node has sampled the connection twice (a second apart), then bytes per
    second no higher than the bytes the connection ever carried over the shortest window."""
    entry: dict[str, Any] = {}
    async with asyncio.timeout(15):
        while entry.get("bytes_in_per_s") is None:
            status, body = await pair.get("/api/v1/snapshot?peers=brief")
            assert status == 200
            doc = msgspec.json.decode(body, type=BriefSnapshot, strict=True)
            entry = dict(next(p for p in doc["peers"] if p["label"] == pair.b_label))
            assert set(BRIEF_ONLY) <= set(entry)
            await asyncio.sleep(0.2)  # polling, as a console does; the loop waits on the rate
    for rate, total in (
        (entry["bytes_in_per_s"], entry["bytes_in"]),
        (entry["bytes_out_per_s"], entry["bytes_out"]),
    ):
        assert isinstance(rate, float) and 0 <= rate <= total / SAMPLE_EVERY_S
    assert entry["bytes_in_per_s"] > 0 or entry["bytes_out_per_s"] > 0  # keepalives at least


async def test_detail_is_that_peers_full_entry_or_null(pair: Pair) -> None:
    status, body = await pair.get(f"/api/v1/snapshot?peers=brief&detail={pair.b_label}")
    assert status == 200
    doc = msgspec.json.decode(body, type=BriefSnapshot, strict=True)
    detail = doc["detail"]
    assert detail is not None and detail["label"] == pair.b_label
    msgspec.convert(detail, PeerRow, strict=True)
    assert {s["service"] for s in detail["streams"]} >= {"discovery", "header_sync"}
    status, body = await pair.get("/api/v1/snapshot?peers=brief&detail=peer:0000000000000000")
    assert status == 200 and msgspec.json.decode(body)["detail"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("peers=some", "peers"),
        ("peers=", "peers"),
        ("detail=peer:0000000000000000", "detail"),  # detail needs peers=brief
        ("peers=full&detail=peer:0000000000000000", "detail"),
        ("peers=brief&detail=" + "x" * 201, "detail"),
    ],
)
async def test_bad_parameters_are_a_422_naming_the_field(
    pair: Pair, query: str, field: str
) -> None:
    status, body = await pair.get(f"/api/v1/snapshot?{query}")
    assert status == 422
    assert msgspec.json.decode(body)["field"] == field


async def test_the_brief_document_needs_a_token(pair: Pair) -> None:
    status, _body = await pair.get("/api/v1/snapshot?peers=brief", token="zk_" + "A" * 43)
    assert status == 401


async def test_the_remote_client_puts_the_detail_entry_in_place(pair: Pair) -> None:
    client = RemoteNodeClient(f"http://{pair.a.api}", pair.token)
    try:
        await client.connect()
        plain = await client.brief_snapshot()
        entry = next(p for p in plain["peers"] if p["label"] == pair.b_label)
        assert "streams" not in entry and "id" not in entry
        detailed = await client.brief_snapshot(pair.b_label)
        entry = next(p for p in detailed["peers"] if p["label"] == pair.b_label)
        assert entry == detailed["detail"]
        assert entry["streams"] and entry["id"]
    finally:
        await client.close()
