"""``GET /api/v1/stream``: the node live over one WebSocket (snapshots and every journal row).

Messages are JSON objects with a ``type``:

- ``hello``: first, once: ``boot_id``, ``first_seq``, ``last_seq``, ``interval``;
- ``journal``: one journal row (``row``, with its ``seq``), in order, never skipped while the
  node still keeps it; a reconnect with ``?since=SEQ`` resumes right after ``SEQ``;
- ``gap``: rows ``from_seq..to_seq`` were overwritten in the node's journal ring before this
  client read them (it fell too far behind, or asked for rows older than the ring);
- ``snapshot``: the snapshot document every ``interval`` seconds; latest wins: a snapshot is
  never queued behind another, a client that is busy simply gets the newest one later.

Invariants (the node's memory and loop come first):

- Nothing is buffered per client but what the socket holds: journal rows are read from the
  node's own ring at send time, snapshots are built once per interval for all clients
  (:class:`SnapshotCache`) and encoded once.
- A client whose unsent bytes pass :data:`MAX_BUFFERED` or whose send does not complete within
  :data:`SEND_TIMEOUT` is cut off (close code 1008, "too slow"); it never grows the node's
  memory and never slows other clients.
- At most ``max_streams`` clients at once; the next gets 503 with a sentence saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

import orjson
from aiohttp import WSCloseCode, web

from node_core.api.routes import ApiNode, error
from node_core.api.snapcache import SnapshotCache

__all__ = ["MAX_BUFFERED", "MAX_STREAMS", "SnapshotCache", "StreamHub"]

#: Unsent bytes a client may have queued in its socket before it is cut off.
MAX_BUFFERED = 4 * 1024 * 1024
#: The kernel send buffer of a stream socket, fixed (no autotuning to megabytes), so a
#: client that stops reading costs the node at most this plus ``MAX_BUFFERED``.
SOCKET_SNDBUF = 256 * 1024
#: Seconds one send may take before the client is cut off.
SEND_TIMEOUT = 5.0
#: Concurrent stream clients by default.
MAX_STREAMS = 64
#: Journal rows sent per turn before the loop yields and re-checks the socket.
ROWS_PER_TURN = 200
MIN_INTERVAL, MAX_INTERVAL, DEFAULT_INTERVAL = 0.1, 60.0, 1.0
HEARTBEAT = 10.0


class SlowClient(Exception):
    """The client stopped reading; it is cut off."""


class StreamHub:
    """Serves every stream client of one node."""

    def __init__(
        self, node: ApiNode, *, max_streams: int = MAX_STREAMS, cache: SnapshotCache | None = None
    ) -> None:
        self.node = node
        self.max_streams = max_streams
        self.cache = SnapshotCache(node) if cache is None else cache
        self.clients = 0
        self.cut_off = 0
        self._gauge = node.metrics.gauge("zakura_api_streams", "WebSocket stream clients now")
        self._cut = node.metrics.counter(
            "zakura_api_stream_cut_off", "Stream clients cut off for not reading"
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            interval = float(request.query.get("interval", DEFAULT_INTERVAL))
            since = int(request.query.get("since", -1))
        except ValueError:
            return error(422, "interval must be seconds and since a journal seq", field="query")
        if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
            return error(
                422,
                f"interval must be from {MIN_INTERVAL:g} to {MAX_INTERVAL:g} s",
                field="interval",
            )
        if self.clients >= self.max_streams:
            return error(
                503, f"this node serves at most {self.max_streams} streams at once; try later"
            )
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=4096)
        await ws.prepare(request)
        sock = None if request.transport is None else request.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SNDBUF)
        self.clients += 1
        self._gauge.set(self.clients)
        try:
            await self._serve(ws, request, interval, since)
        except SlowClient:
            self.cut_off += 1
            self._cut.inc()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too slow"), 1.0
                )
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.clients -= 1
            self._gauge.set(self.clients)
        return ws

    async def _serve(
        self, ws: web.WebSocketResponse, request: web.Request, interval: float, since: int
    ) -> None:
        journal = self.node.journal
        bell = asyncio.Event()
        unsubscribe = journal.subscribe(lambda _e: bell.set())
        reader = asyncio.get_running_loop().create_task(_drain_incoming(ws))
        try:
            last = journal.last_seq if since < 0 else since
            await self._send(
                ws,
                request,
                orjson.dumps(
                    {
                        "type": "hello",
                        "boot_id": getattr(self.node, "boot_id", None),
                        "first_seq": journal.first_seq,
                        "last_seq": journal.last_seq,
                        "interval": interval,
                    }
                ),
            )
            next_snapshot = time.monotonic()
            while not ws.closed and not reader.done():
                now = time.monotonic()
                if now >= next_snapshot:
                    await self._send(ws, request, self.cache.encoded())
                    next_snapshot = max(next_snapshot + interval, now)
                last = await self._send_rows(ws, request, last)
                if journal.last_seq > last:
                    continue  # more rows than one turn: keep going before sleeping
                bell.clear()
                timeout = max(0.0, next_snapshot - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(bell.wait(), timeout)
        finally:
            unsubscribe()
            reader.cancel()

    async def _send_rows(self, ws: web.WebSocketResponse, request: web.Request, last: int) -> int:
        journal = self.node.journal
        first = journal.first_seq
        if last + 1 < first and journal.last_seq > 0:
            gap = {"type": "gap", "from_seq": last + 1, "to_seq": first - 1}
            await self._send(ws, request, orjson.dumps(gap))
            last = first - 1
        for event in journal.since(last, ROWS_PER_TURN):
            await self._send(ws, request, orjson.dumps({"type": "journal", "row": event.to_dict()}))
            last = event.seq
        return last

    async def _send(self, ws: web.WebSocketResponse, request: web.Request, body: bytes) -> None:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client gone")
        if transport.get_write_buffer_size() > MAX_BUFFERED:
            raise SlowClient
        try:
            await asyncio.wait_for(ws.send_str(body.decode()), SEND_TIMEOUT)
        except TimeoutError:
            raise SlowClient from None


async def _drain_incoming(ws: web.WebSocketResponse) -> Any:
    """Read (and ignore) what the client sends, so pings and the close handshake work."""
    async for _msg in ws:
        pass
