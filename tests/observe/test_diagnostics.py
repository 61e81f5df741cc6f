"""The diagnostics evaluator on made-up documents and times (no loop, no node).

Each diagnostic: it does not fire before its threshold, fires at it with the ``since`` the
condition began, stays while the condition holds, and clears (and is reported cleared) once
it stops holding. Plus the ``--diag`` parser's refusals.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest

from node_core.observe.diagnostics import (
    DIAGNOSTICS,
    KNOBS,
    DiagnosticsEvaluator,
    DiagnosticThresholds,
    PanicSeen,
    knobs_help,
    parse_diag,
)
from node_core.observe.schema import Snapshot

T0 = 1_700_000_000.0


def hs_view(**over: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "queue_depth": 0,
        "queue_max": 256,
        "in_flight": None,
        "advertised_tip": 10,
        "received_status": True,
        "outstanding": [],
    }
    view.update(over)
    return view


def bs_view(**over: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "outstanding": 0,
        "accepted_blocks": 0,
        "window": {"cwnd": 16, "hard_cap": 32},
        "fill_stop": "no_work",
    }
    view.update(over)
    return view


def routine(service: str, view: dict[str, Any] | None, state: str = "running") -> dict[str, Any]:
    r: dict[str, Any] = {"service": service, "state": state, "generation": 1}
    if view is not None:
        r[service] = view
    return r


def doc(**over: Any) -> dict[str, Any]:
    """A healthy node at height 10 with two idle peers."""
    base: dict[str, Any] = {
        "chain": {"header_tip": {"height": 10, "hash": "00"}},
        "peers": [
            {
                "label": f"peer:{i}",
                "routines": [routine("header_sync", hs_view()), routine("block_sync", bs_view())],
            }
            for i in range(2)
        ],
        "parked": [],
        "loop_lag": {"samples": 100, "p50_ms": 0.5, "p99_ms": 3.0, "max_ms": 9.0},
        "header_sync": {
            "reactor": {"events": 0, "events_max": 128, "actions": 0, "actions_max": 64}
        },
        "block_sync": {"committed_total": 5, "budget_reserved": 0, "budget_max": 1000},
    }
    base.update(over)
    return base


def run(
    ev: DiagnosticsEvaluator, d: dict[str, Any], t: float, panics: list[PanicSeen] | None = None
) -> Any:
    return ev.evaluate(cast(Snapshot, d), panics or [], T0 + t)


def ids(result: Any) -> list[tuple[str, str]]:
    return [(x.id, x.subject) for x in result.active]


def test_a_healthy_node_has_no_diagnostics() -> None:
    ev = DiagnosticsEvaluator()
    for t in range(0, 600, 5):
        assert run(ev, doc(), t).active == ()


def with_peer0(service: str, view: dict[str, Any]) -> dict[str, Any]:
    d = doc()
    d["peers"] = copy.deepcopy(d["peers"])
    for r in d["peers"][0]["routines"]:
        if r["service"] == service:
            r[service] = view
    return d


def test_routine_stalled_block_sync_fires_after_stall_s_and_clears_on_progress() -> None:
    ev = DiagnosticsEvaluator(DiagnosticThresholds(stall_s=10))
    stuck = with_peer0("block_sync", bs_view(outstanding=8, accepted_blocks=3))
    assert run(ev, stuck, 0).active == ()
    assert run(ev, stuck, 9).active == ()
    result = run(ev, stuck, 10)
    assert ids(result) == [("routine_stalled", "peer:0 block_sync")]
    assert result.started[0].since == T0 and result.started[0].severity == "warning"
    assert "peer detail" in result.started[0].message
    moved = with_peer0("block_sync", bs_view(outstanding=8, accepted_blocks=4))
    result = run(ev, moved, 11)
    assert result.active == () and [c.id for c in result.cleared] == ["routine_stalled"]
    # No work outstanding is never a stall, however long nothing moves.
    ev2 = DiagnosticsEvaluator(DiagnosticThresholds(stall_s=10))
    for t in range(0, 100, 5):
        assert run(ev2, doc(), t).active == ()


def test_routine_stalled_header_sync_counts_a_queue_that_never_drains() -> None:
    ev = DiagnosticsEvaluator(DiagnosticThresholds(stall_s=5))
    run(ev, with_peer0("header_sync", hs_view(queue_depth=2)), 0)
    # The queue grows but the routine takes nothing: still no progress.
    result = run(ev, with_peer0("header_sync", hs_view(queue_depth=7)), 6)
    assert ids(result) == [("routine_stalled", "peer:0 header_sync")]
    # Drained: the condition is gone.
    assert run(ev, doc(), 7).active == ()


def test_a_parked_or_exited_routine_is_not_stalled() -> None:
    ev = DiagnosticsEvaluator(DiagnosticThresholds(stall_s=1))
    d = doc()
    d["peers"][0]["routines"] = [routine("block_sync", bs_view(outstanding=3), state="exited")]
    run(ev, d, 0)
    assert run(ev, d, 50).active == ()


def test_peer_parked_uses_the_park_time() -> None:
    ev = DiagnosticsEvaluator(DiagnosticThresholds(parked_s=60))
    parked = [{"label": "peer:1", "service": "header_sync", "reason": "queue_full", "since": T0}]
    assert run(ev, doc(parked=parked), 59).active == ()
    result = run(ev, doc(parked=parked), 60)
    assert ids(result) == [("peer_parked", "peer:1")] and result.active[0].since == T0
    assert "queue_full" in result.active[0].message
    assert [c.subject for c in run(ev, doc(), 61).cleared] == ["peer:1"]


def test_command_queue_full_at_the_percentage() -> None:
    ev = DiagnosticsEvaluator(DiagnosticThresholds(queue_pct=80))
    assert run(ev, with_peer0("header_sync", hs_view(queue_depth=204)), 0).active == ()
    result = run(ev, with_peer0("header_sync", hs_view(queue_depth=205)), 1)
    assert ("command_queue_full", "peer:0") in ids(result)
    d = doc()
    d["header_sync"] = {
        "reactor": {"events": 120, "events_max": 128, "actions": 0, "actions_max": 64}
    }
    assert ("command_queue_full", "header_sync reactor") in ids(run(ev, d, 2))


def test_loop_lag_high_is_critical_and_clears() -> None:
    ev = DiagnosticsEvaluator(DiagnosticThresholds(loop_lag_ms=100))
    lag = {"samples": 400, "p50_ms": 1.0, "p99_ms": 180.0, "max_ms": 400.0}
    result = run(ev, doc(loop_lag=lag), 0)
    assert ids(result) == [("loop_lag_high", "node")]
    assert result.active[0].severity == "critical"
    assert [c.id for c in run(ev, doc(), 1).cleared] == ["loop_lag_high"]


def test_panic_loop_counts_panics_in_the_window() -> None:
    ev = DiagnosticsEvaluator(DiagnosticThresholds(panics=3, panic_window_s=60))
    p = [PanicSeen("peer:0", "header_sync", T0 + t) for t in (0, 10, 20)]
    assert run(ev, doc(), 5, p[:1]).active == ()
    assert run(ev, doc(), 15, p[1:2]).active == ()
    result = run(ev, doc(), 25, p[2:])
    assert ids(result) == [("panic_loop", "peer:0")] and result.active[0].since == T0
    assert run(ev, doc(), 59).active != ()
    # The first panic leaves the window: two remain, under the count.
    assert [c.id for c in run(ev, doc(), 61).cleared] == ["panic_loop"]


def test_header_tip_behind_needs_an_idle_peer_that_has_the_tip() -> None:
    ev = DiagnosticsEvaluator(DiagnosticThresholds(behind_s=30))
    busy = with_peer0(
        "header_sync", hs_view(advertised_tip=50, in_flight={"start_height": 11, "count": 39})
    )
    for t in range(0, 100, 10):
        assert run(ev, busy, t).active == (), "a peer fetching the tip is progress"
    idle = with_peer0("header_sync", hs_view(advertised_tip=50))
    run(ev, idle, 100)
    assert run(ev, idle, 129).active == ()
    result = run(ev, idle, 130)
    assert ids(result) == [("header_tip_behind", "node")] and "50" in result.active[0].message
    assert run(ev, doc(), 131).active == ()


def test_budget_saturated_without_commits() -> None:
    ev = DiagnosticsEvaluator(DiagnosticThresholds(budget_pct=90, budget_s=20))
    full = {"committed_total": 5, "budget_reserved": 950, "budget_max": 1000}
    run(ev, doc(block_sync=full), 0)
    # A commit restarts the wait: full but moving is just a busy sync.
    run(ev, doc(block_sync={**full, "committed_total": 6}), 15)
    assert run(ev, doc(block_sync={**full, "committed_total": 6}), 34).active == ()
    result = run(ev, doc(block_sync={**full, "committed_total": 6}), 35)
    assert ids(result) == [("budget_saturated", "block_sync")]
    assert result.active[0].since == T0 + 15
    assert run(ev, doc(), 36).active == ()


def test_window_floor_with_requests_outstanding() -> None:
    ev = DiagnosticsEvaluator(DiagnosticThresholds(floor_s=30, stall_s=1000))
    at_floor = bs_view(outstanding=4, accepted_blocks=1, window={"cwnd": 4, "hard_cap": 32})
    run(ev, with_peer0("block_sync", at_floor), 0)
    for t in range(1, 31):
        at_floor = {**at_floor, "accepted_blocks": t}  # slow but moving: not a stall
        result = run(ev, with_peer0("block_sync", at_floor), t)
    assert ids(result) == [("window_floor", "peer:0")]
    # Idle at the floor (nothing outstanding) is a caught-up peer, not a problem.
    idle = bs_view(outstanding=0, window={"cwnd": 4, "hard_cap": 32})
    assert run(ev, with_peer0("block_sync", idle), 31).active == ()


def test_active_diagnostics_are_ordered_by_severity() -> None:
    ev = DiagnosticsEvaluator(DiagnosticThresholds(parked_s=0.1, loop_lag_ms=1))
    parked = [{"label": "peer:1", "service": "header_sync", "reason": "r", "since": T0}]
    lag = {"samples": 1, "p50_ms": 5.0, "p99_ms": 5.0, "max_ms": 5.0}
    result = run(ev, doc(parked=parked, loop_lag=lag), 1)
    assert [d.severity for d in result.active] == ["critical", "warning"]
    assert {d["id"] for d in (x.row() for x in result.active)} <= set(DIAGNOSTICS)


def test_parse_diag_sets_keys_and_refuses_bad_ones() -> None:
    t = parse_diag(["stall_s=2", "panics=5", "queue_pct=50.5"])
    assert (t.stall_s, t.panics, t.queue_pct) == (2.0, 5, 50.5)
    assert t.parked_s == DiagnosticThresholds().parked_s
    for bad, says in (
        ("stall", "KEY=VALUE"),
        ("nope=1", "KEY=VALUE"),
        ("stall_s=x", "a number"),
        ("panics=1.5", "whole number"),
        ("queue_pct=150", "from 1 to 100"),
    ):
        with pytest.raises(ValueError, match=says):
            parse_diag([bad])


def test_every_knob_is_a_threshold_field_listed_in_help() -> None:
    text = knobs_help()
    defaults = DiagnosticThresholds().to_dict()
    assert [k.key for k in KNOBS] == list(defaults)
    for knob in KNOBS:
        assert knob.key in text and knob.diagnostic in DIAGNOSTICS
