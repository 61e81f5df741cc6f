"""The Peers rows' byte rates: as their cells draw them, and the console's own history of
byte counts for a document that does not carry the node's rates.

Why two sources: a brief document from a node that computes rates
(:mod:`node_core.observe.peer_rates`) carries each peer's ``bytes_in_per_s`` and
``bytes_out_per_s``, sampled once a second, so the console only formats them, and only when
they changed. The full document (the local console's, a recording's) has only byte counts:
:class:`RateHistory` turns them into bytes per second between snapshots, on the snapshots'
own clock (``generated_at``), per connection, so a paused or replayed view never invents a
rate and a reconnecting peer never shows a negative one. Either way the rate is averaged over
:data:`RATE_WINDOW_S` seconds: per-frame deltas made an idle peer's rate jump from ``0`` to a
keepalive's worth and back four times a second.
"""

from __future__ import annotations

from collections import deque
from operator import itemgetter
from typing import Any

from console.format import rate_text
from node_core.observe.peer_rates import RATE_WINDOW_S  # the node's window: both rates read alike

#: A rate as its cell draws it: the text, and whether it is dimmed as idle.
Drawn = tuple[str, bool]

#: What the rates are tracked from, for a document without the node's rates.
_BYTES_NAMES = ("label", "conn_id", "bytes_in", "bytes_out")
_BYTES = itemgetter(*_BYTES_NAMES)


def rate_key(rate: float) -> Drawn:
    """A rate as its cell draws it: the row is rebuilt when that changes, not whenever the
    float moves (it does every frame while the console's own window slides)."""
    return _IDLE_RATE if rate <= 0 else (rate_text(rate), False)


_IDLE_RATE = (rate_text(0.0), True)

#: The node's rates (rounded to 0.1 B/s, most of them small and repeated) as drawn, by value.
_DRAWN: dict[float, Drawn] = {}
_DRAWN_LIMIT = 8192


def drawn_rate(rate: float) -> Drawn:
    """:func:`rate_key`, remembered by value (for the node's rates, which repeat)."""
    drawn = _DRAWN.get(rate)
    if drawn is None:
        if len(_DRAWN) >= _DRAWN_LIMIT:
            _DRAWN.clear()
        drawn = _DRAWN[rate] = rate_key(rate)
    return drawn


class RateHistory:
    """Each connection's byte counts over the last :data:`RATE_WINDOW_S` seconds of snapshot
    time, and the rates they give (see the module docstring)."""

    def __init__(self) -> None:
        self._time: float | None = None
        #: Per (label, conn_id): (snapshot time, bytes in, bytes out) over the rate window.
        self._history: dict[tuple[Any, Any], deque[tuple[float, int, int]]] = {}
        #: Per (label, conn_id): bytes in and out per second as of the last snapshot.
        self.rates: dict[tuple[Any, Any], tuple[float, float]] = {}

    def track(self, peers: Any, now: float) -> None:
        """Bytes per second per (label, conn_id): from the newest sample at least
        :data:`RATE_WINDOW_S` old (or the oldest kept, for a young connection) to this one.

        A snapshot no newer than the last (a repeat render, a paused view) keeps the
        previous rates; a peer's first snapshot has no rate yet.
        """
        if self._time is not None and now <= self._time:
            return
        history = self._history
        next_history: dict[tuple[Any, Any], deque[tuple[float, int, int]]] = {}
        next_rates: dict[tuple[Any, Any], tuple[float, float]] = {}
        horizon = now - RATE_WINDOW_S
        for p in peers:
            try:
                label, conn_id, b_in, b_out = _BYTES(p)
            except KeyError:
                label, conn_id, b_in, b_out = (p.get(name) for name in _BYTES_NAMES)
            key = (label, conn_id)
            b_in, b_out = int(b_in or 0), int(b_out or 0)
            samples = history.get(key)
            if samples is None:
                samples = deque()
            else:
                # Keep one sample at or before the horizon: the window's base.
                while len(samples) > 1 and samples[1][0] <= horizon:
                    samples.popleft()
                t0, in0, out0 = samples[0]
                dt = now - t0
                r_in, r_out = (b_in - in0) / dt, (b_out - out0) / dt
                next_rates[key] = (r_in if r_in > 0.0 else 0.0, r_out if r_out > 0.0 else 0.0)
            samples.append((now, b_in, b_out))
            next_history[key] = samples
        self._time, self._history, self.rates = now, next_history, next_rates
