"""Fixtures for the hostile-peer tests: victim nodes on loopback and raw peers against them.

``rawpeer`` lives next to this file and is imported as a top-level module, so this directory
goes on ``sys.path`` before the test modules are collected.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rawpeer import DHello, HelloParams, Key, RawPeer

from node_core.discovery.service import DiscoveryConfig
from node_core.node import Node, NodeConfig
from node_core.observe.journal import JournalEvent
from node_core.transport.config import TransportConfig
from node_core.transport.service import Service

WAIT = 5.0


class Harness:
    """Victim nodes and raw peers started by one test; everything is stopped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[Node] = []
        self.raws: list[RawPeer] = []

    async def victim(
        self,
        name: str = "victim",
        *,
        transport: TransportConfig | None = None,
        discovery: DiscoveryConfig | None = None,
        extra_services: Sequence[Service] = (),
        **kwargs: Any,
    ) -> Node:
        """Start a node listening on 127.0.0.1:0 with an empty address book and no bootstrap."""
        config = NodeConfig(
            data_dir=self.root / name,
            transport=transport or TransportConfig(),
            discovery=discovery or DiscoveryConfig(),
            **kwargs,
        )
        node = Node(config, extra_services=extra_services)
        await node.start()
        self.nodes.append(node)
        return node

    async def honest_node(self, victim: Node, name: str = "honest") -> Node:
        """A second real node bootstrapped to ``victim``; returns once the victim registered it."""
        since = victim.journal.last_seq
        node = await self.victim(
            name, bootstrap=(("127.0.0.1", victim.transport.listen_port),), target_peers=1
        )
        await victim.journal.wait_for(
            lambda e: e.table == "conn" and e.event == "accepted" and e.peer == node.label,
            since=since,
            timeout=WAIT,
        )
        return node

    def params(self, victim: Node, **overrides: Any) -> HelloParams:
        """A Hello that ``victim`` accepts, with ``overrides`` applied."""
        return replace(
            HelloParams(chain_id=victim.chain_id, network_id=victim.config.network_id),
            **overrides,
        )

    async def raw(self, victim: Node, key: Key | None = None) -> RawPeer:
        """A raw peer with a TCP connection to ``victim`` and nothing sent yet."""
        peer = RawPeer(key)
        await peer.connect("127.0.0.1", victim.transport.listen_port)
        self.raws.append(peer)
        return peer

    async def session(self, victim: Node, key: Key | None = None, **overrides: Any) -> RawPeer:
        """A raw peer that completed a clean handshake and runs the multiplexer."""
        peer = await self.raw(victim, key)
        await peer.handshake(self.params(victim, **overrides))
        await victim.journal.wait_for(
            lambda e: e.table == "conn" and e.event == "accepted" and e.peer == peer.label,
            timeout=WAIT,
        )
        return peer

    async def assert_serves_honest_peer(self, victim: Node) -> None:
        """A fresh, well-behaved raw peer can connect and run a discovery exchange."""
        peer = await self.session(victim)
        sid = peer.open_stream()
        hello = await peer.recv_discovery_of(sid, DHello)
        assert isinstance(hello, DHello)
        assert hello.record.record.node_id == victim.node_id
        assert hello.record.verifies()
        assert peer.violations == []
        await peer.aclose()

    @staticmethod
    async def wait_until(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        """Wait for a condition the journal does not announce, re-checking every loop turn."""
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    async def wait_until_deregistered(self, victim: Node, node_id: bytes) -> None:
        await self.wait_until(
            lambda: victim.transport.peers.get(node_id) is None, "the peer to be deregistered"
        )

    @staticmethod
    async def wait_event(
        node: Node,
        table: str,
        event: str,
        *,
        peer: str | None = None,
        service: str | None = None,
        since: int = 0,
        timeout: float = WAIT,
        **fields: object,
    ) -> JournalEvent:
        """The first journal event ``table/event`` (of ``peer``, ``service``) whose fields
        match."""

        def match(e: JournalEvent) -> bool:
            return (
                e.table == table
                and e.event == event
                and (peer is None or e.peer == peer)
                and (service is None or e.service == service)
                and all(e.fields.get(k) == v for k, v in fields.items())
            )

        return await node.journal.wait_for(match, since=since, timeout=timeout)

    @staticmethod
    def events(
        node: Node, table: str, event: str | None = None, peer: str | None = None
    ) -> list[JournalEvent]:
        """Journal events retained so far, oldest first."""
        return node.journal.find(
            lambda e: (
                e.table == table
                and (event is None or e.event == event)
                and (peer is None or e.peer == peer)
            )
        )

    async def stop(self) -> None:
        for peer in self.raws:
            await peer.aclose()
        for node in reversed(self.nodes):
            await node.stop()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        await h.stop()
