"""The console side of header sync, over fixture data: the Overview panel, the Peers columns,
the peer detail section, the Parked view, the ``k`` and ``s`` keys (their modal, the policy),
and snapshots from a node that reports none of it (every view still renders).

The fixture varies header sync per peer (see ``console.fixture._header_sync``): peer 1 parked,
2 with a range in flight, 3 stalled, 4 with its command queue at 250/256, 5 without a status.
"""

from __future__ import annotations

from typing import Any

import pytest
from consolekit import ScriptedClient, assert_drawn, plain, start, until
from textual.pilot import Pilot
from textual.widgets import Input, Static

from console.app import ZakuraConsole
from console.client import ActionRequest, Snapshot
from console.fixture import FixtureClient, fixture_label, fixture_snapshot
from console.policy import ActionPolicy
from console.screens.modals import ConfirmScreen, HelpScreen, StallScreen
from console.screens.overview import SYNC_PLACEHOLDER, OverviewScreen
from console.screens.parked import EMPTY_TEXT, ParkedScreen
from console.screens.peer_detail import PeerDetailScreen
from console.screens.peers import PeersScreen
from console.widgets.header_sync_panel import HeaderSyncPanel, progress_bar
from console.widgets.kv_panel import KVPanel
from console.widgets.parked_table import ParkedTable
from console.widgets.peer_table import PeerTable
from node_core.control import parse_stall_seconds

SIZE = (140, 40)
NO_TIMER = 3600.0


class RecordingConsole(ZakuraConsole):
    """The real app, remembering every notification (they expire on screen)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[tuple[str, str]] = []

    def notify(self, message: str, **kwargs: Any) -> None:  # type: ignore[override]
        self.notes.append((str(message), str(kwargs.get("severity", "information"))))
        super().notify(message, **kwargs)


def header_only_snapshot(peers: int = 6) -> Snapshot:
    """A snapshot from a node before block sync: header sync's full panel and columns."""
    snap = fixture_snapshot(peers)
    del snap["block_sync"]
    for p in snap["peers"]:
        p["routines"] = [r for r in p["routines"] if r["service"] != "block_sync"]
    snap["routines_summary"].pop("block_sync")
    return snap


def old_snapshot(peers: int = 6) -> Snapshot:
    """A snapshot from a node before header sync: no chain, no header_sync, no parked."""
    snap = header_only_snapshot(peers)
    for key in ("chain", "header_sync", "parked"):
        del snap[key]
    for p in snap["peers"]:
        p["routines"] = [r for r in p["routines"] if r["service"] != "header_sync"]
    snap["routines_summary"].pop("header_sync")
    return snap


def kv(screen: Any, panel: str) -> dict[str, str]:
    return {k: v for k, v, _style in screen.query_one(f"#{panel}", KVPanel).rows}


