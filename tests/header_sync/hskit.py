"""Shared pieces of the header-sync integration tests (imported as ``hskit``)."""

from __future__ import annotations

import asyncio
from typing import Any

from node_core.node import Node
from node_core.protocol.header_sync import (
    HS_FRAME_CAP,
    TAG_GET_HEADERS,
    TAG_STATUS,
    GetHeaders,
    Status,
    encode_header_sync,
)
from node_core.protocol.limits import Capability


class GreedyNonReader:
    """Kind-5 stand-in: advertises ``tip``, sends ``requests`` GetHeaders, never reads."""

    name = "header_sync"
    kind = 5
    version = 1
    capability = int(Capability.HEADER_SYNC)
    frame_cap = HS_FRAME_CAP
    message_rate: float | None = None

    def __init__(
        self, *, tip: int, requests: int, count: int = 1000, interval: float = 0.003
    ) -> None:
        self.tip = tip
        self.requests = requests
        self.count = count
        # Paced like a greedy but polite client (within the victim's 10 serving slots), so
        # what fills the victim's command queue is our not reading, not its spam meter.
        self.interval = interval
        self.sent = 0

    def add_peer(self, conn: Any, stream: Any) -> None:
        async def routine(ctx: Any) -> None:
            status = Status(self.tip, b"\x11" * 32, 0, 1000, 10)
            await stream.send(TAG_STATUS, encode_header_sync(status))
            ask = encode_header_sync(GetHeaders(1, self.count))
            for _ in range(self.requests):
                await stream.send(TAG_GET_HEADERS, ask)
                self.sent += 1
                await asyncio.sleep(self.interval)  # pacing of the peer's behaviour, not a sync
            await ctx.scope.wait()  # and never read a byte

        conn.launch(self.name, stream, routine)

    def remove_peer(self, conn: Any) -> None:
        return None


def bootstrap(*nodes: Node) -> tuple[tuple[str, int], ...]:
    return tuple(("127.0.0.1", n.transport.listen_port) for n in nodes)
