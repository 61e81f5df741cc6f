"""Discovery (stream kind 4): one supervised routine per peer (reference §2.2).

The routine's life:
1. admission: a peer whose id is not a 32-byte node id never gets a routine;
2. startup sends, non-blocking, in order: Hello (our signed record), GetPeers, GetServices.
   ``full`` counts as sent; ``closed`` ends the exchange as "not exchanged";
3. an inbound loop bounded by a 2 s settle deadline that ends as soon as the three progress
   flags (hello, peers, services) are set, or on cancel, settle timeout or stream close;
4. after the loop: the discovery-only disconnect if configured (the reference's behaviour);
   otherwise the routine stays up *serving*: it answers the peer's re-queries and sends its own
   GetPeers every ``refresh_interval`` so the dialer learns of nodes that joined later
   (deviation, see docs/PROTOCOL.md: in this release discovery is the only service, so the
   connection would otherwise carry nothing);
5. cleanup (the peer leaves ``admitted``) on every exit path, exactly once.

Protocol rejects (the connection closes): a frame with the wrong type or flags, a payload that
does not decode, a Hello or Services authored by someone else, a record with a forged
signature, a Peers or Services response nobody asked for (so a second Peers for one GetPeers).
Advisory record problems (no usable address, expired) are ignored. Every protocol reject is
also a misbehavior record with action ``disconnected``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from node_core.discovery.book import AddressBook, Source
from node_core.discovery.pacing import DEFAULT_BUDGET_SECS, MessagePacer
from node_core.discovery.records import RecordError, peers_payload, verify_record
from node_core.observe.journal import Journal
from node_core.observe.misbehavior import MisbehaviorLog
from node_core.protocol import discovery as wire
from node_core.protocol.errors import CodecError
from node_core.protocol.frames import Frame
from node_core.protocol.limits import FRAME_HEADER_BYTES, Capability, StreamKind
from node_core.transport.connection import Connection
from node_core.transport.routine import RemoteProtocolError, RoutineContext
from node_core.transport.stream import SendResult, Stream, StreamReset

if TYPE_CHECKING:
    from node_core.observe.schema import DiscoveryExchange

SERVICE = "discovery"
SERVICE_ID = "zakura.discovery.v1"
SETTLE_TIMEOUT_SECS = 2.0
SUMMARY_TTL_SECS = 30
REFRESH_INTERVAL_SECS = 10.0


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    settle_timeout: float = SETTLE_TIMEOUT_SECS
    sample_limit: int = wire.MAX_PEERS_RECORDS
    #: The reference closes a connection after the exchange when no other service owns the
    #: peer. With discovery the only service in this release that would close every
    #: connection, so the default keeps them; tests switch it on.
    disconnect_after_exchange: bool = False
    #: How often a serving routine asks its peer for fresh records.
    refresh_interval: float = REFRESH_INTERVAL_SECS
    #: Seconds of message handling one loop iteration spends before further routines wait
    #: their turn (node_core/discovery/pacing.py); 0 handles every message at once.
    pacing_budget: float = DEFAULT_BUDGET_SECS


@dataclass(slots=True)
class ExchangeState:
    """Per-peer progress of one exchange (what the console shows for a discovery routine)."""

    label: str
    started_mono: float
    deadline_mono: float
    sent_hello: bool = False
    sent_get_peers: bool = False
    sent_get_services: bool = False
    received_hello: bool = False
    received_peers: bool = False
    received_services: bool = False
    records_imported: int = 0
    peers_outstanding: int = 0
    services_outstanding: int = 0
    refreshes: int = 0
    phase: str = "exchange"
    outcome: str = "running"
    summaries: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.received_hello and self.received_peers and self.received_services


class DiscoveryService:
    """The discovery service: launches routines, answers from the address book."""

    name = SERVICE
    kind = int(StreamKind.DISCOVERY)
    version = 1
    capability = int(Capability.DISCOVERY)
    frame_cap = wire.MAX_DISCOVERY_MESSAGE_BYTES + FRAME_HEADER_BYTES
    message_rate: float | None = None

    def __init__(
        self,
        *,
        node_id: bytes,
        network_id: int,
        chain_id: bytes,
        book: AddressBook,
        journal: Journal,
        misbehavior: MisbehaviorLog,
        self_record: Callable[[], wire.SignedNodeRecord],
        summaries: Callable[[], list[wire.ServiceSummary]],
        other_service_owns: Callable[[bytes], bool] = lambda _node_id: False,
        config: DiscoveryConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node_id = node_id
        self.network_id = network_id
        self.chain_id = chain_id
        self.book = book
        self.journal = journal
        self.misbehavior = misbehavior
        self.self_record = self_record
        self.summaries = summaries
        self.other_service_owns = other_service_owns
        self.config = config or DiscoveryConfig()
        self.rng = rng or random.Random()
        self.admitted: dict[bytes, int] = {}  # node id -> generation of its live routine
        self.exchanges: dict[int, ExchangeState] = {}  # by conn_id
        self.pacer = MessagePacer(self.config.pacing_budget)

    # ------------------------------------------------------------------ Service protocol
    def add_peer(self, conn: Connection, stream: Stream) -> None:
        if len(conn.peer.node_id) != 32:
            stream.reset(0, "not_a_node_id")
            return

        async def routine(ctx: RoutineContext) -> None:
            await self._run(ctx, conn, stream)

        # Cleanup lives in the routine's own ``finally`` (its destructor), which runs on every
        # exit path; a routine cancelled before its first step never admitted anything.
        conn.launch(SERVICE, stream, routine)

    def remove_peer(self, conn: Connection) -> None:
        """Transport disconnect fan-out: un-admit whatever routine this connection ran."""
        for handle in conn.routines:
            if handle.service == SERVICE:
                self._cleanup(conn.peer.node_id, handle.ctx.generation)

    def routine_view(self, conn_id: int, generation: int) -> DiscoveryExchange | None:
        """The snapshot fields of the exchange on connection ``conn_id`` (one per connection:
        the newest session's, whatever ``generation`` asks, as the console has always shown)."""
        ex = self.exchanges.get(conn_id)
        if ex is None:
            return None
        return {
            "phase": ex.phase,
            "outcome": ex.outcome,
            "received_hello": ex.received_hello,
            "received_peers": ex.received_peers,
            "received_services": ex.received_services,
            "records_imported": ex.records_imported,
            "refreshes": ex.refreshes,
        }

    def _cleanup(self, node_id: bytes, generation: int) -> None:
        """Idempotent and generation-scoped: a finished routine never un-admits the routine
        that replaced it on the same peer. Exchange state is kept for the console."""
        if self.admitted.get(node_id) == generation:
            del self.admitted[node_id]

    # ------------------------------------------------------------------ the routine
    async def _run(self, ctx: RoutineContext, conn: Connection, stream: Stream) -> None:
        now = time.monotonic()
        state = ExchangeState(ctx.peer.label, now, now + self.config.settle_timeout)
        self.exchanges[ctx.peer.conn_id] = state
        self.admitted[ctx.peer.node_id] = ctx.generation
        try:
            exchanged = self._startup_sends(stream, state, conn)
            if exchanged:
                await self._settle(ctx, stream, state)
                state.outcome = "complete" if state.complete else state.outcome
                if not self.config.disconnect_after_exchange and state.outcome != "stream_closed":
                    await self._serve(ctx, stream, state)
        except StreamReset:
            # The peer reset its discovery stream: the exchange is over, nothing more.
            state.outcome = "stream_reset"
            return
        except BaseException as exc:
            state.outcome = (
                exc.reason if isinstance(exc, RemoteProtocolError) else type(exc).__name__
            )
            raise
        finally:
            if state.outcome == "running":
                state.outcome = "ended"
            if state.outcome == "stream_closed":
                stream.finish()  # answer the peer's FIN so the stream (and its kind) is freed
            self._cleanup(ctx.peer.node_id, ctx.generation)
        if (
            exchanged
            and self.config.disconnect_after_exchange
            and not self.other_service_owns(ctx.peer.node_id)
        ):
            self.book.mark_short_lived(ctx.peer.node_id, time.monotonic())
            ctx.connection.cancel("discovery_only")

    def _send(self, stream: Stream, msg: wire.DiscoveryMessage) -> SendResult:
        return stream.try_send(wire.DISCOVERY_MESSAGE_TYPE, wire.encode_discovery(msg))

    def _get_peers(self, peer_id: bytes) -> wire.GetPeers:
        """Ask for a sample; neither we nor the peer we ask are worth receiving back."""
        exclude = tuple(sorted({self.node_id, peer_id}))
        return wire.GetPeers(min(self.config.sample_limit, wire.MAX_PEERS_RECORDS), (), exclude)

    def _startup_sends(self, stream: Stream, state: ExchangeState, conn: Connection) -> bool:
        sends: list[tuple[str, wire.DiscoveryMessage]] = [
            ("sent_hello", wire.Hello(self.self_record())),
            ("sent_get_peers", self._get_peers(conn.peer.node_id)),
            ("sent_get_services", wire.GetServices(())),
        ]
        for flag, msg in sends:
            if self._send(stream, msg) is SendResult.CLOSED:
                state.outcome = "stream_closed"
                return False
            setattr(state, flag, True)
        state.peers_outstanding = 1
        state.services_outstanding = 1
        return True

    async def _serve(self, ctx: RoutineContext, stream: Stream, state: ExchangeState) -> None:
        """After the exchange: answer re-queries, refresh our view every interval."""
        state.phase = "serving"
        next_refresh = time.monotonic() + self.config.refresh_interval
        while True:
            frame = await stream.recv(timeout=max(0.0, next_refresh - time.monotonic()))
            if frame is not None:
                await self._paced(ctx, stream, state, frame)
                continue
            if stream.remote_finished:
                state.outcome = "stream_closed"
                return
            refresh = self._get_peers(ctx.peer.node_id)
            if state.peers_outstanding == 0 and self._send(stream, refresh) is SendResult.OK:
                state.peers_outstanding += 1
                state.refreshes += 1
            next_refresh = time.monotonic() + self.config.refresh_interval

    def _decode(self, ctx: RoutineContext, frame: Frame) -> wire.DiscoveryMessage:
        try:
            return wire.decode_discovery_frame(frame.message_type, frame.flags, frame.payload)
        except CodecError as exc:
            self._reject(ctx, "malformed_message", str(exc))

    async def _settle(self, ctx: RoutineContext, stream: Stream, state: ExchangeState) -> None:
        while not state.complete:
            remaining = state.deadline_mono - time.monotonic()
            if remaining <= 0:
                state.outcome = "settle_timeout"
                return
            frame = await stream.recv(timeout=remaining)
            if frame is None:
                state.outcome = "stream_closed" if stream.remote_finished else "settle_timeout"
                return
            await self._paced(ctx, stream, state, frame)

    async def _paced(
        self, ctx: RoutineContext, stream: Stream, state: ExchangeState, frame: Frame
    ) -> None:
        """Handle one frame in this routine's turn, so a burst of peers' messages is spread
        over several loop iterations instead of holding one (node_core/discovery/pacing.py)."""
        await self.pacer.turn()
        started = time.perf_counter()
        try:
            self._handle(ctx, stream, state, self._decode(ctx, frame))
        finally:
            self.pacer.spent(time.perf_counter() - started)

    def _reject(self, ctx: RoutineContext, reason: str, detail: str) -> NoReturn:
        self.misbehavior.record(
            ctx.peer.label, SERVICE, reason, action="disconnected", detail=detail
        )
        raise RemoteProtocolError(reason, detail)

    def _import(self, ctx: RoutineContext, signed: wire.SignedNodeRecord, source: Source) -> bool:
        try:
            record = verify_record(
                signed, network_id=self.network_id, chain_id=self.chain_id, now_unix=time.time()
            )
        except RecordError as exc:
            if exc.advisory:
                return False
            self._reject(ctx, f"record_{exc.reason}", exc.detail)
        if record.node_id == self.node_id:
            return False
        return self.book.add(signed, record, source=source, now=time.monotonic())

    def _handle(
        self, ctx: RoutineContext, stream: Stream, state: ExchangeState, msg: wire.DiscoveryMessage
    ) -> None:
        if isinstance(msg, wire.Hello):
            if msg.record.record.node_id != ctx.peer.node_id:
                self._reject(ctx, "hello_node_id_mismatch", "hello authored by a different node")
            state.records_imported += int(self._import(ctx, msg.record, "hello"))
            state.received_hello = True
        elif isinstance(msg, wire.GetPeers):
            exclude = set(msg.exclude_node_ids) | {ctx.peer.node_id}
            entries = self.book.sample_entries(
                msg.limit,
                wanted_services=msg.wanted_services,
                exclude=exclude,
                rng=self.rng,
                now_unix=time.time(),
            )
            # Each record's encoding was cached when the book stored it: join, not encode.
            payload = peers_payload([e.wire for e in entries])
            stream.try_send(wire.DISCOVERY_MESSAGE_TYPE, payload)
        elif isinstance(msg, wire.Peers):
            if state.peers_outstanding == 0:
                self._reject(ctx, "unsolicited_peers", "a Peers response nobody asked for")
            state.peers_outstanding -= 1
            for signed in msg.records:
                state.records_imported += int(self._import(ctx, signed, "gossip"))
            state.received_peers = True
        elif isinstance(msg, wire.GetServices):
            wanted = set(msg.wanted_services)
            summaries = [s for s in self.summaries() if not wanted or s.service in wanted]
            self._send(
                stream,
                wire.Services(
                    self.node_id,
                    int(time.time()) + SUMMARY_TTL_SECS,
                    tuple(summaries[: wire.MAX_SUMMARIES]),
                ),
            )
        elif isinstance(msg, wire.Services):
            if msg.node_id != ctx.peer.node_id:
                self._reject(ctx, "services_node_id_mismatch", "services for a different node")
            if state.services_outstanding == 0:
                self._reject(ctx, "unsolicited_services", "a Services response nobody asked for")
            state.services_outstanding -= 1
            state.summaries = [s.service for s in msg.summaries]
            state.received_services = True
