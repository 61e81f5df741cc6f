"""The Fleet view (issue 10 step 6): rows from real nodes, a dead node, drilling in and out.

Six real ``zakura node`` processes (node 0 with a chain, the others syncing from it) on fixed
API ports; the console's :class:`~console.fleet_app.FleetConsole` runs under Pilot with one
:class:`~console.remote.RemoteNodeClient` per node. A node killed with SIGKILL shows
unreachable (the others stay reachable) and recovers once restarted on the same data dir and
port. How fast is not checked here: the waits only stop a broken run (docs/ARCHITECTURE.md,
"Measuring performance").
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from console.fixture import fixture_snapshot
from console.fleet import Fleet, FleetError, FleetMember, fleet_rows, load_fleet_file
from console.fleet_app import FleetConsole
from console.remote import RemoteNodeClient
from console.screens.fleet import FleetScreen
from console.screens.overview import OverviewScreen
from node_core.api.tokens import TokenStore
from node_core.control import Role

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from consolekit import wait_until
from prockit import NodeProc, Procs, free_port

pytestmark = pytest.mark.timeout(150)

SIZE = (140, 36)
NODES = 6
#: Seconds a wait on the app or the nodes may take before the test fails (a deadline,
#: not a timing requirement).
WAIT = 20.0


def member(name: str, snapshot: dict[str, Any] | None, error: str | None = None) -> FleetMember:
    m = FleetMember(name, RemoteNodeClient("http://127.0.0.1:1", "zk_x"))
    m.snapshot, m.error = snapshot, error
    return m


def test_rows_compare_each_tip_with_the_best_in_the_fleet() -> None:
    ahead, behind = fixture_snapshot(2), fixture_snapshot(2)
    best = int(ahead["chain"]["header_tip"]["height"])
    behind["chain"]["header_tip"]["height"] = best - 10
    rows = fleet_rows(
        [member("a", ahead), member("b", behind), member("c", None, "connection refused")]
    )
    assert [r.best_tip for r in rows] == [best] * 3
    assert rows[1].header_tip == best - 10 and rows[1].reachable
    assert not rows[2].reachable and rows[2].error == "connection refused"
    assert rows[2].peers is None


def test_a_fleet_file_is_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "fleet.toml"
    good.write_text(
        '[[node]]\nname = "a"\nurl = "http://127.0.0.1:1"\ntoken_file = "a.token"\n'
        '[[node]]\nname = "b"\nurl = "http://127.0.0.1:2"\ntoken_file = "/x/b.token"\n'
    )
    assert load_fleet_file(good) == [
        ("a", "http://127.0.0.1:1", tmp_path / "a.token"),
        ("b", "http://127.0.0.1:2", Path("/x/b.token")),
    ]
    for text, words in (
        ("nonsense = [", "not TOML"),
        ("x = 1", "no [[node]]"),
        ('[[node]]\nname = "a"\n', "lacks url, token_file"),
        ('[[node]]\nname="a"\nurl="u"\ntoken_file="t"\n' * 2, "names repeat"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(FleetError, match=words.replace("[", r"\[")):
            load_fleet_file(bad)


async def test_six_nodes_one_dies_and_comes_back(tmp_path: Path) -> None:
    procs = Procs()
    ports = [free_port() for _ in range(NODES)]
    try:
        nodes: list[NodeProc] = [
            await procs.start(tmp_path / "n0", "--blocks", "100", "--api", f"127.0.0.1:{ports[0]}")
        ]
        for i in range(1, NODES):
            nodes.append(
                await procs.start(
                    tmp_path / f"n{i}",
                    "--bootstrap",
                    nodes[0].listen,
                    "--api",
                    f"127.0.0.1:{ports[i]}",
                )
            )
        # A token of the fleet's own, which survives a restart (prockit renews only its own).
        tokens = [TokenStore(n.data_dir).create("fleet", Role.VIEWER) for n in nodes]
        fleet = Fleet(
            [
                FleetMember(f"node-{i}", RemoteNodeClient(f"http://{n.api}", tokens[i]))
                for i, n in enumerate(nodes)
            ]
        )
        await fleet.connect_all()
        app = FleetConsole(fleet, refresh_interval=0.3)
        try:
            await drive(app, fleet, nodes, procs, tmp_path, ports)
        finally:
            await fleet.close()
    finally:
        await procs.stop_all()


async def drive(
    app: FleetConsole,
    fleet: Fleet,
    nodes: list[NodeProc],
    procs: Procs,
    tmp_path: Path,
    ports: list[int],
) -> None:
    if True:
        async with app.run_test(size=SIZE) as pilot:
            assert isinstance(app.screen, FleetScreen)
            table: DataTable[Any] = app.screen.query_one(DataTable)

            def reachable() -> list[bool]:
                return [r.reachable for r in fleet_rows(fleet.members)]

            await wait_until(lambda: reachable() == [True] * NODES, "six reachable rows", WAIT)
            await wait_until(lambda: table.row_count == NODES, "six rows on screen", WAIT)
            # All of them reach node 0's tip, which the view shows as the best.
            await wait_until(
                lambda: all(r.verified_tip == 100 for r in fleet_rows(fleet.members)),
                "every node synced",
                40,
            )

            victim = nodes[3]
            victim.process.send_signal(signal.SIGKILL)
            await victim.process.wait()
            await wait_until(lambda: not reachable()[3], "node-3 unreachable", WAIT)
            assert reachable().count(True) == NODES - 1  # only the killed node
            await wait_until(lambda: str(table.get_row_at(3)[1]) == "NO", "NO on screen", WAIT)

            await procs.start(tmp_path / "n3", "--api", f"127.0.0.1:{ports[3]}")
            await wait_until(lambda: reachable() == [True] * NODES, "node-3 back", 40)

            # Enter opens a node's views; Esc comes back to the fleet.
            table.move_cursor(row=2)
            await pilot.press("enter")
            await wait_until(
                lambda: isinstance(app.screen, OverviewScreen), "node-2's Overview", WAIT
            )
            assert app.client is fleet.members[2].client
            await wait_until(lambda: app.state.snapshot is not None, "node-2's first frame", WAIT)
            assert app.state.snapshot["node"]["label"] == fleet_rows(fleet.members)[2].label
            await pilot.press("escape")
            await wait_until(lambda: isinstance(app.screen, FleetScreen), "back on the fleet", WAIT)
