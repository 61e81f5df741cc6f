"""What a supervised routine sees: its context, its await primitive, its exit vocabulary.

A routine is a coroutine ``async def routine(ctx: RoutineContext) -> None``. It ends in one of
five ways, and the supervised launcher (:mod:`node_core.transport.supervise`) maps each to
exactly one consequence:

- return normally                     -> cause ``normal``: only the service scope is cancelled;
- cancellation (scope or connection)  -> cause ``cancelled``: never a panic;
- raise :class:`RemoteProtocolError`  -> cause ``protocol_reject``: the peer sent invalid data,
  the whole connection closes;
- raise :class:`LocalProtocolError`   -> cause ``local_reject``: local state prevented delivery,
  only this service stops;
- raise anything else                 -> cause ``panic``: recorded, counted, the connection
  closes, no other peer is affected.

Fault injection raises an :class:`InjectedPanic` *inside* the routine at its next await point:
every blocking wait a routine does goes through :meth:`RoutineContext.wait_future`, which is
where an injected exception is delivered.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from node_core.protocol.limits import CloseCode
from node_core.transport.cancel import CancelScope

T = TypeVar("T")


class RemoteProtocolError(Exception):
    """The peer broke the protocol: a protocol reject, fatal to the connection."""

    def __init__(self, reason: str, detail: str = "", close_code: int = CloseCode.NEUTRAL) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.close_code = close_code


class LocalProtocolError(Exception):
    """Local state prevented delivery (full or closed internal queue): a local reject."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class InjectedPanic(RuntimeError):
    """Raised inside a routine by the fault injector to simulate a bug."""

    def __init__(self, fault_id: int) -> None:
        super().__init__(f"injected panic (fault {fault_id})")
        self.fault_id = fault_id


class ExitCause(StrEnum):
    NORMAL = "normal"
    CANCELLED = "cancelled"
    PROTOCOL_REJECT = "protocol_reject"
    LOCAL_REJECT = "local_reject"
    PANIC = "panic"


class RoutineState(StrEnum):
    """What the console shows per routine."""

    RUNNING = "running"
    PARKED = "parked"
    EXITED = "exited"
    PANICKED = "panicked"


@dataclass(frozen=True, slots=True)
class RoutineExit:
    cause: ExitCause
    reason: str | None = None
    error: str | None = None
    close_code: int = CloseCode.NEUTRAL


@dataclass(frozen=True, slots=True)
class CloseCause:
    """Why a connection scope was cancelled, for the close record: code and whether the
    peer was at fault (a protocol reject is; an operator disconnect is not)."""

    code: int
    punitive: bool


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Who a routine serves. ``conn_id`` is the connection generation."""

    node_id: bytes
    label: str
    addr: str
    direction: str
    conn_id: int


class RoutineContext:
    """Per-routine context: scopes, identity of the peer, and the one await primitive."""

    __slots__ = ("_fault", "_waiter", "connection", "generation", "peer", "scope", "service")

    def __init__(
        self,
        *,
        peer: PeerInfo,
        service: str,
        scope: CancelScope,
        connection: CancelScope,
        generation: int,
    ) -> None:
        self.peer = peer
        self.service = service
        self.scope = scope
        self.connection = connection
        self.generation = generation
        self._waiter: asyncio.Future[object] | None = None
        self._fault: BaseException | None = None

    def checkpoint(self) -> None:
        """Deliver a pending injected fault, if any."""
        if self._fault is not None:
            exc, self._fault = self._fault, None
            raise exc

    async def wait_future(self, fut: asyncio.Future[T]) -> T:
        """Await ``fut``; an injected fault is raised here instead."""
        self.checkpoint()
        self._waiter = fut  # type: ignore[assignment]
        try:
            return await fut
        finally:
            self._waiter = None

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(max(0.0, seconds), _resolve, fut)
        try:
            await self.wait_future(fut)
        finally:
            handle.cancel()

    def inject(self, exc: BaseException) -> None:
        """Raise ``exc`` inside the routine at its current or next await point."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        else:
            self._fault = exc


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
