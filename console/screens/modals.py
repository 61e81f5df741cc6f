"""Modal screens: confirmation of a destructive action (with a duration for a stall),
choosing a routine, the key help."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from console.policy import STALL_DEFAULT_S, STALL_MAX_S, STALL_MIN_S, parse_stall_seconds

MODAL_CSS = """
ConfirmScreen, StallScreen, PickServiceScreen, HelpScreen {
    align: center middle;
}
ConfirmScreen > Vertical, StallScreen > Vertical, PickServiceScreen > Vertical,
HelpScreen > Vertical {
    width: 76;
    max-width: 95%;
    height: auto;
    max-height: 90%;
    border: round $accent;
    background: $surface;
    padding: 1 2;
}
ConfirmScreen Static, ConfirmScreen Label, StallScreen Static, StallScreen Label,
PickServiceScreen Label, HelpScreen Static {
    width: 100%;
    height: auto;
}
StallScreen #stall-ask {
    margin-top: 1;
}
StallScreen Input {
    width: 24;
}
StallScreen #stall-error {
    color: $error;
    text-style: bold;
}
PickServiceScreen OptionList {
    height: auto;
    max-height: 12;
    margin-top: 1;
}
ConfirmScreen Horizontal, StallScreen Horizontal {
    height: auto;
    align-horizontal: right;
    margin-top: 1;
}
ConfirmScreen Button, StallScreen Button {
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


class StallScreen(ModalScreen[float | None]):
    """Confirm a stall and ask for how long: the seconds field starts at the default and is
    validated here (1 to 600) so a bad value is corrected in place, not refused later.

    Typing goes to the field, so ``y``/``n`` are not keys here: Enter confirms, Esc cancels.
    Dismisses with the seconds, or ``None`` when cancelled.
    """

    DEFAULT_CSS = MODAL_CSS
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, detail: str, default: float = STALL_DEFAULT_S) -> None:
        super().__init__()
        self.title_text = title
        self.detail = detail
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(self.title_text, style="bold"), id="confirm-title")
            yield Static(self.detail, id="confirm-detail")
            yield Label(
                f"For how many seconds? ({STALL_MIN_S:g} to {STALL_MAX_S:g})", id="stall-ask"
            )
            yield Input(
                f"{self.default:g}",
                placeholder="seconds",
                id="stall-seconds",
                tooltip="seconds to stall, 1 to 600",
            )
            yield Label("", id="stall-error")
            with Horizontal():
                yield Button("Cancel (Esc)", id="cancel")
                yield Button("Stall (Enter)", id="confirm", variant="error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @property
    def error(self) -> str:
        """The validation message shown (empty when the value is fine)."""
        return str(self.query_one("#stall-error", Label).render())

    def _submit(self) -> None:
        try:
            seconds = parse_stall_seconds(self.query_one(Input).value)
        except ValueError as exc:
            self.query_one("#stall-error", Label).update(str(exc))
            return
        self.dismiss(seconds)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


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
