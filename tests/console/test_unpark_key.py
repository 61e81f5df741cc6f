"""The ``u`` key (issue 15): unpark the selected peer's header sync, over fixture data.

The fixture's peer 1 has a parked header sync (``console.fixture._header_sync``); every other
peer's runs. ``u`` asks first, naming the target, and only then sends an ``unpark`` action;
on a peer that is not parked it says so and asks nothing; a read-only console refuses it and
its footer does not offer it. What the node does with the action is tested on real nodes
(tests/node/test_unpark.py, tests/api/test_api.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from consolekit import ScriptedClient, start, until
from test_header_sync_views import RecordingConsole, peers_cursor_on
from textual.widgets import Footer

from console.app import ZakuraConsole
from console.client import ActionRequest
from console.fixture import fixture_label
from console.screens.modals import ConfirmScreen, HelpScreen
from console.screens.parked import ParkedScreen
from console.screens.peers import PeersScreen
from console.widgets.footer import ConsoleKey
from console.widgets.parked_table import ParkedTable

SIZE = (140, 40)
NO_TIMER = 3600.0
PARKED = fixture_label(1)


def footer_actions(app: ZakuraConsole) -> list[str]:
    return [key.action for key in app.screen.query_one(Footer).query(ConsoleKey)]


async def test_u_sends_unpark_after_confirming_the_named_target() -> None:
    client = ScriptedClient()
    app = RecordingConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await peers_cursor_on(app, pilot, PARKED)
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert confirm.title_text == f"Unpark the header_sync service of {PARKED}?"
        assert client.actions == []  # nothing is sent before the answer
        await pilot.press("y")
        await until(pilot, lambda: len(client.actions) == 1, "the unpark")
        assert client.actions == [ActionRequest("unpark", PARKED, "header_sync")]
        await until(pilot, lambda: any("scripted" in n for n, _ in app.notes), "the result")
        assert (f"unpark the header_sync service of {PARKED}: scripted", "information") in (
            app.notes
        )


async def test_u_on_the_parked_view_and_cancel() -> None:
    client = ScriptedClient()
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        await pilot.press("5")
        await until(pilot, lambda: isinstance(app.screen, ParkedScreen), "the Parked view")
        await pilot.pause()
        assert [r[0] for r in app.screen.query_one(ParkedTable).rows_shown] == [PARKED]
        assert app.selected_peer() == PARKED
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("n")  # cancelled: nothing sent
        await until(pilot, lambda: isinstance(app.screen, ParkedScreen), "back on Parked")
        assert client.actions == []
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: len(client.actions) == 1, "the unpark")
        assert client.actions == [ActionRequest("unpark", PARKED, "header_sync")]


async def test_u_refuses_a_peer_that_is_not_parked() -> None:
    client = ScriptedClient()
    client.snap["peers"][3]["routines"] = client.snap["peers"][3]["routines"][:1]  # no hs
    app = RecordingConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        running = fixture_label(2)
        table = await peers_cursor_on(app, pilot, running)
        await pilot.press("u")
        await until(pilot, lambda: bool(app.notes), "the refusal")
        assert isinstance(app.screen, PeersScreen)  # no modal opened
        assert app.notes[-1] == (f"{running}: header_sync is not parked (it is running)", "warning")
        table.move_cursor(row=table.get_row_index(fixture_label(3)))
        await pilot.pause()
        app.notes.clear()
        await pilot.press("u")
        await until(pilot, lambda: bool(app.notes), "the refusal")
        assert isinstance(app.screen, PeersScreen)
        assert app.notes[-1] == (
            f"{fixture_label(3)} has no header_sync routine to unpark",
            "warning",
        )
        assert client.actions == []


@pytest.mark.parametrize("read_only", [False, True])
async def test_read_only_refuses_u_and_does_not_offer_it(read_only: bool) -> None:
    client = ScriptedClient(read_only=read_only)
    app = RecordingConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=(200, 30)) as pilot:
        await peers_cursor_on(app, pilot, PARKED)
        assert ("unpark" in footer_actions(app)) is not read_only, footer_actions(app)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
        rows: dict[str, Any] = dict(app.screen.rows)  # type: ignore[attr-defined]
        assert "unpark" in rows["u"]
        assert rows["u"].endswith("(disabled: --read-only)") is read_only
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, PeersScreen), "back on Peers")
        if read_only:
            app.notes.clear()
            await pilot.press("u")
            await until(pilot, lambda: bool(app.notes), "the refusal")
            assert isinstance(app.screen, PeersScreen)  # no modal opened
            assert app.notes == [
                ("read-only console: unpark is disabled (started with --read-only)", "error")
            ]
            assert client.actions == []


async def test_the_palette_offers_unpark() -> None:
    app = ZakuraConsole(ScriptedClient(), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        commands = {c.title: c.help for c in app.get_system_commands(app.screen)}
        assert "(u)" in commands["Unpark header-sync of selected peer"]
