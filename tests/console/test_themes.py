"""Themes are data files, validated on load, registered at start-up and cycled with ``t``;
whatever theme is active (ours, or a Textual built-in picked by name), every view renders."""

from __future__ import annotations

from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot

from console.app import ConsoleThemes, ZakuraConsole
from console.fixture import FixtureClient
from console.launcher import default_theme
from console.screens.base import ConsoleScreen
from console.screens.peer_detail import PeerDetailScreen
from themes import REQUIRED_VARIABLES, ThemeFileError, load_themes, parse_theme


def test_packaged_themes_load_with_console_variables() -> None:
    themes = load_themes()
    assert [t.name for t in themes] == [
        "zakura-dark",
        "zakura-light",
        "zakura-high-contrast",
        "ansi",
    ]
    assert [t.dark for t in themes] == [True, False, True, True]
    assert [t.ansi for t in themes] == [False, False, False, True]
    for theme in themes:
        prefix = "ansi_" if theme.ansi else "#"
        for var in REQUIRED_VARIABLES:
            assert theme.variables[var].startswith(prefix), (theme.name, var)


async def _walk_views(app: ZakuraConsole, pilot: Pilot[Any]) -> list[str]:
    """Every view (1-5, then a peer's detail), each rendered with data; the titles seen."""
    seen = []
    for key in ("1", "2", "3", "4", "5"):
        await pilot.press(key)
        await app.poll()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ConsoleScreen)
        seen.append(screen.VIEW_TITLE)
    await pilot.press("2", "down", "enter")
    await app.poll()
    await pilot.pause()
    assert isinstance(app.screen, PeerDetailScreen)
    await pilot.press("escape")
    await pilot.pause()
    return seen


async def _offered_themes(app: App[Any]) -> list[str]:
    provider = ConsoleThemes(app.screen)
    return [name for name, _callback in provider.commands]


async def test_every_theme_the_palette_offers_works_on_every_view() -> None:
    """Issue 15 defect 1: picking a theme in the palette, then opening view 4, crashed the
    console on an undefined ``$misbehaving``. The picker offers the console's themes only,
    and each renders every view."""
    app = ZakuraConsole(FixtureClient())
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        offered = await _offered_themes(app)
        assert offered == [t.name for t in load_themes()]
        for name in offered:
            app.theme = name
            await pilot.pause()
            views = await _walk_views(app, pilot)
            assert views == ["Overview", "Peers", "Journal", "Misbehavior", "Parked"]
            assert app.is_running and app.theme == name


@pytest.mark.parametrize("theme", ["nord", "textual-dark", "textual-light", "ansi-dark"])
async def test_a_textual_builtin_theme_does_not_break_any_view(theme: str) -> None:
    """The exact report: a built-in theme, then view 4. Built-ins lack the console's colour
    tokens; the app derives them from the theme's own colours."""
    app = ZakuraConsole(FixtureClient())
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        app.theme = theme
        await pilot.pause()
        await _walk_views(app, pilot)
        assert app.is_running and app.theme == theme
        assert app.get_css_variables()["misbehaving"]


async def test_palette_has_one_theme_and_one_keys_command() -> None:
    app = ZakuraConsole(FixtureClient())
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert titles.count("Theme") == 1 and titles.count("Keys") == 1
        assert "Cycle theme" not in titles and "Show keys" not in titles
        # The palette's Theme opens the console's picker; its Keys, the console's key help.
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Keys")
        command.callback()
        await pilot.pause()
        from console.screens.modals import HelpScreen

        assert isinstance(app.screen, HelpScreen)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name = 'x'\nansi = 'yes'\n[colors]\nprimary = '#fff'\n[variables]\n",
            "'ansi' must be true or false",
        ),
        ("name = 'x'\n[colors]\nsecondary = '#fff'\n", "colors.primary is required"),
        ("[colors]\nprimary = '#fff'\n", "'name' is required"),
        ("name = 'x'\n[colors]\nprimary = '#fff'\nglow = '#000'\n", "unknown colour fields"),
        ("name = 'x'\n[colors]\nprimary = '#fff'\n", "variables"),
        ("name = = 'x'", "not valid TOML"),
    ],
)
def test_bad_theme_files_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ThemeFileError, match=message):
        parse_theme(text, "bad.toml")


async def test_t_cycles_every_theme_and_wraps() -> None:
    app = ZakuraConsole(FixtureClient())
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        seen = [app.theme]
        for _ in range(4):
            await pilot.press("t")
            await pilot.pause()
            seen.append(app.theme)
        assert seen == [
            "zakura-dark",
            "zakura-light",
            "zakura-high-contrast",
            "ansi",
            "zakura-dark",
        ]


async def test_theme_flag_selects_the_start_theme() -> None:
    app = ZakuraConsole(FixtureClient(), theme="zakura-high-contrast")
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        assert app.theme == "zakura-high-contrast"


@pytest.mark.parametrize(
    ("flag", "colorterm", "expected"),
    [
        (None, "truecolor", None),  # the app's default, zakura-dark
        (None, "24bit", None),
        (None, "", "ansi"),  # SSH, tmux without it set, browser terminals
        (None, None, "ansi"),
        (None, "256color", "ansi"),
        ("zakura-light", "", "zakura-light"),  # --theme always wins
        ("zakura-dark", None, "zakura-dark"),
    ],
)
def test_ansi_theme_is_chosen_without_true_colour(
    flag: str | None, colorterm: str | None, expected: str | None
) -> None:
    environ = {} if colorterm is None else {"COLORTERM": colorterm}
    assert default_theme(flag, environ) == expected


async def test_ansi_theme_renders_with_the_terminals_own_colours() -> None:
    app = ZakuraConsole(FixtureClient(), theme="ansi")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await _walk_views(app, pilot)
        assert app.current_theme.ansi and app.native_ansi_color
        variables = app.get_css_variables()
        assert variables["peer-ok"] == "ansi_green" and variables["misbehaving"] == "ansi_magenta"
