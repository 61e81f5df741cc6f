"""Issue 13's replay acceptance, on ``zakura node`` processes: record two minutes of a
demo-like network with faults injected, replay it, and check the replay against what the live
console showed.

Slow on purpose (about two and a half minutes: the acceptance's stated duration). A
:class:`~zakura.chaos.cluster.Cluster` of four node processes (a 300-block chain, node 0
mining every 5 s as the demo's miner does) runs while a live console (the real app, driven by
Pilot) watches node 0 over its control API, as ``zakura attach`` does. Every 0.25 s the test
polls the live console, and a :class:`~node_core.observe.record_writer.Recorder` records the
frame the console shows (``--record`` records the same reads). At known moments the test keeps
what the live console showed: its snapshot, the Peers view's rows and the Parked view's rows.
On node 0 it injects a panic (about 25 s in), a disconnect (55 s) and a park (85 s).

Then the replay: at each kept moment, the replay's view holds the same snapshot and its Peers
and Parked views the same rows; the timeline's marks sit at the faults' journal times and
``n`` lands on each; every action key is refused.

``test_replay_app.py`` checks the same with two in-process nodes in a few seconds (and the
replay keys); this one is the acceptance's full run on real processes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from console.app import ZakuraConsole
from console.remote import RemoteNodeClient
from console.replay import REFUSAL, ReplayClient
from console.replay_app import ReplayConsole
from console.screens.parked import ParkedScreen
from console.screens.peers import PeersScreen
from console.widgets.peer_table import PeerTable
from node_core.observe.record_reader import Recording
from node_core.observe.record_writer import Recorder, RecordWriter
from zakura.chaos.cluster import Cluster

SIZE = (140, 40)
FRAME_S = 0.25
SESSION_S = 120.0
#: When each fault is injected (seconds into the recording): peer index and what.
FAULTS = ((25.0, 1, "panic"), (55.0, 2, "disconnect"), (85.0, 3, "park"))
#: Moments (seconds in) at which the test keeps what the live console showed (and one second
#: after each fault).
KEEP_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class Shown:
    """What the live console showed at recording time ``t``."""

    t: float
    snapshot: dict[str, Any]
    peers: tuple[str, ...]
    parked: tuple[str, ...]


class ShownSource:
    """The recorder's source: the frame the live console shows now, and the journal rows
    it read, so the recording holds exactly what the operator saw."""

    def __init__(self, app: ZakuraConsole, client: RemoteNodeClient) -> None:
        self.app = app
        self.client = client

    async def snapshot(self) -> dict[str, Any]:
        snap = self.app.state.snapshot
        assert snap is not None
        return dict(snap)

    async def journal_since(self, seq: int, limit: int = 500) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self.app.state.journal
            if int(r["seq"]) > seq and int(r["seq"]) <= self.app.state.journal_seq
        ][:limit]


def peer_rows(app: ZakuraConsole) -> tuple[str, ...]:
    screen = app.screen
    assert isinstance(screen, PeersScreen)
    return tuple(sorted(screen.query_one(PeerTable).row_labels()))


def parked_rows(snapshot: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(p["label"] for p in snapshot.get("parked") or ()))


async def record_session(cluster: Cluster, path: Path) -> tuple[list[Shown], dict[str, float]]:
    """Two minutes of node 0 in a live console, recorded; faults injected on the way."""
    info = cluster.node(0)
    token = (info.data_dir / "operator.token").read_text(encoding="utf-8").strip()
    client = RemoteNodeClient(f"http://{info.api}", token)
    app = ZakuraConsole(client, refresh_interval=3600.0)  # the test drives every frame
    writer = RecordWriter(path)
    stamps: list[float] = []

    def clock() -> float:
        stamps.append(time.time())
        return stamps[-1]

    recorder = Recorder(ShownSource(app, client), writer, FRAME_S, clock=clock)
    shown: list[Shown] = []
    injected: dict[str, float] = {}
    pending = list(FAULTS)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("2")
            start = time.monotonic()
            next_keep = 2.0
            while (elapsed := time.monotonic() - start) < SESSION_S:
                await app.poll()
                await pilot.pause()
                await recorder.tick()
                if elapsed >= next_keep:
                    snap = app.state.snapshot
                    assert snap is not None
                    shown.append(Shown(stamps[-1], snap, peer_rows(app), parked_rows(snap)))
                    next_keep += KEEP_EVERY_S
                if pending and elapsed >= pending[0][0]:
                    _at, peer, kind = pending.pop(0)
                    act = getattr(cluster, kind)
                    await act(0, peer)
                    injected[kind] = time.monotonic() - start
                    next_keep = min(next_keep, injected[kind] + 1.0)  # keep what follows it
                # The recorder's pace (a live console polls at its refresh interval).
                await asyncio.sleep(max(0.0, FRAME_S - (time.monotonic() - start - elapsed)))
    finally:
        writer.close()
        await client.close()
    assert set(injected) == {kind for _t, _p, kind in FAULTS}, injected
    return shown, injected


@pytest.mark.wallclock
@pytest.mark.timeout(SESSION_S + 120)
async def test_a_replayed_two_minute_session_shows_what_the_live_console_showed(
    tmp_path: Path,
) -> None:
    """Slow (about 2.5 minutes): record, then replay and compare (see the module docstring)."""
    path = tmp_path / "session.zrec"
    async with Cluster(4, blocks=300, mine_interval=5.0) as cluster:
        await cluster.connected(60)
        shown, _injected = await record_session(cluster, path)
        rows = await cluster.journal([0])
    faults = {
        str(r["fields"]["kind"]): float(r["wall"])
        for r in rows
        if r["table"] == "fault" and r["event"] == "injected"
    }
    panicked = [
        float(r["wall"]) for r in rows if (r["table"], r["event"]) == ("routine", "panicked")
    ]
    assert set(faults) == {"panic", "disconnect", "park"}, faults
    assert panicked

    rec = Recording(path)
    assert rec.duration >= SESSION_S - 5 and rec.torn == 0
    # The faults showed on screen: the park, and connections closed by the panic and the
    # disconnect among the peers that just left.
    assert any(s.parked for s in shown)
    assert any(s.snapshot.get("recently_closed") for s in shown)
    rec.close()

    client = ReplayClient.open(path)
    marks = [(m.kind, m.t) for m in client.marks]
    for kind in ("panic", "disconnect", "park"):
        assert ("fault", faults[kind]) in marks, (kind, marks)
    assert ("panic", panicked[0]) in marks
    app = ReplayConsole(client, play=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await app.poll()
        await pilot.pause()
        for moment in shown:
            for view in ("2", "5"):
                await pilot.press(view)
                app.seek_to(moment.t)
                await app.poll()
                await pilot.pause()
                assert app.state.snapshot == moment.snapshot, moment.t - client.clock.start
                if view == "2":
                    assert peer_rows(app) == moment.peers
                else:
                    screen = app.screen
                    assert isinstance(screen, ParkedScreen)
                    assert parked_rows(app.state.snapshot) == moment.parked

        # n walks the marks; each lands on its journal row.
        app.seek_to(client.clock.start)
        await app.poll()
        for mark in client.marks:
            await pilot.press("n")
            await app.poll()
            await pilot.pause()
            assert client.clock.position == mark.t
            assert any(float(r["wall"]) == mark.t for r in app.state.journal)

        # Every action is refused, before any confirmation.
        await pilot.press("2", "down")
        for key, kind in (("d", "disconnect"), ("p", "panic"), ("k", "park"), ("w", "throttle")):
            await pilot.press(key)
            await pilot.pause()
            assert REFUSAL.format(what=kind) in [n.message for n in app._notifications]
            assert isinstance(app.screen, PeersScreen)
