"""The supervised launchers (reference §1.11-1.12).

Every per-peer routine starts through :func:`spawn_supervised_routine`. On every exit path it:
1. on a panic (any exception but a reject or cancellation): counts ``zakura_pipe_panic_total``,
   journals ``routine/panicked`` and runs ``on_panic`` (which cancels the connection scope);
2. cancels the routine's *service* scope (never the connection scope);
3. runs ``on_teardown``, which must be idempotent;
4. journals ``routine/exited`` with its cause and reason, and applies
   :func:`handle_routine_exit`, the single place that decides whether an exit is fatal to the
   connection.

``asyncio.CancelledError`` is never a panic. Helper tasks that ride the connection scope use
:func:`spawn_supervised_peer_task`, which has the same panic hook but cancels nothing on a
normal exit (a helper whose stream was reset or closed under it exits normally, as a routine
does).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from node_core.observe.journal import Journal
from node_core.observe.metrics import NodeMetrics
from node_core.transport.cancel import CancelScope
from node_core.transport.routine import (
    CloseCause,
    ExitCause,
    LocalProtocolError,
    PeerInfo,
    RemoteProtocolError,
    RoutineContext,
    RoutineExit,
    RoutineState,
)
from node_core.transport.stream import StreamReset

log = logging.getLogger(__name__)

Routine = Callable[[RoutineContext], Awaitable[None]]
Teardown = Callable[[], None]
PanicHook = Callable[[BaseException], None]

_generations: dict[str, itertools.count[int]] = {}


def next_generation(service: str) -> int:
    """Process-wide monotone session generation per service, starting at 1."""
    return next(_generations.setdefault(service, itertools.count(1)))


@dataclass(slots=True)
class RoutineHandle:
    """The supervisor's record of one routine: what the console and faults act on."""

    ctx: RoutineContext
    task: asyncio.Task[None] | None = None
    state: RoutineState = RoutineState.RUNNING
    started_mono: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    exit: RoutineExit | None = None
    exited_wall: float | None = None

    @property
    def service(self) -> str:
        return self.ctx.service

    @property
    def peer(self) -> PeerInfo:
        return self.ctx.peer

    @property
    def running(self) -> bool:
        return self.exit is None


def handle_routine_exit(service: str, connection: CancelScope, exit: RoutineExit) -> bool:
    """The one decision: is this exit fatal to the connection? Returns True if it was.

    A protocol reject cancels the connection (every service on it stops). A local reject and
    a normal or cancelled exit stop only this service: the launcher already cancelled its
    scope. Panics never get here; ``on_panic`` handles them.
    """
    if exit.cause is ExitCause.PROTOCOL_REJECT:
        reason = f"{service}:{exit.reason or 'protocol_reject'}"
        connection.cancel(reason, CloseCause(exit.close_code, punitive=True))
        return True
    return False


def _cancel_task_with(scope: CancelScope, task: asyncio.Task[None]) -> None:
    """Cancel ``task`` when ``scope`` is cancelled (but never from inside the task itself).

    Deferred with ``call_soon``: a task cancelled before its first step never enters its
    try/finally, so teardown would be skipped. The first step was queued at create_task and
    runs first.
    """

    def stop_task(_reason: str) -> None:
        if not task.done() and asyncio.current_task() is not task:
            asyncio.get_running_loop().call_soon(task.cancel)

    scope.on_cancel(stop_task)


def _run_teardown(teardown: Teardown | None, what: str) -> None:
    if teardown is None:
        return
    try:
        teardown()
    except Exception:
        log.exception("teardown of %s failed", what)


def _classify(exc: BaseException) -> RoutineExit:
    if isinstance(exc, RemoteProtocolError):
        return RoutineExit(ExitCause.PROTOCOL_REJECT, exc.reason, str(exc), exc.close_code)
    if isinstance(exc, StreamReset):
        # The peer (or the transport) ended the stream: like a FIN, not a bug of ours.
        return RoutineExit(ExitCause.NORMAL, f"stream_reset:{exc.reason}")
    if isinstance(exc, LocalProtocolError):
        return RoutineExit(ExitCause.LOCAL_REJECT, exc.reason, str(exc))
    return RoutineExit(ExitCause.PANIC, type(exc).__name__, repr(exc)[:300])


