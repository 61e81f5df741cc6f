"""Peer-supplied text is never markup or terminal control anywhere in the console (issue 10).

A raw peer (tests/hostile/rawpeer.py, written from docs/PROTOCOL.md) connects to a real node
and closes its connection with a reason that is Rich markup and ANSI/OSC escapes. The node
journals it as the connection's close reason; the console shows it in the Peers view, in
the peer detail and in a notification: literally (the brackets are text), and a notification
quoting it with ANSI/OSC escapes has its control characters dropped; nothing raises.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from rich.console import Console

from console.app import ZakuraConsole
from console.client import InProcessClient
from console.screens.peer_detail import PeerDetailScreen
from console.screens.peers import PeersScreen
from console.widgets.peer_table import PeerTable
from node_core.node import Node, NodeConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
from consolekit import wait_until
from rawpeer import HelloParams, RawPeer

#: A close reason the protocol accepts (printable: control characters make the node record
#: ``peer:malformed_close`` instead, docs/PROTOCOL.md §5.6) that is Rich markup.
HOSTILE = "[bold red]x[/ [link=http://x]y[/link]"
#: Escape sequences a peer string could carry into a notification (an OSC title, a colour).
ESCAPES = "\x1b]0;pwned\x07\x1b[31mred\x1b[0m"
SHOWN = "[bold red]x[/"
SIZE = (160, 40)


def screen_text(app: ZakuraConsole) -> str:
    """Everything on screen, as the terminal would get it (with the escape codes Rich adds)."""
    console = Console(width=SIZE[0], file=io.StringIO(), color_system=None, force_terminal=False)
    with console.capture() as capture:
        console.print(app.screen._compositor.render_update(full=True))  # type: ignore[union-attr]
    return capture.get()


async def test_a_hostile_close_reason_shows_literally_everywhere(tmp_path: Path) -> None:
    node = Node(NodeConfig(data_dir=tmp_path / "n"))
    await node.start()
    raw = RawPeer()
    try:
        await raw.connect("127.0.0.1", node.transport.listen_port)
        await raw.handshake(HelloParams(chain_id=node.chain_id, network_id=node.config.network_id))
        await node.journal.wait_for(
            lambda e: e.table == "conn" and e.event == "accepted", timeout=5
        )
        raw.send_close(0, HOSTILE)
        await wait_until(lambda: bool(node.snapshot()["recently_closed"]), "the closed peer")
        closed = node.snapshot()["recently_closed"][-1]
        assert "[bold red]x[/" in closed["reason"]  # the node keeps what the peer said

        app = ZakuraConsole(InProcessClient(node), refresh_interval=3600)
        async with app.run_test(size=SIZE) as pilot:
            await app.poll()
            await pilot.press("2")
            await wait_until(lambda: isinstance(app.screen, PeersScreen), "the Peers view")
            await app.poll()
            await pilot.pause()
            table = app.screen.query_one(PeerTable)
            cells = table.rendered_cells(raw.label)
            assert cells is not None, "the closed peer's row"
            close_cell = cells[-1][0]
            assert SHOWN in close_cell and "\x1b" not in close_cell and "\x07" not in close_cell
            text = screen_text(app)
            assert SHOWN in text and "\x1b]0;" not in text and "\x07" not in text

            await pilot.press("enter")
            await wait_until(lambda: isinstance(app.screen, PeerDetailScreen), "peer detail")
            await app.poll()
            await pilot.pause()
            text = screen_text(app)
            assert SHOWN in text and "\x1b]0;" not in text

            app.notify(f"{raw.label} closed: {closed['reason']} {ESCAPES}", severity="warning")
            await pilot.pause()
            (note,) = [n for n in app._notifications if "pwned" in n.message]
            assert not note.markup  # plain text: the brackets stay brackets, no link
            assert "[link=http://x]y[/link]" in note.message and SHOWN in note.message
            assert "\x1b" not in note.message and "\x07" not in note.message
    finally:
        await raw.aclose()
        await node.stop()
