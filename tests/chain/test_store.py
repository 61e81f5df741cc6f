"""Tests for the SQLite chain store on real files: round trips, linkage, tips, reorg, resume,
the asyncio facade not blocking the loop, and kill -9 of a real writer process."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from node_core.chain.store import SCHEMA_VERSION, AsyncChainStore, ChainStore, StoreError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WRITER = HERE / "crash_writer.py"


def _load_writer() -> ModuleType:
    """Import the child script by path (tests/ has no packages), to share its block recipe."""
    spec = importlib.util.spec_from_file_location("chain_crash_writer", WRITER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cw = _load_writer()
GENESIS_PREV = b"\x00" * 32


def make_chain(
    n: int, start: int = 0, prev: bytes = GENESIS_PREV, salt: bytes = b""
) -> list[tuple[bytes, bytes, bytes]]:
    """``n`` linked (hash, prev_hash, header) triples from ``start``; ``salt`` forks a branch."""
    out = []
    for h in range(start, start + n):
        header = cw.header_for(h, prev) + salt
        hash_ = hashlib.blake2b(header, digest_size=32).digest()
        out.append((hash_, prev, header))
        prev = hash_
    return out


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChainStore]:
    s = ChainStore(tmp_path / "chain.sqlite")
    yield s
    s.close()


def test_empty_store(store: ChainStore) -> None:
    assert store.header_tip() is None
    assert store.verified_tip() is None
    assert store.hash_at(0) is None
    assert store.headers_range(0, 10) == []
    assert store.body_at(0) is None
    assert store.check_consistency() == []


def test_wal_and_full_sync(store: ChainStore) -> None:
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_headers_round_trip(store: ChainStore) -> None:
    chain = make_chain(10)
    store.put_headers(0, chain[:4])
    store.put_headers(4, chain[4:])
    assert store.header_tip() == (9, chain[9][0])
    assert store.headers_range(2, 3) == [c[2] for c in chain[2:5]]
    assert store.headers_range(8, 100) == [c[2] for c in chain[8:]]
    assert store.hash_at(5) == chain[5][0]
    assert store.header_at(5) == chain[5][2]
    assert store.height_of(chain[7][0]) == 7
    # Re-delivering an already stored range is harmless.
    store.put_headers(3, chain[3:6])
    assert store.header_tip() == (9, chain[9][0])
    assert store.check_consistency() == []


def test_linkage_refused_atomically(store: ChainStore) -> None:
    chain = make_chain(6)
    store.put_headers(0, chain[:3])
    other = make_chain(3, start=3, prev=b"\x11" * 32)
    with pytest.raises(StoreError, match="does not link"):
        store.put_headers(3, other)
    # A gap (no stored predecessor) is refused too.
    with pytest.raises(StoreError, match="does not link"):
        store.put_headers(4, chain[4:])
    # A break inside the batch refuses the whole batch: nothing of it is written.
    broken = [chain[3], chain[4], (chain[5][0], b"\x22" * 32, chain[5][2])]
    with pytest.raises(StoreError, match="does not link"):
        store.put_headers(3, broken)
    assert store.header_tip() == (2, chain[2][0])
    assert store.hash_at(3) is None
    # A different header at a stored height needs truncate_above first.
    fork = make_chain(2, start=1, prev=chain[0][0], salt=b"fork")
    with pytest.raises(StoreError, match="conflicts"):
        store.put_headers(1, fork)
    with pytest.raises(StoreError, match="32"):
        store.put_headers(3, [(b"short", chain[2][0], b"h")])
    assert store.check_consistency() == []


def test_bodies_need_headers(store: ChainStore) -> None:
    store.put_headers(0, make_chain(3))
    with pytest.raises(StoreError, match="no stored header"):
        store.put_bodies([(1, b"one"), (5, b"five")])
    assert store.body_at(1) is None  # the whole batch rolled back
    assert store.verified_tip() is None


def test_verified_tip_contiguous_with_gaps_filled_later(store: ChainStore) -> None:
    store.put_headers(0, make_chain(10))
    assert store.put_bodies([(1, b"b1"), (2, b"b2"), (5, b"b5")]) is None
    assert store.verified_tip() is None
    assert store.put_bodies([(0, b"b0")]) == 2
    assert store.put_bodies([(4, b"b4"), (6, b"b6")]) == 2
    assert store.put_bodies([(3, b"b3")]) == 6
    assert store.verified_tip() == 6
    assert store.body_at(5) == b"b5"
    assert store.check_consistency() == []


def test_truncate_above(store: ChainStore) -> None:
    chain = make_chain(10)
    store.put_headers(0, chain)
    store.put_bodies([(h, b"b%d" % h) for h in range(8)])
    store.truncate_above(5)
    assert store.header_tip() == (5, chain[5][0])
    assert store.verified_tip() == 5
    assert store.body_at(6) is None and store.hash_at(6) is None
    assert store.check_consistency() == []
    # The competing branch now links at 6.
    fork = make_chain(6, start=6, prev=chain[5][0], salt=b"fork")
    store.put_headers(6, fork)
    assert store.header_tip() == (11, fork[-1][0])
    # Truncating below the verified tip lowers it; above it leaves it alone.
    store.truncate_above(9)
    assert store.verified_tip() == 5
    store.truncate_above(2)
    assert store.verified_tip() == 2
    store.truncate_above(-1)
    assert store.header_tip() is None and store.verified_tip() is None
    assert store.check_consistency() == []


def test_resume_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    chain = make_chain(20)
    s = ChainStore(path)
    s.put_headers(0, chain)
    s.put_bodies([(h, b"x") for h in range(12)] + [(15, b"y")])
    s.close()
    s = ChainStore(path)
    assert s.header_tip() == (19, chain[19][0])
    assert s.verified_tip() == 11
    assert s.body_at(15) == b"y"
    s.put_headers(20, make_chain(1, start=20, prev=chain[19][0]))
    assert s.check_consistency() == []
    s.close()


def test_reopen_repairs_meta_that_disagrees(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    s = ChainStore(path)
    s.put_headers(0, make_chain(5))
    s.put_bodies([(h, b"x") for h in range(3)])
    s.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = 99 WHERE key = 'header_tip'")
    db.execute("UPDATE meta SET value = 0 WHERE key = 'verified_tip'")
    db.commit()
    db.close()
    s = ChainStore(path, readonly=True)
    assert len(s.check_consistency()) >= 2  # the damage is visible
    s.close()
    s = ChainStore(path)
    assert s.header_tip() is not None and s.header_tip()[0] == 4  # type: ignore[index]
    assert s.verified_tip() == 2
    assert s.check_consistency() == []
    s.close()


def test_check_consistency_reports_broken_linkage(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    s = ChainStore(path)
    s.put_headers(0, make_chain(5))
    s.put_bodies([(h, b"x") for h in range(4)])
    s._db.execute("UPDATE headers SET prev_hash = ? WHERE height = 3", (b"\x33" * 32,))
    s._db.execute("DELETE FROM bodies WHERE height = 1")
    problems = s.check_consistency()
    assert any("prev_hash" in p and "3" in p for p in problems)
    assert any("missing bodies" in p for p in problems)
    s.close()


def test_unknown_schema_version_refused(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    ChainStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError) as info:
        ChainStore(path)
    message = str(info.value)
    assert str(path) in message and "99" in message and str(SCHEMA_VERSION) in message


def test_readonly_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    ChainStore(path).close()
    s = ChainStore(path, readonly=True)
    with pytest.raises(StoreError, match="read-only"):
        s.put_headers(0, make_chain(1))
    s.close()


async def test_async_facade_round_trip(tmp_path: Path) -> None:
    store = await AsyncChainStore.open(tmp_path / "chain.sqlite")
    chain = make_chain(8)
    await store.put_headers(0, chain)
    assert await store.put_bodies([(h, b"b%d" % h) for h in range(5)]) == 4
    # The reader connection sees every commit whose await has resolved.
    assert await store.header_tip() == (7, chain[7][0])
    assert await store.verified_tip() == 4
    assert await store.hash_at(3) == chain[3][0]
    assert await store.header_at(3) == chain[3][2]
    assert await store.height_of(chain[6][0]) == 6
    assert await store.headers_range(6, 5) == [chain[6][2], chain[7][2]]
    assert await store.body_at(2) == b"b2"
    with pytest.raises(StoreError, match="does not link"):
        await store.put_headers(8, make_chain(1, start=8, prev=b"\x44" * 32))
    await store.truncate_above(3)
    assert await store.verified_tip() == 3
    assert await store.check_consistency() == []
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.header_tip()


async def test_async_write_does_not_block_loop(tmp_path: Path) -> None:
    store = await AsyncChainStore.open(tmp_path / "chain.sqlite")
    await store.put_headers(0, make_chain(50))
    bodies = [(h, os.urandom(1 << 20)) for h in range(50)]  # 50 MiB in one transaction
    writing = False
    ticks_during_write = 0
    max_gap = 0.0

    async def ticker() -> None:
        nonlocal ticks_during_write, max_gap
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            max_gap = max(max_gap, now - last)
            last = now
            if writing:
                ticks_during_write += 1

    task = asyncio.create_task(ticker())
    writing = True
    assert await store.put_bodies(bodies) == 49
    writing = False
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Only that the loop kept running during the commit; max_gap is informative, not asserted.
    assert ticks_during_write > 0, f"loop starved during write (max gap {max_gap:.3f}s)"
    assert await store.body_at(49) == bodies[49][1]
    await store.close()


def _kill_once(path: Path, rng: random.Random, round_: int) -> set[int]:
    """Start a writer, let it report some commits, SIGKILL it at a random moment."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(rng.randrange(1 << 30))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
        text=True,
    )
    reported: set[int] = set()
    try:
        assert proc.stdout is not None
        for _ in range(rng.randint(1, 8)):
            line = proc.stdout.readline()  # bounded by the pytest timeout if the child hangs
            assert line, f"writer exited early in round {round_}: {proc.stderr.read()}"  # type: ignore[union-attr]
            reported.add(int(line))
        time.sleep(rng.uniform(0.0, 0.2))  # the random kill moment, mid-transaction or not
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Lines printed before the kill landed are committed heights too.
    reported.update(int(x) for x in out.split() if x.strip())
    assert proc.returncode == -signal.SIGKILL
    return reported


