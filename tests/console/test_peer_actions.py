"""The ``d``, ``p``, ``k``, ``s`` and ``w`` keys against a real in-process node with real peers.

A hub node (faults allowed, target 3) and three leaf nodes bootstrapped to it run in this
test's loop; the console attaches to the hub through :class:`InProcessClient`. The tests
press the real keys (``2``, arrows, ``d``/``p``/``k``/``s``/``w``, ``y``) and check what the
hub's journal and connections say happened: exactly the chosen peer's connection closed
(``d``, ``p``), its header or block sync parked or stalled with the connection kept (``k``,
``s``), or its connection throttled and the throttle lifted (``w``), and the other two
untouched.

A disconnected leaf redials the hub about a second later (its bootstrap redial), so "the
others stay" is checked by connection id, and the victim's row by its close reason or by a
new connection id, whichever the frame caught.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from consolekit import wait_until
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Input, RadioSet

from console.app import ZakuraConsole
from console.client import ActionRequest, InProcessClient
from console.format import STATE_GLYPHS
from console.screens.modals import ConfirmScreen, PickServiceScreen, StallScreen, ThrottleScreen
from console.screens.parked import ParkedScreen
from console.screens.peers import PeersScreen
from console.widgets.parked_table import ParkedTable
from console.widgets.peer_table import PeerTable
from node_core.faults import FaultInjector
from node_core.node import Node, NodeConfig

#: ``k`` and ``s`` need the node side of header sync (``FaultInjector.park`` / ``stall``).
needs_header_sync_faults = pytest.mark.skipif(
    not (hasattr(FaultInjector, "park") and hasattr(FaultInjector, "stall")),
    reason="the node side of header sync (faults.park/stall) has not landed",
)

#: ``s`` on block_sync and ``w`` need the node side of block sync (``stall(..., "block_sync")``
#: and ``FaultInjector.throttle``).
needs_block_sync_faults = pytest.mark.skipif(
    not hasattr(FaultInjector, "throttle"),
    reason="the node side of block sync (faults.throttle, block_sync stall) has not landed",
)

SIZE = (140, 40)
NO_TIMER = 3600.0  # the test polls by hand; the app's own timer stays out of the way


class RecordingConsole(ZakuraConsole):
    """The real app, remembering every notification it showed (they expire on screen)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[tuple[str, str]] = []

    def notify(self, message: str, **kwargs: Any) -> None:  # type: ignore[override]
        self.notes.append((str(message), str(kwargs.get("severity", "information"))))
        super().notify(message, **kwargs)


@pytest.fixture
async def star(tmp_path: Path) -> AsyncIterator[tuple[Node, list[Node]]]:
    """A hub with three connected leaves."""
    hub = Node(NodeConfig(data_dir=tmp_path / "hub", allow_faults=True, target_peers=3))
    nodes = [hub]
    try:
        await hub.start()
        boot = (("127.0.0.1", hub.transport.listen_port),)
        for i in range(3):
            leaf = Node(NodeConfig(data_dir=tmp_path / f"leaf{i}", bootstrap=boot, target_peers=1))
            nodes.append(leaf)
            await leaf.start()
        await wait_until(lambda: len(hub.transport.peers) == 3, "three leaves connected")
        yield hub, nodes[1:]
    finally:
        for node in nodes:
            await node.stop()


def conn_ids(hub: Node) -> dict[str, int]:
    return {p["label"]: p["conn_id"] for p in hub.snapshot()["peers"]}


def closures(hub: Node, since: int) -> list[Any]:
    """The hub's connection-closed journal events after ``since``."""
    return [
        e for e in hub.journal.since(since) if e.table == "conn" and e.event.startswith("closed")
    ]


def column(table: PeerTable, key: str) -> int:
    return [s.key for s in table.specs].index(key)


