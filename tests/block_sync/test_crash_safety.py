"""Crash safety of block sync with real processes (issue 5 acceptance).

A server ``zakura node`` pre-generates a 20,000-block chain; a client ``zakura node``
bootstrapped to it block-syncs from genesis. The client is SIGKILLed at five seeded moments
of its sync (when its API reports a verified tip past a seeded random height) and restarted
on the same data dir each time. After every kill, with nothing running on that store, the
test opens it read-only - so no tip repair runs, the file is checked exactly as the crash
left it - and checks that it is consistent, that every stored block is the server's block
(header linkage, hashes and ``body_root`` of every stored body) and that no block the node
had reported verified was lost. Finally the client finishes and must end at the server's tip.

Everything is real: processes, TCP on 127.0.0.1, the HTTP API, SQLite files. Waits poll a
condition against a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from node_core.chain.model import BlockHeader
from node_core.chain.store import ChainStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from prockit import POLL_SECS, Procs, snapshot, verified_of

BLOCKS = 20_000
CHAIN_SEED = 1
#: Seed of the kill moments; a failure names the thresholds, and this reproduces them.
KILL_SEED = 5_2026
KILLS = 5
#: Thresholds are at least this far apart (and this far below the tip), so each restart
#: resumes below the next one and is killed while it is really syncing, not on its first poll.
MIN_GAP = 1_500
SYNC_SECS = 60.0

pytestmark = pytest.mark.timeout(240)


# ---------------------------------------------------------------------- store checks
@contextmanager
def open_readonly(path: Path) -> Iterator[ChainStore]:
    store = ChainStore(path, readonly=True)
    try:
        yield store
    finally:
        store.close()


def kill_thresholds(rng: random.Random) -> list[int]:
    """``KILLS`` increasing heights in (0, BLOCKS), at least ``MIN_GAP`` apart."""
    while True:
        picks = sorted(rng.sample(range(1, BLOCKS - MIN_GAP), KILLS))
        if all(b - a >= MIN_GAP for a, b in itertools.pairwise(picks)):
            return picks


def check_store(path: Path, server_headers: list[bytes], at_least: int, what: str) -> int:
    """Check a client store as a crash left it; returns its verified tip.

    ``check_consistency`` covers SQLite integrity, header contiguity and ``prev_hash`` linkage
    as stored, meta tips against data and bodies below the verified tip. It treats headers and
    bodies as opaque bytes, so this also decodes every header (its hash, height and prev_hash
    agree with the stored row, and it is the server's header at that height) and checks every
    stored body, above the verified tip too, against its header's ``body_root``.
    """
    with open_readonly(path) as store:
        problems = store.check_consistency()
        assert problems == [], f"{what}: inconsistent store: {problems}"
        verified = store.verified_tip()
        tip = store.header_tip()
        assert verified is not None and tip is not None, f"{what}: empty store"
        assert verified >= at_least, (
            f"{what}: committed blocks lost: the API reported verified tip {at_least} before "
            f"the kill, the store has {verified}"
        )
        headers = store.headers_range(0, tip[0] + 1)
        assert len(headers) == tip[0] + 1, f"{what}: {len(headers)} headers for tip {tip[0]}"
        assert headers == server_headers[: len(headers)], f"{what}: headers differ from server's"
        prev: bytes | None = None
        bodies = 0
        for height, raw in enumerate(headers):
            header = BlockHeader.decode(raw)
            assert header.height == height, f"{what}: header at {height} says {header.height}"
            assert store.hash_at(height) == header.hash, f"{what}: stored hash at {height}"
            if prev is not None:
                assert header.prev_hash == prev, f"{what}: header {height} does not link"
            prev = header.hash
            body = store.body_at(height)
            if body is None:
                assert height > verified, f"{what}: no body at {height} <= verified {verified}"
                continue
            bodies += 1
            root = hashlib.blake2b(body, digest_size=32).digest()
            assert root == header.body_root, f"{what}: body at {height} != body_root"
        assert bodies >= verified + 1
        return verified


# ---------------------------------------------------------------------- the test
async def test_kill_9_during_block_sync_loses_nothing_and_resumes(tmp_path: Path) -> None:
    rng = random.Random(KILL_SEED)
    thresholds = kill_thresholds(rng)
    client_dir = tmp_path / "client"
    client_db = client_dir / "chain.sqlite3"
    procs = Procs()
    started = time.monotonic()
    report: list[str] = [f"kill thresholds (seed {KILL_SEED}): {thresholds}"]
    try:
        server = await procs.start(
            tmp_path / "server", "--blocks", str(BLOCKS), "--seed", str(CHAIN_SEED)
        )
        report.append(f"server ready after {time.monotonic() - started:.1f} s")
        with open_readonly(server.data_dir / "chain.sqlite3") as store:
            server_headers = store.headers_range(0, BLOCKS + 1)
            assert store.verified_tip() == BLOCKS
        assert len(server_headers) == BLOCKS + 1

        async with aiohttp.ClientSession() as http:
            server_snap = await snapshot(http, server)
            assert server_snap is not None
            server_tip = verified_of(server_snap)
            assert server_tip == (BLOCKS, BlockHeader.decode(server_headers[-1]).hash.hex())

            stored = -1  # the client's verified tip on disk before each start
            for round_, threshold in enumerate(thresholds):
                what = f"kill {round_} at threshold {threshold}"
                client = await procs.start(client_dir, "--bootstrap", server.listen)
                observed = -1
                first: int | None = None
                deadline = time.monotonic() + SYNC_SECS
                while observed < threshold:
                    snap = await snapshot(http, client)
                    if snap is not None:
                        observed = verified_of(snap)[0]
                        first = observed if first is None else first
                    assert client.process.returncode is None, (
                        f"{what}: client exited with {client.process.returncode}:\n"
                        f"{client.log_tail()}"
                    )
                    assert time.monotonic() < deadline, (
                        f"{what}: client stuck at verified tip {observed}:\n{client.log_tail()}"
                    )
                    await asyncio.sleep(POLL_SECS)
                client.process.send_signal(signal.SIGKILL)
                assert await client.process.wait() == -signal.SIGKILL
                # A restart resumes from what is on disk instead of starting over.
                assert first is not None and first >= stored, (what, first, stored)
                stored = check_store(client_db, server_headers, observed, what)
                report.append(
                    f"{what}: resumed at {first}, killed after API said {observed}, "
                    f"store verified tip {stored}"
                )

            client = await procs.start(client_dir, "--bootstrap", server.listen)
            tip: tuple[int, str] | None = None
            deadline = time.monotonic() + SYNC_SECS
            while tip != server_tip:
                snap = await snapshot(http, client)
                tip = None if snap is None else verified_of(snap)
                assert client.process.returncode is None, client.log_tail()
                assert time.monotonic() < deadline, (
                    f"client did not reach the server's tip {server_tip}, at {tip}:\n"
                    f"{client.log_tail()}"
                )
                await asyncio.sleep(POLL_SECS)
            report.append(f"client at the server's tip {BLOCKS}")
        client.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await client.process.wait() == 0, client.log_tail()
        assert check_store(client_db, server_headers, BLOCKS, "final") == BLOCKS
        with open_readonly(client_db) as store:
            assert store.header_tip() == (BLOCKS, bytes.fromhex(server_tip[1]))
        assert "Traceback" not in client.log.read_text(errors="replace")
        assert "Traceback" not in server.log.read_text(errors="replace")
    finally:
        await procs.stop_all()
        report.append(f"total {time.monotonic() - started:.1f} s")
        print("\n" + "\n".join(report))
