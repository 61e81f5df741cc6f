"""The read half of an established connection: the socket reads into our own buffer.

Why: the handshake reads through an ``asyncio.StreamReader``, and the multiplexer used to keep
reading through it, two ``readexactly`` awaits per record. That costs, per byte, a fresh
``recv`` buffer, a copy into the reader's buffer and a copy out of it, and per record two
coroutine steps. Once the handshake is done, :class:`RecordReceiver` becomes the transport's
protocol (``transport.set_protocol``): the kernel copies straight into one reused buffer
(``BufferedProtocol.get_buffer``), and every complete record in what arrived is cut out and
carried out in one synchronous pass, its payload a view of that buffer (the stream rules copy
what they keep, so one copy per frame payload is left).

Invariants:
- Records are carried out in arrival order: bytes the handshake's reader still held are
  parsed before anything read here, and reading stays paused until they are.
- What we hold is bounded whatever the peer declares: the read buffer (at most
  :data:`MAX_READ_BYTES`) and one partial record whose header already passed its cap
  (:class:`~node_core.protocol.record_split.RecordSplitter`).
- The operator's throttle (``Connection.throttle_bytes_per_s``) still paces each record by
  its size: reading pauses between records, so the kernel buffer and then the peer's credit
  fill, as before.
- The close reasons are those of the awaiting reader it replaced: ``eof`` when the peer
  ends the stream, ``connection_lost:<error>`` when the socket fails, and
  ``reader_failed:<error>`` when code here or in the rules raises (this peer only).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from node_core.protocol.limits import MUX_HEADER_BYTES, CloseCode
from node_core.protocol.mux import RecordHeader
from node_core.protocol.mux_state import ProtocolViolation
from node_core.protocol.record_split import HeaderDecoder, RecordSplitter

#: The read buffer of a quiet connection (idle peers hold this much each, once read from).
MIN_READ_BYTES = 4 * 1024
#: The read buffer of a busy one: a read that fills the buffer doubles it, up to this.
MAX_READ_BYTES = 256 * 1024
#: Consecutive reads of under an eighth of the buffer after which it drops to the minimum.
SHRINK_AFTER_READS = 16


class RecordSink(Protocol):
    """What the receiver needs of its connection (``Connection`` is one)."""

    @property
    def closed(self) -> bool: ...
    @property
    def throttle_bytes_per_s(self) -> float | None: ...

    def on_record(self, rec: RecordHeader, payload: memoryview, now: float) -> None: ...
    def count_in(self, nbytes: int) -> None: ...
    def cork(self) -> None: ...
    def uncork(self) -> None: ...
    def violation(self, ev: ProtocolViolation) -> None: ...
    def reader_failed(self, exc: Exception) -> None: ...
    def close(
        self, code: int, reason: str, *, by_remote: bool = False, punitive: bool = False
    ) -> bool: ...


class RecordReceiver(asyncio.BufferedProtocol):
    """Reads one connection's records into a reused buffer and hands them to it in order."""

    def __init__(self, conn: RecordSink, decode_header: HeaderDecoder) -> None:
        self._conn = conn
        self._split = RecordSplitter(decode_header)
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        #: Bytes read before :meth:`start` (the handshake reader's leftovers come first).
        self._early: list[bytes] = []
        self._started = False
        #: Reading is paused by the throttle; records of the current read are still pending.
        self._throttled = False
        self._throttle_until = 0.0
        self._small_reads = 0

    # ------------------------------------------------------------------ handover
    def attach(self, transport: asyncio.Transport) -> None:
        """Become ``transport``'s protocol, paused until :meth:`start`."""
        self._transport = transport
        transport.pause_reading()
        transport.set_protocol(self)

    def start(self, leftover: bytes) -> None:
        """Carry out ``leftover`` (what the handshake's reader held), then read on."""
        self._started = True
        early = b"".join([leftover, *self._early])
        self._early = []
        if early:
            self._split.feed(early)
            self._drain()
        self._resume()

    def _resume(self) -> None:
        transport = self._transport
        if transport is not None and not self._throttled and not self._conn.closed:
            transport.resume_reading()

    # ------------------------------------------------------------------ BufferedProtocol
    def get_buffer(self, sizehint: int) -> memoryview:
        if not self._buf:
            self._buf = bytearray(MIN_READ_BYTES)
        return memoryview(self._buf)

    def buffer_updated(self, nbytes: int) -> None:
        buf = self._buf
        if not self._started:
            self._early.append(bytes(buf[:nbytes]))
            if self._transport is not None:
                self._transport.pause_reading()
            return
        # A read that filled the buffer asks for a bigger one; a run of small ones gives it
        # all back (an idle peer holds MIN_READ_BYTES: issue 14's RSS per peer). A new
        # bytearray, never a resize: the splitter still views this one.
        size = len(buf)
        if nbytes == size:
            self._small_reads = 0
            if size < MAX_READ_BYTES:
                self._buf = bytearray(size * 2)
        elif nbytes <= size // 8 and size > MIN_READ_BYTES:
            self._small_reads += 1
            if self._small_reads >= SHRINK_AFTER_READS:
                self._small_reads = 0
                self._buf = bytearray(MIN_READ_BYTES)
        self._split.feed(memoryview(buf)[:nbytes])
        self._drain()

    def eof_received(self) -> bool | None:
        self._conn.close(CloseCode.NEUTRAL, "eof", by_remote=True)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self._conn
        if exc is None:
            conn.close(CloseCode.NEUTRAL, "eof", by_remote=True)
        else:
            reason = f"connection_lost:{type(exc).__name__}"
            conn.close(CloseCode.NEUTRAL, reason, by_remote=True)

    # ------------------------------------------------------------------ records
    def _drain(self) -> None:
        """Carry out every complete record buffered, unless the throttle says wait."""
        conn = self._conn
        split = self._split
        now = time.monotonic()
        done = 0
        conn.cork()
        try:
            while not conn.closed and (got := split.next()) is not None:
                if isinstance(got, ProtocolViolation):
                    conn.violation(got)
                    return
                rec, payload = got
                size = MUX_HEADER_BYTES + rec.length
                done += size
                conn.on_record(rec, payload, now)
                if conn.throttle_bytes_per_s is not None and self._throttle(size):
                    return
        except Exception as exc:  # a bug here must cost this peer only
            conn.reader_failed(exc)
        finally:
            conn.uncork()
            conn.count_in(done)

    def _throttle(self, size: int) -> bool:
        """Operator fault: pause reading until ``size`` more bytes are due; True if paused.

        Pausing lets the kernel's receive buffer and then the peer's send credit fill, so
        the peer sees a slow link; nothing is dropped.
        """
        rate = self._conn.throttle_bytes_per_s
        if rate is None:
            return False
        now = time.monotonic()
        self._throttle_until = max(self._throttle_until, now) + size / rate
        delay = self._throttle_until - now
        if delay <= 0.001:
            return False
        self._throttled = True
        if self._transport is not None:
            self._transport.pause_reading()
        asyncio.get_running_loop().call_later(delay, self._unthrottle)
        return True

    def _unthrottle(self) -> None:
        self._throttled = False
        if self._conn.closed:
            return
        self._drain()
        self._resume()
