"""The views and keys an operator is told about are the ones the app binds.

Three texts name them: ``zakura console --help``, the README's operator guide (section "The
console": its Views and Keys tables and the text around them) and the ``?`` help inside the
app. The truth is the app itself: :data:`console.app.VIEWS`, ``ZakuraConsole.BINDINGS`` and
each view screen's own ``BINDINGS``. These tests compare the texts with the bindings, so a key
or a view added, renamed or dropped in one place without the others fails here (the help once
listed views 1-4 after Parked became 5, and ``--read-only`` named two of five actions).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from consolekit import ScriptedClient
from textual.binding import Binding, BindingType

from console.app import VIEWS, ZakuraConsole
from console.screens.base import ConsoleScreen
from console.screens.peer_detail import PeerDetailScreen
from node_core.control import ACTIONS
from zakura.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"

#: Textual key names as the texts write them (lower case; single letters keep their case).
KEY_NAMES = {"question_mark": "?", "slash": "/", "escape": "esc"}


def key_name(key: str) -> str:
    key = key.strip()
    if len(key) == 1:
        return key
    key = key.lower()
    return KEY_NAMES.get(key, key)


def binding_keys(binding: Binding) -> list[str]:
    """Every key of a binding (``"escape,backspace"`` is two), as the texts write them."""
    return [key_name(k) for k in binding.key.split(",")]


def own_bindings(cls: type[object]) -> list[Binding]:
    """The bindings a class declares itself (not those it inherits from Textual)."""
    declared: list[BindingType] = list(vars(cls).get("BINDINGS", []))
    return [b for b in declared if isinstance(b, Binding)]


def app_bindings() -> list[Binding]:
    """The app's keys as ``zakura console`` runs it: the base app's, plus the Fleet view's."""
    from console.fleet_app import FleetConsole

    return [*own_bindings(ZakuraConsole), *own_bindings(FleetConsole)]


def view_screens() -> list[type[ConsoleScreen]]:
    """Every screen an operator reaches: one per view, plus the peer detail (Enter)."""
    from console.fleet_app import FleetConsole

    modes = [cls for cls in FleetConsole.MODES.values() if isinstance(cls, type)]
    return [*modes, PeerDetailScreen]