def spawn_supervised_routine(
    ctx: RoutineContext,
    routine: Routine,
    *,
    journal: Journal,
    metrics: NodeMetrics,
    on_teardown: Teardown | None = None,
    on_panic: PanicHook | None = None,
) -> RoutineHandle:
    """Start ``routine(ctx)`` under supervision; the task is detached, the handle returned."""
    handle = RoutineHandle(ctx)
    label, service = ctx.peer.label, ctx.service

    def panic_hook(exc: BaseException) -> None:
        metrics.pipe_panic.labels(service).inc()
        journal.emit(
            "routine",
            "panicked",
            peer=label,
            service=service,
            error=repr(exc)[:300],
            generation=ctx.generation,
        )
        log.error("peer routine panicked; disconnecting peer only: %s %s: %r", label, service, exc)
        if on_panic is not None:
            on_panic(exc)
        else:
            ctx.connection.cancel(f"panic:{service}")

    async def supervised() -> None:
        exit = RoutineExit(ExitCause.NORMAL)
        try:
            if ctx.scope.cancelled:
                raise asyncio.CancelledError
            await routine(ctx)
        except asyncio.CancelledError:
            exit = RoutineExit(
                ExitCause.CANCELLED, ctx.scope.reason_or(ctx.connection.reason_or("cancelled"))
            )
            raise
        except Exception as exc:
            exit = _classify(exc)
            if exit.cause is ExitCause.PANIC:
                panic_hook(exc)
        finally:
            ctx.scope.cancel(f"{service}:{exit.cause.value}")
            _run_teardown(on_teardown, f"{service} routine of {label}")
            handle.exit = exit
            handle.exited_wall = time.time()
            if exit.cause is ExitCause.PANIC:
                handle.state = RoutineState.PANICKED
            elif handle.state is not RoutineState.PARKED:
                handle.state = RoutineState.EXITED
            metrics.routine_exited.labels(service, exit.cause.value).inc()
            journal.emit(
                "routine",
                "exited",
                peer=label,
                service=service,
                cause=exit.cause.value,
                reason=exit.reason,
                error=exit.error,
                generation=ctx.generation,
            )
            handle_routine_exit(service, ctx.connection, exit)

    metrics.routine_started.labels(service).inc()
    journal.emit("routine", "started", peer=label, service=service, generation=ctx.generation)
    task = asyncio.get_running_loop().create_task(supervised(), name=f"{service}:{label}")
    handle.task = task

    _cancel_task_with(ctx.scope, task)
    return handle


def spawn_supervised_peer_task(
    ctx: RoutineContext,
    body: Routine,
    *,
    journal: Journal,
    metrics: NodeMetrics,
    on_teardown: Teardown | None = None,
    on_panic: PanicHook | None = None,
) -> asyncio.Task[None]:
    """A helper task riding the connection scope: panics disconnect the peer; a normal exit
    cancels nothing. Teardown runs on every exit path."""
    label, service = ctx.peer.label, ctx.service

    async def supervised() -> None:
        try:
            if ctx.connection.cancelled:
                raise asyncio.CancelledError
            await body(ctx)
        except asyncio.CancelledError:
            raise
        except StreamReset as exc:
            # The stream ended under the helper (the peer reset it, or the connection closed
            # between the helper's last await and its next send, as when a duplicate replaces
            # the connection): like a FIN, as for a routine (``_classify``), not a bug of ours.
            log.debug("peer helper %s of %s ended with its stream: %s", service, label, exc)
        except Exception as exc:
            metrics.pipe_panic.labels(service).inc()
            journal.emit(
                "routine",
                "panicked",
                peer=label,
                service=service,
                helper=True,
                error=repr(exc)[:300],
            )
            log.error("peer helper task panicked; disconnecting peer only: %s %s", label, service)
            if on_panic is not None:
                on_panic(exc)
            else:
                ctx.connection.cancel(f"panic:{service}")
        finally:
            _run_teardown(on_teardown, f"{service} helper of {label}")

    task = asyncio.get_running_loop().create_task(supervised(), name=f"{service}-helper:{label}")

    _cancel_task_with(ctx.connection, task)
    return task
