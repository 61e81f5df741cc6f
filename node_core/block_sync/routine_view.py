"""What a block-sync routine shows: its console view and the facts diagnostics read.

Kept apart from :mod:`node_core.block_sync.routine` so the routine module holds the loop
and its decisions only; both functions read the routine's state and change nothing but the
window's clock (moved to now, so the ``cwnd`` they report is the one a fill would use).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from node_core.observe.diagnostic_facts import BlockSyncFacts, block_sync_matters

if TYPE_CHECKING:
    from node_core.block_sync.window import DownloadWindow
    from node_core.observe.schema import BlockSyncRoutineView
    from node_core.protocol.block_sync import Status


class _Request(Protocol):
    start: int
    received: set[int]
    deadline: float

    @property
    def count(self) -> int: ...


class RoutineState(Protocol):
    """What these functions read of a routine (``BlockSyncRoutine`` has it); a protocol so
    this module does not import the routine module, which imports it."""

    window: DownloadWindow
    status: Status | None
    accepted_blocks: int
    last_fill_stop: str
    liveness_deadline: float | None

    @property
    def outstanding(self) -> Mapping[int, _Request]: ...

    def unreceived(self) -> int: ...

    def stalled_for(self) -> float | None: ...


def routine_facts(routine: RoutineState) -> BlockSyncFacts | None:
    """What diagnostics read of this session: the fields of :func:`routine_view` they use, read
    without building the rest (the node evaluates them every second); None when the
    session can raise no diagnostic (:func:`block_sync_matters`: nothing outstanding).
    Like the view, it moves the window's clock to now first, so its ``cwnd`` is the one
    the view shows."""
    if not routine.outstanding:
        return None
    outstanding = routine.unreceived()
    if not block_sync_matters(outstanding):
        return None
    window = routine.window
    return BlockSyncFacts(
        outstanding=outstanding,
        accepted_blocks=routine.accepted_blocks,
        cwnd=window.cwnd_at(time.monotonic()),
        hard_cap=window.hard_cap,
    )


def routine_view(routine: RoutineState) -> BlockSyncRoutineView:
    """The session as the console shows it (the peer detail's block-sync section)."""
    now = time.monotonic()
    status = routine.status
    window = routine.window.view(now)
    return {
        "outstanding": routine.unreceived(),
        "requests": [
            {
                "start_height": o.start,
                "count": o.count,
                "received": len(o.received),
                "deadline_in_s": round(o.deadline - now, 1),
            }
            for o in sorted(routine.outstanding.values(), key=lambda o: o.start)
        ],
        "window": window,
        "delivery_rate": window["delivery_bytes_per_s"],
        "fill_stop": routine.last_fill_stop,
        "servable": None
        if status is None
        else {"low": status.servable_low, "high": status.servable_high},
        "accepted_blocks": routine.accepted_blocks,
        "stalled_for_s": routine.stalled_for(),
        "liveness_in_s": None
        if routine.liveness_deadline is None
        else round(routine.liveness_deadline - now, 1),
    }
