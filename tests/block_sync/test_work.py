"""Block-sync WorkQueue and ByteBudget (reference §4.8; docs/ARCHITECTURE.md, "The routine model").

Every height in exactly one state, every byte reserved → held → released exactly once, and
only the session that took a height (peer label and generation) may settle or return it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from node_core.block_sync.work import (
    DEFAULT_ESTIMATE,
    MAX_ESTIMATE,
    MIN_ESTIMATE,
    ByteBudget,
    Owner,
    WorkItem,
    WorkQueue,
    WorkState,
    clamp_estimate,
)

BIG = 64 * MAX_ESTIMATE
A1: Owner = ("a", 1)
A2: Owner = ("a", 2)
B1: Owner = ("b", 1)


class Wakes:
    """Counts ``on_work`` calls so tests can assert which operations notify."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def h(height: int) -> bytes:
    return height.to_bytes(4, "big") * 8


def items(
    heights: range | list[int], hint: int | None = 2000
) -> list[tuple[int, bytes, int | None]]:
    return [(x, h(x), hint) for x in heights]


def heights(taken: list[WorkItem]) -> list[int]:
    return [item.height for item in taken]


def ledger(q: WorkQueue) -> tuple[object, ...]:
    """Everything observable about the queue, to assert an operation changed nothing."""
    return (
        list(q.items()),
        q.snapshot(),
        q.charged_total,
        q.released_total,
        q.first_pending(),
        q.pending_count,
    )


def sound(q: WorkQueue, live: dict[str, int] | None = None) -> None:
    assert q.invariant_violations(live) == []
    by_state = q.bytes_by_state()
    assert q.budget.used == by_state["reserved"] + by_state["held"]
    assert q.charged_total - q.released_total == q.budget.used


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


@pytest.fixture
def q(wakes: Wakes) -> WorkQueue:
    return WorkQueue(ByteBudget(BIG), floor=0, on_work=wakes)


# --- estimates and the budget -------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (None, DEFAULT_ESTIMATE),
        (0, DEFAULT_ESTIMATE),
        (1, MIN_ESTIMATE),
        (MIN_ESTIMATE - 1, MIN_ESTIMATE),
        (MIN_ESTIMATE, MIN_ESTIMATE),
        (MIN_ESTIMATE + 1, MIN_ESTIMATE + 1),
        (50_000, 50_000),
        (MAX_ESTIMATE - 1, MAX_ESTIMATE - 1),
        (MAX_ESTIMATE, MAX_ESTIMATE),
        (MAX_ESTIMATE + 1, MAX_ESTIMATE),
        (10**12, MAX_ESTIMATE),
    ],
)
def test_clamp_estimate(hint: int | None, expected: int) -> None:
    assert clamp_estimate(hint) == expected


def test_constants_are_ordered() -> None:
    assert 0 < MIN_ESTIMATE <= DEFAULT_ESTIMATE <= MAX_ESTIMATE


def test_extend_stores_clamped_estimates(q: WorkQueue) -> None:
    q.extend([(1, h(1), None), (2, h(2), 0), (3, h(3), 5), (4, h(4), 10**9), (5, h(5), 7777)])
    taken = q.take(A1, 1, 10, 10, BIG)
    assert [i.estimate for i in taken] == [
        DEFAULT_ESTIMATE,
        DEFAULT_ESTIMATE,
        MIN_ESTIMATE,
        MAX_ESTIMATE,
        7777,
    ]
    assert [i.hash for i in taken] == [h(x) for x in range(1, 6)]
    assert q.budget.used == 2 * DEFAULT_ESTIMATE + MIN_ESTIMATE + MAX_ESTIMATE + 7777


def test_budget_must_hold_one_maximal_block() -> None:
    with pytest.raises(ValueError):
        ByteBudget(MAX_ESTIMATE - 1)
    budget = ByteBudget(MAX_ESTIMATE)
    assert budget.available == MAX_ESTIMATE
    budget.used = MAX_ESTIMATE + 5
    assert budget.available == 0


# --- extend -------------------------------------------------------------------------


