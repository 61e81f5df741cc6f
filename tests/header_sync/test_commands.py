"""Command sink policy tests (reference §3.11 table, §6.4 "command sink" bullets, §3.3 order)."""

from __future__ import annotations

import asyncio

import pytest

from node_core.header_sync.commands import (
    HEADER_SYNC_COMMAND_QUEUE_DEPTH,
    STATUS,
    Command,
    DropExpectation,
    EnqueueOutcome,
    ForwardNewBlock,
    HeaderSyncCommandSink,
    SendHeaders,
    StatusChanged,
    StatusKind,
    Wake,
    decide_outcome,
)
from node_core.transport.cancel import CancelScope

HEADERS = SendHeaders(headers=(b"h1", b"h2"), body_sizes=(10, 20))
DROP = DropExpectation(generation=3, start_height=100, count=160)
NEW_BLOCK = ForwardNewBlock(block=b"block")

Sink = HeaderSyncCommandSink[str]


def full_sink(depth: int = 4) -> Sink:
    sink: Sink = HeaderSyncCommandSink(depth)
    for i in range(depth):
        assert sink.enqueue(ForwardNewBlock(bytes([i]))) is EnqueueOutcome.QUEUED
    assert sink.full
    return sink


def closed_sink() -> Sink:
    sink: Sink = HeaderSyncCommandSink()
    sink.close()
    return sink


def test_outcome_labels_equal_reference_strings() -> None:
    assert [o.value for o in EnqueueOutcome] == [
        "queued",
        "coalesced",
        "dropped",
        "no_routine",
        "parked",
    ]
    assert str(EnqueueOutcome.PARKED) == "parked"


def test_default_depth_is_256() -> None:
    sink: Sink = HeaderSyncCommandSink()
    assert HEADER_SYNC_COMMAND_QUEUE_DEPTH == 256
    assert sink.depth == 256
    assert sink.queued == 0
    for _ in range(256):
        assert sink.enqueue(NEW_BLOCK) is EnqueueOutcome.QUEUED
    assert sink.full and sink.queued == len(sink) == 256
    assert sink.enqueue(NEW_BLOCK) is EnqueueOutcome.DROPPED


def test_invalid_depth_rejected() -> None:
    with pytest.raises(ValueError):
        HeaderSyncCommandSink(0)


@pytest.mark.parametrize("cmd", [HEADERS, DROP], ids=["headers", "drop_expectation"])
def test_never_drop_commands_park_on_full(cmd: Command) -> None:
    sink = full_sink()
    assert sink.enqueue(cmd) is EnqueueOutcome.PARKED
    assert sink.queued == 4  # the sink is unchanged; parking is the reactor's job


@pytest.mark.parametrize("cmd", [HEADERS, DROP], ids=["headers", "drop_expectation"])
def test_never_drop_commands_park_on_closed(cmd: Command) -> None:
    sink = closed_sink()
    assert sink.enqueue(cmd) is EnqueueOutcome.PARKED
    assert sink.queued == 0


def test_new_block_drops_on_full_and_no_routine_on_closed() -> None:
    assert full_sink().enqueue(NEW_BLOCK) is EnqueueOutcome.DROPPED
    assert closed_sink().enqueue(NEW_BLOCK) is EnqueueOutcome.NO_ROUTINE


def test_wake_coalesces_on_full() -> None:
    sink = full_sink()
    assert sink.enqueue(Wake()) is EnqueueOutcome.COALESCED
    assert sink.queued == 4


def test_wake_coalesces_when_already_pending_and_requeues_after_consumption() -> None:
    sink: Sink = HeaderSyncCommandSink()
    assert sink.enqueue(Wake()) is EnqueueOutcome.QUEUED
    assert sink.enqueue(HEADERS) is EnqueueOutcome.QUEUED
    assert sink.enqueue(Wake()) is EnqueueOutcome.COALESCED
    assert sink.queued == 2
    assert sink.try_next() == Wake()
    # The pending Wake was consumed, so a new one is queued again.
    assert sink.enqueue(Wake()) is EnqueueOutcome.QUEUED
    assert [sink.try_next(), sink.try_next(), sink.try_next()] == [HEADERS, Wake(), None]


def test_wake_no_routine_on_closed() -> None:
    assert closed_sink().enqueue(Wake()) is EnqueueOutcome.NO_ROUTINE


def test_status_coalesces_newest_wins_and_never_parks() -> None:
    sink = full_sink()
    assert sink.set_status("s1") is EnqueueOutcome.QUEUED
    assert sink.set_status("s2") is EnqueueOutcome.QUEUED
    assert sink.status_pending
    for _ in range(4):
        assert isinstance(sink.try_next(), ForwardNewBlock)
    assert sink.try_next() == StatusChanged("s2")
    assert not sink.status_pending
    assert sink.try_next() is None
    assert sink.latest_status == "s2"
    assert closed_sink().set_status("s3") is EnqueueOutcome.NO_ROUTINE


def test_one_full_sink_does_not_affect_another() -> None:
    slow = full_sink()
    other: Sink = HeaderSyncCommandSink(4)
    assert slow.enqueue(HEADERS) is EnqueueOutcome.PARKED
    assert other.enqueue(HEADERS) is EnqueueOutcome.QUEUED
    assert other.enqueue(NEW_BLOCK) is EnqueueOutcome.QUEUED
    assert other.enqueue(Wake()) is EnqueueOutcome.QUEUED
    assert other.set_status("s") is EnqueueOutcome.QUEUED
    assert slow.queued == 4 and other.queued == 3


