"""Issue 16, defects 1 and 2, with real node processes: one header nobody serves a body for.

A network of real ``zakura node`` processes: a miner A (pre-generated chain, mining every
``MINE_S`` seconds), an honest C, and the target B, bootstrapped to both. A raw peer X (the
hostile suite's encoder, ``tests/hostile/rawpeer.py``, written from docs/PROTOCOL.md) connects
to B, advertises a tip one above B's and answers B's GetHeaders with one header on B's tip,
then disconnects without ever serving that header's body.

- **Valid header** (defect 1). B stores it and, through B, so do A and C: nobody holds its
  body. Before the fix block sync stopped for good (A even mined on top of the bodiless
  header). Now every node gives the header up once nobody has served its body for
  ``body_unavailable_timeout`` (15 s), A mines on its verified tip again, and B's verified
  tip reaches A's tip within ``RECOVER_S``; then the invariants hold (nothing pending or in
  flight, byte budget fully released) and B's store is consistent.
- **Time going backwards** (defect 2, docs/PROTOCOL.md §8.5 step 4). B refuses the header
  with ``invalid_range`` recorded and never stores it; block sync goes on unharmed.

Waits poll a condition against a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node_core.chain.store import ChainStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
from prockit import NodeProc, Procs, header_of, verified_of, wait_for_snapshot
from rawpeer import (
    CAP_BLOCK_SYNC,
    CAP_DISCOVERY,
    CAP_HEADER_SYNC,
    NETWORK_REGTEST,
    HelloParams,
    HGetHeaders,
    HHeaders,
    HStatus,
    RawHeader,
    RawPeer,
    genesis,
    hs_get_headers,
    hs_headers,
    hs_status,
    mine_child,
)

pytestmark = pytest.mark.timeout(240)

BLOCKS = 20
MINE_S = 3.0
#: The stated bound: 15 s watchdog + a tick + mining interval + sync, with room for CI.
RECOVER_S = 75.0
SYNC_S = 45.0


def idle_and_sound(snap: dict[str, Any]) -> bool:
    """No stranded work: nothing pending, in flight or held, every budget byte released."""
    bs = snap["block_sync"]
    return (
        verified_of(snap) == header_of(snap)
        and bs["pending"] == 0
        and bs["in_flight"] == 0
        and bs["received"] == 0
        and bs["budget_reserved"] == 0
        and bs["reorder_count"] == 0
        and bs["applying_count"] == 0
    )


async def start_network(procs: Procs, root: Path) -> tuple[NodeProc, NodeProc, NodeProc]:
    miner = await procs.start(
        root / "A", "--blocks", str(BLOCKS), "--mine-interval", str(MINE_S), "--target-peers", "4"
    )
    honest = await procs.start(root / "C", "--bootstrap", miner.listen, "--target-peers", "4")
    target = await procs.start(
        root / "B", "--bootstrap", miner.listen, "--bootstrap", honest.listen, "--target-peers", "4"
    )
    return miner, honest, target


async def offer_one_header(target: NodeProc, *, time_step: int) -> tuple[RawPeer, RawHeader, int]:
    """X: handshake with B, read B's tip header, advertise and serve one child of it.

    Returns the raw peer (still connected), the header served and the tip it was built on.
    """
    chain_id = genesis(NETWORK_REGTEST).header.hash
    x = RawPeer()
    await x.connect("127.0.0.1", target.port)
    await x.handshake(
        HelloParams(
            chain_id=chain_id, capabilities=CAP_DISCOVERY | CAP_HEADER_SYNC | CAP_BLOCK_SYNC
        )
    )
    sid = x.open_header_sync()
    status = await x.recv_hs_of(sid, HStatus)
    assert isinstance(status, HStatus)
    tip = status.tip_height
    # Our genesis Status lets B answer us (§8.5 step 6); then fetch B's tip header.
    x.send_hs(sid, hs_status(0, chain_id))
    x.send_hs(sid, hs_get_headers(tip, 1))
    answer = await x.recv_hs_of(sid, HHeaders)
    assert isinstance(answer, HHeaders) and len(answer.headers) == 1
    parent = answer.decoded()[0]
    assert parent.hash == status.tip_hash
    forged = mine_child(parent, os.urandom(512), time_step=time_step).header
    x.send_hs(sid, hs_status(forged.height, forged.hash))
    ask = await x.recv_hs_of(sid, HGetHeaders, timeout=10.0)
    assert isinstance(ask, HGetHeaders) and ask.start_height == forged.height, ask
    x.send_hs(sid, hs_headers([forged.encode()], [512]))
    return x, forged, tip


async def sync_first(http: aiohttp.ClientSession, miner: NodeProc, target: NodeProc) -> None:
    await wait_for_snapshot(
        http, target, lambda s: verified_of(s)[0] >= BLOCKS, SYNC_S, "B's first block sync"
    )


def store_is_consistent(node: NodeProc) -> tuple[int, list[str]]:
    store = ChainStore(node.data_dir / "chain.sqlite3", readonly=True)
    try:
        verified = store.verified_tip()
        return (-1 if verified is None else verified), store.check_consistency()
    finally:
        store.close()


async def test_one_unserved_header_no_longer_stops_block_sync(tmp_path: Path) -> None:
    procs = Procs()
    try:
        miner, _honest, target = await start_network(procs, tmp_path)
        async with aiohttp.ClientSession() as http:
            await sync_first(http, miner, target)
            # The miner may win the race for the next height; then try on the new tip.
            forged: RawHeader | None = None
            for _attempt in range(5):
                x, header, _tip = await offer_one_header(target, time_step=1)
                try:
                    await wait_for_snapshot(
                        http,
                        target,
                        lambda s, h=header: header_of(s) == (h.height, h.hash.hex()),
                        3.0,
                        "B to store the forged header",
                    )
                    forged = header
                except AssertionError:
                    continue
                finally:
                    await x.aclose()
                break
            assert forged is not None, "the miner won the race five times in a row"

            # It is stuck behind a header nobody serves, until the watchdog gives it up...
            snap = await wait_for_snapshot(
                http,
                target,
                lambda s: verified_of(s)[0] > forged.height and header_of(s)[0] > forged.height,
                RECOVER_S,
                "B's verified tip to pass the unserved header's height",
            )
            assert snap["header_sync"]["abandoned"] >= 1
            # ... and then follows the miner's chain to its tip, with nothing stranded.
            miner_snap = await wait_for_snapshot(
                http, miner, lambda s: verified_of(s)[0] > forged.height, 10.0, "A mining"
            )
            goal = verified_of(miner_snap)[0]
            final = await wait_for_snapshot(
                http,
                target,
                lambda s: verified_of(s)[0] >= goal and idle_and_sound(s),
                SYNC_S,
                "B at A's tip and idle",
            )
            assert final["chain"]["header_tip"]["hash"] != forged.hash.hex()
        target.process.send_signal(signal.SIGTERM)
        assert await target.process.wait() == 0, target.log_tail()
        verified, problems = store_is_consistent(target)
        assert problems == [] and verified >= goal
        assert "Traceback" not in target.log.read_text(errors="replace")
        assert "Traceback" not in miner.log.read_text(errors="replace")
    finally:
        await procs.stop_all()


async def test_a_header_going_back_in_time_is_refused(tmp_path: Path) -> None:
    procs = Procs()
    try:
        miner, _honest, target = await start_network(procs, tmp_path)
        async with aiohttp.ClientSession() as http:
            await sync_first(http, miner, target)
            x, forged, tip = await offer_one_header(target, time_step=-1000)
            try:
                snap = await wait_for_snapshot(
                    http,
                    target,
                    lambda s: any(
                        r["reason"] == "invalid_range" and r["service"] == "header_sync"
                        for r in s["misbehavior"]
                    ),
                    10.0,
                    "invalid_range recorded against the backwards header",
                )
                assert header_of(snap)[1] != forged.hash.hex()
            finally:
                await x.aclose()
            # Block sync goes on: B follows the miner past the height of the refused header.
            final = await wait_for_snapshot(
                http,
                target,
                lambda s: verified_of(s)[0] >= tip + 2 and idle_and_sound(s),
                SYNC_S,
                "B past the refused header's height and idle",
            )
            assert final["header_sync"]["abandoned"] == 0
        target.process.send_signal(signal.SIGTERM)
        assert await target.process.wait() == 0, target.log_tail()
        _verified, problems = store_is_consistent(target)
        assert problems == []
    finally:
        await procs.stop_all()