def text_of(widget: Static) -> str:
    import io

    from rich.console import Console

    console = Console(width=SIZE[0], file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(widget.content)
    return capture.get()


async def peers_cursor_on(app: ZakuraConsole, pilot: Pilot[Any], label: str) -> PeerTable:
    """Open the Peers view with the cursor on ``label``."""
    await start(app, pilot)
    await pilot.press("2")
    await until(pilot, lambda: isinstance(app.screen, PeersScreen), "the Peers view")
    table = app.screen.query_one(PeerTable)
    await until(pilot, lambda: table.row_count > 0, "rows")
    table.move_cursor(row=table.get_row_index(label))
    await pilot.pause()
    assert app.selected_peer() == label
    return table


# ---------------------------------------------------------------------- Overview
async def test_overview_header_sync_panel_from_the_fixture() -> None:
    app = ZakuraConsole(ScriptedClient(snap=header_only_snapshot(8)), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        screen = app.screen
        assert isinstance(screen, OverviewScreen)
        assert screen.query_one("#sync-panels").has_class("-header-sync")
        assert screen.query_one("#ov-header-sync").display
        assert not screen.query_one("#sync-placeholder").display
        chain = kv(screen, "hs-chain")
        assert chain["header tip"] == "12,400 of 20,000"
        assert chain["progress"] == progress_bar(12_400, 20_000)
        assert chain["progress"].endswith(" 62.0%")
        assert chain["speed"] == "310.5 headers/s · ETA 24s"  # 7,600 left at 310.5/s
        assert chain["verified"] == "7,300 · finalized 0"
        queues = kv(screen, "hs-queues")
        assert queues["ranges"] == "fwd 4 · back 1 · assigned 3"
        assert queues["covered"] == "12,400 (2 intervals)"
        assert queues["reactor"] == "events 3/128 · life 1 · actions 0/128"
        assert queues["commits"] == "2 pending · 12,400 done · seen 512"
        peers = kv(screen, "hs-peers")
        assert peers["peers"] == "7/8 with status · 1 parked"
        assert peers["reorgs"] == "0 · 1 abandoned"
        assert peers["candidate"] == "none"
        assert "regtest" in str(screen.query_one("#ov-header-sync").border_subtitle)


async def test_overview_panel_follows_changes_and_renders_only_changes() -> None:
    client = ScriptedClient(snap=header_only_snapshot())
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        screen = app.screen
        panels = {name: screen.query_one(f"#{name}", KVPanel) for name in ("hs-chain", "hs-peers")}
        updates = dict.fromkeys(panels, 0)
        for name, panel in panels.items():
            original = panel.update

            def counting(*args: Any, _name: str = name, _orig: Any = original, **kw: Any) -> None:
                updates[_name] += 1
                _orig(*args, **kw)

            panel.update = counting  # type: ignore[method-assign]
        await app.poll()
        await pilot.pause()
        assert updates == {"hs-chain": 0, "hs-peers": 0}  # the same frame: nothing redrawn

        client.snap["header_sync"]["candidate"] = {
            "fork_height": 12_380,
            "tip_height": 12_420,
            "peer": fixture_label(2),
        }
        client.snap["header_sync"]["reorgs"] = 1
        await app.poll()
        await pilot.pause()
        assert updates == {"hs-chain": 0, "hs-peers": 1}
        peers = kv(screen, "hs-peers")
        assert peers["candidate"] == f"fork 12,380 → tip 12,420 from {fixture_label(2)}"
        assert peers["reorgs"] == "1 · 1 abandoned"

        client.snap["chain"]["header_tip"]["height"] = 20_000
        await app.poll()
        await pilot.pause()
        chain = kv(screen, "hs-chain")
        assert chain["progress"].endswith("100.0%") and "ETA" not in chain["speed"]
        assert "at target" in chain["speed"]
        assert updates == {"hs-chain": 1, "hs-peers": 1}


async def test_overview_short_terminal_keeps_the_journal_room() -> None:
    app = ZakuraConsole(ScriptedClient(snap=header_only_snapshot(8)), refresh_interval=NO_TIMER)
    async with app.run_test(size=(100, 23)) as pilot:
        await start(app, pilot)
        screen = app.screen
        assert len(screen.query_one("#hs-chain", KVPanel).rows) == 3
        assert "speed" in kv(screen, "hs-chain")  # the least important line went first


# ---------------------------------------------------------------------- Peers
async def test_peers_header_sync_columns() -> None:
    client = ScriptedClient(snap=header_only_snapshot(8))
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = await peers_cursor_on(app, pilot, fixture_label(0))
        keys = [s.key for s in table.specs]
        after = keys[keys.index("svc:header_sync") + 1 :]
        assert after[:4] == ["fault", "hs_queue", "hs_flight", "hs_tip"]

        def cell(i: int, key: str) -> tuple[str, str]:
            cells = table.rendered_cells(fixture_label(i))
            assert cells is not None
            return cells[keys.index(key)]

        assert cell(1, "svc:header_sync") == ("◐2", "yellow")  # parked, generation 2
        assert cell(0, "svc:header_sync")[0] == "●1"
        assert cell(4, "hs_queue") == ("250/256", "bold red")  # about to be parked
        assert cell(1, "hs_queue")[0] == "12/256"
        assert cell(2, "hs_flight")[0] == "12401+160"
        assert cell(0, "hs_flight")[0] == "—"
        assert cell(0, "hs_tip")[0] == "20000" and cell(1, "hs_tip")[0] == "19960"
        # The peer that just left has no header-sync numbers: empty, not "—".
        closed = table.rendered_cells(fixture_label(900))
        assert closed is not None and closed[keys.index("hs_queue")][0] == ""
        assert_drawn(table)
        # Sorting by the queue puts the nearly full one last.
        table.sort_by("hs_queue")
        await pilot.pause()
        live = [label for label in table.row_labels() if label != fixture_label(900)]
        assert live[-1] == fixture_label(4)
        assert_drawn(table)


async def test_peers_table_fits_120_columns() -> None:
    """Without block sync; ``test_block_sync_views`` checks the table with it."""
    app = ZakuraConsole(ScriptedClient(snap=header_only_snapshot(8)), refresh_interval=NO_TIMER)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await peers_cursor_on(app, pilot, fixture_label(3))
        widths = table.column_widths()
        # Every column but the last is whole on screen; the close reason (last, free text)
        # keeps at least nine characters there and the rest is a horizontal scroll away.
        assert sum(widths[:-1]) <= 120 - 9, widths
        line = table.render_line(1 + table.get_row_index(fixture_label(4))).text
        assert "250/256" in line and "12401" not in line
        assert line.split()[-1] == "127.0.0.1:41004"  # the address, before the close reason


# ---------------------------------------------------------------------- Peer detail
@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        (2, ["cmd queue 2/256", "in flight 12401+160 (forward)", "outstanding requests (1)"]),
        (3, ["stall 17.5 s left", "serving 1 in flight", "outstanding requests: none"]),
        (
            1,
            [
                "status pending yes",
                "parked 42s ago: queue full: a Headers answer could not be queued",
                "3 ranges returned",
            ],
        ),
        (5, ["received status no", "max headers —", "stall none"]),
    ],
)
async def test_peer_detail_header_sync_section(peer: int, expected: list[str]) -> None:
    app = ZakuraConsole(FixtureClient(peers=8), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await peers_cursor_on(app, pilot, fixture_label(peer))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PeerDetailScreen), "the detail")
        await pilot.pause()
        body = text_of(app.screen.query_one("#detail-routines-body", Static))
        assert "header_sync  cmd queue" in body
        for fragment in expected:
            assert fragment in body, (fragment, body)
        if peer == 2:
            assert "12401" in body and "4.2 s" in body  # the request and its deadline


