"""One wake-up shared by every source a routine waits on (frames, commands, timers, queues).

A routine that must react to several sources (its stream, its command sink, a shared queue's
wake, its own deadlines) rings one :class:`Doorbell` from each and awaits a single future, via
``ctx.wait_future`` so an injected fault lands at that await. Level-triggered: a ring between
two waits is not lost, and the routine re-polls every source after each wake, so coalescing
many rings into one is harmless.
"""

from __future__ import annotations

import asyncio

from node_core.transport.routine import RoutineContext

__all__ = ["Doorbell"]


class Doorbell:
    """A level-triggered wake-up shared by every source a routine waits on."""

    __slots__ = ("_fut", "_rung")

    def __init__(self) -> None:
        self._fut: asyncio.Future[None] | None = None
        self._rung = False

    def ring(self) -> None:
        self._rung = True
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def wait(self, ctx: RoutineContext, timeout: float | None) -> None:
        """Return at the next ring (or at once if one came since the last wait)."""
        if self._rung:
            self._rung = False
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._fut = fut
        handle = None if timeout is None else loop.call_later(max(0.0, timeout), self.ring)
        try:
            await ctx.wait_future(fut)
        finally:
            self._fut = None
            self._rung = False
            if handle is not None:
                handle.cancel()
