"""One versioned, orjson-serializable document describing a node right now.

The console and the control API render only this document and journal events. Its shape is a
wire format, typed in :mod:`node_core.observe.schema` (one TypedDict per section, checked by
mypy here and by :func:`~node_core.observe.schema.validate_snapshot` on the reading side):
later issues add fields, never rename these. Cheap by construction: one pass over
connections, no I/O, no sorting beyond the peer list.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol, TypeVar

from node_core.observe.peer_rates import PeerRates, Rates
from node_core.observe.schema import SCHEMA_VERSION
from node_core.protocol.limits import STREAM_KIND_LABELS

if TYPE_CHECKING:
    from prometheus_client import Counter

    from node_core.block_sync.core import BlockSyncCore
    from node_core.chain.chainstate import ChainState
    from node_core.discovery.dialer import Dialer
    from node_core.faults import FaultInjector
    from node_core.header_sync.reactor import HeaderSyncReactor
    from node_core.observe.diagnostics_task import DiagnosticsMonitor
    from node_core.observe.journal import Journal
    from node_core.observe.looplag import LoopLagMonitor
    from node_core.observe.metrics import NodeMetrics
    from node_core.observe.misbehavior import MisbehaviorLog
    from node_core.observe.schema import (
        BlockSyncRoutineView,
        BriefPeerRow,
        BriefRoutineRow,
        BriefSnapshot,
        ChainSection,
        DiscoveryExchange,
        HeaderSyncRoutineView,
        InvariantsSection,
        MisbehaviorRow,
        MisbehaviorTallyRow,
        ParkedPeer,
        PeerRow,
        RoutineRow,
        Snapshot,
        SnapshotSections,
    )
    from node_core.observe.trace import TraceWriter
    from node_core.transport.connection import Connection
    from node_core.transport.endpoint import Transport
    from node_core.transport.supervise import RoutineHandle

__all__ = [
    "SCHEMA_VERSION",
    "SnapshotSource",
    "build_brief_snapshot",
    "build_snapshot",
    "invariants_section",
    "misbehavior_rows",
    "misbehavior_tally",
    "parked_rows",
    "peer_row",
]


V_co = TypeVar("V_co", covariant=True)


class RoutineViews(Protocol[V_co]):
    """What a snapshot reads of a service: one session's fields, by connection and generation.

    Why not the service itself: the snapshot must not depend on how a service keeps its
    sessions (the console shows only what ``routine_view`` chooses to give).
    """

    def routine_view(self, conn_id: int, generation: int) -> V_co | None: ...


class SnapshotSource(Protocol):
    """Everything a snapshot reads: a :class:`~node_core.node.Node`.

    Why a protocol: the node builds its own snapshot (``Node.snapshot()``), so this module
    must not import the node's class (docs/ARCHITECTURE.md, "Layers and packages"); mypy
    checks that the node has every member, with these types.
    """

    @property
    def node_id(self) -> bytes: ...
    @property
    def label(self) -> str: ...
    @property
    def listen(self) -> str: ...
    @property
    def api_address(self) -> str | None: ...
    @property
    def boot_id(self) -> str: ...
    @property
    def chain_id(self) -> bytes: ...
    @property
    def started_wall(self) -> float: ...
    @property
    def uptime(self) -> float: ...
    @property
    def faults(self) -> FaultInjector: ...
    @property
    def transport(self) -> Transport: ...
    def connections(self) -> list[Connection]:
        """The live connections, by connection id."""
        ...

    @property
    def dialer(self) -> Dialer: ...
    @property
    def discovery(self) -> RoutineViews[DiscoveryExchange]: ...
    @property
    def chain(self) -> ChainState: ...
    @property
    def header_sync(self) -> HeaderSyncReactor: ...
    @property
    def header_sync_service(self) -> RoutineViews[HeaderSyncRoutineView]: ...
    @property
    def block_sync(self) -> BlockSyncCore: ...
    @property
    def block_sync_service(self) -> RoutineViews[BlockSyncRoutineView]: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def metrics(self) -> NodeMetrics: ...
    @property
    def misbehavior(self) -> MisbehaviorLog: ...
    @property
    def loop_lag(self) -> LoopLagMonitor: ...
    @property
    def trace(self) -> TraceWriter | None: ...
    @property
    def diagnostics(self) -> DiagnosticsMonitor: ...


def _routine(handle: RoutineHandle, node: SnapshotSource) -> RoutineRow:
    out: RoutineRow = {
        "service": handle.service,
        "state": handle.state.value,
        "generation": handle.ctx.generation,
        "started_at": handle.started_wall,
        "exit_cause": None if handle.exit is None else handle.exit.cause.value,
        "exit_reason": None if handle.exit is None else handle.exit.reason,
        "exit_error": None if handle.exit is None else handle.exit.error,
        "exited_at": handle.exited_wall,
    }
    if handle.service == "discovery":
        dview = node.discovery.routine_view(handle.peer.conn_id, handle.ctx.generation)
        if dview is not None:
            out["discovery"] = dview
    elif handle.service == "block_sync":
        bview = node.block_sync_service.routine_view(handle.peer.conn_id, handle.ctx.generation)
        if bview is not None:
            out["block_sync"] = bview
    elif handle.service == "header_sync":
        view = node.header_sync_service.routine_view(handle.peer.conn_id, handle.ctx.generation)
        if view is not None:
            out["header_sync"] = view
    return out


def _peer(conn: Connection, node: SnapshotSource, misbehavior: dict[str, int]) -> PeerRow:
    limits = conn.negotiated.limits
    return {
        "label": conn.peer.label,
        "id": conn.peer.node_id.hex(),
        "addr": conn.peer.addr,
        "listen_port": conn.peer_listen_port,
        "direction": conn.peer.direction,
        "conn_id": conn.peer.conn_id,
        "connected_at": conn.connected_wall,
        "age_s": round(conn.age, 3),
        "bytes_in": conn.bytes_in,
        "bytes_out": conn.bytes_out,
        "capabilities": conn.negotiated.capabilities,
        "limits": {
            "max_frame_bytes": limits.max_frame_bytes,
            "max_message_bytes": limits.max_message_bytes,
            "max_open_streams": limits.max_open_streams,
            "max_inbound_queue_depth": limits.max_inbound_queue_depth,
            "idle_timeout_ms": limits.idle_timeout_millis,
        },
        "streams": [
            {
                "id": s.id,
                "kind": s.kind,
                "service": STREAM_KIND_LABELS.get(s.kind, str(s.kind)),
                "inbox": s.inbox_depth,
                "pending_out": s.pending_bytes,
                "send_credit": s.send_credit.available,
                "frames_in": s.frames_in,
                "frames_out": s.frames_out,
            }
            for s in conn.streams.values()
        ],
        "routines": [_routine(h, node) for h in conn.routines],
        "misbehavior_count": misbehavior.get(conn.peer.label, 0),
        "throttle_bytes_per_s": conn.throttle_bytes_per_s,
        "close": None,
    }


def _brief_routine(handle: RoutineHandle, node: SnapshotSource) -> BriefRoutineRow:
    """What a Peers row draws of one routine: state, generation, and the few numbers of its
    header- or block-sync view (the service builds its full view; only these are sent)."""
    out: BriefRoutineRow = {
        "service": handle.service,
        "state": handle.state.value,
        "generation": handle.ctx.generation,
    }
    conn_id, generation = handle.peer.conn_id, handle.ctx.generation
    if handle.service == "block_sync":
        bview = node.block_sync_service.routine_view(conn_id, generation)
        if bview is not None:
            window = bview["window"]
            out["block_sync"] = {
                "outstanding": bview["outstanding"],
                "window": {"cwnd": window["cwnd"], "proven": window["proven"]},
                "delivery_rate": bview["delivery_rate"],
                "fill_stop": bview["fill_stop"],
                "stalled_for_s": bview["stalled_for_s"],
            }
    elif handle.service == "header_sync":
        view = node.header_sync_service.routine_view(conn_id, generation)
        if view is not None:
            flight = view["in_flight"]
            out["header_sync"] = {
                "queue_depth": view["queue_depth"],
                "queue_max": view["queue_max"],
                "in_flight": None
                if flight is None
                else {"start_height": flight["start_height"], "count": flight["count"]},
                "advertised_tip": view["advertised_tip"],
                "stalled_for_s": view["stalled_for_s"],
            }
    return out


def _brief_peer(
    conn: Connection, node: SnapshotSource, misbehavior: dict[str, int], rates: Rates
) -> BriefPeerRow:
    """:func:`_peer` cut to what the console's Peers row, filter and actions read, with the
    byte rates the row draws (:mod:`node_core.observe.peer_rates`)."""
    rate = rates.get(conn.peer.conn_id)
    return {
        "label": conn.peer.label,
        "addr": conn.peer.addr,
        "direction": conn.peer.direction,
        "conn_id": conn.peer.conn_id,
        "connected_at": conn.connected_wall,
        "age_s": round(conn.age, 3),
        "bytes_in": conn.bytes_in,
        "bytes_out": conn.bytes_out,
        "bytes_in_per_s": None if rate is None else rate[0],
        "bytes_out_per_s": None if rate is None else rate[1],
        "routines": [_brief_routine(h, node) for h in conn.routines],
        "misbehavior_count": misbehavior.get(conn.peer.label, 0),
        "throttle_bytes_per_s": conn.throttle_bytes_per_s,
        "close": None,
    }


def _chain(node: SnapshotSource) -> ChainSection:
    chain = node.chain
    (h_height, h_hash), (v_height, v_hash) = chain.header_tip, chain.verified_tip
    return {
        "header_tip": {"height": h_height, "hash": h_hash.hex()},
        "verified_tip": {"height": v_height, "hash": v_hash.hex()},
        "target": chain.target,
        "network": chain.network,
        "finalized_height": node.header_sync.index.finalized_height,
    }


def _misbehavior_counts(node: SnapshotSource) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rec in node.misbehavior.records:
        counts[rec.label] = counts.get(rec.label, 0) + 1
    return counts


def peer_row(node: SnapshotSource, label: str) -> PeerRow | None:
    """The snapshot's ``peers`` entry for ``label`` (the first by connection id, as in the
    full document), or None when no such peer is connected; builds only that row."""
    conn = next((c for c in node.connections() if c.peer.label == label), None)
    if conn is None:
        return None
    count = sum(1 for rec in node.misbehavior.records if rec.label == label)
    return _peer(conn, node, {label: count})


def parked_rows(node: SnapshotSource) -> list[ParkedPeer]:
    """The snapshot's ``parked`` section."""
    return [
        {
            "label": p.label,
            "service": p.service,
            "reason": p.reason,
            "since": p.since,
            "work_returned": p.work_returned,
        }
        for p in node.header_sync.parked.values()
    ]


