"""The console over a fleet: the Fleet view (``0``) plus every view of one chosen node.

:class:`FleetConsole` is the ordinary app with one more view. Its ``client`` is the chosen
member's client, so every other view, key and action works on that node exactly as in a
single-node console; choosing another node (``Enter`` on the Fleet view) swaps the client,
its policy (a viewer token is read-only) and the state (another node, another journal).
"""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

from console.app import VIEWS, ZakuraConsole
from console.fleet import Fleet
from console.policy import ActionPolicy
from console.screens.fleet import FleetScreen
from console.state import ConsoleState

FLEET_MODE = "fleet"


class FleetConsole(ZakuraConsole):
    """The console over :class:`~console.fleet.Fleet` members."""

    MODES = {**ZakuraConsole.MODES, FLEET_MODE: FleetScreen}
    DEFAULT_MODE = FLEET_MODE
    BINDINGS = [
        Binding("0", f"switch_mode('{FLEET_MODE}')", "Fleet", show=False),
        Binding("escape", "back_to_fleet", "Fleet", show=False),
    ]

    def __init__(self, fleet: Fleet, **kwargs: Any) -> None:
        if not fleet.members:
            raise ValueError("a fleet needs at least one node")
        super().__init__(fleet.members[0].client, **kwargs)
        self.fleet = fleet
        self.chosen = 0
        #: A line the program driving the fleet puts first on the Fleet view's summary (what
        #: ``zakura chaos run --console`` is doing to the fleet now); empty for none.
        self.banner = ""

    def help_rows(self) -> list[tuple[str, str]]:
        rows = super().help_rows()
        return [
            ("0", "Fleet view: every node; Enter opens one"),
            ("escape", "back to the Fleet view from a node's views"),
            *rows,
        ]

    def view_titles(self) -> list[tuple[str, str]]:
        return [("0", "Fleet"), *((key, title) for key, _mode, title in VIEWS)]

    @property
    def in_fleet_view(self) -> bool:
        return self.current_mode == FLEET_MODE

    async def poll(self) -> None:
        """On the Fleet view every member is read; on a node's view, that node as usual."""
        if self.in_fleet_view:
            await self.fleet.refresh()
            self.render_current()
        else:
            await super().poll()

    def open_node(self, index: int) -> None:
        """Make member ``index`` the node every other view shows and acts on."""
        member = self.fleet.members[index]
        self.chosen = index
        self.client = member.client
        self.policy = ActionPolicy(read_only=member.client.read_only)
        self.state = ConsoleState(read_only=member.client.read_only)
        self.switch_mode("overview")
        self.poll_soon()

    def action_back_to_fleet(self) -> None:
        if not self.in_fleet_view:
            self.switch_mode(FLEET_MODE)
            self.poll_soon()
