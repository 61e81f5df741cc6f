"""1,000 real protocol peers on one node: what each costs, and whether the loop stays quiet.

Why: issue 14 asks how many peers one node holds and what each costs, with goals for the
node's loop lag idle at 1,000 peers (p99 <= 25 ms), the memory per peer (aim <= 100 KiB) and
the console's refresh against that node (<= 50 ms per frame).

Set-up: one ``zakura node`` in its own process (``--max-connections``,
``--max-connections-per-ip`` and ``--max-pending-handshakes`` raised to hold the peers; the
defaults stay 64, 32 and 16), with its API on loopback and a viewer token. The peers come from
:mod:`bench.loadgen`, a second process: N lightweight peers, each its own Ed25519 identity and
TCP connection, that handshake, open discovery, header-sync and block-sync streams, exchange
Hello/GetPeers/GetServices and both Statuses, then idle (keepalive PINGs and a discovery
refresh every 10 s, as a node's own routines do). This process only measures. The file-descriptor
soft limit is raised to the hard limit first, for all three processes.

Cycles, ``repetitions`` times (interleaved baseline): the node idle with 0 peers for
:data:`PHASE_SECS`, then the load generator dials N peers (``--concurrency`` 16 dials at once),
the node idles with them for :data:`PHASE_SECS`, then they all close. At the end of each idle
phase (the node's loop-lag window is 400 samples of 50 ms plus their lag, 20 s or a little
more, so a 25 s phase keeps the connection ramp out of it):

- loop lag p50/p99 from the snapshot's ``loop_lag``, and the node's CPU share over the phase;
- the node's RSS (``/proc``); per peer = (RSS with N - RSS with 0 just before) / N. The first
  cycle is the figure (later cycles reuse memory the first one freed, so they read lower);
- ``GET /api/v1/snapshot``: latency (median of :data:`SNAPSHOT_GETS`, spaced past the API's
  100 ms snapshot cache so each one is built) and bytes;
- with N peers only: a console attached through the remote client (:class:`RemoteNodeClient`
  as ``zakura attach`` uses it, polling ``?peers=brief``), headless (``run_test``), on the
  Peers view, timed per frame with :mod:`bench.console_refresh`'s measure (CPU on the
  console's thread from ``poll`` to the repaint): ``live`` frames each fetch a new snapshot,
  ``same`` frames re-apply the last document (the baseline: what a refresh costs when nothing
  changed). The table must then show exactly the node's peers (``console_refresh.check_table``).

Baselines of their own: the load generator's bare TCP connects per second against a bare
asyncio server (``loadgen --raw-server``) next to the handshakes per second, and that server's
RSS per held connection next to the node's per peer (what any asyncio process pays).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from bench import BenchOptions, CorrectnessError, ScenarioResult, register
from bench.console_refresh import _ms, _now, check_table
from bench.ssh_sessions import Child, _stat, start_node
from console.app import ZakuraConsole
from console.client import ActionRequest, ActionResult, JournalRow, Snapshot
from console.remote import NodeUnreachable, RemoteNodeClient
from console.screens.peers import PeersScreen
from console.widgets.peer_table import PeerTable
from node_core.api.tokens import TokenStore
from node_core.control import Role

NAME = "scale_peers"
ROOT = Path(__file__).resolve().parent.parent
PEERS = 1000
QUICK_PEERS = 200
PHASE_SECS = 25.0
QUICK_PHASE_SECS = 6.0
DEFAULT_REPETITIONS = 2
CONCURRENCY = 16
SNAPSHOT_GETS = 10
SNAPSHOT_SPACING = 0.15
FRAMES = 20
QUICK_FRAMES = 5
CONSOLE_SIZE = (200, 60)
GOAL_LAG_P99_MS = 25.0
GOAL_KIB_PER_PEER = 100.0
GOAL_REFRESH_MS = 50.0
CONNECT_TIMEOUT = 300.0
CONNECT_ATTEMPTS = 5
#: What the node needs to hold the peers (the flags' defaults stay 64, 32 and 16).
NODE_FLAGS = (
    "--max-connections", "5000", "--max-connections-per-ip", "5000",
    "--max-pending-handshakes", "64",
)  # fmt: skip


def node_loop() -> str:
    """The node's ``--loop``: ``ZAKURA_BENCH_NODE_LOOP`` (asyncio or uvloop), to compare them."""
    return os.environ.get("ZAKURA_BENCH_NODE_LOOP", "asyncio")


