"""Overview view: node facts, the routines matrix, loop lag, closes and the journal tail.

Driven by the fixture client and by a scripted client whose data the test changes between
polls (``await app.poll()`` renders one frame), so every assertion is about a known frame.
"""

from __future__ import annotations

from typing import Any

from consolekit import ScriptedClient, plain, start
from textual.widgets import Sparkline, Static

from console.app import ZakuraConsole
from console.fixture import FixtureClient
from console.screens.overview import SYNC_PLACEHOLDER, OverviewScreen
from console.widgets.journal_tail import JournalTail
from console.widgets.kv_panel import KVPanel
from console.widgets.recent_closes import RecentCloses
from console.widgets.routines_matrix import STATES, RoutinesMatrix

SIZE = (140, 40)


def overview(app: ZakuraConsole) -> OverviewScreen:
    screen = app.screen
    assert isinstance(screen, OverviewScreen)
    return screen


def kv(app: ZakuraConsole, panel: str) -> dict[str, str]:
    return {k: v for k, v, _style in overview(app).query_one(f"#{panel}", KVPanel).rows}


async def test_overview_shows_the_fixture_node() -> None:
    client = FixtureClient(peers=8)
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        snap = await client.snapshot()
        screen = overview(app)

        node = kv(app, "ov-node-kv")
        assert node["label"] == snap["node"]["label"]
        assert node["listen"] == "127.0.0.1:40000"
        assert node["network"] == "regtest"
        assert node["uptime"] == "12m34s"
        assert snap["node"]["label"] in plain(screen.query_one("#ov-node-kv", KVPanel))

        conns = kv(app, "ov-conns-kv")
        assert conns["peers"] == "8 / 8 target"
        assert conns["in / out"] == "3 / 5"
        assert conns["capacity"] == "8 / 64 max"
        assert conns["handshakes"] == "0 / 16 pending"

        lag = kv(app, "ov-lag-kv")
        assert (lag["lag p50"], lag["lag p99"], lag["lag max"]) == ("0.4 ms", "3.1 ms", "7.9 ms")
        assert kv(app, "ov-counters-kv") == {"panics": "1", "trace dropped": "0"}

        # Every state column is present, and every count is the snapshot's.
        matrix = screen.query_one(RoutinesMatrix)
        summary = snap["routines_summary"]
        assert set(matrix.counts) == set(summary)
        for service, states in matrix.counts.items():
            assert list(states) == list(STATES)
            for state in STATES:
                assert states[state] == summary[service].get(state, 0)
        header = plain(matrix).splitlines()[0]
        for state in STATES:
            assert state in header

        closes = plain(screen.query_one(RecentCloses))
        assert "fault:1:disconnect" in closes

        # The tail ends with the newest journal event and shows at least a dozen.
        tail = screen.query_one(JournalTail)
        seqs = [r["seq"] for r in app.state.journal]
        assert tail.shown_seqs == seqs[-len(tail.shown_seqs) :]
        assert tail.shown_seqs[-1] == snap["journal_seq"]
        assert len(tail.shown_seqs) >= 12

        # The reserved sync area exists, with its placeholder.
        sync = screen.query_one("#sync-panels")
        assert SYNC_PLACEHOLDER in plain(sync.query_one("#sync-placeholder", Static))


