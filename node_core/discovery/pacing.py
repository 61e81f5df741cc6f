"""Spread a burst of discovery messages over several loop iterations.

Why: every peer's discovery routine is its own task, but peers that refresh in step (a load
generator ticking a tenth of its peers each second, or real peers that connected together)
make ~100 GetPeers arrive in one read, and the ~100 routines they wake then all run in *one*
loop iteration: 100 answers of 0.3-1 ms each held the loop for 50-130 ms every second at
1,000 peers, the largest part of the node's loop-lag p99 (docs/ARCHITECTURE.md, "Measuring
performance"). Handling a message is short and must stay in the routine (its order against
the routine's other messages is the protocol's), so the pacer only decides *when*: a routine
takes a turn before handling a message, and once the messages handled in the current
iteration have cost :attr:`MessagePacer.budget` seconds, later routines wait in a FIFO and
are released a batch per iteration, sized from the recent cost of one message. Between
batches the loop polls its sockets and runs its timers, so a burst costs the loop the same
CPU in several short pieces instead of one long one.

Invariants:
- A routine that takes a turn while nobody waits and the budget is not spent runs at once
  (no await: an idle node answers with no added latency).
- Waiters are served in arrival order; a cancelled waiter is skipped, never granted.
- At most one release callback is pending at a time, and none when nobody waits and nothing
  was spent (an idle pacer schedules nothing).
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["DEFAULT_BUDGET_SECS", "MessagePacer"]

#: Handling time one loop iteration may spend on discovery messages before the rest wait.
DEFAULT_BUDGET_SECS = 0.002
#: Weight of the newest message in the running mean of one message's cost.
_EWMA_WEIGHT = 0.2
#: The mean a fresh pacer assumes (one GetPeers answer at 1,000 peers on a quiet machine).
_INITIAL_COST_SECS = 0.0005


class MessagePacer:
    """Turns for handling messages: a time budget per loop iteration, FIFO beyond it.

    Args:
        budget: Seconds of handling per loop iteration before later routines wait; 0 or
            less switches pacing off (every turn is granted at once).
    """

    __slots__ = ("_cost", "_release_pending", "_spent", "_waiters", "budget")

    def __init__(self, budget: float = DEFAULT_BUDGET_SECS) -> None:
        self.budget = budget
        self._spent = 0.0
        self._cost = _INITIAL_COST_SECS
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._release_pending = False

    @property
    def waiting(self) -> int:
        """Routines waiting for a turn (cancelled ones may still be counted until skipped)."""
        return len(self._waiters)

    async def turn(self) -> None:
        """Return when the caller may handle one message; call :meth:`spent` after it."""
        if self.budget <= 0:
            return
        if not self._waiters and self._spent < self.budget:
            self._schedule_release()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._schedule_release()
        await fut  # cancelled: the future is cancelled too, and release skips it

    def spent(self, seconds: float) -> None:
        """Account one handled message's cost to the current iteration's budget."""
        self._spent += seconds
        self._cost += _EWMA_WEIGHT * (seconds - self._cost)
        self._schedule_release()  # the next iteration starts with a fresh budget

    def _schedule_release(self) -> None:
        if not self._release_pending:
            self._release_pending = True
            asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        """Runs once in the next loop iteration: a fresh budget, and a batch of waiters.

        The batch's wake-ups run in the iteration after this one (a future's callbacks are
        scheduled, not called), followed by the next release, which then refills the budget
        for whoever arrives while it is spent.
        """
        self._release_pending = False
        self._spent = 0.0
        batch = max(1, int(self.budget / max(self._cost, 1e-6)))
        while batch > 0 and self._waiters:
            fut = self._waiters.popleft()
            if fut.done():  # its routine was cancelled while it waited
                continue
            fut.set_result(None)
            batch -= 1
        if self._waiters:
            # The granted routines run next iteration and spend the budget; new arrivals then
            # queue behind the remaining waiters until the next release.
            self._spent = self.budget
            self._schedule_release()
