"""Issue 15 defect 3: malformed HTTP requests cannot fill the node's log (real node process).

Every rejected request used to write a full aiohttp traceback at ERROR (~600 bytes each).
Now each is at most one short WARNING line, and at most one per second reaches the log, the
rest counted in the next line; the node keeps answering.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from prockit import Procs

pytestmark = pytest.mark.timeout(60)

BAD = (
    b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n",  # LineTooLong (URL)
    b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 10_000 + b"\r\n\r\n",  # LineTooLong (header)
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",  # BadHttpMessage
    b"GET /%zz\x00 HTTP/1.1\r\n\r\n",  # invalid URL
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # TLS to a plain port
)


async def test_a_flood_of_bad_requests_is_a_few_short_lines(tmp_path: Path) -> None:
    procs = Procs()
    try:
        node = await procs.start(tmp_path / "n")
        host, port = node.api.rsplit(":", 1)
        started = time.monotonic()
        for _ in range(40):
            for payload in BAD:
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(payload)
                await writer.drain()
                await reader.read(1024)  # the 400 answer (or the close)
                writer.close()
        elapsed = time.monotonic() - started
        async with aiohttp.ClientSession() as http, http.get(f"http://{node.api}/healthz") as r:
            assert r.status == 200  # still serving
        log = node.log.read_text(errors="replace")
        lines = [line for line in log.splitlines() if "aiohttp.server" in line]
        assert "Traceback" not in log
        assert lines, "the bad requests are still reported"
        assert len(lines) <= elapsed + 2, (len(lines), elapsed)
        assert all(len(line) < 400 for line in lines)
        assert all("WARNING" in line for line in lines)
    finally:
        await procs.stop_all()
