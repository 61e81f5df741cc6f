"""Console themes, defined as data (one TOML file each) and registered at start-up.

Each file holds the colours of a :class:`textual.theme.Theme` plus the console's own tokens
(``peer-ok``, ``peer-parked``, ``peer-exited``, ``peer-panicked``, ``misbehaving``), which the
views use so that state colours follow the theme. The files ship inside the wheel and are read
with :mod:`importlib.resources`, so an installed console finds them without the source tree.

``ansi`` (``ansi = true`` in its file) uses the terminal's own 16 colours (``ansi_green``...)
instead of RGB: over SSH, in a browser terminal or on a terminal without true colour, RGB
colours are approximated (or lost), while the terminal's palette is what its user tuned.

A theme that is not ours (Textual's built-ins, which Textual itself keeps registered) lacks
the console's tokens; :func:`variable_defaults` derives them from its standard colours, so no
stylesheet can meet an undefined ``$misbehaving`` whatever theme is active.
"""

from __future__ import annotations

import tomllib
from importlib import resources

from textual.theme import Theme

#: Order of ``t`` cycling; the first is the default.
THEME_FILES = (
    "zakura-dark.toml",
    "zakura-light.toml",
    "zakura-high-contrast.toml",
    "ansi.toml",
)

#: The theme that uses the terminal's own 16 colours (chosen when true colour is missing).
ANSI_THEME = "ansi"

#: Console-specific variables every theme must define.
REQUIRED_VARIABLES = ("peer-ok", "peer-parked", "peer-exited", "peer-panicked", "misbehaving")

_COLOUR_FIELDS = (
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)


class ThemeFileError(ValueError):
    """A theme file is missing a field or has one we do not know."""


def parse_theme(text: str, source: str) -> Theme:
    """Build a Theme from TOML ``text``; ``source`` names the file in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ThemeFileError(f"{source}: not valid TOML: {exc}") from exc
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ThemeFileError(f"{source}: 'name' is required")
    colours = data.get("colors", {})
    unknown = set(colours) - set(_COLOUR_FIELDS)
    if unknown:
        raise ThemeFileError(f"{source}: unknown colour fields {sorted(unknown)}")
    if "primary" not in colours:
        raise ThemeFileError(f"{source}: colors.primary is required")
    ansi = data.get("ansi", False)
    if not isinstance(ansi, bool):
        raise ThemeFileError(f"{source}: 'ansi' must be true or false")
    variables = {str(k): str(v) for k, v in data.get("variables", {}).items()}
    missing = [v for v in REQUIRED_VARIABLES if v not in variables]
    if missing:
        raise ThemeFileError(f"{source}: variables {missing} are required")
    c = {k: str(v) for k, v in colours.items()}
    return Theme(
        name=name,
        primary=c["primary"],
        secondary=c.get("secondary"),
        warning=c.get("warning"),
        error=c.get("error"),
        success=c.get("success"),
        accent=c.get("accent"),
        foreground=c.get("foreground"),
        background=c.get("background"),
        surface=c.get("surface"),
        panel=c.get("panel"),
        boost=c.get("boost"),
        dark=bool(data.get("dark", True)),
        variables=variables,
        ansi=ansi,
    )


def variable_defaults(theme: Theme) -> dict[str, str]:
    """The console's tokens for a theme that does not define them, from its own colours.

    Textual resolves a stylesheet's variables against the active theme, and one unknown
    variable is a fatal stylesheet error; this keeps any theme (a built-in picked by name, a
    user's) usable on every view. Our own themes define every token, and theirs win.
    """
    ansi = theme.ansi
    success = theme.success or ("ansi_green" if ansi else "#4EBF71")
    warning = theme.warning or ("ansi_yellow" if ansi else "#FFA62B")
    error = theme.error or ("ansi_red" if ansi else "#BA3C5B")
    return {
        "peer-ok": success,
        "peer-parked": warning,
        "peer-exited": "ansi_bright_black" if ansi else "#808080",
        "peer-panicked": error,
        "misbehaving": error,
        # Textual's own screen stylesheet reads these two when a theme is ANSI.
        "ansi-background": "ansi_black",
        "ansi-foreground": "ansi_white",
    }


def load_themes() -> list[Theme]:
    """Every packaged theme, in cycling order."""
    folder = resources.files(__package__)
    return [parse_theme(folder.joinpath(f).read_text("utf-8"), f) for f in THEME_FILES]
