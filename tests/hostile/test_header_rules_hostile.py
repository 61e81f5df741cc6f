"""Every rule a Headers answer is checked against, broken one at a time (docs/PROTOCOL.md).

§8.5 step 4 lists what a node checks in an answer to its own GetHeaders (§8.2: heights from
``start_height``, the first header's ``prev_hash`` = the range anchor, each next one linked,
time not going back, version 1, ``bits ≥ 8``, the proof of work; a finalized range whole and
ending on the checkpoint hash) and §8.6 says a decodable answer failing any of them is
``invalid_range``, recorded only. Each test here answers a real GetHeaders of the victim with
a run that breaks exactly one rule and checks what a peer and an operator can observe:

- the misbehavior record: journal ``misbehavior/recorded`` and the snapshot's
  ``misbehavior`` row, reason ``invalid_range``, action ``recorded``, and nothing else;
- nothing of the run is stored: the victim's header tip is unchanged and it serves no header
  above it (its answers come from its store, after any write the run would have caused);
- the connection stays up: a later GetHeaders on the same stream is still answered.

Equal time (allowed) and a whole checkpointed range are the positive controls. NewBlock, the
other way a header gets in, is checked for the time rule too (§8.5 step 7: a block whose time
is before the tip's does not extend the tip and is dropped without a record).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from rawpeer import (
    HGetHeaders,
    HHeaders,
    HStatus,
    RawHeader,
    RawPeer,
    forge_child,
    genesis,
    hs_get_headers,
    hs_headers,
    hs_new_block,
    hs_status,
    mine_chain,
)
from test_header_sync_hostile import (
    BLOCKS,
    SERVICE,
    assert_open,
    expect_recorded,
    hs_fetch_chain_with_status,
    hs_session,
    hs_victim,
    next_answer,
    our_status,
    records,
)

from node_core.chain.genesis import Checkpoints
from node_core.chain.miner import pregenerate
from node_core.header_sync.entries import HeaderSyncConfig
from node_core.node import Node
from node_core.protocol.limits import NetworkId

if TYPE_CHECKING:
    from conftest import Harness

#: Headers we claim above the victim's tip; the victim asks GetHeaders(BLOCKS + 1, CLAIM).
CLAIM = 3
REJECTED = "sync_header_range_rejected_total"
LINK_FAILURES = "sync_header_stale_anchor_link_failure_total"
STATUS_APPLIED = "sync_header_peer_status_received_total"
NEW_BLOCK = "sync_header_tip_new_block_total"
INVALID_RANGE = [{"service": SERVICE, "reason": "invalid_range", "action": "recorded"}]


# --------------------------------------------------------------------------- helpers


@dataclass
class Asked:
    """A session in which the victim asked us for headers above its tip."""

    victim: Node
    peer: RawPeer
    sid: int
    tip: RawHeader  # the victim's header tip (the range anchor)
    ours: list[RawHeader]  # the honest chain we claimed, heights tip + 1 ..
    request: HGetHeaders


async def asked(
    h: Harness, victim: Node, claim: Callable[[RawHeader], list[RawHeader]] | None = None
) -> Asked:
    """Fetch the victim's chain, claim ``CLAIM`` honest headers above it (or ``claim(tip)``)
    and read the GetHeaders the victim sends for them (§8.5 step 3)."""
    peer, sid, _ = await hs_session(h, victim)
    chain = await hs_fetch_chain_with_status(peer, sid, victim)
    tip = chain[-1]
    ours = claim(tip) if claim is not None else [b.header for b in mine_chain(tip, CLAIM)]
    peer.send_hs(sid, our_status(victim, ours[-1]))
    req = await next_answer(peer, sid)
    assert isinstance(req, HGetHeaders), req
    assert (req.start_height, req.count) == (tip.height + 1, len(ours))
    return Asked(victim, peer, sid, tip, ours, req)


async def served(peer: RawPeer, sid: int, start: int, count: int) -> HHeaders:
    """Our GetHeaders answered: the next Headers. A GetHeaders the victim sends meanwhile
    (it re-asks a rejected range) is left unanswered, a Status is skipped."""
    peer.send_hs(sid, hs_get_headers(start, count))
    while True:
        msg = await peer.recv_hs(sid)
        if isinstance(msg, HHeaders):
            return msg
        assert isinstance(msg, HStatus | HGetHeaders), msg


async def expect_invalid_range(
    h: Harness, a: Asked, answer: list[RawHeader], *, stage: str, since: int = 0
) -> None:
    """§8.6: ``invalid_range``, recorded once and nothing else; the rejected stage is
    ``stage``; nothing of ``answer`` is stored; the stream still answers."""
    victim, peer = a.victim, a.peer
    await expect_recorded(h, victim, peer, "invalid_range", since=since)
    assert records(victim, peer) == INVALID_RANGE
    assert victim.metrics.value(REJECTED, stage=stage) == 1.0
    # Served from the store after any write the run would have queued: none was.
    above = await served(peer, a.sid, a.tip.height + 1, len(a.ours))
    assert above.headers == ()
    got = await served(peer, a.sid, 1, a.tip.height)
    assert [hd.height for hd in got.decoded()] == list(range(1, a.tip.height + 1))
    assert got.decoded()[-1].hash == a.tip.hash
    assert victim.chain.header_tip == (a.tip.height, a.tip.hash)
    for hd in answer:
        assert await victim.chain.store.height_of(hd.hash) is None
    assert_open(victim, peer)
    assert records(victim, peer) == INVALID_RANGE


# --------------------------------------------------------------------------- one rule each

#: Builds the answer from the victim's tip and our honest claimed chain.
Answer = Callable[[RawHeader, list[RawHeader]], list[RawHeader]]


def _first(**kw: Any) -> Answer:
    """A one-header answer: a child of the anchor that breaks what ``kw`` says."""
    return lambda tip, ours: [forge_child(tip, b"forged first", **kw).header]


def _later(**kw: Any) -> Answer:
    """A two-header answer: our honest first header, then a child of it breaking ``kw``."""
    return lambda tip, ours: [ours[0], forge_child(ours[0], b"forged later", **kw).header]


def _height_skips_first(tip: RawHeader, ours: list[RawHeader]) -> list[RawHeader]:
    return [forge_child(tip, b"skip", height=tip.height + 2).header]


def _height_skips_later(tip: RawHeader, ours: list[RawHeader]) -> list[RawHeader]:
    return [ours[0], forge_child(ours[0], b"skip", height=ours[0].height + 2).header]


def _not_linked_later(tip: RawHeader, ours: list[RawHeader]) -> list[RawHeader]:
    # Right height and time, but it names its grandparent (the anchor) as its parent.
    return [ours[0], forge_child(ours[0], b"unlinked", prev_hash=tip.hash).header]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(_height_skips_first, id="first-height-not-start_height"),
        pytest.param(_height_skips_later, id="later-height-not-counting-up"),
        pytest.param(_not_linked_later, id="later-not-linked-to-previous"),
        pytest.param(_first(time_step=-1000), id="time-back-vs-anchor-1000s"),
        pytest.param(_first(time_step=-1), id="time-back-vs-anchor-1s"),
        pytest.param(_later(time_step=-1), id="time-back-inside-run"),
        pytest.param(_first(version=2), id="first-version-2"),
        pytest.param(_later(version=2), id="later-version-2"),
        pytest.param(_first(bits=7), id="first-bits-7"),
        pytest.param(_later(bits=7), id="later-bits-7"),
        pytest.param(_first(pow_ok=False), id="first-pow-missed"),
        pytest.param(_later(pow_ok=False), id="later-pow-missed"),
    ],
)
async def test_answer_breaking_one_rule_is_invalid_range(harness: Harness, answer: Answer) -> None:
    """§8.5 step 4 / §8.6: a run breaking exactly one §8.2 rule is ``invalid_range``,
    recorded; nothing of it is stored and the connection stays. ``time-back-vs-anchor`` is
    issue 16's defect: the first header was compared with no parent's time at all."""
    victim = await hs_victim(harness)
    a = await asked(harness, victim)
    run = answer(a.tip, a.ours)
    a.peer.send_hs(a.sid, hs_headers([hd.encode() for hd in run]))
    await expect_invalid_range(harness, a, run, stage="stateless")


async def test_equal_time_is_stored(harness: Harness) -> None:
    """Positive control: §8.2 allows a time equal to the parent's, at the anchor and inside
    the run, so an answer stamped all at the anchor's second is adopted, unrecorded."""

    def equal_times(tip: RawHeader) -> list[RawHeader]:
        out = [forge_child(tip, b"same second 1", time_step=0).header]
        for i in range(2, CLAIM + 1):
            out.append(forge_child(out[-1], f"same second {i}".encode(), time_step=0).header)
        return out

    victim = await hs_victim(harness)
    a = await asked(harness, victim, equal_times)
    assert all(hd.time == a.tip.time for hd in a.ours)
    a.peer.send_hs(a.sid, hs_headers([hd.encode() for hd in a.ours]))
    await harness.wait_until(
        lambda: victim.chain.header_tip == (a.ours[-1].height, a.ours[-1].hash),
        "the victim to store the equal-time headers",
    )
    got = await served(a.peer, a.sid, a.tip.height + 1, CLAIM)
    assert got.decoded() == a.ours
    assert records(victim, a.peer) == []
    assert_open(victim, a.peer)