def test_extend_skips_floor_and_duplicates(wakes: Wakes) -> None:
    q = WorkQueue(ByteBudget(BIG), floor=10, on_work=wakes)
    assert q.extend(items([5, 9, 10])) == 0
    assert wakes.count == 0
    assert len(q) == 0

    assert q.extend([(11, h(11), 2000), (12, h(12), 2000), (11, b"other", 9999)]) == 2
    assert wakes.count == 1
    assert q.hash_at(11) == h(11)  # first wins, in-batch duplicate skipped
    assert sorted(x for x, _, _ in q.items()) == [11, 12]

    # all duplicates or at/below floor: nothing added, no notification
    assert q.extend([(10, h(10), None), (11, b"x", None), (12, b"y", None)]) == 0
    assert wakes.count == 1
    assert q.hash_at(11) == h(11)

    # a mix adds only the new heights and notifies once
    assert q.extend(items([8, 12, 13, 14])) == 2
    assert wakes.count == 2
    assert [x for x, _, _ in q.items()] == [11, 12, 13, 14]
    sound(q)


def test_extend_does_not_disturb_in_flight_or_received(q: WorkQueue, wakes: Wakes) -> None:
    q.extend(items(range(1, 4)))
    q.take(A1, 1, 2, 2, BIG)
    assert q.receive(A1, 1, 3000) == 1000
    before = ledger(q)
    wakes.count = 0
    assert q.extend(items(range(1, 4), hint=None)) == 0
    assert wakes.count == 0
    assert ledger(q) == before
    assert q.state(1) is WorkState.RECEIVED
    assert q.state(2) is WorkState.IN_FLIGHT
    assert q.owner(2) == A1
    sound(q)


def test_extend_without_listener() -> None:
    bare = WorkQueue(ByteBudget(BIG))
    assert bare.extend(items(range(1, 3))) == 2
    assert bare.pending_count == 2


# --- take ---------------------------------------------------------------------------


def test_take_contiguous_run_stops_at_gap(q: WorkQueue) -> None:
    q.extend(items([1, 2, 3, 5, 6, 9]))
    taken = q.take(A1, 0, 100, 100, BIG)
    assert heights(taken) == [1, 2, 3]
    assert [i.hash for i in taken] == [h(1), h(2), h(3)]
    assert heights(q.take(A1, 0, 100, 100, BIG)) == [5, 6]
    assert heights(q.take(B1, 0, 100, 100, BIG)) == [9]
    assert q.take(B1, 0, 100, 100, BIG) == []
    sound(q)


def test_take_starts_at_first_pending_at_or_above_low(q: WorkQueue) -> None:
    q.extend(items(range(1, 11)))
    assert heights(q.take(A1, 4, 100, 3, BIG)) == [4, 5, 6]
    # 4..6 are in flight: from low=4 the first pending is 7
    assert heights(q.take(B1, 4, 100, 2, BIG)) == [7, 8]
    # from low=1 the run is 1..3 and stops at the in-flight 4 (a gap)
    assert heights(q.take(B1, 1, 100, 100, BIG)) == [1, 2, 3]
    assert heights(q.take(B1, 0, 100, 100, BIG)) == [9, 10]
    assert q.pending_count == 0
    sound(q)


def test_take_stops_at_max_count_and_high(q: WorkQueue) -> None:
    q.extend(items(range(1, 11)))
    assert q.take(A1, 1, 10, 0, BIG) == []
    assert heights(q.take(A1, 1, 10, 1, BIG)) == [1]
    assert heights(q.take(A1, 1, 4, 100, BIG)) == [2, 3, 4]
    # the first pending (5) is above high: nothing
    assert q.take(A1, 1, 4, 100, BIG) == []
    assert q.take(A1, 6, 5, 100, BIG) == []  # empty range
    assert heights(q.take(A1, 5, 5, 100, BIG)) == [5]
    assert q.pending_count == 5
    sound(q)


def test_take_on_empty_queue(q: WorkQueue) -> None:
    assert q.take(A1, 0, 100, 10, BIG, force_first=True) == []
    assert q.budget.used == 0


def test_take_stops_before_exceeding_max_bytes(q: WorkQueue) -> None:
    q.extend(items(range(1, 6), hint=10_000))
    # exactly at the cap is allowed
    assert heights(q.take(A1, 1, 10, 10, 20_000)) == [1, 2]
    # one byte short of the second item stops after the first
    assert heights(q.take(A1, 1, 10, 10, 19_999)) == [3]
    # the first item alone exceeds the cap: nothing without force
    assert q.take(A1, 1, 10, 10, 9_999) == []
    assert q.budget.used == 30_000
    # forced: the first is taken past the cap, but nothing more
    assert heights(q.take(A1, 1, 10, 10, 9_999, force_first=True)) == [4]
    assert heights(q.take(A1, 1, 10, 10, 0, force_first=True)) == [5]
    assert q.budget.used == 50_000
    sound(q)