def flat(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------- the texts
@pytest.fixture
def console_help(capsys: pytest.CaptureFixture[str]) -> str:
    """``zakura console --help``, as printed, whitespace flattened (argparse wraps lines)."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["console", "--help"])
    assert exc.value.code == 0
    return flat(capsys.readouterr().out)


@pytest.fixture(scope="module")
def guide() -> str:
    """The README's operator guide: its "## The console" section, up to the next section."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## The console\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def subsection(guide: str, title: str) -> str:
    start = guide.index(f"\n### {title}\n")
    end = guide.find("\n### ", start + 1)
    return guide[start : end if end >= 0 else len(guide)]


def table_rows(section: str) -> list[tuple[str, str]]:
    """(first cell, second cell) of every body row of the markdown table in ``section``."""
    rows = []
    for line in section.splitlines():
        m = re.match(r"\|\s*(.*?)\s*\|\s*(.*?)\s*\|", line)
        if m and not set(m.group(1)) <= set("- ") and m.group(1) != "key":
            rows.append((m.group(1), m.group(2)))
    return rows


def ticked(text: str) -> list[str]:
    """Every ``code`` span of ``text``, as a key name."""
    return [key_name(k) for k in re.findall(r"`([^`]+)`", text)]


def keys_table(guide: str) -> list[str]:
    """The keys of the guide's Keys table, with a range such as `1`-`5` expanded."""
    keys: list[str] = []
    for first, _does in table_rows(subsection(guide, "Keys")):
        span = re.fullmatch(r"`(\d)`-`(\d)`", first)
        if span:
            keys += [str(n) for n in range(int(span.group(1)), int(span.group(2)) + 1)]
        else:
            keys += ticked(first)
    return keys


# ---------------------------------------------------------------------- views
def test_the_app_binds_every_view_and_nothing_else() -> None:
    switches = [b for b in own_bindings(ZakuraConsole) if b.action.startswith("switch_mode")]
    assert [(b.key, b.action) for b in switches] == [
        (key, f"switch_mode('{mode}')") for key, mode, _title in VIEWS
    ]
    assert [mode for _key, mode, _title in VIEWS] == list(ZakuraConsole.MODES)


def console_views() -> list[tuple[str, str]]:
    """The views of the console ``zakura console`` runs: the Fleet view, then the node's."""
    from console.launcher import LauncherConsole

    assert LauncherConsole.MODES.keys() - ZakuraConsole.MODES.keys() == {"fleet"}
    return [("0", "Fleet"), *((key, title) for key, _mode, title in VIEWS)]


def test_console_help_lists_every_view(console_help: str) -> None:
    m = re.search(r"Views: (.*?);", console_help)
    assert m, "zakura console --help no longer has its 'Views: ...;' sentence"
    named = re.findall(r"(\d+) ([A-Z][A-Za-z]+)", m.group(1))
    assert named == console_views(), m.group(0)


def test_readme_lists_every_view(guide: str) -> None:
    rows = table_rows(subsection(guide, "Views"))
    numbered = [(first.strip("`"), view) for first, view in rows if re.fullmatch(r"`\d+`", first)]
    assert numbered == console_views()
    view_keys = [key for key, _title in console_views()]
    assert [k for k in keys_table(guide) if k.isdigit()] == view_keys


# ---------------------------------------------------------------------- keys
def test_readme_keys_table_has_every_app_key(guide: str) -> None:
    table = keys_table(guide)
    for binding in app_bindings():
        for key in binding_keys(binding):
            if binding.show or binding.action.startswith("switch_mode"):
                assert key in table, f"{key} ({binding.description}) missing from README's Keys"
            else:  # a hidden key (Ctrl+C) is still told somewhere in the guide
                assert key in guide.lower(), f"{key} ({binding.description}) not in the README"


def test_every_key_the_readme_names_is_bound(guide: str) -> None:
    bound = {key for b in app_bindings() for key in binding_keys(b)}
    bound |= {key for cls in view_screens() for b in own_bindings(cls) for key in binding_keys(b)}
    unbound = [key for key in keys_table(guide) if key not in bound]
    assert not unbound, f"README's Keys table names keys nothing binds: {unbound}"


@pytest.mark.parametrize("screen", view_screens(), ids=lambda cls: cls.__name__)
def test_readme_tells_every_key_of_each_view(guide: str, screen: type[ConsoleScreen]) -> None:
    told = set(ticked(guide))
    for binding in own_bindings(screen):
        if not binding.show:
            continue  # an Escape that only cancels an open input is not a key to learn
        for key in binding_keys(binding):
            assert key in told, f"{screen.__name__}: {key} ({binding.description}) not in README"


def test_console_help_keys_are_bound(console_help: str) -> None:
    actions = {key: b.action for b in app_bindings() for key in binding_keys(b)}
    for key, action in (("?", "help"), ("q", "quit"), ("ctrl+c", "quit")):
        assert re.search(rf"(^|\s){re.escape(key)}\s", console_help.lower()), key
        assert actions.get(key) == action, f"{key} is bound to {actions.get(key)}, not {action}"
    assert "ctrl+p" in console_help.lower()
    assert ZakuraConsole.COMMAND_PALETTE_BINDING == "ctrl+p"


# ---------------------------------------------------------------------- actions
def test_every_action_has_a_key() -> None:
    assert {b.action for b in app_bindings() if b.action in ACTIONS} == set(ACTIONS)


def test_read_only_help_names_every_action(console_help: str) -> None:
    m = re.search(r"--read-only (.*?)(?= --[a-z])", console_help)
    assert m, "no --read-only option in zakura console --help"
    text = m.group(1)
    missing = [kind for kind in ACTIONS if not re.search(rf"\b{kind}\b", text)]
    assert not missing, f"--read-only help does not say it disables {missing}: {text!r}"


async def test_in_app_help_lists_every_app_key() -> None:
    from console.fleet import Fleet, FleetMember
    from console.fleet_app import FleetConsole

    app = FleetConsole(Fleet([FleetMember("n", ScriptedClient())]))
    async with app.run_test(size=(120, 40)):
        listed = {key_name(key) for key, _does in app.help_rows()}
    for binding in app_bindings():
        if binding.show or binding.action.startswith("switch_mode"):
            for key in binding_keys(binding):
                assert key in listed, f"{key} ({binding.description}) missing from the ? help"