def raise_fd_limit() -> int:
    """Lift this process's descriptor soft limit to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------------- processes
class LoadGen:
    """A :mod:`bench.loadgen` child: JSON lines out, a line in asks for a status."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *args: str) -> LoadGen:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.loadgen", *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT, env=env,
        )  # fmt: skip
        return cls(proc)

    async def line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            raw = await self.proc.stdout.readline()
        if not raw:
            raise CorrectnessError(f"the load generator exited ({await self.proc.wait()})")
        doc: dict[str, Any] = json.loads(raw)
        return doc

    async def status(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"status\n")
        await self.proc.stdin.drain()
        return await self.line(30.0)

    async def stop(self) -> None:
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(30):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def raw_baseline(peers: int) -> tuple[float, float]:
    """(bare TCP connects/s, RSS bytes per held connection) of a bare asyncio server."""
    server = await LoadGen.start("--raw-server")
    try:
        hello = await server.line(30.0)
        pid, port = int(hello["pid"]), int(hello["port"])
        await asyncio.sleep(0.5)
        before = _rss(pid)
        client = await LoadGen.start(
            "--raw", "--target", f"127.0.0.1:{port}", "--peers", str(peers),
            "--concurrency", str(CONCURRENCY),
        )  # fmt: skip
        try:
            done = await client.line(CONNECT_TIMEOUT)
            if done["up"] != peers:
                raise CorrectnessError(f"bare TCP: only {done['up']} of {peers} connected")
            await asyncio.sleep(1.0)
            held = _rss(pid)
        finally:
            await client.stop()
        return float(done["handshakes_per_s"]), (held - before) / peers
    finally:
        await server.stop()


def _rss(pid: int) -> int:
    stat = _stat(pid)
    if stat is None:
        raise CorrectnessError(f"process {pid} is gone")
    return stat[1]


# ---------------------------------------------------------------------- reading the node
@dataclass
class Reader:
    """The node's API, read with a viewer token."""

    http: aiohttp.ClientSession
    api: str
    token: str

    async def snapshot(self) -> tuple[dict[str, Any], float, int]:
        """The snapshot document, the request's latency (s) and its size (bytes)."""
        t0 = time.perf_counter()
        async with self.http.get(
            f"http://{self.api}/api/v1/snapshot", headers={"Authorization": f"Bearer {self.token}"}
        ) as resp:
            body = await resp.read()
        latency = time.perf_counter() - t0
        doc: dict[str, Any] = json.loads(body)
        return doc, latency, len(body)

    async def wait_peers(self, count: int, timeout: float) -> int:
        """Poll until the node reports exactly ``count`` peers; returns what it reports."""
        deadline = time.monotonic() + timeout
        while True:
            doc, _lat, _size = await self.snapshot()
            n = len(doc["peers"])
            if n == count or time.monotonic() >= deadline:
                return n
            await asyncio.sleep(0.5)


@dataclass
class Phase:
    peers: int
    held: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss: int
    cpu: float
    snapshot_ms: float
    snapshot_bytes: int


async def idle_phase(node: Child, reader: Reader, peers: int, secs: float) -> Phase:
    pid = node.proc.pid
    start = _stat(pid)
    t0 = time.monotonic()
    await asyncio.sleep(secs)
    doc, _lat, _size = await reader.snapshot()
    end = _stat(pid)
    if start is None or end is None:
        raise CorrectnessError("the node exited")
    cpu = (end[0] - start[0]) / (time.monotonic() - t0)
    lag = doc["loop_lag"]
    latencies, sizes = [], []
    for _ in range(SNAPSHOT_GETS):
        await asyncio.sleep(SNAPSHOT_SPACING)  # past the API's cache: every GET is a build
        _doc, latency, size = await reader.snapshot()
        latencies.append(latency)
        sizes.append(size)
    phase = Phase(
        peers, len(doc["peers"]), float(lag["p50_ms"]), float(lag["p99_ms"]),
        float(lag["max_ms"]), end[1], cpu, _ms(latencies), int(statistics.median(sizes)),
    )  # fmt: skip
    print(f"    {phase}", flush=True)  # progress, and the figures even if a later step fails
    return phase


