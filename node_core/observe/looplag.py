"""Event-loop lag monitor.

Every routine and reactor of a node share one asyncio loop, so a single synchronous hog (a slow
validation, a blocking write) delays everyone. Lag - how late a timer fires compared to when it
was due - is the cheapest direct measure of that, and it is what decided that the console's own
node runs on its own loop in a thread (docs/ARCHITECTURE.md, "The process model").

Invariants:
    * The ring holds at most ``window`` samples, each ``>= 0`` seconds.
    * The monitor never raises into the loop: a failing ``on_sample`` hook is logged and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LoopLagMonitor", "LoopLagStats"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoopLagStats:
    """Summary of the recent lag window (all 0.0 when there are no samples).

    Attributes:
        samples: Number of samples in the window.
        p50_ms: Median lag in milliseconds.
        p99_ms: 99th percentile lag in milliseconds (nearest rank).
        max_ms: Largest lag in the window in milliseconds.
    """

    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, int | float]:
        """Plain-dict form for snapshots."""
        return {
            "samples": self.samples,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
        }


_EMPTY = LoopLagStats(samples=0, p50_ms=0.0, p99_ms=0.0, max_ms=0.0)


def _nearest_rank(sorted_values: list[float], q: float) -> float:
    idx = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[idx]


class LoopLagMonitor:
    """Samples how late ``asyncio.sleep(interval)`` wakes up on the running loop.

    Args:
        interval: Seconds between samples; small enough to catch short hogs, large enough to
            cost nothing (one timer per interval).
        window: Number of most recent samples kept for the percentiles.

    Attributes:
        on_sample: Optional hook called with fresh stats after every sample (e.g. to update the
            ``zakura_event_loop_lag_seconds`` gauge). Runs on the loop; keep it cheap.
    """

    def __init__(self, interval: float = 0.05, window: int = 400) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.interval = interval
        self.window = window
        self.on_sample: Callable[[LoopLagStats], None] | None = None
        self._samples: deque[float] = deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """True while the sampling task is alive."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start sampling on the running loop; a no-op if already running.

        Raises:
            RuntimeError: Called outside a running event loop.
        """
        if self.running:
            return
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="loop-lag-monitor")

    async def stop(self) -> None:
        """Stop sampling and wait for the task to finish; idempotent. Samples are kept."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def stats(self) -> LoopLagStats:
        """Percentiles over the current window (O(window log window); call at snapshot rate)."""
        if not self._samples:
            return _EMPTY
        ordered = sorted(self._samples)
        return LoopLagStats(
            samples=len(ordered),
            p50_ms=_nearest_rank(ordered, 0.5) * 1000.0,
            p99_ms=_nearest_rank(ordered, 0.99) * 1000.0,
            max_ms=ordered[-1] * 1000.0,
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval
        while True:
            expected = loop.time() + interval
            await asyncio.sleep(interval)
            self._samples.append(max(0.0, loop.time() - expected))
            hook = self.on_sample
            if hook is not None:
                try:
                    hook(self.stats())
                except Exception:
                    _log.exception("loop lag on_sample hook failed")
