"""Each connection's bytes in and out per second, for the brief snapshot's Peers rows.

Why the node computes them: a console polling at 4 Hz otherwise keeps a history of every
peer's byte counts and divides twice per peer per frame (at 1,000 peers a fifth of its frame),
and every console does it again. The node has the counters; sampling them once a second
for every reader is about a microsecond per connection.

Why sampled once a second (:data:`SAMPLE_EVERY_S`), at the first snapshot build after the
second has passed, rather than at every build: a rate then holds still between samples, so a
console drawing four frames a second sees the same number in three of them and skips the
row, and two consoles see the same figure. The rate is over the last :data:`RATE_WINDOW_S`
seconds as of the newest sample (so up to a second old): from the oldest sample kept that
holds the connection to the newest. A connection seen in one sample only has no rate yet
(``None``), and after a pause in reading longer than the window (no console polled) the old
samples are dropped, so a rate never spans the pause.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

__all__ = ["RATE_WINDOW_S", "SAMPLE_EVERY_S", "PeerRates"]

#: Seconds a rate is averaged over (console/widgets/byte_rates.py uses it for a full document).
RATE_WINDOW_S = 4.0

#: Seconds between two samples of the byte counters.
SAMPLE_EVERY_S = 1.0


class _Peer(Protocol):
    @property
    def conn_id(self) -> int: ...


class Counted(Protocol):
    """What a sample reads of a connection (a
    :class:`~node_core.transport.connection.Connection`)."""

    @property
    def peer(self) -> _Peer: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...


Rates = dict[int, tuple[float, float]]


class PeerRates:
    """Rates by connection id, sampled at most once per ``every`` seconds (see the module
    docstring); one per node API, shared by every reader of its brief document."""

    def __init__(
        self,
        window: float = RATE_WINDOW_S,
        every: float = SAMPLE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.every = every
        self._clock = clock
        #: (monotonic time, conn id -> (bytes in, bytes out)), oldest first.
        self._samples: deque[tuple[float, dict[int, tuple[int, int]]]] = deque()
        self._rates: Rates = {}

    def rates(self, conns: Iterable[Counted]) -> Rates:
        """Bytes in and out per second by connection id, rounded to 0.1 (the same dict until
        the next sample is due)."""
        now = self._clock()
        samples = self._samples
        if samples and now - samples[-1][0] < self.every:
            return self._rates
        sample = {c.peer.conn_id: (c.bytes_in, c.bytes_out) for c in conns}
        # A base older than the window plus one sample's spacing means nobody read for a
        # while: drop it rather than average over the pause.
        while samples and now - samples[0][0] > self.window + self.every:
            samples.popleft()
        samples.append((now, sample))
        # Keep one sample at or before the window's start: the base of every rate.
        while len(samples) > 1 and samples[1][0] <= now - self.window:
            samples.popleft()
        rates: Rates = {}
        for conn_id, (b_in, b_out) in sample.items():
            t0, base = now, (b_in, b_out)
            for t, old in samples:  # oldest first: the first that holds it is the base
                got = old.get(conn_id)
                if got is not None:
                    t0, base = t, got
                    break
            if t0 == now:
                continue  # first seen now: no rate yet
            dt = now - t0
            rates[conn_id] = (
                round(max(0, b_in - base[0]) / dt, 1),
                round(max(0, b_out - base[1]) / dt, 1),
            )
        self._rates = rates
        return rates