def misbehavior_rows(node: SnapshotSource) -> list[MisbehaviorRow]:
    """The snapshot's ``misbehavior`` section: the last 100 records."""
    return [
        {
            "time": r.wall,
            "label": r.label,
            "service": r.service,
            "reason": r.reason,
            "action": r.action,
        }
        for r in list(node.misbehavior.records)[-100:]
    ]


def misbehavior_tally(node: SnapshotSource) -> list[MisbehaviorTallyRow]:
    """The snapshot's ``misbehavior_tally`` section: every record ever, by (service, reason)."""
    return [{"service": s, "reason": r, "count": n} for (s, r), n in node.misbehavior.tally.items()]


def _by_label(counter: Counter, label: str) -> dict[str, int]:
    """A labelled counter's ``_total`` samples summed by one of its labels."""
    out: dict[str, int] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = sample.labels[label]
                out[key] = out.get(key, 0) + int(sample.value)
    return out


def invariants_section(node: SnapshotSource, conns: list[Connection]) -> InvariantsSection:
    """The snapshot's ``invariants`` section: the shared structures' own checks against the
    sessions alive now, and the counts that show stranded routines and parked work."""
    hs, bs = node.header_sync, node.block_sync
    started = _by_label(node.metrics.routine_started, "service")
    exited = _by_label(node.metrics.routine_exited, "service")
    on_open: dict[str, int] = {}
    for conn in conns:
        if not conn.closed:
            for handle in conn.routines:
                if handle.exit is None:
                    on_open[handle.service] = on_open.get(handle.service, 0) + 1
    parked_holding = {
        label: sum(1 for peers in hs.queue.assigned.values() if label in peers)
        for label in hs.parked
    }
    return {
        "range_queue": hs.queue.invariant_violations(hs.live_generations()),
        "work_queue": bs.work.invariant_violations(
            {r.label: r.owner[1] for r in bs.routines.values()}
        ),
        "bytes_charged": bs.work.charged_total,
        "bytes_released": bs.work.released_total,
        "parked_holding": parked_holding,
        "routines_alive": {s: n - exited.get(s, 0) for s, n in sorted(started.items())},
        "routines_on_open": dict(sorted(on_open.items())),
    }


