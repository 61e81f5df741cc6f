"""Scheduler strand-prevention cases of reference §6.4 for the shared header range queue."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from node_core.header_sync import (
    FANOUT,
    HeaderWork,
    RangeRequest,
    ReturnReason,
    SharedHeaderRangeQueue,
)
from node_core.protocol.header_sync import HS_FRAME_CAP

ANCHOR = b"\x11" * 32
BIG_TIP = 1_000_000


class Wakes:
    """Counts ``on_wake`` calls so tests can assert which operations wake routines."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def rr(start: int, count: int, *, finalized: bool = False, priority: int = 0) -> RangeRequest:
    return RangeRequest(start, count, ANCHOR, finalized, priority)


def take(
    q: SharedHeaderRangeQueue,
    peer: str,
    gen: int = 1,
    *,
    tip: int = BIG_TIP,
    max_headers: int = 4000,
) -> HeaderWork | None:
    return q.take_for_peer(peer, gen, tip, max_headers, HS_FRAME_CAP)


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


@pytest.fixture
def q(wakes: Wakes) -> SharedHeaderRangeQueue:
    return SharedHeaderRangeQueue(wakes)


def test_range_request_end_height_and_validation() -> None:
    assert rr(10, 5).end_height == 14
    assert rr(0, 1).end_height == 0
    with pytest.raises(ValueError):
        rr(0, 0)
    with pytest.raises(ValueError):
        rr(-1, 3)


def test_forward_before_backward(q: SharedHeaderRangeQueue) -> None:
    q.ensure_backward(rr(1, 100, finalized=True))
    q.ensure_forward(rr(500, 100))
    work = take(q, "a")
    assert work is not None and work.forward and work.range.start_height == 500
    # a second peer also gets the forward range first (fan-out), not the backward one
    work = take(q, "b")
    assert work is not None and work.forward


def test_backward_when_forward_beyond_tip(q: SharedHeaderRangeQueue) -> None:
    q.ensure_forward(rr(500, 100))  # ends at 599
    q.ensure_backward(rr(1, 100, finalized=True))  # ends at 100
    work = take(q, "a", tip=300)
    assert work is not None and not work.forward and work.range.start_height == 1
    assert take(q, "a", tip=300) is None  # already holds the only reachable range
    assert take(q, "b", tip=50) is None  # nothing ends within 50


def test_advertised_tip_is_inclusive(q: SharedHeaderRangeQueue) -> None:
    q.ensure_forward(rr(10, 10))  # ends at 19
    assert take(q, "a", tip=9) is None  # starts beyond the peer's tip
    work = take(q, "b", tip=19)
    assert work is not None and work.count == 10


def test_a_peer_behind_the_range_end_fetches_its_head(q: SharedHeaderRangeQueue) -> None:
    """Ranges reach the best advertised tip; a peer with a lower tip still serves the part
    it has, so sync never waits on the one peer that claims the most."""
    q.ensure_forward(rr(10, 10))  # ends at 19
    work = take(q, "a", tip=14)
    assert work is not None and work.count == 5 and work.range.end_height == 14
    # A finalized bracket is never narrowed to a tip: it waits for a peer that has it all.
    q.ensure_backward(rr(1, 5, finalized=True))
    assert take(q, "c", tip=3) is None


def test_per_peer_dedup_and_fanout_cap(q: SharedHeaderRangeQueue) -> None:
    q.ensure_forward(rr(1, 10))
    assert take(q, "a") is not None
    assert take(q, "a") is None, "a peer never holds the same range twice"
    assert take(q, "b") is not None
    assert q.forward, "stays queued until the third distinct peer takes it"
    assert take(q, "c") is not None
    assert FANOUT == 3
    assert q.forward == ()
    assert take(q, "d") is None
    assert q.assigned == {(1, 0): {"a": 1, "b": 1, "c": 1}}


