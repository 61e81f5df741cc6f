"""The console's memory of the node over time: one row of numbers per snapshot.

The Charts view (key 7) plots the node's tips, download speed, peers, loop lag and byte
budget over time, but a snapshot only says what they are *now*. So the app keeps a
:class:`History`: every poll turns the snapshot into one :class:`Sample` row (a dozen floats,
:func:`sample_of`) and appends it to a ring of numpy columns sized for an hour at the refresh
rate (14,400 rows at 4 Hz, 1.5 MB). Appending is one row write, whatever the length; a chart
reads a column as an array view without copying, and thins it to its width itself.

The replay builds the same structure from a whole recording (:mod:`console.replay_series`),
so the view draws both the same way.

Thread use: the replay fills a history from a worker thread while the UI reads it. The row
is written before the count moves, and a growing history copies before it swaps its arrays,
so a reader that takes the count first always sees complete rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["FIELDS", "HISTORY_SECONDS", "History", "Sample", "capacity_for", "sample_of"]

#: How far back the live console remembers (the Charts view's widest span).
HISTORY_SECONDS = 3600.0

#: The numbers kept per snapshot, in column order (units: heights, blocks/s, MB/s, peers,
#: milliseconds, MiB).
FIELDS: tuple[str, ...] = (
    "header_tip",
    "verified_tip",
    "blocks_per_s",
    "mb_per_s",
    "peers",
    "peers_with_status",
    "peers_parked",
    "peers_left",
    "lag_p50_ms",
    "lag_p99_ms",
    "budget_reserved_mib",
    "budget_max_mib",
)

MIB = 1024 * 1024
NAN = math.nan


@dataclass(frozen=True, slots=True)
class Sample:
    """One snapshot as the charts see it: its time and one value per :data:`FIELDS` (NaN
    where the node does not report it, e.g. block sync on a headers-only node)."""

    t: float
    values: tuple[float, ...]


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) else NAN


def _height(tip: object) -> float:
    return _num(tip.get("height")) if isinstance(tip, dict) else NAN


def sample_of(snapshot: dict[str, Any]) -> Sample | None:
    """The chart row of ``snapshot`` (``None`` for a document without a time).

    Peers by state: connected, those that sent a header-sync Status (syncing with us), those
    whose header sync is parked, and those that just left (the snapshot's recent closes).
    """
    t = snapshot.get("generated_at")
    if not isinstance(t, int | float):
        return None
    chain = snapshot.get("chain") or {}
    hs = snapshot.get("header_sync") or {}
    bs = snapshot.get("block_sync") or {}
    lag = snapshot.get("loop_lag") or {}
    has_lag = bool(lag.get("samples"))
    rate = _num(bs.get("bytes_per_s"))
    reserved, limit = _num(bs.get("budget_reserved")), _num(bs.get("budget_max"))
    values = (
        _height(chain.get("header_tip")),
        _height(chain.get("verified_tip")),
        _num(bs.get("blocks_per_s")),
        rate / 1e6,
        float(len(snapshot.get("peers") or ())),
        _num(hs.get("peers_with_status")),
        float(len(snapshot.get("parked") or ())),
        float(len(snapshot.get("recently_closed") or ())),
        _num(lag.get("p50_ms")) if has_lag else NAN,
        _num(lag.get("p99_ms")) if has_lag else NAN,
        reserved / MIB,
        limit / MIB,
    )
    return Sample(float(t), values)


def capacity_for(refresh_interval: float, seconds: float = HISTORY_SECONDS) -> int:
    """Rows for ``seconds`` of history at one row per ``refresh_interval``."""
    return max(2, math.ceil(seconds / max(refresh_interval, 0.01)))


class History:
    """Samples in time order, as numpy columns.

    Args:
        capacity: Rows kept; the oldest go first once it is full (the live console's hour).
            ``None`` keeps every row, growing as needed (a replay's whole recording).
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        size = capacity if capacity is not None else 256
        self._t: NDArray[np.float64] = np.zeros(size)
        self._v: NDArray[np.float64] = np.zeros((size, len(FIELDS)))
        self._next = 0  # where the next row goes
        self._count = 0
        #: Bumped by every change, so a chart redraws only when there is something new.
        self.version = 0
        #: The node the rows belong to (a different node starts the history afresh).
        self.node_id: object = None

    def __len__(self) -> int:
        return self._count

    def add(self, sample: Sample) -> None:
        """Append ``sample``; one that is not newer than the last row is dropped (the same
        frame read twice, or a paused console re-reading it)."""
        if self._count and sample.t <= self.last_t():
            return
        if self.capacity is None and self._next == len(self._t):
            self._grow()
        i = self._next
        self._t[i] = sample.t
        self._v[i] = sample.values
        size = len(self._t)
        self._next = (i + 1) % size if self.capacity is not None else i + 1
        self._count = min(self._count + 1, size)
        self.version += 1

    def add_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Append the row of ``snapshot``; another node's snapshot clears the history first
        (the Fleet view switched nodes)."""
        node = (snapshot.get("node") or {}).get("id")
        if node != self.node_id:
            if self._count:
                self.clear()
            self.node_id = node
        sample = sample_of(snapshot)
        if sample is not None:
            self.add(sample)

    def clear(self) -> None:
        self._next = self._count = 0
        self.version += 1

    def last_t(self) -> float:
        """Time of the newest row (raises ``IndexError`` when empty)."""
        if not self._count:
            raise IndexError("empty history")
        return float(self._t[(self._next - 1) % len(self._t)])

    def columns(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(times, values)`` oldest first: ``values[:, FIELDS.index(name)]`` is a series.
        Views when the ring has not wrapped, one copy when it has."""
        count = self._count  # first: the rows below it are complete
        t, v, nxt = self._t, self._v, self._next
        if self.capacity is None or count < len(t):
            start = nxt - count if self.capacity is not None else 0
            return t[start : start + count], v[start : start + count]
        order = np.r_[nxt : len(t), 0:nxt]
        return t[order], v[order]

    def _grow(self) -> None:
        size = len(self._t) * 2
        t = np.zeros(size)
        v = np.zeros((size, len(FIELDS)))
        t[: self._next] = self._t[: self._next]
        v[: self._next] = self._v[: self._next]
        self._t, self._v = t, v  # copied first: a reader still holding the old ones is fine
