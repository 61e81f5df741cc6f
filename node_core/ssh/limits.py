"""Failed SSH logins per source address: a sliding window, sans-I/O (time is passed in).

A connection that ends without authenticating counts as one failure. An address with
``limit`` failures inside ``window`` seconds is refused until the oldest one ages out: a
password-less server cannot be brute-forced, but a key-guessing loop still costs CPU (each
attempt is a signature check) and fills the journal, so it is slowed down at the door.
"""

from __future__ import annotations

from collections import deque

__all__ = ["FailedLogins"]


class FailedLogins:
    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures.get(address)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[address]
        return times

    def blocked(self, address: str, now: float) -> bool:
        return len(self._recent(address, now)) >= self.limit

    def failed(self, address: str, now: float) -> None:
        times = self._recent(address, now)
        if not times:
            self._failures[address] = times
        times.append(now)
        if len(self._failures) > 10_000:  # bounded: forget the stalest addresses
            for stale in sorted(self._failures, key=lambda a: self._failures[a][-1])[:1000]:
                del self._failures[stale]

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
