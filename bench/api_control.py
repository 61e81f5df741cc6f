"""The control API's costs: snapshot latency at 1,000 peers, and loop lag under 50 viewers.

Why: the API is how operators, fleets and tests watch a node; issue 10 asks that it cost the
node little. Two rows, each measured next to its baseline in one run:

- **API snapshot latency, 1,000 peers.** ``GET /api/v1/snapshot`` through a real aiohttp
  server and client on loopback, p50 and p99 over many requests, against encoding the same
  document with orjson in-process (the unavoidable part). The node is real, but its snapshot
  is the console's 1,000-peer fixture document (a node holding 1,000 real peers is issue 14's
  load generator): what is measured is the API path - auth, encode, HTTP - for a document of
  that size.
- **Loop lag with 50 WebSocket viewers at 4 Hz.** A real node in this process with three
  testnet peers (child processes), synced to their 500-block chain before measuring; 50
  stream clients in a child process (:data:`VIEWER_SCRIPT`), each reading
  ``/api/v1/stream?interval=0.25``.
  The node loop's lag p99 with the viewers connected against without, interleaved. Aim:
  <= 2x.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import BenchOptions, CorrectnessError, ScenarioResult, register
from console.fixture import fixture_snapshot
from node_core.api.tokens import TokenStore
from node_core.control import Role
from node_core.node import Node, NodeConfig
from node_core.observe.looplag import LoopLagMonitor
from zakura.testnet import Testnet

NAME = "api_control"
PEERS = 1000
VIEWERS = 50
VIEWER_INTERVAL = 0.25
LAG_GOAL_RATIO = 2.0
#: Chain the node syncs from the testnet before anything is measured (its peers keep
#: header and block sync streams, so viewers see real routines in every snapshot).
SYNC_BLOCKS = 500


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def snapshot_latency(requests: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-api-"))
    token = TokenStore(root / "n").create("bench", Role.VIEWER)
    node = Node(NodeConfig(data_dir=root / "n", api=("127.0.0.1", 0)))
    await node.start()
    document = fixture_snapshot(PEERS)
    node.snapshot = lambda: document  # type: ignore[method-assign]  # see the module doc
    try:
        url = f"http://{node.api_address}/api/v1/snapshot"
        headers = {"Authorization": f"Bearer {token}"}
        http_s: list[float] = []
        encode_s: list[float] = []
        size = 0
        async with aiohttp.ClientSession() as http:
            for _ in range(requests):
                t0 = time.perf_counter()
                body = orjson.dumps(document)
                encode_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                async with http.get(url, headers=headers) as resp:
                    got = await resp.read()
                http_s.append(time.perf_counter() - t0)
                if resp.status != 200 or len(got) != len(body):
                    raise CorrectnessError(f"snapshot answer {resp.status}, {len(got)} bytes")
                size = len(got)
        return {"http_s": http_s, "encode_s": encode_s, "bytes": size}
    finally:
        await node.stop()


VIEWER_SCRIPT = """
import asyncio, sys, aiohttp
async def viewer(http, url, headers, stop):
    async with http.ws_connect(url, headers=headers) as ws:
        while not stop.is_set():
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
async def main(url, token, n):
    stop = asyncio.Event()
    headers = {"Authorization": "Bearer " + token}
    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.create_task(viewer(http, url, headers, stop)) for _ in range(n)]
        print("connected", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        stop.set()
        for t in tasks:
            t.cancel()
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def _lag_phase(seconds: float) -> float:
    monitor = LoopLagMonitor(interval=0.01, window=100_000)
    monitor.start()
    await asyncio.sleep(seconds)
    stats = monitor.stats()
    await monitor.stop()
    return stats.p99_ms


async def viewers_loop_lag(repetitions: int, phase: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-viewers-"))
    token = TokenStore(root / "n").create("bench", Role.VIEWER)
    async with Testnet(3, blocks=SYNC_BLOCKS, data_dir=root / "net", log_level="warning") as net:
        node = Node(
            NodeConfig(
                data_dir=root / "n",
                api=("127.0.0.1", 0),
                bootstrap=(("127.0.0.1", net.nodes[0].listen_port),),
            )
        )
        await node.start()
        try:
            deadline = time.monotonic() + 60
            while node.chain.verified_tip[0] < SYNC_BLOCKS:  # measure a settled node
                if time.monotonic() > deadline:
                    raise CorrectnessError("the node did not sync the testnet's chain")
                await asyncio.sleep(0.1)
            url = f"http://{node.api_address}/api/v1/stream?interval={VIEWER_INTERVAL}"
            none_ms: list[float] = []
            viewers_ms: list[float] = []
            for _ in range(repetitions):
                none_ms.append(await _lag_phase(phase))
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", VIEWER_SCRIPT, url, token, str(VIEWERS),
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                assert proc.stdout is not None and proc.stdin is not None
                line = await asyncio.wait_for(proc.stdout.readline(), 30)
                if b"connected" not in line:
                    raise CorrectnessError("the viewer process did not connect")
                await asyncio.sleep(0.5)  # let the 50 handshakes settle before sampling
                clients = node.api.streams.clients
                if clients < VIEWERS:
                    raise CorrectnessError(f"only {clients} of {VIEWERS} viewers connected")
                viewers_ms.append(await _lag_phase(phase))
                proc.stdin.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 10)
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            return {
                "none_ms": none_ms,
                "viewers_ms": viewers_ms,
                "snapshot_builds": node.api.streams.cache.builds,
                "cut_off": node.api.streams.cut_off,
            }
        finally:
            await node.stop()


@register(NAME, "control API: snapshot latency at 1,000 peers; loop lag under 50 viewers")
async def bench_api(options: BenchOptions) -> list[ScenarioResult]:
    requests = 30 if options.quick else 200
    lat = await snapshot_latency(requests)
    http_ms = [s * 1000 for s in lat["http_s"]]
    enc_ms = [s * 1000 for s in lat["encode_s"]]
    p50, p99, enc50 = statistics.median(http_ms), _pct(http_ms, 0.99), statistics.median(enc_ms)
    print(
        f"  api_control: snapshot of {PEERS:,} peers ({lat['bytes'] / 1e6:.1f} MB): HTTP p50 "
        f"{p50:.1f} ms, p99 {p99:.1f} ms; orjson encode alone p50 {enc50:.1f} ms"
    )
    reps = options.repetitions or (1 if options.quick else 3)
    lag = await viewers_loop_lag(reps, 2.0 if options.quick else 5.0)
    none_p99, viewers_p99 = statistics.median(lag["none_ms"]), statistics.median(lag["viewers_ms"])
    print(
        f"  api_control: node loop-lag p99 {none_p99:.1f} ms without viewers, {viewers_p99:.1f} ms "
        f"with {VIEWERS} viewers at {1 / VIEWER_INTERVAL:g} Hz "
        f"({lag['snapshot_builds']} snapshots built for all of them)"
    )
    return [
        ScenarioResult(
            benchmark=NAME,
            scenario=f"GET /api/v1/snapshot, {PEERS:,} peers (p50 latency)",
            baseline="orjson encode of the same document",
            unit="ms",
            baseline_value=statistics.median(enc_ms),
            measured_value=p50,
            goal=None,
            samples={"http_ms": http_ms, "encode_ms": enc_ms},
            details={"p99_ms": p99, "bytes": lat["bytes"], "requests": requests},
        ),
        ScenarioResult(
            benchmark=NAME,
            scenario=f"node loop-lag p99 with {VIEWERS} stream viewers at 4 Hz",
            baseline="no viewers",
            unit="ms",
            baseline_value=none_p99,
            measured_value=viewers_p99,
            goal=None,
            max_ratio=LAG_GOAL_RATIO,
            samples={"none_ms": lag["none_ms"], "viewers_ms": lag["viewers_ms"]},
            details={k: v for k, v in lag.items() if k not in ("none_ms", "viewers_ms")},
        ),
    ]
