"""Block-sync work: which heights still need a body, who is fetching them, and their bytes.

Sans-I/O and synchronous (reference §4.8-4.9; docs/ARCHITECTURE.md, "The routine model"):
routines take, settle and return work, the reactor extends it, the committer advances the floor,
all without awaiting, so an exception at any point cannot leave a height or a byte half-moved.

Invariants (checked by :meth:`WorkQueue.invariant_violations`):

- **One state per height.** Every height above ``floor`` that the queue knows is exactly one of
  ``pending`` (nobody has it), ``in_flight`` (requested from one peer session, its estimate
  *reserved*) or ``received`` (its body is buffered or being committed, its actual size
  *held*). Heights at or below ``floor`` are durable and no longer tracked.
- **Every byte charged once, released once.** Taking reserves the estimate; receiving turns
  the reservation into the actual size (the budget moves by the difference); returning
  releases the reservation; only :meth:`WorkQueue.advance_floor` (the durable frontier moved)
  or a reset releases held bytes. ``budget.used`` always equals the reserved plus held bytes
  of the ledger, and the lifetime counters satisfy ``charged == released + outstanding``.
- **Generation-gated writes.** Only the session that took a height (peer label and
  generation) can settle or return it, so a stale session can never touch the work of the
  peer's reconnected session.
- A take is a contiguous ascending run of pending heights and never reserves more than the
  budget has, except a *forced* take (the floor lane), which always takes its first height so
  the height the committer waits for can never be starved by look-ahead.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "DEFAULT_ESTIMATE",
    "MIN_ESTIMATE",
    "ByteBudget",
    "Owner",
    "WorkItem",
    "WorkQueue",
    "WorkState",
]

#: Size assumed for a body whose header carried no hint (bytes).
DEFAULT_ESTIMATE = 16 * 1024
#: Smallest estimate charged for a height (reference: 1 KiB estimate floor).
MIN_ESTIMATE = 1024
#: Largest estimate: one maximal block body.
MAX_ESTIMATE = 2 * 1024 * 1024 - 1024

#: Test-only: ``ZAKURA_TEST_DEFECT=budget_leak`` in a node's environment makes its work queue
#: keep the first bytes it should release charged to the budget for ever (a deliberate leak),
#: so a test can show that the invariant checks of :mod:`zakura.chaos.invariants` catch one.
#: Read once per queue; nothing else reads it. Never set it outside a test.
TEST_DEFECT_ENV = "ZAKURA_TEST_DEFECT"

Owner = tuple[str, int]
"""``(peer label, session generation)``: who holds an in-flight height."""


class WorkState(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    RECEIVED = "received"


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A height to fetch: the header hash its body must match and the bytes reserved for it."""

    height: int
    hash: bytes
    estimate: int


@dataclass(slots=True)
class _Entry:
    hash: bytes
    estimate: int
    state: WorkState = WorkState.PENDING
    owner: Owner | None = None
    charged: int = 0  # bytes this height holds in the budget now (reserved or held)


class ByteBudget:
    """The memory bound of block-sync: bytes reserved for requests plus bytes of held bodies."""

    __slots__ = ("max_bytes", "peak", "used")

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < MAX_ESTIMATE:
            raise ValueError(f"budget {max_bytes} cannot hold one maximal block")
        self.max_bytes = max_bytes
        self.used = 0
        #: The highest ``used`` ever reached: kept where ``used`` changes, so it is exact.
        self.peak = 0

    def charge(self, delta: int) -> None:
        """Move ``used`` by ``delta`` bytes (negative: a release)."""
        self.used += delta
        if self.used > self.peak:
            self.peak = self.used

    @property
    def available(self) -> int:
        return max(0, self.max_bytes - self.used)


def clamp_estimate(hint: int | None) -> int:
    """The bytes to reserve for a body with size ``hint`` (None or 0: unknown)."""
    if not hint:
        return DEFAULT_ESTIMATE
    return max(MIN_ESTIMATE, min(MAX_ESTIMATE, hint))


