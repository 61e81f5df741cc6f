"""Header-sync observation: metrics (reference §5.3), ``header_sync.jsonl`` trace rows (§5.1),
the committed-headers rate, and the reactor's part of the snapshot and of each peer's view.

Why a module of its own: what header sync shows the operator is kept apart from what it does,
so the reactor (:mod:`node_core.header_sync.reactor`) stays about coordination. The functions
here only read: the reactor hands them its state and they build the snapshot's JSON-ready
shapes (:mod:`node_core.observe.schema`). This module never imports the reactor (the reactor
imports it).

Metric names follow the reference with dots as underscores (``sync.header.request.sent`` ->
``sync_header_request_sent_total``). Trace rows are written straight to the trace writer, not
through the journal: per-request rows arrive at network rate and would flush the operator's
journal; the journal gets the events an operator acts on (commits, reorgs, parking,
misbehavior).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from node_core.observe.metrics import NodeMetrics
from node_core.observe.trace import TableTrace, TraceWriter

if TYPE_CHECKING:
    from node_core.header_sync.chain_index import HeaderIndex
    from node_core.header_sync.entries import PeerEntry
    from node_core.header_sync.range_queue import SharedHeaderRangeQueue
    from node_core.observe.schema import HeaderSyncSection, ReactorDepths, UnavailableHeader

TRACE_TABLE = "header_sync"
#: Window of the committed-headers rate shown by the console.
RATE_WINDOW_S = 5.0
#: What the snapshot reports as the committer queue's capacity (``actions_max``).
ACTIONS_CAPACITY = 128

#: Every key a header-sync row may carry (reference field keys), so rows are uniform.
TRACE_KEYS = (
    "peer",
    "source_peer",
    "height",
    "hash",
    "range_start",
    "range_count",
    "advertised_cap",
    "expected_count",
    "in_flight_count",
    "destination_peer_count",
    "reason",
    "kind",
    "result",
)


class HeaderSyncMetrics:
    """The ``sync_header_*`` metrics of one node."""

    def __init__(self, metrics: NodeMetrics) -> None:
        def c(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return metrics.counter(f"sync_header_{name}", doc, labels)

        def g(name: str, doc: str) -> Gauge:
            return metrics.gauge(f"sync_header_{name}", doc)

        self.request_sent = c("request_sent", "GetHeaders requests written")
        self.request_timed_out = c("request_timed_out", "Requests the reactor timed out")
        self.request_timeout_dropped = c(
            "request_timeout_dropped", "Expectations dropped by DropExpectation"
        )
        self.response_received = c("response_received", "Solicited Headers responses")
        self.response_empty_returned = c("response_empty_returned", "Empty Headers responses")
        self.response_late_covered_dropped = c(
            "response_late_covered_dropped", "Late responses absorbed by a tolerance credit"
        )
        self.status_received = c("peer_status_received", "Status messages received")
        self.status_sent = c("peer_status_sent", "Status messages queued to peers")
        self.status_suppressed = c(
            "peer_status_suppressed_redundant", "Identical Status not re-sent"
        )
        self.command_park = c("peer_command_park", "Peers parked for an undeliverable command")
        self.command_enqueued = c(
            "peer_command_enqueued", "Commands offered to peers", ("kind", "result")
        )
        self.new_block = c(
            "tip_new_block", "NewBlock pipeline outcomes", ("result",)
        )  # received, predecode_throttled, deduped, forwarded, rejected, unconnectable
        self.range_committed = c("range_committed", "Header ranges committed")
        self.range_rejected = c("range_rejected", "Header ranges rejected", ("stage",))
        self.stale_anchor_link_failure = c(
            "stale_anchor_link_failure", "Responses that did not link to their anchor"
        )
        self.reorged = c("reorg", "Switches to a competing branch with more work")
        self.abandoned = c(
            "abandoned", "Header chains given up because no peer served their bodies"
        )
        self.headers_committed = c("headers_committed", "Headers written to the store")
        self.best_tip = g("best_tip_height", "Best header tip height (durable)")


class HeaderSyncTrace(TableTrace):
    """The ``header_sync.jsonl`` table with the reference's field keys on every row."""

    __slots__ = ()

    def __init__(self, writer: TraceWriter | None) -> None:
        super().__init__(writer, TRACE_TABLE, TRACE_KEYS)


