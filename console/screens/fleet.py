"""The Fleet view (``0``): one row per node of a fleet, and the way into each node's views.

Columns: name, reachable, the node's label, peers, header tip and verified tip against the
best header tip in the fleet, blocks/s, panics, misbehavior records, loop-lag p99 and the
last error. ``Enter`` opens that node's views (every view and key then works on it, as if
attached to it alone); ``0`` or ``Esc`` comes back here. Unreachable nodes stay listed with
their error: a fleet view that hides a dead node hides the one thing to look at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from console.fleet import FleetRow, fleet_rows
from console.screens.base import ConsoleScreen
from console.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from console.fleet_app import FleetConsole

COLUMNS = (
    "name",
    "up",
    "label",
    "peers",
    "header",
    "verified",
    "blk/s",
    "panics",
    "misb",
    "lag p99",
    "error",
)


def _tip(value: int | None, best: int) -> Text:
    if value is None:
        return Text("-", style="dim")
    behind = best - value
    text = f"{value:,}" if behind <= 0 else f"{value:,} -{behind:,}"
    return Text(text, style="" if behind <= 0 else "yellow")


def _num(value: float | None, fmt: str = "{:,}") -> Text:
    return Text("-", style="dim") if value is None else Text(fmt.format(value))


def row_cells(row: FleetRow) -> tuple[Text, ...]:
    """The cells of one row; every peer-supplied string is plain text, never markup."""
    up = Text("yes", style="green") if row.reachable else Text("NO", style="bold red")
    return (
        Text(row.name, style="bold"),
        up,
        Text(row.label or "-"),
        _num(row.peers),
        _tip(row.header_tip, row.best_tip),
        _tip(row.verified_tip, row.best_tip),
        _num(row.blocks_per_s, "{:.1f}"),
        Text("-", style="dim")
        if row.panics is None
        else Text(str(row.panics), style="bold red" if row.panics else ""),
        _num(row.misbehaviors),
        _num(row.lag_p99_ms, "{:.1f} ms"),
        Text(row.error, style="red" if row.error else ""),
    )


class FleetScreen(ConsoleScreen):
    """A summary line and the fleet table."""

    VIEW_TITLE = "Fleet"
    BINDINGS = [Binding("enter", "open_node", "Open node")]
    DEFAULT_CSS = """
    FleetScreen #fleet-summary {
        height: 1;
        padding: 0 1;
        background: $boost;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    FleetScreen DataTable {
        height: 1fr;
    }
    """

    def compose_body(self) -> ComposeResult:
        yield Static(id="fleet-summary", markup=False)
        table: DataTable[Text] = DataTable(id="fleet-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()

    @property
    def fleet_app(self) -> FleetConsole:
        from console.fleet_app import FleetConsole

        app = self.app
        assert isinstance(app, FleetConsole)
        return app

    def refresh_view(self) -> None:
        if not self.is_mounted:
            return
        app = self.fleet_app
        rows = fleet_rows(app.fleet.members)
        up = sum(1 for r in rows if r.reachable)
        self.query_one(StatusBar).apply_fleet(
            f"fleet  {up}/{len(rows)} nodes up", app.state, self.VIEW_TITLE, app.view_titles()
        )
        table: DataTable[Text] = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        for row in rows:
            table.add_row(*row_cells(row), key=row.name)
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))
        best = rows[0].best_tip if rows else 0
        summary = (
            f"fleet of {len(rows)}: {up} reachable, best header tip {best:,}"
            "  ·  Enter opens a node, 0 or Esc comes back"
        )
        if app.banner:
            summary = f"{app.banner}  ·  {summary}"
        self.query_one("#fleet-summary", Static).update(summary)

    def action_open_node(self) -> None:
        table: DataTable[Text] = self.query_one(DataTable)
        if table.row_count:
            self.fleet_app.open_node(table.cursor_row)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """``Enter`` on the focused table (the table's own binding sends this)."""
        event.stop()
        self.fleet_app.open_node(event.cursor_row)
