"""Every exit path of the supervised launchers.

Reference §1.11-§1.12; docs/ARCHITECTURE.md, "The routine model".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from node_core.observe.journal import Journal, JournalEvent
from node_core.observe.metrics import NodeMetrics
from node_core.transport.cancel import CancelScope
from node_core.transport.routine import (
    ExitCause,
    InjectedPanic,
    LocalProtocolError,
    PeerInfo,
    RemoteProtocolError,
    RoutineContext,
    RoutineExit,
    RoutineState,
)
from node_core.transport.stream import StreamReset
from node_core.transport.supervise import (
    RoutineHandle,
    handle_routine_exit,
    next_generation,
    spawn_supervised_peer_task,
    spawn_supervised_routine,
)

SERVICE = "header_sync"
LABEL = "peer:0123456789abcdef"
PANIC_METRIC = "zakura_pipe_panic_total"
TIMEOUT = 5.0


@dataclass
class Harness:
    """A real journal, real metrics and a real connection scope with one service child."""

    journal: Journal = field(default_factory=lambda: Journal("node:test"))
    metrics: NodeMetrics = field(default_factory=NodeMetrics)
    connection: CancelScope = field(default_factory=lambda: CancelScope("connection"))
    teardowns: int = 0
    panics: list[BaseException] = field(default_factory=list)
    ctx: RoutineContext = field(init=False)

    def __post_init__(self) -> None:
        self.ctx = RoutineContext(
            peer=PeerInfo(
                node_id=b"\x07" * 32, label=LABEL, addr="127.0.0.1:1", direction="in", conn_id=1
            ),
            service=SERVICE,
            scope=self.connection.child(SERVICE),
            connection=self.connection,
            generation=next_generation(SERVICE),
        )

    @property
    def scope(self) -> CancelScope:
        return self.ctx.scope

    def teardown(self) -> None:
        self.teardowns += 1

    def on_panic(self, exc: BaseException) -> None:
        self.panics.append(exc)
        self.connection.cancel(f"panic:{SERVICE}")

    def spawn(
        self, routine: Callable[[RoutineContext], Awaitable[None]], *, with_hook: bool = True
    ) -> RoutineHandle:
        return spawn_supervised_routine(
            self.ctx,
            routine,
            journal=self.journal,
            metrics=self.metrics,
            on_teardown=self.teardown,
            on_panic=self.on_panic if with_hook else None,
        )

    def panic_count(self) -> float:
        return self.metrics.value(PANIC_METRIC, service=SERVICE)

    def events(self, event: str) -> list[JournalEvent]:
        return self.journal.find(lambda ev: ev.table == "routine" and ev.event == event)

    def exited_cause(self) -> str | None:
        (exited,) = self.events("exited")
        assert exited.peer == LABEL
        assert exited.service == SERVICE
        cause = exited.fields["cause"]
        assert cause is None or isinstance(cause, str)
        return cause


async def finish(task: asyncio.Task[None] | None) -> asyncio.Task[None]:
    """Wait (bounded) until the task is done, whatever its outcome."""
    assert task is not None
    done, _ = await asyncio.wait([task], timeout=TIMEOUT)
    assert task in done, "task did not finish in time"
    return task


def assert_exit_bookkeeping(h: Harness, handle: RoutineHandle, cause: ExitCause) -> None:
    assert h.scope.cancelled, "the service scope is cancelled on every exit path"
    assert h.teardowns == 1, "teardown runs exactly once"
    assert len(h.events("started")) == 1
    assert h.exited_cause() == cause.value
    assert handle.exit is not None
    assert handle.exit.cause is cause
    assert not handle.running
    assert handle.exited_wall is not None
    assert h.metrics.value("zakura_routine_started_total", service=SERVICE) == 1.0
    assert h.metrics.value("zakura_routine_exited_total", service=SERVICE, cause=cause.value) == 1.0
    # Started strictly before exited in journal order.
    assert h.events("started")[0].seq < h.events("exited")[0].seq


# --- spawn_supervised_routine ---------------------------------------------------------------


async def test_normal_return() -> None:
    h = Harness()
    ran: list[int] = []

    async def routine(ctx: RoutineContext) -> None:
        ran.append(ctx.generation)

    handle = h.spawn(routine)
    initial_state = handle.state
    assert initial_state is RoutineState.RUNNING
    assert handle.running
    task = await finish(handle.task)
    assert task.exception() is None
    assert ran == [h.ctx.generation]
    assert_exit_bookkeeping(h, handle, ExitCause.NORMAL)
    assert not h.connection.cancelled
    assert h.panics == []
    assert h.events("panicked") == []
    assert h.panic_count() == 0.0
    assert handle.state is RoutineState.EXITED
    assert h.scope.reason == f"{SERVICE}:normal"


async def test_cancel_service_scope() -> None:
    h = Harness()
    started = asyncio.Event()

    async def routine(ctx: RoutineContext) -> None:
        started.set()
        await ctx.sleep(60)

    handle = h.spawn(routine)
    await asyncio.wait_for(started.wait(), TIMEOUT)
    h.scope.cancel("parked")
    task = await finish(handle.task)
    assert task.cancelled()
    assert_exit_bookkeeping(h, handle, ExitCause.CANCELLED)
    assert handle.exit is not None and handle.exit.reason == "parked"
    assert not h.connection.cancelled
    assert h.panics == []
    assert h.events("panicked") == []
    assert h.panic_count() == 0.0
    assert handle.state is RoutineState.EXITED


async def test_cancel_connection_scope() -> None:
    h = Harness()
    started = asyncio.Event()

    async def routine(ctx: RoutineContext) -> None:
        started.set()
        await ctx.sleep(60)

    handle = h.spawn(routine)
    await asyncio.wait_for(started.wait(), TIMEOUT)
    h.connection.cancel("disconnect")
    task = await finish(handle.task)
    assert task.cancelled()
    assert_exit_bookkeeping(h, handle, ExitCause.CANCELLED)
    assert handle.exit is not None and handle.exit.reason == "disconnect"
    assert h.connection.reason == "disconnect"
    assert h.panics == []
    assert h.panic_count() == 0.0
    assert handle.state is RoutineState.EXITED


async def test_remote_protocol_error_closes_connection() -> None:
    h = Harness()

    async def routine(ctx: RoutineContext) -> None:
        raise RemoteProtocolError("unsolicited_headers", "no request outstanding")

    handle = h.spawn(routine)
    task = await finish(handle.task)
    assert task.exception() is None  # classified and absorbed by the launcher
    assert_exit_bookkeeping(h, handle, ExitCause.PROTOCOL_REJECT)
    assert handle.exit is not None and handle.exit.reason == "unsolicited_headers"
    assert h.connection.cancelled
    reason = h.connection.reason
    assert reason is not None and SERVICE in reason and "unsolicited_headers" in reason
    assert h.panics == []
    assert h.events("panicked") == []
    assert h.panic_count() == 0.0
    assert handle.state is RoutineState.EXITED


async def test_local_protocol_error_keeps_connection() -> None:
    h = Harness()
    sibling = h.connection.child("block_sync")

    async def routine(ctx: RoutineContext) -> None:
        raise LocalProtocolError("command_queue_full")

    handle = h.spawn(routine)
    task = await finish(handle.task)
    assert task.exception() is None
    assert_exit_bookkeeping(h, handle, ExitCause.LOCAL_REJECT)
    assert handle.exit is not None and handle.exit.reason == "command_queue_full"
    assert not h.connection.cancelled
    assert not sibling.cancelled
    assert h.panics == []
    assert h.panic_count() == 0.0
    assert handle.state is RoutineState.EXITED


@pytest.mark.parametrize("with_hook", [True, False], ids=["on_panic", "default_hook"])
async def test_runtime_error_is_a_panic(with_hook: bool) -> None:
    h = Harness()
    sibling = h.connection.child("block_sync")

    async def routine(ctx: RoutineContext) -> None:
        raise RuntimeError("bug in routine")

    handle = h.spawn(routine, with_hook=with_hook)
    task = await finish(handle.task)
    assert task.exception() is None
    assert_exit_bookkeeping(h, handle, ExitCause.PANIC)
    assert handle.exit is not None and handle.exit.reason == "RuntimeError"
    assert h.panic_count() == 1.0
    (panicked,) = h.events("panicked")
    assert panicked.service == SERVICE
    assert panicked.peer == LABEL
    assert "bug in routine" in str(panicked.fields["error"])
    assert panicked.seq < h.events("exited")[0].seq
    assert h.connection.cancelled
    assert sibling.cancelled  # the whole connection goes, every service on it
    assert handle.state is RoutineState.PANICKED
    if with_hook:
        assert len(h.panics) == 1
        assert isinstance(h.panics[0], RuntimeError)
    else:
        assert h.connection.reason == f"panic:{SERVICE}"


async def test_panic_counter_is_per_node() -> None:
    a, b = Harness(), Harness()

    async def routine(ctx: RoutineContext) -> None:
        raise ValueError("boom")

    await finish(a.spawn(routine).task)
    assert a.panic_count() == 1.0
    assert b.panic_count() == 0.0
    assert not b.connection.cancelled


async def test_injected_panic_raised_inside_routine() -> None:
    h = Harness()
    waiting = asyncio.Event()
    observed: list[int] = []

    async def routine(ctx: RoutineContext) -> None:
        waiting.set()
        try:
            await ctx.sleep(60)
        except InjectedPanic as exc:
            observed.append(exc.fault_id)
            raise

    handle = h.spawn(routine)
    await asyncio.wait_for(waiting.wait(), TIMEOUT)
    assert handle.running
    h.ctx.inject(InjectedPanic(7))
    task = await finish(handle.task)
    assert task.exception() is None
    assert observed == [7], "the routine's own handler sees the injected panic"
    assert_exit_bookkeeping(h, handle, ExitCause.PANIC)
    assert handle.exit is not None and handle.exit.reason == "InjectedPanic"
    assert h.panic_count() == 1.0
    assert len(h.events("panicked")) == 1
    assert len(h.panics) == 1 and isinstance(h.panics[0], InjectedPanic)
    assert h.connection.cancelled
    assert handle.state is RoutineState.PANICKED


async def test_injected_panic_before_first_await_is_delivered_at_it() -> None:
    h = Harness()
    observed: list[int] = []

    async def routine(ctx: RoutineContext) -> None:
        try:
            await ctx.sleep(60)
        except InjectedPanic as exc:
            observed.append(exc.fault_id)
            raise

    h.ctx.inject(InjectedPanic(3))  # no waiter yet: stored and raised at the next await
    handle = h.spawn(routine)
    await finish(handle.task)
    assert observed == [3]
    assert_exit_bookkeeping(h, handle, ExitCause.PANIC)
    assert h.panic_count() == 1.0


@pytest.mark.parametrize(
    ("exc", "cause", "connection_cancelled"),
    [
        (None, ExitCause.NORMAL, False),
        (RemoteProtocolError("bad"), ExitCause.PROTOCOL_REJECT, True),
        (LocalProtocolError("full"), ExitCause.LOCAL_REJECT, False),
        (RuntimeError("bug"), ExitCause.PANIC, True),
    ],
)
async def test_raising_teardown_does_not_prevent_bookkeeping(
    exc: Exception | None, cause: ExitCause, connection_cancelled: bool
) -> None:
    h = Harness()
    calls: list[int] = []

    def bad_teardown() -> None:
        calls.append(1)
        raise OSError("teardown failed")

    async def routine(ctx: RoutineContext) -> None:
        if exc is not None:
            raise exc

    handle = spawn_supervised_routine(
        h.ctx,
        routine,
        journal=h.journal,
        metrics=h.metrics,
        on_teardown=bad_teardown,
        on_panic=h.on_panic,
    )
    task = await finish(handle.task)
    assert task.exception() is None
    assert calls == [1]
    assert h.scope.cancelled
    assert h.exited_cause() == cause.value
    assert handle.exit is not None and handle.exit.cause is cause
    assert h.connection.cancelled is connection_cancelled
    expected_state = RoutineState.PANICKED if cause is ExitCause.PANIC else RoutineState.EXITED
    assert handle.state is expected_state


async def test_cancel_before_routine_starts_still_tears_down() -> None:
    """The service scope is cancelled before the task ever ran (e.g. the connection closed
    right after the routines were spawned). Teardown and the exit record must still happen:
    "on every exit path" includes this one."""
    h = Harness()
    entered: list[bool] = []

    async def routine(ctx: RoutineContext) -> None:
        entered.append(True)
        await ctx.sleep(60)

    handle = h.spawn(routine)
    h.scope.cancel("parked")  # no await between spawn and cancel
    await finish(handle.task)
    assert h.teardowns == 1
    assert h.exited_cause() == ExitCause.CANCELLED.value
    assert handle.state is RoutineState.EXITED
    assert not h.connection.cancelled


async def test_spawn_on_cancelled_connection_still_tears_down() -> None:
    h = Harness()
    h.connection.cancel("disconnect")

    async def routine(ctx: RoutineContext) -> None:
        await ctx.sleep(60)

    handle = h.spawn(routine)
    await finish(handle.task)
    assert h.teardowns == 1
    assert h.exited_cause() == ExitCause.CANCELLED.value
    assert handle.state is RoutineState.EXITED


async def test_parked_state_survives_exit() -> None:
    h = Harness()
    started = asyncio.Event()

    async def routine(ctx: RoutineContext) -> None:
        started.set()
        await ctx.sleep(60)

    handle = h.spawn(routine)
    await asyncio.wait_for(started.wait(), TIMEOUT)
    handle.state = RoutineState.PARKED  # what a reactor park does before cancelling
    h.scope.cancel("parked:undeliverable")
    await finish(handle.task)
    assert handle.state is RoutineState.PARKED
    assert h.exited_cause() == ExitCause.CANCELLED.value
    assert not h.connection.cancelled


def test_next_generation_is_monotone_per_service() -> None:
    a = next_generation("test_gen_service")
    b = next_generation("test_gen_service")
    assert b == a + 1
    assert next_generation("test_gen_other") >= 1


# --- handle_routine_exit --------------------------------------------------------------------


@pytest.mark.parametrize("cause", list(ExitCause))
def test_handle_routine_exit_only_protocol_reject_is_fatal(cause: ExitCause) -> None:
    connection = CancelScope("connection")
    fatal = handle_routine_exit(SERVICE, connection, RoutineExit(cause, "why"))
    assert fatal is (cause is ExitCause.PROTOCOL_REJECT)
    assert connection.cancelled is fatal
    if fatal:
        assert connection.reason == f"{SERVICE}:why"


def test_handle_routine_exit_protocol_reject_without_reason() -> None:
    connection = CancelScope("connection")
    assert handle_routine_exit(SERVICE, connection, RoutineExit(ExitCause.PROTOCOL_REJECT))
    reason = connection.reason
    assert reason is not None and reason.startswith(f"{SERVICE}:")


def test_handle_routine_exit_keeps_first_reason() -> None:
    connection = CancelScope("connection")
    connection.cancel("shutdown")
    assert handle_routine_exit(SERVICE, connection, RoutineExit(ExitCause.PROTOCOL_REJECT, "x"))
    assert connection.reason == "shutdown"


# --- spawn_supervised_peer_task --------------------------------------------------------------


def spawn_helper(
    h: Harness, body: Callable[[RoutineContext], Awaitable[None]], *, with_hook: bool = True
) -> asyncio.Task[None]:
    return spawn_supervised_peer_task(
        h.ctx,
        body,
        journal=h.journal,
        metrics=h.metrics,
        on_teardown=h.teardown,
        on_panic=h.on_panic if with_hook else None,
    )


@pytest.mark.parametrize("with_hook", [True, False], ids=["on_panic", "default_hook"])
async def test_helper_panic_disconnects(with_hook: bool) -> None:
    h = Harness()

    async def body(ctx: RoutineContext) -> None:
        raise KeyError("helper bug")

    task = await finish(spawn_helper(h, body, with_hook=with_hook))
    assert task.exception() is None
    assert h.teardowns == 1
    assert h.connection.cancelled
    assert h.scope.cancelled  # as a child of the connection
    assert h.panic_count() == 1.0
    (panicked,) = h.events("panicked")
    assert panicked.fields["helper"] is True
    assert h.events("exited") == []  # helpers are not routines
    if with_hook:
        assert len(h.panics) == 1 and isinstance(h.panics[0], KeyError)


async def test_helper_normal_exit_cancels_nothing() -> None:
    h = Harness()

    async def body(ctx: RoutineContext) -> None:
        return None

    task = await finish(spawn_helper(h, body))
    assert task.exception() is None
    assert h.teardowns == 1
    assert not h.connection.cancelled
    assert not h.scope.cancelled
    assert h.panic_count() == 0.0
    assert h.panics == []
    assert h.events("panicked") == []


@pytest.mark.parametrize(
    "reason", ["duplicate_replaced", "connection closed: eof"], ids=["reset", "closed"]
)
async def test_helper_whose_stream_ended_exits_normally(reason: str) -> None:
    # A serving helper that wakes from a store read after its connection was replaced sends
    # on a stream that is gone: the stream's end, not a bug (chaos partition-heal saw it
    # counted as two panics).
    h = Harness()

    async def body(ctx: RoutineContext) -> None:
        raise StreamReset(0, reason)

    task = await finish(spawn_helper(h, body))
    assert task.exception() is None
    assert h.teardowns == 1
    assert h.panic_count() == 0.0
    assert h.panics == []
    assert h.events("panicked") == []
    assert not h.connection.cancelled


async def test_helper_protocol_error_is_a_panic_too() -> None:
    # Helpers have no reject vocabulary: any exception disconnects the peer.
    h = Harness()

    async def body(ctx: RoutineContext) -> None:
        raise RemoteProtocolError("bad")

    await finish(spawn_helper(h, body))
    assert h.connection.cancelled
    assert h.panic_count() == 1.0
    assert h.teardowns == 1


async def test_helper_stopped_by_connection_cancel() -> None:
    h = Harness()
    started = asyncio.Event()

    async def body(ctx: RoutineContext) -> None:
        started.set()
        await ctx.sleep(60)

    task = spawn_helper(h, body)
    await asyncio.wait_for(started.wait(), TIMEOUT)
    h.connection.cancel("disconnect")
    await finish(task)
    assert task.cancelled()
    assert h.teardowns == 1
    assert h.panic_count() == 0.0
    assert h.panics == []


async def test_helper_not_stopped_by_service_scope() -> None:
    # Helpers ride the connection scope, not a service scope.
    h = Harness()
    release = asyncio.Event()
    started = asyncio.Event()

    async def body(ctx: RoutineContext) -> None:
        started.set()
        await release.wait()

    task = spawn_helper(h, body)
    await asyncio.wait_for(started.wait(), TIMEOUT)
    h.scope.cancel("parked")
    assert not task.done()
    release.set()
    await finish(task)
    assert task.exception() is None
    assert h.teardowns == 1
    assert not h.connection.cancelled


async def test_helper_cancelled_before_start_still_tears_down() -> None:
    h = Harness()

    async def body(ctx: RoutineContext) -> None:
        await ctx.sleep(60)

    task = spawn_helper(h, body)
    h.connection.cancel("disconnect")  # before the helper ever ran
    await finish(task)
    assert h.teardowns == 1
