"""Token buckets with an explicit clock, so rate limits are testable without waiting."""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored; a new bucket starts full."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float | None = None, *, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = rate if burst is None else burst
        self._tokens = self.burst
        self._last = now

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now

    def try_take(self, now: float, n: float = 1.0) -> bool:
        self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def level(self, now: float) -> float:
        self._refill(now)
        return self._tokens
