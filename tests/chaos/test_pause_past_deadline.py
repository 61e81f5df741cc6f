"""scenarios/pause-resume.toml does what it says: a peer SIGSTOPped past the idle timeout is
closed as idle by every other node while it is paused, and rejoins and converges once resumed.

``zakura chaos run`` (tests/chaos/test_chaos_run.py) only sees the invariants; the point of
this scenario is the liveness deadline, which no invariant names, so this test runs the same
file on a :class:`Cluster` and reads the merged journal. Real processes; every wait is on a
condition with a deadline, and the only times compared are the journal's own wall clock
against the timeline's (when the pause and the resume were done).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from zakura.chaos.cluster import Cluster, JournalRow
from zakura.chaos.invariants import assert_holds, check_cluster
from zakura.chaos.nemesis import run_steps
from zakura.chaos.scenario import INVARIANT_NAMES, load

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "pause-resume.toml"


def idle_closes(rows: list[JournalRow], label: str) -> list[JournalRow]:
    """Connections to ``label`` some node closed itself for idleness."""
    return [
        r
        for r in rows
        if (r["table"], r["event"]) == ("conn", "closed.neutral")
        and r["peer"] == label
        and r["fields"].get("reason") == "idle_timeout"
        and r["fields"].get("by") == "local"
    ]


@pytest.mark.timeout(180)
async def test_a_peer_paused_past_the_idle_timeout_is_closed_then_rejoins() -> None:
    scenario = load(SCENARIO)
    idle = scenario.cluster.idle_timeout
    (pause,) = [s for s in scenario.steps if s.fault == "pause"]
    assert idle is not None and pause.duration is not None
    # Past the deadline with room: a close comes at most a third of the timeout after it.
    assert pause.duration > 2 * idle
    (paused,) = pause.target
    assert isinstance(paused, int)

    async with Cluster(**scenario.cluster.kwargs()) as c:
        others = [i for i in range(c.size) if i != paused]
        snaps = await c.connected(30)
        # Every connection runs on the short timeout the nodes were started with.
        assert {p["limits"]["idle_timeout_ms"] for s in snaps.values() for p in s["peers"]} == {
            round(idle * 1000)
        }
        await c.converged(scenario.converge_timeout)

        outcomes = await run_steps(c, scenario.schedule())
        assert [(o.phase, o.ok) for o in outcomes] == [("apply", True), ("undo", True)]
        await c.connected(30)  # it redialed (or was redialed) after the resume
        await c.converged(scenario.converge_timeout)

        paused_at, resumed_at = (r.at for r in c.timeline if r.node == paused)
        assert [r.fault for r in c.timeline if r.node == paused] == ["pause", "resume"]
        rows = await c.journal()
        closes = idle_closes(rows, c.label(paused))
        during = {r["node"] for r in closes if paused_at < r["wall"] < resumed_at}
        assert during == set(others), [(r["node"], r["wall"]) for r in closes]
        # Nobody else idled out: the running nodes kept each other alive with PINGs.
        assert not [r for o in others for r in idle_closes(rows, c.label(o)) if r["node"] != paused]

        wanted = {INVARIANT_NAMES[n] for n in scenario.invariants}
        assert_holds(ch for ch in await check_cluster(c) if ch.invariant in wanted)