def test_take_stops_before_exceeding_budget_available(wakes: Wakes) -> None:
    budget = ByteBudget(MAX_ESTIMATE)
    q = WorkQueue(budget, on_work=wakes)
    q.extend(items(range(1, 4), hint=MAX_ESTIMATE // 2))
    q.extend(items(range(4, 8), hint=MIN_ESTIMATE))
    half = MAX_ESTIMATE // 2
    assert heights(q.take(A1, 1, 100, 100, BIG)) == [1, 2]  # 2 * half <= MAX_ESTIMATE
    assert budget.used == 2 * half
    assert budget.available == MAX_ESTIMATE - 2 * half
    # the third would exceed the budget even though max_bytes allows it
    assert q.take(A1, 1, 100, 100, BIG) == []
    assert q.state(3) is WorkState.PENDING
    # forced: the floor lane takes it anyway, and only it
    assert heights(q.take(A1, 1, 100, 100, BIG, force_first=True)) == [3]
    assert budget.used == 3 * half > budget.max_bytes
    assert budget.available == 0
    assert q.take(A1, 1, 100, 100, BIG) == []
    assert heights(q.take(B1, 4, 100, 100, BIG, force_first=True)) == [4]
    sound(q)


def test_take_limit_is_min_of_max_bytes_and_available() -> None:
    budget = ByteBudget(MAX_ESTIMATE)
    q = WorkQueue(budget)
    q.extend(items(range(1, 40), hint=100_000))
    budget_room = MAX_ESTIMATE - 10 * 100_000
    q.take(A1, 1, 10, 10, BIG)  # 1..10 reserve 1,000,000
    assert budget.available == budget_room
    taken = q.take(B1, 1, 100, 100, BIG)
    assert sum(i.estimate for i in taken) <= budget_room
    assert len(taken) == budget_room // 100_000
    q.return_all(B1)
    assert len(q.take(B1, 1, 100, 100, 250_000)) == 2  # max_bytes now binds
    sound(q)


def test_take_reserves_exactly_the_estimates(q: WorkQueue) -> None:
    q.extend([(1, h(1), 1500), (2, h(2), None), (3, h(3), 3), (4, h(4), 4000)])
    taken = q.take(A1, 1, 4, 3, BIG)
    assert [(i.height, i.estimate) for i in taken] == [
        (1, 1500),
        (2, DEFAULT_ESTIMATE),
        (3, MIN_ESTIMATE),
    ]
    reserved = 1500 + DEFAULT_ESTIMATE + MIN_ESTIMATE
    assert q.budget.used == reserved
    assert q.charged_total == reserved
    assert q.released_total == 0
    assert q.bytes_by_state() == {"reserved": reserved, "held": 0}
    assert [(x, s, o) for x, s, o in q.items()] == [
        (1, WorkState.IN_FLIGHT, A1),
        (2, WorkState.IN_FLIGHT, A1),
        (3, WorkState.IN_FLIGHT, A1),
        (4, WorkState.PENDING, None),
    ]
    assert q.heights_of(A1) == [1, 2, 3]
    assert q.heights_of(A2) == []
    assert q.counts() == {"pending": 1, "in_flight": 3, "received": 0}
    sound(q, {"a": 1})


# --- receive ------------------------------------------------------------------------


def test_receive_moves_reserved_to_held(q: WorkQueue) -> None:
    q.extend(items(range(1, 4), hint=10_000))
    q.take(A1, 1, 3, 3, BIG)
    assert q.budget.used == 30_000

    assert q.receive(A1, 1, 14_000) == 4_000
    assert q.budget.used == 34_000
    assert q.receive(A1, 2, 7_000) == -3_000
    assert q.budget.used == 31_000
    assert q.receive(A1, 3, 10_000) == 0
    assert q.budget.used == 31_000
    assert q.bytes_by_state() == {"reserved": 0, "held": 31_000}
    assert q.charged_total == 34_000
    assert q.released_total == 3_000
    assert [s for _, s, _ in q.items()] == [WorkState.RECEIVED] * 3
    assert q.heights_of(A1) == []  # received heights are not in flight any more
    sound(q)

    # a second delivery of the same height is refused
    before = ledger(q)
    assert q.receive(A1, 1, 99_999) is None
    assert ledger(q) == before


def test_receive_can_exceed_the_budget() -> None:
    small = WorkQueue(ByteBudget(MAX_ESTIMATE))
    small.extend(items([1], hint=MAX_ESTIMATE))
    small.take(A1, 1, 1, 1, BIG)
    assert small.receive(A1, 1, MAX_ESTIMATE + 500) == 500
    assert small.budget.available == 0
    sound(small)


@pytest.mark.parametrize(
    ("owner", "height"),
    [
        (B1, 2),  # another peer
        (A2, 2),  # the same peer's reconnected session
        (("a", 0), 2),  # an older generation
        (A1, 4),  # pending height
        (A1, 99),  # unknown height
        (A1, 0),  # at the floor
        (A1, 1),  # already received
    ],
)
def test_receive_refused_changes_nothing(q: WorkQueue, owner: Owner, height: int) -> None:
    q.extend(items(range(1, 5), hint=10_000))
    q.take(A1, 1, 3, 3, BIG)
    q.receive(A1, 1, 12_000)
    before = ledger(q)
    assert q.receive(owner, height, 5_000) is None
    assert ledger(q) == before
    sound(q)


# --- return -------------------------------------------------------------------------


def test_return_heights_only_for_owner(q: WorkQueue, wakes: Wakes) -> None:
    q.extend(items(range(1, 7), hint=10_000))
    q.take(A1, 1, 3, 3, BIG)
    q.take(B1, 4, 6, 3, BIG)
    q.receive(A1, 1, 11_000)
    wakes.count = 0
    before = ledger(q)

    assert q.return_heights(B1, [1, 2, 3]) == 0
    assert q.return_heights(A2, [2, 3]) == 0
    assert q.return_heights(A1, [1, 4, 5, 99]) == 0  # received, others', unknown
    assert ledger(q) == before
    assert wakes.count == 0

    assert q.return_heights(A1, [3, 2, 3]) == 2
    assert wakes.count == 1
    assert q.state(2) is WorkState.PENDING and q.owner(2) is None
    assert q.state(3) is WorkState.PENDING and q.owner(3) is None
    assert q.state(1) is WorkState.RECEIVED
    assert q.budget.used == 11_000 + 30_000
    assert q.released_total == 20_000
    assert q.first_pending() == 2
    sound(q)

    # returned heights can be taken again, by anyone
    assert heights(q.take(B1, 0, 100, 100, BIG)) == [2, 3]
    sound(q)


def test_return_heights_quiet(q: WorkQueue, wakes: Wakes) -> None:
    q.extend(items(range(1, 4)))
    q.take(A1, 1, 3, 3, BIG)
    wakes.count = 0
    assert q.return_heights(A1, [1, 2], notify=False) == 2
    assert wakes.count == 0
    assert q.pending_count == 2
    assert q.budget.used == 2000
    sound(q)


def test_return_all(q: WorkQueue, wakes: Wakes) -> None:
    q.extend(items(range(1, 10), hint=10_000))
    q.take(A1, 1, 4, 4, BIG)
    q.take(B1, 5, 7, 3, BIG)
    q.receive(A1, 2, 9_000)
    wakes.count = 0

    assert q.return_all(A2) == 0
    assert wakes.count == 0
    assert q.return_all(A1) == 3
    assert wakes.count == 1
    assert q.heights_of(A1) == []
    assert q.heights_of(B1) == [5, 6, 7]
    assert [x for x, s, _ in q.items() if s is WorkState.PENDING] == [1, 3, 4, 8, 9]
    assert q.state(2) is WorkState.RECEIVED
    assert q.budget.used == 9_000 + 30_000
    sound(q, {"b": 1})
    assert q.return_all(A1) == 0
    assert wakes.count == 1


def test_unreceive(q: WorkQueue, wakes: Wakes) -> None:
    q.extend(items(range(1, 4), hint=10_000))
    q.take(A1, 1, 3, 3, BIG)
    q.receive(A1, 1, 15_000)
    wakes.count = 0
    before = ledger(q)
    assert q.unreceive(2) is False  # in flight
    assert q.unreceive(99) is False
    q.return_heights(A1, [3], notify=False)
    before = ledger(q)
    assert q.unreceive(3) is False  # pending
    assert ledger(q) == before
    assert wakes.count == 0

    assert q.unreceive(1) is True
    assert wakes.count == 1
    assert q.state(1) is WorkState.PENDING and q.owner(1) is None
    assert q.budget.used == 10_000
    assert q.charged_total - q.released_total == 10_000
    # the old owner cannot settle it any more
    assert q.receive(A1, 1, 15_000) is None
    assert heights(q.take(B1, 1, 1, 1, BIG)) == [1]
    assert q.receive(B1, 1, 15_000) == 5_000
    sound(q)


# --- the floor ----------------------------------------------------------------------


def test_advance_floor_releases_and_forgets(q: WorkQueue, wakes: Wakes) -> None:
    q.extend(items(range(1, 9), hint=10_000))
    q.take(A1, 1, 5, 5, BIG)
    q.receive(A1, 1, 12_000)
    q.receive(A1, 2, 8_000)
    q.receive(A1, 3, 10_000)
    q.receive(A1, 5, 11_000)  # 5 received, 4 still in flight
    used = q.budget.used
    assert used == 12_000 + 8_000 + 10_000 + 10_000 + 11_000
    wakes.count = 0

    assert q.advance_floor(2) == 20_000
    assert q.floor == 2
    assert q.state(1) is None and q.state(2) is None
    assert q.budget.used == used - 20_000
    sound(q)

    # a relayed block commits past in-flight and pending heights: released all the same
    assert q.advance_floor(6) == 10_000 + 10_000 + 11_000 + 0
    assert q.floor == 6
    assert [x for x, _, _ in q.items()] == [7, 8]
    assert q.budget.used == 0
    assert q.heights_of(A1) == []
    assert q.first_pending() == 7
    assert q.pending_count == 2
    assert wakes.count == 0
    sound(q)

    # the late body of a forgotten height is refused; a forgotten height is not re-added
    assert q.receive(A1, 4, 10_000) is None
    assert q.extend(items([4, 6])) == 0
    # the floor never moves down here
    assert q.advance_floor(3) == 0
    assert q.advance_floor(6) == 0
    assert q.floor == 6
    assert q.charged_total == q.released_total
    sound(q)


def test_reset_above(q: WorkQueue) -> None:
    q.extend(items(range(1, 9), hint=10_000))
    q.take(A1, 1, 4, 4, BIG)
    q.receive(A1, 1, 9_000)
    q.receive(A1, 4, 13_000)
    assert q.reset_above(3) == 13_000
    assert [x for x, _, _ in q.items()] == [1, 2, 3]
    assert q.first_pending() is None
    assert q.pending_count == 0
    assert q.budget.used == 9_000 + 20_000
    sound(q)
    assert q.reset_above(3) == 0
    # forgotten heights come back fresh
    assert q.extend(items(range(4, 6), hint=None)) == 2
    assert q.state(4) is WorkState.PENDING
    assert q.receive(A1, 4, 1) is None
    assert q.reset_above(0) == 9_000 + 20_000
    assert len(q) == 0
    assert q.budget.used == 0
    assert q.floor == 0
    sound(q)


def test_lower_floor(q: WorkQueue) -> None:
    q.extend(items(range(1, 11), hint=10_000))
    q.take(A1, 1, 6, 6, BIG)
    q.receive(A1, 1, 10_000)
    q.receive(A1, 2, 10_000)
    q.advance_floor(2)
    assert q.floor == 2

    q.lower_floor(5)  # not lower: no-op
    q.lower_floor(2)
    assert q.floor == 2
    assert len(q) == 8

    q.lower_floor(1)
    assert q.floor == 1
    assert len(q) == 0
    assert q.budget.used == 0
    assert q.pending_count == 0
    sound(q)
    # height 2 is above the floor again
    assert q.extend(items([1, 2, 3])) == 2
    assert heights(q.take(B1, 0, 10, 10, BIG)) == [2, 3]
    sound(q)


# --- the checker itself ---------------------------------------------------------------


def _busy_queue() -> WorkQueue:
    q = WorkQueue(ByteBudget(BIG))
    q.extend(items(range(1, 7), hint=10_000))
    q.take(A1, 1, 4, 4, BIG)
    q.receive(A1, 1, 12_000)
    assert q.invariant_violations({"a": 1}) == []
    return q


def test_checker_detects_budget_drift() -> None:
    q = _busy_queue()
    q.budget.used += 1
    out = q.invariant_violations()
    assert any("budget used" in v for v in out)


def test_checker_detects_lifetime_counter_drift() -> None:
    q = _busy_queue()
    q.released_total += 7
    assert any("charged" in v for v in q.invariant_violations())


def test_checker_detects_gone_session() -> None:
    q = _busy_queue()
    assert q.invariant_violations({"a": 1}) == []
    assert any("gone session" in v for v in q.invariant_violations({"a": 2}))
    assert any("gone session" in v for v in q.invariant_violations({}))


def test_checker_detects_state_index_disagreement() -> None:
    q = _busy_queue()
    q._pending.add(2)  # in flight, but also in the pending set
    out = q.invariant_violations()
    assert any("pending-set" in v for v in out)
    assert any("sorted pending index" in v for v in out)


def test_checker_detects_height_below_floor() -> None:
    q = _busy_queue()
    q.floor = 1  # height 1 is still tracked, exactly at the floor
    assert q.invariant_violations() == ["height 1 tracked at or below the floor 1"]


def test_checker_detects_wrong_reservation() -> None:
    q = _busy_queue()
    entry = q._entries[2]
    entry.charged += 5
    q.budget.used += 5
    q.charged_total += 5
    out = q.invariant_violations()
    assert out == ["height 2: reserved 10005 != 10000"]


# --- property: arbitrary operation sequences keep the invariants ----------------------

PEERS = ("a", "b", "c")
MAX_H = 20
heights_st = st.integers(min_value=0, max_value=MAX_H + 2)
hints_st = st.sampled_from([None, 0, 1, 800, MIN_ESTIMATE, 5_000, 60_000, 900_000, 10**8])
actual_st = st.sampled_from([0, 1, 500, 5_000, 20_000, 700_000, MAX_ESTIMATE, 3 * MAX_ESTIMATE])
# relative generation: stale (-1, -2), current (0) or not yet existing (+1)
gen_delta_st = st.sampled_from([0, 0, 0, -1, -2, 1])


@dataclass
class Model:
    """What the queue should hold: height → (state, owner, estimate, charge)."""

    floor: int = 0
    state: dict[int, WorkState] = field(default_factory=dict)
    owner: dict[int, Owner] = field(default_factory=dict)
    estimate: dict[int, int] = field(default_factory=dict)
    charge: dict[int, int] = field(default_factory=dict)

    def forget(self, height: int) -> int:
        freed = self.charge.pop(height, 0)
        del self.state[height]
        self.estimate.pop(height)
        self.owner.pop(height, None)
        return freed

    def to_pending(self, height: int) -> None:
        self.state[height] = WorkState.PENDING
        self.owner.pop(height, None)
        self.charge.pop(height, None)


class WorkQueueMachine(RuleBasedStateMachine):
    """Drives the queue like the producer, routines and committer would."""

    def __init__(self) -> None:
        super().__init__()
        self.wakes = Wakes()
        self.budget = ByteBudget(2 * MAX_ESTIMATE)
        self.q = WorkQueue(self.budget, on_work=self.wakes)
        self.model = Model()
        self.live: dict[str, int] = {p: 1 for p in PEERS}

    def _owner(self, peer: str, delta: int) -> Owner:
        return (peer, self.live[peer] + delta)

    def _snapshot(self) -> tuple[object, ...]:
        return ledger(self.q)

    # -------------------------------------------------------------- producer
    @initialize(
        floor=st.integers(min_value=0, max_value=6),
        count=st.integers(min_value=0, max_value=15),
        hints=hints_st,
    )
    def headers_arrived(self, floor: int, count: int, hints: int | None) -> None:
        # the node starts with a durable tip; the first headers straddle it
        self.q = WorkQueue(self.budget, floor=floor, on_work=self.wakes)
        self.model.floor = floor
        self.extend(-1, count, hints)

    @rule(
        rel=st.integers(min_value=-2, max_value=12),
        count=st.integers(min_value=1, max_value=10),
        hints=hints_st,
    )
    def extend(self, rel: int, count: int, hints: int | None) -> None:
        start = max(0, self.model.floor + rel)
        batch = items(range(start, start + count), hint=hints)
        m = self.model
        new = [x for x in range(start, start + count) if x > m.floor and x not in m.state]
        before = self.wakes.count
        assert self.q.extend(batch) == len(new)
        assert self.wakes.count == before + (1 if new else 0)
        for x in new:
            m.state[x] = WorkState.PENDING
            m.estimate[x] = clamp_estimate(hints)

    # -------------------------------------------------------------- routines
    @rule(
        peer=st.sampled_from(PEERS),
        above=st.integers(min_value=-2, max_value=8),
        span=st.integers(min_value=-1, max_value=12),
        max_count=st.integers(min_value=0, max_value=6),
        max_bytes=st.sampled_from([0, 1_000, 30_000, 1_000_000, 10**9, 10**9]),
        force=st.booleans(),
    )
    def take(
        self, peer: str, above: int, span: int, max_count: int, max_bytes: int, force: bool
    ) -> None:
        owner = self._owner(peer, 0)
        low = max(0, self.model.floor + above)
        high = low + span
        m = self.model
        pending = sorted(x for x, s in m.state.items() if s is WorkState.PENDING and x >= low)
        expected: list[int] = []
        if pending and pending[0] <= high and max_count >= 1:
            limit = min(max_bytes, max(0, self.budget.max_bytes - self.budget.used))
            total = 0
            x = pending[0]
            while x <= high and len(expected) < max_count and m.state.get(x) is WorkState.PENDING:
                if total + m.estimate[x] > limit and not (force and not expected):
                    break
                total += m.estimate[x]
                expected.append(x)
                x += 1
        used_before = self.budget.used
        limit_before = min(max_bytes, self.budget.available)
        taken = self.q.take(owner, low, high, max_count, max_bytes, force_first=force)
        assert heights(taken) == expected
        assert [i.estimate for i in taken] == [m.estimate[x] for x in expected]
        assert [i.hash for i in taken] == [h(x) for x in expected]
        reserved = sum(i.estimate for i in taken)
        assert self.budget.used == used_before + reserved
        if not (force and len(taken) == 1):
            assert reserved <= limit_before
        for x in expected:
            m.state[x] = WorkState.IN_FLIGHT
            m.owner[x] = owner
            m.charge[x] = m.estimate[x]

    @rule(peer=st.sampled_from(PEERS), delta=gen_delta_st, height=heights_st, actual=actual_st)
    def receive(self, peer: str, delta: int, height: int, actual: int) -> None:
        owner = self._owner(peer, delta)
        m = self.model
        ok = m.state.get(height) is WorkState.IN_FLIGHT and m.owner.get(height) == owner
        before = self._snapshot()
        got = self.q.receive(owner, height, actual)
        if not ok:
            assert got is None
            assert self._snapshot() == before
            return
        assert got == actual - m.charge[height]
        m.state[height] = WorkState.RECEIVED
        m.charge[height] = actual

    @rule(peer=st.sampled_from(PEERS), delta=gen_delta_st, data=st.data())
    def receive_own(self, peer: str, delta: int, data: st.DataObject) -> None:
        # aimed at heights actually in flight, so receipts are common
        owner = self._owner(peer, delta)
        mine = self.q.heights_of(owner)
        if mine:
            height = data.draw(st.sampled_from(mine))
            actual = data.draw(actual_st)
            self.receive(peer, delta, height, actual)

    @rule(peer=st.sampled_from(PEERS), actual=actual_st)
    def receive_floor_first(self, peer: str, actual: int) -> None:
        # the lowest in-flight height of a live session arrives (feeds the committer)
        mine = self.q.heights_of(self._owner(peer, 0))
        if mine:
            self.receive(peer, 0, mine[0], actual)

    @rule(actual=actual_st)
    def floor_body_arrives(self, actual: int) -> None:
        # the body the committer waits for arrives from whoever holds it
        m = self.model
        owner = m.owner.get(m.floor + 1)
        if m.state.get(m.floor + 1) is WorkState.IN_FLIGHT and owner is not None:
            peer, gen = owner
            self.receive(peer, gen - self.live[peer], m.floor + 1, actual)

    @rule(
        peer=st.sampled_from(PEERS),
        delta=gen_delta_st,
        hs=st.lists(heights_st, max_size=6),
        notify=st.booleans(),
    )
    def return_heights(self, peer: str, delta: int, hs: list[int], notify: bool) -> None:
        owner = self._owner(peer, delta)
        m = self.model
        expected = {
            x for x in hs if m.state.get(x) is WorkState.IN_FLIGHT and m.owner.get(x) == owner
        }
        before = self.wakes.count
        used = self.budget.used
        assert self.q.return_heights(owner, hs, notify=notify) == len(expected)
        assert self.wakes.count == before + (1 if expected and notify else 0)
        assert self.budget.used == used - sum(m.charge[x] for x in expected)
        for x in expected:
            m.to_pending(x)

    @rule(peer=st.sampled_from(PEERS), delta=gen_delta_st)
    def return_all(self, peer: str, delta: int) -> None:
        owner = self._owner(peer, delta)
        m = self.model
        expected = [
            x for x, s in m.state.items() if s is WorkState.IN_FLIGHT and m.owner.get(x) == owner
        ]
        before = self.wakes.count
        assert self.q.return_all(owner) == len(expected)
        assert self.wakes.count == before + (1 if expected else 0)
        for x in expected:
            m.to_pending(x)

    @rule(peer=st.sampled_from(PEERS))
    def reconnect(self, peer: str) -> None:
        # session teardown returns everything, then the peer comes back as a new generation
        self.return_all(peer, 0)
        self.live[peer] += 1

    # -------------------------------------------------------------- committer
    @rule(data=st.data())
    def commit_prefix(self, data: st.DataObject) -> None:
        m = self.model
        run = 0
        while m.state.get(m.floor + run + 1) is WorkState.RECEIVED:
            run += 1
        if run == 0:
            return
        n = data.draw(st.integers(min_value=1, max_value=run))
        new_floor = m.floor + n
        expected = sum(m.charge[x] for x in range(m.floor + 1, new_floor + 1))
        assert self.q.advance_floor(new_floor) == expected
        for x in range(m.floor + 1, new_floor + 1):
            m.forget(x)
        m.floor = new_floor
        assert self.q.floor == new_floor

    @rule(rel=st.integers(min_value=-1, max_value=8))
    def unreceive(self, rel: int) -> None:
        m = self.model
        height = max(0, m.floor + rel)
        ok = m.state.get(height) is WorkState.RECEIVED
        before = self.wakes.count
        snap = self._snapshot()
        assert self.q.unreceive(height) is ok
        if ok:
            assert self.wakes.count == before + 1
            m.to_pending(height)
        else:
            assert self.wakes.count == before
            assert self._snapshot() == snap

    @rule(data=st.data())
    def refuse_received(self, data: st.DataObject) -> None:
        received = sorted(x for x, s in self.model.state.items() if s is WorkState.RECEIVED)
        if received:
            self.unreceive(data.draw(st.sampled_from(received)) - self.model.floor)

    @rule(rel=st.integers(min_value=-1, max_value=15))
    def reset_above(self, rel: int) -> None:
        m = self.model
        height = max(0, m.floor + rel)
        gone = [x for x in m.state if x > height]
        expected = sum(m.forget(x) for x in gone)
        assert self.q.reset_above(height) == expected

    @rule(down=st.integers(min_value=-1, max_value=3), act=st.integers(min_value=0, max_value=1))
    def lower_floor(self, down: int, act: int) -> None:
        if act:  # rare: a reorg below the durable tip forgets all work
            return
        m = self.model
        new_floor = max(0, m.floor - down)
        self.q.lower_floor(new_floor)
        if new_floor < m.floor:
            for x in [x for x in m.state if x > new_floor]:
                m.forget(x)
            m.floor = new_floor
        assert self.q.floor == m.floor

    # -------------------------------------------------------------- checks
    @invariant()
    def checker_is_clean(self) -> None:
        assert self.q.invariant_violations(self.live) == []

    @invariant()
    def bytes_balance(self) -> None:
        by_state = self.q.bytes_by_state()
        assert self.budget.used == by_state["reserved"] + by_state["held"]
        assert self.q.charged_total - self.q.released_total == self.budget.used
        assert self.budget.used >= 0

    @invariant()
    def matches_model(self) -> None:
        m = self.model
        assert self.q.floor == m.floor
        assert list(self.q.items()) == [(x, m.state[x], m.owner.get(x)) for x in sorted(m.state)]
        assert self.budget.used == sum(m.charge.values())
        pending = sorted(x for x, s in m.state.items() if s is WorkState.PENDING)
        assert self.q.pending_count == len(pending)
        assert self.q.first_pending() == (pending[0] if pending else None)

    def teardown(self) -> None:
        # every session ends: all in-flight work comes back
        for peer in PEERS:
            for gen in range(1, self.live[peer] + 1):
                self.q.return_all((peer, gen))
        assert self.q.bytes_by_state()["reserved"] == 0
        assert self.q.counts()["in_flight"] == 0
        # the committer commits everything received (and the rest arrives by relay)
        received = [x for x, s, _ in self.q.items() if s is WorkState.RECEIVED]
        if received:
            self.q.advance_floor(max(received))
        assert self.q.bytes_by_state()["held"] == 0
        assert self.budget.used == 0
        assert self.q.charged_total == self.q.released_total
        assert self.q.invariant_violations(self.live) == []


WorkQueueMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None
)
TestWorkQueueMachine = WorkQueueMachine.TestCase
