"""ChainState: genesis stored whole, seeded pre-generation in batches, resume without rewriting,
tips matching the store, and refusal of another network's or another seed's chain."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from node_core.chain import BlockHeader, genesis_block, pregenerate
from node_core.chain.chainstate import CHAIN_FILE, ChainState, ChainStateError
from node_core.chain.store import ChainStore
from node_core.observe.journal import Journal
from node_core.protocol.limits import NetworkId

REGTEST = NetworkId.REGTEST


def _progress(journal: Journal) -> list[tuple[int, int]]:
    return [
        (int(e.fields["height"]), int(e.fields["of"]))  # type: ignore[arg-type]
        for e in journal.find(lambda e: e.table == "chain" and e.event == "pregenerate.progress")
    ]


def _data_version(watcher: ChainStore) -> int:
    """Changes whenever another connection commits to the file while ``watcher`` is open."""
    return int(watcher._db.execute("PRAGMA data_version").fetchone()[0])


async def test_open_stores_genesis_header_and_body(tmp_path: Path) -> None:
    chain = ChainState(tmp_path, REGTEST, Journal("t"))
    genesis = genesis_block(REGTEST)
    # Before open the tips are already genesis, so an unstarted node's snapshot is well-formed.
    assert chain.header_tip == chain.verified_tip == (0, genesis.hash)
    await chain.open()
    try:
        store = chain.store
        assert await store.hash_at(0) == genesis.hash
        assert await store.header_at(0) == genesis.header.encode()
        assert await store.body_at(0) == genesis.body
        assert chain.header_tip == chain.verified_tip == (0, genesis.hash)
        assert chain.target == 0
        assert await chain.check_consistency() == []
    finally:
        await chain.close()
    assert (tmp_path / CHAIN_FILE).exists()


async def test_pregenerate_then_reopen_resumes_without_rewriting(tmp_path: Path) -> None:
    journal = Journal("t")
    chain = ChainState(tmp_path, REGTEST, journal)
    await chain.open()
    try:
        assert await chain.pregenerate(1200, seed=7, batch=500) == 1200
        expected = list(pregenerate(REGTEST, 1200, 7))
        assert chain.header_tip == (1200, expected[-1].hash)
        assert chain.verified_tip == (1200, expected[-1].hash)
        assert chain.target == 1200
        assert _progress(journal) == [(500, 1200), (1000, 1200), (1200, 1200)]
        for block in (expected[0], expected[499], expected[500], expected[-1]):
            assert await chain.store.header_at(block.height) == block.header.encode()
            assert await chain.store.body_at(block.height) == block.body
        assert await chain.check_consistency() == []
    finally:
        await chain.close()

    journal2 = Journal("t")
    again = ChainState(tmp_path, REGTEST, journal2)
    await again.open()
    watcher = ChainStore(tmp_path / CHAIN_FILE, readonly=True)
    try:
        assert again.header_tip == (1200, expected[-1].hash)
        before = _data_version(watcher)
        assert await again.pregenerate(1200, seed=7) == 0
        assert await again.pregenerate(800, seed=7) == 0  # fewer than stored: nothing to do
        assert _progress(journal2) == []
        assert _data_version(watcher) == before, "a complete chain must not be rewritten"
        # Asking for more continues the same chain from the stored tip.
        assert await again.pregenerate(1500, seed=7) == 300
        longer = list(pregenerate(REGTEST, 1500, 7))
        assert longer[:1200] == expected
        assert again.header_tip == (1500, longer[-1].hash)
        assert again.verified_tip == (1500, longer[-1].hash)
        assert _progress(journal2) == [(1500, 1500)]
        assert _data_version(watcher) != before  # the watcher does see commits
        assert await again.check_consistency() == []
    finally:
        watcher.close()
        await again.close()


async def test_resume_fills_bodies_after_a_crash_between_commits(tmp_path: Path) -> None:
    blocks = list(pregenerate(REGTEST, 600, 3))
    chain = ChainState(tmp_path, REGTEST, Journal("t"))
    await chain.open()
    try:
        # What a kill between a batch's header commit and its body commit leaves behind.
        await chain.store.put_headers(
            1, [(b.hash, b.header.prev_hash, b.header.encode()) for b in blocks[:500]]
        )
        await chain.store.put_bodies([(b.height, b.body) for b in blocks[:200]])
        await chain.refresh()
        assert (chain.header_tip[0], chain.verified_tip[0]) == (500, 200)
        assert await chain.pregenerate(600, seed=3) == 400
        assert chain.header_tip == chain.verified_tip == (600, blocks[-1].hash)
        assert await chain.check_consistency() == []
    finally:
        await chain.close()


async def test_another_seed_or_network_is_refused(tmp_path: Path) -> None:
    chain = ChainState(tmp_path, REGTEST, Journal("t"))
    await chain.open()
    try:
        await chain.pregenerate(50, seed=1)
        with pytest.raises(ChainStateError, match="seed-2"):
            await chain.pregenerate(100, seed=2)
        assert chain.header_tip[0] == 50
    finally:
        await chain.close()
    other = ChainState(tmp_path, NetworkId.TESTNET, Journal("t"))
    with pytest.raises(ChainStateError, match="genesis"):
        await other.open()
    assert not other.is_open


async def test_tips_follow_writes_made_through_the_store(tmp_path: Path) -> None:
    chain = ChainState(tmp_path, REGTEST, Journal("t"))
    await chain.open()
    try:
        blocks = list(itertools.islice(pregenerate(REGTEST, 10, 5), 10))
        await chain.store.put_headers(
            1, [(b.hash, b.header.prev_hash, b.header.encode()) for b in blocks]
        )
        await chain.refresh()
        assert chain.header_tip == (10, blocks[-1].hash)
        assert chain.verified_tip[0] == 0
        chain.note_advertised(25)
        chain.note_advertised(12)
        assert chain.target == 25
        header = BlockHeader.decode(await chain.store.header_at(10) or b"")
        assert header.hash == blocks[-1].hash
    finally:
        await chain.close()