def test_kill_9_never_corrupts_or_loses_committed_blocks(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    rng = random.Random(20261126)
    committed: set[int] = set()
    for round_ in range(5):
        committed |= _kill_once(path, rng, round_)
        store = ChainStore(path)
        try:
            assert store.check_consistency() == [], f"round {round_}"
            top = max(committed)
            verified = store.verified_tip()
            assert verified is not None and verified >= top, (round_, verified, top)
            tip = store.header_tip()
            assert tip is not None and tip[0] >= top
            for h in sorted(committed):
                assert store.body_at(h) == cw.body_for(h), (round_, h)
            assert (
                store.hash_at(top)
                == hashlib.blake2b(store.header_at(top) or b"", digest_size=32).digest()
            )
        finally:
            store.close()


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_a_damaged_file_is_refused_with_one_sentence_and_left_alone(
    tmp_path: Path, damage: str
) -> None:
    """Issue 15: a damaged store gives a StoreError naming the file and what to do (which
    the command line prints as one line, exit 2), never a sqlite3 traceback, and is not
    written to."""
    path = tmp_path / "chain.sqlite3"
    store = ChainStore(path)
    for i in range(200):  # enough pages that a cut lands inside the data
        store._db.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (f"pad{i}", "x" * 2000))
    store.close()
    if damage == "truncated":
        os.truncate(path, path.stat().st_size // 3)
    else:
        path.write_bytes(os.urandom(100_000))
    for extra in (tmp_path / "chain.sqlite3-wal", tmp_path / "chain.sqlite3-shm"):
        extra.unlink(missing_ok=True)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreError) as err:
        ChainStore(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert "nothing was written" in message and "move it away" in message
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
