"""The Diagnostics view (key 6) and the status bar's count, on fixture data.

SVG snapshots at the two remote-session sizes (80x24, 120x40) with diagnostics and in the
empty state; Pilot checks that the view lists what the snapshot says, in severity order, that
the empty state names the node's own thresholds, and that the status bar counts them. After a
deliberate change: ``.venv/bin/pytest tests/console/test_diagnostics_view.py
--snapshot-update``, then look at the report.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from console.app import ZakuraConsole
from console.fixture import FixtureClient
from console.screens.diagnostics import DiagnosticsScreen
from console.widgets.status_bar import StatusBar
from node_core.observe.diagnostics import DiagnosticThresholds
from themes import load_themes

SMALL = (80, 24)
MEDIUM = (120, 40)
#: Wide enough for the status bar's long form (``diagnostics N``).
WIDE = (200, 40)


def _client(*, empty: bool = False, thresholds: dict[str, float] | None = None) -> FixtureClient:
    client = FixtureClient(peers=8)
    snap: Any = client._snapshot
    if empty:
        snap["diagnostics"] = []
    if thresholds is not None:
        snap["diagnostic_thresholds"] = thresholds
    return client


async def _settle(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, ZakuraConsole)
    await pilot.pause()
    await app.poll()
    await pilot.pause()


@pytest.mark.parametrize("size", [SMALL, MEDIUM], ids=["80x24", "120x40"])
@pytest.mark.parametrize("empty", [False, True], ids=["two", "empty"])
def test_diagnostics_view_snapshot(
    snap_compare: Callable[..., bool], size: tuple[int, int], empty: bool
) -> None:
    app = ZakuraConsole(_client(empty=empty))
    assert snap_compare(app, press=["6"], terminal_size=size, run_before=_settle)


def _text(app: ZakuraConsole, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def test_key_6_lists_the_node_diagnostics_most_severe_first() -> None:
    app = ZakuraConsole(_client())
    async with app.run_test(size=WIDE) as pilot:
        await _settle(pilot)
        await pilot.press("6")
        await _settle(pilot)
        assert isinstance(app.screen, DiagnosticsScreen)
        listing = _text(app, "#diag-list")
        assert listing.index("CRITICAL") < listing.index("WARNING")
        assert "header_tip_behind" in listing and "window_floor" in listing
        assert "for 37s" in listing and "for 1m35s" in listing
        assert "2 diagnostics" in _text(app, "#diag-summary")
        bar = str(app.screen.query_one(StatusBar).render())
        assert "diagnostics 2" in bar and "6 Diagnostics" in bar


async def test_the_empty_state_names_the_node_thresholds() -> None:
    custom = {**DiagnosticThresholds().to_dict(), "stall_s": 7.0, "panics": 9.0}
    app = ZakuraConsole(_client(empty=True, thresholds=custom))
    async with app.run_test(size=WIDE) as pilot:
        await _settle(pilot)
        await pilot.press("6")
        await _settle(pilot)
        empty = _text(app, "#diag-empty")
        assert empty.startswith("no diagnostics: everything within thresholds")
        assert "stalled routine 7 s" in empty and "9 panics in 300 s" in empty
        assert "diagnostics 0" in str(app.screen.query_one(StatusBar).render())


async def test_a_node_without_diagnostics_shows_no_count() -> None:
    """An older node sends no ``diagnostics``: no count, and the view says defaults."""
    client = _client()
    snap: Any = client._snapshot
    del snap["diagnostics"], snap["diagnostic_thresholds"]
    app = ZakuraConsole(client)
    async with app.run_test(size=WIDE) as pilot:
        await _settle(pilot)
        assert "diagnostics" not in str(app.screen.query_one(StatusBar).render())
        await pilot.press("6")
        await _settle(pilot)
        assert DiagnosticThresholds().summary() in _text(app, "#diag-empty")


@pytest.mark.parametrize("theme", [t.name for t in load_themes()])
@pytest.mark.parametrize("size", [SMALL, MEDIUM, (140, 40), WIDE], ids=lambda s: f"{s[0]}")
async def test_the_status_bar_shows_the_count_and_the_whole_current_view(
    theme: str, size: tuple[int, int]
) -> None:
    """In every theme (the ansi one names its colours ``ansi_red``...) and at every width,
    the count is drawn and the current view's name is not cut."""
    app = ZakuraConsole(_client(), theme=theme)
    async with app.run_test(size=size) as pilot:
        await _settle(pilot)
        await pilot.press("6")
        await _settle(pilot)
        bar = str(app.screen.query_one(StatusBar).render())
        assert re.search(r"diag(nostics)? 2", bar), bar
        assert "6 Diagnostics" in bar, bar  # whole, wherever the view list puts it