def test_ensure_dedupes_queued_assigned_and_covered(
    q: SharedHeaderRangeQueue, wakes: Wakes
) -> None:
    q.ensure_forward(rr(1, 10))
    q.ensure_forward(rr(1, 10))
    q.ensure_forward(rr(1, 20))  # same start + priority as a queued range
    q.ensure_backward(rr(1, 5))  # queued in the other deque under the same key
    assert q.forward == (rr(1, 10),) and q.backward == ()
    q.ensure_forward(rr(1, 10, priority=1))  # different priority is different work
    assert len(q.forward) == 2
    # a takes the first, b the one nobody holds yet, c and d join the first (fan-out 3)
    for p in "abcd":
        take(q, p)
    assert q.forward == (rr(1, 10, priority=1),)
    q.ensure_forward(rr(1, 30))  # assigned under the same key: skipped
    assert q.forward == (rr(1, 10, priority=1),)
    q.mark_range_covered(100, 200)
    q.ensure_forward(rr(120, 10))
    assert len(q.forward) == 1
    assert wakes.count == 7, "ensure always wakes, even when it queues nothing"


def test_a_range_nobody_holds_comes_before_joining_one(q: SharedHeaderRangeQueue) -> None:
    """Deviation 33: several forward ranges go to different peers at once; a peer joins a
    range another holds (fan-out) only when no range is left that nobody holds."""
    for start in (1, 11, 21):
        q.ensure_forward(rr(start, 10))
    starts = [w.range.start_height for p in "abc" if (w := take(q, p)) is not None]
    assert starts == [1, 11, 21]
    work = take(q, "d")
    assert work is not None and work.range.start_height == 1  # all held: it hedges the first
    assert q.assigned[(1, 0)] == {"a": 1, "d": 1}


def test_count_clamped_to_peer_cap(q: SharedHeaderRangeQueue) -> None:
    q.ensure_forward(rr(1, 2000))
    work = take(q, "a", max_headers=500)
    assert work is not None
    assert work.count == 500 and work.range == rr(1, 500)
    # the queued entry and the assignment were narrowed to the clamped range
    assert q.forward == (rr(1, 500),)
    assert q.assigned_range((1, 0)) == rr(1, 500)
    assert q.assigned == {(1, 0): {"a": 1}}
    # the clamp also bounds by the 4000 protocol max and by the frame's byte budget
    q2 = SharedHeaderRangeQueue(lambda: None)
    q2.ensure_forward(rr(1, 9000))
    work = q2.take_for_peer("a", 1, BIG_TIP, 4000, HS_FRAME_CAP)
    assert work is not None and work.count == 4000
    q3 = SharedHeaderRangeQueue(lambda: None)
    q3.ensure_forward(rr(1, 100))
    work = q3.take_for_peer("a", 1, BIG_TIP, 4000, 20 * 92)
    assert work is not None and work.count < 100


def test_finalized_range_never_shrunk(q: SharedHeaderRangeQueue) -> None:
    bracket = rr(1, 2000, finalized=True)
    q.ensure_backward(bracket)
    assert take(q, "small", max_headers=1000) is None
    assert q.backward == (bracket,), "left queued whole, not narrowed, not duplicated"
    assert q.assigned == {}
    work = take(q, "big", max_headers=4000)
    assert work is not None and work.range == bracket and work.count == 2000


@pytest.mark.parametrize(
    "reason",
    [
        ReturnReason.TEARDOWN,
        ReturnReason.SEND_FAILED,
        ReturnReason.EMPTY_RESPONSE,
        ReturnReason.REJECTED,
    ],
)
def test_non_timeout_return_clears_assignment_and_requeues(
    q: SharedHeaderRangeQueue, wakes: Wakes, reason: ReturnReason
) -> None:
    q.ensure_forward(rr(1, 10))
    for p in "abc":
        take(q, p)
    assert q.forward == ()
    before = wakes.count
    q.return_work("a", 1, rr(1, 10), reason)
    assert wakes.count == before + 1
    assert q.assigned == {(1, 0): {"b": 1, "c": 1}}
    assert list(q.forward) == [rr(1, 10)]
    work = take(q, "a")
    assert work is not None and work.range == rr(1, 10)


def test_timeout_return_keeps_assignment(q: SharedHeaderRangeQueue) -> None:
    q.ensure_forward(rr(1, 10))
    take(q, "slow")
    q.return_work("slow", 1, rr(1, 10), ReturnReason.TIMEOUT)
    assert q.assigned == {(1, 0): {"slow": 1}}
    # retry pushes a second copy to the front (no de-dup, as in the reference)
    assert q.forward == (rr(1, 10), rr(1, 10))
    assert take(q, "slow") is None, "the timed-out peer does not immediately re-grab it"
    assert take(q, "other") is not None


