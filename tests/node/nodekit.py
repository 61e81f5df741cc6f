"""Helpers for tests that start real nodes on loopback (imported as ``nodekit``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node_core.node import Node, NodeConfig


class Cluster:
    """Nodes started in this test's loop; all stopped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[Node] = []

    async def start(self, name: str, **kwargs: Any) -> Node:
        extra = kwargs.pop("extra_services", ())
        node = Node(NodeConfig(data_dir=self.root / name, **kwargs), extra_services=extra)
        await node.start()
        self.nodes.append(node)
        return node

    async def stop(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes))


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait for a condition to hold, re-checking as the loop runs (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.02)


class ProbeService:
    """A test-only ordered service. The responder side either echoes every frame back or
    never reads (``stall=True``); the initiator side just exposes its stream to the test."""

    version = 1
    frame_cap = 16 * 1024 + 8
    message_rate: float | None = None

    def __init__(self, name: str, kind: int, capability: int, *, stall: bool = False) -> None:
        self.name = name
        self.kind = kind
        self.capability = capability
        self.stall = stall
        self.streams: dict[bytes, Any] = {}
        self.echoed = 0

    def add_peer(self, conn: Any, stream: Any) -> None:
        self.streams[conn.peer.node_id] = stream

        async def routine(ctx: Any) -> None:
            if stream.locally_opened:
                await ctx.scope.wait()
                return
            if self.stall:
                await ctx.scope.wait()  # never reads: its credit runs out
                return
            while (frame := await stream.recv()) is not None:
                await stream.send(frame.message_type, frame.payload)
                self.echoed += 1

        conn.launch(self.name, stream, routine)

    def remove_peer(self, conn: Any) -> None:
        self.streams.pop(conn.peer.node_id, None)
