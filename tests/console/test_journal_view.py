"""Journal view: rows, filters, follow mode, append-only frames, the cap, and a real node.

Frames are driven by ``await app.poll()`` against a scripted client whose journal grows
between polls; the last test runs two real nodes on loopback and watches their handshake.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import consolekit
import pytest
from consolekit import open_screen, plain, start, until
from textual.pilot import Pilot
from textual.widgets import Input, Static

from console.app import ZakuraConsole
from console.client import InProcessClient
from console.screens.journal import JournalScreen
from console.widgets.journal_table import JournalTable
from console.widgets.journal_view import JournalView
from node_core.node import Node, NodeConfig

SIZE = (140, 40)


class ScriptedClient(consolekit.ScriptedClient):
    """The shared scripted client, plus a burst of journal events."""

    def emit_many(self, n: int) -> None:
        """Append ``n`` events cycling through three peers, tables and services."""
        labels = [p["label"] for p in self.snap["peers"]][:3]
        kinds = [("conn", "accepted", None), ("routine", "started", "discovery")]
        kinds.append(("fault", "injected", None))
        for i in range(n):
            table, event, service = kinds[i % 3]
            self.emit(table, event, labels[i % 3], service, n=i)


async def poll_until(
    app: ZakuraConsole, pilot: Pilot[Any], cond: Callable[[], bool], what: str
) -> None:
    """Render frames of live data until ``cond`` holds (bounded)."""
    deadline = time.monotonic() + 10.0
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await app.poll()
        await pilot.pause(0.05)


async def open_journal(app: ZakuraConsole, pilot: Pilot[Any]) -> JournalTable:
    table = (await open_screen(app, pilot, "3", JournalScreen)).query_one(JournalTable)
    await until(pilot, lambda: table.row_count == len(app.state.journal), "rows rendered")
    return table


def header(app: ZakuraConsole) -> str:
    return plain(app.screen.query_one("#journal-filters", Static))


def visible(table: JournalTable, seq: int) -> bool:
    """Whether the row of ``seq`` is inside the scrolled viewport."""
    row = table.get_row_index(str(seq))
    top = int(table.scroll_y)
    return top <= row < top + table.scrollable_content_region.height - 1  # minus the header


async def test_rows_equal_the_journal_in_order() -> None:
    client = ScriptedClient()
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_journal(app, pilot)
        assert table.shown_seqs == [r["seq"] for r in client.journal]
        first = client.journal[0]
        cells = [str(c) for c in table.get_row(str(first["seq"]))]
        assert cells[1] == str(first["seq"])
        assert cells[2:4] == [first["table"], first["event"]]
        assert first["peer"].removeprefix("peer:") == cells[4]


async def test_frames_append_only_the_new_rows() -> None:
    client = ScriptedClient()
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_journal(app, pilot)
        before = table.row_count
        added: list[str] = []
        original = table.add_row

        def spy(*cells: Any, key: str | None = None, **kw: Any) -> Any:
            added.append(str(key))
            return original(*cells, key=key, **kw)

        table.add_row = spy  # type: ignore[method-assign]
        client.emit_many(7)
        await app.poll()
        await pilot.pause()
        assert table.row_count == before + 7
        assert added == [str(r["seq"]) for r in client.journal[-7:]]
        # An unchanged frame adds nothing.
        await app.poll()
        await pilot.pause()
        assert len(added) == 7


async def test_filters_narrow_and_clear_restores() -> None:
    client = ScriptedClient()
    client.emit_many(30)
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_journal(app, pilot)
        everything = [r["seq"] for r in client.journal]
        tables = sorted({r["table"] for r in client.journal})

        # k cycles through the tables present, then back to all.
        for kind in tables:
            await pilot.press("k")
            await pilot.pause()
            assert table.shown_seqs == [r["seq"] for r in client.journal if r["table"] == kind]
            assert f"kind {kind}" in header(app)
        await pilot.press("k")
        await pilot.pause()
        assert table.shown_seqs == everything

        # v cycles services; events of no service drop out while a service is chosen.
        await pilot.press("v")
        await pilot.pause()
        assert table.shown_seqs == [r["seq"] for r in client.journal if r["service"] == "discovery"]
        assert "service discovery" in header(app)

        # / types part of a peer label; it narrows as well (on top of the service filter).
        label = client.snap["peers"][1]["label"]
        await pilot.press("slash")
        await pilot.pause()
        box = app.screen.query_one("#peer-filter", Input)
        assert box.has_focus
        await pilot.press(*label[5:13], "enter")
        await pilot.pause()
        expected = [
            r["seq"] for r in client.journal if r["service"] == "discovery" and r["peer"] == label
        ]
        assert expected and table.shown_seqs == expected
        assert not box.has_class("-open") and table.has_focus
        assert label[5:13] in header(app)

        # New events arriving under a filter are filtered too.
        client.emit_many(6)
        await app.poll()
        await pilot.pause()
        assert all(
            client.journal[-1 - i]["seq"] not in table.shown_seqs
            or client.journal[-1 - i]["peer"] == label
            for i in range(6)
        )

        # c clears every filter: all rows back, newest included.
        await pilot.press("c")
        await pilot.pause()
        assert table.shown_seqs == [r["seq"] for r in client.journal]
        assert "kind all" in header(app) and "service all" in header(app)


async def test_peer_filter_escape_restores_previous() -> None:
    client = ScriptedClient()
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_journal(app, pilot)
        everything = table.shown_seqs
        await pilot.press("slash", "z", "z", "z")
        await pilot.pause()
        assert table.shown_seqs == []  # live narrowing while typing
        await pilot.press("escape")
        await pilot.pause()
        assert table.shown_seqs == everything


async def test_follow_keeps_the_newest_row_visible() -> None:
    client = ScriptedClient()
    client.emit_many(120)  # more rows than the viewport holds
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_journal(app, pilot)
        assert table.following and "following" in header(app)
        await until(pilot, lambda: table.scroll_y == table.max_scroll_y > 0, "at the end")
        for _ in range(3):
            client.emit_many(15)
            await app.poll()
            newest = int(client.journal[-1]["seq"])
            await until(pilot, lambda n=newest: visible(table, n), "newest visible")  # type: ignore[misc]
            assert table.cursor_row == table.row_count - 1
            assert table.scroll_y == table.max_scroll_y


async def test_unfollow_holds_the_view_when_rows_arrive() -> None:
    client = ScriptedClient()
    client.emit_many(120)
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_journal(app, pilot)
        await until(pilot, lambda: table.scroll_y == table.max_scroll_y > 0, "at the end")

        # The operator scrolls up: following stops by itself.
        await pilot.press("pageup", "pageup")
        await pilot.pause()
        assert not table.following and "held" in header(app)
        y, cursor = table.scroll_y, table.cursor_row
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        client.emit_many(25)
        await app.poll()
        await pilot.pause()
        assert table.row_count == len(client.journal)
        assert (table.scroll_y, table.cursor_row) == (y, cursor)
        assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key == key

        # f resumes following: back to the newest row.
        await pilot.press("f")
        await until(pilot, lambda: table.scroll_y == table.max_scroll_y, "back at the end")
        assert table.following and table.cursor_row == table.row_count - 1

        # f again holds even at the end: new rows do not move the view.
        await pilot.press("f")
        await pilot.pause()
        y = table.scroll_y
        client.emit_many(25)
        await app.poll()
        await pilot.pause()
        assert not table.following and table.scroll_y == y < table.max_scroll_y


async def test_rows_are_capped() -> None:
    client = ScriptedClient()
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_journal(app, pilot)
        cap = table.cap
        for _ in range(8):  # 8 x 450 = 3600 new events, in the client's 500-row pages
            client.emit_many(450)
            await app.poll()
            await pilot.pause()
            assert table.row_count <= cap + cap // 2
        assert table.row_count < len(client.journal)  # it did trim
        newest = int(client.journal[-1]["seq"])
        assert table.shown_seqs[-1] == newest
        assert table.row_count == len(table.shown_seqs)
        assert table.shown_seqs == sorted(table.shown_seqs)
        assert table.shown_seqs == [r["seq"] for r in client.journal][-len(table.shown_seqs) :]
        await until(pilot, lambda: visible(table, newest), "newest visible after trims")


# ---------------------------------------------------------------------- a real node
@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    nodes: list[Node] = []
    try:
        a = Node(NodeConfig(data_dir=tmp_path / "a", target_peers=1, allow_faults=True))
        await a.start()
        nodes.append(a)
        b = Node(
            NodeConfig(
                data_dir=tmp_path / "b",
                target_peers=1,
                bootstrap=(("127.0.0.1", a.transport.listen_port),),
            )
        )
        await b.start()
        nodes.append(b)
        yield a, b
    finally:
        for node in reversed(nodes):
            await node.stop()


async def test_real_node_handshake_appears_in_the_journal(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    # Frames are polled by the test (not the app's timer) so every wait is on a known frame.
    app = ZakuraConsole(InProcessClient(a), refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        await pilot.press("3")
        await pilot.pause()
        table = app.screen.query_one(JournalTable)

        def seen(kind: str, event: str) -> bool:
            return any(
                table.row_at(str(s)) is not None
                and table.row_at(str(s))["table"] == kind  # type: ignore[index]
                and table.row_at(str(s))["event"] == event  # type: ignore[index]
                and table.row_at(str(s))["peer"] == b.label  # type: ignore[index]
                for s in table.shown_seqs
            )

        await poll_until(app, pilot, lambda: seen("handshake", "control.succeeded"), "handshake")
        await poll_until(app, pilot, lambda: seen("conn", "accepted"), "conn accepted")
        # And they are on screen in the view's text, with the peer's short label.
        cells = [
            [str(c) for c in table.get_row(str(s))]
            for s in table.shown_seqs
            if table.row_at(str(s))["peer"] == b.label  # type: ignore[index]
        ]
        assert any(c[2] == "handshake" and c[4] == b.label.removeprefix("peer:") for c in cells)
        # Filtering by that peer keeps only its events.
        view = app.screen.query_one(JournalView)
        view.set_peer_filter(b.label[5:])
        await pilot.pause()
        assert table.shown_seqs
        assert all(table.row_at(str(s))["peer"] == b.label for s in table.shown_seqs)  # type: ignore[index]


async def test_theme_switch_recolours_and_keeps_rows() -> None:
    client = ScriptedClient()
    client.emit_many(80)
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_journal(app, pilot)
        key = str(client.journal[0]["seq"])
        before = table.get_cell(key, "table").style
        seqs = table.shown_seqs
        await pilot.press("t")
        await until(pilot, lambda: table.get_cell(key, "table").style != before, "recoloured")
        assert table.shown_seqs == seqs and table.following
        await until(pilot, lambda: table.scroll_y == table.max_scroll_y > 0, "still at the end")


async def test_held_view_keeps_its_row_across_a_trim() -> None:
    client = ScriptedClient()
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_journal(app, pilot)
        for _ in range(4):
            client.emit_many(490)
            await app.poll()
            await pilot.pause()
        await until(pilot, lambda: table.scroll_y == table.max_scroll_y > 0, "at the end")
        await pilot.press("pageup")
        await pilot.pause()
        assert not table.following
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        before = table.row_count
        for _ in range(3):  # past cap * 1.5: the oldest rows are dropped
            client.emit_many(450)
            await app.poll()
            await pilot.pause()
        assert table.row_count < before + 3 * 450
        assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key == key
        await until(pilot, lambda: visible(table, int(str(key.value))), "held row still on screen")
