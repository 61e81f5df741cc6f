"""Forward ranges ahead of the tip (deviation 33 in docs/PROTOCOL.md): what is planned.

The planning functions are pure, so these tests need no loop, socket or store; that the held
answers are checked and committed in order is covered end to end by the multi-peer syncs in
tests/node and the hostile header-sync suites.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from node_core.chain.genesis import Checkpoints, genesis_block
from node_core.header_sync.chain_index import HeaderIndex
from node_core.header_sync.planning import forward_ranges, pipeline
from node_core.header_sync.range_queue import AHEAD_ANCHOR
from node_core.protocol.limits import NetworkId


def peer(cap: int | None) -> Any:
    """A peer record with (or, for None, without) an applied Status advertising ``cap``."""
    status = None if cap is None else SimpleNamespace(max_headers_per_response=cap)
    return SimpleNamespace(status=status)


def test_one_peer_keeps_the_reference_plan() -> None:
    assert pipeline([peer(1000)], 4) == (4000, 1)
    assert pipeline([peer(1000), peer(None)], 4) == (4000, 1)  # no Status: not counted
    assert pipeline([], 4) == (4000, 1)


def test_several_peers_get_one_range_each_plus_one_of_the_smallest_cap() -> None:
    assert pipeline([peer(1000), peer(4000)], 4) == (1000, 3)
    assert pipeline([peer(500)] * 6, 4) == (500, 4)  # at most ranges_ahead
    assert pipeline([peer(1000)] * 3, 1) == (4000, 1)  # ranges_ahead=1: the reference's plan
    assert pipeline([peer(0), peer(9000)], 4) == (1, 3)  # caps clamped to 1..4000


def test_forward_ranges_chain_from_the_tip_and_only_the_first_knows_its_anchor() -> None:
    index = HeaderIndex(genesis_block(NetworkId.REGTEST).header)
    ranges = forward_ranges(index, 2500, Checkpoints(), 1000, 4)
    assert [(r.start_height, r.count) for r in ranges] == [(1, 1000), (1001, 1000), (2001, 500)]
    assert ranges[0].anchor_hash == index.tip_hash
    assert all(r.anchor_hash == AHEAD_ANCHOR for r in ranges[1:])
    assert forward_ranges(index, 0, Checkpoints(), 1000, 4) == []  # not behind


def test_a_range_reaching_a_checkpoint_ends_on_it_finalized() -> None:
    index = HeaderIndex(genesis_block(NetworkId.REGTEST).header)
    checkpoints = Checkpoints(((1500, b"\x01" * 32),))
    ranges = forward_ranges(index, 5000, checkpoints, 1000, 4)
    assert [(r.start_height, r.end_height, r.finalized) for r in ranges] == [
        (1, 1000, False),
        (1001, 1500, True),
        (1501, 2500, False),
        (2501, 3500, False),
    ]
