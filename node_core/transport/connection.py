"""One authenticated peer connection: the stream multiplexer over a TCP socket.

Invariants:
- One reader task owns the socket's read half and never blocks on a stream: inbound bytes
  are bounded per stream by the credit window, so a stalled routine cannot stall its
  neighbours.
- Writes are synchronous ``transport.write`` calls made only while the peer has granted credit,
  so buffered output is bounded by the sum of stream windows.
- Every declared length is checked against its cap before the bytes are read or buffered.
- The stream rules (which OPEN is admitted, what DATA, CREDIT, FIN and RESET may do, and the
  reason each violation closes with) are decided by the sans-I/O ``MuxState``
  (``node_core/protocol/mux_state.py``); this module only carries out its events, journaling
  and counting them. The first close reason wins and is the one reported.
- The connection scope is the parent of every service scope on it: closing the connection
  cancels every routine, and cancelling the scope (protocol reject, panic, fault) closes it.
- A link fault (``links.py``) that delays or paces this peer holds our records in one queue,
  written by one sender task in order: the reader and the routines only ever enqueue, so a
  shaped peer never blocks them or any other connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from node_core.observe.journal import Journal
from node_core.observe.metrics import NodeMetrics
from node_core.protocol import mux
from node_core.protocol.handshake import Negotiated
from node_core.protocol.limits import MUX_DATA_CHUNK_BYTES, MUX_HEADER_BYTES, CloseCode
from node_core.protocol.mux_state import (
    CreditReceived,
    FramesReceived,
    IdleTimedOut,
    MuxEvent,
    MuxState,
    PeerClosed,
    PeerFinished,
    PeerReset,
    ProtocolViolation,
    StreamAccepted,
    StreamRefused,
)
from node_core.transport.cancel import CancelScope
from node_core.transport.config import TransportConfig
from node_core.transport.links import LinkTable, Pacing, schedule
from node_core.transport.receiver import RecordReceiver
from node_core.transport.routine import CloseCause, PeerInfo, RoutineContext
from node_core.transport.service import ServiceRegistry
from node_core.transport.stream import Stream
from node_core.transport.supervise import (
    PanicHook,
    Routine,
    RoutineHandle,
    Teardown,
    next_generation,
    spawn_supervised_routine,
)

log = logging.getLogger(__name__)

RecordType = mux.RecordType


class PeerRoutine(Protocol):
    """A service's routine as an object: ``run`` is its body, ``teardown`` its exit hook."""

    async def run(self) -> None: ...

    def teardown(self) -> None: ...


R = TypeVar("R", bound=PeerRoutine)


@dataclass(frozen=True, slots=True)
class CloseRecord:
    code: int
    reason: str
    by: str  # "local" or "remote"
    wall: float
    punitive: bool = False  # we closed because the peer broke a rule