async def test_overview_follows_changing_data() -> None:
    client = ScriptedClient()
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        screen = overview(app)
        label = client.snap["peers"][0]["label"]

        # A routine panics: the matrix moves one count from running to panicked.
        client.snap["peers"][0]["routines"][0]["state"] = "panicked"
        client.snap["routines_summary"] = {"discovery": {"running": 4, "panicked": 2}}
        client.snap["loop_lag"] = {"samples": 50, "p50_ms": 1.25, "p99_ms": 42.0, "max_ms": 120.0}
        client.snap["generated_at"] += 1
        client.snap["counters"]["panics"] = 2.0
        row = client.emit("routine", "panicked", label, service="discovery", error="Boom")
        await app.poll()
        await pilot.pause()

        counts = screen.query_one(RoutinesMatrix).counts
        assert counts == {"discovery": {"running": 4, "parked": 0, "exited": 0, "panicked": 2}}
        lag = kv(app, "ov-lag-kv")
        assert (lag["lag p50"], lag["lag p99"], lag["lag max"]) == ("1.2 ms", "42.0 ms", "120.0 ms")
        assert kv(app, "ov-counters-kv")["panics"] == "2"
        tail = screen.query_one(JournalTail)
        assert tail.shown_seqs[-1] == row["seq"]
        assert "routine/panicked" in plain(tail).splitlines()[-1]

        # A second lag sample draws the p99 history.
        client.snap["loop_lag"]["p99_ms"] = 5.0
        client.snap["generated_at"] += 1
        await app.poll()
        await pilot.pause()
        assert list(app.state.lag_p99) == [3.1, 42.0, 5.0]
        assert screen.query_one(Sparkline).data == [3.1, 42.0, 5.0]

        # A new service appears: it gets its own line, still with every state column.
        client.snap["routines_summary"]["header_sync"] = {"running": 3}
        await app.poll()
        await pilot.pause()
        counts = screen.query_one(RoutinesMatrix).counts
        assert counts["header_sync"] == {"running": 3, "parked": 0, "exited": 0, "panicked": 0}


async def test_overview_renders_only_what_changed() -> None:
    client = ScriptedClient()
    app = ZakuraConsole(client, refresh_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        await start(app, pilot)
        screen = overview(app)
        widgets: dict[str, Static] = {
            "node": screen.query_one("#ov-node-kv", KVPanel),
            "conns": screen.query_one("#ov-conns-kv", KVPanel),
            "matrix": screen.query_one(RoutinesMatrix),
            "tail": screen.query_one(JournalTail),
            "closes": screen.query_one(RecentCloses),
        }
        updates = {name: 0 for name in widgets}
        for name, widget in widgets.items():
            original = widget.update

            def counting(*args: Any, _name: str = name, _orig: Any = original, **kw: Any) -> None:
                updates[_name] += 1
                _orig(*args, **kw)

            widget.update = counting  # type: ignore[method-assign]

        # Same data again: nothing re-renders.
        await app.poll()
        await pilot.pause()
        assert updates == dict.fromkeys(widgets, 0)

        # Only the journal moved: only the tail re-renders.
        client.emit("conn", "accepted", client.snap["peers"][1]["label"], direction="inbound")
        await app.poll()
        await pilot.pause()
        assert updates == {"node": 0, "conns": 0, "matrix": 0, "tail": 1, "closes": 0}

        # Only the summary moved (same services, so the same height): only the matrix.
        client.snap["routines_summary"] = {
            "discovery": {"running": 4, "exited": 2},
            "header_sync": {"running": 6},
            "block_sync": {"running": 6},
        }
        await app.poll()
        await pilot.pause()
        assert updates == {"node": 0, "conns": 0, "matrix": 1, "tail": 1, "closes": 0}


async def test_overview_fits_small_and_large_terminals() -> None:
    for size in ((100, 30), (160, 45)):
        app = ZakuraConsole(FixtureClient(peers=8), refresh_interval=3600)
        async with app.run_test(size=size) as pilot:
            await start(app, pilot)
            screen = overview(app)
            for panel in ("#ov-node", "#ov-conns", "#ov-runtime", "#ov-routines", "#ov-closed"):
                region = screen.query_one(panel).region
                assert region.width >= 30 and region.height >= 4, (size, panel, region)
                assert region.right <= size[0], (size, panel, region)
            tail = screen.query_one(JournalTail)
            assert tail.size.height >= 6, size
            assert len(tail.shown_seqs) == min(tail.size.height, len(app.state.journal))
            # The matrix is never cut: its widest line fits its panel.
            matrix = screen.query_one(RoutinesMatrix)
            widest = max(len(line) for line in plain(matrix).splitlines())
            assert widest <= matrix.size.width, size