# ---------------------------------------------------------------------- the console
class LiveFrames:
    """The remote client, or (``same``) the last document it fetched again: the baseline."""

    def __init__(self, remote: RemoteNodeClient) -> None:
        self.remote = remote
        self.same = False
        self.last: Snapshot | None = None
        self.read_only = True
        self.description = remote.description

    async def snapshot(self) -> Snapshot:
        if not self.same or self.last is None:
            self.last = await self.remote.snapshot()
        return self.last

    async def brief_snapshot(self, detail: str | None = None) -> Snapshot:
        """What the console polls (``?peers=brief``), as ``zakura attach`` does."""
        if not self.same or self.last is None:
            self.last = await self.remote.brief_snapshot(detail)
        return self.last

    async def journal_since(self, seq: int, limit: int = 500) -> list[JournalRow]:
        return [] if self.same else await self.remote.journal_since(seq, limit)

    async def act(self, request: ActionRequest) -> ActionResult:
        return ActionResult(False, "the benchmark console does not act")


async def console_frames(api: str, token: str, frames: int) -> dict[str, Any]:
    """CPU per live frame and per unchanged frame of a remote console on the Peers view."""
    remote = RemoteNodeClient(f"http://{api}", token)
    for attempt in range(CONNECT_ATTEMPTS):  # a node that is too busy to answer in 5 s
        try:
            await remote.connect()
            break
        except NodeUnreachable:
            if attempt == CONNECT_ATTEMPTS - 1:
                raise
            await asyncio.sleep(1.0)
    client = LiveFrames(remote)
    app = ZakuraConsole(client, refresh_interval=3600.0)
    live: list[float] = []
    fetch: list[float] = []
    same: list[float] = []
    try:
        async with app.run_test(headless=True, size=CONSOLE_SIZE) as pilot:
            await app.poll()
            await pilot.press("2")
            await pilot.pause()
            if not isinstance(app.screen, PeersScreen):
                raise CorrectnessError("the Peers view did not open")
            table = app.screen.query_one(PeerTable)
            for _ in range(frames):
                await asyncio.sleep(SNAPSHOT_SPACING)  # a fresh build, as at 4 Hz
                client.same = False
                t0 = _now()
                await app.poll()
                t1 = _now()
                await pilot.pause()
                live.append(_now() - t0)
                fetch.append(t1 - t0)
                client.same = True
                t0 = _now()
                await app.poll()
                await pilot.pause()
                same.append(_now() - t0)
            assert client.last is not None
            problems = check_table(table, client.last)
            if problems:
                raise CorrectnessError("console: " + "; ".join(problems[:5]))
            rows = table.row_count
    finally:
        await remote.close()
    return {"live_s": live, "poll_s": fetch, "same_s": same, "rows": rows}


# ---------------------------------------------------------------------- the run
@dataclass
class ScaleRun:
    peers: int
    phases: list[Phase] = field(default_factory=list)
    connects: list[dict[str, Any]] = field(default_factory=list)
    loadgen_status: list[dict[str, Any]] = field(default_factory=list)
    console: dict[str, Any] = field(default_factory=dict)
    raw_connects_per_s: float = 0.0
    raw_bytes_per_conn: float = 0.0
    fd_limit: int = 0

    def of(self, peers: int) -> list[Phase]:
        return [p for p in self.phases if p.peers == peers]

    def rss_per_peer(self) -> list[float]:
        """Per cycle: (RSS with N - RSS with 0 just before) / N, in bytes."""
        zero, full = self.of(0), self.of(self.peers)
        return [(f.rss - z.rss) / self.peers for z, f in zip(zero, full, strict=True)]


