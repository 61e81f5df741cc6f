"""Header-sync (stream kind 5) as a transport service: one supervised routine per peer.

``add_peer`` mints the session's generation, builds its command sink, has the connection's
supervised launcher (``Connection.launch_routine``) build the routine for its context and
start it (its teardown run on every exit), and registers the session with the reactor (which
sends our Status at once). The reactor is told about a session before its routine runs, so
no event of the session can reach the reactor before the session itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from node_core.header_sync.commands import HeaderSyncCommandSink
from node_core.header_sync.entries import SERVICE, PeerEntry
from node_core.header_sync.reactor import HeaderSyncReactor
from node_core.header_sync.routine import HeaderSyncRoutine
from node_core.protocol.header_sync import (
    HEADER_SYNC_STREAM_KIND,
    HEADER_SYNC_STREAM_VERSION,
    HS_FRAME_CAP,
    Status,
)
from node_core.protocol.limits import FRAME_HEADER_BYTES, Capability
from node_core.transport.routine import RoutineContext
from node_core.transport.supervise import next_generation

if TYPE_CHECKING:
    from node_core.header_sync.observe import HeaderSyncMetrics
    from node_core.observe.diagnostic_facts import HeaderSyncFacts
    from node_core.observe.schema import HeaderSyncRoutineView
    from node_core.transport.connection import Connection
    from node_core.transport.stream import Stream


class HeaderSyncService:
    """The transport-facing half of header-sync; the reactor is the shared half."""

    name = SERVICE
    kind = HEADER_SYNC_STREAM_KIND
    version = HEADER_SYNC_STREAM_VERSION
    capability = int(Capability.HEADER_SYNC)
    frame_cap = HS_FRAME_CAP
    message_rate: float | None = None

    def __init__(self, reactor: HeaderSyncReactor, metrics: HeaderSyncMetrics) -> None:
        self.reactor = reactor
        self.metrics = metrics
        #: Live and finished routines by (conn_id, generation), for snapshots and faults.
        self.routines: dict[tuple[int, int], HeaderSyncRoutine] = {}

    def add_peer(self, conn: Connection, stream: Stream) -> None:
        generation = next_generation(SERVICE)
        sink: HeaderSyncCommandSink[Status] = HeaderSyncCommandSink()
        # Everything either side sends must fit the negotiated message size, which can be
        # far below the stream's frame cap (16 KiB at the minimum).
        max_message = conn.negotiated.limits.max_message_bytes
        frame_cap = min(stream.frame_cap, max_message + FRAME_HEADER_BYTES)

        def build(ctx: RoutineContext) -> HeaderSyncRoutine:
            return HeaderSyncRoutine(
                ctx, stream, sink, self.reactor, self.metrics, frame_cap=frame_cap
            )

        handle, routine = conn.launch_routine(SERVICE, stream, build, generation=generation)
        self.routines[(conn.peer.conn_id, generation)] = routine
        self.reactor.peer_connected(
            PeerEntry(conn.peer.label, generation, sink, max_message, routine.state, handle)
        )

    def remove_peer(self, conn: Connection) -> None:
        """The connection closed: forget its routines and any parked record."""
        for key in [k for k in self.routines if k[0] == conn.peer.conn_id]:
            del self.routines[key]
        self.reactor.peer_removed(conn.peer.label)

    def routine_for(self, conn_id: int, generation: int) -> HeaderSyncRoutine | None:
        return self.routines.get((conn_id, generation))

    def routine_facts(self, conn_id: int, generation: int) -> HeaderSyncFacts | None:
        """What diagnostics read of a session (:meth:`routine_view`'s fields they use); None
        when it can raise no diagnostic or is gone."""
        routine = self.routines.get((conn_id, generation))
        if routine is None:
            return None
        return routine.diagnostic_facts(self.reactor.chain.header_tip[0])

    def routine_view(self, conn_id: int, generation: int) -> HeaderSyncRoutineView | None:
        """The per-routine snapshot fields (routine side plus reactor side)."""
        routine = self.routines.get((conn_id, generation))
        return None if routine is None else routine.view()