class WorkQueue:
    """Heights above the durable floor with their state, owner and charge."""

    def __init__(
        self, budget: ByteBudget, floor: int = 0, on_work: Callable[[], None] | None = None
    ) -> None:
        self.budget = budget
        self.floor = floor
        self.on_work = on_work
        self._entries: dict[int, _Entry] = {}
        self._pending: set[int] = set()
        # The same heights sorted, so the lowest pending height at or above a bound is a
        # bisect, not a scan (a 20,000-block sync takes thousands of times).
        self._sorted: list[int] = []
        self.charged_total = 0
        self.released_total = 0
        #: The test-only defect (:data:`TEST_DEFECT_ENV`): one release not given back.
        self.leak_one_release = os.environ.get(TEST_DEFECT_ENV) == "budget_leak"

    # ------------------------------------------------------------------ facts
    def state(self, height: int) -> WorkState | None:
        entry = self._entries.get(height)
        return None if entry is None else entry.state

    def owner(self, height: int) -> Owner | None:
        entry = self._entries.get(height)
        return None if entry is None else entry.owner

    def hash_at(self, height: int) -> bytes | None:
        entry = self._entries.get(height)
        return None if entry is None else entry.hash

    def estimate_at(self, height: int) -> int:
        """Bytes a take of ``height`` would reserve (0 if the height is not tracked)."""
        entry = self._entries.get(height)
        return 0 if entry is None else entry.estimate

    def __len__(self) -> int:
        return len(self._entries)

    def counts(self) -> dict[str, int]:
        in_flight, received, _, _ = self._tally()
        return {
            WorkState.PENDING.value: len(self._entries) - in_flight - received,
            WorkState.IN_FLIGHT.value: in_flight,
            WorkState.RECEIVED.value: received,
        }

    def bytes_by_state(self) -> dict[str, int]:
        _, _, reserved, held = self._tally()
        return {"reserved": reserved, "held": held}

    def _tally(self) -> tuple[int, int, int, int]:
        """Heights in flight and received, and the bytes they hold, in one pass.

        Why one plain pass: the snapshot asks for both at 4 Hz over up to ``lookahead``
        (4,096) heights, and reading ``state.value`` per height cost the node's loop ~7 ms
        each time during a block sync (docs/ARCHITECTURE.md, "Measuring performance").
        """
        in_flight = received = reserved = held = 0
        flying, got = WorkState.IN_FLIGHT, WorkState.RECEIVED
        for entry in self._entries.values():
            state = entry.state
            if state is flying:
                in_flight += 1
                reserved += entry.charged
            elif state is got:
                received += 1
                held += entry.charged
        return in_flight, received, reserved, held

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def first_pending(self, low: int = 0) -> int | None:
        i = bisect.bisect_left(self._sorted, low)
        return self._sorted[i] if i < len(self._sorted) else None

    def _add_pending(self, height: int) -> None:
        self._pending.add(height)
        bisect.insort(self._sorted, height)

    def _add_pending_many(self, heights: list[int]) -> None:
        """:meth:`_add_pending` for ascending heights: one sort of two ascending runs (linear)
        instead of an insort each (the producer adds up to ``lookahead``, 4,096, heights at
        once, on the node's loop)."""
        self._pending.update(heights)
        self._sorted.extend(heights)
        self._sorted.sort()

    def _drop_pending(self, height: int) -> None:
        if height in self._pending:
            self._pending.discard(height)
            del self._sorted[bisect.bisect_left(self._sorted, height)]

    def heights_of(self, owner: Owner) -> list[int]:
        return sorted(
            h
            for h, e in self._entries.items()
            if e.owner == owner and e.state is WorkState.IN_FLIGHT
        )

    # ------------------------------------------------------------------ producing
    def extend(self, items: Iterable[tuple[int, bytes, int | None]]) -> int:
        """Add ``(height, hash, size hint)`` heights not known yet and above the floor."""
        entries, floor, added = self._entries, self.floor, []
        for height, hash_, hint in items:
            if height <= floor or height in entries:
                continue
            entries[height] = _Entry(hash_, clamp_estimate(hint))
            added.append(height)
        if not added:
            return 0
        self._add_pending_many(added)
        if self.on_work is not None:
            self.on_work()
        return len(added)

    # ------------------------------------------------------------------ taking
    def take(
        self,
        owner: Owner,
        low: int,
        high: int,
        max_count: int,
        max_bytes: int,
        *,
        force_first: bool = False,
    ) -> list[WorkItem]:
        """Reserve and hand out the first contiguous run of pending heights in ``[low, high]``.

        The run starts at the lowest pending height ``>= low`` and stops at the first height
        that is not pending, at ``max_count``, or before the reserved bytes would exceed
        ``min(max_bytes, budget.available)``; ``force_first`` takes the first height even
        past those byte limits (the floor lane must always make progress).
        """
        start = self.first_pending(low)
        if start is None or start > high or max_count < 1:
            return []
        limit = min(max_bytes, self.budget.available)
        taken: list[WorkItem] = []
        total = 0
        height = start
        while height <= high and len(taken) < max_count and height in self._pending:
            entry = self._entries[height]
            if total + entry.estimate > limit and not (force_first and not taken):
                break
            total += entry.estimate
            taken.append(WorkItem(height, entry.hash, entry.estimate))
            height += 1
        for item in taken:
            entry = self._entries[item.height]
            self._drop_pending(item.height)
            entry.state = WorkState.IN_FLIGHT
            entry.owner = owner
            entry.charged = entry.estimate
            self.budget.charge(entry.estimate)
            self.charged_total += entry.estimate
        return taken

    # ------------------------------------------------------------------ receiving
    def receive(self, owner: Owner, height: int, actual: int) -> int | None:
        """``owner``'s requested body for ``height`` arrived: reserved estimate → held actual.

        Returns the budget delta (actual - estimate), or None when ``owner`` does not hold
        ``height`` in flight (stale session, already returned, or never requested).
        """
        entry = self._entries.get(height)
        if entry is None or entry.state is not WorkState.IN_FLIGHT or entry.owner != owner:
            return None
        delta = actual - entry.charged
        self.budget.charge(delta)
        if delta > 0:
            self.charged_total += delta
        else:
            self.released_total -= delta
        entry.charged = actual
        entry.state = WorkState.RECEIVED
        return delta

    def return_heights(self, owner: Owner, heights: Iterable[int], *, notify: bool = True) -> int:
        """Give back ``owner``'s in-flight ``heights`` (released, pending again); returns count."""
        returned = 0
        for height in heights:
            entry = self._entries.get(height)
            if entry is None or entry.state is not WorkState.IN_FLIGHT or entry.owner != owner:
                continue
            self._release(entry)
            entry.state = WorkState.PENDING
            entry.owner = None
            self._add_pending(height)
            returned += 1
        if returned and notify and self.on_work is not None:
            self.on_work()
        return returned

    def return_all(self, owner: Owner) -> int:
        """Every in-flight height of ``owner`` (session teardown)."""
        return self.return_heights(owner, self.heights_of(owner))

    def unreceive(self, height: int) -> bool:
        """A received body was refused by the committer: release it, fetch it again."""
        entry = self._entries.get(height)
        if entry is None or entry.state is not WorkState.RECEIVED:
            return False
        self._release(entry)
        entry.state = WorkState.PENDING
        entry.owner = None
        self._add_pending(height)
        if self.on_work is not None:
            self.on_work()
        return True

    def raise_estimate(self, height: int, nbytes: int) -> bool:
        """A body of ``nbytes`` showed ``height``'s estimate was too low: reserve more next time.

        Only a pending entry changes (nothing is charged for it), so the ledger stays exact;
        returns False for any other state.
        """
        entry = self._entries.get(height)
        if entry is None or entry.state is not WorkState.PENDING:
            return False
        entry.estimate = max(entry.estimate, clamp_estimate(nbytes))
        return True

    # ------------------------------------------------------------------ frontier
    def advance_floor(self, new_floor: int) -> int:
        """The durable tip moved to ``new_floor``: forget and release everything at or below.

        Returns the bytes released. Heights committed by another path (a relayed block) are
        released whatever their state.
        """
        if new_floor <= self.floor:
            return 0
        freed, entries = 0, self._entries
        if new_floor - self.floor < len(entries):  # only heights above the floor are tracked
            done = [h for h in range(self.floor + 1, new_floor + 1) if h in entries]
        else:
            done = [h for h in entries if h <= new_floor]
        for height in done:
            entry = entries.pop(height)
            freed += self._release(entry)
            self._drop_pending(height)
        self.floor = new_floor
        return freed

    def reset_above(self, height: int) -> int:
        """Forget every height above ``height`` (a reorg or a commit rejection); bytes freed."""
        freed = 0
        for h in [h for h in self._entries if h > height]:
            entry = self._entries.pop(h)
            freed += self._release(entry)
            self._drop_pending(h)
        return freed

    def lower_floor(self, floor: int) -> None:
        """The durable tip went down (a reorg truncated bodies): track from there again."""
        if floor < self.floor:
            self.reset_above(floor)
            self.floor = floor

    def _release(self, entry: _Entry) -> int:
        freed, entry.charged = entry.charged, 0
        if self.leak_one_release and freed:  # test-only defect: the budget keeps these bytes
            self.leak_one_release = False
            self.released_total += freed
            return freed
        self.budget.charge(-freed)
        self.released_total += freed
        return freed

    # ------------------------------------------------------------------ checks
    def invariant_violations(self, live: dict[str, int] | None = None) -> list[str]:
        """Every broken invariant ([] when sound); ``live`` maps peer → current generation."""
        out: list[str] = []
        reserved_plus_held = 0
        for height, entry in self._entries.items():
            if height <= self.floor:
                out.append(f"height {height} tracked at or below the floor {self.floor}")
            pending = height in self._pending
            if pending != (entry.state is WorkState.PENDING):
                out.append(f"height {height}: state {entry.state} but pending-set={pending}")
            if entry.state is WorkState.PENDING and (entry.owner or entry.charged):
                out.append(f"height {height}: pending with owner or charge")
            if entry.state is WorkState.IN_FLIGHT:
                if entry.owner is None:
                    out.append(f"height {height}: in flight without owner")
                elif live is not None and live.get(entry.owner[0]) != entry.owner[1]:
                    out.append(f"height {height}: in flight to gone session {entry.owner}")
                if entry.charged != entry.estimate:
                    out.append(f"height {height}: reserved {entry.charged} != {entry.estimate}")
            reserved_plus_held += entry.charged
        if reserved_plus_held != self.budget.used:
            out.append(f"budget used {self.budget.used} != ledger {reserved_plus_held}")
        if self.charged_total - self.released_total != reserved_plus_held:
            out.append(
                f"charged {self.charged_total} - released {self.released_total}"
                f" != outstanding {reserved_plus_held}"
            )
        for height in self._pending:
            if height not in self._entries:
                out.append(f"pending height {height} has no entry")
        if self._sorted != sorted(self._pending):
            out.append("sorted pending index disagrees with the pending set")
        return out

    def snapshot(self) -> dict[str, Any]:
        counts = self.counts()
        by_state = self.bytes_by_state()
        return {
            "floor": self.floor,
            "pending": counts["pending"],
            "in_flight": counts["in_flight"],
            "received": counts["received"],
            "reserved_bytes": by_state["reserved"],
            "held_bytes": by_state["held"],
            "budget_used": self.budget.used,
            "budget_max": self.budget.max_bytes,
        }

    def items(self) -> Iterator[tuple[int, WorkState, Owner | None]]:
        for height in sorted(self._entries):
            entry = self._entries[height]
            yield height, entry.state, entry.owner