async def run_scale(peers: int, phase_secs: float, repetitions: int, frames: int) -> ScaleRun:
    run = ScaleRun(peers, fd_limit=raise_fd_limit())
    run.raw_connects_per_s, run.raw_bytes_per_conn = await raw_baseline(peers)
    with tempfile.TemporaryDirectory(prefix="zakura-scale-") as tmp:
        data_dir = Path(tmp) / "node"
        data_dir.mkdir()
        token = TokenStore(data_dir).create("bench", Role.VIEWER)
        node = await start_node(data_dir, *NODE_FLAGS, "--loop", node_loop())
        try:
            async with aiohttp.ClientSession() as http:
                reader = Reader(http, node.api, token)
                for rep in range(repetitions):
                    run.phases.append(await idle_phase(node, reader, 0, phase_secs))
                    gen = await LoadGen.start(
                        "--target", node.listen, "--peers", str(peers),
                        "--concurrency", str(CONCURRENCY), "--seed", str(rep + 1),
                    )  # fmt: skip
                    try:
                        done = await gen.line(CONNECT_TIMEOUT)
                        print(f"    {done}", flush=True)
                        run.connects.append(done)
                        held = await reader.wait_peers(peers, 30.0)
                        if held != peers:
                            raise CorrectnessError(f"the node holds {held} of {peers} peers")
                        run.phases.append(await idle_phase(node, reader, peers, phase_secs))
                        if rep == 0:
                            run.console = await console_frames(node.api, token, frames)
                        run.loadgen_status.append(await gen.status())
                    finally:
                        await gen.stop()
                    if await reader.wait_peers(0, 60.0) != 0:
                        raise CorrectnessError("the peers did not all leave the node")
        finally:
            with contextlib.suppress(ProcessLookupError):
                node.proc.terminate()
            await node.proc.wait()
    return run


def check(run: ScaleRun) -> list[str]:
    problems = []
    for done in run.connects:
        if done["up"] != run.peers:
            problems.append(f"{done['up']} of {run.peers} peers connected: {done['dial_errors']}")
    for status in run.loadgen_status:
        frames = status["frames_in"]
        # Every peer got the node's discovery Hello, and both Statuses (§7.4, §8.5, §9.4).
        for key in ("4:1", "5:1", "6:1"):
            if frames.get(key, 0) < run.peers:
                problems.append(f"peers received {frames.get(key, 0)} frames {key}")
        if status["up"] != run.peers:
            problems.append(f"only {status['up']} peers still up at the end: {status['closes']}")
    if run.console.get("rows", 0) < run.peers:
        problems.append(f"the console showed {run.console.get('rows')} rows")
    return problems


@register(NAME, "1,000 protocol peers (a load generator process) on one node process")
async def bench_scale_peers(options: BenchOptions) -> list[ScenarioResult]:
    peers = QUICK_PEERS if options.quick else PEERS
    phase = QUICK_PHASE_SECS if options.quick else PHASE_SECS
    reps = options.repetitions or DEFAULT_REPETITIONS
    frames = QUICK_FRAMES if options.quick else FRAMES
    run = await run_scale(peers, phase, reps, frames)
    problems = check(run)
    if problems:
        raise CorrectnessError("; ".join(problems))
    return results(run)


