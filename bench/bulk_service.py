"""A test-only bulk-transfer service, used to measure the stream multiplexer.

``BulkService`` is an ordinary :class:`node_core.transport.service.Service` on its own stream
kind (200) and capability bit (1 << 8), so it never collides with a real service. On the
connection's initiator it sends a prepared :class:`Payload` as frames with the awaiting
:meth:`Stream.send` (which respects the peer's credit) and then half-closes the stream; on the
responder it reads frames until the peer finishes, counting and hashing them (BLAKE2b). Both
sides run as supervised routines launched through :meth:`Connection.launch`, exactly like a
production service.

Timing uses one clock (``time.perf_counter``) for both ends, which is valid because the
benchmark runs both nodes in one process: the transfer lasts from the sender's first
``send`` to the receiver's last hashed byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from node_core.protocol.limits import FRAME_HEADER_BYTES, KIB
from node_core.transport.connection import Connection
from node_core.transport.routine import RemoteProtocolError, RoutineContext
from node_core.transport.stream import Stream

SERVICE = "bench_bulk"
BULK_KIND = 200
BULK_VERSION = 1
BULK_CAPABILITY = 1 << 8
BULK_MESSAGE_TYPE = 1
DEFAULT_PAYLOAD_BYTES = 64 * KIB
DEFAULT_FRAME_CAP = DEFAULT_PAYLOAD_BYTES + FRAME_HEADER_BYTES


def new_hasher() -> hashlib.blake2b:
    """The one digest every benchmark receiver uses (BLAKE2b, 64-byte digest)."""
    return hashlib.blake2b()


@dataclass(frozen=True, slots=True)
class Payload:
    """The bytes a transfer moves, pre-cut into chunks, with the sender's digest.

    Built once per benchmark run and shared by the baseline and the measured scenario, so
    both move the very same bytes. The digest is computed here, before any timing starts.
    """

    chunks: tuple[bytes, ...]
    total_bytes: int
    digest: bytes

    @property
    def chunk_size(self) -> int:
        return len(self.chunks[0]) if self.chunks else 0

    @classmethod
    def generate(cls, total_bytes: int, chunk_size: int, *, seed: int = 1) -> Payload:
        """Deterministic pseudo-random bytes (incompressible, every chunk distinct)."""
        if total_bytes <= 0 or chunk_size <= 0:
            raise ValueError("total_bytes and chunk_size must be positive")
        rng = random.Random(seed)
        hasher = new_hasher()
        chunks: list[bytes] = []
        remaining = total_bytes
        while remaining:
            chunk = rng.randbytes(min(chunk_size, remaining))
            hasher.update(chunk)
            chunks.append(chunk)
            remaining -= len(chunk)
        return cls(tuple(chunks), total_bytes, hasher.digest())


@dataclass(frozen=True, slots=True)
class SendReport:
    """What the sending routine did; ``started`` is the perf_counter before the first send."""

    bytes_sent: int
    frames_sent: int
    started: float
    finished: float


@dataclass(frozen=True, slots=True)
class ReceiveReport:
    """What the receiving routine saw; ``finished`` is the perf_counter after the last hash."""

    bytes_received: int
    frames_received: int
    digest: bytes
    first_byte: float
    finished: float


BULK_MESSAGE_RATE = 1_000_000.0


class BulkService:
    """Bulk sender (initiator side) / hashing receiver (responder side) on stream kind 200.

    Give the dialing node a ``payload`` to send; the listening node needs none. Await
    :meth:`sent` and :meth:`received` for the reports; a routine that ends without one makes
    them raise instead of hanging.
    """

    name = SERVICE
    kind = BULK_KIND
    version = BULK_VERSION
    capability = BULK_CAPABILITY
    #: A bulk service declares its own inbound message rate: the transport default (2048/s,
    #: made for small control messages) would close an honest 64 KiB-frame sender at 128 MiB/s.
    message_rate: float | None = BULK_MESSAGE_RATE

    def __init__(
        self,
        payload: Payload | None = None,
        *,
        frame_cap: int = DEFAULT_FRAME_CAP,
    ) -> None:
        if payload is not None and payload.chunk_size + FRAME_HEADER_BYTES > frame_cap:
            raise ValueError(
                f"chunks of {payload.chunk_size} bytes do not fit a frame cap of {frame_cap}"
            )
        self.payload = payload
        self._frame_cap = frame_cap
        self._sent: asyncio.Future[SendReport] | None = None
        self._received: asyncio.Future[ReceiveReport] | None = None

    @property
    def frame_cap(self) -> int:
        return self._frame_cap

    # ------------------------------------------------------------------ results
    def _sent_future(self) -> asyncio.Future[SendReport]:
        if self._sent is None:
            self._sent = asyncio.get_running_loop().create_future()
        return self._sent

    def _received_future(self) -> asyncio.Future[ReceiveReport]:
        if self._received is None:
            self._received = asyncio.get_running_loop().create_future()
        return self._received

    async def sent(self, timeout: float) -> SendReport:
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._sent_future())

    async def received(self, timeout: float) -> ReceiveReport:
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._received_future())

    # ------------------------------------------------------------------ Service protocol
    def add_peer(self, conn: Connection, stream: Stream) -> None:
        if conn.initiator:
            chunks: Sequence[bytes] = self.payload.chunks if self.payload is not None else ()
            fut_s = self._sent_future()

            async def send_routine(ctx: RoutineContext) -> None:
                fut_s.set_result(await _send_all(stream, chunks))

            conn.launch(SERVICE, stream, send_routine, on_teardown=lambda: _fail(fut_s))
        else:
            fut_r = self._received_future()

            async def recv_routine(ctx: RoutineContext) -> None:
                fut_r.set_result(await _receive_all(stream))

            conn.launch(SERVICE, stream, recv_routine, on_teardown=lambda: _fail(fut_r))

    def remove_peer(self, conn: Connection) -> None:
        pass


async def _send_all(stream: Stream, chunks: Sequence[bytes]) -> SendReport:
    started = time.perf_counter()
    sent = 0
    for chunk in chunks:
        await stream.send(BULK_MESSAGE_TYPE, chunk)
        sent += len(chunk)
    stream.finish()
    return SendReport(sent, len(chunks), started, time.perf_counter())


async def _receive_all(stream: Stream) -> ReceiveReport:
    hasher = new_hasher()
    received = frames = 0
    first_byte = 0.0
    while (frame := await stream.recv()) is not None:
        if frame.message_type != BULK_MESSAGE_TYPE or frame.flags:
            raise RemoteProtocolError(
                "bulk_unexpected_frame", f"type {frame.message_type} flags {frame.flags}"
            )
        if not frames:
            first_byte = time.perf_counter()
        hasher.update(frame.payload)
        received += len(frame.payload)
        frames += 1
    return ReceiveReport(received, frames, hasher.digest(), first_byte, time.perf_counter())


def _fail(fut: asyncio.Future[SendReport] | asyncio.Future[ReceiveReport]) -> None:
    if not fut.done():
        fut.set_exception(RuntimeError("bulk routine ended without a result"))
        # Whoever awaits the report still gets the exception; nobody awaiting is not an error.
        fut.exception()
