"""Misbehavior view: records, grouped tallies, per-peer counts, and who ``d``/``p`` target.

The scripted client changes records and peers between polls (``await app.poll()`` renders one
frame), so each assertion is about a known frame.
"""

from __future__ import annotations

from typing import Any

import consolekit
from consolekit import open_screen, plain, until
from textual.pilot import Pilot
from textual.widgets import Static

from console.app import ZakuraConsole
from console.client import ActionRequest
from console.screens.misbehavior import MisbehaviorScreen
from console.screens.modals import ConfirmScreen
from console.widgets.count_list import CountList
from console.widgets.misbehavior_table import MisbehaviorTable

SIZE = (140, 40)
GONE = "peer:00000000deadbeef"


class ScriptedClient(consolekit.ScriptedClient):
    """The shared scripted client, plus misbehavior records."""

    def record(self, label: str, reason: str, action: str = "recorded") -> None:
        """Add one misbehavior record (newest last, as the node lists them) and its tally."""
        records = self.snap["misbehavior"]
        t = float(self.snap["generated_at"]) - 100 + len(records)
        records.append(
            {"time": t, "label": label, "service": "discovery", "reason": reason, "action": action}
        )
        tally: dict[tuple[str, str], int] = {}
        for r in records:
            tally[(r["service"], r["reason"])] = tally.get((r["service"], r["reason"]), 0) + 1
        self.snap["misbehavior_tally"] = [
            {"service": s, "reason": r, "count": n} for (s, r), n in tally.items()
        ]


def scripted() -> ScriptedClient:
    client = ScriptedClient()
    client.snap["misbehavior"] = []
    labels = [p["label"] for p in client.snap["peers"]]
    client.record(labels[0], "unsolicited_peers", "disconnected")
    client.record(GONE, "oversize_message", "disconnected")
    client.record(labels[2], "unsolicited_peers")
    client.record(labels[0], "bad_hello")
    return client


async def open_view(app: ZakuraConsole, pilot: Pilot[Any]) -> MisbehaviorTable:
    table = (await open_screen(app, pilot, "4", MisbehaviorScreen)).query_one(MisbehaviorTable)
    await until(pilot, lambda: table.row_count > 0, "records rendered")
    return table


def rows(table: MisbehaviorTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_records_tallies_and_peer_counts() -> None:
    client = scripted()
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_view(app, pilot)
        records = client.snap["misbehavior"]

        # One row per record, newest first, with every column.
        shown = rows(table)
        assert len(shown) == len(records)
        for row, rec in zip(shown, reversed(records), strict=True):
            peer = rec["label"].removeprefix("peer:")  # as the Peers view shows it
            assert row[1:] == [peer, rec["service"], rec["action"], rec["reason"]]

        # Grouped counts by (service, reason), largest first.
        tally = app.screen.query_one("#mis-tally", CountList)
        got = {(parts[0][0].strip(), parts[1][0]): n for n, parts in tally.lines}
        assert got == {
            ("discovery", "unsolicited_peers"): 2,
            ("discovery", "oversize_message"): 1,
            ("discovery", "bad_hello"): 1,
        }
        assert tally.lines[0][0] == 2
        assert "unsolicited_peers" in plain(tally)

        # Per-peer counts, with whether the peer is still connected.
        by_peer = app.screen.query_one("#mis-peers", CountList)
        peers = {parts[0][0].strip(): (n, parts[2][0]) for n, parts in by_peer.lines}
        labels = [p["label"].removeprefix("peer:") for p in client.snap["peers"]]
        assert peers == {
            labels[0]: (2, "connected"),
            GONE.removeprefix("peer:"): (1, "gone"),
            labels[2]: (1, "connected"),
        }
        summary = plain(app.screen.query_one("#mis-summary", Static))
        assert "4 recorded" in summary and "2 disconnected" in summary

        # A new record: it appears on top, and the tallies follow.
        client.record(labels[1], "bad_hello", "disconnected")
        await app.poll()
        await pilot.pause()
        assert rows(table)[0][1:] == [labels[1], "discovery", "disconnected", "bad_hello"]
        got = {(p[0][0].strip(), p[1][0]): n for n, p in tally.lines}
        assert got[("discovery", "bad_hello")] == 2


async def test_selected_peer_only_while_connected() -> None:
    client = scripted()
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_view(app, pilot)
        labels = [p["label"] for p in client.snap["peers"]]
        screen = app.screen
        assert isinstance(screen, MisbehaviorScreen)

        # Newest first: row 0 is labels[0] (bad_hello), row 2 the peer that is gone.
        assert table.cursor_row == 0
        assert screen.selected_peer() == labels[0] == app.selected_peer()
        await pilot.press("down")
        await pilot.pause()
        assert screen.selected_peer() == labels[2]
        await pilot.press("down")
        await pilot.pause()
        assert table.selected_label == GONE
        assert screen.selected_peer() is None and app.selected_peer() is None

        # The selection stays on its record when a new record is added above it.
        client.record(labels[3], "unsolicited_peers")
        await app.poll()
        await pilot.pause()
        assert table.selected_label == GONE and table.cursor_row == 3

        # The selected record's peer leaves: nothing to act on any more.
        await pilot.press("up")
        await pilot.pause()
        assert screen.selected_peer() == labels[2]
        client.snap["peers"] = [p for p in client.snap["peers"] if p["label"] != labels[2]]
        await app.poll()
        await pilot.pause()
        assert table.selected_label == labels[2]
        assert screen.selected_peer() is None


async def test_disconnect_from_a_record() -> None:
    client = scripted()
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await open_view(app, pilot)
        target = client.snap["peers"][0]["label"]
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "confirmation")
        await pilot.press("y")
        await until(pilot, lambda: bool(client.actions), "the action")
        assert client.actions == [ActionRequest("disconnect", target)]


async def test_empty_view_says_so() -> None:
    client = ScriptedClient()
    client.snap["misbehavior"] = []
    client.snap["misbehavior_tally"] = []
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(app, pilot, "4", MisbehaviorScreen)
        assert screen.query_one(MisbehaviorTable).row_count == 0
        assert screen.selected_peer() is None
        assert "no misbehavior recorded" in plain(screen.query_one("#mis-summary", Static))
        assert "nothing recorded" in plain(screen.query_one("#mis-tally", CountList))
