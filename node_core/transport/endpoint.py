"""The transport endpoint: listener, dialer, admission, registration and teardown.

Connection life (reference §1.8): admission (max connections, max pending handshakes) ->
handshake bounded in time -> per-IP cap -> registration with duplicate resolution -> the
initiator opens one ordered stream per negotiated service -> ... -> close (first reason wins) ->
drain the routines for at most ``drain_timeout`` -> service ``remove_peer`` -> deregister.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from node_core.identity import Identity, peer_label
from node_core.observe.journal import Journal
from node_core.observe.metrics import NodeMetrics
from node_core.protocol import handshake as hs
from node_core.protocol.limits import NETWORK_LABELS, CloseCode, NetworkId
from node_core.transport.config import TransportConfig
from node_core.transport.connection import CloseRecord, Connection
from node_core.transport.handshake_io import HandshakeResult, initiate, respond, send_close
from node_core.transport.links import LinkTable
from node_core.transport.peers import PeerTable, Registration
from node_core.transport.routine import PeerInfo
from node_core.transport.service import ServiceRegistry

log = logging.getLogger(__name__)

READ_BUFFER_LIMIT = 1024 * 1024


class DialError(Exception):
    """A dial that did not produce a registered connection; ``reason`` is a stable label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ClosedPeer:
    """A peer that just left, kept so the console can show why for a few seconds."""

    peer: PeerInfo
    close: CloseRecord
    connected_wall: float
    bytes_in: int
    bytes_out: int


ConnectionListener = Callable[[Connection], None]