class Connection:
    """A multiplexed connection to one authenticated peer."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer: PeerInfo,
        initiator: bool,
        negotiated: Negotiated,
        transcript_hash: bytes,
        listen_port: int,
        config: TransportConfig,
        registry: ServiceRegistry,
        journal: Journal,
        metrics: NodeMetrics,
        links: LinkTable | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.peer = peer
        self.initiator = initiator
        self.negotiated = negotiated
        self.transcript_hash = transcript_hash
        self.peer_listen_port = listen_port
        self.config = config
        self.registry = registry
        self.journal = journal
        self.metrics = metrics
        self.scope = CancelScope(f"conn:{peer.label}")
        self.scope.on_cancel(self._on_scope_cancelled)
        self.streams: dict[int, Stream] = {}
        self.service_scopes: dict[str, CancelScope] = {}
        self.routines: list[RoutineHandle] = []
        self.connected_mono = time.monotonic()
        self.connected_wall = time.time()
        #: Operator fault (``faults.throttle``): cap on the bytes per second we read from it.
        self.throttle_bytes_per_s: float | None = None
        #: Link faults of this node (``faults.delay`` / ``faults.bandwidth``): asked per write.
        self._links = links
        #: Records held for a shaped link, each with the monotonic time it may be written.
        self._held: deque[tuple[float, bytes]] = deque()
        self._pacing = Pacing()
        self._sender: asyncio.Task[None] | None = None
        #: Records gathered during a read pass (:meth:`cork`), written at its end.
        self._corked: list[bytes | memoryview] | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.close_record: CloseRecord | None = None
        limits = negotiated.limits
        #: The stream rules; ``streams`` holds a :class:`Stream` for each stream open in it.
        self.mux = MuxState(
            initiator=initiator,
            lookup=registry.lookup,
            capabilities=negotiated.capabilities,
            max_open_streams=limits.max_open_streams,
            max_message_bytes=limits.max_message_bytes,
            stream_open_rate=config.stream_open_rate,
            message_rate=config.message_rate,
            idle_timeout=limits.idle_timeout_millis / 1000.0,
            keepalive_interval=config.keepalive_interval,
            now=self.connected_mono,
        )
        self._receiver = RecordReceiver(self, self.mux.receive_header)
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()
        self.on_closed: list[Callable[[Connection], None]] = []

    # ------------------------------------------------------------------------ properties
    @property
    def closed(self) -> bool:
        return self.close_record is not None

    @property
    def close_reason(self) -> str | None:
        return self.close_record.reason if self.close_record else None

    @property
    def label(self) -> str:
        return self.peer.label

    @property
    def last_inbound(self) -> float:
        """Monotonic time of the last complete record from the peer (the idle timer)."""
        return self.mux.last_inbound

    @property
    def age(self) -> float:
        return time.monotonic() - self.connected_mono

    def _row(self, table: str, event: str, **fields: str | int | float | bool | None) -> None:
        extra: dict[str, Any] = fields
        self.journal.emit(table, event, peer=self.peer.label, conn=self.peer.conn_id, **extra)

    # ------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        # From here on the socket reads into the receiver's buffer; the handshake's reader is
        # drained once (see _read_loop) and never read again.
        self._receiver.attach(cast(asyncio.Transport, self._writer.transport))
        self._reader.feed_eof()
        self._tasks.append(loop.create_task(self._read_loop(), name=f"mux-read:{self.label}"))
        self._tasks.append(loop.create_task(self._keepalive(), name=f"mux-keepalive:{self.label}"))

    async def wait_closed(self) -> CloseRecord:
        await self._closed.wait()
        assert self.close_record is not None
        return self.close_record

    def close(
        self, code: int, reason: str, *, by_remote: bool = False, punitive: bool = False
    ) -> bool:
        """Close once; later calls are no-ops. Returns True if this call closed it."""
        if self.close_record is not None:
            return False
        self.uncork()  # records written before the close go out before it
        self.close_record = CloseRecord(
            int(code),
            reason,
            "remote" if by_remote else "local",
            time.time(),
            punitive and not by_remote,
        )
        # Records still held by a link fault are dropped: the link is torn down, and the CLOSE
        # goes out at once (a close must not wait behind a minute of delay).
        self._held.clear()
        if not by_remote:
            with contextlib.suppress(Exception):
                payload = mux.encode_close(mux.CloseInfo(int(code), reason))
                self._writer.write(mux.encode_record(RecordType.CLOSE, 0, payload))
        self.scope.cancel(reason)
        for stream in self.streams.values():
            stream.on_conn_closed()
        with contextlib.suppress(Exception):
            self._writer.close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current and not task.done():
                task.cancel()
        self._closed.set()
        for cb in self.on_closed:
            try:
                cb(self)
            except Exception:
                log.exception("on_closed callback failed for %s", self.label)
        return True

    def _on_scope_cancelled(self, reason: str) -> None:
        cause = self.scope.cause
        if isinstance(cause, CloseCause):
            self.close(cause.code, reason, punitive=cause.punitive)
        else:
            self.close(CloseCode.NEUTRAL, reason)

    def service_scope(self, service: str) -> CancelScope:
        """The service scope for ``service`` on this connection (a child of the connection)."""
        scope = self.scope.child(f"{service}:{self.label}")
        self.service_scopes[service] = scope
        return scope

    def launch(
        self,
        service: str,
        stream: Stream,
        routine: Routine,
        *,
        on_teardown: Teardown | None = None,
        on_panic: PanicHook | None = None,
        generation: int | None = None,
    ) -> RoutineHandle:
        """Start the one supervised routine for ``service`` on this connection.

        The routine gets a fresh service scope (a child of the connection scope); the stream's
        waits are routed through its context so injected faults land inside the routine.
        """
        ctx = self._routine_context(service, stream, generation)
        return self._spawn(ctx, routine, on_teardown, on_panic)

    def launch_routine(
        self,
        service: str,
        stream: Stream,
        factory: Callable[[RoutineContext], R],
        *,
        generation: int | None = None,
        on_teardown: Teardown | None = None,
    ) -> tuple[RoutineHandle, R]:
        """Start ``service``'s routine object: built by ``factory`` for its context, its
        ``run`` supervised like :meth:`launch`, its ``teardown`` (then ``on_teardown``) run
        on every exit path.

        Why a factory: the routine object needs its context, which exists only here; built
        first and started second, it is never half there, so a service keeps no holder for a
        routine that does not exist yet.
        """
        ctx = self._routine_context(service, stream, generation)
        built = factory(ctx)

        def teardown() -> None:
            built.teardown()
            if on_teardown is not None:
                on_teardown()

        return self._spawn(ctx, lambda _ctx: built.run(), teardown, None), built

    def _routine_context(
        self, service: str, stream: Stream, generation: int | None
    ) -> RoutineContext:
        ctx = RoutineContext(
            peer=self.peer,
            service=service,
            scope=self.service_scope(service),
            connection=self.scope,
            generation=generation if generation is not None else next_generation(service),
        )
        stream.bind(ctx)
        return ctx

    def _spawn(
        self,
        ctx: RoutineContext,
        routine: Routine,
        on_teardown: Teardown | None,
        on_panic: PanicHook | None,
    ) -> RoutineHandle:
        handle = spawn_supervised_routine(
            ctx,
            routine,
            journal=self.journal,
            metrics=self.metrics,
            on_teardown=on_teardown,
            on_panic=on_panic,
        )
        self.routines.append(handle)
        return handle

    def routine(self, service: str) -> RoutineHandle | None:
        """The newest routine of ``service`` on this connection."""
        for handle in reversed(self.routines):
            if handle.service == service:
                return handle
        return None

    # ------------------------------------------------------------------------ streams
    def open_stream(self, kind: int, version: int, frame_cap: int) -> Stream:
        """Open an ordered stream to the peer (the prelude goes out at once)."""
        if self.closed:
            raise ConnectionError(f"connection to {self.label} is closed")
        stream = Stream(self, self.mux.open_local(kind, frame_cap), version)
        sid = stream.id
        self.streams[sid] = stream
        prelude = mux.encode_prelude(mux.StreamPrelude(kind, version, frame_cap))
        self._write(RecordType.OPEN, sid, prelude)
        self._row(
            "stream", "opened", stream=sid, stream_kind=stream.kind_label, direction="outbound"
        )
        return stream

    def reset_stream(self, stream: Stream, code: int, reason: str) -> None:
        if not self.mux.reset_local(stream.state):
            return  # already reset or forgotten; the id may belong to a successor now
        self._write(RecordType.RESET, stream.id, mux.encode_close(mux.CloseInfo(code, reason)))
        stream.on_reset(code, reason)
        del self.streams[stream.id]
        self.metrics.stream_reset.labels(str(int(code))).inc()
        self._row(
            "stream",
            "reset",
            stream=stream.id,
            stream_kind=stream.kind_label,
            reason=reason,
            code=int(code),
            by="local",
        )

    def pump(self, stream: Stream) -> None:
        """Write as much of ``stream``'s queued output as its credit allows."""
        if self.closed:
            return
        credit = stream.send_credit
        while credit.available > 0 and stream.has_output:
            parts, size = stream.take_output(min(credit.available, MUX_DATA_CHUNK_BYTES))
            credit.consume(size)
            self._emit(mux.encode_record_header(RecordType.DATA, stream.id, size), *parts)
            self.bytes_out += MUX_HEADER_BYTES + size
            self.metrics.bytes_out.inc(MUX_HEADER_BYTES + size)
        if stream.local_finished and not stream.has_output and not stream.fin_sent:
            self._write(RecordType.FIN, stream.id)
            if self.mux.sent_fin(stream.state):
                del self.streams[stream.id]

    def consumed(self, stream: Stream, n: int) -> None:
        """The routine read ``n`` bytes from ``stream``; return credit when due."""
        grant = self.mux.consumed(stream.state, n)
        if grant and not self.closed:
            self._write(RecordType.CREDIT, stream.id, mux.encode_credit(grant))

    def _write(self, rtype: RecordType, sid: int, payload: bytes = b"") -> None:
        if self.closed:
            return
        self._emit(mux.encode_record(rtype, sid, payload))
        self.bytes_out += MUX_HEADER_BYTES + len(payload)

    # ------------------------------------------------------------------------ link faults
    def _emit(self, *parts: bytes | memoryview) -> None:
        """Write one record now, or hold it when a link fault shapes this peer.

        Once anything is held, every later record is held too (even after a heal), behind
        it: the peer must see our records in the order we wrote them.
        """
        links = self._links
        rule = links.shaping(self.peer.node_id) if links is not None else None
        if rule is None and not self._held:
            corked = self._corked
            if corked is not None:
                corked.extend(parts)
            elif len(parts) == 1:
                self._writer.write(parts[0])
            else:
                self._writer.writelines(parts)
            return
        # Joined now: the parts may be views of a routine's buffers, and we keep them a while.
        data = b"".join(parts)
        jitter = links.jitter(rule) if links is not None and rule is not None else 0.0
        due, self._pacing = schedule(rule, self._pacing, time.monotonic(), len(data), jitter)
        self._held.append((due, data))
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(
                self._release_held(), name=f"mux-link:{self.label}"
            )
            self._tasks.append(self._sender)

    def cork(self) -> None:
        """Gather the records written from now on until :meth:`uncork` (one read pass)."""
        self._corked = []

    def uncork(self) -> None:
        """Write what :meth:`cork` gathered, in order, in one socket write.

        Why: a read pass that carries out several CREDITs pumps a record for each; written
        together they cost one system call instead of one each, with the same records on
        the wire in the same order.
        """
        parts, self._corked = self._corked, None
        if parts and not self.closed:
            self._writer.writelines(parts)

    @property
    def held_bytes(self) -> int:
        """Bytes written by us but held by a link fault (delay or bandwidth)."""
        return sum(len(data) for _due, data in self._held)

    def release_held(self) -> int:
        """Write every held record now, in order; returns the bytes released.

        A heal: a link that is healed carries no more delay, not even for records held a
        minute ago (they would otherwise hold back everything sent after the heal too).
        """
        if self._sender is not None:
            self._sender.cancel()  # it only ever waits between writes: nothing is half-sent
            self._sender = None
        released = 0
        while self._held:
            data = self._held.popleft()[1]
            if not self.closed:
                self._writer.write(data)
                released += len(data)
        self._pacing = Pacing()
        return released

    async def _release_held(self) -> None:
        """Write each held record once it is due, in order; end when none is left."""
        held = self._held
        try:
            while held and not self.closed:
                wait = held[0][0] - time.monotonic()
                if wait > 0:
                    # The loop may wake a hair early; the next pass then waits the rest.
                    await asyncio.sleep(wait)
                    continue
                now = time.monotonic()
                while held and held[0][0] <= now:
                    self._writer.write(held.popleft()[1])
        finally:
            me = asyncio.current_task()
            if self._sender is me:
                self._sender = None
            self._tasks = [t for t in self._tasks if t is not me]

    # ------------------------------------------------------------------------ reading
    async def _read_loop(self) -> None:
        """Hand the socket's read half to the :class:`RecordReceiver` (``receiver.py``).

        The handshake's reader may hold bytes the peer sent after its handshake: they are
        taken out (it is told the stream ended there) and carried out first. Reading stays
        paused until then, so records keep their order.
        """
        reader = self._reader
        receiver = self._receiver
        try:
            leftover = await reader.read()
        except (ConnectionError, OSError) as exc:
            self.close(CloseCode.NEUTRAL, f"connection_lost:{type(exc).__name__}", by_remote=True)
            return
        receiver.start(leftover)
        if not self.closed and self._writer.transport.is_closing():
            self.close(CloseCode.NEUTRAL, "eof", by_remote=True)  # lost during the handover

    def on_record(self, rec: mux.RecordHeader, payload: memoryview, now: float) -> None:
        """One complete record arrived: the stream rules decide, this connection acts."""
        self.bytes_in += MUX_HEADER_BYTES + rec.length
        events = self.mux.receive(rec, payload, now)
        if events:
            self._apply(events)

    def count_in(self, nbytes: int) -> None:
        """Count ``nbytes`` of complete records in the node's metrics (once per read)."""
        if nbytes:
            self.metrics.bytes_in.inc(nbytes)

    def reader_failed(self, exc: Exception) -> None:
        """Code on the read path raised: a bug, and it costs this peer only."""
        log.error("mux reader failed for %s", self.label, exc_info=exc)
        self.close(CloseCode.NEUTRAL, f"reader_failed:{type(exc).__name__}")

    def _apply(self, events: Sequence[MuxEvent]) -> None:
        """Carry out what the stream rules decided about one record, in order."""
        for ev in events:
            if isinstance(ev, FramesReceived):
                stream = self.streams[ev.stream_id]
                for frame in ev.frames:
                    stream.deliver(frame)
            elif isinstance(ev, CreditReceived):
                self.pump(self.streams[ev.stream_id])
            elif isinstance(ev, StreamAccepted):
                self._accept(ev)
            elif isinstance(ev, StreamRefused):
                self._refuse(ev)
            elif isinstance(ev, PeerFinished):
                stream = self.streams[ev.stream_id]
                stream.on_remote_fin()
                if ev.forgotten:
                    del self.streams[ev.stream_id]
            elif isinstance(ev, PeerReset):
                self._on_peer_reset(ev)
            elif isinstance(ev, PeerClosed):
                self.close(ev.code, ev.reason, by_remote=True)
            else:
                self.violation(ev)

    def violation(self, ev: ProtocolViolation) -> None:
        """The peer broke a rule (found by the stream rules or, in a record header, by the
        receiver): count and journal the limit it broke, if any, and close."""
        limit = ev.limit
        if limit is not None:
            metrics = self.metrics
            counter = (
                metrics.ratelimit_frame_oversize
                if limit.event == "frame.oversize"
                else metrics.ratelimit_message_oversize
                if limit.event == "message.oversize"
                else metrics.ratelimit_message_throttled
            )
            counter.labels(limit.stream_kind).inc()
            self._row(
                "ratelimit",
                limit.event,
                stream=limit.stream_id,
                stream_kind=limit.stream_kind,
                **limit.fields,
            )
        log.debug("closing %s: %s (%s)", self.label, ev.reason, ev.detail)
        self.close(ev.code, ev.reason, punitive=True)

    def _accept(self, ev: StreamAccepted) -> None:
        svc = self.registry.lookup(ev.kind)
        assert svc is not None  # the rules accepted the kind because the registry has it
        sid = ev.stream_id
        stream = Stream(self, self.mux.streams[sid], svc.version)
        self.streams[sid] = stream
        self._row("stream", "accepted", stream=sid, stream_kind=ev.name, direction="inbound")
        svc.add_peer(self, stream)

    def _refuse(self, ev: StreamRefused) -> None:
        sid, code = ev.stream_id, int(ev.code)
        if ev.throttled:
            self.metrics.ratelimit_stream_open_throttled.inc()
            self._row("ratelimit", "stream.open_throttled", stream=sid)
        self._write(RecordType.RESET, sid, mux.encode_close(mux.CloseInfo(code, ev.reason)))
        self.metrics.stream_reset.labels(str(code)).inc()
        self._row(
            "stream",
            "rejected",
            stream=sid,
            reason=ev.reason,
            code=code,
            stream_kind=ev.stream_kind,
        )

    def _on_peer_reset(self, ev: PeerReset) -> None:
        stream = self.streams.pop(ev.stream_id)
        stream.on_reset(ev.code, f"peer:{ev.reason}")
        self._row(
            "stream",
            "reset",
            stream=ev.stream_id,
            stream_kind=stream.kind_label,
            reason=ev.reason,
            code=ev.code,
            by="remote",
        )

    # ------------------------------------------------------------------------ liveness
    async def _keepalive(self) -> None:
        interval = self.mux.keepalive_interval
        while not self.closed:
            await asyncio.sleep(interval)
            due = self.mux.tick(time.monotonic())
            if isinstance(due, IdleTimedOut):
                self.close(due.code, due.reason)
                return
            self._write(RecordType.PING, 0, mux.encode_ping(due.nonce))

    def close_is_punitive(self) -> bool:
        rec = self.close_record
        return rec is not None and rec.punitive
