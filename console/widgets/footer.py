"""The key footer of every view: what the footer shows must survive an 80-column terminal and
must not offer what the console will refuse.

Textual's :class:`~textual.widgets.Footer` lays the keys out left to right and cuts the line
at the terminal's edge. With a view's own keys, pause, five fault keys and the theme key in
front of them, ``q Quit`` and ``? Keys`` fell off every view at 80 columns: the two keys a
new operator needs most. This footer pins them at the right edge, beside the command palette
key, so whatever is cut is a view key that ``?`` lists anyway; below :data:`COMPACT_BELOW`
columns it also drops the padding around each key.

A read-only console refuses every fault action (:class:`~console.policy.ActionPolicy`); its
footer does not advertise them. The keys stay bound, so pressing one still says why nothing
happens.

It subclasses Textual's footer and replaces its ``compose`` (keys are not grouped here); like
the peer table's render cache, that relies on Textual being pinned (``textual==8.2.8``).
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import HorizontalGroup
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from node_core.control import ACTIONS

#: Actions pinned at the right edge, in this order: they must never be cut.
PINNED = ("help", "quit")
#: Below this many columns the footer drops the padding around keys.
COMPACT_BELOW = 120


class ConsoleFooter(Footer):
    """The view's keys on the left, help, quit and the palette pinned on the right."""

    DEFAULT_CSS = """
    ConsoleFooter #footer-pinned {
        dock: right;
        width: auto;
        height: 1;
        background: $footer-background;
    }
    ConsoleFooter #footer-pinned FooterKey.-palette {
        border-left: vkey $foreground 20%;
        padding-right: 1;
    }
    ConsoleFooter.-compact #footer-pinned FooterKey.-palette {
        padding-right: 0;
    }
    """

    def hidden_actions(self) -> frozenset[str]:
        """Actions not advertised: every fault action when the console is read-only."""
        policy = getattr(self.app, "policy", None)
        read_only = bool(getattr(policy, "read_only", False))
        return frozenset(ACTIONS) if read_only else frozenset()

    def __init__(self) -> None:
        super().__init__()
        self._composed_width = 0

    def _width_of(self, binding: Binding, palette: bool = False) -> int:
        """Cells one key takes (its key, its description and the padding around them)."""
        text = len(self.app.get_key_display(binding)) + len(binding.description)
        if self.compact:
            return text + 2 + (1 if palette else 0)
        return text + 3 + (2 if palette else 0)

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        width = self.size.width or self.app.size.width
        self._composed_width = width
        if self.compact != (width < COMPACT_BELOW):
            self.compact = width < COMPACT_BELOW
        active = self.screen.active_bindings
        hidden = self.hidden_actions()
        seen: set[str] = set()
        keys: list[tuple[Binding, bool, str]] = []
        pinned: dict[str, tuple[Binding, bool, str]] = {}
        for _node, binding, enabled, tooltip in active.values():
            if not binding.show or binding.action in seen or binding.action in hidden:
                continue
            seen.add(binding.action)
            if binding.action in PINNED:
                pinned[binding.action] = (binding, enabled, tooltip)
            else:
                keys.append((binding, enabled, tooltip))
        palette = active.get(self.app.COMMAND_PALETTE_BINDING)
        if not (self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE):
            palette = None
        room = width - sum(self._width_of(pinned[a][0]) for a in PINNED if a in pinned)
        if palette is not None:
            room -= self._width_of(palette.binding, palette=True)
        for binding, enabled, tooltip in keys:
            room -= self._width_of(binding)
            if room < 0:
                break
            yield self._key(binding, enabled, tooltip)
        with HorizontalGroup(id="footer-pinned"):
            for action in PINNED:
                if action in pinned:
                    yield self._key(*pinned[action])
            if palette is not None:
                binding = palette.binding
                tooltip = binding.tooltip or binding.description
                yield self._key(binding, palette.enabled, tooltip, "-palette")

    def _key(self, binding: Binding, enabled: bool, tooltip: str, classes: str = "") -> FooterKey:
        key = FooterKey(
            binding.key,
            self.app.get_key_display(binding),
            binding.description,
            binding.action,
            disabled=not enabled,
            tooltip=tooltip,
            classes=classes,
        )
        return key.data_bind(compact=Footer.compact)

    def on_resize(self, event: events.Resize) -> None:
        """Compact below :data:`COMPACT_BELOW` columns; the keys that fit change with the
        width, so a new width lays them out again."""
        compact = event.size.width < COMPACT_BELOW
        if self.compact != compact:
            self.compact = compact
        if event.size.width != self._composed_width and self._bindings_ready:
            self._composed_width = event.size.width
            self.call_after_refresh(self.recompose)
