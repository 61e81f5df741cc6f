"""Just enough of the Chrome DevTools Protocol to drive headless Chromium from a test.

Chromium starts with ``--remote-debugging-port=0`` and writes the port it chose into
``DevToolsActivePort`` in its profile dir; the test talks to the page over that WebSocket
with aiohttp. Every host but 127.0.0.1 resolves to nothing (``--host-resolver-rules``), so a
page that asks for a web font cannot reach the internet.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One page target: send commands, and keep the events the test asked about."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.frames: list[bytes] = []  # WebSocket frames the page received, decoded
        self._frame = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            doc = msg.json()
            if "id" in doc:
                fut = self._pending.pop(doc["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(doc)
            elif doc.get("method") == "Network.webSocketFrameReceived":
                resp = doc["params"]["response"]
                data = resp["payloadData"]
                self.frames.append(
                    base64.b64decode(data) if resp.get("opcode") == 2 else data.encode()
                )
                self._frame.set()

    async def next_frame(self) -> None:
        """Until the page receives another WebSocket frame."""
        self._frame.clear()
        await self._frame.wait()

    async def evaluate(self, expression: str) -> object:
        doc = await self.call("Runtime.evaluate", expression=expression)
        return doc["result"].get("value")

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self.ws.send_json({"id": msg_id, "method": method, "params": params})
        doc = await asyncio.wait_for(fut, 30)
        if "error" in doc:
            raise RuntimeError(f"{method}: {doc['error']}")
        result: dict[str, Any] = doc.get("result", {})
        return result

    def received(self) -> bytes:
        return b"".join(self.frames)

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.ws.close()


@contextlib.asynccontextmanager
async def chromium(profile: Path, width: int = 1280, height: int = 800) -> AsyncIterator[Page]:
    """A headless Chromium with one blank page; stopped (and reaped) on exit."""
    assert CHROMIUM is not None
    proc = subprocess.Popen(  # noqa: ASYNC220 - a daemon for the test's lifetime, never awaited
        [
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--window-size={width},{height}", "about:blank",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    http = aiohttp.ClientSession()
    page: Page | None = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = asyncio.get_running_loop().time() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"chromium did not start (exit status {proc.poll()})")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with http.get(f"http://127.0.0.1:{port}/json") as resp:
            targets = await resp.json()
        pages = [t for t in targets if t["type"] == "page"]  # about:blank is open at start
        ws = await http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        await page.call("Network.enable")
        await page.call("Page.enable")
        yield page
    finally:
        if page is not None:
            await page.close()
        await http.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
