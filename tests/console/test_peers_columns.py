"""Issue 15's Peers gaps: operator faults in the list, rates with units, state glyphs that
common terminal fonts carry, and ``--ascii`` for terminals that carry none."""

from __future__ import annotations

import copy
import io
import math
import unicodedata
from typing import Any

import pytest
from consolekit import ScriptedClient, assert_drawn, start, until
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Static

from console.app import ZakuraConsole
from console.fixture import fixture_label, fixture_snapshot
from console.format import ASCII_STATE_GLYPHS, STATE_GLYPHS, rate_text
from console.screens.peer_detail import PeerDetailScreen
from console.screens.peers import PeersScreen
from console.widgets.peer_rows import RATE_WINDOW_S, RowBuilder
from console.widgets.peer_table import PeerTable

NO_TIMER = 3600.0
SIZE = (140, 30)


async def open_table(app: ZakuraConsole, pilot: Pilot[Any]) -> PeerTable:
    await start(app, pilot)
    await pilot.press("2")
    await until(pilot, lambda: isinstance(app.screen, PeersScreen), "the Peers view")
    table = app.screen.query_one(PeerTable)
    await until(pilot, lambda: table.row_count > 0, "rows")
    return table


def cell(table: PeerTable, i: int, key: str) -> tuple[str, str]:
    cells = table.rendered_cells(fixture_label(i))
    assert cells is not None
    return cells[[s.key for s in table.specs].index(key)]


def routine(snap: dict[str, Any], i: int, service: str) -> dict[str, Any]:
    peer = snap["peers"][i]
    found: dict[str, Any] = next(r for r in peer["routines"] if r["service"] == service)
    return found


async def test_stall_and_throttle_show_in_the_peers_list() -> None:
    """A stall (``s``) or a throttle (``w``) in force showed only in the peer detail."""
    client = ScriptedClient()
    snap = client.snap
    for i in range(6):  # a clean slate: the fixture stalls one peer's header sync
        routine(snap, i, "header_sync")["header_sync"]["stalled_for_s"] = None
    routine(snap, 0, "block_sync")["block_sync"]["stalled_for_s"] = 12.5
    snap["peers"][2]["throttle_bytes_per_s"] = 65_536.0
    routine(snap, 4, "header_sync")["header_sync"]["stalled_for_s"] = 3.0
    snap["peers"][4]["throttle_bytes_per_s"] = 1024.0
    app = ZakuraConsole(client, refresh_interval=NO_TIMER)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_table(app, pilot)
        keys = [s.key for s in table.specs]
        # Right after the state glyphs: it is about the routines.
        assert keys.index("fault") == keys.index("svc:block_sync") + 1
        assert cell(table, 0, "fault") == ("S", "bold yellow")
        assert cell(table, 2, "fault") == ("W", "bold yellow")
        assert cell(table, 4, "fault") == ("SW", "bold yellow")
        assert cell(table, 1, "fault")[0] == ""
        assert_drawn(table)
        # The stall ends: the next frame clears the flag (a countdown is not a change).
        routine(client.snap, 0, "block_sync")["block_sync"]["stalled_for_s"] = 11.0
        await app.poll()
        await pilot.pause()
        assert cell(table, 0, "fault")[0] == "S"
        routine(client.snap, 0, "block_sync")["block_sync"]["stalled_for_s"] = None
        await app.poll()
        await pilot.pause()
        assert cell(table, 0, "fault")[0] == ""
        # Sortable, and the filter knows the words.
        table.sort_by("fault", reverse=True)
        await pilot.pause()
        assert table.row_labels()[:2] == [fixture_label(4), fixture_label(2)]
        table.set_filter("throttled")
        app.screen.refresh_view()
        await pilot.pause()
        assert set(table.row_labels()) == {fixture_label(2), fixture_label(4)}


def test_every_rate_carries_its_unit() -> None:
    assert [rate_text(r) for r in (0.0, 999.0, 16_384.0, 2_000_000.0)] == [
        "0B/s",
        "999B/s",
        "16K/s",
        "1.9M/s",
    ]
    assert max(len(rate_text(r)) for r in (1.0, 1023.0, 10_239.0, 1e9, 9e12)) <= 6


def test_state_glyphs_come_from_the_basic_geometric_shapes() -> None:
    """``⏸`` (U+23F8) drew as an empty box in the screenshots and many fonts; the glyphs
    are now from U+25A0-25FF (which terminal fonts, DejaVu Sans Mono included, carry), and
    the ``--ascii`` ones are letters."""
    for glyph in STATE_GLYPHS.values():
        assert len(glyph) == 1 and 0x25A0 <= ord(glyph) <= 0x25FF, unicodedata.name(glyph)
    assert len(set(STATE_GLYPHS.values())) == len(STATE_GLYPHS)
    assert all(g.isascii() and g.isalpha() for g in ASCII_STATE_GLYPHS.values())
    assert len(set(ASCII_STATE_GLYPHS.values())) == len(ASCII_STATE_GLYPHS)


