"""``zakura attach``'s console (RemoteNodeClient + the real app) against live node processes.

Node A (``zakura node --api --allow-faults``) and node B (bootstrapped to A) are real
processes; the app runs here under Textual's Pilot and talks to A only over HTTP. Checked:
the views fill; ``d`` with an operator token disconnects the peer (A's journal names the
token); a viewer token shows READ-ONLY and the action is refused before any request; A is
killed with SIGKILL, the status bar says OFFLINE with the next try, A is restarted on the
same data dir and port and the console resumes by itself with the new run's journal rows.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from console.app import ZakuraConsole
from console.remote import RemoteNodeClient
from console.screens.modals import ConfirmScreen
from console.screens.peer_detail import PeerDetailScreen
from console.screens.peers import PeersScreen
from console.widgets.peer_table import PeerTable
from console.widgets.status_bar import StatusBar
from node_core.api.tokens import TokenStore
from node_core.control import Role

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from consolekit import wait_until
from prockit import NodeProc, Procs, free_port, wait_for_snapshot

pytestmark = pytest.mark.timeout(120)

SIZE = (140, 40)
#: Seconds a wait on the app or the nodes may take before the test fails (a deadline,
#: not a timing requirement).
WAIT = 15.0


class RecordingConsole(ZakuraConsole):
    """The real app, remembering every notification (they expire on screen)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[str] = []

    def notify(self, message: str, **kwargs: Any) -> None:  # type: ignore[override]
        self.notes.append(str(message))
        super().notify(message, **kwargs)


def status_text(app: ZakuraConsole) -> str:
    bar = app.screen.query_one(StatusBar)
    return str(bar.render())


async def journal(node: NodeProc) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        url = f"http://{node.api}/api/v1/journal?since=0&limit=5000"
        async with http.get(url, headers={"Authorization": f"Bearer {node.token}"}) as resp:
            rows: list[dict[str, Any]] = (await resp.json())["rows"]
            return rows


async def test_attach_acts_with_an_operator_token_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    procs = Procs()
    port = free_port()
    api_flag = ("--api", f"127.0.0.1:{port}")
    try:
        a = await procs.start(tmp_path / "a", "--allow-faults", "--blocks", "50", *api_flag)
        await procs.start(tmp_path / "b", "--bootstrap", a.listen)
        token = TokenStore(a.data_dir).create("alice", Role.OPERATOR)
        client = RemoteNodeClient(f"http://{a.api}", token)
        await client.connect()
        assert not client.read_only and client.role == "operator"
        app = RecordingConsole(client, refresh_interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: app.state.snapshot is not None, "the first frame", WAIT)
            assert "READ-ONLY" not in status_text(app)
            await pilot.press("2")
            await wait_until(lambda: isinstance(app.screen, PeersScreen), "the Peers view", WAIT)
            table = app.screen.query_one(PeerTable)
            await wait_until(lambda: table.live_count == 1, "B's row", WAIT)
            victim = table.selected_label()
            assert victim is not None
            await pilot.press("d")
            await wait_until(
                lambda: isinstance(app.screen, ConfirmScreen), "the confirmation", WAIT
            )
            await pilot.press("y")
            await wait_until(
                lambda: any("connection_closed" in n for n in app.notes), "the effect", WAIT
            )
            rows = await journal(a)
            injected = [r for r in rows if r["table"] == "fault" and r["event"] == "injected"]
            assert [(r["peer"], r["fields"]["by"]) for r in injected] == [(victim, "alice")]

            # A goes away: OFFLINE with the next try, no crash, no notification storm.
            a.process.send_signal(signal.SIGKILL)
            await a.process.wait()
            await wait_until(lambda: "OFFLINE" in status_text(app), "OFFLINE", 20)
            assert "next try in" in status_text(app)
            before = app.state.journal_seq
            assert before > 0
            # ... and comes back on the same data dir and port: the console resumes by itself.
            again = await procs.start(tmp_path / "a", "--allow-faults", *api_flag)
            # prockit gave the new run a new token; ours still stands in the token file.
            async with aiohttp.ClientSession() as http:
                await wait_for_snapshot(http, again, lambda s: True, 20, "A back")
            await wait_until(lambda: "OFFLINE" not in status_text(app), "back online", 40)
            await wait_until(lambda: app.state.restarts == 1, "the restart seen", WAIT)
            await wait_until(
                lambda: any(
                    r["table"] == "node" and r["event"] == "started" and r["seq"] < before
                    for r in list(app.state.journal)[-200:]
                ),
                "the new run's journal rows",
                WAIT,
            )
            assert sum(1 for n in app.notes if n.startswith("lost the node")) == 1
    finally:
        await procs.stop_all()


async def test_a_viewer_token_is_read_only_and_refused(tmp_path: Path) -> None:
    procs = Procs()
    try:
        a = await procs.start(tmp_path / "a", "--allow-faults")
        await procs.start(tmp_path / "b", "--bootstrap", a.listen)
        token = TokenStore(a.data_dir).create("watcher", Role.VIEWER)
        client = RemoteNodeClient(f"http://{a.api}", token)
        await client.connect()
        assert client.read_only
        app = RecordingConsole(client, refresh_interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: app.state.snapshot is not None, "the first frame", WAIT)
            assert "READ-ONLY" in status_text(app)
            await pilot.press("2")
            await wait_until(lambda: isinstance(app.screen, PeersScreen), "the Peers view", WAIT)
            table = app.screen.query_one(PeerTable)
            await wait_until(lambda: table.live_count == 1, "B's row", WAIT)
            await pilot.press("d")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmScreen)  # refused before asking
        rows = await journal(a)
        assert not [r for r in rows if r["table"] == "fault"]
    finally:
        await procs.stop_all()


async def test_the_attached_console_polls_brief_rows_and_its_detail_peer_in_full(
    tmp_path: Path,
) -> None:
    """The app reads ``?peers=brief`` (peers cut to their rows) and, while a peer detail view
    is open, that peer's full entry in its place: the detail shows streams and limits, the
    Peers view's rows need none of it."""
    procs = Procs()
    try:
        a = await procs.start(tmp_path / "a")
        await procs.start(tmp_path / "b", "--bootstrap", a.listen)
        token = TokenStore(a.data_dir).create("watcher", Role.VIEWER)
        client = RemoteNodeClient(f"http://{a.api}", token)
        await client.connect()
        app = RecordingConsole(client, refresh_interval=0.2)

        def entry(label: str) -> dict[str, Any]:
            snap = app.state.snapshot or {}
            return next((p for p in snap.get("peers") or () if p["label"] == label), {})

        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: app.state.snapshot is not None, "the first frame", WAIT)
            await pilot.press("2")
            await wait_until(lambda: isinstance(app.screen, PeersScreen), "the Peers view", WAIT)
            table = app.screen.query_one(PeerTable)
            await wait_until(lambda: table.live_count == 1, "B's row", WAIT)
            victim = table.selected_label()
            assert victim is not None
            assert app.state.snapshot is not None and app.state.snapshot["brief"] is True
            assert "streams" not in entry(victim)
            await pilot.press("enter")
            await wait_until(
                lambda: isinstance(app.screen, PeerDetailScreen), "the peer detail", WAIT
            )
            await wait_until(lambda: bool(entry(victim).get("streams")), "B in full", WAIT)
            assert entry(victim).get("limits") and entry(victim).get("id")
            await pilot.press("escape")
            await wait_until(lambda: isinstance(app.screen, PeersScreen), "back to Peers", WAIT)
            await wait_until(lambda: "streams" not in entry(victim), "B brief again", WAIT)
    finally:
        await procs.stop_all()