# ---------------------------------------------------------------------- Parked view
async def test_parked_view_lists_parked_peers() -> None:
    app = ZakuraConsole(FixtureClient(peers=8), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        await pilot.press("5")
        await until(pilot, lambda: isinstance(app.screen, ParkedScreen), "the Parked view")
        await pilot.pause()
        screen = app.screen
        table = screen.query_one(ParkedTable)
        assert table.rows_shown == (
            (
                fixture_label(1),
                "header_sync",
                "queue full: a Headers answer could not be queued (headers_response_undeliverable)",
                "42s",
                "3",
            ),
        )
        assert not screen.has_class("-empty")
        assert "1 parked peer" in text_of(screen.query_one("#parked-summary", Static))
        assert app.selected_peer() == fixture_label(1)  # actions target the parked peer


async def test_parked_view_empty_state_teaches() -> None:
    client = ScriptedClient()
    client.snap["parked"] = []
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        await pilot.press("5")
        await until(pilot, lambda: isinstance(app.screen, ParkedScreen), "the Parked view")
        await pilot.pause()
        screen = app.screen
        assert screen.has_class("-empty")
        empty = screen.query_one("#parked-empty", Static)
        assert empty.display and not screen.query_one(ParkedTable).display
        assert plain(empty) == EMPTY_TEXT
        assert "press k on a peer to park it" in EMPTY_TEXT
        assert app.selected_peer() is None
        # A peer gets parked: the row appears and the empty state goes.
        client.snap["parked"] = [
            {
                "label": client.snap["peers"][2]["label"],
                "service": "header_sync",
                "reason": "fault:3",
                "since": client.snap["generated_at"] - 5,
                "work_returned": 0,
            }
        ]
        await app.poll()
        await pilot.pause()
        assert not screen.has_class("-empty")
        assert screen.query_one(ParkedTable).rows_shown[0][2:] == (
            "parked by the operator (fault 3)",
            "5s",
            "0",
        )


# ---------------------------------------------------------------------- keys k and s
async def test_k_parks_after_confirming_the_named_target() -> None:
    client = FixtureClient(peers=6)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        label = fixture_label(2)
        await peers_cursor_on(app, pilot, label)
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        title = app.screen.title_text  # type: ignore[attr-defined]
        assert title == f"Park the header_sync service of {label}?"
        await pilot.press("y")
        await until(pilot, lambda: len(client.actions) == 1, "the park")
        assert client.actions == [ActionRequest("park", label, "header_sync")]


async def test_k_refuses_an_already_parked_peer_and_a_peer_without_header_sync() -> None:
    client = ScriptedClient()
    client.snap["peers"][3]["routines"] = client.snap["peers"][3]["routines"][:1]
    app = RecordingConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await peers_cursor_on(app, pilot, fixture_label(1))
        await pilot.press("k")
        await pilot.pause()
        await until(pilot, lambda: bool(app.notes), "the refusal")
        assert isinstance(app.screen, PeersScreen)
        assert app.notes[-1] == (f"{fixture_label(1)}: header_sync is already parked", "warning")
        app.screen.query_one(PeerTable).move_cursor(
            row=app.screen.query_one(PeerTable).get_row_index(fixture_label(3))
        )
        await pilot.pause()
        for key in ("k", "s"):
            app.notes.clear()
            await pilot.press(key)
            await until(pilot, lambda: bool(app.notes), "the refusal")
            assert isinstance(app.screen, PeersScreen)
            assert "has no header_sync routine" in app.notes[-1][0]
        assert client.actions == []


async def test_s_asks_for_seconds_and_validates_them() -> None:
    client = FixtureClient(peers=6)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        label = fixture_label(3)
        await peers_cursor_on(app, pilot, label)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StallScreen), "the stall modal")
        modal = app.screen
        assert isinstance(modal, StallScreen)
        assert label in modal.title_text and "header_sync" in modal.title_text
        field = modal.query_one(Input)
        assert field.value == "30"  # the default
        for bad, message in (
            ("0", "from 1 to 600 seconds (got 0)"),
            ("601", "from 1 to 600 seconds (got 601)"),
            ("abc", "number of seconds from 1 to 600 (got 'abc')"),
            ("", "number of seconds from 1 to 600"),
        ):
            field.value = bad
            await pilot.press("enter")
            await pilot.pause()
            assert modal.is_current, bad  # still open, to be corrected in place
            assert message in modal.error, (bad, modal.error)
        assert client.actions == []
        field.value = "45"
        await pilot.press("enter")
        await until(pilot, lambda: len(client.actions) == 1, "the stall")
        assert client.actions == [ActionRequest("stall", label, "header_sync", 45.0)]
        assert client.actions[0].describe() == f"stall header_sync reads of {label} for 45 s"


