"""A local network of ``zakura node`` processes on one host (``zakura testnet``, the demo, tests).

Real processes, not tasks in one loop: a testnet is where we kill nodes, watch them crash and
measure them without the observer sharing their event loop, so each node gets its own
interpreter, data dir (``node-00``, ``node-01`` ...) and log file (``<data dir>/node.log``).

Lifecycle rules, because leaked node processes hold ports and CPU long after a test failed:

- A child is *ready* when it prints its start line (:func:`zakura.node_cmd.format_start_line`);
  that line also reports the ports it really bound, so children started with port 0 never race
  another program for a port picked in advance.
- Node 0 starts first and every other node bootstraps from it. It is the miner: with
  ``blocks`` it pre-generates the seeded chain before it is ready, with ``mine_interval`` it
  keeps mining on top of it, so the others always have a tip to sync to and follow.
- With ``hostile=N`` the last N nodes run a hostile header or block sync (``--hostile-mode``);
  node 0, the miner everyone bootstraps from, never does, so honest nodes always have one
  honest peer.
- ``stop()`` sends SIGTERM to every child, waits up to 3 s, then SIGKILLs the rest, and always
  reaps them. Any failure during ``start()`` stops what was started before re-raising.
- If this process dies without running ``stop()`` (SIGKILL, a hard crash), the kernel sends
  every child SIGTERM: see :func:`_die_with_parent`.

With an API (``api_base_port``), once every node is ready the testnet writes two files into
its data dir for watching it from outside: ``fleet.toml`` (:func:`format_fleet_toml`, what
``zakura attach --fleet`` reads) and ``prometheus-targets.json``
(:func:`format_prometheus_targets`, a Prometheus ``file_sd_configs`` file).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from console.usage import UsageError
from node_core.block_sync.hostile import (
    ALL_HOSTILE_MODES,
    ALL_MODE_HELP,
    BlockHostileMode,
    parse_any_mode,
)
from node_core.header_sync.hostile import ASKED_MODES
from zakura.args import (
    IDLE_TIMEOUT_MAX,
    IDLE_TIMEOUT_MIN,
    add_hostile_mode,
    add_hostile_rate,
    add_log_level,
    check_hostile_delay,
    check_hostile_rate,
    count,
    hostile_modes_help,
    port_number,
    seconds,
)
from zakura.node_cmd import parse_start_line
from zakura.process import setup_logging

HOST = "127.0.0.1"
STOP_GRACE_SECS = 3.0
READY_TIMEOUT_SECS = 20.0
#: Extra ready time node 0 gets per pre-generated block (generous: CI disks fsync slowly).
PREGEN_SECS_PER_BLOCK = 0.002
LOG_TAIL_LINES = 15
#: Blocks a hostile node in an :data:`~node_core.header_sync.hostile.ASKED_MODES` mode has
#: beyond node 0's chain: the honest nodes must ask it for them, which is when it attacks.
HOSTILE_LEAD_BLOCKS = 100
_PR_SET_PDEATHSIG = 1
#: The directory holding the ``zakura`` package this process runs (``node_core`` and
#: ``console`` sit beside it); children import the same code from there, installed or not.
_SRC_ROOT = str(Path(__file__).resolve().parent.parent)


class TestnetError(Exception):
    """A testnet node could not be started; the message names it and quotes its log.

    Attributes:
        exit_code: The exit code the CLI should use: 2 when a child rejected its input (a port
            in use ...), 1 otherwise.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(slots=True)
