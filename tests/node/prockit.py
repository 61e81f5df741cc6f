"""Real ``zakura node`` processes for tests (imported as ``prockit``).

A test starts nodes with :class:`Procs`, reads their API with :func:`snapshot` and polls
conditions with :func:`wait_for_snapshot`; ``finally: await procs.stop_all()`` kills whatever
is still running, and every child dies with the test process (``PR_SET_PDEATHSIG``), so no
node outlives a failed or interrupted test.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

from node_core.api.tokens import TokenStore
from node_core.control import Role
from zakura.node_cmd import parse_start_line

ZAKURA = [sys.executable, "-m", "zakura"]
START_SECS = 60.0
POLL_SECS = 0.02
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A loopback port free right now (for a node that must come back on the same one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> Callable[[], None]:
    """``preexec_fn``: the kernel SIGKILLs the child if the test process dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return lambda: None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent, sigkill = os.getpid(), int(signal.SIGKILL)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sigkill)

    return preexec


def open_log(data_dir: Path) -> IO[bytes]:
    """The node's log file (stderr), appended to across restarts of the same data dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return (data_dir / "node.log").open("ab")


@dataclass
class NodeProc:
    process: asyncio.subprocess.Process
    data_dir: Path
    listen: str
    api: str
    #: An operator token for the node's API, made before it started.
    token: str

    @property
    def log(self) -> Path:
        return self.data_dir / "node.log"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


class Procs:
    """Every process the test started, so ``finally`` can kill whatever is still running."""

    def __init__(self) -> None:
        self.all: list[asyncio.subprocess.Process] = []

    async def start(self, data_dir: Path, *extra: str) -> NodeProc:
        """``zakura node`` on ``data_dir``; returns once its start line names its addresses.

        Gives the node an operator API token first (a restart on the same dir gets a new one).
        """
        store = TokenStore(data_dir)
        if any(t.name == "test" for t in store.tokens):
            store.revoke("test")
        token = store.create("test", Role.OPERATOR)
        with open_log(data_dir) as log:
            proc = await asyncio.create_subprocess_exec(
                *ZAKURA, "node", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir),
                "--api", "127.0.0.1:0", "--log-level", "info", *extra,
                stdout=asyncio.subprocess.PIPE, stderr=log, preexec_fn=die_with_parent(),
            )  # fmt: skip
        self.all.append(proc)
        assert proc.stdout is not None
        async with asyncio.timeout(START_SECS):
            line = (await proc.stdout.readline()).decode()
        start = parse_start_line(line)
        if start is None or start.api is None:
            tail = (data_dir / "node.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"no start line from {data_dir.name} (got {line!r}):\n{tail}")
        return NodeProc(proc, data_dir, start.listen, start.api, token)

    async def stop_all(self) -> None:
        for proc in self.all:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def snapshot(http: aiohttp.ClientSession, node: NodeProc) -> dict[str, Any] | None:
    """The node's snapshot document, or None while its API does not answer."""
    headers = {"Authorization": f"Bearer {node.token}"}
    try:
        async with http.get(f"http://{node.api}/api/v1/snapshot", headers=headers) as resp:
            if resp.status != 200:
                return None
            doc: dict[str, Any] = await resp.json()
            return doc
    except aiohttp.ClientError:
        return None


def verified_of(snap: dict[str, Any]) -> tuple[int, str]:
    tip = snap["chain"]["verified_tip"]
    return int(tip["height"]), str(tip["hash"])


def header_of(snap: dict[str, Any]) -> tuple[int, str]:
    tip = snap["chain"]["header_tip"]
    return int(tip["height"]), str(tip["hash"])


async def wait_for_snapshot(
    http: aiohttp.ClientSession,
    node: NodeProc,
    cond: Callable[[dict[str, Any]], bool],
    timeout: float,
    what: str,
) -> dict[str, Any]:
    """Poll ``node``'s snapshot until ``cond`` holds; fail naming ``what`` and the log tail."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while True:
        snap = await snapshot(http, node)
        if snap is not None:
            last = snap
            if cond(snap):
                return snap
        assert node.process.returncode is None, (
            f"{node.data_dir.name} exited with {node.process.returncode}:\n{node.log_tail()}"
        )
        if time.monotonic() > deadline:
            tips = None if last is None else (header_of(last), verified_of(last))
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what} on {node.data_dir.name} "
                f"(header, verified tips: {tips}):\n{node.log_tail()}"
            )
        await asyncio.sleep(POLL_SECS)