async def test_s_default_and_cancel() -> None:
    client = FixtureClient(peers=6)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        label = fixture_label(0)
        await peers_cursor_on(app, pilot, label)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StallScreen), "the stall modal")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, PeersScreen), "back on Peers")
        assert client.actions == []
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StallScreen), "the stall modal")
        await pilot.press("enter")  # the default, 30 s
        await until(pilot, lambda: len(client.actions) == 1, "the stall")
        assert client.actions == [ActionRequest("stall", label, "header_sync", 30.0)]


async def test_read_only_refuses_k_and_s() -> None:
    client = FixtureClient(peers=6, read_only=True)
    app = RecordingConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await peers_cursor_on(app, pilot, fixture_label(2))
        for key, kind in (("k", "park"), ("s", "stall")):
            app.notes.clear()
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, PeersScreen)  # no modal opened
            assert app.notes == [
                (f"read-only console: {kind} is disabled (started with --read-only)", "error")
            ]
        assert client.actions == []
        # And the client refuses them too, whoever calls it.
        result = await client.act(ActionRequest("park", fixture_label(2), "header_sync"))
        assert not result.ok and "read-only" in result.message


def test_policy_and_describe() -> None:
    assert ActionPolicy().allows("park") and ActionPolicy().allows("stall")
    assert not ActionPolicy(read_only=True).allows("park")
    assert not ActionPolicy(read_only=True).allows("stall")
    assert ActionRequest("park", "peer:x").describe() == "park the header_sync service of peer:x"
    assert (
        ActionRequest("stall", "peer:x").describe() == "stall header_sync reads of peer:x for 30 s"
    )
    assert (
        ActionRequest("stall", "peer:x", "header_sync", 2.5).describe()
        == "stall header_sync reads of peer:x for 2.5 s"
    )
    assert parse_stall_seconds(" 600 ") == 600.0 and parse_stall_seconds("1") == 1.0
    for bad in ("0.5", "nan", "inf", "-3", "1e9", "ten"):
        with pytest.raises(ValueError, match="1 to 600"):
            parse_stall_seconds(bad)


