"""The console side of block sync, over fixture data: the Overview panel (next to header
sync, with its rate history), the Peers columns, the peer detail section, and snapshots from
a node that reports none of it.

The fixture is mid-sync (see ``console.fixture.fixture_block_sync``): 7,300 of 12,400
verified, 41 of 64 MiB of budget, 120 blocks in the reorder buffer, 30 applying. Per peer
(``_block_sync``, by ``i % 6``): 2 fills its window (``cwnd_saturated``), 3 is slow (cwnd 4,
16 KB/s), 4 is unproven, 5 has sent no status.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from consolekit import ScriptedClient, assert_drawn, start, until
from rich.console import Console
from test_header_sync_views import header_only_snapshot, kv, old_snapshot, peers_cursor_on
from textual.widgets import Sparkline, Static

from console.app import ZakuraConsole
from console.fixture import MIB, FixtureClient, fixture_label, fixture_snapshot
from console.screens.overview import OverviewScreen
from console.screens.peer_detail import PeerDetailScreen
from console.widgets.block_sync_cells import block_sync_cells, stop_text
from console.widgets.block_sync_detail import block_sync_section
from console.widgets.block_sync_panel import (
    BlockSyncPanel,
    budget_rows,
    mib,
    progress_rows,
    stall_text,
)
from console.widgets.header_sync_panel import HeaderSyncPanel, progress_bar
from console.widgets.journal_tail import JournalTail
from console.widgets.kv_panel import KVPanel

SIZE = (140, 40)
NO_TIMER = 3600.0


def rendered(renderable: Any, width: int = SIZE[0]) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


# ---------------------------------------------------------------------- Overview
async def test_overview_block_sync_panel_from_the_fixture() -> None:
    client = ScriptedClient(snap=fixture_snapshot(8))
    client.snap["block_sync"]["stall"] = None  # no stall: every line of both columns
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        screen = app.screen
        assert isinstance(screen, OverviewScreen)
        area = screen.query_one("#sync-panels")
        assert area.has_class("-block-sync") and area.has_class("-header-sync")
        assert screen.query_one("#ov-block-sync").display
        assert not screen.query_one("#sync-placeholder").display
        progress = kv(screen, "bs-progress")
        assert progress["verified"] == "7,300 of 12,400"
        assert not screen.query_one("#bs-stall").display
        # 5,100 blocks left at 85 blocks/s.
        assert progress["progress"] == f"{progress_bar(7_300, 12_400, 8)} · ETA 1m00s"
        assert progress["speed"] == "85.0 blk/s · 6.8 MB/s"
        assert progress["floor"] == "7,330 · epoch 0 · 7,300 committed"
        budget = kv(screen, "bs-budget")
        assert budget["budget"] == "41/64 MiB · peak 52"
        assert budget["held"] == "23 MiB · reserved 18"
        assert budget["reorder"] == "120 · applying 30 · 9.6 MiB"
        assert budget["work"] == "4,480 pending · 420 in flight · 150 received"
        # Header sync folds into one column next to it.
        hs = screen.query_one(HeaderSyncPanel)
        assert hs.has_class("-compact")
        assert not screen.query_one("#hs-queues").display
        chain = kv(screen, "hs-chain")
        assert chain["progress"].endswith("62.0% · ETA 24s")
        assert chain["peers"] == "7/8 with status · 1 parked"
        assert chain["reorgs"] == "0 · 1 abandoned"  # issue 16: chains given up, by reorgs


async def test_overview_says_a_block_sync_stall_and_nothing_without_one() -> None:
    """Issue 16: the node's next height has nobody fetching it. One line over the columns
    says which block, and when the header chain is given up; none when there is no stall."""
    client = ScriptedClient(snap=fixture_snapshot(8))
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=(250, 40)) as pilot:
        await start(app, pilot)
        await app.poll()  # the wording follows the panel's width, known after layout
        await pilot.pause()
        line = app.screen.query_one("#bs-stall", Static)
        text = str(line.render())
        assert line.display
        assert text == (
            "waiting for block 7,301: no peer serves it, giving the header up in 9 s"
            " (waited 6 s; peers: 2 ahead, 2 other, 1 budget, 1 cwnd, 1 nostat, 1 retry)"
        )
        # The columns give the stall line its row: the journal tail keeps its room.
        assert app.screen.query_one(JournalTail).size.height >= 6
        client.snap["block_sync"]["stall"] = None
        await app.poll()
        await pilot.pause()
        assert not line.display


def test_stall_text_fits_the_width_it_is_given() -> None:
    stall = {"height": 21, "waiting_s": 4.0, "give_up_in_s": 9.2, "peer_stops": {"no_work": 3}}
    full = stall_text(stall)
    assert full == (
        "waiting for block 21: no peer serves it, giving the header up in 9 s"
        " (waited 4 s; peers: 3 nowork)"
    )
    assert (
        stall_text(stall, 70)
        == "waiting for block 21: no peer serves it, giving the header up in 9 s"
    )
    assert stall_text(stall, 40) == "block 21 unserved, given up in 9 s"
    assert stall_text(None) is None and stall_text("x") is None
    hostile = {"height": "x", "peer_stops": {"\x1b[31m": "many"}}
    assert "\x1b" not in (stall_text(hostile) or "")  # peer-supplied codes are cleaned


@pytest.mark.parametrize("size", [(120, 40), (100, 30), (100, 24)])
async def test_overview_sync_panels_side_by_side(size: tuple[int, int]) -> None:
    client = ScriptedClient(snap=fixture_snapshot(8))
    client.snap["block_sync"]["stall"] = None
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=size) as pilot:
        await start(app, pilot)
        screen = app.screen
        hs, bs = (
            screen.query_one("#ov-header-sync").region,
            screen.query_one("#ov-block-sync").region,
        )
        assert hs.y == bs.y and hs.right <= bs.x and bs.right <= size[0], (hs, bs)
        assert screen.query_one(JournalTail).size.height >= 6, size
        progress = kv(screen, "bs-progress")
        # Whatever the width, the percentage and the ETA are never cut.
        panel = screen.query_one("#bs-progress", KVPanel)
        value = progress["progress"]
        assert "58.9% · ETA 1m00s" in value
        assert len("progress  " + value) <= panel.size.width, (size, value, panel.size)
        assert "62.0% · ETA 24s" in kv(screen, "hs-chain")["progress"]
        rates = screen.query_one("#bs-rates")
        if size[0] < 110:  # narrow: no bars
            assert value == "58.9% · ETA 1m00s"
        if size == (100, 24):  # short: three lines each, no sparklines
            assert len(panel.rows) == 3 and not rates.display
        else:
            assert len(panel.rows) == 4 and rates.display
            assert len(screen.query_one("#hs-chain", KVPanel).rows) == 5


async def test_overview_rate_history_and_renders_only_changes() -> None:
    client = ScriptedClient()
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        screen = app.screen
        panel = screen.query_one(BlockSyncPanel)
        columns = {n: screen.query_one(f"#{n}", KVPanel) for n in ("bs-progress", "bs-budget")}
        updates = dict.fromkeys(columns, 0)
        for name, column in columns.items():
            original = column.update

            def counting(*args: Any, _name: str = name, _orig: Any = original, **kw: Any) -> None:
                updates[_name] += 1
                _orig(*args, **kw)

            column.update = counting  # type: ignore[method-assign]
        await app.poll()
        await pilot.pause()
        assert updates == {"bs-progress": 0, "bs-budget": 0}  # the same frame: nothing
        assert list(panel.blocks_history) == [85.0]  # one point per snapshot, not per poll
        spark = screen.query_one("#bs-blocks-spark", Sparkline)
        assert list(spark.data or []) == []  # one point is no trend yet

        for step, rate in enumerate((120.0, 40.0), start=1):
            client.snap["generated_at"] += 0.25
            client.snap["block_sync"]["blocks_per_s"] = rate
            client.snap["block_sync"]["bytes_per_s"] = rate * 80_000
            await app.poll()
            await pilot.pause()
            assert updates == {"bs-progress": step, "bs-budget": 0}
        assert list(spark.data or []) == [85.0, 120.0, 40.0]
        volume = screen.query_one("#bs-bytes-spark", Sparkline)
        assert list(volume.data or []) == pytest.approx([6.8, 9.6, 3.2])
        # Budget nearly used up: the budget line warns (fills stop there).
        client.snap["block_sync"]["budget_reserved"] = 62 * MIB
        await app.poll()
        await pilot.pause()
        assert updates["bs-budget"] == 1
        row = screen.query_one("#bs-budget", KVPanel).rows[0]
        assert row[1].startswith("62/64 MiB") and "warning" in row[2]


def test_panel_rows_without_fields() -> None:
    """A block-sync section with nothing in it (a newer producer, an older one): dashes."""
    snap = fixture_snapshot(2)
    snap["block_sync"] = {}
    rows = {k: v for k, v, _s in progress_rows(snap)}
    assert rows["verified"] == "7,300 of 12,400"  # from the chain's verified tip
    assert rows["progress"].endswith("ETA —")
    assert rows["speed"] == "— · —"
    assert {k: v for k, v, _s in budget_rows({})}["budget"] == "—/— MiB · peak —"
    assert mib(2.5 * MIB) == "2.5" and mib(41 * MIB) == "41" and mib(None) == "—"


# ---------------------------------------------------------------------- Peers
async def test_peers_block_sync_columns() -> None:
    app = ZakuraConsole(FixtureClient(peers=8), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = await peers_cursor_on(app, pilot, fixture_label(0))
        keys = [s.key for s in table.specs]
        after = keys[keys.index("svc:block_sync") + 1 :]
        assert after[:5] == ["fault", "bs_out", "bs_cwnd", "bs_rate", "bs_stop"]
        after = after[1:]
        assert not any(k.startswith("hs_") for k in keys)  # their room went to block sync

        def cell(i: int, key: str) -> tuple[str, str]:
            cells = table.rendered_cells(fixture_label(i))
            assert cells is not None
            return cells[keys.index(key)]

        assert cell(0, "svc:block_sync") == ("●1", "green")
        assert [cell(0, k)[0] for k in after[:4]] == ["76", "96", "1.9M/s", "ahead"]
        assert [cell(2, k)[0] for k in after[:4]] == ["128", "128", "3.2M/s", "cwnd"]
        assert cell(3, "bs_cwnd") == ("4", "yellow")  # the slow peer, window at its floor
        assert cell(3, "bs_rate")[0] == "16K/s"
        assert cell(3, "bs_stop") == ("budget", "yellow")
        assert cell(4, "bs_cwnd") == ("16", "dim italic")  # unproven: probing
        assert cell(5, "bs_stop")[0] == "nostat" and cell(5, "bs_out") == ("0", "dim")
        assert cell(5, "bs_cwnd") == ("16", "dim italic")
        closed = table.rendered_cells(fixture_label(900))
        assert closed is not None and closed[keys.index("bs_out")][0] == ""
        assert_drawn(table)
        table.sort_by("bs_cwnd")
        await pilot.pause()
        live = [label for label in table.row_labels() if label != fixture_label(900)]
        assert live[0] == fixture_label(3) and live[-1] == fixture_label(2)
        assert_drawn(table)


async def test_peers_table_with_block_sync_fits_120_columns() -> None:
    app = ZakuraConsole(FixtureClient(peers=8), refresh_interval=NO_TIMER)
    async with app.run_test(size=(120, 30)) as pilot:
        table = await peers_cursor_on(app, pilot, fixture_label(3))
        widths = table.column_widths()
        # Every column but the close reason is whole on screen; it keeps six characters.
        assert sum(widths[:-1]) <= 120 - 7, widths
        line = table.render_line(1 + table.get_row_index(fixture_label(3))).text
        assert line.split()[-1] == "127.0.0.1:41003"  # the address, before the close reason
        assert " budget " in line and " 16K/s " in line


def test_block_sync_cells_from_documents() -> None:
    routines = fixture_snapshot(6)["peers"][3]["routines"]
    assert block_sync_cells(routines) == (3, 4, True, 0.2 * 81_920.0, "inflight_budget")
    assert block_sync_cells([r for r in routines if r["service"] != "block_sync"]) is None
    bare = [{"service": "block_sync", "block_sync": {"fill_stop": "x\x1b[31m"}}]
    assert block_sync_cells(bare) == (None, None, None, None, "x[31m")
    assert stop_text("cwnd_saturated") == "cwnd" and stop_text("brand_new_reason") == "brand_"


# ---------------------------------------------------------------------- Peer detail
@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        (
            2,
            [
                "servable 1 to 12,320",
                "outstanding 128 heights",
                "last fill stopped: its window is full (cwnd_saturated)",
                "cwnd 128 (hard cap 256) · phase startup · proven yes",
                "rtprop 9.7 ms · srtt 12.1 ms",
                "delivery 41.0 blk/s, 3.36 MB/s · reliability 1.00",
                "requests (2)",
            ],
        ),
        (
            3,
            [
                "liveness 2.4 s left",
                "the byte budget is used up (inflight_budget)",
                "cwnd 4 (hard cap 256) · phase probe_rtt",
                "reliability 0.41 · requests without progress 3",
                "7,302",
                "1.3 s",
            ],
        ),
        (
            4,
            [
                "accepted 0 blocks",
                "proven no",
                "requests (1)",
                # Issue 16: held back after a probe without progress, asked again later.
                "held back after requests without progress, until its backoff ends "
                "(retry_backoff) · retry in 2.5 s",
            ],
        ),
        (1, ["it served a block of another chain at the next height (other_chain)"]),
        (
            5,
            [
                "servable none (no Status yet)",
                "liveness idle",
                "no Status from the peer yet (no_status)",
                "rtprop — · srtt —",
                "requests: none",
            ],
        ),
    ],
)
async def test_peer_detail_block_sync_section(peer: int, expected: list[str]) -> None:
    app = ZakuraConsole(FixtureClient(peers=8), refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await peers_cursor_on(app, pilot, fixture_label(peer))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PeerDetailScreen), "the detail")
        await pilot.pause()
        body = rendered(app.screen.query_one("#detail-routines-body", Static).content)
        assert "block_sync  servable" in body
        for fragment in expected:
            assert fragment in body, (fragment, body)


def test_detail_section_of_an_empty_document() -> None:
    body = rendered(block_sync_section({}))
    assert "servable none" in body and "last fill stopped: —" in body
    assert "retry in" not in rendered(block_sync_section({"window": {"retry_in_s": None}}))
    assert "requests: none" in body and "window" not in body


# ---------------------------------------------------------------------- older snapshots
async def test_views_render_a_snapshot_without_block_sync() -> None:
    client = ScriptedClient(snap=header_only_snapshot())
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        screen = app.screen
        assert not screen.query_one("#ov-block-sync").display
        assert not screen.query_one(HeaderSyncPanel).has_class("-compact")
        assert screen.query_one("#hs-queues").display  # the full three-column form
        table = await peers_cursor_on(app, pilot, fixture_label(2))
        keys = [s.key for s in table.specs]
        assert "svc:block_sync" not in keys and "hs_queue" in keys
        assert not any(k.startswith("bs_") for k in keys)
        assert_drawn(table)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PeerDetailScreen), "the detail")
        await pilot.pause()
        body = rendered(app.screen.query_one("#detail-routines-body", Static).content)
        assert "header_sync  cmd queue" in body and "block_sync" not in body


async def test_block_sync_without_header_sync_and_no_snapshot_sections() -> None:
    """Block sync alone takes the row; a node with neither shows the placeholder."""
    snap = old_snapshot()
    snap["block_sync"] = fixture_snapshot(1)["block_sync"]
    client = ScriptedClient(snap=snap)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        screen = app.screen
        assert screen.query_one("#ov-block-sync").display
        assert not screen.query_one("#ov-header-sync").display
        assert not screen.query_one("#sync-placeholder").display
        assert kv(screen, "bs-progress")["verified"] == "7,300 of —"
        assert screen.query_one("#ov-block-sync").region.width == SIZE[0]
        del client.snap["block_sync"]
        await app.poll()
        await pilot.pause()
        assert screen.query_one("#sync-placeholder").display
        assert not screen.query_one("#ov-block-sync").display


async def test_peer_detail_says_when_the_peers_reads_are_throttled() -> None:
    snap = fixture_snapshot(8)
    victim = snap["peers"][3]
    victim["throttle_bytes_per_s"] = 64 * 1024
    client = ScriptedClient(snap=snap)
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        await peers_cursor_on(app, pilot, victim["label"])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PeerDetailScreen), "the detail")
        await pilot.pause()
        header = rendered(app.screen.query_one("#detail-header", Static).content)
        assert "reads throttled to 64.0 KiB/s" in header, header
        # Lifted: the line goes away on the next frame.
        client.snap["peers"][3]["throttle_bytes_per_s"] = None
        await app.poll()
        await pilot.pause()
        header = rendered(app.screen.query_one("#detail-header", Static).content)
        assert "throttled" not in header
