"""Per-node Prometheus metrics, named after the Zakura reference (reference §5.3).

Each node owns its own ``CollectorRegistry`` - never the process-global ``REGISTRY`` - so several
nodes in one process (tests, the embedded demo) neither collide nor mix their counts, and each
node's ``/metrics`` shows only itself.

Naming: the reference's dotted names become underscores; Prometheus appends ``_total`` to
counters in the exposition. Where the reference splits one concept over several dotted names,
we use one metric with a label, so dashboards can sum or split at will.

Reference name -> our metric (sample names as exposed; attribute in brackets):

* ``zakura.pipe.panic`` -> ``zakura_pipe_panic_total{service}`` [pipe_panic]
* ``zakura.p2p.handshake.duplicate`` -> ``zakura_p2p_handshake_duplicate_total``
  [handshake_duplicate]
* ``zakura.p2p.handshake.upgraded`` -> ``zakura_p2p_handshake_upgraded_total``
  [handshake_upgraded]
* (typed handshake failures, docs/PROTOCOL.md §4.6) ->
  ``zakura_p2p_handshake_failed_total{reason,class}`` with class ``neutral|punitive``
  [handshake_failed]
* ``zakura.p2p.conn.active`` -> gauge ``zakura_p2p_conn_active`` [conn_active]
* ``zakura.p2p.conn.accepted`` -> ``zakura_p2p_conn_accepted_total{direction}`` [conn_accepted]
* ``zakura.p2p.conn.closed.*`` -> ``zakura_p2p_conn_closed_total{code,reason}``,
  code ``"0"``..``"5"`` [conn_closed]
* ``zakura.p2p.conn.rejected.admission`` ->
  ``zakura_p2p_conn_rejected_admission_total{reason="admission"}`` [conn_rejected_admission]
* ``zakura.p2p.conn.rejected.pending_handshake`` ->
  ``zakura_p2p_conn_rejected_admission_total{reason="pending_handshake"}`` (our per-IP limit
  adds ``reason="per_ip"``)
* ``zakura.p2p.conn.duplicate.evicted_stale`` ->
  ``zakura_p2p_conn_duplicate_evicted_stale_total`` [conn_duplicate_evicted_stale]
* ``frame.oversize`` (ratelimit trace table) ->
  ``zakura_p2p_ratelimit_frame_oversize_total{stream_kind}`` [ratelimit_frame_oversize]
* ``zakura.p2p.ratelimit.message.oversize{stream_kind}`` ->
  ``zakura_p2p_ratelimit_message_oversize_total{stream_kind}`` [ratelimit_message_oversize]
* ``zakura.p2p.ratelimit.message.throttled{stream_kind}`` ->
  ``zakura_p2p_ratelimit_message_throttled_total{stream_kind}`` [ratelimit_message_throttled]
* (stream-open rate limit) -> ``zakura_p2p_ratelimit_stream_open_throttled_total``
  [ratelimit_stream_open_throttled]
* (stream resets by close code) -> ``zakura_p2p_stream_reset_total{code}`` [stream_reset]
* (wire bytes) -> ``zakura_p2p_bytes_received_total`` [bytes_in],
  ``zakura_p2p_bytes_sent_total`` [bytes_out]
* ``zakura.p2p.discovery.dial.started`` -> ``zakura_p2p_discovery_dial_started_total``
  [dial_started]
* ``zakura.p2p.discovery.dial.succeeded`` -> ``zakura_p2p_discovery_dial_succeeded_total``
  [dial_succeeded]
* ``zakura.p2p.discovery.dial.failed`` -> ``zakura_p2p_discovery_dial_failed_total``
  [dial_failed]
* ``zakura.p2p.discovery.dial.short_lived_registered`` ->
  ``zakura_p2p_discovery_dial_short_lived_registered_total`` [dial_short_lived]
* (routine lifecycle) -> ``zakura_routine_started_total{service}`` [routine_started],
  ``zakura_routine_exited_total{service,cause}`` with cause
  ``normal|cancelled|protocol_reject|local_reject|panic`` [routine_exited]
* ``sync.header.peer.violation``, ``sync.block.peer.violation`` ->
  ``zakura_peer_misbehavior_total{service,reason}`` [misbehavior]
* (fault injection) -> ``zakura_faults_injected_total{kind}`` [faults_injected]
* (trace queue drops; the reference drops silently) -> ``zakura_trace_rows_dropped_total``
  [trace_rows_dropped]
* (event-loop lag) ->
  gauge ``zakura_event_loop_lag_seconds{quantile="0.5"|"0.99"|"max"}`` [loop_lag]
* (diagnostics, :mod:`node_core.observe.diagnostics`) -> gauge
  ``zakura_diagnostic_active{id}``: how many subjects each diagnostic is active for now, every
  id present (0 when clear) so a dashboard can alert on ``> 0`` [diagnostic_active]

Service packages that need more reference metrics (``sync.header.*``, ``sync.block.*``) register
them in the same registry through :meth:`NodeMetrics.counter` / :meth:`NodeMetrics.gauge`
(``sync.header.request.sent`` -> ``counter("sync_header_request_sent", ...)``, exposed as
``sync_header_request_sent_total``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest

from node_core.observe.diagnostics import DIAGNOSTICS
from node_core.observe.looplag import LoopLagStats

__all__ = ["NodeMetrics"]


class NodeMetrics:
    """All metrics of one node, in a registry of its own.

    Attributes are the prometheus_client metric objects; callers use them directly
    (``m.conn_accepted.labels(direction="inbound").inc()``) because that is the cheapest path.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # name -> (metric, label names) for the get-or-create helpers.
        self._extra: dict[str, tuple[Counter | Gauge, tuple[str, ...]]] = {}
        c = self._counter
        g = self._gauge

        self.pipe_panic = c(
            "zakura_pipe_panic", "Routine panics (unexpected exceptions)", ["service"]
        )
        self.handshake_duplicate = c(
            "zakura_p2p_handshake_duplicate", "Handshakes that found an existing session"
        )
        self.handshake_upgraded = c(
            "zakura_p2p_handshake_upgraded", "Handshakes that replaced a stale session"
        )
        self.handshake_failed = c(
            "zakura_p2p_handshake_failed", "Failed handshakes", ["reason", "class"]
        )
        self.conn_active = g("zakura_p2p_conn_active", "Established connections")
        self.conn_accepted = c("zakura_p2p_conn_accepted", "Accepted connections", ["direction"])
        self.conn_closed = c(
            "zakura_p2p_conn_closed", "Closed connections by close code", ["code", "reason"]
        )
        self.conn_rejected_admission = c(
            "zakura_p2p_conn_rejected_admission", "Connections refused at admission", ["reason"]
        )
        self.conn_duplicate_evicted_stale = c(
            "zakura_p2p_conn_duplicate_evicted_stale", "Stale duplicate connections evicted"
        )
        self.ratelimit_frame_oversize = c(
            "zakura_p2p_ratelimit_frame_oversize", "Frames over the cap", ["stream_kind"]
        )
        self.ratelimit_message_oversize = c(
            "zakura_p2p_ratelimit_message_oversize", "Messages over the cap", ["stream_kind"]
        )
        self.ratelimit_message_throttled = c(
            "zakura_p2p_ratelimit_message_throttled", "Messages over the rate", ["stream_kind"]
        )
        self.ratelimit_stream_open_throttled = c(
            "zakura_p2p_ratelimit_stream_open_throttled", "Stream opens over the rate"
        )
        self.stream_reset = c("zakura_p2p_stream_reset", "Streams reset", ["code"])
        self.bytes_in = c("zakura_p2p_bytes_received", "Bytes received from peers")
        self.bytes_out = c("zakura_p2p_bytes_sent", "Bytes sent to peers")
        self.dial_started = c("zakura_p2p_discovery_dial_started", "Discovery dials started")
        self.dial_succeeded = c(
            "zakura_p2p_discovery_dial_succeeded", "Discovery dials that connected"
        )
        self.dial_failed = c("zakura_p2p_discovery_dial_failed", "Discovery dials that failed")
        self.dial_short_lived = c(
            "zakura_p2p_discovery_dial_short_lived_registered",
            "Dialed peers registered as short-lived",
        )
        self.routine_started = c("zakura_routine_started", "Peer routines started", ["service"])
        self.routine_exited = c(
            "zakura_routine_exited", "Peer routines exited by cause", ["service", "cause"]
        )
        self.misbehavior = c(
            "zakura_peer_misbehavior", "Peer misbehavior records", ["service", "reason"]
        )
        self.faults_injected = c("zakura_faults_injected", "Faults injected", ["kind"])
        self.trace_rows_dropped = c(
            "zakura_trace_rows_dropped", "Trace rows dropped because the queue was full"
        )
        self.loop_lag = g(
            "zakura_event_loop_lag_seconds",
            "Event-loop timer lag over the recent window",
            ["quantile"],
        )
        self.diagnostic_active = g(
            "zakura_diagnostic_active",
            "Subjects each diagnostic is active for now (0: clear)",
            ["id"],
        )
        self.record_diagnostics(dict.fromkeys(DIAGNOSTICS, 0))

    # ------------------------------------------------------------------ helpers

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        """Get or create an extra counter in this node's registry (for service packages).

        Get-or-create so two components asking for the same name share one metric instead of
        tripping prometheus_client's duplicate-registration error.

        Raises:
            ValueError: ``name`` exists as a gauge or with different label names.
        """
        entry = self._extra.get(name)
        if entry is None:
            metric = self._counter(name, documentation, labelnames)
            self._extra[name] = (metric, tuple(labelnames))
            return metric
        existing, known_labels = entry
        if not isinstance(existing, Counter) or known_labels != tuple(labelnames):
            raise ValueError(f"metric {name!r} already registered with another type or labels")
        return existing

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        """Get or create an extra gauge in this node's registry (see :meth:`counter`)."""
        entry = self._extra.get(name)
        if entry is None:
            metric = self._gauge(name, documentation, labelnames)
            self._extra[name] = (metric, tuple(labelnames))
            return metric
        existing, known_labels = entry
        if not isinstance(existing, Gauge) or known_labels != tuple(labelnames):
            raise ValueError(f"metric {name!r} already registered with another type or labels")
        return existing

    def record_loop_lag(self, stats: LoopLagStats) -> None:
        """Copy loop-lag stats into the gauge (ms -> s); fits ``LoopLagMonitor.on_sample``."""
        self.loop_lag.labels(quantile="0.5").set(stats.p50_ms / 1000.0)
        self.loop_lag.labels(quantile="0.99").set(stats.p99_ms / 1000.0)
        self.loop_lag.labels(quantile="max").set(stats.max_ms / 1000.0)

    def record_diagnostics(self, counts: Mapping[str, int]) -> None:
        """Set ``zakura_diagnostic_active`` per diagnostic id (subjects active)."""
        for diagnostic, n in counts.items():
            self.diagnostic_active.labels(id=diagnostic).set(n)

    def render(self) -> tuple[bytes, str]:
        """Prometheus text exposition of this node's registry, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def value(self, name: str, **labels: str) -> float:
        """Read one sample by its full sample name, e.g. ``"zakura_pipe_panic_total"``.

        Meant for tests and snapshots (it walks the registry). Absent samples read as 0.0, so
        a counter that was never incremented for a label set compares equal to zero.
        """
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else float(got)

    def _counter(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> Counter:
        return Counter(name, doc, labelnames=labelnames, registry=self.registry)

    def _gauge(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> Gauge:
        return Gauge(name, doc, labelnames=labelnames, registry=self.registry)
