"""Seeded chain generation, validation by reason, and chain work."""

from __future__ import annotations

import dataclasses
import hashlib
from itertools import pairwise

import pytest

from node_core.chain.genesis import genesis_header
from node_core.chain.miner import (
    MIN_PREGEN_BODY,
    ChainError,
    ChainReject,
    chain_work,
    make_block,
    pregenerate,
    validate_block,
    validate_header,
    validate_headers,
    validate_link,
)
from node_core.chain.model import HEADER_VERSION, Block, BlockHeader, body_root
from node_core.chain.pow import meets_pow, solve
from node_core.protocol.limits import NetworkId

NET = NetworkId.REGTEST


def _digest(blocks: list[Block]) -> bytes:
    h = hashlib.sha256()
    for b in blocks:
        h.update(b.encode())
    return h.digest()


@pytest.fixture(scope="module")
def chain() -> list[Block]:
    return list(pregenerate(NET, 300, seed=42))


def test_pregenerate_is_deterministic(chain: list[Block]) -> None:
    again = list(pregenerate(NET, 300, seed=42))
    assert again == chain
    assert _digest(again) == _digest(chain)
    # A prefix of a longer run is the shorter run: generation is a stream, not a batch.
    assert list(pregenerate(NET, 50, seed=42)) == chain[:50]


def test_different_seeds_differ(chain: list[Block]) -> None:
    other = list(pregenerate(NET, 300, seed=43))
    assert other[0].header.prev_hash == chain[0].header.prev_hash  # both build on genesis
    assert other[0].hash != chain[0].hash
    assert _digest(other) != _digest(chain)


def test_every_block_validates_and_links(chain: list[Block]) -> None:
    prev = genesis_header(NET)
    for block in chain:
        validate_block(block, prev, min_bits=8)
        assert block.header.prev_hash == prev.hash
        assert block.header.height == prev.height + 1
        assert block.header.time > prev.time
        assert block.header.body_root == body_root(block.body)
        assert meets_pow(block.header)
        prev = block.header
    assert validate_headers(genesis_header(NET), [b.header for b in chain]) == chain[-1].header
    assert chain[-1].height == 300


def test_body_sizes_vary_around_the_average(chain: list[Block]) -> None:
    sizes = [len(b.body) for b in chain]
    assert min(sizes) >= MIN_PREGEN_BODY and max(sizes) <= 3 * 8192
    assert len(set(sizes)) > 250
    assert 6000 < sum(sizes) / len(sizes) < 10500
    small = list(pregenerate(NET, 20, seed=1, avg_body=100))
    assert all(1 <= len(b.body) <= 199 for b in small)


def test_pregenerate_extends_a_given_parent(chain: list[Block]) -> None:
    fork_point = chain[99].header
    branch = list(pregenerate(NET, 250, seed=7, parent=fork_point))
    assert branch[0].header.prev_hash == fork_point.hash
    assert branch[0].height == 101
    validate_headers(fork_point, [b.header for b in branch])
    # The branch (100 + 250 blocks) outweighs the original 300 at equal difficulty.
    main_work = chain_work(b.header for b in chain)
    fork_work = chain_work([b.header for b in chain[:100]] + [b.header for b in branch])
    assert fork_work > main_work


def test_pregenerate_argument_checks() -> None:
    assert list(pregenerate(NET, 0, seed=1)) == []
    with pytest.raises(ValueError):
        list(pregenerate(NET, -1, seed=1))
    with pytest.raises(ValueError):
        list(pregenerate(NET, 1, seed=1, avg_body=0))


def test_bits_parameter(chain: list[Block]) -> None:
    easy = list(pregenerate(NET, 10, seed=1, bits=2))
    assert all(b.header.bits == 2 for b in easy)
    with pytest.raises(ChainError) as exc:
        validate_headers(genesis_header(NET), [b.header for b in easy], min_bits=8)
    assert exc.value.reason is ChainReject.LOW_DIFFICULTY
    assert chain_work(b.header for b in easy) == 10 * 4
    assert chain_work([]) == 0


# --- tampering ------------------------------------------------------------------------------


def _reason(fn: object, *args: object) -> ChainReject:
    with pytest.raises(ChainError) as exc:
        fn(*args)  # type: ignore[operator]
    return exc.value.reason


def test_tampered_body_is_rejected(chain: list[Block]) -> None:
    b = chain[10]
    flipped = bytes([b.body[0] ^ 1]) + b.body[1:]
    assert _reason(validate_block, Block(b.header, flipped), chain[9].header) == (
        ChainReject.BAD_BODY_ROOT
    )
    assert _reason(validate_block, Block(b.header, b.body[:-1])) == ChainReject.BAD_BODY_ROOT


def test_tampered_prev_hash_is_rejected(chain: list[Block]) -> None:
    h = chain[10].header
    forged = solve(dataclasses.replace(h, prev_hash=b"\x01" * 32))  # valid PoW, wrong parent
    assert _reason(validate_link, chain[9].header, forged) == ChainReject.BAD_PREV_HASH
    assert _reason(validate_link, chain[8].header, chain[10].header) == ChainReject.BAD_HEIGHT


def test_tampered_nonce_is_rejected(chain: list[Block]) -> None:
    h = chain[10].header
    bad = next(
        h.with_nonce(n)
        for n in range(h.nonce + 1, h.nonce + 10_000)
        if not meets_pow(h.with_nonce(n))
    )
    assert _reason(validate_link, chain[9].header, bad) == ChainReject.BAD_POW
    assert _reason(validate_block, Block(bad, chain[10].body)) == ChainReject.BAD_POW
    assert _reason(validate_header, bad) == ChainReject.BAD_POW


def test_wrong_height_time_and_version_are_rejected(chain: list[Block]) -> None:
    prev, h = chain[9].header, chain[10].header
    wrong_height = solve(dataclasses.replace(h, height=h.height + 1))
    assert _reason(validate_link, prev, wrong_height) == ChainReject.BAD_HEIGHT
    early = solve(dataclasses.replace(h, time=prev.time - 1))
    assert _reason(validate_link, prev, early) == ChainReject.TIME_BEFORE_PARENT
    validate_link(prev, solve(dataclasses.replace(h, time=prev.time)))  # equal time is fine
    v2 = solve(dataclasses.replace(h, version=HEADER_VERSION + 1))
    assert _reason(validate_link, prev, v2) == ChainReject.BAD_VERSION


def test_validate_headers_stops_at_first_bad_link(chain: list[Block]) -> None:
    hs = [b.header for b in chain[:20]]
    hs[12] = hs[13]
    with pytest.raises(ChainError) as exc:
        validate_headers(genesis_header(NET), hs)
    assert exc.value.reason is ChainReject.BAD_HEIGHT
    assert "bad_height" in str(exc.value)


def test_make_block_never_goes_back_in_time() -> None:
    g = genesis_header(NET)
    blk = make_block(g, b"tx", time=g.time - 100)
    assert blk.header.time == g.time
    validate_block(blk, g)


def test_chain_work_sums_per_header_work(chain: list[Block]) -> None:
    assert chain_work(b.header for b in chain) == 300 * 256
    mixed: list[BlockHeader] = [chain[0].header, dataclasses.replace(chain[1].header, bits=10)]
    assert chain_work(mixed) == 256 + 1024


def test_headers_link_pairwise(chain: list[Block]) -> None:
    for a, b in pairwise(chain):
        assert b.header.prev_hash == a.hash
