"""Modal screens: confirmation of a destructive action (with the routine and duration of a
stall, the rate of a throttle), choosing a routine, the key help."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, RadioButton, RadioSet, Static
from textual.widgets.option_list import Option

from node_core.control import (
    STALL_DEFAULT_S,
    STALL_MAX_S,
    STALL_MIN_S,
    THROTTLE_DEFAULT_KIB,
    THROTTLE_MAX_KIB,
    parse_stall_seconds,
    parse_throttle_kib,
)

R = TypeVar("R")

MODAL_CSS = """
ConfirmScreen, StallScreen, ThrottleScreen, PickServiceScreen, HelpScreen {
    align: center middle;
}
ConfirmScreen > Vertical, StallScreen > Vertical, ThrottleScreen > Vertical,
PickServiceScreen > Vertical, HelpScreen > Vertical {
    width: 76;
    max-width: 95%;
    height: auto;
    max-height: 90%;
    border: round $accent;
    background: $surface;
    padding: 1 2;
}
ConfirmScreen Static, ConfirmScreen Label, StallScreen Static, StallScreen Label,
ThrottleScreen Static, ThrottleScreen Label, PickServiceScreen Label, HelpScreen Static {
    width: 100%;
    height: auto;
}
StallScreen .ask, ThrottleScreen .ask {
    margin-top: 1;
}
StallScreen RadioSet {
    width: auto;
    height: auto;
}
StallScreen Input, ThrottleScreen Input {
    width: 24;
}
StallScreen .ask-error, ThrottleScreen .ask-error {
    color: $error;
    text-style: bold;
}
PickServiceScreen OptionList {
    height: auto;
    max-height: 12;
    margin-top: 1;
}
ConfirmScreen Horizontal, StallScreen Horizontal, ThrottleScreen Horizontal {
    height: auto;
    align-horizontal: right;
    margin-top: 1;
}
ConfirmScreen Button, StallScreen Button, ThrottleScreen Button {
    margin-left: 2;
}
"""


class ConfirmScreen(ModalScreen[bool]):
    """Ask before a destructive action; names the target. Enter/y confirms, Esc/n cancels."""

    DEFAULT_CSS = MODAL_CSS
    BINDINGS = [
        Binding("y", "answer(True)", "Confirm"),
        Binding("n,escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, title: str, detail: str) -> None:
        super().__init__()
        self.title_text = title
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(self.title_text, style="bold"), id="confirm-title")
            yield Static(self.detail, id="confirm-detail")
            with Horizontal():
                yield Button("Cancel (n)", id="cancel")
                yield Button("Confirm (y)", id="confirm", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class _AskNumberScreen(ModalScreen[R]):
    """Confirm an action that needs one number, asked in a field that starts at the default and
    is validated here, so a bad value is corrected in place, not refused later.

    Typing goes to the field, so ``y``/``n`` are not keys here: Enter confirms, Esc cancels.
    Subclasses say what to ask (the class attributes) and how to parse it; :meth:`result`
    builds the dismiss value from the parsed number. Dismisses with ``None`` when cancelled.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    #: The ids of the field, its question (``<PREFIX>-ask``) and its error (``<PREFIX>-error``).
    PREFIX = ""
    FIELD_ID = ""
    ASK = ""
    PLACEHOLDER = ""
    TOOLTIP = ""
    BUTTON = ""

    def __init__(self, title: str, detail: str, default: float) -> None:
        super().__init__()
        self.title_text = title
        self.detail = detail
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(self.title_text, style="bold"), id="confirm-title")
            yield Static(self.detail, id="confirm-detail")
            yield from self.compose_choice()
            yield Label(self.ASK, id=f"{self.PREFIX}-ask", classes="ask")
            yield Input(
                f"{self.default:g}",
                placeholder=self.PLACEHOLDER,
                id=self.FIELD_ID,
                tooltip=self.TOOLTIP,
            )
            yield Label("", id=f"{self.PREFIX}-error", classes="ask-error")
            with Horizontal():
                yield Button("Cancel (Esc)", id="cancel")
                yield Button(self.BUTTON, id="confirm", variant="error")

    def compose_choice(self) -> ComposeResult:
        """Anything asked before the number (nothing by default)."""
        return iter(())

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @property
    def error(self) -> str:
        """The validation message shown (empty when the value is fine)."""
        return str(self.query_one(f"#{self.PREFIX}-error", Label).render())

    def parse(self, text: str) -> float:
        raise NotImplementedError

    def result(self, value: float) -> R:
        raise NotImplementedError

    def _submit(self) -> None:
        try:
            value = self.parse(self.query_one(Input).value)
        except ValueError as exc:
            self.query_one(f"#{self.PREFIX}-error", Label).update(str(exc))
            return
        self.dismiss(self.result(value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Once an error is shown, it follows the value as it is typed: a corrected value
        clears it at once, instead of the old "(got 700)" staying until the next Enter."""
        event.stop()
        label = self.query_one(f"#{self.PREFIX}-error", Label)
        if not self.error:
            return
        try:
            self.parse(event.value)
        except ValueError as exc:
            label.update(str(exc))
        else:
            label.update("")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True, slots=True)
class StallChoice:
    """What the stall modal was confirmed with: which routine, for how long."""

    service: str
    seconds: float


class StallScreen(_AskNumberScreen[StallChoice | None]):
    """Confirm a stall: which of the peer's routines (header_sync or block_sync, a radio set)
    and for how many seconds (1 to 600).

    The two stalls do different things to the peer, so the title and the effect text follow
    the chosen routine: the operator confirms what will actually happen. A routine the peer
    does not run (or that is not running) is shown with its state and cannot be chosen; the
    app only opens this modal when at least one can be.
    """

    # Per concrete class: Textual scopes DEFAULT_CSS to the class that defines it.
    DEFAULT_CSS = MODAL_CSS
    PREFIX = "stall"
    FIELD_ID = "stall-seconds"
    ASK = f"For how many seconds? ({STALL_MIN_S:g} to {STALL_MAX_S:g})"
    PLACEHOLDER = "seconds"
    TOOLTIP = "seconds to stall, 1 to 600"
    BUTTON = "Stall (Enter)"

    def __init__(
        self,
        label: str,
        target: str,
        services: Sequence[tuple[str, str | None]],
        effects: Mapping[str, str],
        service: str,
        default: float = STALL_DEFAULT_S,
    ) -> None:
        self.label = label
        self.target = target
        self.services = list(services)
        self.effects = effects
        self.service = service
        super().__init__(self._title(), self._detail(), default)

    def _title(self) -> str:
        return f"Stall {self.service} reads of {self.label}?"

    def _detail(self) -> str:
        return f"{self.target}\n{self.effects.get(self.service, '')}"

    def compose_choice(self) -> ComposeResult:
        yield Label("Which routine? (Shift+Tab, then arrows and Enter)", classes="ask")
        with RadioSet(id="stall-service"):
            for svc, state in self.services:
                stallable = state == "running"
                yield RadioButton(
                    svc if stallable else f"{svc} ({state or 'none'})",
                    value=svc == self.service,
                    id=f"svc-{svc}",
                    disabled=not stallable,
                )

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        button_id = event.pressed.id or ""
        self.service = button_id.removeprefix("svc-")
        self.title_text = self._title()
        self.detail = self._detail()
        self.query_one("#confirm-title", Label).update(Text(self.title_text, style="bold"))
        self.query_one("#confirm-detail", Static).update(self.detail)

    def parse(self, text: str) -> float:
        return parse_stall_seconds(text)

    def result(self, value: float) -> StallChoice | None:
        return StallChoice(self.service, value)


class ThrottleScreen(_AskNumberScreen[float | None]):
    """Confirm a bandwidth throttle and ask the rate in KiB/s (0 lifts it, up to 1 GiB/s).

    KiB/s because the interesting rates (a slow link of a few dozen KiB/s) read naturally
    there; the client converts to the node's bytes/s. Dismisses with the rate.
    """

    # Per concrete class: Textual scopes DEFAULT_CSS to the class that defines it.
    DEFAULT_CSS = MODAL_CSS
    PREFIX = "throttle"
    FIELD_ID = "throttle-kib"
    ASK = f"Read at most how many KiB/s? (0 lifts the throttle, up to {THROTTLE_MAX_KIB:,.0f})"
    PLACEHOLDER = "KiB/s"
    TOOLTIP = "KiB per second to read from this peer; 0 lifts the throttle"
    BUTTON = "Throttle (Enter)"

    def __init__(self, title: str, detail: str, default: float = THROTTLE_DEFAULT_KIB) -> None:
        super().__init__(title, detail, default)

    def parse(self, text: str) -> float:
        return parse_throttle_kib(text)

    def result(self, value: float) -> float | None:
        return value


class PickServiceScreen(ModalScreen[str | None]):
    """Choose which routine of a peer to act on."""

    DEFAULT_CSS = MODAL_CSS
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, label: str, services: list[tuple[str, str]]) -> None:
        super().__init__()
        self.label = label
        self.services = services

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(f"Panic which routine of {self.label}?", style="bold"))
            yield OptionList(
                *(Option(f"{svc}  ({state})", id=svc) for svc, state in self.services),
                id="services",
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key of the app and of the current view, with what it does."""

    DEFAULT_CSS = MODAL_CSS
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for key, what in self.rows:
            table.add_row(key, what)
        with Vertical():
            yield Label(Text("Keys", style="bold"))
            yield Static(table, id="help-text")
            yield Label(Text("Esc closes this help.", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
