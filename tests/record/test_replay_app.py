"""``zakura replay`` in the real app (Pilot), over a recording of real nodes with faults
injected: the view at a seek position shows the snapshot the node had then, the marks land
on the injected faults, the replay keys move the position, and actions are refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from console.replay import REFUSAL, ReplayClient
from console.replay_app import ReplayConsole
from console.replay_fixture import write_fixture_recording
from console.screens.peers import PeersScreen
from console.widgets.timeline import TimelineBar
from node_core.node import Node, NodeConfig
from node_core.observe.record_reader import Recording
from node_core.observe.record_writer import NodeSource, Recorder, RecordWriter

SIZE = (140, 40)


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Re-check ``cond`` as the loop runs; the deadline only stops a broken run."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@dataclass
class Session:
    """A recording of a real hub node, and what the recorder read for each frame."""

    path: Path
    hub: Node
    frames: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    fault_walls: dict[str, float] = field(default_factory=dict)


class Capturing(NodeSource):
    """The node as the recorder reads it, keeping each snapshot it handed over."""

    def __init__(self, node: Node, session: Session) -> None:
        super().__init__(node)
        self.session = session
        self.last: dict[str, Any] | None = None

    async def snapshot(self) -> dict[str, Any]:
        self.last = await super().snapshot()
        return self.last


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[Session]:
    nodes: list[Node] = []

    async def start(name: str, **kw: Any) -> Node:
        node = Node(NodeConfig(data_dir=tmp_path / name, **kw))
        await node.start()
        nodes.append(node)
        return node

    try:
        hub = await start("hub", allow_faults=True, target_peers=2)
        boot = (("127.0.0.1", hub.transport.listen_port),)
        leaves = [await start(f"leaf{i}", bootstrap=boot, target_peers=1) for i in range(2)]
        await wait_until(lambda: len(hub.transport.peers) == 2, "both leaves connected")
        s = Session(tmp_path / "hub.zrec", hub)
        source = Capturing(hub, s)
        writer = RecordWriter(s.path)
        stamps: list[float] = []

        def clock() -> float:
            stamps.append(time.time())
            return stamps[-1]

        recorder = Recorder(source, writer, 0.25, clock=clock)

        async def frames(n: int) -> None:
            for _ in range(n):
                await recorder.tick()
                assert source.last is not None
                s.frames.append((stamps[-1], source.last))
                # Frames at distinct times: wait for the clock to move (no fixed sleep).
                await wait_until(lambda: time.time() > stamps[-1] + 0.01, "the clock to move")

        await frames(3)
        since = hub.journal.last_seq
        await hub.faults.panic(leaves[0].label, "discovery")
        await frames(3)
        await hub.faults.disconnect(leaves[1].label)
        await frames(3)
        for e in hub.journal.since(since):
            if e.table == "fault" and e.event == "injected":
                s.fault_walls.setdefault(str(e.fields["kind"]), e.wall)
            if e.table == "routine" and e.event == "panicked":
                s.fault_walls.setdefault("panicked", e.wall)
        writer.close()
        yield s
    finally:
        await asyncio.gather(*(n.stop() for n in nodes))


def test_the_recording_holds_exactly_what_the_node_served(session: Session) -> None:
    rec = Recording(session.path)
    assert list(rec.snapshots()) == session.frames
    assert {"panic", "disconnect", "panicked"} <= set(session.fault_walls)


async def test_the_view_at_a_seek_position_is_the_recorded_snapshot(session: Session) -> None:
    client = ReplayClient.open(session.path)
    app = ReplayConsole(client, play=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        for i in (7, 1, 4, 0, 8):  # backwards and forwards
            t, snap = session.frames[i]
            app.seek_to(t + 0.001)
            await app.poll()
            await pilot.pause()
            assert app.state.snapshot == snap
            screen = app.screen
            assert isinstance(screen, PeersScreen)
            shown = set(screen.table.row_labels())
            assert {p["label"] for p in snap["peers"]} <= shown
            # The journal holds the rows written up to that moment, and none after it.
            walls = [float(r["wall"]) for r in app.state.journal]
            assert walls and max(walls) <= t + 0.001
            assert len(walls) == client.visible_rows(t + 0.001)


async def test_marks_land_on_the_injected_faults(session: Session) -> None:
    client = ReplayClient.open(session.path)
    kinds = [(m.kind, m.t) for m in client.marks]
    walls = session.fault_walls
    assert ("fault", walls["panic"]) in kinds
    assert ("fault", walls["disconnect"]) in kinds
    assert ("panic", walls["panicked"]) in kinds
    app = ReplayConsole(client, play=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.poll()
        await pilot.pause()
        await app.poll()
        await pilot.pause()
        bar = app.screen.query_one(TimelineBar)
        line = str(bar.render()).split("\n")[0]
        width, start, end = len(line), client.clock.start, client.clock.end

        def column(t: float) -> int:
            return round((t - start) / (end - start) * (width - 1))

        assert line[column(walls["panicked"])] == "P"  # the panic wins its cell over a fault
        assert line[column(walls["disconnect"])] == "F"
        # n jumps to each mark in turn; the journal then ends with the marked row.
        for mark in client.marks:
            await pilot.press("n")
            await app.poll()
            await pilot.pause()
            assert client.clock.position == mark.t
            assert any(
                float(r["wall"]) == mark.t and r["table"] in ("fault", "routine")
                for r in app.state.journal
            )
        await pilot.press("N")
        assert client.clock.position < client.marks[-1].t


async def test_actions_are_refused(tmp_path: Path) -> None:
    client = ReplayClient.open(write_fixture_recording(tmp_path / "f.zrec", seconds=10))
    app = ReplayConsole(client, play=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await app.poll()
        await pilot.pause()
        await pilot.press("2", "down", "d")
        await pilot.pause()
        said = [n.message for n in app._notifications]
        assert REFUSAL.format(what="disconnect") in said
        assert isinstance(app.screen, PeersScreen)  # no confirmation was asked
    from node_core.control import Action

    result = await client.act(Action("disconnect", "peer:00"))
    assert not result.ok and "cannot be acted on" in result.message


async def test_replay_keys_play_seek_speed_and_go_to(tmp_path: Path) -> None:
    client = ReplayClient.open(write_fixture_recording(tmp_path / "f.zrec", seconds=120))
    clock = client.clock
    app = ReplayConsole(client, play=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.poll()
        await pilot.press("2")  # the Peers table has the focus: arrows still seek
        await pilot.press("right", "right", "shift+right")
        assert clock.position == clock.start + 70
        await pilot.press("left")
        assert clock.position == clock.start + 65
        await pilot.press("greater_than_sign", "greater_than_sign")
        assert clock.speed == 4.0
        await pilot.press("less_than_sign")
        assert clock.speed == 2.0
        await pilot.press("g")
        await pilot.pause()
        await pilot.press(*"1:30", "enter")
        await pilot.pause()
        assert clock.position == clock.start + 90
        await pilot.press("g")
        await pilot.press(*"+15", "left", "backspace", "enter")  # arrows edit the text: +5
        await pilot.pause()
        assert clock.position == clock.start + 95
        await pilot.press("space")
        assert clock.playing
        await wait_until(lambda: clock.position > clock.start + 95.2, "the replay to move")
        await pilot.press("space")
        assert not clock.playing