def results(run: ScaleRun) -> list[ScenarioResult]:
    n = run.peers
    zero, full = run.of(0), run.of(n)
    med = statistics.median
    rates = [c["handshakes_per_s"] for c in run.connects]
    per_peer = run.rss_per_peer()
    kib = per_peer[0] / 1024
    live_ms, same_ms = _ms(run.console["live_s"]), _ms(run.console["same_s"])
    # The median hides the slow frames (the node's once-a-second rate samples and the ages
    # that tick change many rows at once): the 90th percentile is printed beside it.
    live_p90 = statistics.quantiles(run.console["live_s"], n=10, method="inclusive")[-1] * 1000
    details: dict[str, Any] = {
        "peers": n,
        "node_loop": node_loop(),
        "fd_limit": run.fd_limit,
        "connect_seconds": [c["seconds"] for c in run.connects],
        "node_cpu_share_0": [p.cpu for p in zero],
        "node_cpu_share_n": [p.cpu for p in full],
        "loop_lag_p50_ms_0": [p.p50_ms for p in zero],
        "loop_lag_p50_ms_n": [p.p50_ms for p in full],
        "loop_lag_max_ms_n": [p.max_ms for p in full],
        "rss_mib_0": [p.rss / 2**20 for p in zero],
        "rss_mib_n": [p.rss / 2**20 for p in full],
        "rss_kib_per_peer_by_cycle": [b / 1024 for b in per_peer],
        "snapshot_bytes_0": [p.snapshot_bytes for p in zero],
        "snapshot_bytes_n": [p.snapshot_bytes for p in full],
        "console_poll_ms": _ms(run.console["poll_s"]),
        "console_live_p90_ms": live_p90,
        "console_rows": run.console["rows"],
        "loadgen_frames_in": run.loadgen_status[-1]["frames_in"] if run.loadgen_status else {},
    }
    print(
        f"  scale_peers: {n} peers held; {med(rates):.0f} handshakes/s "
        f"(bare TCP {run.raw_connects_per_s:.0f}/s); {kib:.1f} KiB per peer "
        f"(bare asyncio {run.raw_bytes_per_conn / 1024:.1f}); loop lag at {n} p50 "
        f"{med(p.p50_ms for p in full):.1f} / p99 {med(p.p99_ms for p in full):.1f} ms "
        f"(at 0: {med(p.p99_ms for p in zero):.1f}); snapshot GET "
        f"{med(p.snapshot_ms for p in full):.1f} ms, {full[0].snapshot_bytes / 1024:.0f} KiB; "
        f"console frame {live_ms:.1f} ms (p90 {live_p90:.1f}, unchanged {same_ms:.1f}); "
        f"node CPU idle at {n} "
        f"{med(p.cpu for p in full):.0%}"
    )
    row = partial(ScenarioResult, benchmark=NAME, details=details)
    return [
        row(
            scenario=f"peers held (of {n} dialed)", baseline="peers dialed", unit="peers",
            baseline_value=float(n), measured_value=float(min(p.held for p in full)), goal=1.0,
            samples={"held": [float(p.held) for p in full]},
        ),
        row(
            scenario=f"handshakes/s, {n} peers, {CONCURRENCY} dials at once",
            baseline="bare TCP connects/s", unit="/s", baseline_value=run.raw_connects_per_s,
            measured_value=med(rates), goal=None, samples={"handshakes_per_s": rates},
        ),
        row(
            scenario=f"RSS per connected peer, {n} peers (first cycle)",
            baseline="bare asyncio TCP connection", unit="KiB",
            baseline_value=run.raw_bytes_per_conn / 1024, measured_value=kib, goal=None,
            max_value=GOAL_KIB_PER_PEER,
            samples={"kib_per_peer": [b / 1024 for b in per_peer]},
        ),
        row(
            scenario=f"node loop-lag p99, idle at {n} peers", baseline="idle at 0 peers",
            unit="ms", baseline_value=med(p.p99_ms for p in zero),
            measured_value=med(p.p99_ms for p in full), goal=None, max_value=GOAL_LAG_P99_MS,
            samples={"p99_ms_0": [p.p99_ms for p in zero], "p99_ms_n": [p.p99_ms for p in full]},
        ),
        row(
            scenario=f"GET /api/v1/snapshot (build + send), {n} peers",
            baseline="0 peers", unit="ms", baseline_value=med(p.snapshot_ms for p in zero),
            measured_value=med(p.snapshot_ms for p in full), goal=None,
            samples={"ms_0": [p.snapshot_ms for p in zero], "ms_n": [p.snapshot_ms for p in full]},
        ),
        row(
            scenario=f"snapshot size, {n} peers", baseline="0 peers", unit="KiB",
            baseline_value=zero[0].snapshot_bytes / 1024,
            measured_value=full[0].snapshot_bytes / 1024, goal=None,
        ),
        row(
            scenario=f"console refresh, live node with {n} real peers (CPU per frame)",
            baseline="same document again", unit="ms", baseline_value=same_ms,
            measured_value=live_ms, goal=None, max_value=GOAL_REFRESH_MS,
            samples={
                "live_ms": [s * 1000 for s in run.console["live_s"]],
                "same_ms": [s * 1000 for s in run.console["same_s"]],
            },
        ),
    ]  # fmt: skip
