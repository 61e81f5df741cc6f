"""Theme colours for Rich renderables, and the colour each kind of journal event gets.

Static widgets style :class:`~textual.content.Content` with ``$variables`` directly, which
Textual resolves at render time. DataTable cells, however, are Rich renderables rendered
outside the CSS system, so their styles must be concrete. :func:`rich_style` resolves a
``$variable`` style against the app's current theme; widgets that use it re-render on
``App.theme_changed_signal`` so that ``t`` recolours them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.style import Style
from textual.color import Color
from textual.markup import parse_style

if TYPE_CHECKING:
    from textual.app import App

#: Style (with theme variables) of each journal table, shared by the journal log and the tail.
TABLE_STYLES: dict[str, str] = {
    "conn": "$primary",
    "handshake": "$secondary",
    "routine": "$peer-ok",
    "misbehavior": "$misbehaving bold",
    "fault": "$warning bold",
    "discovery": "$accent",
    "node": "$foreground bold",
    "stream": "$foreground-muted",
}

#: Event names that deserve the alarm colour whatever their table.
ALARM_EVENTS = ("panicked", "failed", "rejected", "closed.punitive")


def table_style(table: str) -> str:
    """The ``$variable`` style of a journal table (unknown tables render plain)."""
    return TABLE_STYLES.get(table, "")


def event_style(table: str, event: str) -> str:
    """The style of an event name: alarms stand out, parks warn, the rest follow the table."""
    if any(event.startswith(a) or event.endswith(a) for a in ALARM_EVENTS):
        return "$peer-panicked bold"
    if "park" in event:
        return "$peer-parked"
    if table == "routine" and event == "exited":
        return "$peer-exited"
    return table_style(table)


_CACHE: dict[tuple[str, str], Style] = {}
_VARIABLES: dict[str, dict[str, str]] = {}


def rich_style(app: App[object], spec: str) -> Style:
    """Resolve a Textual style string such as ``"$peer-ok bold"`` to a concrete Rich style.

    Args:
        app: The running app; its current theme supplies the variables.
        spec: A style with ``$variable`` references (empty for no style).

    Returns:
        The Rich style, cached per (theme, spec): a table of thousands of cells costs one dict
        lookup per cell, and a theme's variables never change once it is registered.
    """
    if not spec:
        return Style()
    key = (app.theme, spec)
    style = _CACHE.get(key)
    if style is None:
        # Computed from the theme itself, not read from ``app.theme_variables``, which lags
        # behind ``app.theme`` for a moment after a theme switch.
        variables = _VARIABLES.get(app.theme)
        if variables is None:
            variables = _VARIABLES[app.theme] = app.get_css_variables()
        try:
            parsed = parse_style(spec, variables)
            style = parsed.rich_style
            fg = parsed.foreground
            if fg is not None and fg.a < 1:
                # Rich has no alpha: blend a translucent colour (``$foreground-muted``) onto
                # the theme background, or it would render at full strength.
                background = Color.parse(variables.get("background", "#000000"))
                style += Style(color=(background + fg).rich_color)
        except Exception:  # an unknown variable must not break rendering: fall back to plain
            style = Style()
        _CACHE[key] = style
    return style
