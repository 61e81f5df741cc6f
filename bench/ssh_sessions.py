"""Node event-loop lag with 8 SSH console sessions open versus none, and what a session costs.

Why: every SSH console is a child process that reads the node through its API on loopback
(docs/ARCHITECTURE.md, "Remote operation"): the node pays for the SSH channel (encryption,
copying the console's output) and for the API requests of each console. The goal the SSH issue
sets: node loop-lag p99 with 8 sessions <= 2x the figure with none, in the same run.

Set-up: node A (``zakura node`` with ``--ssh``, mining a block every second) and three peer
nodes B, C, D dialling it, each its own process. This process is the SSH client (asyncssh, as a
user's ``ssh -t`` would be): it opens 8 PTY sessions on A at 160x45, reads everything they draw
(so the channel's flow control never stalls a console), checks each one shows the Overview,
and checks a 9th is refused with the session-cap message.

Phases, interleaved ``repetitions`` times, each :data:`PHASE_SECS` long (the node's loop-lag
window is 400 samples of 50 ms = 20 s, so the p99 A reports at a phase's end covers exactly
that phase): ``none`` (no session open) and ``8 sessions``. Reported: A's loop-lag p99 per
phase (median over repetitions), the ratio, A's CPU, and per session the console child's RSS
and CPU (from ``/proc``), and the bytes it drew per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh

from bench import BenchOptions, CorrectnessError, ScenarioResult, register
from node_core.api.tokens import TokenStore
from node_core.control import Role
from zakura.node_cmd import parse_start_line

NAME = "ssh_sessions"
SESSIONS = 8
PHASE_SECS = 20.0
DEFAULT_REPETITIONS = 2
QUICK_REPETITIONS = 1
TERM_SIZE = (160, 45)
APPEAR_SECS = 60.0
GOAL_RATIO = 2.0
ZAKURA = Path(sys.executable).with_name("zakura")
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    proc: asyncio.subprocess.Process
    label: str
    listen: str
    api: str
    ssh: str | None


async def start_node(data_dir: Path, *extra: str) -> Child:
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    log = (data_dir / "node.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        str(ZAKURA), "node", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir),
        "--api", "127.0.0.1:0", "--log-level", "warning", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=log,
    )  # fmt: skip
    log.close()
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        line = (await proc.stdout.readline()).decode()
    start = parse_start_line(line)
    if start is None or start.api is None:
        proc.kill()
        raise CorrectnessError(f"{data_dir.name} did not start: {line!r}")
    return Child(proc, start.label, start.listen, start.api, start.ssh)


def _stat(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, RSS bytes) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, rss_pages * os.sysconf("SC_PAGE_SIZE")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


@dataclass
class Session:
    """One PTY session, its output drained continuously."""

    conn: asyncssh.SSHClientConnection
    process: asyncssh.SSHClientProcess[bytes]
    drawn: bytearray = field(default_factory=bytearray)
    bytes_total: int = 0
    reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        while data := await self.process.stdout.read(65536):
            self.bytes_total += len(data)
            if len(self.drawn) < 1 << 20:
                self.drawn += data

    async def close(self) -> None:
        self.process.close()
        self.conn.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncssh.Error):
                await self.reader
        with contextlib.suppress(Exception):
            await self.conn.wait_closed()


async def open_session(port: int, key: asyncssh.SSHKey, user: str) -> Session:
    conn = await asyncssh.connect(
        "127.0.0.1", port, username=user, client_keys=[key], known_hosts=None,
        agent_path=None, config=None,
    )  # fmt: skip
    process = await conn.create_process(
        term_type="xterm-256color", term_size=TERM_SIZE, encoding=None
    )
    session = Session(conn, process)
    session.reader = asyncio.create_task(session._read())
    return session


async def wait_drawn(session: Session, text: bytes, what: str) -> None:
    deadline = time.monotonic() + APPEAR_SECS
    while text not in session.drawn:
        if time.monotonic() > deadline or session.reader is None or session.reader.done():
            raise CorrectnessError(f"{what}: never drew {text!r}")
        await asyncio.sleep(0.1)


@dataclass
class Phase:
    mode: str
    p99_ms: float
    p50_ms: float
    node_cpu: float  # share of one core
    session_cpu: list[float] = field(default_factory=list)
    session_rss: list[int] = field(default_factory=list)
    session_bytes_per_s: list[float] = field(default_factory=list)


async def loop_lag(http: aiohttp.ClientSession, api: str, token: str) -> dict[str, Any]:
    async with http.get(
        f"http://{api}/api/v1/snapshot", headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        snap: dict[str, Any] = await resp.json()
    lag: dict[str, Any] = snap["loop_lag"]
    return lag


async def run_phase(
    mode: str, a: Child, http: aiohttp.ClientSession, token: str, sessions: list[Session]
) -> Phase:
    consoles = children_of(a.proc.pid)
    if mode != "none" and len(consoles) != SESSIONS:
        raise CorrectnessError(f"{len(consoles)} console children, expected {SESSIONS}")
    before = {pid: _stat(pid) for pid in [a.proc.pid, *consoles]}
    drawn_before = [s.bytes_total for s in sessions]
    t0 = time.monotonic()
    await asyncio.sleep(PHASE_SECS)
    elapsed = time.monotonic() - t0
    lag = await loop_lag(http, a.api, token)
    after = {pid: _stat(pid) for pid in before}

    def cpu(pid: int) -> float:
        b, e = before[pid], after[pid]
        return 0.0 if b is None or e is None else (e[0] - b[0]) / elapsed

    phase = Phase(mode, float(lag["p99_ms"]), float(lag["p50_ms"]), cpu(a.proc.pid))
    for pid in consoles:
        end = after[pid]
        phase.session_cpu.append(cpu(pid))
        phase.session_rss.append(end[1] if end is not None else 0)
    phase.session_bytes_per_s = [
        (s.bytes_total - b) / elapsed for s, b in zip(sessions, drawn_before, strict=True)
    ]
    return phase


@register(NAME, "node loop-lag p99 with 8 SSH console sessions vs none; RSS and CPU per session")
async def bench_ssh_sessions(options: BenchOptions) -> list[ScenarioResult]:
    if shutil.which("ssh-keygen") is None and not ZAKURA.exists():
        raise CorrectnessError("the zakura script is not installed")
    reps = options.repetitions or (QUICK_REPETITIONS if options.quick else DEFAULT_REPETITIONS)
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="zakura-bench-ssh-") as tmp:
        root = Path(tmp)
        key = asyncssh.generate_private_key("ssh-ed25519")
        keys_file = root / "authorized_keys"
        keys_file.write_text(f"zakura-role=operator {key.export_public_key().decode()}")
        token = TokenStore(root / "a").create("bench", Role.OPERATOR)
        nodes: list[Child] = []
        sessions: list[Session] = []
        http = aiohttp.ClientSession()
        try:
            a = await start_node(
                root / "a", "--ssh", "127.0.0.1:0", "--ssh-authorized-keys", str(keys_file),
                "--mine-interval", "1", "--blocks", "200",
            )  # fmt: skip
            nodes.append(a)
            for name in ("b", "c", "d"):
                nodes.append(await start_node(root / name, "--bootstrap", a.listen))
            assert a.ssh is not None
            port = int(a.ssh.rsplit(":", 1)[1])
            await asyncio.sleep(PHASE_SECS)  # let the loop-lag window fill with a settled run
            for rep in range(reps):
                phases.append(await run_phase("none", a, http, token, []))
                sessions = [await open_session(port, key, f"bench{i}") for i in range(SESSIONS)]
                for i, s in enumerate(sessions):
                    await wait_drawn(s, b"Overview", f"session {i}")
                if rep == 0:  # the cap: a 9th console is told so and closed
                    extra = await open_session(port, key, "ninth")
                    await wait_drawn(extra, b"the most this node", "the 9th session")
                    await extra.close()
                phases.append(await run_phase(f"{SESSIONS} sessions", a, http, token, sessions))
                for s in sessions:
                    await s.close()
                sessions = []
                deadline = time.monotonic() + 30
                while children_of(a.proc.pid):
                    if time.monotonic() > deadline:
                        raise CorrectnessError("console children left after the sessions closed")
                    await asyncio.sleep(0.1)
        finally:
            for s in sessions:
                await s.close()
            await http.close()
            for node in nodes:
                if node.proc.returncode is None:
                    node.proc.terminate()
            for node in nodes:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(node.proc.wait(), 10)
                if node.proc.returncode is None:
                    node.proc.kill()
                    await node.proc.wait()
    none = [p for p in phases if p.mode == "none"]
    opened = [p for p in phases if p.mode != "none"]
    base = statistics.median(p.p99_ms for p in none)
    measured = statistics.median(p.p99_ms for p in opened)
    ratio = measured / base if base > 0 else float("inf")
    rss = [r for p in opened for r in p.session_rss]
    cpu = [c for p in opened for c in p.session_cpu]
    drawn = [b for p in opened for b in p.session_bytes_per_s]
    rss_mib = statistics.median(rss) / (1 << 20) if rss else 0.0
    cpu_share = statistics.median(cpu) if cpu else 0.0
    node_none = statistics.median(p.node_cpu for p in none)
    node_open = statistics.median(p.node_cpu for p in opened)
    note = (
        f"per session: console child RSS {rss_mib:.1f} MiB, CPU {cpu_share:.1%} of a core; "
        f"node CPU {node_none:.1%} with no session, {node_open:.1%} with {SESSIONS}"
    )
    return [
        ScenarioResult(
            benchmark=NAME,
            scenario=f"loop lag p99, {SESSIONS} SSH consoles open",
            baseline="no session",
            unit="ms",
            baseline_value=base,
            measured_value=measured,
            goal=None,
            max_ratio=GOAL_RATIO,
            samples={
                "none_p99_ms": [p.p99_ms for p in none],
                "sessions_p99_ms": [p.p99_ms for p in opened],
                "none_node_cpu": [p.node_cpu for p in none],
                "sessions_node_cpu": [p.node_cpu for p in opened],
            },
            details={
                "goal": f"p99 with {SESSIONS} sessions <= {GOAL_RATIO:g}x none (lower is better)",
                "meets_goal": ratio <= GOAL_RATIO,
                "ratio": ratio,
                "phase_secs": PHASE_SECS,
                "session_rss_mib_median": statistics.median(rss) / (1 << 20) if rss else 0.0,
                "session_cpu_core_share_median": statistics.median(cpu) if cpu else 0.0,
                "session_drawn_kib_per_s_median": statistics.median(drawn) / 1024 if drawn else 0.0,
                "node_cpu_none": statistics.median(p.node_cpu for p in none),
                "node_cpu_sessions": statistics.median(p.node_cpu for p in opened),
                "ninth_session": "refused with the session-cap message",
            },
            note=note,
        )
    ]
