"""Pilot tests of the Peers view and the peer detail, over deterministic fixture data.

The fixture documents follow the real snapshot schema; :class:`SteppingClient` serves a new
document on every poll (bytes grow, peers come and go) so refresh behaviour can be checked
frame by frame. Polls are driven by hand (``await app.poll()``) with the app's own timer set
far in the future, so nothing moves unless the test moves it.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from typing import Any

from consolekit import assert_drawn, until
from rich.console import Console
from textual.pilot import Pilot

from console.app import ZakuraConsole
from console.client import ActionRequest, ActionResult, JournalRow, Snapshot
from console.fixture import (
    FIXTURE_NOW,
    FixtureClient,
    fixture_label,
    fixture_peer,
    fixture_snapshot,
)
from console.format import rate_text
from console.screens.modals import ConfirmScreen, PickServiceScreen
from console.screens.peer_detail import PeerDetailScreen
from console.screens.peers import PeersScreen
from console.widgets.peer_rows import RATE_WINDOW_S
from console.widgets.peer_table import PeerTable

SIZE = (140, 40)
NO_TIMER = 3600.0  # the app's own poll timer never fires during a test


class SteppingClient:
    """Serves the current snapshot; :meth:`step` makes the next one (a new document)."""

    read_only = False
    description = "stepping fixture"

    def __init__(self, peers: int = 8) -> None:
        self.next_index = peers
        self.current: Snapshot = fixture_snapshot(peers)
        self.current["recently_closed"] = []

    async def snapshot(self) -> Snapshot:
        return self.current

    async def journal_since(self, seq: int, limit: int = 500) -> list[JournalRow]:
        return []

    async def act(self, request: ActionRequest) -> ActionResult:
        return ActionResult(False, "the stepping client does not act")

    def step(
        self,
        *,
        grow: dict[str, int] | None = None,
        add: int = 0,
        remove: tuple[str, ...] = (),
        close: tuple[str, ...] = (),
    ) -> Snapshot:
        """Next frame, 0.25 s later: ``grow`` adds bytes in per label, ``add`` new peers,
        ``remove`` drops peers silently, ``close`` drops them into ``recently_closed``."""
        snap = copy.deepcopy(self.current)
        now = float(snap["generated_at"]) + 0.25
        snap["generated_at"] = now
        for peer in snap["peers"]:
            peer["bytes_in"] += (grow or {}).get(peer["label"], 0)
        for peer in [p for p in snap["peers"] if p["label"] in close]:
            snap["recently_closed"].append(
                {
                    "label": peer["label"],
                    "addr": peer["addr"],
                    "direction": peer["direction"],
                    "conn_id": peer["conn_id"],
                    "connected_at": peer["connected_at"],
                    "closed_at": now,
                    "code": 0,
                    "reason": "fault:7:disconnect",
                    "by": "local",
                    "bytes_in": peer["bytes_in"],
                    "bytes_out": peer["bytes_out"],
                }
            )
        gone = set(remove) | set(close)
        snap["peers"] = [p for p in snap["peers"] if p["label"] not in gone]
        for _ in range(add):
            snap["peers"].append(fixture_peer(self.next_index, FIXTURE_NOW))
            self.next_index += 1
        self.current = snap
        return snap


async def open_peers(pilot: Pilot[Any]) -> PeerTable:
    app = pilot.app
    assert isinstance(app, ZakuraConsole)
    await until(pilot, lambda: app.state.snapshot is not None, "the first frame")
    await pilot.press("2")
    await until(pilot, lambda: isinstance(app.screen, PeersScreen), "the Peers view")
    table = app.screen.query_one(PeerTable)
    await until(pilot, lambda: table.row_count > 0, "rows")
    return table


async def poll(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, ZakuraConsole)
    await app.poll()
    await pilot.pause()


def text_of(widget: Any) -> str:
    """The plain text a ``Static`` shows, whatever renderable it holds."""
    console = Console(width=SIZE[0], file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(widget.content)
    return capture.get()


def column(table: PeerTable, key: str) -> int:
    return [s.key for s in table.specs].index(key)


def live_labels(snap: Snapshot) -> list[str]:
    return [p["label"] for p in snap["peers"]]


async def test_one_row_per_peer_and_recently_closed_dimmed() -> None:
    client = FixtureClient(peers=6)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_peers(pilot)
        snap = await client.snapshot()
        closed = snap["recently_closed"][0]["label"]
        assert set(table.row_labels()) == {*live_labels(snap), closed}
        assert table.live_count == 6 and table.closed_count == 1
        cells = table.rendered_cells(closed)
        assert cells is not None
        assert cells[-1] == ("fault:1:disconnect", "italic dim")
        assert all("dim" in style for _text, style in cells[:1])
        first = snap["peers"][0]
        row = table.rendered_cells(first["label"])
        assert row is not None
        # The label without its constant "peer:" prefix (the 16 hex digits tell peers apart).
        assert row[column(table, "label")][0] == first["label"].removeprefix("peer:")
        assert row[column(table, "addr")][0] == first["addr"]
        assert row[column(table, "svc:discovery")][0] == "●1"  # running, generation 1
        # The cursor on the closed row: no action target.
        table.move_cursor(row=table.get_row_index(closed))
        await pilot.pause()
        assert app.screen.query_one(PeerTable).cursor_label() == closed
        assert app.selected_peer() is None
        table.move_cursor(row=0)
        await pilot.pause()
        assert app.selected_peer() == table.row_labels()[0]


async def test_closed_rows_expire_on_snapshot_time() -> None:
    client = SteppingClient(peers=4)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_peers(pilot)
        leaving = live_labels(client.current)[1]
        client.step(close=(leaving,))
        await poll(pilot)
        assert leaving in table.row_labels() and table.selected_label() != leaving
        for _ in range(19):  # 4.75 s of snapshot time later: still shown
            client.step()
            await poll(pilot)
        assert leaving in table.row_labels()
        client.step()
        client.step()
        await poll(pilot)  # 5.25 s: gone
        assert leaving not in table.row_labels()


async def test_filter_narrows_and_escape_restores() -> None:
    client = FixtureClient(peers=10)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_peers(pilot)
        everything = set(table.row_labels())
        target = live_labels(await client.snapshot())[5]
        await pilot.press("slash")
        await pilot.press(*target[5:12])
        await pilot.pause()
        assert table.row_labels() == [target]
        assert "filter" in text_of(app.screen.query_one("#peers-summary"))
        await pilot.press("escape")
        await pilot.pause()
        assert set(table.row_labels()) == everything
        assert_drawn(table)
        # Direction and routine state are searchable too.
        await pilot.press("slash", *"inbound", "enter")
        await pilot.pause()
        snap = await client.snapshot()
        inbound = {p["label"] for p in snap["peers"] if p["direction"] == "inbound"}
        assert set(table.row_labels()) == inbound
        assert table.has_focus  # Enter went back to the table, the filter stays
        await pilot.press("escape")
        await pilot.press("slash", *"panicked")
        await pilot.pause()
        panicked = {p["label"] for p in snap["peers"] if p["routines"][0]["state"] == "panicked"}
        assert panicked and set(table.row_labels()) == panicked


async def test_sort_keys_and_header_click_change_order() -> None:
    client = FixtureClient(peers=8)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_peers(pilot)
        by_conn = table.row_labels()
        assert table.sort_column == "conn" and not table.sort_reverse
        await pilot.press("O")
        await pilot.pause()
        assert table.row_labels() == list(reversed(by_conn))
        await pilot.press("o")  # conn -> address
        await pilot.pause()
        assert table.sort_column == "addr" and not table.sort_reverse
        # Clicking the "label" header sorts by label; clicking again reverses.
        await pilot.click(PeerTable, offset=(3, 0))
        await pilot.pause()
        assert table.sort_column == "label"
        assert table.row_labels() == sorted(by_conn)
        await pilot.click(PeerTable, offset=(3, 0))
        await pilot.pause()
        assert table.row_labels() == sorted(by_conn, reverse=True)
        assert_drawn(table)
        assert "label ▼" in text_of(app.screen.query_one("#peers-summary"))


async def test_selection_follows_the_peer_across_refreshes_and_resorts() -> None:
    client = SteppingClient(peers=8)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_peers(pilot)
        await pilot.press("down", "down", "down")
        await pilot.pause()
        chosen = table.cursor_label()
        assert chosen is not None and table.cursor_row == 3
        table.sort_by("in")
        await pilot.pause()
        labels = live_labels(client.current)
        indexes = set()
        steps: list[Callable[[], Snapshot]] = [
            lambda: client.step(grow={labels[0]: 10_000_000}),  # moves to the bottom
            lambda: client.step(add=2),
            lambda: client.step(remove=(labels[1],)),
            lambda: client.step(grow={chosen: 50_000_000}),  # the chosen peer moves
            lambda: client.step(close=(labels[2],), add=1),
        ]
        for make in steps:
            make()
            await poll(pilot)
            assert table.cursor_label() == chosen
            assert app.selected_peer() == chosen
            indexes.add(table.cursor_row)
            assert_drawn(table)
        assert len(indexes) > 1  # the row moved, and the cursor moved with it
        # When the selected peer leaves for good, the cursor keeps its row index.
        index = table.cursor_row
        client.step(remove=(chosen,))
        await poll(pilot)
        assert chosen not in table.row_labels()
        assert table.cursor_row == min(index, table.row_count - 1)


async def test_pause_freezes_rows() -> None:
    client = SteppingClient(peers=6)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_peers(pilot)

        def frame() -> list[tuple[str, Any]]:
            return [(label, table.rendered_cells(label)) for label in table.row_labels()]

        before = frame()
        await pilot.press("space")
        await pilot.pause()
        assert app.state.paused
        assert "PAUSED" in text_of(app.screen.query_one("StatusBar"))
        first = live_labels(client.current)[0]
        client.step(grow={first: 123_456}, add=1)
        await poll(pilot)
        await poll(pilot)
        assert frame() == before
        await pilot.press("space")  # resuming polls at once
        await until(pilot, lambda: frame() != before, "rows to change after resuming")
        assert len(table.row_labels()) == len(before) + 1


async def test_enter_opens_detail_and_escape_returns() -> None:
    client = SteppingClient(peers=6)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_peers(pilot)
        await pilot.press("down", "down")
        label = table.cursor_label()
        assert label is not None
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PeerDetailScreen), "the detail")
        detail = app.screen
        assert isinstance(detail, PeerDetailScreen)
        assert detail.label == label and app.selected_peer() == label
        header = text_of(detail.query_one("#detail-header"))
        assert label in header and "limits" in header
        routines = text_of(detail.query_one("#detail-routines-body"))
        assert "discovery" in routines and "running" in routines
        # Live: the routine panics in the next frame and the view says so.
        peer = next(p for p in client.current["peers"] if p["label"] == label)
        client.step()
        for p in client.current["peers"]:
            if p["label"] == peer["label"]:
                p["routines"][0].update(
                    state="panicked", exit_cause="panic", exit_error="InjectedPanic('x')"
                )
        await poll(pilot)
        routines = text_of(detail.query_one("#detail-routines-body"))
        assert "panicked" in routines and "InjectedPanic" in routines
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, PeersScreen), "back to Peers")
        assert app.screen.query_one(PeerTable).cursor_label() == label


async def test_only_changed_cells_are_written() -> None:
    client = SteppingClient(peers=20)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_peers(pilot)
        calls: list[tuple[str, str]] = []

        async def frame() -> None:
            await poll(pilot)
            calls.extend(table.last_written)

        # Fill the rate window, so every peer's rate is settled (0) before the burst.
        for _ in range(int(RATE_WINDOW_S / 0.25) + 1):
            client.step()
            await frame()
        calls.clear()
        added, sorts = table.rows_added, table.sorts
        busy = live_labels(client.current)[7]
        client.step(grow={busy: 4096})
        await frame()
        assert calls == [(busy, "in_rate")]  # the byte total is in the detail, not a column
        cells = table.rendered_cells(busy)
        assert cells is not None
        # Averaged over the window, with its unit.
        assert cells[column(table, "in_rate")][0] == rate_text(4096 / RATE_WINDOW_S) == "1.0K/s"
        assert table.rows_added == added and table.sorts == sorts  # sorted by conn: no change
        assert_drawn(table)
        # Smoothed: while the burst is inside the window the rate holds, so the frames after
        # it write nothing at all (per-frame deltas made it jump back to 0 at once).
        calls.clear()
        for _ in range(int(RATE_WINDOW_S / 0.25) - 1):
            client.step()
            await frame()
        assert calls == []
        client.step()  # the burst leaves the window
        await frame()
        assert calls == [(busy, "in_rate")]
        cells = table.rendered_cells(busy)
        assert cells is not None and cells[column(table, "in_rate")][0] == "0B/s"
        calls.clear()
        await frame()  # the same document again
        assert calls == []


async def test_columns_follow_new_services() -> None:
    """A later service (header_sync) gets its own glyph column without losing the cursor."""
    client = SteppingClient(peers=5)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_peers(pilot)
        await pilot.press("down", "down")
        chosen = table.cursor_label()
        client.step()
        for p in client.current["peers"]:
            p["routines"].append(
                dict(p["routines"][0], service="header_sync", state="parked", generation=3)
            )
        await poll(pilot)
        assert table.services == ("discovery", "header_sync", "block_sync")
        cells = table.rendered_cells(fixture_label(0))
        assert cells is not None and cells[column(table, "svc:header_sync")] == ("◐3", "yellow")
        assert table.cursor_label() == chosen


async def test_refresh_benchmark_leaves_the_table_equal_to_the_document() -> None:
    """The benchmark's own correctness check passes (figures are never asserted, §9)."""
    from bench.console_refresh import run_frames

    run = await run_frames(2)
    assert run["rows_at_end"] == 1000
    assert len(run["steady_s"]) == len(run["idle_s"]) == 2
    assert all(n > 0 for n in run["cells_written"])


async def test_d_and_p_on_the_detail_act_on_its_peer() -> None:
    client = FixtureClient(peers=6)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_peers(pilot)
        await pilot.press("down", "down")
        label = table.cursor_label()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PeerDetailScreen), "the detail")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        assert label is not None and label in app.screen.title_text  # type: ignore[attr-defined]
        await pilot.press("y")
        await until(pilot, lambda: len(client.actions) == 1, "the disconnect")
        assert client.actions[0] == ActionRequest("disconnect", label)
        await until(pilot, lambda: isinstance(app.screen, PeerDetailScreen), "back on the detail")
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, PickServiceScreen), "the picker")
        await pilot.press("down", "up", "enter")  # the first routine, wherever it starts
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: len(client.actions) == 2, "the panic")
        assert client.actions[1] == ActionRequest("panic", label, "discovery")
