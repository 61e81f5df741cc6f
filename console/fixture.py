"""A deterministic node client: fixed snapshots and journal, a frozen clock.

Used by SVG snapshot tests, ``make screenshots`` and the refresh benchmark, where the live node's
randomness (keys, ports, timings) would make every frame different. The documents follow the
real snapshot schema exactly, so widgets cannot tell the difference.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from console.client import ActionRequest, ActionResult, JournalRow, Snapshot
from console.history import FIELDS, History, Sample
from console.policy import ActionPolicy, ActionRefused
from node_core.observe.diagnostics import DiagnosticThresholds
from node_core.observe.schema import DiagnosticRow

#: 2026-11-26 12:00:00 UTC: every fixture time is relative to this.
FIXTURE_NOW = 1_795_694_400.0


def fixture_label(i: int) -> str:
    return "peer:" + hashlib.blake2b(f"fixture-{i}".encode(), digest_size=8).hexdigest()


def _routine(i: int, now: float) -> dict[str, Any]:
    state, cause, reason, exited = "running", None, None, None
    if i % 11 == 5:
        state, cause, reason, exited = "exited", "normal", "stream_reset:peer:done", now - 20
    elif i % 17 == 9:
        state, cause, reason, exited = "panicked", "panic", "InjectedPanic", now - 3
    return {
        "service": "discovery",
        "state": state,
        "generation": i + 1,
        "started_at": now - 60 - 7 * i,
        "exit_cause": cause,
        "exit_reason": reason,
        "exit_error": None if cause != "panic" else "InjectedPanic('injected panic (fault 1)')",
        "exited_at": exited,
        "discovery": {
            "phase": "serving",
            "outcome": "complete",
            "received_hello": True,
            "received_peers": True,
            "received_services": True,
            "records_imported": i % 5,
            "refreshes": i % 3,
        },
    }


#: The fixture chain: mid header sync, and block sync verified part of the way to the header
#: tip.
FIXTURE_HEADER_TIP = 12_400
FIXTURE_TARGET = 20_000
FIXTURE_VERIFIED = 7_300
MIB = 1024 * 1024


def _hash(tag: str) -> str:
    return hashlib.blake2b(tag.encode(), digest_size=32).hexdigest()


def _header_sync(i: int) -> dict[str, Any]:
    """Per-routine header-sync state, varied by peer so every view has something to show:
    peer 1 parked (its queue backed up), 2 with a range in flight, 3 stalled, 4 with its
    command queue nearly full, 5 without a status yet."""
    kind = i % 6
    in_flight = None
    outstanding: list[dict[str, Any]] = []
    if kind == 2:
        in_flight = {"start_height": 12_401, "count": 160, "forward": True, "finalized": False}
        outstanding = [{"start_height": 12_401, "count": 160, "deadline_in_s": 4.2}]
    return {
        "queue_depth": {1: 12, 4: 250}.get(kind, kind),
        "queue_max": 256,
        "status_pending": kind == 1,
        "in_flight": in_flight,
        "advertised_tip": FIXTURE_TARGET - 40 * (i % 4),
        "received_status": kind != 5,
        "max_headers": None if kind == 5 else 160,
        "fifo_len": 1 if kind == 2 else 0,
        "tolerance": 2,
        "served_inflight": 1 if kind == 3 else 0,
        "outstanding": outstanding,
        "stalled_for_s": 17.5 if kind == 3 else None,
        "pending_write": False,
        "fork_search": None,
    }


def _header_sync_routine(i: int, now: float) -> dict[str, Any]:
    parked = i == 1
    return {
        "service": "header_sync",
        "state": "parked" if parked else "running",
        "generation": 1 + i % 3,
        "started_at": now - 55 - 7 * i,
        "exit_cause": None,
        "exit_reason": None,
        "exit_error": None,
        "exited_at": None,
        "header_sync": _header_sync(i),
    }


def _window(kind: int) -> dict[str, Any]:
    """A download window per kind: 3 is the slow peer (window at its floor of 4, low delivery,
    unreliable), 4 the unproven one (still probing), 5 has no status yet (nothing measured)."""
    if kind == 5:
        return {
            "cwnd": 16,
            "rtprop_ms": None,
            "srtt_ms": None,
            "delivery_blocks_per_s": 0.0,
            "delivery_bytes_per_s": 0.0,
            "reliability": 1.0,
            "phase": "startup",
            "proven": False,
            "requests_without_progress": 0,
            "hard_cap": 32_000,
            "retry_in_s": None,
        }
    cwnd, rtprop, srtt, blocks, reliability, phase, rwp = {
        0: (96, 11.5, 14.2, 24.0, 0.98, "probe_bw", 0),
        1: (64, 12.8, 16.0, 17.5, 0.97, "probe_bw", 0),
        2: (128, 9.7, 12.1, 41.0, 1.0, "startup", 0),
        3: (4, 180.0, 420.0, 0.2, 0.41, "probe_rtt", 3),
        4: (16, 25.0, 25.0, 0.0, 1.0, "startup", 1),
    }[kind]
    return {
        "cwnd": cwnd,
        "rtprop_ms": rtprop,
        "srtt_ms": srtt,
        "delivery_blocks_per_s": blocks,
        "delivery_bytes_per_s": blocks * 81_920.0,
        "reliability": reliability,
        "phase": phase,
        "proven": kind != 4,
        "requests_without_progress": rwp,
        "hard_cap": 256,
        # The unproven peer's probe made no progress: it is asked again after a backoff.
        "retry_in_s": 2.5 if kind == 4 else None,
    }


#: Per kind: (fill stop, outstanding requests as (start, count, received, deadline in s)).
_BLOCK_REQUESTS: dict[int, tuple[str, list[tuple[int, int, int, float]]]] = {
    0: ("lookahead_cap", [(7_331, 48, 20, 8.4), (7_379, 48, 0, 9.6)]),
    1: ("other_chain", [(7_427, 32, 12, 7.1)]),
    2: ("cwnd_saturated", [(7_459, 64, 0, 11.8), (7_523, 64, 0, 12.0)]),
    3: ("inflight_budget", [(7_302, 4, 1, 1.3)]),
    4: ("retry_backoff", [(7_587, 1, 0, 14.5)]),
    5: ("no_status", []),
}


def _block_sync(i: int) -> dict[str, Any]:
    """Per-routine block-sync state, varied by peer: 1 served a block of another chain
    (``other_chain``), 2 fills its whole window (``cwnd_saturated``), 3 is slow (cwnd 4, a
    few KB/s, its request nearly late), 4 is unproven (one probe out, held back until its
    retry backoff ends), 5 has sent no status (nothing servable, no liveness clock)."""
    kind = i % 6
    window = _window(kind)
    stop, requests = _BLOCK_REQUESTS[kind]
    return {
        "outstanding": sum(count - received for _s, count, received, _d in requests),
        "requests": [
            {"start_height": s, "count": c, "received": r, "deadline_in_s": d}
            for s, c, r, d in requests
        ],
        "window": window,
        "delivery_rate": window["delivery_bytes_per_s"],
        "fill_stop": stop,
        "servable": None if kind == 5 else {"low": 1, "high": FIXTURE_HEADER_TIP - 40 * (i % 4)},
        "accepted_blocks": 0 if kind in (4, 5) else 1_200 - 150 * kind + 7 * i,
        "stalled_for_s": None,
        "liveness_in_s": None if kind == 5 else {3: 2.4}.get(kind, 28.0 - kind),
    }


def _block_sync_routine(i: int, now: float) -> dict[str, Any]:
    return {
        "service": "block_sync",
        "state": "running",
        "generation": 1,
        "started_at": now - 50 - 7 * i,
        "exit_cause": None,
        "exit_reason": None,
        "exit_error": None,
        "exited_at": None,
        "block_sync": _block_sync(i),
    }


def fixture_stall(peers: int) -> dict[str, Any]:
    """The committer's next height has nobody fetching it (issue 16): why each peer is not,
    by its last fill stop, as the node counts them."""
    stops: dict[str, int] = {}
    for i in range(peers):
        stop = _BLOCK_REQUESTS[i % 6][0]
        stops[stop] = stops.get(stop, 0) + 1
    return {
        "height": FIXTURE_VERIFIED + 1,
        "waiting_s": 6.2,
        "give_up_in_s": 8.8,
        "peer_stops": stops,
    }


def fixture_block_sync(peers: int = 6) -> dict[str, Any]:
    """The node's block-sync section, mid-sync: 7,300 of 12,400 verified, 41 of 64 MiB of
    budget in use, 120 blocks waiting in the reorder buffer and 30 being applied, and the
    next height (7,301) waiting for a peer that serves it."""
    return {
        "download_floor": FIXTURE_VERIFIED + 30,
        "verified_tip": FIXTURE_VERIFIED,
        "budget_reserved": 41 * MIB,
        "budget_max": 64 * MIB,
        "budget_peak": 52 * MIB,
        "peak_outstanding_requests": 14,
        "reserved_bytes": 18 * MIB,
        "held_bytes": 23 * MIB,
        "reorder_count": 120,
        "reorder_bytes": int(9.6 * MIB),
        "applying_count": 30,
        "pending": 4_480,
        "in_flight": 420,
        "received": 150,
        "blocks_per_s": 85.0,
        "bytes_per_s": 6.8e6,
        "committed_total": FIXTURE_VERIFIED,
        "reset_epoch": 0,
        "stall": fixture_stall(peers),
        "peers": {
            "peers": peers,
            "with_status": peers - peers // 6,  # kind 5 has sent no status
            "capacity": 256 * peers,
            "effective_window": 48 * peers,
            "available": 12 * peers,
            "saturated": 1,
            "outstanding_requests": 8,
            "unreceived": 420,
        },
    }


def fixture_peer(i: int, now: float) -> dict[str, Any]:
    node_id = hashlib.blake2b(f"fixture-{i}".encode(), digest_size=32).hexdigest()
    return {
        "label": fixture_label(i),
        "id": node_id,
        "addr": f"127.0.0.1:{41000 + i}",
        "listen_port": 41000 + i,
        "direction": "outbound" if i % 3 else "inbound",
        "conn_id": i + 1,
        "connected_at": now - 60 - 7 * i,
        "age_s": 60.0 + 7 * i,
        "bytes_in": 1_000 + 137 * i * i,
        "bytes_out": 900 + 101 * i * i,
        "capabilities": 4,
        "limits": {
            "max_frame_bytes": 4_194_312,
            "max_message_bytes": 4_194_304,
            "max_open_streams": 1024,
            "max_inbound_queue_depth": 4096,
            "idle_timeout_ms": 150_000,
        },
        "streams": [
            {
                "id": 1 if i % 3 else 2,
                "kind": 4,
                "service": "discovery",
                "inbox": i % 4,
                "pending_out": 0,
                "send_credit": 262_144,
                "frames_in": 5 + i,
                "frames_out": 5 + i,
            }
        ],
        "routines": [
            _routine(i, now),
            _header_sync_routine(i, now),
            _block_sync_routine(i, now),
        ],
        "misbehavior_count": 1 if i % 7 == 3 else 0,
        "throttle_bytes_per_s": None,
        "close": None,
    }


def fixture_snapshot(peers: int = 6, *, now: float = FIXTURE_NOW, seq: int = 120) -> Snapshot:
    """A snapshot document with ``peers`` peers, fully determined by its arguments."""
    rows = [fixture_peer(i, now) for i in range(peers)]
    summary: dict[str, dict[str, int]] = {}
    for p in rows:
        for r in p["routines"]:
            states = summary.setdefault(r["service"], {})
            states[r["state"]] = states.get(r["state"], 0) + 1
    misbehaving = [p for p in rows if p["misbehavior_count"]]
    parked = [p["label"] for i, p in enumerate(rows) if i == 1]
    outbound = sum(1 for p in rows if p["direction"] == "outbound")
    return {
        "schema": 2,
        "boot_id": "0f1c57ab1e5eed01",
        "generated_at": now,
        "node": {
            "id": "ab" * 32,
            "label": "peer:0fe1c2d3b4a59687",
            "listen": "127.0.0.1:40000",
            "api": None,
            "network": "regtest",
            "chain_id": "cd" * 32,
            "started_at": now - 754,
            "uptime_s": 754.0,
            "allow_faults": True,
        },
        "transport": {
            "connections": len(rows),
            "inbound": len(rows) - outbound,
            "outbound": outbound,
            "max_connections": 64,
            "pending_handshakes": 0,
            "max_pending_handshakes": 16,
            "max_connections_per_ip": 32,
            "per_ip": {"127.0.0.1": len(rows)},
        },
        "dialer": {
            "target": peers,
            "connected": len(rows),
            "outbound": outbound,
            "inbound": len(rows) - outbound,
            "in_flight": 0,
            "reached": True,
            "book_size": peers + 2,
            "bootstrap": [
                {
                    "addr": "127.0.0.1:41000",
                    "connected": True,
                    "attempts": 1,
                    "failures": 0,
                    "last_error": None,
                }
            ],
        },
        "chain": {
            "header_tip": {"height": FIXTURE_HEADER_TIP, "hash": _hash("tip")},
            "verified_tip": {"height": FIXTURE_VERIFIED, "hash": _hash("verified")},
            "target": FIXTURE_TARGET,
            "network": "regtest",
            "finalized_height": 0,
        },
        "header_sync": {
            "range_queue": {
                "forward": 4,
                "backward": 1,
                "assigned": 3,
                "covered_intervals": 2,
                "covered_to": FIXTURE_HEADER_TIP,
            },
            "reactor": {
                "events": 3,
                "events_max": 128,
                "lifecycle": 1,
                "actions": 0,
                "actions_max": 128,
            },
            "peers": len(rows),
            "peers_with_status": sum(1 for i in range(len(rows)) if i % 6 != 5),
            "parked": len(parked),
            "anchor": {"height": 12_000, "hash": _hash("anchor")},
            "candidate": None,
            "pending_commits": 2,
            "seen_cache": 512,
            "reorgs": 0,
            "headers_per_s": 310.5,
            "committed_total": FIXTURE_HEADER_TIP,
            # One header chain given up earlier (no peer served its bodies), its tip hash
            # refused for a while.
            "abandoned": 1,
            "unavailable": [{"height": 6_950, "hash": _hash("abandoned"), "expires_in_s": 41.5}],
        },
        "block_sync": fixture_block_sync(peers),
        "parked": [
            {
                "label": label,
                "service": "header_sync",
                "reason": "headers_response_undeliverable",
                "since": now - 42,
                "work_returned": 3,
            }
            for label in parked
        ],
        "peers": rows,
        "recently_closed": [
            {
                "label": fixture_label(900),
                "addr": "127.0.0.1:41900",
                "direction": "outbound",
                "conn_id": 900,
                "connected_at": now - 40,
                "closed_at": now - 2,
                "code": 0,
                "reason": "fault:1:disconnect",
                "by": "local",
                "bytes_in": 2048,
                "bytes_out": 1024,
            }
        ],
        "routines_summary": summary,
        "loop_lag": {"samples": 400, "p50_ms": 0.4, "p99_ms": 3.1, "max_ms": 7.9},
        "counters": {"panics": 1.0, "trace_rows_dropped": 0},
        "misbehavior": [
            {
                "time": now - 30 - i,
                "label": p["label"],
                "service": "discovery",
                "reason": "unsolicited_peers",
                "action": "disconnected",
            }
            for i, p in enumerate(misbehaving)
        ],
        "misbehavior_tally": [
            {"service": "discovery", "reason": "unsolicited_peers", "count": len(misbehaving)}
        ],
        "journal_seq": seq,
        "diagnostics": fixture_diagnostics(peers, now),
        "diagnostic_thresholds": DiagnosticThresholds().to_dict(),
    }


def fixture_diagnostics(peers: int, now: float) -> list[DiagnosticRow]:
    """A critical and a warning diagnostic, so the Diagnostics view and the status bar's
    count show both severities: the header tip behind idle peers, a window at its floor."""
    rows: list[DiagnosticRow] = [
        {
            "id": "header_tip_behind",
            "severity": "critical",
            "subject": "node",
            "since": now - 37,
            "message": f"header tip {FIXTURE_HEADER_TIP} is behind the tip {FIXTURE_TARGET} a "
            "peer advertises and peers that have it are idle: see the refused headers and "
            "the candidate branch in the Overview's header-sync panel, and each peer's fork "
            "search in the peer detail",
        }
    ]
    if peers > 3:
        label = fixture_label(3)
        rows.append(
            {
                "id": "window_floor",
                "severity": "warning",
                "subject": label,
                "since": now - 95,
                "message": f"block-sync window of {label} sits at its floor (4 blocks) with "
                "requests outstanding: the peer is slow, throttled or losing requests; see its "
                "window, RTT and reliability in the peer detail (2, enter) and its throttle in "
                "the Peers view",
            }
        )
    return rows


def fixture_journal(snapshot: Snapshot, count: int = 40) -> list[JournalRow]:
    """Journal rows consistent with ``snapshot``, seeded so they never change."""
    rng = random.Random(7)
    now = float(snapshot["generated_at"])
    labels = [p["label"] for p in snapshot["peers"]] or [None]
    kinds: list[tuple[str, str, str | None, dict[str, Any]]] = [
        ("conn", "accepted", None, {"direction": "outbound"}),
        ("routine", "started", "discovery", {"generation": 3}),
        ("handshake", "control.succeeded", None, {"role": "initiator"}),
        ("routine", "exited", "discovery", {"cause": "normal", "reason": "stream_reset"}),
        (
            "misbehavior",
            "recorded",
            "discovery",
            {"reason": "unsolicited_peers", "action": "disconnected"},
        ),
        ("conn", "closed.neutral", None, {"reason": "fault:1:disconnect", "code": 0}),
        ("fault", "injected", None, {"kind": "disconnect", "fault_id": 1}),
    ]
    seq0 = int(snapshot["journal_seq"]) - count
    rows: list[JournalRow] = []
    for n in range(count):
        table, event, service, fields = kinds[rng.randrange(len(kinds))]
        rows.append(
            {
                "seq": seq0 + n + 1,
                "mono": 1000.0 + n,
                "wall": now - (count - n) * 1.5,
                "table": table,
                "event": event,
                "peer": labels[rng.randrange(len(labels))],
                "service": service,
                "fields": dict(fields),
            }
        )
    return rows


@dataclass
class FixtureClient:
    """Serves one fixed snapshot and journal; actions succeed without changing anything."""

    peers: int = 6
    read_only: bool = False

    def __post_init__(self) -> None:
        self.policy = ActionPolicy(read_only=self.read_only)
        self._snapshot = fixture_snapshot(self.peers)
        self._journal = fixture_journal(self._snapshot)
        self.actions: list[ActionRequest] = []

    @property
    def description(self) -> str:
        return "fixture data"

    async def snapshot(self) -> Snapshot:
        return self._snapshot

    async def journal_since(self, seq: int, limit: int = 500) -> list[JournalRow]:
        return [r for r in self._journal if r["seq"] > seq][-limit:]

    async def act(self, request: ActionRequest) -> ActionResult:
        try:
            self.policy.check(request.kind)
        except ActionRefused as exc:
            return ActionResult(False, str(exc))
        self.actions.append(request)
        return ActionResult(True, f"{request.describe()}: fixture (no effect)", len(self.actions))


def fixture_history(peers: int = 6, *, seconds: float = 1800.0, interval: float = 2.0) -> History:
    """``seconds`` of chart history up to just before :data:`FIXTURE_NOW`, one row every
    ``interval``, ending on the values :func:`fixture_snapshot` shows, so the Charts view has
    something to draw: header sync climbing to 12,400 with block sync behind it, a download
    rate that dips while a peer is slow, a peer parked half-way and some churn, two loop-lag
    spikes, the byte budget filling towards its limit. Seeded: the same every time."""
    rng = random.Random(11)
    rows = round(seconds / interval)
    history = History(rows + 1)
    history.node_id = fixture_snapshot(0)["node"]["id"]
    with_status = peers - peers // 6
    for n in range(rows):
        f = (n + 1) / rows  # 0 -> 1 over the history
        t = FIXTURE_NOW - (rows - n) * interval
        dip = 0.35 if 0.55 < f < 0.7 else 1.0
        blocks = max(0.0, 85.0 * dip * (0.8 + 0.4 * rng.random()) * min(1.0, 4 * f))
        p99 = 3.1 + 2.0 * rng.random() + (38.0 if n in (rows // 4, rows * 3 // 4) else 0.0)
        values = {
            "header_tip": FIXTURE_HEADER_TIP * min(1.0, 0.15 + f),
            "verified_tip": FIXTURE_VERIFIED * f**1.5,
            "blocks_per_s": blocks,
            "mb_per_s": blocks * 0.08,
            "peers": float(min(peers, 2 + n // 20)),
            "peers_with_status": float(min(with_status, 1 + n // 25)),
            "peers_parked": 1.0 if f > 0.5 else 0.0,
            "peers_left": 1.0 if rng.random() < 0.04 else 0.0,
            "lag_p50_ms": 0.3 + 0.2 * rng.random(),
            "lag_p99_ms": p99,
            "budget_reserved_mib": min(41.0, 64.0 * f * (0.7 + 0.3 * rng.random())),
            "budget_max_mib": 64.0,
        }
        history.add(Sample(t, tuple(values[name] for name in FIELDS)))
    return history
