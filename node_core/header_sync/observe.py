"""Header-sync metrics (reference §5.3) and ``header_sync.jsonl`` trace rows (§5.1).

Metric names follow the reference with dots as underscores (``sync.header.request.sent`` ->
``sync_header_request_sent_total``). Trace rows are written straight to the trace writer, not
through the journal: per-request rows arrive at network rate and would flush the operator's
journal; the journal gets the events an operator acts on (commits, reorgs, parking,
misbehavior).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from node_core.observe.metrics import NodeMetrics
from node_core.observe.trace import TableTrace, TraceWriter

TRACE_TABLE = "header_sync"

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
