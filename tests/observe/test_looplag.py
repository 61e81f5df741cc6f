"""Tests for the event-loop lag monitor (real loop, real blocking, no mocks)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from node_core.observe.looplag import LoopLagMonitor, LoopLagStats


class _Recorder:
    """Collects every ``on_sample`` call and lets a test wait on a condition over them.

    Waiting on the hook (an ``asyncio.Event`` it sets) rather than on a sleep keeps the tests
    free of timing guesses: they proceed the moment the monitor has recorded what they need.
    """

    def __init__(self, mon: LoopLagMonitor) -> None:
        self.seen: list[LoopLagStats] = []
        self._changed = asyncio.Event()
        mon.on_sample = self._on_sample

    def _on_sample(self, stats: LoopLagStats) -> None:
        self.seen.append(stats)
        self._changed.set()

    async def wait(self, cond: Callable[[list[LoopLagStats]], bool]) -> None:
        try:
            async with asyncio.timeout(5.0):
                while not cond(self.seen):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pytest.fail("monitor did not record the expected samples within 5 s")


def _hog_loop(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:  # deliberately block the event loop
        pass


def test_stats_without_samples_are_zero() -> None:
    stats = LoopLagMonitor().stats()
    assert stats == LoopLagStats(samples=0, p50_ms=0.0, p99_ms=0.0, max_ms=0.0)
    assert stats.to_dict() == {"samples": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}


def test_start_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        LoopLagMonitor().start()


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        LoopLagMonitor(interval=0)
    with pytest.raises(ValueError):
        LoopLagMonitor(window=0)


async def test_blocking_the_loop_shows_up_as_lag() -> None:
    mon = LoopLagMonitor(interval=0.01, window=50)
    rec = _Recorder(mon)
    mon.start()
    try:
        # Once one sample exists the monitor is parked in its sleep, so the hog below
        # delays a timer that was armed before it started.
        await rec.wait(lambda seen: len(seen) >= 1)
        before = len(rec.seen)
        _hog_loop(0.2)
        await rec.wait(lambda seen: len(seen) > before)
        stats = mon.stats()
        assert stats.max_ms >= 150.0
        assert stats.p50_ms <= stats.p99_ms <= stats.max_ms
        assert rec.seen[-1].max_ms >= 150.0
    finally:
        await mon.stop()
    assert not mon.running


async def test_window_bounds_samples_and_on_sample_fires() -> None:
    mon = LoopLagMonitor(interval=0.001, window=5)
    rec = _Recorder(mon)
    mon.start()
    mon.start()  # no-op while running
    try:
        await rec.wait(lambda seen: len(seen) >= 8)
    finally:
        await mon.stop()
        await mon.stop()  # idempotent
    assert mon.stats().samples == 5
    assert rec.seen[0].samples == 1
    assert all(s.samples <= 5 for s in rec.seen)


async def test_failing_hook_does_not_stop_sampling() -> None:
    mon = LoopLagMonitor(interval=0.001, window=10)
    calls = 0
    enough = asyncio.Event()

    def hook(stats: LoopLagStats) -> None:
        nonlocal calls
        calls += 1
        if calls >= 3:
            enough.set()
        raise RuntimeError("hook bug")

    mon.on_sample = hook
    mon.start()
    try:
        async with asyncio.timeout(5.0):
            await enough.wait()
        assert mon.running
    finally:
        await mon.stop()


async def test_monitor_can_restart_after_stop() -> None:
    mon = LoopLagMonitor(interval=0.001, window=10)
    rec = _Recorder(mon)
    mon.start()
    await rec.wait(lambda seen: len(seen) >= 1)
    await mon.stop()
    count = len(rec.seen)
    mon.start()
    try:
        await rec.wait(lambda seen: len(seen) > count)
    finally:
        await mon.stop()
