"""Keeps the node connected: bootstrap redial and the candidate dialer (reference §2.3).

- Bootstrap peers get a *maintained* redial: dial, and while the connection lives do nothing;
  when it drops (or the dial fails) wait with backoff 1 s -> 30 s and dial again. The backoff
  resets once a connection stayed up for 60 s.
- The candidate dialer wakes every second, or at once when a peer registers or leaves. Dial
  slots = ``min(target - connected, max_concurrent - in_flight)``; like the reference's soft
  cap, inbound peers count towards the target. Candidates come from the address book: never a
  node that is connected or already being dialed, never one in backoff.
- A dial that registers but closes within 60 s is "short-lived": that node cools down 60 s.
- A healed link fault (:meth:`Dialer.links_healed`, called by the transport's link table
  through a listener the node wires) ends the waits it caused: the healed nodes' book backoff
  and cooldown are forgotten, every bootstrap peer not connected whose id is healed or not
  known yet is retried at once with its backoff back to 1 s, and the candidate dialer wakes.
  Without it a partition of a minute would keep the nodes apart up to 30 s (bootstrap) or
  60 s (book) after the heal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from node_core.discovery.book import AddressBook
from node_core.discovery.records import usable_addrs
from node_core.observe.journal import Journal
from node_core.observe.metrics import NodeMetrics
from node_core.transport.connection import Connection
from node_core.transport.endpoint import DialError, Transport

if TYPE_CHECKING:
    from node_core.observe.schema import DialerSection

log = logging.getLogger(__name__)

BOOTSTRAP_BACKOFF_MIN = 1.0
BOOTSTRAP_BACKOFF_MAX = 30.0
HEALTHY_AFTER_SECS = 60.0
DIAL_INTERVAL_SECS = 1.0


@dataclass(slots=True)
class BootstrapState:
    host: str
    port: int
    node_id: bytes | None = None
    connected: bool = False
    attempts: int = 0
    failures: int = 0
    last_error: str | None = None
    next_attempt_mono: float = 0.0
    #: The wait before the next dial after this one fails (doubles up to the maximum).
    backoff: float = BOOTSTRAP_BACKOFF_MIN
    #: Set to cut the current backoff short (a healed link fault).
    retry: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"


class Dialer:
    """Maintains bootstrap connections and dials book candidates up to the target."""

    def __init__(
        self,
        transport: Transport,
        book: AddressBook,
        journal: Journal,
        metrics: NodeMetrics,
        *,
        target: int,
        bootstrap: list[tuple[str, int]],
        max_concurrent: int = 4,
        interval: float = DIAL_INTERVAL_SECS,
    ) -> None:
        self.transport = transport
        self.book = book
        self.journal = journal
        self.metrics = metrics
        self.target = target
        self.max_concurrent = max_concurrent
        self.interval = interval
        self.bootstrap = [BootstrapState(h, p) for h, p in bootstrap]
        self.in_flight: set[bytes] = set()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._dial_started: dict[bytes, float] = {}
        transport.on_registered.append(lambda _c: self._wake.set())
        transport.on_deregistered.append(self._on_deregistered)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._spawn(self._candidate_loop())
        for state in self.bootstrap:
            self._spawn(self._maintain(state))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ status
    @property
    def connected(self) -> int:
        return len(self.transport.peers)

    def status(self) -> DialerSection:
        conns = self.transport.peers.connections()
        outbound = sum(1 for c in conns if c.peer.direction == "outbound")
        return {
            "target": self.target,
            "connected": len(conns),
            "outbound": outbound,
            "inbound": len(conns) - outbound,
            "in_flight": len(self.in_flight),
            "reached": len(conns) >= self.target,
            "book_size": len(self.book),
            "bootstrap": [
                {
                    "addr": b.addr,
                    "connected": b.connected,
                    "attempts": b.attempts,
                    "failures": b.failures,
                    "last_error": b.last_error,
                }
                for b in self.bootstrap
            ],
        }

    # ------------------------------------------------------------------ bootstrap
    async def _maintain(self, state: BootstrapState) -> None:
        while True:
            if state.node_id is not None and self.transport.peers.get(state.node_id) is not None:
                conn = self.transport.peers.get(state.node_id)
                assert conn is not None
                state.connected = True
                await conn.wait_closed()
                state.connected = False
                if conn.age >= HEALTHY_AFTER_SECS:
                    state.backoff = BOOTSTRAP_BACKOFF_MIN
            else:
                state.attempts += 1
                try:
                    conn = await self.transport.dial(state.host, state.port)
                    state.node_id = conn.peer.node_id
                    state.last_error = None
                    continue
                except DialError as exc:
                    if exc.reason == "duplicate":
                        # Already connected (the peer dialed us first): find that connection.
                        self._adopt_bootstrap(state)
                        if state.node_id is not None:
                            continue
                    state.failures += 1
                    state.last_error = exc.reason
            await self._back_off(state)

    async def _back_off(self, state: BootstrapState) -> None:
        """Wait out ``state``'s backoff, or until :meth:`links_healed` cuts it short.

        The backoff doubles before the wait, so a heal that resets it during the wait is
        not doubled away after it.
        """
        delay = state.backoff
        state.backoff = min(BOOTSTRAP_BACKOFF_MAX, delay * 2)
        state.next_attempt_mono = time.monotonic() + delay
        # asyncio.timeout, not wait_for (see _candidate_loop).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await state.retry.wait()
        state.retry.clear()

    def links_healed(self, node_ids: Iterable[bytes]) -> None:
        """Link faults on ``node_ids`` were lifted: dial them again now, not after the
        backoff their refused dials built up.

        A bootstrap peer is retried when its id is healed, or not known yet: a partition
        refuses a peer dialed by address before we learn its id, and one extra dial to an
        address that merely failed costs nothing.
        """
        healed = set(node_ids)
        if not healed:
            return
        forgiven = sum(self.book.forgive(node_id) for node_id in healed)
        retried = 0
        for state in self.bootstrap:
            if not state.connected and (state.node_id is None or state.node_id in healed):
                state.backoff = BOOTSTRAP_BACKOFF_MIN
                state.retry.set()
                retried += 1
        self.journal.emit(
            "discovery", "dial.retry", reason="links_healed", book=forgiven, bootstrap=retried
        )
        self._wake.set()

    def _adopt_bootstrap(self, state: BootstrapState) -> None:
        for conn in self.transport.peers.connections():
            host = conn.peer.addr.rpartition(":")[0]
            if host == state.host and conn.peer_listen_port == state.port:
                state.node_id = conn.peer.node_id

    # ------------------------------------------------------------------ candidates
    async def _candidate_loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races
            # with the wake, leaving this loop running after stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                self._fill_slots()
            except Exception:
                log.exception("dialer pass failed")

    def _fill_slots(self) -> None:
        slots = min(self.target - self.connected, self.max_concurrent - len(self.in_flight))
        if slots <= 0:
            return
        exclude = (
            set(self.transport.peers.by_id) | self.in_flight | {self.transport.identity.node_id}
        )
        now = time.monotonic()
        for entry in self.book.dialable(now, now_unix=time.time(), exclude=exclude)[:slots]:
            addr = usable_addrs(entry.record)[0]
            self.in_flight.add(entry.node_id)
            self.book.dial_started(entry.node_id, now)
            self.metrics.dial_started.inc()
            self._spawn(self._dial(entry.node_id, str(addr.ip), addr.port))

    async def _dial(self, node_id: bytes, host: str, port: int) -> None:
        try:
            await self.transport.dial(host, port, expected_node_id=node_id)
        except DialError as exc:
            if exc.reason != "duplicate":
                self.book.dial_failed(node_id, time.monotonic())
                self.metrics.dial_failed.inc()
                self.journal.emit(
                    "discovery", "dial.failed", reason=exc.reason, addr=f"{host}:{port}"
                )
        else:
            self.book.dial_succeeded(node_id, time.monotonic())
            self.metrics.dial_succeeded.inc()
            self._dial_started[node_id] = time.monotonic()
        finally:
            self.in_flight.discard(node_id)
            self._wake.set()

    def _on_deregistered(self, conn: Connection) -> None:
        started = self._dial_started.pop(conn.peer.node_id, None)
        if started is not None and time.monotonic() - started < HEALTHY_AFTER_SECS:
            self.book.mark_short_lived(conn.peer.node_id, time.monotonic())
            self.metrics.dial_short_lived.inc()
        self._wake.set()