def test_returns_are_generation_scoped(q: SharedHeaderRangeQueue) -> None:
    q.ensure_forward(rr(1, 10))
    take(q, "a", gen=1)
    # peer a reconnects: session 1 forgotten, session 2 takes the range
    q.forget_peer("a")
    assert take(q, "a", gen=2) is not None
    # the stale session's teardown arrives late: it must not clear session 2's assignment
    q.return_work("a", 1, rr(1, 10), ReturnReason.TEARDOWN)
    assert q.assigned == {(1, 0): {"a": 2}}
    assert q.invariant_violations({"a": 2}) == []
    q.return_work("a", 2, rr(1, 10), ReturnReason.TEARDOWN)
    assert q.assigned == {}


def test_return_of_narrowed_range_finds_its_assignment(q: SharedHeaderRangeQueue) -> None:
    q.ensure_forward(rr(1, 2000))
    wide = take(q, "big", max_headers=4000)
    narrow = take(q, "small", max_headers=100)
    assert wide is not None and narrow is not None and narrow.count == 100
    q.return_work("big", 1, wide.range, ReturnReason.TEARDOWN)
    q.return_work("small", 1, narrow.range, ReturnReason.TEARDOWN)
    assert q.assigned == {}, "keyed by start+priority: no assignment stranded by narrowing"


def test_return_uses_work_direction_after_forget(q: SharedHeaderRangeQueue) -> None:
    q.ensure_backward(rr(1, 10, finalized=True))
    work = take(q, "a")
    assert work is not None and not work.forward
    for p in "bc":
        take(q, p)
    q.forget_peer("a")
    q.forget_peer("b")
    q.forget_peer("c")
    q.return_work("a", 1, work.range, ReturnReason.TEARDOWN, forward=work.forward)
    assert q.backward == (work.range,) and q.forward == ()


def test_covered_ranges_not_refetched(q: SharedHeaderRangeQueue) -> None:
    q.ensure_forward(rr(1, 10))
    q.ensure_forward(rr(11, 10))
    q.ensure_backward(rr(100, 10, finalized=True))
    work = take(q, "a")
    assert work is not None
    q.mark_range_covered(1, 5)
    assert len(q.forward) == 2, "a partially covered range stays"
    q.mark_range_covered(6, 10)  # touches [1,5]: merges, fully covers rr(1,10)
    assert q.covered == ((1, 10),)
    assert q.forward == (rr(11, 10),)
    assert q.assigned == {}, "covered assignments are pruned"
    # a late return of covered work is not re-queued
    q.return_work("a", 1, work.range, ReturnReason.TEARDOWN)
    assert q.forward == (rr(11, 10),)
    q.retry(rr(1, 10))
    assert q.forward == (rr(11, 10),)
    for h in range(100, 110):
        q.mark_height_covered(h)
    assert q.backward == () and list(q.covered) == [(1, 10), (100, 109)]
    assert q.invariant_violations({"a": 1}) == []


def test_covered_interval_merging() -> None:
    q = SharedHeaderRangeQueue(lambda: None)
    q.mark_range_covered(10, 20)
    q.mark_range_covered(30, 40)
    q.mark_range_covered(22, 28)
    assert q.covered == ((10, 20), (22, 28), (30, 40))
    q.mark_range_covered(21, 21)
    assert list(q.covered) == [(10, 28), (30, 40)]
    q.mark_range_covered(5, 50)
    assert list(q.covered) == [(5, 50)]
    q.mark_height_covered(51)
    q.mark_height_covered(3)
    assert list(q.covered) == [(3, 3), (5, 51)]
    assert q.is_covered(rr(5, 47)) and not q.is_covered(rr(3, 3 + 2))
    with pytest.raises(ValueError):
        q.mark_range_covered(5, 4)


def test_reset_above_drops_forward_work_above_target(
    q: SharedHeaderRangeQueue, wakes: Wakes
) -> None:
    q.ensure_forward(rr(1, 100))  # ends 100
    q.ensure_forward(rr(101, 100))  # ends 200
    q.ensure_backward(rr(300, 100, finalized=True))  # ends 399, backward: untouched
    take(q, "a", tip=150)  # takes rr(1,100)
    take(q, "b")  # takes rr(101,100), which nobody holds
    q.ensure_forward(rr(50, 200))  # ends 249
    take(q, "c", tip=1000)  # rr(50,200), which nobody holds
    take(q, "a", tip=1000)  # joins rr(101,100)
    before = wakes.count
    q.reset_above(150)
    assert wakes.count == before
    assert q.forward == (rr(1, 100),)  # held by a alone: still queued for fan-out
    assert set(q.assigned) == {(1, 0)}
    assert q.backward == (rr(300, 100, finalized=True),)
    q.reset_above(50)
    assert q.assigned == {}


