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

It subclasses Textual's footer and replaces its ``compose`` (keys are not grouped here), with
public API only: its keys are :class:`ConsoleKey`, drawn as Textual's own footer keys are
(Textual's key widget lives in a private module), and it knows the screen's bindings are ready
from :meth:`Footer.bindings_changed`, the hook Textual calls when they are.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import HorizontalGroup
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from node_core.control import ACTIONS

#: Actions pinned at the right edge, in this order: they must never be cut.
PINNED = ("help", "quit")
#: Below this many columns the footer drops the padding around keys.
COMPACT_BELOW = 120


class ConsoleKey(Widget):
    """One key in the footer (``q Quit``): a click presses it, a refused one only beeps.

    The look and behaviour of Textual's own footer key, with the same component classes and
    theme variables, so the footer looks as it did.
    """

    ALLOW_SELECT = False
    COMPONENT_CLASSES: ClassVar[set[str]] = {"footer-key--key", "footer-key--description"}

    DEFAULT_CSS = """
    ConsoleKey {
        width: auto;
        height: 1;
        text-wrap: nowrap;
        background: $footer-item-background;
        .footer-key--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
            padding: 0 1;
        }
        .footer-key--description {
            padding: 0 1 0 0;
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        &:hover {
            pointer: pointer;
            color: $footer-key-foreground;
            background: $block-hover-background;
        }
        &.-disabled {
            text-style: dim;
        }
        &.-compact {
            .footer-key--key {
                padding: 0;
            }
            .footer-key--description {
                padding: 0 0 0 1;
            }
        }
    }
    """

    compact = reactive(True)
    """Display compact style."""

    def __init__(
        self,
        key: str,
        key_display: str,
        description: str,
        action: str,
        *,
        refused: bool = False,
        tooltip: str = "",
        classes: str = "",
    ) -> None:
        self.key = key
        self.key_display = key_display
        self.description = description
        self.action = action
        #: Shown dimmed; a click beeps (``disabled`` would make the widget ignore the mouse).
        self.refused = refused
        super().__init__(classes=f"{classes} -disabled" if refused else classes)
        self.set_reactive(Widget.shrink, False)
        if tooltip:
            self.tooltip = tooltip

    def render(self) -> Text:
        key_style = self.get_component_rich_style("footer-key--key")
        description_style = self.get_component_rich_style("footer-key--description")
        key_padding = self.get_component_styles("footer-key--key").padding
        description_padding = self.get_component_styles("footer-key--description").padding
        if self.description:
            text = Text.assemble(
                (" " * key_padding.left + self.key_display + " " * key_padding.right, key_style),
                (
                    " " * description_padding.left
                    + self.description
                    + " " * description_padding.right,
                    description_style,
                ),
            )
        else:
            text = Text.assemble((self.key_display, key_style))
        text.stylize_before(self.rich_style)
        return text

    def on_mouse_down(self) -> None:
        if self.refused:
            self.app.bell()
        else:
            self.app.simulate_key(self.key)

    def watch_compact(self, compact: bool) -> None:
        self.set_class(compact, "-compact")


class ConsoleFooter(Footer):
    """The view's keys on the left, help, quit and the palette pinned on the right."""

    DEFAULT_CSS = """
    ConsoleFooter #footer-pinned {
        dock: right;
        width: auto;
        height: 1;
        background: $footer-background;
    }
    ConsoleFooter.-compact ConsoleKey {
        margin-right: 1;
    }
    ConsoleFooter #footer-pinned ConsoleKey.-palette {
        border-left: vkey $foreground 20%;
        padding-right: 1;
    }
    ConsoleFooter.-compact #footer-pinned ConsoleKey.-palette {
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
        #: Set once the screen's bindings are known (nothing to lay out before).
        self.keys_ready = False
        #: What the keys laid out last showed (:meth:`_shown_keys`); None before the first.
        self._composed_keys: tuple[tuple[str, str, str, bool, str], ...] | None = None

    def bindings_changed(self, screen: Screen[object]) -> None:
        """Lay the keys out again only when what they show changed.

        Why: Textual announces a bindings change on every focus move and mount, and the
        footer's answer is a recompose (new key widgets, each restyled as it mounts). During
        a block sync the console's frames announced one about every second frame with the
        same keys: 0.37 s of the console thread's 2.3 s over a 50,000-block sync, CPU taken
        from the node's thread (bench console_looplag).
        """
        self.keys_ready = True
        shown = self._shown_keys(screen)
        if shown == self._composed_keys and self.is_attached and screen is self.screen:
            return
        self._composed_keys = shown
        super().bindings_changed(screen)

    def _shown_keys(self, screen: Screen[object]) -> tuple[tuple[str, str, str, bool, str], ...]:
        """What the keys would show for ``screen``: each binding's key, action, description,
        whether it is refused, and its tooltip, in order."""
        return tuple(
            (b.key, b.action, b.description, enabled, tooltip)
            for _node, b, enabled, tooltip in screen.active_bindings.values()
            if b.show
        )

    def _width_of(self, binding: Binding, palette: bool = False) -> int:
        """Cells one key takes (its key, its description and the padding around them)."""
        text = len(self.app.get_key_display(binding)) + len(binding.description)
        if self.compact:
            return text + 2 + (1 if palette else 0)
        return text + 3 + (2 if palette else 0)

    def compose(self) -> ComposeResult:
        if not self.keys_ready:
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

    def _key(self, binding: Binding, enabled: bool, tooltip: str, classes: str = "") -> ConsoleKey:
        key = ConsoleKey(
            binding.key,
            self.app.get_key_display(binding),
            binding.description,
            binding.action,
            refused=not enabled,
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
        if event.size.width != self._composed_width and self.keys_ready:
            self._composed_width = event.size.width
            self.call_after_refresh(self.recompose)
