"""Tests for per-node metrics: isolated registries, reference names, read-back."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from node_core.observe.looplag import LoopLagStats
from node_core.observe.metrics import NodeMetrics


def test_two_nodes_in_one_process_do_not_collide() -> None:
    a = NodeMetrics()
    b = NodeMetrics()  # would raise "Duplicated timeseries" if both used one registry
    a.pipe_panic.labels(service="header_sync").inc()
    a.pipe_panic.labels(service="header_sync").inc()
    b.pipe_panic.labels(service="header_sync").inc()
    assert a.value("zakura_pipe_panic_total", service="header_sync") == 2.0
    assert b.value("zakura_pipe_panic_total", service="header_sync") == 1.0
    assert a.registry is not b.registry
    assert a.registry is not REGISTRY
    assert REGISTRY.get_sample_value("zakura_pipe_panic_total", {"service": "header_sync"}) is None


def test_value_reads_labels_and_defaults_to_zero() -> None:
    m = NodeMetrics()
    assert m.value("zakura_p2p_conn_accepted_total", direction="inbound") == 0.0
    assert m.value("no_such_metric") == 0.0
    m.conn_accepted.labels(direction="inbound").inc()
    m.conn_closed.labels(code="0", reason="idle_timeout").inc(3)
    m.conn_active.set(4)
    m.bytes_in.inc(1500)
    m.handshake_failed.labels(reason="bad_signature", **{"class": "punitive"}).inc()
    assert m.value("zakura_p2p_conn_accepted_total", direction="inbound") == 1.0
    assert m.value("zakura_p2p_conn_accepted_total", direction="outbound") == 0.0
    assert m.value("zakura_p2p_conn_closed_total", code="0", reason="idle_timeout") == 3.0
    assert m.value("zakura_p2p_conn_active") == 4.0
    assert m.value("zakura_p2p_bytes_received_total") == 1500.0
    assert (
        m.value(
            "zakura_p2p_handshake_failed_total", reason="bad_signature", **{"class": "punitive"}
        )
        == 1.0
    )


def test_render_contains_reference_names() -> None:
    m = NodeMetrics()
    m.pipe_panic.labels(service="discovery").inc()
    m.routine_exited.labels(service="discovery", cause="panic").inc()
    m.ratelimit_message_oversize.labels(stream_kind="block_sync").inc()
    m.conn_rejected_admission.labels(reason="pending_handshake").inc()
    m.loop_lag.labels(quantile="max").set(0.25)
    body, content_type = m.render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    for name in (
        'zakura_pipe_panic_total{service="discovery"} 1.0',
        'zakura_routine_exited_total{cause="panic",service="discovery"} 1.0',
        'zakura_p2p_ratelimit_message_oversize_total{stream_kind="block_sync"} 1.0',
        'zakura_p2p_conn_rejected_admission_total{reason="pending_handshake"} 1.0',
        'zakura_event_loop_lag_seconds{quantile="max"} 0.25',
        "zakura_p2p_handshake_duplicate_total 0.0",
        "zakura_p2p_handshake_upgraded_total 0.0",
        "zakura_p2p_conn_duplicate_evicted_stale_total 0.0",
        "zakura_p2p_ratelimit_stream_open_throttled_total 0.0",
        "zakura_p2p_bytes_sent_total 0.0",
        "zakura_p2p_discovery_dial_started_total 0.0",
        "zakura_p2p_discovery_dial_succeeded_total 0.0",
        "zakura_p2p_discovery_dial_failed_total 0.0",
        "zakura_p2p_discovery_dial_short_lived_registered_total 0.0",
        "zakura_trace_rows_dropped_total 0.0",
        "zakura_p2p_conn_active 0.0",
    ):
        assert name in text, name
    for family in (
        "zakura_p2p_handshake_failed",
        "zakura_p2p_conn_accepted",
        "zakura_p2p_conn_closed",
        "zakura_p2p_ratelimit_frame_oversize",
        "zakura_p2p_ratelimit_message_throttled",
        "zakura_p2p_stream_reset",
        "zakura_routine_started",
        "zakura_peer_misbehavior",
        "zakura_faults_injected",
    ):
        assert f"# TYPE {family}_total counter" in text or f"# TYPE {family} counter" in text


def test_record_loop_lag_converts_ms_to_seconds() -> None:
    m = NodeMetrics()
    m.record_loop_lag(LoopLagStats(samples=3, p50_ms=1.0, p99_ms=20.0, max_ms=250.0))
    assert m.value("zakura_event_loop_lag_seconds", quantile="0.5") == pytest.approx(0.001)
    assert m.value("zakura_event_loop_lag_seconds", quantile="0.99") == pytest.approx(0.02)
    assert m.value("zakura_event_loop_lag_seconds", quantile="max") == pytest.approx(0.25)


def test_extra_metrics_are_get_or_create() -> None:
    m = NodeMetrics()
    sent = m.counter("sync_header_request_sent", "GetHeaders requests sent")
    assert m.counter("sync_header_request_sent", "GetHeaders requests sent") is sent
    sent.inc()
    assert m.value("sync_header_request_sent_total") == 1.0
    tip = m.gauge("sync_header_best_tip_height", "Best header tip")
    tip.set(42)
    assert m.value("sync_header_best_tip_height") == 42.0
    with pytest.raises(ValueError):
        m.gauge("sync_header_request_sent", "wrong type")
    with pytest.raises(ValueError):
        m.counter("sync_header_request_sent", "wrong labels", ["peer"])
    # Extra metrics stay per node too.
    assert NodeMetrics().value("sync_header_request_sent_total") == 0.0
