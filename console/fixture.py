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
from console.policy import ActionPolicy, ActionRefused

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


#: The fixture chain: mid header sync, nothing verified yet.
FIXTURE_HEADER_TIP = 12_400
FIXTURE_TARGET = 20_000


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
        "routines": [_routine(i, now), _header_sync_routine(i, now)],
        "misbehavior_count": 1 if i % 7 == 3 else 0,
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
        "schema": 1,
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
            "verified_tip": {"height": 0, "hash": _hash("genesis")},
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
        },
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
    }


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
