"""Themes are data files, validated on load, registered at start-up and cycled with ``t``."""

from __future__ import annotations

import pytest

from console.app import ZakuraConsole
from console.fixture import FixtureClient
from themes import REQUIRED_VARIABLES, ThemeFileError, load_themes, parse_theme


def test_three_packaged_themes_load_with_console_variables() -> None:
    themes = load_themes()
    assert [t.name for t in themes] == [
        "zakura-dark",
        "zakura-light",
        "zakura-high-contrast",
    ]
    assert [t.dark for t in themes] == [True, False, True]
    for theme in themes:
        for var in REQUIRED_VARIABLES:
            assert theme.variables[var].startswith("#"), (theme.name, var)


@pytest.mark.parametrize(
    ("text", "message"),
    [
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
        for _ in range(3):
            await pilot.press("t")
            await pilot.pause()
            seen.append(app.theme)
        assert seen == ["zakura-dark", "zakura-light", "zakura-high-contrast", "zakura-dark"]


async def test_theme_flag_selects_the_start_theme() -> None:
    app = ZakuraConsole(FixtureClient(), theme="zakura-high-contrast")
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        assert app.theme == "zakura-high-contrast"