class TestnetNode:
    """One running child node, as it announced itself."""

    __test__ = False

    index: int
    label: str
    listen: str
    api: str | None
    data_dir: Path
    process: asyncio.subprocess.Process
    log_path: Path
    #: The ``--hostile-mode`` this node runs; None for an honest node.
    hostile_mode: str | None = None
    #: An operator token for the node's API (also in ``<data_dir>/operator.token``).
    token: str | None = None

    @property
    def role(self) -> str:
        """``honest`` or ``hostile:<mode>`` (one token, so the printed table stays split-able)."""
        return "honest" if self.hostile_mode is None else f"hostile:{self.hostile_mode}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def name(self) -> str:
        return f"node-{self.index:02d}"

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def alive(self) -> bool:
        return self.process.returncode is None


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child receive SIGTERM when this process dies.

    Why: ``stop()`` covers every orderly exit, but nothing in-process runs when the testnet is
    SIGKILLed (or the OOM killer, or a segfault, takes it); orphaned nodes would keep their ports
    and keep dialing each other forever. ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` asks the kernel to
    deliver SIGTERM, which the node handles as a clean stop. Caveats: the signal fires when the
    *thread* that forked the child exits, so start a testnet from a long-lived thread (the main
    thread, or the thread running its event loop); and the parent may already have died between
    ``fork`` and ``prctl``, hence the ``getppid`` check. Linux only; elsewhere a no-op.

    ``prctl`` is resolved here, in the parent, so the child runs as little code as possible
    between ``fork`` and ``exec``.
    """
    if not sys.platform.startswith("linux"):
        return lambda: None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), sigterm)

    return preexec


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join("    " + ln for ln in text.splitlines()[-lines:]) or "    (log is empty)"


class Testnet:
    """N ``zakura node`` child processes on 127.0.0.1, bootstrapped from node 0.

    Use as ``async with Testnet(4) as net: ...`` or call :meth:`start` and :meth:`stop`.

    Args:
        nodes: Number of node processes.
        base_port: Node i listens on ``base_port + i``; 0 lets each child pick a free port.
        api_base_port: Node i serves its API on ``api_base_port + i``; 0 picks free ports;
            ``None`` runs no API. With an API every node gets an operator token and the data
            dir gets ``fleet.toml`` and ``prometheus-targets.json`` (see
            :func:`write_watch_files`).
        data_dir: Parent of the ``node-NN`` dirs, kept at exit. ``None`` makes a temp dir that
            :meth:`stop` removes.
        target_peers: ``--target-peers`` of every node.
        allow_faults: Start every node with ``--allow-faults``.
        trace_dir: Node i writes trace tables to ``trace_dir/node-NN``.
        log_level: ``--log-level`` of the children (their stderr goes to ``node.log``).
        ready_timeout: Seconds a child may take to print its start line.
        extra_args: Appended to every child's command line.
        blocks: Node 0 (the miner) pre-generates the seeded chain up to this height before it
            listens; the others start from genesis. Its ready timeout grows with ``blocks``.
        seed: Seed of node 0's pre-generated chain.
        mine_interval: Node 0 (the miner) mines a block every this many seconds and
            announces it with NewBlock (``--mine-interval``); ``None``: no mining.
        hostile: The last ``hostile`` nodes run ``--hostile-mode hostile_mode``; must be less
            than ``nodes`` (node 0 is never hostile). They pre-generate node 0's chain too; in
            a mode that attacks when asked for headers (malformed-headers, slow-responder,
            silent) or for blocks (every block mode) :data:`HOSTILE_LEAD_BLOCKS` more of it,
            so the honest nodes, which cannot get those from anyone else, do ask them.
        hostile_mode: One of :data:`~node_core.block_sync.hostile.ALL_HOSTILE_MODES` (a
            header-sync or a block-sync mode); required with ``hostile`` > 0.
        hostile_delay: ``--hostile-delay`` of the hostile nodes (slow-responder); None: the
            node's default.
        hostile_rate: ``--hostile-rate`` of the hostile nodes (slow-blocks, bytes/s); None:
            the node's default.
        idle_timeout: ``--idle-timeout`` of every node, in seconds (1 to 600): a connection
            with no record for that long is closed. A short one lets a test pause a node
            past it in seconds. None: the node's default (150 s).
    """

    __test__ = False

    def __init__(
        self,
        nodes: int,
        *,
        base_port: int = 0,
        api_base_port: int | None = None,
        data_dir: Path | None = None,
        target_peers: int = 4,
        allow_faults: bool = False,
        trace_dir: Path | None = None,
        log_level: str = "info",
        ready_timeout: float = READY_TIMEOUT_SECS,
        extra_args: tuple[str, ...] = (),
        blocks: int = 0,
        seed: int = 1,
        mine_interval: float | None = None,
        hostile: int = 0,
        hostile_mode: str | None = None,
        hostile_delay: float | None = None,
        hostile_rate: int | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("a testnet needs at least one node")
        check_hostile(nodes, hostile, hostile_mode)
        for name, base in (("base_port", base_port), ("api_base_port", api_base_port)):
            if base and base + nodes - 1 > 65535:
                raise ValueError(f"{name} {base} + {nodes} nodes runs past port 65535")
        self.size = nodes
        self.base_port = base_port
        self.api_base_port = api_base_port
        self.owns_data_dir = data_dir is None
        self._data_dir = data_dir
        self.target_peers = target_peers
        self.allow_faults = allow_faults
        self.trace_dir = trace_dir
        self.log_level = log_level
        self.ready_timeout = ready_timeout
        if blocks < 0:
            raise ValueError(f"blocks must be >= 0: {blocks}")
        if mine_interval is not None and not mine_interval > 0:
            raise ValueError(f"mine_interval must be positive: {mine_interval}")
        if idle_timeout is not None and not IDLE_TIMEOUT_MIN <= idle_timeout <= IDLE_TIMEOUT_MAX:
            raise ValueError(
                f"idle_timeout must be from {IDLE_TIMEOUT_MIN:g} to {IDLE_TIMEOUT_MAX:g} "
                f"seconds: {idle_timeout}"
            )
        self.extra_args = extra_args
        self.blocks = blocks
        self.seed = seed
        self.mine_interval = mine_interval
        self.hostile = hostile
        self.hostile_mode = hostile_mode
        self.hostile_delay = hostile_delay
        self.hostile_rate = hostile_rate
        self.idle_timeout = idle_timeout
        self.nodes: list[TestnetNode] = []
        #: ``<data dir>/fleet.toml`` once :meth:`start` wrote it (only with an API).
        self.fleet_file: Path | None = None
        #: ``<data dir>/prometheus-targets.json`` once :meth:`start` wrote it (only with an API).
        self.prometheus_targets_file: Path | None = None
        self._starting: list[asyncio.subprocess.Process] = []
        self._drains: list[asyncio.Task[None]] = []
        self._started = False
        self._stopped = False

    @property
    def data_dir(self) -> Path:
        """Parent of the ``node-NN`` dirs (a temp dir made by :meth:`start` unless given)."""
        if self._data_dir is None:
            raise RuntimeError("the testnet has no data dir before start()")
        return self._data_dir

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> list[TestnetNode]:
        """Start every node and wait until each has printed its start line.

        Raises:
            TestnetError: A child exited or stayed silent past ``ready_timeout``, or (with an
                API) the fleet and Prometheus files could not be written; every child started
                so far has been stopped.
        """
        if self._started:
            raise RuntimeError("testnet already started")
        self._started = True
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="zakura-testnet-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            first = await self._spawn(0, bootstrap=None)
            self.nodes.append(first)
            rest = await asyncio.gather(
                *(self._spawn(i, bootstrap=first.listen) for i in range(1, self.size)),
                return_exceptions=True,
            )
            for result in rest:
                if isinstance(result, BaseException):
                    raise result
                self.nodes.append(result)
            self.nodes.sort(key=lambda n: n.index)
            if self.api_base_port is not None:
                try:
                    self.fleet_file, self.prometheus_targets_file = write_watch_files(self)
                except (OSError, ValueError) as exc:
                    raise TestnetError(
                        f"testnet could not write its fleet and Prometheus files: {exc}"
                    ) from exc
        except BaseException:
            await self.stop()
            raise
        return self.nodes

    async def stop(self) -> None:
        """Stop every child (SIGTERM, SIGKILL after 3 s), reap them, drop an owned temp dir."""
        if self._stopped:
            return
        self._stopped = True
        procs = [p for p in self._starting if p.returncode is None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        if procs:
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in procs], timeout=STOP_GRACE_SECS
            )
            for proc in procs:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            if pending:
                await asyncio.wait(pending)
        for drain in self._drains:
            drain.cancel()
        if self._drains:
            await asyncio.wait(self._drains)
        if self.owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)

    async def __aenter__(self) -> Testnet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_exit(self) -> TestnetNode:
        """Return the first node whose process exits (for supervisors such as the CLI)."""
        alive = {asyncio.ensure_future(n.process.wait()): n for n in self.nodes if n.alive}
        if not alive:
            raise RuntimeError("no testnet node is running")
        try:
            done, _ = await asyncio.wait(alive, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in alive:
                task.cancel()
        return alive[next(iter(done))]

    # ------------------------------------------------------------------ one child
    def hostile_mode_of(self, index: int) -> str | None:
        """The hostile mode node ``index`` runs: the last ``hostile`` nodes', else None."""
        return self.hostile_mode if self.hostile and index >= self.size - self.hostile else None

    def blocks_of(self, index: int) -> int:
        """The ``--blocks`` node ``index`` pre-generates before it is ready (0: none).

        The miner and every hostile node (which must serve the miner's chain, and in some
        modes :data:`HOSTILE_LEAD_BLOCKS` more of it); honest followers sync instead.
        """
        hostile_mode = self.hostile_mode_of(index)
        blocks = self.blocks if index == 0 or hostile_mode is not None else 0
        if hostile_mode is not None and needs_lead(hostile_mode):
            blocks += HOSTILE_LEAD_BLOCKS
        return blocks

    def command(self, index: int, bootstrap: str | None) -> list[str]:
        """The command line of node ``index``, as run by :meth:`start`."""
        name = f"node-{index:02d}"
        port = self.base_port + index if self.base_port else 0
        args = [
            sys.executable,
            "-m",
            "zakura",
            "node",
            "--listen",
            f"{HOST}:{port}",
            "--data-dir",
            str(self.data_dir / name),
            "--target-peers",
            str(self.target_peers),
            "--log-level",
            self.log_level,
        ]
        if bootstrap is not None:
            args += ["--bootstrap", bootstrap]
        if self.api_base_port is not None:
            api_port = self.api_base_port + index if self.api_base_port else 0
            args += ["--api", f"{HOST}:{api_port}"]
        if self.allow_faults:
            args.append("--allow-faults")
        if self.trace_dir is not None:
            args += ["--trace-dir", str(self.trace_dir / name)]
        hostile_mode = self.hostile_mode_of(index)
        blocks = self.blocks_of(index)
        if blocks:
            args += ["--blocks", str(blocks), "--seed", str(self.seed)]
        if index == 0 and self.mine_interval is not None:
            args += ["--mine-interval", str(self.mine_interval)]
        if self.idle_timeout is not None:
            args += ["--idle-timeout", str(self.idle_timeout)]
        if hostile_mode is not None:
            args += ["--hostile-mode", hostile_mode]
            if self.hostile_delay is not None:
                args += ["--hostile-delay", str(self.hostile_delay)]
            if self.hostile_rate is not None:
                args += ["--hostile-rate", str(self.hostile_rate)]
        return [*args, *self.extra_args]

    async def _spawn(self, index: int, bootstrap: str | None) -> TestnetNode:
        name = f"node-{index:02d}"
        node_dir = self.data_dir / name
        node_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_path = node_dir / "node.log"
        token = make_operator_token(node_dir) if self.api_base_port is not None else None
        env = dict(os.environ)
        # The child must import the same zakura and node_core as this process, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC_ROOT, env.get("PYTHONPATH")) if p)
        with _open_log(log_path) as log_file:
            proc = await asyncio.create_subprocess_exec(
                *self.command(index, bootstrap),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                env=env,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        self._starting.append(proc)
        assert proc.stdout is not None
        ready = await self._await_ready(index, proc, log_path)
        # A node prints nothing after its start line, but an unread pipe would block it if it
        # ever did: keep draining, into its log.
        self._drains.append(asyncio.get_running_loop().create_task(_drain(proc.stdout, log_path)))
        return TestnetNode(
            index=index,
            label=ready.label,
            listen=ready.listen,
            api=ready.api,
            data_dir=node_dir,
            process=proc,
            log_path=log_path,
            hostile_mode=self.hostile_mode_of(index),
            token=token,
        )

    async def _await_ready(
        self, index: int, proc: asyncio.subprocess.Process, log_path: Path
    ) -> _Ready:
        assert proc.stdout is not None
        loop = asyncio.get_running_loop()
        # The miner and the hostile nodes generate and commit their chain before they listen
        # (about 1 s per 5,000 blocks on a slow disk); don't call that a hang. Node 0 does it
        # alone; a hostile node does it while its siblings start beside it (the honest ones
        # syncing that same chain from node 0) and shares the CPUs and the disk with all of
        # them: measured on 2 loaded cores, two hostile nodes of 8 took 36 s for 5,000 blocks.
        sharing = 1 if index == 0 else self.size - 1
        timeout = self.ready_timeout + self.blocks_of(index) * PREGEN_SECS_PER_BLOCK * sharing
        deadline = loop.time() + timeout
        name = f"node {index} (pid {proc.pid})"
        while True:
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
                async with asyncio.timeout_at(deadline):
                    raw = await proc.stdout.readline()
            except TimeoutError:
                raise TestnetError(
                    f"testnet {name} did not report ready within {timeout:.0f} s; "
                    f"last lines of {log_path}:\n{_tail(log_path)}"
                ) from None
            if not raw:
                code = await proc.wait()
                raise TestnetError(
                    f"testnet {name} exited with code {code} before it was ready; "
                    f"last lines of {log_path}:\n{_tail(log_path)}",
                    exit_code=2 if code == 2 else 1,
                )
            parsed = parse_start_line(raw.decode(errors="replace"))
            if parsed is not None:
                return _Ready(parsed.label, parsed.listen, parsed.api)


@dataclass(frozen=True, slots=True)
class _Ready:
    label: str
    listen: str
    api: str | None


#: The name of the operator token a testnet makes for each node's API.
TESTNET_TOKEN_NAME = "testnet"
#: Where it is written, mode 0600, in each node's data dir.
TOKEN_FILE_NAME = "operator.token"


def make_operator_token(node_dir: Path) -> str:
    """A fresh operator token for the node in ``node_dir`` (replacing the testnet's old one),
    also written to ``node_dir/operator.token`` (0600) for curl and ``zakura attach``."""
    from node_core.api.tokens import TokenError, TokenStore
    from node_core.control import Role

    store = TokenStore(node_dir)
    with contextlib.suppress(TokenError):  # none yet on a first start
        store.revoke(TESTNET_TOKEN_NAME)
    token = store.create(TESTNET_TOKEN_NAME, Role.OPERATOR)
    path = node_dir / TOKEN_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return token


# ---------------------------------------------------------------------- files for watchers
#: The fleet file a testnet with an API writes into its data dir, for ``zakura attach --fleet``.
FLEET_FILE_NAME = "fleet.toml"
#: The Prometheus file-service-discovery file it writes beside it.
PROMETHEUS_TARGETS_FILE_NAME = "prometheus-targets.json"
#: The ``job`` label of the testnet's Prometheus targets (what the Grafana dashboard shows).
PROMETHEUS_JOB = "zakura"


@dataclass(frozen=True, slots=True)
class FleetEntry:
    """One ``[[node]]`` table of a fleet file.

    Attributes:
        name: What the fleet view calls the node (``node-00`` ...).
        url: Base URL of its API, ``http://HOST:PORT``.
        token_file: Absolute path of a file holding a bearer token for that API.
    """

    name: str
    url: str
    token_file: Path


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string (double-quoted), escaped so ``tomllib`` reads it back.

    TOML basic strings must escape ``"``, ``\\`` and the control characters U+0000-U+001F and
    U+007F; everything else (any other Unicode scalar value) is written as is, in UTF-8.

    Raises:
        ValueError: ``value`` holds a lone surrogate (a path that is not valid UTF-8, decoded
            with ``surrogateescape``), which no TOML document can hold.
    """
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"cannot write {value!r} to TOML: it is not valid Unicode text")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_TOML_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def format_fleet_toml(entries: Iterable[FleetEntry]) -> str:
    """The text of a fleet file: one ``[[node]]`` table per entry, in order.

    The format (``zakura attach --fleet FILE`` reads it)::

        [[node]]
        name = "node-00"
        url = "http://127.0.0.1:9100"
        token_file = "/abs/path/node-00/operator.token"

    ``tomllib`` only reads TOML, so this is a tiny emitter for exactly that shape, with every
    value a :func:`toml_string`.
    """
    lines = [
        "# zakura fleet file: one [[node]] table per node, read by `zakura attach --fleet FILE`.",
        "# name: what the fleet view calls it; url: its API; token_file: a bearer token for it.",
    ]
    for entry in entries:
        lines += [
            "",
            "[[node]]",
            f"name = {toml_string(entry.name)}",
            f"url = {toml_string(entry.url)}",
            f"token_file = {toml_string(str(entry.token_file))}",
        ]
    return "\n".join(lines) + "\n"


def format_prometheus_targets(addresses: Iterable[str], testnet: str) -> str:
    """A Prometheus ``file_sd_configs`` file: one target group of ``HOST:PORT`` API addresses.

    Labels: ``job="zakura"`` (it overrides the scrape config's ``job_name``) and ``testnet``
    (the data dir's name), so several testnets in one Prometheus stay apart. The targets'
    ``/metrics`` is open: no token needed.
    """
    group = {"targets": list(addresses), "labels": {"job": PROMETHEUS_JOB, "testnet": testnet}}
    return json.dumps([group], indent=2) + "\n"


def fleet_entries(net: Testnet) -> list[FleetEntry]:
    """The fleet entries of a started testnet with an API, one per node, by index."""
    entries = []
    for node in net.nodes:
        if node.api is None:
            raise RuntimeError(f"testnet {node.name} serves no API")
        token_file = (node.data_dir / TOKEN_FILE_NAME).resolve()
        entries.append(FleetEntry(node.name, f"http://{node.api}", token_file))
    return entries


def write_watch_files(net: Testnet) -> tuple[Path, Path]:
    """Write ``fleet.toml`` and ``prometheus-targets.json`` into the testnet's data dir.

    Each is written to a temp file and renamed over the old one, so a reader (Prometheus
    watches the file and re-reads it on change) never sees half a file.

    Returns:
        The two paths, absolute.
    """
    root = net.data_dir.resolve()
    fleet = root / FLEET_FILE_NAME
    targets = root / PROMETHEUS_TARGETS_FILE_NAME
    _write_atomic(fleet, format_fleet_toml(fleet_entries(net)))
    addresses = [node.api for node in net.nodes if node.api is not None]
    _write_atomic(targets, format_prometheus_targets(addresses, root.name))
    return fleet, targets


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _open_log(path: Path) -> BinaryIO:
    """Append mode: the child and :func:`_drain` share the file without clobbering."""
    return open(path, "ab")


async def _drain(stream: asyncio.StreamReader, log_path: Path) -> None:
    with _open_log(log_path) as out:
        while line := await stream.readline():
            out.write(b"[stdout] " + line)
            out.flush()


def needs_lead(mode: str) -> bool:
    """Whether a hostile node in ``mode`` gets :data:`HOSTILE_LEAD_BLOCKS` beyond node 0's chain.

    Why: its attack happens only when honest nodes ask it for something, and they ask only
    for what they lack. Header modes in :data:`ASKED_MODES` attack a GetHeaders; every block
    mode attacks (or, unsolicited-blocks, pushes to) nodes still fetching bodies, which
    without a lead would have synced everything from node 0 before the hostile node is up.
    """
    parsed = parse_any_mode(mode)
    return isinstance(parsed, BlockHostileMode) or parsed in ASKED_MODES


class HostileSettingsError(ValueError):
    """Inconsistent hostile settings; ``flag`` is the command-line flag to change."""

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(problem)
        self.flag = flag


def check_hostile(nodes: int, hostile: int, mode: str | None) -> None:
    """Validate the hostile settings of a testnet of ``nodes`` nodes.

    Raises:
        HostileSettingsError: In the operator's terms, naming the flag to fix.
    """
    if hostile < 0:
        raise HostileSettingsError("--hostile", f"must be at least 0, got {hostile}")
    if hostile and hostile >= nodes:
        raise HostileSettingsError(
            "--hostile",
            f"{hostile} hostile nodes need --nodes {hostile + 1} or more: node 0 (the miner "
            f"everyone bootstraps from) is never hostile, and --nodes is {nodes}",
        )
    if hostile and mode is None:
        raise HostileSettingsError(
            "--hostile-mode",
            f"required with --hostile {hostile}: one of {', '.join(ALL_HOSTILE_MODES)}",
        )
    if mode is not None:
        try:
            parse_any_mode(mode)
        except ValueError as exc:
            raise HostileSettingsError("--hostile-mode", str(exc)) from None
        if not hostile:
            raise HostileSettingsError(
                "--hostile", f"--hostile-mode {mode} needs --hostile N (N >= 1 hostile nodes)"
            )


# ---------------------------------------------------------------------- zakura testnet
HOSTILE_HELP = hostile_modes_help(
    "hostile modes (--hostile N --hostile-mode MODE: the last N nodes, never node 0, run a\n"
    "hostile header sync (the first eight) or block sync (the last four); each victim's records\n"
    "show in its snapshot's misbehavior list):"
)

HELP = """\
Run a local network of N node processes on 127.0.0.1 and print their addresses.

Each node is a child process (`python -m zakura node ...`) with its own data dir named
node-00, node-01, ... under --data-dir; every node bootstraps from node 0 and then finds the
others through discovery. With --blocks N, node 0 is the miner and starts with the seeded chain
up to height N; the others start from genesis and sync its headers. With --mine-interval S,
node 0 also mines a block every S seconds and announces it with NewBlock, so every tip keeps
moving. Each child logs to <its data dir>/node.log.
Once every node has reported ready, a table of index, label, listen and API address and pid is
printed. With --api-base-port each node gets an operator API token, written to
<its data dir>/operator.token (mode 0600). Ctrl-C or SIGTERM stops every child (SIGTERM,
then SIGKILL after 3 s); if the testnet process itself is killed, even with SIGKILL, the
children are told to stop by the kernel (Linux).

Only with --api-base-port, the testnet also writes two files into its data dir (--data-dir, or
the temp dir) and prints their paths under the table:
  fleet.toml               the fleet file `zakura attach --fleet FILE` reads: one [[node]]
                           table per node with name ("node-00" ...), url
                           ("http://127.0.0.1:PORT", its API) and token_file (the absolute
                           path of its operator.token), all TOML strings
  prometheus-targets.json  a Prometheus file_sd_configs file: one target group listing every
                           node's API address (its /metrics needs no token), labels
                           job="zakura" and testnet=<the data dir's name>; docs/grafana/ has
                           a prometheus.yml snippet and a Grafana dashboard over it

With --hostile N --hostile-mode MODE the last N nodes attack the others' header or block sync
(see the modes below); the table gets a role column marking them. They get node 0's --blocks
chain too; in malformed-headers, slow-responder and silent mode, and in every block mode, 100
blocks more of it, which only they can serve, so the honest nodes have to ask them and meet the
attack (a wrong-body or silent-blocks node never serves those: the honest nodes keep their
header tip 100 above their verified tip and keep meeting the attack)."""

EXAMPLE = f"""\
{HOSTILE_HELP}

example:
  zakura testnet --nodes 8 --api-base-port 9100
  curl -s -H "Authorization: Bearer $(cat DATA/node-00/operator.token)" \\
      127.0.0.1:9100/api/v1/snapshot          # node 0's view (DATA: the printed data dir)
  zakura testnet --nodes 3 --api-base-port 9100 --data-dir tn
      # then: zakura attach --fleet tn/fleet.toml; Prometheus: tn/prometheus-targets.json
  zakura testnet --nodes 4 --blocks 5000 --mine-interval 5 --api-base-port 9100
  zakura testnet --nodes 5 --blocks 2000 --hostile 2 --hostile-mode malformed-headers"""


def add_parser(sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``testnet`` to the ``zakura`` subcommands ``sub``."""
    testnet = sub.add_parser(
        "testnet",
        help="run a local network of node processes",
        description=HELP,
        epilog=EXAMPLE,
        formatter_class=formatter_class,
    )
    testnet.add_argument(
        "--nodes",
        type=count(1),
        required=True,
        metavar="N",
        help="number of node processes (required)",
    )
    testnet.add_argument(
        "--base-port",
        type=port_number,
        default=0,
        metavar="P",
        help="node i listens on P+i; 0 lets each node pick a free port (default: 0)",
    )
    testnet.add_argument(
        "--api-base-port",
        type=port_number,
        default=None,
        metavar="P",
        help="node i serves its API on 127.0.0.1:P+i; 0 picks free ports; also writes "
        "fleet.toml and prometheus-targets.json (default: no API, no files)",
    )
    testnet.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="parent of the node-NN data dirs, kept at exit "
        "(default: a fresh temp dir, removed at exit)",
    )
    testnet.add_argument(
        "--target-peers",
        type=count(0),
        default=4,
        metavar="N",
        help="--target-peers of every node (default: 4)",
    )
    testnet.add_argument(
        "--allow-faults",
        action="store_true",
        help="start every node with --allow-faults (default: off)",
    )
    testnet.add_argument(
        "--trace-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="node i writes its trace tables into DIR/node-NN (default: off)",
    )
    testnet.add_argument(
        "--blocks",
        type=count(0),
        default=0,
        metavar="N",
        help="node 0 is the miner: it pre-generates the seeded chain up to height N before it "
        "listens; the other nodes start from genesis (default: 0)",
    )
    testnet.add_argument(
        "--seed",
        type=count(0),
        default=1,
        metavar="S",
        help="seed of node 0's --blocks chain (default: 1)",
    )
    testnet.add_argument(
        "--mine-interval",
        type=seconds,
        default=None,
        metavar="S",
        help="node 0 (the miner) gets --mine-interval S: it mines a block on its tip every S "
        "seconds and announces it with NewBlock, which the others relay; S > 0 "
        "(default: off, the chain stays at --blocks)",
    )
    testnet.add_argument(
        "--hostile",
        type=count(0),
        default=0,
        metavar="N",
        help="the last N nodes run a hostile header or block sync (--hostile-mode); node 0 never "
        "does, "
        "so N must be less than --nodes (default: 0)",
    )
    add_hostile_mode(testnet, "what the --hostile nodes do (listed below; required with --hostile)")
    testnet.add_argument(
        "--hostile-delay",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="--hostile-mode slow-responder only: each hostile answer's delay (default: 35)",
    )
    add_hostile_rate(testnet)
    add_log_level(testnet, "info", "here on stderr and in every node's node.log")


def format_table(net: Testnet) -> str:
    """The table ``zakura testnet`` prints once every node is ready.

    With hostile nodes it gets a last ``role`` column (``honest`` / ``hostile:<mode>``); without,
    it keeps its five columns, which scripts parse.
    """
    hostile = any(n.hostile_mode is not None for n in net.nodes)
    rows = [("idx", "label", "listen", "api", "pid", *(("role",) if hostile else ()))]
    rows += [
        (
            str(n.index),
            n.label,
            n.listen,
            n.api or "-",
            str(n.pid),
            *((n.role,) if hostile else ()),
        )
        for n in net.nodes
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.rjust(w) if c in (0, 4) else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )


async def run_testnet_cli(args: argparse.Namespace) -> int:
    """``zakura testnet``: start, print the table, supervise until a signal, stop everything."""
    for flag, base in (("--base-port", args.base_port), ("--api-base-port", args.api_base_port)):
        if base and base + args.nodes - 1 > 65535:
            raise UsageError(flag, f"{base} + {args.nodes} nodes runs past port 65535")
    try:
        check_hostile(args.nodes, args.hostile, args.hostile_mode)
    except HostileSettingsError as exc:
        raise UsageError(exc.flag, str(exc)) from None
    check_hostile_delay(args)
    check_hostile_rate(args)
    net = Testnet(
        args.nodes,
        base_port=args.base_port,
        api_base_port=args.api_base_port,
        data_dir=args.data_dir,
        target_peers=args.target_peers,
        allow_faults=args.allow_faults,
        trace_dir=args.trace_dir,
        log_level=args.log_level,
        blocks=args.blocks,
        seed=args.seed,
        mine_interval=args.mine_interval,
        hostile=args.hostile,
        hostile_mode=args.hostile_mode,
        hostile_delay=args.hostile_delay,
        hostile_rate=args.hostile_rate,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        starting = asyncio.ensure_future(net.start())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()  # start() stops whatever it started before re-raising
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return 0
        stopper.cancel()
        try:
            starting.result()
        except TestnetError as exc:
            print(f"zakura testnet: error: {exc}", file=sys.stderr, flush=True)
            return exc.exit_code
        kept = "kept" if args.data_dir is not None else "removed at exit"
        print(
            f"zakura testnet: {len(net.nodes)} nodes on {HOST}, data in {net.data_dir} ({kept}); "
            "each node logs to <data dir>/node-NN/node.log",
            flush=True,
        )
        if (miner := miner_summary(net)) is not None:
            print(miner, flush=True)
        print(format_table(net), flush=True)
        if net.hostile_mode is not None:
            print(hostile_summary(net), flush=True)
        if net.fleet_file is not None and net.prometheus_targets_file is not None:
            print(watch_summary(net.fleet_file, net.prometheus_targets_file), flush=True)
        print("Ctrl-C or SIGTERM stops every node.", flush=True)
        return await _supervise(net, stop)
    finally:
        await net.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def miner_summary(net: Testnet) -> str | None:
    """One line over the table saying what node 0 mines, so nobody wonders why tips move."""
    parts = []
    if net.blocks:
        parts.append(f"starts with the seeded chain to height {net.blocks:,} (seed {net.seed})")
    if net.mine_interval is not None:
        parts.append(f"mines a block every {net.mine_interval:g} s")
    if not parts:
        return None
    return f"zakura testnet: node 0 is the miner: it {' and '.join(parts)}"


def watch_summary(fleet_file: Path, targets_file: Path) -> str:
    """Two lines under the table naming the fleet file and the Prometheus targets file.

    Each path ends its line, after ``": "``, so a script can take it.
    """
    return (
        f"zakura testnet: fleet file (for zakura attach --fleet): {fleet_file}\n"
        f"zakura testnet: Prometheus file_sd targets (docs/grafana/README.md): {targets_file}"
    )


def hostile_summary(net: Testnet) -> str:
    """Two lines under the table: who attacks how, and what the honest nodes should do."""
    assert net.hostile_mode is not None
    text = ALL_MODE_HELP[parse_any_mode(net.hostile_mode).value]
    who = ", ".join(str(n.index) for n in net.nodes if n.hostile_mode is not None)
    return (
        f"hostile nodes {who} ({net.hostile_mode}): {text.does}\n"
        f"honest nodes should: {text.victims}"
    )


async def _supervise(net: Testnet, stop: asyncio.Event) -> int:
    """Wait for a signal; report children that die meanwhile; give up when none is left."""
    stopper = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            if not any(n.alive for n in net.nodes):
                print("zakura testnet: every node has exited", file=sys.stderr, flush=True)
                return 1
            exited = asyncio.ensure_future(net.wait_exit())
            await asyncio.wait({stopper, exited}, return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                node = exited.result()
                print(
                    f"zakura testnet: node {node.index} ({node.label}, pid {node.pid}) exited "
                    f"with code {node.process.returncode}; see {node.log_path}",
                    file=sys.stderr,
                    flush=True,
                )
            else:
                exited.cancel()
        return 0
    finally:
        stopper.cancel()


def run(args: argparse.Namespace) -> int:
    """``zakura testnet``: logs on stderr, the testnet until a signal. Raises UsageError."""
    setup_logging(args.log_level)
    return asyncio.run(run_testnet_cli(args))