async def test_ascii_mode_draws_letters_only() -> None:
    app = ZakuraConsole(ScriptedClient(), refresh_interval=NO_TIMER, ascii=True)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_table(app, pilot)
        assert cell(table, 0, "svc:discovery")[0] == "R1"
        assert cell(table, 1, "svc:header_sync")[0] == "P2"  # parked
        table.sort_by("conn", reverse=True)
        await pilot.pause()
        assert table.sort_description() == "conn v"
        for label in table.row_labels():
            cells = table.rendered_cells(label)
            assert cells is not None
            assert all(text.isascii() for text, _style in cells), cells
        assert_drawn(table)
        table.move_cursor(row=table.get_row_index(fixture_label(1)))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, PeerDetailScreen), "the detail")
        await app.poll()
        await pilot.pause()
        routines = app.screen.query_one("#detail-routines-body", Static)
        console = Console(width=140, file=io.StringIO(), color_system=None)
        with console.capture() as capture:
            console.print(routines.content)
        assert "P parked" in capture.get()


def test_an_idle_peers_delivery_rate_is_smoothed_a_busy_ones_is_not() -> None:
    """The node's delivery rate is a 10 s windowed maximum: an idle peer's swings between a
    single block's burst and 0. The table moves toward it; a busy peer's is shown as is."""
    builder = RowBuilder()
    snap = fixture_snapshot(6)
    idle, busy = fixture_label(5), fixture_label(0)

    def frame(t: float, idle_rate: float, busy_rate: float) -> dict[str, float | None]:
        doc = copy.deepcopy(snap)
        doc["generated_at"] = float(snap["generated_at"]) + t
        for peer in doc["peers"]:
            bs = routine(doc, doc["peers"].index(peer), "block_sync")["block_sync"]
            if peer["label"] == idle:
                bs["outstanding"], bs["delivery_rate"] = 0, idle_rate
            if peer["label"] == busy:
                bs["delivery_rate"] = busy_rate
        rows = builder.build(doc)
        return {label: rows[label].block_sync[3] for label in (idle, busy)}  # type: ignore[index]

    assert frame(0.0, 0.0, 100.0) == {idle: 0.0, busy: 100.0}
    shown = frame(1.0, 1e6, 200.0)  # a single block's burst on the idle peer
    assert shown[busy] == 200.0
    assert shown[idle] == pytest.approx(1e6 * (1 - math.exp(-1.0 / RATE_WINDOW_S)))
    assert frame(1.0, 1e6, 200.0)[idle] == shown[idle]  # the same frame again: no change
    later = frame(2.0, 0.0, 300.0)  # and gone again: it decays, it does not drop to 0
    assert 0 < later[idle] < shown[idle] and later[busy] == 300.0
    assert frame(120.0, 0.0, 300.0)[idle] == 0.0  # settles exactly, so rows are reused


def test_a_brief_document_s_rates_are_the_nodes() -> None:
    """A brief document from a node that computes rates carries them per peer: the rows draw
    those (no history of byte counts kept), a row whose fields and rates did not move is
    last frame's row, and a row whose rate moved gets its new text."""
    builder = RowBuilder()
    snap = fixture_snapshot(6)
    label = fixture_label(2)

    def frame(t: float, rate_in: float | None, bytes_in: int) -> Any:
        doc = copy.deepcopy(snap)
        doc["generated_at"] = float(snap["generated_at"]) + t
        for peer in doc["peers"]:
            peer["bytes_in_per_s"], peer["bytes_out_per_s"] = rate_in, 0.0
            peer["bytes_in"] = bytes_in  # moves, but is drawn only as the node's rate
        rows = builder.build(doc)
        cells = rows[label].cells(("discovery", "header_sync", "block_sync"))
        return rows[label], cells[-6:-4]

    row, rates = frame(0.0, None, 100)
    assert rates == (("", ""), ("", ""))  # the node has no rate yet
    row, rates = frame(0.25, 2048.0, 5_000)
    assert rates == (("2.0K/s", ""), ("0B/s", "dim"))
    again, same = frame(0.26, 2048.0, 9_000)  # same second of age, same rates
    assert again is row and same == rates
    moved, rates = frame(0.5, 512.0, 9_500)
    assert moved is not row and rates[0] == (rate_text(512.0), "")
    assert moved.rate_in == 512.0
