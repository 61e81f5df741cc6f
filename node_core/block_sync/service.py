"""Block sync (stream kind 6) as a transport service: one supervised routine per peer.

``add_peer`` has the connection's supervised launcher (``Connection.launch_routine``) build
the session's routine for its context and start it, its teardown run on every exit; the
serving helper rides the same connection as a supervised peer task, so a bug while serving
disconnects only that peer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from node_core.block_sync.core import SERVICE, BlockSyncCore
from node_core.block_sync.routine import BlockSyncRoutine
from node_core.protocol.block_sync import (
    BLOCK_SYNC_STREAM_KIND,
    BLOCK_SYNC_STREAM_VERSION,
    BS_FRAME_CAP,
)
from node_core.protocol.limits import Capability
from node_core.transport.routine import RoutineContext
from node_core.transport.supervise import next_generation, spawn_supervised_peer_task

if TYPE_CHECKING:
    from node_core.observe.diagnostic_facts import BlockSyncFacts
    from node_core.observe.schema import BlockSyncRoutineView
    from node_core.transport.connection import Connection
    from node_core.transport.stream import Stream


class BlockSyncService:
    """The transport-facing half of block-sync; :class:`BlockSyncCore` is the shared half."""

    name = SERVICE
    kind = BLOCK_SYNC_STREAM_KIND
    version = BLOCK_SYNC_STREAM_VERSION
    capability = int(Capability.BLOCK_SYNC)
    frame_cap = BS_FRAME_CAP
    #: Bulk: an honest server sends a Block frame per block; credit, not rate, bounds it.
    message_rate: float | None = 20_000.0

    def __init__(self, core: BlockSyncCore) -> None:
        self.core = core
        self._sessions: dict[int, list[int]] = {}

    def add_peer(self, conn: Connection, stream: Stream) -> None:
        generation = next_generation(SERVICE)
        key = (conn.peer.conn_id, generation)
        max_message = conn.negotiated.limits.max_message_bytes

        def build(ctx: RoutineContext) -> BlockSyncRoutine:
            return BlockSyncRoutine(ctx, stream, self.core, max_message=max_message)

        handle, routine = conn.launch_routine(
            SERVICE,
            stream,
            build,
            generation=generation,
            on_teardown=lambda: self.core.routines.pop(key, None),
        )
        self.core.routines[key] = routine
        self.core.registry.admit(conn.peer.label, generation, conn.peer.direction)
        self._sessions.setdefault(conn.peer.conn_id, []).append(generation)
        spawn_supervised_peer_task(
            handle.ctx, routine.serve, journal=conn.journal, metrics=conn.metrics
        )

    def remove_peer(self, conn: Connection) -> None:
        for key in [k for k in self.core.routines if k[0] == conn.peer.conn_id]:
            routine = self.core.routines.pop(key)
            routine.teardown()
        # The connection is gone: its sessions leave the registry (a reconnected session of
        # the same peer has another generation and stays).
        for generation in self._sessions.pop(conn.peer.conn_id, []):
            self.core.registry.remove(conn.peer.label, generation)

    def routine_for(self, conn_id: int, generation: int) -> BlockSyncRoutine | None:
        """The live routine of that session, or None once it ended."""
        routine: BlockSyncRoutine | None = self.core.routines.get((conn_id, generation))
        return routine

    def routine_facts(self, conn_id: int, generation: int) -> BlockSyncFacts | None:
        """What diagnostics read of a session (:meth:`routine_view`'s fields they use); None
        when it can raise no diagnostic or is gone."""
        routine = self.core.routines.get((conn_id, generation))
        return None if routine is None else routine.diagnostic_facts()

    def routine_view(self, conn_id: int, generation: int) -> BlockSyncRoutineView | None:
        routine = self.core.routines.get((conn_id, generation))
        return None if routine is None else routine.view()
