"""The console side of the block-sync faults, over fixture data: ``s`` asking which routine
(header_sync or block_sync) to stall, ``w`` throttling a peer's bandwidth (its modal, its
validation), the policy and request descriptions, and the read-only refusals.

The fixture runs header_sync and block_sync on every peer; peer 1's header sync is parked
(see ``console.fixture._header_sync``), so ``s`` there can only offer block_sync.
"""

from __future__ import annotations

import pytest
from consolekit import ScriptedClient, until
from test_block_sync_views import rendered
from test_header_sync_views import RecordingConsole, peers_cursor_on
from textual.widgets import Input, RadioButton

from console.app import ZakuraConsole
from console.client import ActionRequest
from console.fixture import FixtureClient, fixture_label
from console.policy import ActionPolicy, ActionRefused
from console.screens.modals import StallScreen, ThrottleScreen
from console.screens.peers import PeersScreen
from console.widgets.block_sync_detail import block_sync_section
from node_core.control import ACTIONS, THROTTLE_DEFAULT_KIB, THROTTLE_MAX_KIB, parse_throttle_kib

SIZE = (140, 40)
NO_TIMER = 3600.0


# ---------------------------------------------------------------------- policy and requests
def test_throttle_is_an_action_the_policy_knows() -> None:
    assert "throttle" in ACTIONS
    assert ActionPolicy().allows("throttle")
    assert not ActionPolicy(read_only=True).allows("throttle")
    with pytest.raises(ActionRefused, match="read-only console: throttle is disabled"):
        ActionPolicy(read_only=True).check("throttle")


@pytest.mark.parametrize(
    ("text", "kib"),
    [("64", 64.0), (" 12.5 ", 12.5), ("0", 0.0), ("1048576", THROTTLE_MAX_KIB)],
)
def test_parse_throttle_kib_accepts(text: str, kib: float) -> None:
    assert parse_throttle_kib(text) == kib


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-1", "from 0 to 1,048,576 KiB/s (0 lifts the throttle; got -1)"),
        ("1048577", "from 0 to 1,048,576 KiB/s (0 lifts the throttle; got 1.04858e+06)"),
        ("nan", "got nan"),
        ("inf", "got inf"),
        ("abc", "number of KiB/s from 0 to 1,048,576 (0 lifts the throttle; got 'abc')"),
        ("", "number of KiB/s from 0 to 1,048,576"),
    ],
)
def test_parse_throttle_kib_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="rate must be") as info:
        parse_throttle_kib(text)
    assert message in str(info.value)


def test_describe_stall_and_throttle() -> None:
    label = "peer:abc"
    assert (
        ActionRequest("stall", label, "block_sync", 30.0).describe()
        == f"stall block_sync reads of {label} for 30 s"
    )
    assert (
        ActionRequest("throttle", label, rate=64.0).describe()
        == f"throttle reads from {label} to 64 KiB/s"
    )
    for lift in (0.0, None):
        assert (
            ActionRequest("throttle", label, rate=lift).describe()
            == f"lift the bandwidth throttle of {label}"
        )


def test_block_sync_detail_shows_a_stall_only_while_it_runs() -> None:
    assert "stalled" not in rendered(block_sync_section({"stalled_for_s": None}))
    assert "stalled 12.5 s left" in rendered(block_sync_section({"stalled_for_s": 12.5}))


# ---------------------------------------------------------------------- s: which routine
async def test_s_chooses_block_sync_with_the_keys() -> None:
    client = FixtureClient(peers=6)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        label = fixture_label(3)
        await peers_cursor_on(app, pilot, label)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StallScreen), "the stall modal")
        modal = app.screen
        assert isinstance(modal, StallScreen)
        assert modal.service == "header_sync"  # the default, as before block sync
        assert modal.title_text == f"Stall header_sync reads of {label}?"
        await pilot.press("shift+tab", "down", "enter")  # to the routines, next, choose
        await until(pilot, lambda: modal.service == "block_sync", "block_sync chosen")
        # The title and the effect follow the choice: the operator confirms what happens.
        assert modal.title_text == f"Stall block_sync reads of {label}?"
        assert "send window" in modal.detail and "command queue" not in modal.detail
        await pilot.press("tab")  # back to the seconds
        assert isinstance(app.focused, Input)
        app.focused.value = "12"
        await pilot.press("enter")
        await until(pilot, lambda: len(client.actions) == 1, "the stall")
        assert client.actions == [ActionRequest("stall", label, "block_sync", 12.0)]


async def test_s_offers_block_sync_alone_when_header_sync_is_parked() -> None:
    client = FixtureClient(peers=6)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        label = fixture_label(1)  # header_sync parked
        await peers_cursor_on(app, pilot, label)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StallScreen), "the stall modal")
        modal = app.screen
        assert isinstance(modal, StallScreen)
        assert modal.service == "block_sync"
        header = modal.query_one("#svc-header_sync", RadioButton)
        assert header.disabled and "parked" in str(header.label)
        assert modal.query_one("#svc-block_sync", RadioButton).value
        await pilot.press("enter")
        await until(pilot, lambda: len(client.actions) == 1, "the stall")
        assert client.actions == [ActionRequest("stall", label, "block_sync", 30.0)]


