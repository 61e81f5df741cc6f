"""UnavailableHeaders: abandoned header hashes, refused for a while (issue 16)."""

from __future__ import annotations

import pytest

from node_core.chain.genesis import genesis_header
from node_core.chain.miner import make_block
from node_core.chain.model import BlockHeader
from node_core.header_sync.unavailable import UnavailableHeaders
from node_core.protocol.limits import NetworkId


def chain(n: int) -> list[BlockHeader]:
    prev = genesis_header(NetworkId.REGTEST)
    out = []
    for i in range(n):
        block = make_block(prev, bytes([i]) * 8, time=prev.time + 1)
        out.append(block.header)
        prev = block.header
    return out


def test_refused_until_expiry_then_forgotten() -> None:
    u = UnavailableHeaders(ttl=10.0)
    u.add(b"h" * 32, 21, now=0.0)
    assert u.height_of(b"h" * 32, 9.9) == 21
    assert u.view(5.0) == [{"height": 21, "hash": (b"h" * 32).hex(), "expires_in_s": 5.0}]
    assert u.height_of(b"h" * 32, 10.0) is None
    assert len(u) == 0


def test_the_block_itself_lifts_the_refusal() -> None:
    u = UnavailableHeaders()
    u.add(b"h" * 32, 21, now=0.0)
    assert u.discard(b"h" * 32)
    assert not u.discard(b"h" * 32)
    assert u.height_of(b"h" * 32, 1.0) is None


def test_first_refused_finds_the_cut() -> None:
    headers = chain(5)
    u = UnavailableHeaders()
    assert u.first_refused(headers, 0.0) is None
    u.add(headers[3].hash, headers[3].height, now=0.0)
    u.add(headers[4].hash, headers[4].height, now=0.0)
    assert u.first_refused(headers, 1.0) == 3


def test_memory_is_bounded_oldest_first() -> None:
    u = UnavailableHeaders(capacity=3)
    for i in range(5):
        u.add(bytes([i]) * 32, i, now=0.0)
    assert len(u) == 3
    assert u.height_of(bytes([0]) * 32, 0.0) is None
    assert u.height_of(bytes([4]) * 32, 0.0) == 4


@pytest.mark.parametrize(("ttl", "capacity"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_bad_settings_are_refused(ttl: float, capacity: int) -> None:
    with pytest.raises(ValueError):
        UnavailableHeaders(ttl=ttl, capacity=capacity)