def test_reset_above_keeps_backward_assignments(q: SharedHeaderRangeQueue) -> None:
    q.ensure_backward(rr(300, 100, finalized=True))
    take(q, "a")
    q.reset_above(0)
    assert q.assigned == {(300, 0): {"a": 1}}


def test_forget_peer(q: SharedHeaderRangeQueue, wakes: Wakes) -> None:
    q.ensure_forward(rr(1, 10))
    q.ensure_forward(rr(11, 10))
    take(q, "a")
    take(q, "a")
    take(q, "b")
    before = wakes.count
    q.forget_peer("a")
    assert wakes.count == before + 1
    assert q.assigned == {(1, 0): {"b": 1}}
    assert len(q.forward) == 2, "no re-queue: both still queued below fan-out"
    assert q.invariant_violations({"b": 1}) == []


def test_clear_assignment_and_retry_wake(q: SharedHeaderRangeQueue, wakes: Wakes) -> None:
    q.ensure_forward(rr(1, 10))
    for p in "abc":
        take(q, p)
    before = wakes.count
    q.clear_assignment(rr(1, 10))
    assert q.assigned == {}
    q.retry(rr(1, 10))
    assert q.forward == (rr(1, 10),)
    assert wakes.count == before + 2


def test_wake_counts(q: SharedHeaderRangeQueue, wakes: Wakes) -> None:
    q.ensure_forward(rr(1, 10))
    assert wakes.count == 1
    take(q, "a")
    take(q, "b", max_headers=5)
    assert wakes.count == 1, "take_for_peer never wakes"
    q.mark_range_covered(100, 200)
    q.mark_height_covered(300)
    q.reset_above(0)
    assert wakes.count == 1, "covering and resets never wake"
    q.return_work("a", 1, rr(1, 10), ReturnReason.TIMEOUT)
    q.forget_peer("zzz")
    assert wakes.count == 3


def test_snapshot_counts_are_serializable(q: SharedHeaderRangeQueue) -> None:
    q.ensure_forward(rr(1, 10))
    q.ensure_backward(rr(100, 10, finalized=True))
    take(q, "a")
    take(q, "b")
    q.mark_range_covered(200, 209)
    snap = q.snapshot()
    assert snap == {
        "forward": 1,
        "backward": 1,
        "assigned_ranges": 1,
        "assigned_peers": 2,
        "assignments": 2,
        "covered_intervals": 1,
        "covered_heights": 10,
    }
    assert orjson.loads(orjson.dumps(snap)) == snap


def test_invariant_violations_report_dead_and_stale_peers(q: SharedHeaderRangeQueue) -> None:
    q.ensure_forward(rr(1, 10))
    take(q, "a", gen=4)
    take(q, "b", gen=5)
    assert q.invariant_violations({"a": 4, "b": 5}) == []
    problems = q.invariant_violations({"a": 7})
    assert len(problems) == 2
    assert any("stale gen 4" in p for p in problems)
    assert any("gone peer 'b'" in p for p in problems)


# --- property: arbitrary operation sequences keep the invariants ----------------------

PEERS = ("p0", "p1", "p2", "p3", "p4")
starts = st.integers(min_value=0, max_value=60)
counts = st.integers(min_value=1, max_value=30)


