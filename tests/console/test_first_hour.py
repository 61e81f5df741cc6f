"""Issue 15, defects 5-8: what a new operator met in the first hour, each reproduced on the
fixture data (peer-detail journal below the fold, a stale error in the stall modal,
``error=None`` and "1 rows", fault keys advertised by a read-only console)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from consolekit import ScriptedClient, open_screen, plain, start, until
from rich.console import Console
from textual.containers import VerticalScroll
from textual.pilot import Pilot
from textual.widgets import Footer, Input, Static

from console.app import ZakuraConsole
from console.fixture import fixture_label
from console.screens.journal import JournalScreen
from console.screens.modals import StallScreen
from console.screens.peer_detail import JOURNAL_ROWS, PeerDetailScreen
from console.screens.peers import PeersScreen
from console.widgets.peer_table import PeerTable

NO_TIMER = 3600.0


def rendered(widget: Static, width: int = 120) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(widget.content)
    return capture.get()


async def open_detail(app: ZakuraConsole, pilot: Pilot[Any], label: str) -> PeerDetailScreen:
    await start(app, pilot)
    await pilot.press("2")
    await until(pilot, lambda: isinstance(app.screen, PeersScreen), "the Peers view")
    table = app.screen.query_one(PeerTable)
    await until(pilot, lambda: table.row_count > 0, "rows")
    table.move_cursor(row=table.get_row_index(label))
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, PeerDetailScreen), "the peer detail")
    await app.poll()
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, PeerDetailScreen)
    return screen


async def test_peer_detail_journal_opens_at_the_newest_event() -> None:
    """Defect 5: "last 30, newest last", but the newest rows were below the fold."""
    client = ScriptedClient()
    peer = fixture_label(2)
    for i in range(JOURNAL_ROWS + 5):
        client.emit("routine", "started", peer, "discovery", n=i)
    newest = client.emit("fault", "injected", peer, None, kind="disconnect", marker="newest")
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_detail(app, pilot, peer)
        box = screen.query_one("#detail-right", VerticalScroll)
        await until(pilot, lambda: box.max_scroll_y > 0, "a journal taller than its box")
        await until(pilot, lambda: box.scroll_y == box.max_scroll_y, "scrolled to the newest")
        assert newest["fields"]["marker"] in rendered(screen.query_one("#detail-journal", Static))
        # New events keep it at the newest; an operator who scrolled up stays where he is.
        client.emit("conn", "accepted", peer, None)
        await app.poll()
        await pilot.pause()
        await until(pilot, lambda: box.scroll_y == box.max_scroll_y, "still at the newest")
        box.scroll_home(animate=False)
        await pilot.pause()
        client.emit("conn", "accepted", peer, None)
        await app.poll()
        await pilot.pause()
        assert box.scroll_y == 0


async def test_stall_modal_error_clears_once_the_value_is_corrected() -> None:
    """Defect 6: "(got 700)" stayed under the field after it was corrected to 30."""
    client = ScriptedClient()
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=(120, 36)) as pilot:
        await start(app, pilot)
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, PeersScreen), "the Peers view")
        await pilot.press("s")
        await until(
            pilot,
            lambda: (
                isinstance(app.screen, StallScreen) and bool(app.screen.query("#stall-seconds"))
            ),
            "the stall modal and its field",
        )
        modal = app.screen
        assert isinstance(modal, StallScreen)
        field = modal.query_one("#stall-seconds", Input)
        field.value = "700"
        await pilot.press("enter")
        await pilot.pause()
        assert "got 700" in modal.error
        field.value = "70x"  # still wrong: the message follows the value
        await pilot.pause()
        assert "got '70x'" in modal.error
        field.value = "30"
        await pilot.pause()
        assert modal.error == ""
        await pilot.press("enter")
        await until(pilot, lambda: bool(client.actions), "the stall")
        assert client.actions[0].seconds == 30.0


async def test_peer_detail_and_journal_say_a_missing_value_the_same_way() -> None:
    """Defect 7: ``error=None`` in the peer detail, ``error=-`` in the Journal."""
    client = ScriptedClient()
    peer = fixture_label(1)
    client.emit("routine", "exited", peer, "discovery", cause="normal", error=None)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_detail(app, pilot, peer)
        text = rendered(screen.query_one("#detail-journal", Static), 140)
        assert "error=-" in text and "error=None" not in text


async def test_journal_counts_one_row_in_the_singular() -> None:
    """Defect 7: "1 rows"."""
    client = ScriptedClient()
    client.journal = client.journal[:1]
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=(140, 30)) as pilot:
        await open_screen(app, pilot, "3", JournalScreen)
        await app.poll()
        await pilot.pause()
        text = plain(app.screen.query_one("#journal-filters", Static))
        assert "1 row" in text and "1 rows" not in text


def footer_keys(app: ZakuraConsole) -> list[str]:
    """The keys the footer shows, in order (the command palette's included)."""
    from console.widgets.footer import ConsoleKey

    footer = app.screen.query_one(Footer)
    return [key.key for key in footer.query(ConsoleKey)]


@pytest.mark.parametrize("read_only", [False, True])
async def test_read_only_footer_does_not_advertise_fault_keys(read_only: bool) -> None:
    """Defect 8: ``--read-only`` refused d p k s w (now also u), but the footer still offered
    them. The keys still answer (with the refusal), they are just not advertised."""
    client = ScriptedClient(read_only=read_only)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=(200, 30), notifications=True) as pilot:
        await start(app, pilot)
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, PeersScreen), "Peers")
        await pilot.pause()
        keys = footer_keys(app)
        faults = {"d", "p", "k", "u", "s", "w"} & set(keys)
        assert faults == (set() if read_only else {"d", "p", "k", "u", "s", "w"}), keys
        assert "q" in keys and "question_mark" in keys
        if read_only:
            await pilot.press("d")
            await pilot.pause()
            assert isinstance(app.screen, PeersScreen) and not client.actions
