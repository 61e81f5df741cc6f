"""Operator and test fault injection, behind one gate (docs/ARCHITECTURE.md, "The control model").

Two families: faults on one connected peer (disconnect, panic, park, unpark, stall, throttle),
named by its label, and link faults (partition, delay, bandwidth, heal), named by remote node
ids and kept in the transport's :class:`~node_core.transport.links.LinkTable`, so they hold
across reconnects and apply to nodes not connected yet.

Every injection gets an id and two journal events: ``fault/injected`` when it is applied and
``fault/observed`` when the node's reaction is seen (connection closed, routine panicked ...),
so an operator sees cause and effect side by side. Everything is refused unless the node was
started with ``--allow-faults``; that check lives in :meth:`FaultInjector._check` alone.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from node_core.identity import peer_label
from node_core.observe.journal import FieldValue, JournalEvent
from node_core.protocol.limits import CloseCode
from node_core.transport.connection import Connection
from node_core.transport.links import (
    MAX_DELAY_MS,
    MAX_JITTER_MS,
    MAX_KIB_PER_S,
    MIN_KIB_PER_S,
    LinkRow,
)
from node_core.transport.routine import InjectedPanic, RoutineState
from node_core.transport.supervise import RoutineHandle

if TYPE_CHECKING:
    from node_core.observe.journal import Journal
    from node_core.observe.metrics import NodeMetrics
    from node_core.transport.links import LinkTable
    from node_core.transport.stream import Stream


class FaultError(Exception):
    """A fault could not be applied; the message says why, for the operator."""


class FaultsDisabled(FaultError):
    """The node runs without ``--allow-faults``."""


class UnknownPeer(FaultError):
    """No connected peer has that label."""


class RoutineNotRunning(FaultError):
    """The peer has no such routine, or it is not running (parked, exited)."""


class NotParked(FaultError):
    """Unpark was asked of a peer whose service is not parked: there is nothing to resume."""


class FaultInvalid(FaultError):
    """A parameter is out of bounds; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


#: Who asked for a fault, journaled with it: ``by`` (a token's name or "console"), ``role``,
#: ``remote`` (address). Tests that call the injector directly pass nothing.
Actor = Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class FaultOutcome:
    fault_id: int
    kind: str
    label: str
    service: str | None
    effect: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What a link fault did: ``nodes`` it was asked for (none for a heal of every rule),
    ``closed`` connections (a partition), ``healed`` ids that had a rule (a heal)."""

    fault_id: int
    kind: str
    nodes: tuple[bytes, ...]
    effect: str
    reason: str
    closed: int = 0
    healed: tuple[bytes, ...] = ()


def _labels(nodes: Sequence[bytes]) -> str:
    """Node ids as journal text: their peer labels, the name every other row uses."""
    return ",".join(peer_label(n) for n in nodes)


class Stallable(Protocol):
    """A routine that a stall fault can pause."""

    def stall(self, seconds: float) -> None: ...


class StallableRoutines(Protocol):
    """A service's sessions, as a stall finds them."""

    def routine_for(self, conn_id: int, generation: int) -> Stallable | None: ...