class RangeQueueMachine(RuleBasedStateMachine):
    """Drives the queue like the reactor and routines would, tracking live sessions."""

    def __init__(self) -> None:
        super().__init__()
        self.wakes = Wakes()
        self.q = SharedHeaderRangeQueue(self.wakes)
        self.next_gen = 1
        self.live: dict[str, int] = {}
        # every (peer, generation) take_for_peer handed work to, and the work
        self.given: set[tuple[str, int]] = set()
        self.in_flight: dict[str, list[tuple[int, HeaderWork]]] = {}

    def _gen_of(self, peer: str) -> int:
        if peer not in self.live:
            self.live[peer] = self.next_gen
            self.next_gen += 1
        return self.live[peer]

    @rule(start=starts, count=counts, finalized=st.booleans(), forward=st.booleans())
    def ensure(self, start: int, count: int, finalized: bool, forward: bool) -> None:
        rng = RangeRequest(start, count, ANCHOR, finalized, 0)
        before = self.wakes.count
        (self.q.ensure_forward if forward else self.q.ensure_backward)(rng)
        assert self.wakes.count == before + 1

    @rule(
        peer=st.sampled_from(PEERS),
        tip=st.integers(min_value=0, max_value=100),
        cap=st.integers(min_value=1, max_value=40),
    )
    def take(self, peer: str, tip: int, cap: int) -> None:
        gen = self._gen_of(peer)
        work = self.q.take_for_peer(peer, gen, tip, cap, HS_FRAME_CAP)
        if work is not None:
            assert work.range.end_height <= tip
            assert work.count <= cap and work.count == work.range.count
            self.given.add((peer, gen))
            self.in_flight.setdefault(peer, []).append((gen, work))

    @rule(peer=st.sampled_from(PEERS), reason=st.sampled_from(list(ReturnReason)))
    def return_work(self, peer: str, reason: ReturnReason) -> None:
        flights = self.in_flight.get(peer)
        if flights:
            gen, work = flights.pop(0)
            self.q.return_work(peer, gen, work.range, reason, forward=work.forward)

    @rule(peer=st.sampled_from(PEERS))
    def disconnect(self, peer: str) -> None:
        # teardown returns in-flight work under its generation, then the reactor forgets
        gen = self.live.pop(peer, None)
        for fgen, work in self.in_flight.pop(peer, []):
            self.q.return_work(peer, fgen, work.range, ReturnReason.TEARDOWN, forward=work.forward)
        if gen is not None:
            self.q.forget_peer(peer)

    @rule(start=starts, count=counts)
    def cover(self, start: int, count: int) -> None:
        self.q.mark_range_covered(start, start + count - 1)

    @rule(height=st.integers(min_value=0, max_value=100))
    def cover_height(self, height: int) -> None:
        self.q.mark_height_covered(height)

    @rule(height=st.integers(min_value=0, max_value=100))
    def reset(self, height: int) -> None:
        self.q.reset_above(height)

    @invariant()
    def sound(self) -> None:
        assert self.q.invariant_violations(self.live) == []

    @invariant()
    def nothing_covered_is_queued(self) -> None:
        for rng in (*self.q.forward, *self.q.backward):
            assert not self.q.is_covered(rng)

    @invariant()
    def assignments_come_from_takes(self) -> None:
        for peers in self.q.assigned.values():
            assert 0 < len(peers) <= FANOUT
            for peer, gen in peers.items():
                assert (peer, gen) in self.given
                assert self.live.get(peer) == gen


RangeQueueMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40)
TestRangeQueueMachine = RangeQueueMachine.TestCase


def test_narrowing_into_covered_head_drops_the_entry(q: SharedHeaderRangeQueue) -> None:
    # found by the state machine: [0,1] partially covered, narrowed to [0,0] fully covered
    q.mark_height_covered(0)
    q.ensure_forward(rr(0, 2))
    q.ensure_forward(rr(5, 5))
    work = take(q, "a", max_headers=1)
    assert work is not None and work.range == rr(5, 1)
    assert q.forward == (rr(5, 1),)
    assert q.invariant_violations({"a": 1}) == []


def test_a_capped_peer_is_asked_nothing_above_its_cap(
    q: SharedHeaderRangeQueue, wakes: Wakes
) -> None:
    """Issue 16: a peer whose chain runs through an abandoned header is capped below it."""
    q.ensure_forward(rr(10, 10))  # ends at 19
    q.cap_peer("a", 9)
    assert take(q, "a") is None  # the range starts above the cap
    q.cap_peer("a", 14)  # a cap only ever lowers
    assert q.cap_of("a") == 9
    before = wakes.count
    assert q.uncap_peer("a") and wakes.count == before + 1
    q.cap_peer("a", 14)
    work = take(q, "a")
    assert work is not None and work.range.end_height == 14  # narrowed like a lower tip
    q.forget_peer("a")  # a session's end forgets the cap
    assert q.cap_of("a") is None
    assert not q.uncap_peer("a")