def build_snapshot(node: SnapshotSource) -> Snapshot:
    """The snapshot document (schema :data:`SCHEMA_VERSION`)."""
    conns = node.connections()
    misbehavior = _misbehavior_counts(node)
    peers = [_peer(c, node, misbehavior) for c in conns]
    return {**_sections(node, conns, _summary(peers)), "peers": peers}


def build_brief_snapshot(
    node: SnapshotSource, detail: str | None = None, rates: PeerRates | None = None
) -> BriefSnapshot:
    """The document ``GET /api/v1/snapshot?peers=brief`` serves: every section of
    :func:`build_snapshot`, each peer cut to :class:`~node_core.observe.schema.BriefPeerRow`
    with its byte rates from ``rates`` (the caller keeps it between builds; without one every
    rate is ``None``), and with ``detail`` that peer's full entry (``None`` when it is not
    connected)."""
    conns = node.connections()
    misbehavior = _misbehavior_counts(node)
    by_conn = {} if rates is None else rates.rates(conns)
    peers = [_brief_peer(c, node, misbehavior, by_conn) for c in conns]
    return {
        **_sections(node, conns, _summary(peers)),
        "peers": peers,
        "brief": True,
        "detail": None if detail is None else peer_row(node, detail),
    }


def _summary(peers: list[PeerRow] | list[BriefPeerRow]) -> dict[str, dict[str, int]]:
    """The ``routines_summary`` section: routines by service and state."""
    summary: dict[str, dict[str, int]] = {}
    for p in peers:
        for r in p["routines"]:
            states = summary.setdefault(r["service"], {})
            states[r["state"]] = states.get(r["state"], 0) + 1
    return summary