async def test_s_refuses_a_peer_with_nothing_to_stall() -> None:
    client = ScriptedClient()
    peer = client.snap["peers"][2]
    for routine in peer["routines"]:
        if routine["service"] == "block_sync":
            routine["state"] = "exited"
    client.snap["peers"][3]["routines"] = client.snap["peers"][3]["routines"][:1]
    client.snap["peers"][1]["routines"] = [
        r for r in client.snap["peers"][1]["routines"] if r["service"] != "block_sync"
    ]
    app = RecordingConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        for i, expected in (
            # header_sync still runs on peer 2: the modal opens with it, block_sync disabled.
            (1, f"{fixture_label(1)}: header_sync is parked, block_sync is absent, nothing"),
            (3, f"{fixture_label(3)} has no header_sync routine and no block_sync routine"),
        ):
            await peers_cursor_on(app, pilot, fixture_label(i))
            app.notes.clear()
            await pilot.press("s")
            await until(pilot, lambda: bool(app.notes), "the refusal")
            assert isinstance(app.screen, PeersScreen)
            assert app.notes[-1][0].startswith(expected), app.notes
            assert app.notes[-1][1] == "warning"
        await peers_cursor_on(app, pilot, fixture_label(2))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StallScreen), "the stall modal")
        modal = app.screen
        assert isinstance(modal, StallScreen)
        assert modal.service == "header_sync"
        assert modal.query_one("#svc-block_sync", RadioButton).disabled
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, PeersScreen), "back on Peers")
        assert client.actions == []


# ---------------------------------------------------------------------- w: throttle
async def test_w_asks_for_kib_and_validates_them() -> None:
    client = FixtureClient(peers=6)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        label = fixture_label(2)
        await peers_cursor_on(app, pilot, label)
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, ThrottleScreen), "the throttle modal")
        modal = app.screen
        assert isinstance(modal, ThrottleScreen)
        assert modal.title_text == f"Throttle reads from {label}?"
        assert label in modal.detail and "0 lifts the throttle" in modal.detail
        field = modal.query_one("#throttle-kib", Input)
        assert field.value == f"{THROTTLE_DEFAULT_KIB:g}" == "64"
        for bad, message in (
            ("-5", "from 0 to 1,048,576 KiB/s (0 lifts the throttle; got -5)"),
            ("2000000", "from 0 to 1,048,576 KiB/s"),
            ("fast", "number of KiB/s from 0 to 1,048,576 (0 lifts the throttle; got 'fast')"),
        ):
            field.value = bad
            await pilot.press("enter")
            await pilot.pause()
            assert modal.is_current, bad  # still open, corrected in place
            assert message in modal.error, (bad, modal.error)
        assert client.actions == []
        field.value = "64"
        await pilot.press("enter")
        await until(pilot, lambda: len(client.actions) == 1, "the throttle")
        assert client.actions == [ActionRequest("throttle", label, rate=64.0)]
        # 0 lifts it; Esc cancels without acting.
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, ThrottleScreen), "the throttle modal")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, PeersScreen), "back on Peers")
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, ThrottleScreen), "the throttle modal")
        app.screen.query_one("#throttle-kib", Input).value = "0"
        await pilot.press("enter")
        await until(pilot, lambda: len(client.actions) == 2, "the lift")
        assert client.actions[1] == ActionRequest("throttle", label, rate=0.0)
        assert client.actions[1].describe() == f"lift the bandwidth throttle of {label}"


async def test_read_only_refuses_w() -> None:
    client = FixtureClient(peers=6, read_only=True)
    app = RecordingConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await peers_cursor_on(app, pilot, fixture_label(2))
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, PeersScreen)  # no modal opened
        assert app.notes == [
            ("read-only console: throttle is disabled (started with --read-only)", "error")
        ]
    result = await client.act(ActionRequest("throttle", fixture_label(2), rate=64.0))
    assert not result.ok and "read-only" in result.message
    assert client.actions == []


async def test_help_and_palette_name_s_and_w() -> None:
    app = ZakuraConsole(FixtureClient(peers=6), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await peers_cursor_on(app, pilot, fixture_label(0))
        rows = dict(app.help_rows())
        assert "block_sync" in rows["s"] and "header_sync" in rows["s"]
        assert "KiB/s" in rows["w"] and "0 lifts" in rows["w"]
        commands = {c.title: c.help for c in app.get_system_commands(app.screen)}
        assert "(w)" in commands["Throttle bandwidth of selected peer"]
        assert "block_sync" in commands["Stall sync reads of selected peer"]
        keys = {b.key for _ns, b, enabled, _tip in app.screen.active_bindings.values() if enabled}
        assert {"s", "w"} <= keys