# --------------------------------------------------------------------------- the anchor link


def _fork_from_genesis(victim: Node, height: int) -> list[RawHeader]:
    """Headers 1..``height`` of a chain of our own: well formed, never the victim's. Spaced
    an hour apart so each is later than the victim's header at its height (only the link
    rule can fail against the victim's anchor, never the time rule)."""
    out = [genesis(victim.config.network_id).header]
    for i in range(1, height + 1):
        out.append(forge_child(out[-1], f"own chain {i}".encode(), time_step=3600).header)
    return out[1:]


async def test_first_header_not_linking_from_a_peer_claiming_no_more(harness: Harness) -> None:
    """§8.5 step 5: an answer whose first header does not link to the anchor, from a peer
    whose applied Status claims no more than the node knows, is ``invalid_range`` (with a
    higher claim it would start a fork search instead; see the next test).

    The victim only asks a peer for headers it claims, so the claim is lowered between the
    request and the answer: a first Status that raises the tip leaves the 5 s Status meter
    untouched (§8.5 step 2), so the lower one right after it is applied, not ``status_spam``.
    """
    victim = await hs_victim(harness)
    peer, sid, status = await hs_session(harness, victim)
    own = _fork_from_genesis(victim, BLOCKS + CLAIM)
    peer.send_hs(sid, our_status(victim, own[-1]))
    req = await next_answer(peer, sid)
    assert isinstance(req, HGetHeaders), req
    assert (req.start_height, req.count) == (BLOCKS + 1, CLAIM)
    peer.send_hs(sid, hs_status(status.tip_height, status.tip_hash))  # the victim's own tip
    await harness.wait_until(
        lambda: victim.metrics.value(STATUS_APPLIED) == 2.0, "our lower Status to be applied"
    )
    run = [own[BLOCKS]]  # height BLOCKS + 1, its parent our own header BLOCKS
    assert run[0].prev_hash != status.tip_hash
    peer.send_hs(sid, hs_headers([hd.encode() for hd in run]))
    await expect_recorded(harness, victim, peer, "invalid_range")
    assert victim.metrics.value(LINK_FAILURES) == 1.0
    assert victim.metrics.value(REJECTED, stage="link") == 1.0
    assert records(victim, peer) == INVALID_RANGE
    assert (await served(peer, sid, BLOCKS + 1, CLAIM)).headers == ()
    assert victim.chain.header_tip == (BLOCKS, status.tip_hash)
    assert await victim.chain.store.height_of(run[0].hash) is None
    assert_open(victim, peer)


