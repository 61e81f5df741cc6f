"""``zakura attach --serve``: headless Chromium loads the served console and shows the Overview.

A real node, a real ``zakura attach --serve`` process, a real browser. The browser's view is
checked twice: the console's own bytes reach the page (its WebSocket frames, read through the
DevTools protocol, carry the Overview and READ-ONLY for a viewer token), and a screenshot is
taken once the page has drawn (kept in the test's tmp dir for a human to look at).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cdp import CHROMIUM, chromium

from node_core.api.tokens import TokenStore
from node_core.control import Role

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from nodekit import wait_until
from prockit import Procs, free_port

ZAKURA = Path(sys.executable).with_name("zakura")
APPEAR_SECS = 60.0
ESCAPES = re.compile(rb"\x1b\[[0-9;?<>=!$]*[ -/]*[@-~]")

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run does it)",
    ),
    pytest.mark.skipif(not ZAKURA.exists(), reason="the zakura script is not installed"),
]


def live(text: str) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmd:
                found[int(entry.name)] = cmd
    return found


async def test_a_browser_shows_the_served_console(tmp_path: Path) -> None:
    procs = Procs()
    serve: asyncio.subprocess.Process | None = None
    token_file = tmp_path / "viewer.token"
    try:
        node = await procs.start(tmp_path / "node")
        token = TokenStore(tmp_path / "node").create("browser", Role.VIEWER)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, token.encode())
        os.close(fd)
        port = free_port()
        serve = await asyncio.create_subprocess_exec(
            str(ZAKURA), "attach", f"http://{node.api}", "--token-file", str(token_file),
            "--serve", f"127.0.0.1:{port}",
            stdout=asyncio.subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        assert serve.stdout is not None
        async with asyncio.timeout(APPEAR_SECS):
            line = (await serve.stdout.readline()).decode()
        assert f"serving the console on http://127.0.0.1:{port}" in line
        async with chromium(tmp_path / "profile") as page:
            await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
            await wait_until(
                lambda: b"Overview" in page.received() and b"READ-ONLY" in page.received(),
                APPEAR_SECS,
                "the Overview, READ-ONLY, in the page's WebSocket frames",
            )
            async with asyncio.timeout(APPEAR_SECS):
                # The page hides its intro once the app's first bytes arrive.
                while not await page.evaluate("document.body.classList.contains('-first-byte')"):
                    await page.next_frame()
            # The node's own listen address is drawn (once the first snapshot arrived, which
            # can be after the first frame): the console is on this node.
            await wait_until(
                lambda: node.listen.encode() in ESCAPES.sub(b"", page.received()),
                APPEAR_SECS,
                "the node's listen address drawn in the page",
            )
            shot = tmp_path / "served-console.png"
            await page.screenshot(shot)
            assert shot.stat().st_size > 20_000, "the screenshot is nearly empty"
    finally:
        if serve is not None and serve.returncode is None:
            serve.terminate()
            async with asyncio.timeout(20):
                await serve.wait()
        await procs.stop_all()
    # Each tab's console is a child of the server: none outlives it.
    await wait_until(lambda: not live(str(token_file)), 20, "the tabs' consoles to exit")


def test_serving_beyond_loopback_needs_read_only(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(ZAKURA), "attach", "http://127.0.0.1:9", "--serve", "0.0.0.0:8080"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "ZAKURA_TOKEN": "zk_x"},
    )  # fmt: skip
    assert out.returncode == 2
    assert "--serve: 0.0.0.0 is not a loopback address" in out.stderr
    assert "--read-only" in out.stderr