class Transport:
    """Owns every connection of one node."""

    def __init__(
        self,
        identity: Identity,
        config: TransportConfig,
        registry: ServiceRegistry,
        journal: Journal,
        metrics: NodeMetrics,
    ) -> None:
        self.identity = identity
        self.config = config
        self.registry = registry
        self.journal = journal
        self.metrics = metrics
        self.peers = PeerTable()
        self.recently_closed: deque[ClosedPeer] = deque(maxlen=64)
        self.pending_handshakes = 0
        self.listen_host: str | None = None
        self.listen_port = 0
        self.on_registered: list[ConnectionListener] = []
        self.on_deregistered: list[ConnectionListener] = []
        self._server: asyncio.Server | None = None
        self._conn_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        seed = config.link_seed
        if seed is None:
            seed = int.from_bytes(identity.node_id[:8], "big")
        #: Link faults (partition, delay, bandwidth) by remote node id; see ``links.py``.
        self.links = LinkTable(seed)
        try:
            self.network_label = NETWORK_LABELS[NetworkId(config.network_id)]
        except ValueError:
            self.network_label = str(config.network_id)

    # ------------------------------------------------------------------ public API
    def local_params(self) -> hs.LocalParams:
        return hs.LocalParams(
            network_id=self.config.network_id,
            chain_id=self.config.chain_id,
            node_id=self.identity.node_id,
            capabilities=self.registry.supported_capabilities,
            limits=self.config.limits,
            listen_port=self.listen_port,
        )

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(
            self._on_inbound, host, port, limit=READ_BUFFER_LIMIT, reuse_address=True
        )
        sock = self._server.sockets[0].getsockname()
        self.listen_host, self.listen_port = sock[0], int(sock[1])
        return self.listen_host, self.listen_port

    async def dial(self, host: str, port: int, expected_node_id: bytes | None = None) -> Connection:
        """Connect, handshake and register; raises :class:`DialError` on any failure."""
        if self._closing:
            raise DialError("shutting_down")
        if expected_node_id is not None and self.links.partitioned(expected_node_id):
            self._refuse_partitioned("outbound", expected_node_id, f"{host}:{port}")
            raise DialError("partitioned", peer_label(expected_node_id))
        try:
            async with asyncio.timeout(self.config.dial_timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=READ_BUFFER_LIMIT)
        except (OSError, TimeoutError) as exc:
            raise DialError("connect_failed", f"{host}:{port}: {exc}") from exc
        return await self._establish(reader, writer, "outbound", f"{host}:{port}", expected_node_id)

    def disconnect(self, node_id: bytes, reason: str = "disconnect_requested") -> bool:
        conn = self.peers.get(node_id)
        if conn is None or conn.closed:
            return False
        conn.scope.cancel(reason)
        return True

    def close_partitioned(self, reason: str) -> list[Connection]:
        """Close every connection to a partitioned node (link fault); returns those closed.

        Neutral, like an operator's disconnect: the peer broke no rule.
        """
        closed = []
        for conn in self.peers.connections():
            if self.links.partitioned(conn.peer.node_id) and not conn.closed:
                conn.scope.cancel(reason)
                closed.append(conn)
        return closed

    def release_held(self, node_ids: Iterable[bytes]) -> int:
        """Write now what link faults still hold for ``node_ids`` (a heal); returns bytes."""
        released = 0
        for node_id in node_ids:
            conn = self.peers.get(node_id)
            if conn is not None:
                released += conn.release_held()
        return released

    def connection_for_label(self, label: str) -> Connection | None:
        for conn in self.peers.connections():
            if conn.peer.label == label:
                return conn
        return None

    async def close(self) -> None:
        """Stop listening, close every connection, wait for teardown."""
        self._closing = True
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for conn in self.peers.connections():
            conn.close(CloseCode.NEUTRAL, "shutdown")
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.config.drain_timeout + 1.0)

    # ------------------------------------------------------------------ internals
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        addr = f"{peername[0]}:{peername[1]}" if peername else "unknown"
        with contextlib.suppress(Exception):
            await self._establish(reader, writer, "inbound", addr, None)

    def _precheck(self, addr: str) -> Callable[[bytes], str | None]:
        """Partition, then per-IP cap, checked on the claimed id before we answer; a redial
        of a peer that is already registered is exempt from the cap (it replaces itself, it
        does not add a connection).

        A partitioned peer is refused on its claim alone: it has not proved the id yet, but
        refusing is what the partition asks anyway, and a peer claiming another id must still
        sign as that id before it gets anywhere.
        """
        ip = addr.rpartition(":")[0]

        def admit(claimed: bytes) -> str | None:
            if self.links.partitioned(claimed):
                self._refuse_partitioned("inbound", claimed, addr)
                return "partitioned"
            if self.peers.get(claimed) is not None:
                return None
            if self.peers.per_ip[ip] >= self.config.max_connections_per_ip:
                return "per_ip"
            return None

        return admit

    def _admit_outbound(self, addr: str) -> Callable[[bytes], str | None]:
        """The initiator's check once the Ack names the responder: a partitioned node we
        dialed by address (a bootstrap peer) is refused before we send the Confirm."""

        def admit(node_id: bytes) -> str | None:
            if self.links.partitioned(node_id):
                self._refuse_partitioned("outbound", node_id, addr)
                return "partitioned"
            return None

        return admit

    def _refuse_partitioned(self, direction: str, node_id: bytes, addr: str) -> None:
        """Count and journal a connection refused by a partition: neutral, never misbehavior
        (the peer did nothing wrong; this node was told to cut it off)."""
        self.metrics.conn_rejected_admission.labels("partitioned").inc()
        self.journal.emit(
            "conn",
            "rejected.partitioned",
            peer=peer_label(node_id),
            direction=direction,
            addr=addr,
        )

    def _count_refusal(self, direction: str, reason: str, addr: str | None = None) -> None:
        self.metrics.conn_rejected_admission.labels(reason).inc()
        self.journal.emit(
            "conn", "rejected.admission", reason=reason, direction=direction, addr=addr
        )

    def _refuse(self, writer: asyncio.StreamWriter, direction: str, reason: str) -> None:
        self._count_refusal(direction, reason)
        send_close(writer, reason, CloseCode.RESOURCE)
        writer.close()

    async def _establish(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
        addr: str,
        expected: bytes | None,
    ) -> Connection:
        inbound = direction == "inbound"
        if self._closing:
            writer.close()
            raise DialError("shutting_down")
        if inbound and len(self.peers) + self.pending_handshakes >= self.config.max_connections:
            self._refuse(writer, direction, "admission")
            raise DialError("admission")
        if self.pending_handshakes >= self.config.max_pending_handshakes:
            self._refuse(writer, direction, "pending_handshake")
            raise DialError("pending_handshake")
        role = "responder" if inbound else "initiator"
        self.journal.emit(
            "handshake",
            "control.started",
            role=role,
            phase="control",
            direction=direction,
            network=self.network_label,
            addr=addr,
        )
        self.pending_handshakes += 1
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                params = self.local_params()
                result: HandshakeResult = (
                    await respond(reader, writer, self.identity, params, self._precheck(addr))
                    if inbound
                    else await initiate(
                        reader, writer, self.identity, params, expected, self._admit_outbound(addr)
                    )
                )
        except (hs.HandshakeFailure, TimeoutError, OSError) as exc:
            if isinstance(exc, hs.HandshakeFailure):
                reason, punitive = exc.reason, exc.punitive
            elif isinstance(exc, TimeoutError):
                reason, punitive = "timeout", False
            else:
                reason, punitive = "connection_lost", False
            self.metrics.handshake_failed.labels(
                reason, "punitive" if punitive else "neutral"
            ).inc()
            self.journal.emit(
                "handshake",
                "control.failed",
                role=role,
                phase="control",
                reason=reason,
                direction=direction,
                network=self.network_label,
                addr=addr,
                punitive=punitive,
            )
            if not reason.startswith("peer_closed") and reason not in ("eof", "connection_lost"):
                failure = exc if isinstance(exc, hs.HandshakeFailure) else None
                code = failure.close_code if failure else 0
                send_close(writer, reason, code, mux=failure is not None and failure.after_ack)
            if reason == "per_ip":
                self._count_refusal(direction, reason, addr)
            writer.close()
            raise DialError(f"handshake_{reason}", str(exc)) from exc
        finally:
            self.pending_handshakes -= 1

        label = peer_label(result.peer_node_id)
        if self.links.partitioned(result.peer_node_id):
            # Partitioned while this handshake was past its check: refuse it now, neutrally.
            self._refuse_partitioned(direction, result.peer_node_id, addr)
            send_close(writer, "partitioned", CloseCode.NEUTRAL, mux=True)
            writer.close()
            raise DialError("partitioned", label)
        self.journal.emit(
            "handshake",
            "control.succeeded",
            peer=label,
            role=role,
            phase="control",
            selected_protocol=result.negotiated.protocol,
            direction=direction,
            network=self.network_label,
        )
        peer = PeerInfo(result.peer_node_id, label, addr, direction, next(self._conn_ids))
        conn = Connection(
            reader,
            writer,
            peer=peer,
            initiator=not inbound,
            negotiated=result.negotiated,
            transcript_hash=result.transcript_hash,
            listen_port=result.peer_listen_port,
            config=self.config,
            registry=self.registry,
            journal=self.journal,
            metrics=self.metrics,
            links=self.links,
        )
        outcome = self.peers.register(conn, self.config.duplicate_evict_min_age)
        if outcome.result is Registration.DUPLICATE:
            self.metrics.handshake_duplicate.inc()
            conn.close(CloseCode.NEUTRAL, "duplicate")
            self.journal.emit(
                "conn",
                "closed.neutral",
                peer=label,
                conn=peer.conn_id,
                reason="duplicate",
                code=0,
                direction=direction,
            )
            if outcome.evict_stale_incumbent and outcome.incumbent is not None:
                self.metrics.conn_duplicate_evicted_stale.inc()
                outcome.incumbent.scope.cancel("duplicate_stale_evicted")
            raise DialError("duplicate", label)
        if outcome.result is Registration.UPGRADED and outcome.incumbent is not None:
            self.metrics.handshake_upgraded.inc()
            outcome.incumbent.scope.cancel("duplicate_replaced")

        self.metrics.conn_accepted.labels(direction).inc()
        self.metrics.conn_active.set(len(self.peers))
        self.journal.emit(
            "conn",
            "accepted",
            peer=label,
            conn=peer.conn_id,
            direction=direction,
            addr=addr,
            network=self.network_label,
        )
        conn.on_closed.append(self._on_conn_closed)
        conn.start()
        if conn.initiator:
            for svc in self.registry.for_negotiated(result.negotiated.capabilities):
                if conn.closed:
                    break
                svc.add_peer(conn, conn.open_stream(svc.kind, svc.version, svc.frame_cap))
        for cb in self.on_registered:
            try:
                cb(conn)
            except Exception:
                log.exception("on_registered listener failed")
        return conn

    def _on_conn_closed(self, conn: Connection) -> None:
        rec = conn.close_record
        assert rec is not None
        event = "closed.punitive" if conn.close_is_punitive() else "closed.neutral"
        self.metrics.conn_closed.labels(str(rec.code), rec.reason.split(":")[0]).inc()
        self.journal.emit(
            "conn",
            event,
            peer=conn.label,
            conn=conn.peer.conn_id,
            reason=rec.reason,
            code=rec.code,
            by=rec.by,
            direction=conn.peer.direction,
        )
        self._spawn(self._finalize(conn))

    async def _finalize(self, conn: Connection) -> None:
        """Drain the routines briefly, fan out the disconnect, then deregister."""
        tasks = [h.task for h in conn.routines if h.task is not None]
        pending = [t for t in tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=self.config.drain_timeout)
            for task in pending:
                if not task.done():
                    task.cancel()
        for svc in self.registry.for_negotiated(conn.negotiated.capabilities):
            try:
                svc.remove_peer(conn)
            except Exception:
                log.exception("%s.remove_peer failed", svc.name)
        if self.peers.deregister(conn):
            assert conn.close_record is not None
            self.recently_closed.append(
                ClosedPeer(
                    conn.peer, conn.close_record, conn.connected_wall, conn.bytes_in, conn.bytes_out
                )
            )
            self.metrics.conn_active.set(len(self.peers))
            for cb in self.on_deregistered:
                try:
                    cb(conn)
                except Exception:
                    log.exception("on_deregistered listener failed")
