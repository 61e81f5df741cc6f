"""Issue 15 defect 4: at 80x24 (the common remote-session size) every view shows its
essential numbers whole, the footer shows quit and help, the status bar and the peer detail's
header stay on screen, and the Peers view keeps label, state glyphs and the key numbers.

The SVG snapshots (``test_snapshots.py``) show what is drawn; these say what must hold.
"""

from __future__ import annotations

from typing import Any

import pytest
from consolekit import until
from textual.pilot import Pilot
from textual.widgets import Footer, Static

from console.app import ZakuraConsole
from console.fixture import FixtureClient, fixture_label
from console.screens.base import ConsoleScreen
from console.screens.overview import OverviewScreen
from console.screens.peer_detail import PeerDetailScreen
from console.widgets.footer import ConsoleKey
from console.widgets.journal_tail import JournalTail
from console.widgets.kv_panel import KVPanel
from console.widgets.peer_table import PeerTable
from console.widgets.status_bar import StatusBar

SIZES = [(80, 24), (120, 40)]
VIEWS = [
    ("1", "Overview"),
    ("2", "Peers"),
    ("3", "Journal"),
    ("4", "Misbehavior"),
    ("5", "Parked"),
]


async def show(app: ZakuraConsole, pilot: Pilot[Any], *keys: str) -> ConsoleScreen:
    await pilot.pause()
    await app.poll()
    for key in keys:
        await pilot.press(key)
        await pilot.pause()
    await app.poll()
    await pilot.pause()
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, ConsoleScreen)
    return screen


def check_frame(app: ZakuraConsole, title: str, size: tuple[int, int]) -> None:
    """Status bar on the first line naming the view; footer on the last with help and quit
    whole, right of every other key (none cut underneath them)."""
    width, height = size
    screen = app.screen
    bar = screen.query_one(StatusBar)
    assert bar.region.y == 0 and title in str(bar.render()), (title, bar.region)
    footer = screen.query_one(Footer)
    assert footer.region.y == height - 1
    keys = {k.key: k.region for k in footer.query(ConsoleKey)}
    assert "q" in keys and "question_mark" in keys, sorted(keys)
    pinned = min(keys["question_mark"].x, keys["q"].x)
    for key, region in keys.items():
        assert region.right <= width, (key, region)
        if key not in ("q", "question_mark", "ctrl+p"):
            assert region.right <= pinned, (key, region)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("key", "title"), VIEWS)
async def test_every_view_keeps_status_bar_and_footer(
    size: tuple[int, int], key: str, title: str
) -> None:
    app = ZakuraConsole(FixtureClient(peers=8), refresh_interval=3600)
    async with app.run_test(size=size) as pilot:
        await show(app, pilot, key)
        check_frame(app, title, size)


def whole(panel: KVPanel) -> list[str]:
    """The rows of ``panel`` that do not fit its width (empty when every value is whole)."""
    width = panel.content_size.width
    key_width = max([panel.key_width, *(len(k) for k, _v, _s in panel.rows)])
    return [f"{k}: {v}" for k, v, _s in panel.rows if key_width + 2 + len(v) > width]


@pytest.mark.parametrize("size", SIZES)
async def test_overview_numbers_are_whole_and_the_journal_keeps_six_lines(
    size: tuple[int, int],
) -> None:
    app = ZakuraConsole(FixtureClient(peers=8), refresh_interval=3600)
    async with app.run_test(size=size) as pilot:
        screen = await show(app, pilot, "1")
        assert isinstance(screen, OverviewScreen)
        for panel_id in ("ov-node-kv", "ov-conns-kv", "ov-lag-kv", "hs-chain", "bs-progress"):
            panel = screen.query_one(f"#{panel_id}", KVPanel)
            assert panel.rows, panel_id
            assert not whole(panel), (panel_id, whole(panel), panel.content_size)
        lag = {k: v for k, v, _s in screen.query_one("#ov-lag-kv", KVPanel).rows}
        assert lag["lag p50"] == "0.4 ms" and lag["lag p99"] == "3.1 ms"
        chain = {k: v for k, v, _s in screen.query_one("#hs-chain", KVPanel).rows}
        assert chain["header tip"] == "12,400 of 20,000"
        tail = screen.query_one(JournalTail)
        assert tail.size.height >= 6 and len(tail.shown_seqs) >= 6  # the README's promise
        # The block-sync stall (issue 16) is on screen, said whole in the words that fit.
        stall = screen.query_one("#bs-stall", Static)
        text = str(stall.render())
        assert stall.display and "7,301" in text and "9 s" in text
        assert len(text) <= stall.content_size.width, text
        check_frame(app, "Overview", size)


async def test_peers_at_80_columns_keep_label_glyphs_and_key_numbers() -> None:
    app = ZakuraConsole(FixtureClient(peers=8), refresh_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await show(app, pilot, "2")
        table = screen.query_one(PeerTable)
        keys = [s.key for s in table.specs]
        must = ["label", "svc:discovery", "svc:header_sync", "svc:block_sync", "fault"]
        must += ["bs_out", "bs_cwnd", "bs_rate", "bs_stop", "misb"]
        right = 0
        for key, width in zip(keys, table.column_widths(), strict=True):
            right += width
            if key in must:
                assert right <= table.scrollable_content_region.width, (key, right)
        assert set(must) <= set(keys)
        line = table.render_line(1 + table.get_row_index(fixture_label(3))).text
        # Label without its prefix, glyphs, the stall flag, the numbers with their units.
        for fragment in ("a36a82d119f1c642", "●4", "S", " 16K/s ", "budget"):
            assert fragment in line, (fragment, line)


async def test_peer_detail_at_80x24_keeps_its_header_and_journal_on_screen() -> None:
    app = ZakuraConsole(FixtureClient(peers=8), refresh_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(app, pilot, "2", "down", "down", "enter")
        await until(pilot, lambda: isinstance(app.screen, PeerDetailScreen), "the detail")
        screen = app.screen
        assert isinstance(screen, PeerDetailScreen)
        assert screen.scroll_y == 0 and screen.max_scroll_y == 0  # the screen never scrolls
        header = screen.query_one("#detail-header")
        assert header.region.y == 1 and header.region.height >= 2
        first = str(header.render()).splitlines()[0]
        assert fixture_label(2) in first
        journal = screen.query_one("#detail-right")
        assert journal.region.height >= 4 and journal.region.bottom <= 23
        check_frame(app, "Peers", (80, 24))
