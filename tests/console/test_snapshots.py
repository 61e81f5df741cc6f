"""SVG snapshot tests of every view, from deterministic fixture data.

These are plain ``def`` tests: ``snap_compare`` runs the app in its own event loop. After a
deliberate UI change, regenerate with ``.venv/bin/pytest tests/console/test_snapshots.py
--snapshot-update`` and look at the report before committing the new SVGs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from console.app import ZakuraConsole
from console.fixture import FixtureClient
from themes import load_themes

SIZE = (140, 40)
#: The common remote-session terminal, and a mid-size one (issue 15 defect 4).
SMALL = (80, 24)
MEDIUM = (120, 40)


async def _settle(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, ZakuraConsole)
    await pilot.pause()
    await app.poll()
    await pilot.pause()


def _app(**kwargs: Any) -> ZakuraConsole:
    return ZakuraConsole(FixtureClient(peers=8, read_only=kwargs.pop("read_only", False)), **kwargs)


VIEWS: list[tuple[str, list[str]]] = [
    ("overview", ["1"]),
    ("peers", ["2", "down", "down"]),
    ("peer_detail", ["2", "down", "down", "enter"]),
    ("journal", ["3"]),
    ("misbehavior", ["4"]),
    ("parked", ["5"]),
    ("help", ["2", "question_mark"]),
    ("confirm_disconnect", ["2", "down", "d"]),
    ("confirm_stall", ["2", "down", "down", "down", "s"]),
    ("confirm_throttle", ["2", "down", "down", "down", "w"]),
]


@pytest.mark.parametrize(("name", "keys"), VIEWS, ids=[v[0] for v in VIEWS])
def test_view_snapshot(snap_compare: Callable[..., bool], name: str, keys: list[str]) -> None:
    assert snap_compare(_app(), press=keys, terminal_size=SIZE, run_before=_settle)


@pytest.mark.parametrize("theme", ["zakura-light", "zakura-high-contrast"])
def test_theme_snapshot(snap_compare: Callable[..., bool], theme: str) -> None:
    assert snap_compare(_app(theme=theme), press=["2"], terminal_size=SIZE, run_before=_settle)


def test_read_only_snapshot(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(_app(read_only=True), press=["2"], terminal_size=SIZE, run_before=_settle)


#: Every view (and the peer detail), at the sizes remote sessions make common.
SIZED_VIEWS = VIEWS[:6]


@pytest.mark.parametrize("theme", [t.name for t in load_themes()])
@pytest.mark.parametrize("size", [SMALL, MEDIUM], ids=["80x24", "120x40"])
@pytest.mark.parametrize(("name", "keys"), SIZED_VIEWS, ids=[v[0] for v in SIZED_VIEWS])
def test_view_in_every_theme_at_remote_sizes(
    snap_compare: Callable[..., bool],
    name: str,
    keys: list[str],
    size: tuple[int, int],
    theme: str,
) -> None:
    """Every view, at 80x24 and 120x40, in every shipped theme (issue 15): a layout or a
    colour token that one theme lacks shows up here as a changed picture."""
    assert snap_compare(_app(theme=theme), press=keys, terminal_size=size, run_before=_settle)


def test_ascii_snapshot(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(
        _app(ascii=True), press=["2", "down"], terminal_size=SMALL, run_before=_settle
    )
