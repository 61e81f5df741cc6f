"""One multiplexed, ordered, bidirectional stream as a routine sees it.

Invariants:
- Inbound frames queue here until the routine reads them; credit is returned to the peer only
  for what was read, so a routine that stops reading stalls only this stream.
- ``try_send`` never blocks (reference: routine writes are non-blocking into bounded queues);
  it answers ``ok``, ``full`` or ``closed``. ``send`` is the awaiting variant for bulk senders.
- Outbound bytes leave only while the peer has granted credit; the rest wait here, bounded by
  ``max_pending_bytes``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

from node_core.protocol.frames import Frame, encode_frame_header
from node_core.protocol.limits import FRAME_HEADER_BYTES
from node_core.protocol.mux_state import StreamState
from node_core.transport.routine import RoutineContext

if TYPE_CHECKING:
    from node_core.transport.connection import Connection


class SendResult(StrEnum):
    OK = "ok"
    FULL = "full"
    CLOSED = "closed"


class StreamReset(Exception):
    """The stream was reset by either side; ``code`` and ``reason`` say why."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"stream reset (code {code}): {reason}")
        self.code = code
        self.reason = reason


_TIMEOUT = object()


class Stream:
    """A stream endpoint. Created by :class:`Connection`; used by exactly one routine."""

    def __init__(self, conn: Connection, state: StreamState, version: int) -> None:
        self.conn = conn
        #: The protocol state (window, credit, FINs), kept by the connection's ``MuxState``.
        self.state = state
        self.id = state.id
        self.kind = state.kind
        self.kind_label = state.kind_label
        self.version = version
        self.frame_cap = state.frame_cap
        self.locally_opened = state.locally_opened
        self.recv_window = state.recv_window
        self.send_credit = state.send_credit
        self.max_pending_bytes = state.recv_window.window
        self.ctx: RoutineContext | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_out = 0
        self._inbox: deque[Frame] = deque()
        self._outbox: deque[memoryview] = deque()
        self._pending_bytes = 0
        self._recv_waiter: asyncio.Future[object] | None = None
        self._space_waiter: asyncio.Future[None] | None = None
        self.local_finished = False
        self.reset_info: StreamReset | None = None
        #: Called whenever the stream may have become readable or writable (a frame, FIN,
        #: reset, close, or freed send space): lets a routine that waits on several sources
        #: at once (header-sync) use one doorbell instead of a waiter per source.
        self.on_event: Callable[[], None] | None = None

    # ----------------------------------------------------------------- routine-facing API
    def bind(self, ctx: RoutineContext) -> None:
        """Route this stream's waits through ``ctx`` so injected faults land in the routine."""
        self.ctx = ctx

    @property
    def closed(self) -> bool:
        return self.reset_info is not None or self.conn.closed

    @property
    def remote_finished(self) -> bool:
        """The peer sent FIN: nothing more will arrive after the queued frames."""
        return self.state.remote_finished

    @property
    def fin_sent(self) -> bool:
        return self.state.fin_sent

    @property
    def bytes_in(self) -> int:
        return self.state.bytes_in

    @property
    def inbox_depth(self) -> int:
        return len(self._inbox)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def try_send(self, message_type: int, payload: bytes, flags: int = 0) -> SendResult:
        """Queue one frame without blocking."""
        if self.closed or self.local_finished:
            return SendResult.CLOSED
        size = FRAME_HEADER_BYTES + len(payload)
        if size > self.frame_cap or len(payload) > self.conn.negotiated.limits.max_message_bytes:
            raise ValueError(
                f"a {len(payload)}-byte message exceeds the stream cap {self.frame_cap} or the "
                f"negotiated maximum {self.conn.negotiated.limits.max_message_bytes}"
            )
        if self._pending_bytes and self._pending_bytes + size > self.max_pending_bytes:
            return SendResult.FULL
        self._outbox.append(memoryview(encode_frame_header(message_type, flags, len(payload))))
        if payload:
            self._outbox.append(memoryview(payload))
        self._pending_bytes += size
        self.frames_out += 1
        self.conn.pump(self)
        return SendResult.OK

    async def send(self, message_type: int, payload: bytes, flags: int = 0) -> None:
        """Queue one frame, waiting for room; raises :class:`StreamReset` if the stream ends."""
        while True:
            result = self.try_send(message_type, payload, flags)
            if result is SendResult.OK:
                return
            if result is SendResult.CLOSED:
                raise self.reset_info or StreamReset(0, self.conn.close_reason or "closed")
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._space_waiter = fut
            await self._wait(fut)  # type: ignore[arg-type]

    def finish(self) -> None:
        """Half-close: we will send no more frames on this stream."""
        if not self.local_finished and not self.closed:
            self.local_finished = True
            self.conn.pump(self)

    def try_recv(self) -> Frame | None:
        """The next frame without waiting; None if none is queued (check ``remote_finished``).

        Raises :class:`StreamReset` once the stream was reset or the connection closed and
        nothing is left to read.
        """
        if self._inbox:
            frame = self._inbox.popleft()
            self.conn.consumed(self, frame.wire_size)
            if self.ctx is not None:
                self.ctx.checkpoint()
            return frame
        if self.reset_info is not None:
            raise self.reset_info
        if self.conn.closed:
            raise StreamReset(0, f"connection closed: {self.conn.close_reason}")
        return None

    async def recv(self, timeout: float | None = None) -> Frame | None:
        """Next frame; None when the peer finished the stream or ``timeout`` elapsed.

        Raises :class:`StreamReset` if the stream was reset or the connection closed.
        """
        while True:
            frame = self.try_recv()
            if frame is not None:
                return frame
            if self.remote_finished:
                return None
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[object] = loop.create_future()
            self._recv_waiter = fut
            handle = loop.call_later(timeout, _set, fut, _TIMEOUT) if timeout is not None else None
            try:
                if await self._wait(fut) is _TIMEOUT:
                    return None
            finally:
                self._recv_waiter = None
                if handle is not None:
                    handle.cancel()

    def reset(self, code: int, reason: str) -> None:
        """Abort the stream (both directions); the connection lives on."""
        if self.reset_info is None and not self.conn.closed:
            self.conn.reset_stream(self, code, reason)

    async def _wait(self, fut: asyncio.Future[object]) -> object:
        if self.ctx is not None:
            return await self.ctx.wait_future(fut)
        return await fut

    # ----------------------------------------------------------------- connection-facing API
    def deliver(self, frame: Frame) -> None:
        self._inbox.append(frame)
        self.frames_in += 1
        self._wake_recv()

    def on_remote_fin(self) -> None:
        self._wake_recv()

    def on_reset(self, code: int, reason: str) -> None:
        if self.reset_info is None:
            self.reset_info = StreamReset(code, reason)
        self._outbox.clear()
        self._pending_bytes = 0
        self._wake_recv()
        self._wake_space()

    def on_conn_closed(self) -> None:
        self._wake_recv()
        self._wake_space()

    def take_output(self, limit: int) -> tuple[list[memoryview], int]:
        """Pop up to ``limit`` bytes of queued output, spanning frame boundaries."""
        parts: list[memoryview] = []
        size = 0
        outbox = self._outbox
        while outbox and size < limit:
            head = outbox[0]
            room = limit - size
            if len(head) <= room:
                outbox.popleft()
                parts.append(head)
                size += len(head)
            else:
                parts.append(head[:room])
                outbox[0] = head[room:]
                size += room
        self._pending_bytes -= size
        self.bytes_out += size
        if self._space_waiter is not None or self.on_event is not None:
            self._wake_space()
        return parts, size

    @property
    def has_output(self) -> bool:
        return bool(self._outbox)

    def _wake_recv(self) -> None:
        fut = self._recv_waiter
        if fut is not None and not fut.done():
            fut.set_result(None)
        if self.on_event is not None:
            self.on_event()

    def _wake_space(self) -> None:
        fut, self._space_waiter = self._space_waiter, None
        if fut is not None and not fut.done():
            fut.set_result(None)
        if self.on_event is not None:
            self.on_event()


def _set(fut: asyncio.Future[object], value: object) -> None:
    if not fut.done():
        fut.set_result(value)
