"""The discovery message pacer: a burst is spread over loop iterations, in arrival order.

The cost of each handled message is passed to ``spent`` as a number (no clock is read), so
these tests check the pacer's accounting and ordering on a real event loop, not timing.
"""

from __future__ import annotations

import asyncio

import pytest

from node_core.discovery.pacing import MessagePacer


class IterationCounter:
    """Counts event-loop iterations: a callback that re-schedules itself once per iteration."""

    def __init__(self) -> None:
        self.n = 0
        self._stopped = False
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        if not self._stopped:
            self.n += 1
            asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._stopped = True


async def burst(pacer: MessagePacer, routines: int, cost: float) -> list[tuple[int, int]]:
    """``routines`` tasks each take one turn at once; returns (routine, iteration) in the
    order they were handled."""
    counter = IterationCounter()
    handled: list[tuple[int, int]] = []

    async def routine(i: int) -> None:
        await pacer.turn()
        handled.append((i, counter.n))
        pacer.spent(cost)

    async with asyncio.timeout(10):
        await asyncio.gather(*(routine(i) for i in range(routines)))
    counter.stop()
    return handled


def per_iteration(handled: list[tuple[int, int]]) -> list[int]:
    counts: dict[int, int] = {}
    for _, iteration in handled:
        counts[iteration] = counts.get(iteration, 0) + 1
    return [counts[k] for k in sorted(counts)]


async def test_an_idle_pacer_grants_a_turn_without_suspending() -> None:
    pacer = MessagePacer(budget=0.004)
    coro = pacer.turn()
    with pytest.raises(StopIteration):
        coro.send(None)  # finished on its first step: no await, no added latency
    assert pacer.waiting == 0


async def test_a_burst_is_spread_over_iterations_in_arrival_order() -> None:
    pacer = MessagePacer(budget=0.004)
    handled = await burst(pacer, 100, cost=0.0005)
    assert [i for i, _ in handled] == list(range(100))  # FIFO: nobody overtakes
    counts = per_iteration(handled)
    # 0.004 s of budget at 0.0005 s a message: 8 to an iteration (the first iteration takes
    # turns until its budget is spent; every release then sizes its batch from the mean).
    assert max(counts) == 8
    assert sum(counts) == 100 and len(counts) >= 100 // 8
    assert pacer.waiting == 0


async def test_expensive_messages_go_one_per_iteration() -> None:
    pacer = MessagePacer(budget=0.004)
    handled = await burst(pacer, 12, cost=0.010)
    assert [i for i, _ in handled] == list(range(12))
    counts = per_iteration(handled)
    assert counts[1:] == [1] * (len(counts) - 1)


async def test_no_budget_means_no_pacing() -> None:
    pacer = MessagePacer(budget=0.0)
    handled = await burst(pacer, 50, cost=0.010)
    assert per_iteration(handled) == [50]


async def test_a_cancelled_waiter_is_skipped_and_the_rest_still_run() -> None:
    pacer = MessagePacer(budget=0.001)
    order: list[int] = []

    async def routine(i: int) -> None:
        await pacer.turn()
        order.append(i)
        pacer.spent(0.001)

    tasks = [asyncio.create_task(routine(i)) for i in range(5)]
    async with asyncio.timeout(10):
        await asyncio.sleep(0)  # every routine took its turn: the first ones ran, the rest wait
        assert len(order) + pacer.waiting == 5 and 2 not in order
        tasks[2].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert order == [0, 1, 3, 4]
    assert pacer.waiting == 0


async def test_the_budget_is_fresh_after_a_burst() -> None:
    pacer = MessagePacer(budget=0.004)
    await burst(pacer, 30, cost=0.0005)  # returns once the last routine has spent its turn
    assert pacer.waiting == 0
    await asyncio.sleep(0)  # one iteration: the release the last spend scheduled runs
    coro = pacer.turn()
    with pytest.raises(StopIteration):
        coro.send(None)