def text_of(widget: Any) -> str:
    console = Console(width=SIZE[0], file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(widget.content)
    return capture.get()


async def peers_view(pilot: Pilot[Any], row: int) -> tuple[PeerTable, str]:
    """Open the Peers view, put the cursor on ``row``; returns the table and that label."""
    app = pilot.app
    assert isinstance(app, ZakuraConsole)
    await wait_until(lambda: app.state.snapshot is not None, "the first frame")
    await pilot.press("2")
    await wait_until(lambda: isinstance(app.screen, PeersScreen), "the Peers view")
    table = app.screen.query_one(PeerTable)
    await wait_until(lambda: table.live_count == 3, "three live rows")
    for _ in range(row):
        await pilot.press("down")
    await pilot.pause()
    label = table.selected_label()
    assert label is not None
    return table, label


async def test_d_disconnects_exactly_the_selected_peer(star: tuple[Node, list[Node]]) -> None:
    hub, _leaves = star
    app = RecordingConsole(InProcessClient(hub), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table, victim = await peers_view(pilot, 1)
        before = conn_ids(hub)
        since = hub.journal.last_seq
        await pilot.press("d")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert victim in confirm.title_text  # the modal names its target
        await pilot.press("y")
        await wait_until(
            lambda: any("connection_closed" in note for note, _ in app.notes), "the effect"
        )
        closed = closures(hub, since)
        assert {e.peer for e in closed} == {victim}  # nobody else lost a connection
        mine = [e for e in closed if e.fields["conn"] == before[victim]]
        assert len(mine) == 1
        reason = str(mine[0].fields["reason"])
        assert reason.startswith("fault:") and reason.endswith(":disconnect")
        assert f"{victim}: connection_closed ({reason})" in " ".join(n for n, _ in app.notes)
        # The others were not touched: same connections, still up.
        now = conn_ids(hub)
        for label, conn in before.items():
            if label != victim:
                assert now.get(label) == conn
        # The victim's row shows the close reason: on its closed row, or, when the hub has
        # already redialled it (it does at once), as the reason its last connection ended.
        await app.poll()
        await pilot.pause()
        cells = table.rendered_cells(victim)
        assert cells is not None
        conn_cell = cells[column(table, "conn")][0]
        if conn_cell == str(before[victim]):
            assert cells[-1][0] == reason
            assert app.selected_peer() is None  # a closed row is no action target
        else:
            assert cells[-1][0] == f"↻ {reason}"
        for label in before:
            if label != victim:
                row = table.rendered_cells(label)
                assert row is not None and row[-1][0] == ""


async def test_p_panics_the_chosen_routine_of_the_selected_peer(
    star: tuple[Node, list[Node]],
) -> None:
    hub, _leaves = star
    app = RecordingConsole(InProcessClient(hub), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table, victim = await peers_view(pilot, 2)
        before = conn_ids(hub)
        since = hub.journal.last_seq
        await pilot.press("p")
        await wait_until(lambda: isinstance(app.screen, PickServiceScreen), "the routine picker")
        picker = app.screen
        assert isinstance(picker, PickServiceScreen)
        # discovery first (header_sync follows once the node runs it).
        assert picker.services[0][0] == "discovery"
        await pilot.press("down", "up", "enter")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        assert "discovery" in app.screen.title_text  # type: ignore[attr-defined]
        await pilot.press("y")
        await wait_until(
            lambda: any("routine_panicked" in note for note, _ in app.notes), "the effect"
        )
        effect = next(note for note, _ in app.notes if "routine_panicked" in note)
        assert victim in effect and "connection_closed" in effect
        events = [(e.table, e.event, e.peer) for e in hub.journal.since(since)]
        assert ("routine", "panicked", victim) in events
        closed = closures(hub, since)
        assert {e.peer for e in closed} == {victim}
        mine = [e for e in closed if e.fields["conn"] == before[victim]]
        assert len(mine) == 1 and mine[0].fields["reason"] == "panic:discovery"
        now = conn_ids(hub)
        for label, conn in before.items():
            if label != victim:
                assert now.get(label) == conn
        for peer in hub.snapshot()["peers"]:
            if peer["label"] != victim:
                states = {r["service"]: r["state"] for r in peer["routines"]}
                assert states["discovery"] == "running"
                assert "panicked" not in states.values()
        # The row: closed by the panic with ■ under discovery, or already reconnected and
        # saying why its last connection ended.
        await app.poll()
        await pilot.pause()
        cells = table.rendered_cells(victim)
        assert cells is not None
        if cells[column(table, "conn")][0] == str(before[victim]):
            assert cells[-1][0] == "panic:discovery"
            assert cells[column(table, "svc:discovery")][0].startswith(STATE_GLYPHS["panicked"])
        else:
            assert cells[-1][0] == "↻ panic:discovery"


async def test_read_only_refuses_both_actions(star: tuple[Node, list[Node]]) -> None:
    hub, _leaves = star
    app = RecordingConsole(InProcessClient(hub, read_only=True), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        _table, _victim = await peers_view(pilot, 0)
        assert "READ-ONLY" in text_of(app.screen.query_one("StatusBar"))
        before = conn_ids(hub)
        since = hub.journal.last_seq
        for key in ("d", "p"):
            app.notes.clear()
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, PeersScreen)  # no modal opened
            assert any(
                "read-only" in note and severity == "error" for note, severity in app.notes
            ), app.notes
        await pilot.pause()
        assert conn_ids(hub) == before
        assert not [e for e in hub.journal.since(since) if e.table == "fault"]


def header_sync_routine(hub: Node, label: str) -> dict[str, Any] | None:
    for peer in hub.snapshot()["peers"]:
        if peer["label"] == label:
            found = [r for r in peer["routines"] if r["service"] == "header_sync"]
            return found[-1] if found else None
    return None


def fault_events(hub: Node, since: int) -> list[tuple[str, Any, Any]]:
    return [
        (e.event, e.fields.get("kind"), e.peer)
        for e in hub.journal.since(since)
        if e.table == "fault"
    ]


async def header_sync_running(pilot: Pilot[Any], hub: Node) -> None:
    """Every peer's header_sync routine runs, and the console has a frame that says so."""

    def running() -> bool:
        labels = conn_ids(hub)
        return len(labels) == 3 and all(
            (header_sync_routine(hub, label) or {}).get("state") == "running" for label in labels
        )

    await wait_until(running, "header_sync running on every peer")
    app = pilot.app
    assert isinstance(app, ZakuraConsole)
    await app.poll()
    await pilot.pause()


@needs_header_sync_faults
async def test_k_parks_the_header_sync_of_exactly_the_selected_peer(
    star: tuple[Node, list[Node]],
) -> None:
    hub, _leaves = star
    app = RecordingConsole(InProcessClient(hub), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.state.snapshot is not None, "the first frame")
        await header_sync_running(pilot, hub)
        _table, victim = await peers_view(pilot, 1)
        before = conn_ids(hub)
        since = hub.journal.last_seq
        await pilot.press("k")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert confirm.title_text == f"Park the header_sync service of {victim}?"
        await pilot.press("y")
        await wait_until(
            lambda: any("service_parked" in note for note, _ in app.notes), "the effect"
        )
        note = next(n for n, _ in app.notes if "service_parked" in n)
        assert note.startswith(f"park the header_sync service of {victim}: service_parked (")
        # Only the victim is parked; no connection closed; the others' header sync runs on.
        snap = hub.snapshot()
        assert [p["label"] for p in snap["parked"]] == [victim]
        assert conn_ids(hub) == before
        assert not closures(hub, since)
        for label in before:
            if label != victim:
                assert (header_sync_routine(hub, label) or {}).get("state") == "running"
        assert fault_events(hub, since) == [
            ("injected", "park", victim),
            ("observed", "park", victim),
        ]
        # The Parked view lists it.
        await app.poll()
        await pilot.pause()
        await pilot.press("5")
        await wait_until(lambda: isinstance(app.screen, ParkedScreen), "the Parked view")
        await pilot.pause()
        rows = app.screen.query_one(ParkedTable).rows_shown
        assert [r[0] for r in rows] == [victim] and rows[0][1] == "header_sync"


@needs_header_sync_faults
async def test_s_stalls_header_sync_reads_of_exactly_the_selected_peer(
    star: tuple[Node, list[Node]],
) -> None:
    hub, _leaves = star
    app = RecordingConsole(InProcessClient(hub), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.state.snapshot is not None, "the first frame")
        await header_sync_running(pilot, hub)
        _table, victim = await peers_view(pilot, 2)
        before = conn_ids(hub)
        since = hub.journal.last_seq
        await pilot.press("s")
        await wait_until(lambda: isinstance(app.screen, StallScreen), "the stall modal")
        modal = app.screen
        assert isinstance(modal, StallScreen)
        assert victim in modal.title_text
        modal.query_one("#stall-seconds", Input).value = "5"
        await pilot.press("enter")
        await wait_until(
            lambda: any("reads_stalled" in note for note, _ in app.notes), "the effect"
        )
        note = next(n for n, _ in app.notes if "reads_stalled" in n)
        assert note == f"stall header_sync reads of {victim} for 5 s: reads_stalled (for=5s)"
        hs = (header_sync_routine(hub, victim) or {}).get("header_sync") or {}
        assert hs.get("stalled_for_s") is not None and 0 < hs["stalled_for_s"] <= 5
        for label in before:
            if label != victim:
                other = (header_sync_routine(hub, label) or {}).get("header_sync") or {}
                assert other.get("stalled_for_s") is None
        assert conn_ids(hub) == before  # a stall closes nothing
        assert not closures(hub, since)
        assert fault_events(hub, since) == [
            ("injected", "stall", victim),
            ("observed", "stall", victim),
        ]


@needs_header_sync_faults
async def test_read_only_refuses_k_and_s_on_a_real_node(star: tuple[Node, list[Node]]) -> None:
    hub, _leaves = star
    app = RecordingConsole(InProcessClient(hub, read_only=True), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await peers_view(pilot, 0)
        since = hub.journal.last_seq
        for key in ("k", "s"):
            app.notes.clear()
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, PeersScreen)
            assert any("read-only" in n and sev == "error" for n, sev in app.notes), app.notes
        assert not fault_events(hub, since) and not hub.snapshot()["parked"]


def routine_doc(hub: Node, label: str, service: str) -> dict[str, Any] | None:
    """The latest ``service`` routine document of ``label`` in the hub's snapshot."""
    for peer in hub.snapshot()["peers"]:
        if peer["label"] == label:
            found = [r for r in peer["routines"] if r["service"] == service]
            return found[-1] if found else None
    return None


async def block_sync_running(pilot: Pilot[Any], hub: Node) -> None:
    """Every peer's block_sync routine runs, and the console has a frame that says so."""

    def running() -> bool:
        labels = conn_ids(hub)
        return len(labels) == 3 and all(
            (routine_doc(hub, label, "block_sync") or {}).get("state") == "running"
            for label in labels
        )

    await wait_until(running, "block_sync running on every peer")
    app = pilot.app
    assert isinstance(app, ZakuraConsole)
    await app.poll()
    await pilot.pause()


@needs_block_sync_faults
async def test_s_stalls_block_sync_reads_of_exactly_the_selected_peer(
    star: tuple[Node, list[Node]],
) -> None:
    hub, _leaves = star
    app = RecordingConsole(InProcessClient(hub), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.state.snapshot is not None, "the first frame")
        await block_sync_running(pilot, hub)
        _table, victim = await peers_view(pilot, 1)
        before = conn_ids(hub)
        since = hub.journal.last_seq
        await pilot.press("s")
        await wait_until(lambda: isinstance(app.screen, StallScreen), "the stall modal")
        modal = app.screen
        assert isinstance(modal, StallScreen)
        # Choose block_sync the way an operator does: to the routines, next one, select.
        await pilot.press("shift+tab")
        assert isinstance(app.focused, RadioSet)
        await pilot.press("down", "enter")
        await wait_until(lambda: modal.service == "block_sync", "block_sync chosen")
        assert modal.title_text == f"Stall block_sync reads of {victim}?"
        modal.query_one("#stall-seconds", Input).value = "20"
        await pilot.press("tab", "enter")
        await wait_until(
            lambda: any("reads_stalled" in note for note, _ in app.notes), "the effect"
        )
        note = next(n for n, _ in app.notes if "reads_stalled" in n)
        assert note == f"stall block_sync reads of {victim} for 20 s: reads_stalled (for=20s)"
        # The node: the victim's block-sync routine (and only it) is stalled ...
        stalled = {
            key: left
            for key, routine in hub.block_sync.routines.items()
            if (left := routine.stalled_for()) is not None
        }
        assert len(stalled) == 1
        [((conn, _generation), left)] = stalled.items()
        assert conn == before[victim] and 0 < left <= 20
        bs = (routine_doc(hub, victim, "block_sync") or {}).get("block_sync") or {}
        assert bs.get("stalled_for_s") is not None and 0 < bs["stalled_for_s"] <= 20
        # ... its header sync is not, and the journal names the service.
        hs = (routine_doc(hub, victim, "header_sync") or {}).get("header_sync") or {}
        assert hs.get("stalled_for_s") is None
        faults = [e for e in hub.journal.since(since) if e.table == "fault"]
        assert [(e.event, e.fields.get("kind"), e.peer, e.service) for e in faults] == [
            ("injected", "stall", victim, "block_sync"),
            ("observed", "stall", victim, "block_sync"),
        ]
        assert faults[1].fields["effect"] == "reads_stalled"
        assert conn_ids(hub) == before  # a stall closes nothing
        assert not closures(hub, since)


@needs_block_sync_faults
async def test_w_throttles_exactly_the_selected_peer_and_0_lifts_it(
    star: tuple[Node, list[Node]],
) -> None:
    hub, _leaves = star
    app = RecordingConsole(InProcessClient(hub), refresh_interval=NO_TIMER)

    def throttles() -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for label in conn_ids(hub):
            conn = hub.transport.connection_for_label(label)
            assert conn is not None
            out[label] = conn.throttle_bytes_per_s
        return out

    async with app.run_test(size=SIZE) as pilot:
        _table, victim = await peers_view(pilot, 2)
        before = conn_ids(hub)
        assert set(throttles().values()) == {None}
        since = hub.journal.last_seq
        await pilot.press("w")
        await wait_until(lambda: isinstance(app.screen, ThrottleScreen), "the throttle modal")
        modal = app.screen
        assert isinstance(modal, ThrottleScreen)
        assert modal.title_text == f"Throttle reads from {victim}?"
        await pilot.press("enter")  # the default, 64 KiB/s
        await wait_until(
            lambda: any("reads_throttled" in note for note, _ in app.notes), "the effect"
        )
        note = next(n for n, _ in app.notes if "reads_throttled" in n)
        assert note == (
            f"throttle reads from {victim} to 64 KiB/s: reads_throttled (rate=65536B/s)"
        )
        assert throttles() == {label: 64 * 1024 if label == victim else None for label in before}
        # 0 lifts it.
        await pilot.press("w")
        await wait_until(lambda: isinstance(app.screen, ThrottleScreen), "the throttle modal")
        app.screen.query_one("#throttle-kib", Input).value = "0"
        await pilot.press("enter")
        await wait_until(
            lambda: any("throttle_lifted" in note for note, _ in app.notes), "the lift"
        )
        note = next(n for n, _ in app.notes if "throttle_lifted" in n)
        assert note == f"lift the bandwidth throttle of {victim}: throttle_lifted (off)"
        assert set(throttles().values()) == {None}
        assert [
            (e.event, e.fields.get("kind"), e.peer, e.fields.get("effect"))
            for e in hub.journal.since(since)
            if e.table == "fault"
        ] == [
            ("injected", "throttle", victim, None),
            ("observed", "throttle", victim, "reads_throttled"),
            ("injected", "throttle", victim, None),
            ("observed", "throttle", victim, "throttle_lifted"),
        ]
        assert conn_ids(hub) == before  # a throttle closes nothing
        assert not closures(hub, since)


@needs_block_sync_faults
async def test_read_only_refuses_w_on_a_real_node(star: tuple[Node, list[Node]]) -> None:
    hub, _leaves = star
    app = RecordingConsole(InProcessClient(hub, read_only=True), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        _table, victim = await peers_view(pilot, 1)
        since = hub.journal.last_seq
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, PeersScreen)  # no modal opened
        assert app.notes == [
            ("read-only console: throttle is disabled (started with --read-only)", "error")
        ]
        # The client refuses it too, whoever calls it.
        result = await app.client.act(ActionRequest("throttle", victim, rate=64.0))
        assert not result.ok and "read-only" in result.message
        assert not fault_events(hub, since)
        conn = hub.transport.connection_for_label(victim)
        assert conn is not None and conn.throttle_bytes_per_s is None