class CommitRate:
    """Headers committed over the last :data:`RATE_WINDOW_S` seconds, per second."""

    __slots__ = ("_rate",)

    def __init__(self) -> None:
        self._rate: deque[tuple[float, int]] = deque()

    def add(self, now: float, count: int) -> None:
        """``count`` headers were committed at ``now`` (monotonic seconds)."""
        self._rate.append((now, count))

    def per_s(self, now: float) -> float:
        """The rate at ``now``; commits older than the window are forgotten."""
        while self._rate and self._rate[0][0] < now - RATE_WINDOW_S:
            self._rate.popleft()
        if not self._rate:
            return 0.0
        return sum(n for _, n in self._rate) / RATE_WINDOW_S


def reactor_depths(*, events: int, events_max: int, lifecycle: int, actions: int) -> ReactorDepths:
    """The reactor's queue depths: routine events, session ends, committer actions."""
    return {
        "events": events,
        "events_max": events_max,
        "lifecycle": lifecycle,
        "actions": actions,
        "actions_max": ACTIONS_CAPACITY,
    }


def header_sync_section(
    *,
    queue: SharedHeaderRangeQueue,
    index: HeaderIndex,
    peers: Mapping[str, PeerEntry],
    parked: int,
    depths: ReactorDepths,
    pending_commits: int,
    seen_cache: int,
    abandoned: int,
    unavailable: list[UnavailableHeader],
    headers_per_s: float,
    committed_total: int,
) -> HeaderSyncSection:
    """The snapshot's ``header_sync`` section, from the reactor's state."""
    covered = queue.covered
    branch = index.branch
    return {
        "range_queue": {
            "forward": len(queue.forward),
            "backward": len(queue.backward),
            "assigned": len(queue.assigned),
            "covered_intervals": len(covered),
            "covered_to": covered[0][1] if covered and covered[0][0] == 0 else -1,
        },
        "reactor": depths,
        "peers": len(peers),
        "peers_with_status": sum(1 for e in peers.values() if e.status is not None),
        "parked": parked,
        "anchor": {"height": index.tip_height, "hash": index.tip_hash.hex()},
        "candidate": None
        if branch is None
        else {
            "fork_height": branch.fork_height,
            "tip_height": branch.tip_height,
            "peer": branch.peer,
        },
        "pending_commits": pending_commits,
        "seen_cache": seen_cache,
        "reorgs": index.reorgs,
        "abandoned": abandoned,
        "unavailable": unavailable,
        "headers_per_s": round(headers_per_s, 1),
        "committed_total": committed_total,
    }


def session_outstanding(
    peers: Mapping[str, PeerEntry], label: str, generation: int
) -> tuple[tuple[int, int], ...]:
    """A session's outstanding requests as (start height, count), oldest first, as
    :func:`peer_session_view` lists them (empty when the session is not the peer's current
    one): what diagnostics read, without the rest of the view."""
    entry = peers.get(label)
    if entry is None or entry.generation != generation:
        return ()
    return tuple((o.range.start_height, o.range.count) for o in entry.outstanding)


def peer_session_view(entry: PeerEntry, now: float) -> dict[str, Any]:
    """The reactor-side fields of one peer's session: serving slots, outstanding requests
    with the seconds left before they time out, and its fork search."""
    return {
        "served_inflight": entry.served_inflight,
        "outstanding": [
            {
                "start_height": o.range.start_height,
                "count": o.range.count,
                "deadline_in_s": round(o.deadline - now, 1),
            }
            for o in entry.outstanding
        ],
        "fork_search": None
        if entry.fork is None
        else {"low": entry.fork.low, "high": entry.fork.high},
    }