async def test_first_header_not_linking_from_a_peer_claiming_more_is_a_fork(
    harness: Harness,
) -> None:
    """Contrast (§8.5 step 5, deviation 24): the same unlinked answer from a peer that still
    claims a higher tip is no misbehavior; the victim searches for the fork, asking that peer
    for a range anchored further below."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    own = _fork_from_genesis(victim, BLOCKS + CLAIM)
    peer.send_hs(sid, our_status(victim, own[-1]))
    req = await next_answer(peer, sid)
    assert isinstance(req, HGetHeaders) and req.start_height == BLOCKS + 1
    peer.send_hs(sid, hs_headers([own[BLOCKS].encode()]))
    probe = await next_answer(peer, sid)
    assert isinstance(probe, HGetHeaders), probe
    assert probe.start_height < BLOCKS + 1
    assert victim.metrics.value(LINK_FAILURES) == 1.0
    assert records(victim, peer) == []
    assert_open(victim, peer)


# --------------------------------------------------------------------------- checkpoints


def _victim_tip() -> RawHeader:
    """The header tip ``hs_victim`` will pre-generate (its seed and length), known before it
    starts so a checkpoint above it can be configured."""
    *_, last = pregenerate(NetworkId.REGTEST, BLOCKS, seed=7)
    return RawHeader.decode(last.header.encode())


def _short(ours: list[RawHeader]) -> list[RawHeader]:
    return ours[:-1]


def _other_at_checkpoint(ours: list[RawHeader]) -> list[RawHeader]:
    return [*ours[:-1], forge_child(ours[-2], b"not the checkpoint").header]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(_short, id="not-whole"),
        pytest.param(_other_at_checkpoint, id="not-ending-on-checkpoint-hash"),
    ],
)
async def test_finalized_range_breaking_the_checkpoint_is_invalid_range(
    harness: Harness, answer: Callable[[list[RawHeader]], list[RawHeader]]
) -> None:
    """§8.5 step 3-4: a range ending on a checkpoint is *finalized*; an answer that is not
    whole, or whose header at the checkpoint height is not the checkpoint, is
    ``invalid_range`` even though every header is otherwise valid and linked."""
    tip = _victim_tip()
    ours = [b.header for b in mine_chain(tip, CLAIM)]
    checkpoints = Checkpoints.from_mapping({ours[-1].height: ours[-1].hash})
    victim = await hs_victim(harness, header_sync=HeaderSyncConfig(checkpoints=checkpoints))
    assert victim.chain.header_tip == (BLOCKS, tip.hash)
    a = await asked(harness, victim, lambda _tip: ours)
    run = answer(ours)
    a.peer.send_hs(a.sid, hs_headers([hd.encode() for hd in run]))
    await expect_invalid_range(harness, a, run, stage="checkpoint")


async def test_whole_finalized_range_is_stored(harness: Harness) -> None:
    """Positive control for the checkpoint tests: the whole range ending on the checkpoint
    hash is adopted, unrecorded."""
    tip = _victim_tip()
    ours = [b.header for b in mine_chain(tip, CLAIM)]
    checkpoints = Checkpoints.from_mapping({ours[-1].height: ours[-1].hash})
    victim = await hs_victim(harness, header_sync=HeaderSyncConfig(checkpoints=checkpoints))
    a = await asked(harness, victim, lambda _tip: ours)
    a.peer.send_hs(a.sid, hs_headers([hd.encode() for hd in ours]))
    await harness.wait_until(
        lambda: victim.chain.header_tip == (ours[-1].height, ours[-1].hash),
        "the victim to store the finalized range",
    )
    assert records(victim, a.peer) == []
    assert_open(victim, a.peer)


# --------------------------------------------------------------------------- NewBlock


async def test_new_block_before_the_tip_time_is_dropped(harness: Harness) -> None:
    """§8.5 step 7: a block that is valid on its own and names the tip as parent, but is
    stamped 1000 s before the tip, does not extend the tip: dropped without a record, not
    stored; the connection stays."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    chain = await hs_fetch_chain_with_status(peer, sid, victim)
    block = forge_child(chain[-1], b"early block", time_step=-1000)
    peer.send_hs(sid, hs_new_block(block.header.encode(), block.body))
    await harness.wait_until(
        lambda: victim.metrics.value(NEW_BLOCK, result="unconnectable") == 1.0,
        "the victim to judge the NewBlock",
    )
    assert victim.metrics.value(NEW_BLOCK, result="rejected") == 0.0
    assert (await served(peer, sid, BLOCKS + 1, 1)).headers == ()
    assert victim.chain.header_tip == (BLOCKS, chain[-1].hash)
    assert await victim.chain.store.height_of(block.header.hash) is None
    assert records(victim, peer) == []
    assert_open(victim, peer)


async def test_new_block_at_the_tip_time_is_stored(harness: Harness) -> None:
    """Positive control: a NewBlock stamped in the tip's second extends the tip."""
    victim = await hs_victim(harness)
    peer, sid, _ = await hs_session(harness, victim)
    chain = await hs_fetch_chain_with_status(peer, sid, victim)
    block = forge_child(chain[-1], b"same second block", time_step=0)
    peer.send_hs(sid, hs_new_block(block.header.encode(), block.body))
    await harness.wait_until(
        lambda: victim.chain.header_tip == (BLOCKS + 1, block.header.hash),
        "the victim to adopt the NewBlock",
    )
    assert records(victim, peer) == []
    assert_open(victim, peer)
