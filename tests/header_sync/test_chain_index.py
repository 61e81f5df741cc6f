"""validate_run's per-response rules and the anchor times the reactor holds it to.

The first header of a Headers answer has no parent inside the answer: its parent is the
range's anchor, which the node knows only by hash and time. These tests pin that the first
header is held to the anchor's time (docs/PROTOCOL.md §8.2: "time: never less than the
parent's (equal is allowed)") wherever the anchor lives: the main chain (forward ranges and
fork-search probes) or a competing branch (branch extensions).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from node_core.chain.genesis import genesis_header
from node_core.chain.miner import ChainError, ChainReject, pregenerate
from node_core.chain.model import BlockHeader
from node_core.chain.pow import meets_pow, solve
from node_core.header_sync.chain_index import HeaderIndex, LinkError, PlanKind, validate_run
from node_core.protocol.limits import NetworkId

NET = NetworkId.REGTEST
BITS = 8


@pytest.fixture(scope="module")
def main() -> list[BlockHeader]:
    """Heights 1..10 of a seeded chain (pregenerate spaces times 1..30 s apart)."""
    return [b.header for b in pregenerate(NET, 10, seed=11)]


def _child(parent: BlockHeader, *, time_step: int = 1, **fields: Any) -> BlockHeader:
    """A child of ``parent`` with its proof of work solved; ``fields`` override any field."""
    header = BlockHeader(
        version=1,
        height=parent.height + 1,
        prev_hash=parent.hash,
        body_root=bytes(32),
        time=parent.time + time_step,
        bits=BITS,
        nonce=0,
    )
    return solve(dataclasses.replace(header, **fields))


def _reason(start: int, anchor: BlockHeader, run: list[BlockHeader], **kw: int | None) -> str:
    anchor_time = kw.pop("anchor_time", anchor.time)
    with pytest.raises(ChainError) as info:
        validate_run(start, anchor.hash, run, anchor_time=anchor_time, min_bits=BITS)
    return info.value.reason


# ------------------------------------------------------------------ the time rule at the anchor


@pytest.mark.parametrize("back", [1, 1000])
def test_first_header_before_the_anchor_time_is_rejected(
    main: list[BlockHeader], back: int
) -> None:
    """The reported defect: a first header ``back`` seconds before its anchor was accepted,
    because only headers inside the run were compared by time."""
    anchor = main[4]
    early = _child(anchor, time_step=-back)
    assert _reason(anchor.height + 1, anchor, [early]) == ChainReject.TIME_BEFORE_PARENT
    # And followed by a well-formed rest of the run: still the first header that fails.
    rest = _child(early, time_step=back + 5)
    assert _reason(anchor.height + 1, anchor, [early, rest]) == ChainReject.TIME_BEFORE_PARENT


def test_first_header_at_the_anchor_time_is_accepted(main: list[BlockHeader]) -> None:
    """Equal time is allowed (an interval miner may stamp two blocks in one second)."""
    anchor = main[4]
    same = _child(anchor, time_step=0)
    again = _child(same, time_step=0)
    validate_run(
        anchor.height + 1, anchor.hash, [same, again], anchor_time=anchor.time, min_bits=BITS
    )


def test_time_going_back_inside_the_run_is_rejected(main: list[BlockHeader]) -> None:
    anchor = main[4]
    first = _child(anchor, time_step=10)
    back = _child(first, time_step=-1)
    assert _reason(anchor.height + 1, anchor, [first, back]) == ChainReject.TIME_BEFORE_PARENT


def test_unknown_anchor_time_skips_only_the_time_rule(main: list[BlockHeader]) -> None:
    """``None`` is what the reactor passes when the index no longer holds the anchor; the
    run is then STALE for the plan, but its other rules are still checked."""
    anchor = main[4]
    early = _child(anchor, time_step=-1000)
    validate_run(anchor.height + 1, anchor.hash, [early], anchor_time=None, min_bits=BITS)
    bad_version = _child(anchor, time_step=-1000, version=2)
    assert _reason(anchor.height + 1, anchor, [bad_version], anchor_time=None) == (
        ChainReject.BAD_VERSION
    )


# ------------------------------------------------------------------ the other rules of a run


def test_other_rules_of_a_run(main: list[BlockHeader]) -> None:
    """Every other §8.5 step 4 rule, each broken alone, first header and later header."""
    anchor = main[4]
    start = anchor.height + 1
    good = _child(anchor)
    assert _reason(start, anchor, [_child(anchor, height=start + 1)]) == ChainReject.BAD_HEIGHT
    with pytest.raises(LinkError):
        validate_run(
            start,
            anchor.hash,
            [_child(anchor, prev_hash=bytes(32))],
            anchor_time=anchor.time,
            min_bits=BITS,
        )
    assert _reason(start, anchor, [_child(anchor, version=2)]) == ChainReject.BAD_VERSION
    assert _reason(start, anchor, [_child(anchor, bits=7)]) == ChainReject.LOW_DIFFICULTY
    unsolved = dataclasses.replace(good, nonce=good.nonce + 1)
    while meets_pow(unsolved):
        unsolved = dataclasses.replace(unsolved, nonce=unsolved.nonce + 1)
    assert _reason(start, anchor, [unsolved]) == ChainReject.BAD_POW
    later: dict[ChainReject, BlockHeader] = {
        ChainReject.BAD_HEIGHT: _child(good, height=good.height + 2),
        ChainReject.BAD_PREV_HASH: _child(good, prev_hash=anchor.hash),
        ChainReject.BAD_VERSION: _child(good, version=2),
        ChainReject.LOW_DIFFICULTY: _child(good, bits=7),
    }
    for reason, second in later.items():
        assert _reason(start, anchor, [good, second]) == reason


# ------------------------------------------------------------------ where the anchor time is


def test_time_at_main_chain_and_branch(main: list[BlockHeader]) -> None:
    """The anchor time comes from the main chain by height, or from the branch's headers,
    and only for the exact hash: anything else is an anchor the index no longer holds."""
    index = HeaderIndex(genesis_header(NET))
    index.load(main)
    assert index.time_at(0, genesis_header(NET).hash) == genesis_header(NET).time
    assert index.time_at(7, main[6].hash) == main[6].time
    assert index.time_at(7, main[5].hash) is None  # another header's hash
    assert index.time_at(11, main[6].hash) is None  # above the tip
    branch = [b.header for b in pregenerate(NET, 3, seed=99, parent=main[5])]  # heights 7..9
    plan = index.plan("peer", branch)
    assert plan.kind is PlanKind.BRANCH
    index.apply(plan)
    assert index.branch is not None and index.branch.tip_hash == branch[-1].hash
    assert index.time_at(9, branch[-1].hash) == branch[-1].time  # the branch tip
    assert index.time_at(8, branch[0].hash) is None  # a branch hash, at the wrong height
    assert index.time_at(8, branch[1].hash) == branch[1].time
    assert index.time_at(9, main[8].hash) == main[8].time  # the main chain at that height


def test_branch_extension_is_held_to_the_branch_tip_time(main: list[BlockHeader]) -> None:
    """A branch extension's anchor is the branch tip, whose time the main chain at that
    height does not know: a first header before the tip's time is rejected, one at it is
    accepted and extends the branch."""
    index = HeaderIndex(genesis_header(NET))
    index.load(main)
    # Heights 7..8, stamped far later than the main chain's 7..8.
    first = _child(main[5], time_step=500, body_root=b"\x02" * 32)
    branch = [first, _child(first, time_step=500)]
    index.apply(index.plan("peer", branch))
    assert index.branch is not None and index.branch.tip_hash == branch[-1].hash
    tip = branch[-1]
    anchor_time = index.time_at(tip.height, tip.hash)
    assert anchor_time == tip.time
    early = _child(tip, time_step=-100)
    assert early.time >= index.times[tip.height]  # only the branch tip's time catches it
    assert _reason(tip.height + 1, tip, [early], anchor_time=anchor_time) == (
        ChainReject.TIME_BEFORE_PARENT
    )
    same = _child(tip, time_step=0)
    validate_run(tip.height + 1, tip.hash, [same], anchor_time=anchor_time, min_bits=BITS)
    plan = index.plan("peer", [same])
    assert plan.kind is PlanKind.BRANCH


def test_probe_anchor_below_the_tip_uses_that_heights_time(main: list[BlockHeader]) -> None:
    """A fork-search probe is anchored on a main-chain header below the tip: the first header
    of its answer is held to that header's time, not the tip's."""
    index = HeaderIndex(genesis_header(NET))
    index.load(main)
    anchor = main[2]  # height 3
    anchor_time = index.time_at(anchor.height, anchor.hash)
    assert anchor_time == anchor.time
    fork = _child(anchor, time_step=0, body_root=b"\x01" * 32)
    validate_run(anchor.height + 1, anchor.hash, [fork], anchor_time=anchor_time, min_bits=BITS)
    early = _child(anchor, time_step=-1, body_root=b"\x01" * 32)
    assert _reason(anchor.height + 1, anchor, [early], anchor_time=anchor_time) == (
        ChainReject.TIME_BEFORE_PARENT
    )