def test_fifo_order_preserved_commands_before_status() -> None:
    sink: Sink = HeaderSyncCommandSink()
    assert sink.set_status("s1") is EnqueueOutcome.QUEUED
    cmds: list[Command] = [HEADERS, NEW_BLOCK, DROP, Wake(), SendHeaders((b"x",), (1,))]
    for cmd in cmds:
        assert sink.enqueue(cmd) is EnqueueOutcome.QUEUED
    got = [sink.try_next() for _ in range(len(cmds) + 2)]
    assert got == [*cmds, StatusChanged("s1"), None]


def test_closed_sink_keeps_pending_commands_readable() -> None:
    sink: Sink = HeaderSyncCommandSink()
    sink.enqueue(HEADERS)
    sink.close()
    sink.close()  # idempotent
    assert sink.closed and sink.ready()
    assert sink.try_next() == HEADERS
    assert sink.try_next() is None
    assert sink.ready()  # closed: next() must not wait


def test_decide_outcome_table() -> None:
    # (command, normal, full, closed) -- the §3.11 table row by row
    table: list[tuple[Command | StatusKind, str, str, str]] = [
        (STATUS, "queued", "queued", "no_routine"),
        (HEADERS, "queued", "parked", "parked"),
        (DROP, "queued", "parked", "parked"),
        (NEW_BLOCK, "queued", "dropped", "no_routine"),
        (Wake(), "queued", "coalesced", "no_routine"),
    ]
    for cmd, normal, full, closed in table:
        assert decide_outcome(cmd, closed=False, full=False, wake_pending=False) == normal
        assert decide_outcome(cmd, closed=False, full=True, wake_pending=False) == full
        assert decide_outcome(cmd, closed=True, full=False, wake_pending=False) == closed
        assert decide_outcome(cmd, closed=True, full=True, wake_pending=False) == closed


def test_ready_event_tracks_ready() -> None:
    sink: Sink = HeaderSyncCommandSink()
    assert not sink.ready() and not sink.ready_event.is_set()
    sink.enqueue(Wake())
    assert sink.ready_event.is_set()
    sink.set_status("s")
    sink.try_next()
    assert sink.ready_event.is_set()  # status still unread
    sink.try_next()
    assert not sink.ready_event.is_set()  # re-armed after the sink emptied
    sink.close()
    assert sink.ready_event.is_set()


async def test_next_returns_commands_then_status_once() -> None:
    sink: Sink = HeaderSyncCommandSink()
    cancel = asyncio.Event()
    sink.set_status("s1")
    sink.enqueue(HEADERS)
    async with asyncio.timeout(1):
        assert await sink.next(cancel) == HEADERS
        assert await sink.next(cancel) == StatusChanged("s1")
    # Status is delivered once per change: the next call has to wait.
    task = asyncio.create_task(sink.next(cancel))
    done, _ = await asyncio.wait({task}, timeout=0.05)
    assert not done
    sink.set_status("s2")
    async with asyncio.timeout(1):
        assert await task == StatusChanged("s2")


async def test_next_cancel_takes_priority_and_wakes_waiter() -> None:
    sink: Sink = HeaderSyncCommandSink()
    scope = CancelScope("service")
    task = asyncio.create_task(sink.next(scope))
    await asyncio.sleep(0)  # let it block
    scope.cancel("shutdown")
    async with asyncio.timeout(1):
        assert await task is None
    sink.enqueue(HEADERS)
    assert await sink.next(scope) is None  # cancel is checked before commands (§3.3)
    assert sink.queued == 1


async def test_next_exits_when_closed_and_drained() -> None:
    sink: Sink = HeaderSyncCommandSink()
    cancel = asyncio.Event()
    sink.enqueue(DROP)
    task = asyncio.create_task(sink.next(cancel))
    async with asyncio.timeout(1):
        assert await task == DROP
    task = asyncio.create_task(sink.next(cancel))
    await asyncio.sleep(0)
    sink.close()
    async with asyncio.timeout(1):
        assert await task is None


async def test_wait_ready_woken_by_enqueue() -> None:
    sink: Sink = HeaderSyncCommandSink()
    waiter = asyncio.create_task(sink.wait_ready())
    await asyncio.sleep(0)
    assert not waiter.done()
    sink.enqueue(NEW_BLOCK)
    async with asyncio.timeout(1):
        assert await waiter is True
    assert sink.queued == 1  # waiting never consumes


async def test_wait_ready_woken_by_status() -> None:
    sink: Sink = HeaderSyncCommandSink()
    waiter = asyncio.create_task(sink.wait_ready(timeout=5))
    await asyncio.sleep(0)
    sink.set_status("s")
    async with asyncio.timeout(1):
        assert await waiter is True


async def test_wait_ready_times_out_and_returns_immediately_when_ready() -> None:
    sink: Sink = HeaderSyncCommandSink()
    assert await sink.wait_ready(timeout=0.01) is False
    sink.enqueue(Wake())
    async with asyncio.timeout(1):
        assert await sink.wait_ready(timeout=0) is True


async def test_next_composes_after_wait_ready() -> None:
    """Routine pattern: race wait_ready against a stream read, then drain with try_next."""
    sink: Sink = HeaderSyncCommandSink()
    stream: asyncio.Queue[bytes] = asyncio.Queue()
    ready = asyncio.create_task(sink.wait_ready())
    frame = asyncio.create_task(stream.get())
    sink.enqueue(HEADERS)
    async with asyncio.timeout(1):
        done, _ = await asyncio.wait({ready, frame}, return_when=asyncio.FIRST_COMPLETED)
    assert ready in done
    frame.cancel()
    assert sink.try_next() == HEADERS
    assert not sink.ready_event.is_set()
