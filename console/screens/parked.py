"""The Parked view: peers whose header sync the node parked, why, and for how long.

A peer's header-sync routine is parked when a command that must never be dropped (a Headers
response, a DropExpectation) cannot be queued to it; its assigned ranges go back to the shared
queue ("work returned"). The empty state says so, and how to make one (``k``), because an
empty list is the normal case and the operator should still learn what would fill it. ``u``
unparks the selected row's peer (a new header-sync session on the same connection), so the
summary names it first; ``d``, ``p`` and ``s`` act on that peer too while it is connected.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.content import Content
from textual.widgets import Static

from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.parked_table import ParkedTable, parked_rows

EMPTY_TEXT = (
    "no parked peers — a peer's header-sync is parked when a never-drop command "
    "(Headers response, DropExpectation) cannot be queued; press k on a peer to park it "
    "and u to unpark it"
)


class ParkedScreen(ConsoleScreen):
    """A summary line, then one row per parked peer (or the empty state)."""

    VIEW_TITLE = "Parked"
    DEFAULT_CSS = """
    ParkedScreen #parked-summary {
        height: 1;
        padding: 0 1;
        background: $boost;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    ParkedScreen #parked-empty {
        padding: 1 2;
        color: $foreground-muted;
        text-style: italic;
        height: auto;
    }
    ParkedScreen.-empty ParkedTable {
        display: none;
    }
    ParkedScreen #parked-empty {
        display: none;
    }
    ParkedScreen.-empty #parked-empty {
        display: block;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._summary_key: tuple[int, int] | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(id="parked-summary")
        yield Static(EMPTY_TEXT, id="parked-empty", markup=False)
        yield ParkedTable(id="parked-table")

    def on_mount(self) -> None:
        self.query_one(ParkedTable).focus()

    def apply(self, state: ConsoleState) -> None:
        snap = state.snapshot
        assert snap is not None
        parked = list(snap.get("parked") or [])
        rows = parked_rows(parked, float(snap.get("generated_at") or 0.0))
        self.query_one(ParkedTable).set_rows(rows)
        self.set_class(not rows, "-empty")
        returned = sum(int(p.get("work_returned") or 0) for p in parked)
        key = (len(rows), returned)
        if key != self._summary_key:
            self._summary_key = key
            hint = not self.console.policy.read_only  # a read-only console acts on nothing
            self.query_one("#parked-summary", Static).update(_summary(len(rows), returned, hint))

    def selected_peer(self) -> str | None:
        """The selected row's peer, if it is still connected (else nothing to act on)."""
        label = self.query_one(ParkedTable).selected_label
        if label is None or self.console.state.peer(label) is None:
            return None
        return label


def _summary(count: int, returned: int, hint: bool = True) -> Content:
    if not count:
        return Content.styled("no parked peers", "$foreground-muted")
    return Content.assemble(
        (str(count), "$peer-parked bold"),
        f" parked peer{'s' if count != 1 else ''}",
        ("  ·  ", "$foreground-muted"),
        (str(returned), "bold"),
        f" range{'' if returned == 1 else 's'} returned to the queue",
        (
            "   u unparks the selected row's peer; d / p / s act on it" if hint else "",
            "$foreground-muted",
        ),
    )