class ResumableService(StallableRoutines, Protocol):
    """Header sync as unpark sees it: a service that starts a session on a new stream."""

    @property
    def kind(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def frame_cap(self) -> int: ...
    def add_peer(self, conn: Connection, stream: Stream) -> None: ...


class Parking(Protocol):
    """The header-sync reactor as park and unpark see it."""

    @property
    def parked(self) -> Container[str]: ...
    def park(self, label: str, reason: str) -> int: ...


class LinkControl(Protocol):
    """The transport as link faults see it: the link rules and what applies them now."""

    @property
    def links(self) -> LinkTable: ...
    def close_partitioned(self, reason: str) -> list[Connection]: ...
    def release_held(self, node_ids: Iterable[bytes]) -> int: ...


class FaultTarget(Protocol):
    """The parts of a node that faults act on and watch (a :class:`~node_core.node.Node`).

    Why a protocol, of narrow protocols: the node builds its injector, so the injector must
    not know the node's class (docs/ARCHITECTURE.md, "Layers and packages"), nor how the
    services keep their sessions; it sees only what each fault needs.
    """

    @property
    def node_id(self) -> bytes: ...
    def connection_for_label(self, label: str) -> Connection | None: ...
    @property
    def transport(self) -> LinkControl: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def metrics(self) -> NodeMetrics: ...
    @property
    def header_sync(self) -> Parking: ...
    @property
    def header_sync_service(self) -> ResumableService: ...
    @property
    def block_sync_service(self) -> StallableRoutines: ...


class FaultInjector:
    """Applies faults to a node and reports what the node did about them."""

    def __init__(self, node: FaultTarget, *, enabled: bool) -> None:
        self.node = node
        self.enabled = enabled
        self._ids = itertools.count(1)

    def _check(self) -> None:
        if not self.enabled:
            raise FaultsDisabled(
                "fault injection is disabled on this node: restart it with --allow-faults"
            )

    def _connection(self, label: str) -> Connection:
        conn = self.node.connection_for_label(label)
        if conn is None or conn.closed:
            raise UnknownPeer(f"no connected peer {label[:64]!r}")
        return conn

    @staticmethod
    def _running_routine(conn: Connection, label: str, service: str) -> RoutineHandle:
        """The running ``service`` routine of ``label``, or a FaultError that says why not."""
        handle = conn.routine(service)
        if handle is None:
            services = sorted({h.service for h in conn.routines}) or ["none"]
            raise RoutineNotRunning(
                f"peer {label} has no {service!r} routine (it has: {', '.join(services)})"
            )
        if not handle.running:
            raise RoutineNotRunning(
                f"the {service} routine of {label} is not running (it is {handle.state.value})"
            )
        return handle

    def _injected(
        self, fid: int, kind: str, label: str, service: str | None, actor: Actor | None
    ) -> int:
        seq = self.node.journal.last_seq
        self.node.metrics.faults_injected.labels(kind).inc()
        self.node.journal.emit(
            "fault",
            "injected",
            peer=label,
            service=service,
            kind=kind,
            fault_id=fid,
            **dict(actor or {}),
        )
        return seq

    async def _conn_closed(self, conn: Connection, since: int, timeout: float) -> JournalEvent:
        conn_id = conn.peer.conn_id
        return await self.node.journal.wait_for(
            lambda e: (
                e.table == "conn"
                and e.event.startswith("closed")
                and e.fields.get("conn") == conn_id
            ),
            since=since,
            timeout=timeout,
        )

    async def disconnect(
        self, label: str, *, timeout: float = 5.0, actor: Actor | None = None
    ) -> FaultOutcome:
        """Close the connection to ``label``; every routine on it exits and tears down."""
        self._check()
        conn = self._connection(label)
        fid = next(self._ids)
        since = self._injected(fid, "disconnect", label, None, actor)
        conn.scope.cancel(f"fault:{fid}:disconnect")
        closed = await self._conn_closed(conn, since, timeout)
        reason = str(closed.fields.get("reason"))
        self.node.journal.emit(
            "fault",
            "observed",
            peer=label,
            kind="disconnect",
            fault_id=fid,
            effect="connection_closed",
            reason=reason,
        )
        return FaultOutcome(fid, "disconnect", label, None, "connection_closed", reason)

    async def panic(
        self, label: str, service: str, *, timeout: float = 5.0, actor: Actor | None = None
    ) -> FaultOutcome:
        """Raise an exception inside ``service``'s routine of ``label`` at its next await."""
        self._check()
        conn = self._connection(label)
        handle = self._running_routine(conn, label, service)
        fid = next(self._ids)
        since = self._injected(fid, "panic", label, service, actor)
        handle.ctx.inject(InjectedPanic(fid))
        journal = self.node.journal
        await journal.wait_for(
            lambda e: (
                e.table == "routine"
                and e.event == "panicked"
                and e.peer == label
                and e.service == service
            ),
            since=since,
            timeout=timeout,
        )
        closed = await self._conn_closed(conn, since, timeout)
        reason = str(closed.fields.get("reason"))
        journal.emit(
            "fault",
            "observed",
            peer=label,
            service=service,
            kind="panic",
            fault_id=fid,
            effect="routine_panicked,connection_closed",
            reason=reason,
        )
        return FaultOutcome(
            fid, "panic", label, service, "routine_panicked,connection_closed", reason
        )

    async def park(
        self,
        label: str,
        service: str = "header_sync",
        *,
        timeout: float = 5.0,
        actor: Actor | None = None,
    ) -> FaultOutcome:
        """Park ``label``'s header-sync as an undeliverable command would (reference §3.12).

        Its outstanding work goes back to the queue, only its header-sync service scope is
        cancelled; the connection and its other services stay up.
        """
        self._check()
        if service != "header_sync":
            raise FaultInvalid(
                "service", f"only the header_sync service can be parked, not {service!r}"
            )
        conn = self._connection(label)
        self._running_routine(conn, label, service)
        fid = next(self._ids)
        since = self._injected(fid, "park", label, service, actor)
        returned = self.node.header_sync.park(label, f"fault:{fid}")
        journal = self.node.journal
        await journal.wait_for(
            lambda e: (
                e.table == "routine"
                and e.event == "exited"
                and e.peer == label
                and e.service == service
            ),
            since=since,
            timeout=timeout,
        )
        reason = f"work_returned={returned}"
        journal.emit(
            "fault",
            "observed",
            peer=label,
            service=service,
            kind="park",
            fault_id=fid,
            effect="service_parked",
            reason=reason,
            connection_open=not conn.closed,
        )
        return FaultOutcome(fid, "park", label, service, "service_parked", reason)

    async def unpark(
        self,
        label: str,
        service: str = "header_sync",
        *,
        timeout: float = 5.0,
        actor: Actor | None = None,
    ) -> FaultOutcome:
        """Resume ``label``'s parked header sync: a new session on a new stream.

        The reactor keeps a peer parked until a new session of it connects (§3.13
        PeerConnected clears the parked record), so resuming *is* starting one, on the
        connection that stayed up. Not a new routine on the old stream: nobody read that
        stream while the peer was parked, so it holds (and the wire still carries) frames of
        the parked session, answers to requests that session made among them, and the peer's
        routine still holds that session's state and will not send its Status again. So the
        old stream is reset, which ends the peer's session too (its routine exits normally,
        ``stream_reset:peer:fault:<id>:unpark``), and a new one is opened: both sides start
        a session, send their Status and schedule as after a reconnect. The ranges returned
        when the peer was parked stay in the queue; nothing is returned again, and the new
        session starts with nothing in flight under a new generation. The parked routine's
        record becomes ``exited``: that session is over.
        """
        self._check()
        if service != "header_sync":
            raise FaultInvalid(
                "service", f"only the header_sync service can be unparked, not {service!r}"
            )
        conn = self._connection(label)
        handle = conn.routine(service)
        if label not in self.node.header_sync.parked or handle is None:
            state = "absent" if handle is None else handle.state.value
            raise NotParked(f"peer {label}: {service} is not parked (it is {state})")
        fid = next(self._ids)
        self._injected(fid, "unpark", label, service, actor)
        task = handle.task
        if task is not None and not task.done():
            # Parked an instant ago: its routine is still unwinding. Its teardown must come
            # before the new session, or the peer would briefly have two header-sync routines.
            await asyncio.wait({task}, timeout=timeout)
            if not task.done():
                raise TimeoutError(f"the parked {service} routine of {label} did not exit")
        if conn.closed:
            raise UnknownPeer(f"no connected peer {label[:64]!r}")
        svc = self.node.header_sync_service
        for old in [s for s in conn.streams.values() if s.kind == svc.kind]:
            old.reset(CloseCode.NEUTRAL, f"fault:{fid}:unpark")
        svc.add_peer(conn, conn.open_stream(svc.kind, svc.version, svc.frame_cap))
        resumed = conn.routine(service)
        if resumed is None or resumed is handle or label in self.node.header_sync.parked:
            raise RoutineNotRunning(f"the {service} routine of {label} did not resume")
        # The parked session is over now: its record says so, or the snapshot (the routines
        # matrix, the peer detail) would go on showing a parked routine on this peer.
        handle.state = RoutineState.EXITED
        reason = f"generation={resumed.ctx.generation}"
        self.node.journal.emit(
            "fault",
            "observed",
            peer=label,
            service=service,
            kind="unpark",
            fault_id=fid,
            effect="service_resumed",
            reason=reason,
        )
        return FaultOutcome(fid, "unpark", label, service, "service_resumed", reason)

    async def stall(
        self,
        label: str,
        service: str = "header_sync",
        *,
        seconds: float = 30.0,
        actor: Actor | None = None,
    ) -> FaultOutcome:
        """Stall ``label``'s ``service`` routine for ``seconds``.

        header_sync: the routine stops taking commands (frames are still read), so our answers
        pile up in its command queue and a never-drop command that no longer fits parks it.
        block_sync: the routine stops reading and requesting, like local congestion; the
        peer's answers wait in its send window and nothing is blamed on the peer.
        """
        self._check()
        if service not in ("header_sync", "block_sync"):
            raise FaultInvalid(
                "service",
                f"only header_sync and block_sync routines can be stalled, not {service!r}",
            )
        if not 0 < seconds <= 600:
            raise FaultInvalid("seconds", f"stall seconds must be in (0, 600], got {seconds}")
        conn = self._connection(label)
        handle = self._running_routine(conn, label, service)
        key = (conn.peer.conn_id, handle.ctx.generation)
        sessions: StallableRoutines = (
            self.node.header_sync_service
            if service == "header_sync"
            else self.node.block_sync_service
        )
        routine = sessions.routine_for(*key)
        if routine is None:
            raise RoutineNotRunning(f"the {service} routine of {label} is not known to the service")
        fid = next(self._ids)
        self._injected(fid, "stall", label, service, actor)
        routine.stall(seconds)
        reason = f"for={seconds:g}s"
        self.node.journal.emit(
            "fault",
            "observed",
            peer=label,
            service=service,
            kind="stall",
            fault_id=fid,
            effect="reads_stalled",
            reason=reason,
        )
        return FaultOutcome(fid, "stall", label, service, "reads_stalled", reason)

    async def throttle(
        self, label: str, bytes_per_s: float | None, *, actor: Actor | None = None
    ) -> FaultOutcome:
        """Read from ``label`` no faster than ``bytes_per_s`` (None or 0: lift the throttle).

        Every service on that connection slows down, the way a slow link would; the peer's
        block-sync window should shrink and the sync carry on through other peers.
        """
        self._check()
        if bytes_per_s is not None and bytes_per_s < 0:
            raise FaultInvalid("rate", f"throttle rate must be >= 0 bytes/s, got {bytes_per_s}")
        conn = self._connection(label)
        rate = bytes_per_s or None
        fid = next(self._ids)
        self._injected(fid, "throttle", label, None, actor)
        conn.throttle_bytes_per_s = rate
        reason = "off" if rate is None else f"rate={rate:g}B/s"
        effect = "throttle_lifted" if rate is None else "reads_throttled"
        self.node.journal.emit(
            "fault",
            "observed",
            peer=label,
            kind="throttle",
            fault_id=fid,
            effect=effect,
            reason=reason,
        )
        return FaultOutcome(fid, "throttle", label, None, effect, reason)

    # ------------------------------------------------------------------ link faults
    def _link_nodes(self, nodes: Sequence[bytes]) -> tuple[bytes, ...]:
        """``nodes`` without repeats, checked: node ids, and never our own."""
        own = self.node.node_id
        unique = tuple(dict.fromkeys(nodes))
        for node_id in unique:
            if len(node_id) != 32:
                raise FaultInvalid("nodes", f"a node id is 32 bytes, got {len(node_id)}")
            if node_id == own:
                raise FaultInvalid("nodes", f"{node_id.hex()} is this node's own id")
        return unique

    def _link_injected(
        self, kind: str, nodes: Sequence[bytes], actor: Actor | None, **params: FieldValue
    ) -> tuple[int, int]:
        """A fault id and the journal position before its ``fault/injected`` row."""
        fid = next(self._ids)
        seq = self.node.journal.last_seq
        self.node.metrics.faults_injected.labels(kind).inc()
        # Any: the journal's keywords include ``peer`` and ``service``, which these never are.
        fields: dict[str, Any] = {
            "kind": kind,
            "fault_id": fid,
            "nodes": _labels(nodes),
            **params,
            **dict(actor or {}),
        }
        self.node.journal.emit("fault", "injected", **fields)
        return fid, seq

    def _link_observed(self, outcome: LinkOutcome, **extra: FieldValue) -> LinkOutcome:
        fields: dict[str, Any] = {
            "kind": outcome.kind,
            "fault_id": outcome.fault_id,
            "nodes": _labels(outcome.nodes),
            "effect": outcome.effect,
            "reason": outcome.reason,
            **extra,
        }
        self.node.journal.emit("fault", "observed", **fields)
        return outcome

    def link_rows(self) -> list[LinkRow]:
        """Every active link rule (``GET /api/v1/links``); a read, so never refused."""
        return self.node.transport.links.rows()

    async def partition(
        self, nodes: Sequence[bytes], *, timeout: float = 5.0, actor: Actor | None = None
    ) -> LinkOutcome:
        """Cut this node off from ``nodes``: close our connections to them and refuse every
        new one, dialed or accepted, until healed.

        This side alone makes the partition whole: the other node sees its connection closed
        and each redial refused at the handshake, neutrally (nobody misbehaved).
        """
        self._check()
        ids = self._link_nodes(nodes)
        fid, since = self._link_injected("partition", ids, actor)
        transport = self.node.transport
        transport.links.partition(ids)  # first: a redial racing the close is refused too
        closed = transport.close_partitioned(f"fault:{fid}:partition")
        for conn in closed:
            await self._conn_closed(conn, since, timeout)
        outcome = LinkOutcome(
            fid, "partition", ids, "link_partitioned", f"closed={len(closed)}", len(closed)
        )
        return self._link_observed(outcome, closed=len(closed))

    async def delay(
        self,
        nodes: Sequence[bytes],
        ms: int,
        jitter_ms: int = 0,
        *,
        actor: Actor | None = None,
    ) -> LinkOutcome:
        """Hold every record sent to ``nodes`` ``ms`` ± ``jitter_ms`` (0 and 0: no delay).

        Records to one node keep their order; the connection's reader and other peers never
        wait for them (``Connection._emit``).
        """
        self._check()
        if not 0 <= ms <= MAX_DELAY_MS:
            raise FaultInvalid("ms", f"ms must be from 0 to {MAX_DELAY_MS} (got {ms})")
        if not 0 <= jitter_ms <= MAX_JITTER_MS:
            raise FaultInvalid(
                "jitter_ms", f"jitter_ms must be from 0 to {MAX_JITTER_MS} (got {jitter_ms})"
            )
        ids = self._link_nodes(nodes)
        fid, _since = self._link_injected("delay", ids, actor, ms=ms, jitter_ms=jitter_ms)
        self.node.transport.links.delay(ids, ms, jitter_ms)
        reason = f"delay={ms}ms,jitter={jitter_ms}ms"
        outcome = LinkOutcome(fid, "delay", ids, "link_delayed", reason)
        return self._link_observed(outcome)

    async def bandwidth(
        self, nodes: Sequence[bytes], kib_per_s: int, *, actor: Actor | None = None
    ) -> LinkOutcome:
        """Pace the bytes sent to ``nodes`` at ``kib_per_s`` KiB/s (what a slow uplink does;
        the read throttle is the other direction)."""
        self._check()
        if not MIN_KIB_PER_S <= kib_per_s <= MAX_KIB_PER_S:
            raise FaultInvalid(
                "kib_per_s",
                f"kib_per_s must be from {MIN_KIB_PER_S} to {MAX_KIB_PER_S} (got {kib_per_s})",
            )
        ids = self._link_nodes(nodes)
        fid, _since = self._link_injected("bandwidth", ids, actor, kib_per_s=kib_per_s)
        self.node.transport.links.bandwidth(ids, kib_per_s)
        outcome = LinkOutcome(fid, "bandwidth", ids, "link_paced", f"rate={kib_per_s}KiB/s")
        return self._link_observed(outcome)

    async def heal(
        self, nodes: Sequence[bytes] | None = None, *, actor: Actor | None = None
    ) -> LinkOutcome:
        """Clear the link rules of ``nodes`` (None: all): refusals stop, records still held
        leave at once and in order, and this node's dialer redials the nodes whose partition
        was lifted at once, their backoff forgotten (``Dialer.links_healed``); the other side
        redials on its own backoff unless it heals too."""
        self._check()
        ids = () if nodes is None else self._link_nodes(nodes)
        fid, _since = self._link_injected("heal", ids, actor, all=nodes is None)
        transport = self.node.transport
        healed = tuple(transport.links.heal(None if nodes is None else ids))
        released = transport.release_held(healed)
        outcome = LinkOutcome(
            fid, "heal", ids, "links_healed", f"healed={len(healed)}", healed=healed
        )
        return self._link_observed(outcome, healed=_labels(healed), released_bytes=released)