async def test_help_and_palette_know_k_s_and_the_parked_view() -> None:
    app = ZakuraConsole(FixtureClient(peers=6), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
        rows = dict(app.screen.rows)  # type: ignore[attr-defined]
        assert rows["5"] == "Parked view"
        assert "park" in rows["k"] and "stall" in rows["s"] and "600" in rows["s"]
        await pilot.press("escape")
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "View: Parked" in titles
        assert "Park header-sync of selected peer" in titles
        assert "Stall sync reads of selected peer" in titles


# ---------------------------------------------------------------------- older snapshots
async def test_views_render_a_snapshot_without_header_sync() -> None:
    client = ScriptedClient(snap=old_snapshot())
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        screen = app.screen
        assert isinstance(screen, OverviewScreen)
        assert screen.query_one("#sync-placeholder").display
        assert not screen.query_one("#ov-header-sync").display
        assert SYNC_PLACEHOLDER in plain(screen.query_one("#sync-placeholder", Static))
        table = await peers_cursor_on(app, pilot, fixture_label(2))
        assert not any(s.key.startswith("hs_") for s in table.specs)
        assert_drawn(table)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PeerDetailScreen), "the detail")
        await pilot.pause()
        body = text_of(app.screen.query_one("#detail-routines-body", Static))
        assert "discovery" in body and "header_sync" not in body
        await pilot.press("escape")
        await pilot.press("5")
        await until(pilot, lambda: isinstance(app.screen, ParkedScreen), "the Parked view")
        await pilot.pause()
        assert app.screen.has_class("-empty")
        # k on a peer of an old node: refused, nothing sent.
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, PeersScreen), "the Peers view")
        await pilot.press("k")
        await pilot.pause()
        assert isinstance(app.screen, PeersScreen) and client.actions == []


async def test_a_node_with_a_chain_but_no_header_sync_section() -> None:
    """Today's node reports ``chain`` (without finalized_height) and no header_sync yet."""
    snap = old_snapshot()
    snap["chain"] = {
        "header_tip": {"height": 0, "hash": "00" * 32},
        "verified_tip": {"height": 0, "hash": "00" * 32},
        "target": 0,
        "network": "regtest",
    }
    app = ZakuraConsole(ScriptedClient(snap=snap), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        screen = app.screen
        assert screen.query_one("#ov-header-sync").display
        chain = kv(screen, "hs-chain")
        assert chain["header tip"] == "0 of 0"
        assert chain["progress"] == chain["speed"] == "—"
        assert chain["verified"] == "0 · finalized —"
        queues, peers = kv(screen, "hs-queues"), kv(screen, "hs-peers")
        assert queues["ranges"] == "fwd — · back — · assigned —"
        assert peers["peers"] == "—/— with status · — parked"
        assert screen.query_one(HeaderSyncPanel) is not None