def _sections(
    node: SnapshotSource, conns: list[Connection], summary: dict[str, dict[str, int]]
) -> SnapshotSections:
    """Every section but the peers."""
    transport = node.transport
    cfg = transport.config
    lag = node.loop_lag.stats()
    return {
        "schema": SCHEMA_VERSION,
        "boot_id": node.boot_id,
        "generated_at": time.time(),
        "node": {
            "id": node.node_id.hex(),
            "label": node.label,
            "listen": node.listen,
            "api": node.api_address,
            "network": transport.network_label,
            "chain_id": node.chain_id.hex(),
            "started_at": node.started_wall,
            "uptime_s": round(node.uptime, 3),
            "allow_faults": node.faults.enabled,
        },
        "transport": {
            "connections": len(conns),
            "inbound": sum(1 for c in conns if c.peer.direction == "inbound"),
            "outbound": sum(1 for c in conns if c.peer.direction == "outbound"),
            "max_connections": cfg.max_connections,
            "pending_handshakes": transport.pending_handshakes,
            "max_pending_handshakes": cfg.max_pending_handshakes,
            "max_connections_per_ip": cfg.max_connections_per_ip,
            "per_ip": dict(transport.peers.per_ip),
        },
        "dialer": node.dialer.status(),
        "chain": _chain(node),
        "header_sync": node.header_sync.snapshot(),
        "block_sync": node.block_sync.snapshot(),
        "parked": parked_rows(node),
        "recently_closed": [
            {
                "label": c.peer.label,
                "addr": c.peer.addr,
                "direction": c.peer.direction,
                "conn_id": c.peer.conn_id,
                "connected_at": c.connected_wall,
                "closed_at": c.close.wall,
                "code": c.close.code,
                "reason": c.close.reason,
                "by": c.close.by,
                "bytes_in": c.bytes_in,
                "bytes_out": c.bytes_out,
            }
            for c in list(transport.recently_closed)[-32:]
        ],
        "routines_summary": summary,
        "loop_lag": {
            "samples": lag.samples,
            "p50_ms": lag.p50_ms,
            "p99_ms": lag.p99_ms,
            "max_ms": lag.max_ms,
        },
        "counters": {
            "panics": node.metrics.value("zakura_pipe_panic_total"),
            "trace_rows_dropped": 0 if node.trace is None else node.trace.dropped,
        },
        "misbehavior": misbehavior_rows(node),
        "misbehavior_tally": misbehavior_tally(node),
        "journal_seq": node.journal.last_seq,
        "invariants": invariants_section(node, conns),
        "diagnostics": node.diagnostics.rows(),
        "diagnostic_thresholds": node.diagnostics.thresholds.to_dict(),
    }
