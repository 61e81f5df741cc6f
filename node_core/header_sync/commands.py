"""Per-peer header-sync command channel and its full-queue policy (reference §3.11, §3.3).

The reactor talks to a peer's header-sync routine only through a ``HeaderSyncCommandSink``
carried on the session, so it never touches routine state and never blocks on a slow peer.

Invariants:
- Two carriers. ``Status`` lives in a coalescing slot (newest value replaces an unread one);
  every other command lives in a bounded FIFO of ``HEADER_SYNC_COMMAND_QUEUE_DEPTH`` (256).
- ``enqueue`` and ``set_status`` never block and never await: the reactor must not be wedged by
  one peer. The outcome is decided by the pure ``decide_outcome`` table:

  ======================  ==========  ===================  ============
  command                 normal      FIFO full            routine gone
  ======================  ==========  ===================  ============
  Status                  queued      n/a (queued)         no_routine
  SendHeaders             queued      parked               parked
  DropExpectation         queued      parked               parked
  ForwardNewBlock         queued      dropped              no_routine
  Wake                    queued      coalesced            no_routine
  ======================  ==========  ===================  ============

  A ``Wake`` is idempotent: while one is already queued a second is ``coalesced``. ``parked``
  (ParkRequired) is returned only for never-drop commands and is the reactor's cue to park the
  peer (§3.12); the sink itself never parks anything and never drops a never-drop command.
- FIFO order is preserved; the routine sees commands before the status slot (§3.3 order 2
  before 3), and each status change is delivered at most once.
- Sinks share nothing: one full sink cannot affect another.
- Readiness is level-triggered: ``ready_event`` is set exactly while ``next``/``try_next`` would
  return without waiting (a command or unread status is pending, or the sink is closed). It is
  re-armed (cleared) by the consumption that empties the sink, so "check, then wait" with no
  await in between can never miss a wake-up (subscribe-before-check holds trivially).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from node_core.transport.cancel import CancelScope

HEADER_SYNC_COMMAND_QUEUE_DEPTH = 256
"""Bound of the per-peer command FIFO (reference §3.11)."""

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class SendHeaders:
    """A Headers response to write; never dropped because the peer is waiting for it."""

    headers: tuple[bytes, ...]
    body_sizes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DropExpectation:
    """Reactor timed out a range; the routine must pop the matching expectation (§3.6).

    Never dropped: losing it would leave the routine's in-flight slot occupied forever.
    """

    generation: int
    start_height: int
    count: int


@dataclass(frozen=True, slots=True)
class ForwardNewBlock:
    """Relay a NewBlock announcement; advisory, so dropped when the peer is behind."""

    block: bytes


@dataclass(frozen=True, slots=True)
class Wake:
    """Ask the routine to ``try_pull``; idempotent, so one pending Wake stands for many."""


Command = SendHeaders | DropExpectation | ForwardNewBlock | Wake
"""Everything that travels through the FIFO (Status travels in its own slot)."""


@dataclass(frozen=True, slots=True)
class StatusChanged(Generic[S]):
    """Routine-side item: the status slot changed; write ``status`` (§3.3 ``SendStatus``)."""

    status: S


class EnqueueOutcome(StrEnum):
    """Result of handing a command to a sink; the values are the reference trace labels."""

    QUEUED = "queued"
    COALESCED = "coalesced"
    DROPPED = "dropped"
    NO_ROUTINE = "no_routine"
    PARKED = "parked"  # ParkRequired: the reactor must park the peer (§3.12)


class StatusKind:
    """Marker type so ``decide_outcome`` can be asked about the status slot too."""

    __slots__ = ()


STATUS = StatusKind()
"""Pass to ``decide_outcome`` to get the policy for a Status update."""


def decide_outcome(
    cmd: Command | StatusKind, *, closed: bool, full: bool, wake_pending: bool
) -> EnqueueOutcome:
    """The §3.11 table as a pure function, so the policy is testable without a sink.

    ``QUEUED`` means "accept it"; every other outcome means the sink state must not change.
    """
    if isinstance(cmd, StatusKind):
        # The status slot coalesces, so it can never be full; it never parks.
        return EnqueueOutcome.NO_ROUTINE if closed else EnqueueOutcome.QUEUED
    if isinstance(cmd, SendHeaders | DropExpectation):
        # Never-drop: anything we cannot deliver must park the peer instead.
        return EnqueueOutcome.PARKED if closed or full else EnqueueOutcome.QUEUED
    if isinstance(cmd, ForwardNewBlock):
        if closed:
            return EnqueueOutcome.NO_ROUTINE
        return EnqueueOutcome.DROPPED if full else EnqueueOutcome.QUEUED
    # Wake
    if closed:
        return EnqueueOutcome.NO_ROUTINE
    return EnqueueOutcome.COALESCED if full or wake_pending else EnqueueOutcome.QUEUED


def _is_cancelled(cancel: asyncio.Event | CancelScope) -> bool:
    return cancel.cancelled if isinstance(cancel, CancelScope) else cancel.is_set()


class HeaderSyncCommandSink(Generic[S]):
    """One peer's command channel: reactor side (``enqueue``/``set_status``/``close``) and
    routine side (``try_next``/``next``/``ready``/``wait_ready``).

    ``S`` is the Status message type; the sink never inspects it.
    """

    __slots__ = (
        "_closed",
        "_depth",
        "_fifo",
        "_latest",
        "_ready",
        "_unread",
        "_wake_pending",
        "on_ready",
    )

    def __init__(self, depth: int = HEADER_SYNC_COMMAND_QUEUE_DEPTH) -> None:
        if depth < 1:
            raise ValueError("command queue depth must be at least 1")
        self._depth = depth
        self._fifo: deque[Command] = deque()
        self._latest: S | None = None
        self._unread: StatusChanged[S] | None = None
        self._wake_pending = False
        self._closed = False
        self._ready = asyncio.Event()
        #: Rung (with no arguments) whenever the sink is or becomes ready, so a routine that
        #: waits on several sources can share one doorbell.
        self.on_ready: Callable[[], None] | None = None

    # -- observation (console, snapshot) -------------------------------------------------

    @property
    def depth(self) -> int:
        """Configured FIFO bound (256 by default), shown by the console next to ``queued``."""
        return self._depth

    @property
    def queued(self) -> int:
        """Commands currently waiting in the FIFO (the status slot is not counted)."""
        return len(self._fifo)

    def __len__(self) -> int:
        return len(self._fifo)

    @property
    def full(self) -> bool:
        return len(self._fifo) >= self._depth

    @property
    def closed(self) -> bool:
        """True once the routine is gone; new commands get no_routine or parked."""
        return self._closed

    @property
    def status_pending(self) -> bool:
        """An unread status is in the slot."""
        return self._unread is not None

    @property
    def latest_status(self) -> S | None:
        """Last status set, read or not (for the console; the routine uses ``try_next``)."""
        return self._latest

    # -- reactor side ----------------------------------------------------------------------

    def enqueue(self, cmd: Command) -> EnqueueOutcome:
        """Offer ``cmd`` without waiting; the outcome follows ``decide_outcome``."""
        outcome = decide_outcome(
            cmd, closed=self._closed, full=self.full, wake_pending=self._wake_pending
        )
        if outcome is EnqueueOutcome.QUEUED:
            self._fifo.append(cmd)
            if isinstance(cmd, Wake):
                self._wake_pending = True
            self._rearm()
        return outcome

    def set_status(self, status: S) -> EnqueueOutcome:
        """Replace the status slot (newest wins, an unread value is overwritten)."""
        outcome = decide_outcome(STATUS, closed=self._closed, full=False, wake_pending=False)
        if outcome is EnqueueOutcome.QUEUED:
            self._latest = status
            self._unread = StatusChanged(status)
            self._rearm()
        return outcome

    def close(self) -> None:
        """Mark the routine gone. Idempotent; already queued items stay readable."""
        self._closed = True
        self._rearm()

    # -- routine side ----------------------------------------------------------------------

    def ready(self) -> bool:
        """True when ``try_next`` has an item or the sink is closed (``next`` won't wait)."""
        return bool(self._fifo) or self._unread is not None or self._closed

    @property
    def ready_event(self) -> asyncio.Event:
        """Level-triggered readiness for composing with other waits (e.g. stream reads).

        Set exactly while ``ready()`` is true. Do not set or clear it yourself.
        """
        return self._ready

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until ``ready()``; returns False on timeout. Never consumes anything."""
        if self.ready():
            return True
        if timeout is None:
            await self._ready.wait()
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return self.ready()
        return True

    def try_next(self) -> Command | StatusChanged[S] | None:
        """Take the next item in routine priority order, or None if nothing is pending.

        FIFO commands first, then the status slot, each status change returned once.
        """
        item: Command | StatusChanged[S] | None = None
        if self._fifo:
            cmd = self._fifo.popleft()
            if isinstance(cmd, Wake):
                self._wake_pending = False
            item = cmd
        elif self._unread is not None:
            item, self._unread = self._unread, None
        self._rearm()
        return item

    async def next(self, cancel: asyncio.Event | CancelScope) -> Command | StatusChanged[S] | None:
        """Wait for the next item; None means the routine should exit.

        Exit (None) when ``cancel`` fires (checked first, as in §3.3) or when the sink is
        closed and drained (the reference's "channel closed → exit Ok").
        """
        while True:
            if _is_cancelled(cancel):
                return None
            item = self.try_next()
            if item is not None:
                return item
            if self._closed:
                return None
            waiter = asyncio.ensure_future(self._ready.wait())
            canceller = asyncio.ensure_future(cancel.wait())
            try:
                await asyncio.wait({waiter, canceller}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                # Cancel the loser without awaiting it, so an outer cancellation of the
                # routine is never swallowed here.
                waiter.cancel()
                canceller.cancel()

    def _rearm(self) -> None:
        """Keep ``ready_event`` equal to ``ready()`` after every mutation; ring ``on_ready``."""
        if self.ready():
            self._ready.set()
            if self.on_ready is not None:
                self.on_ready()
        else:
            self._ready.clear()
