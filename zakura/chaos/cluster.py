"""A live cluster of real nodes for tests: start it, break it on purpose, watch it, tear it down.

::

    async with Cluster(nodes=4, blocks=200, mine_interval=1.0) as c:
        await c.converged(timeout=60)
        await c.partition([[0, 1], [2, 3]])
        ...
        await c.heal()
        tip = await c.converged(timeout=60)

Why real processes: the faults worth testing (SIGKILL in the middle of a commit, SIGSTOP past
a liveness deadline, a link cut in both directions) only mean something when each node has its
own interpreter, event loop, sockets and SQLite file. So a cluster is a
:class:`~zakura.testnet.Testnet` (``zakura node`` children on 127.0.0.1, node 0 the miner,
optional hostile nodes, faults allowed, an API with an operator token on every node), and the
cluster talks to each node only through its control API (``/api/v1``), as an operator would.

What a cluster adds to the testnet:

- **Faults, per node.** Peer faults (:meth:`Cluster.disconnect`, :meth:`~Cluster.panic`,
  :meth:`~Cluster.park`, :meth:`~Cluster.unpark`, :meth:`~Cluster.stall`,
  :meth:`~Cluster.throttle`) go through ``POST /api/v1/peers/{label}/{action}``, the same
  control model as the console's keys. Link faults (:meth:`~Cluster.partition`,
  :meth:`~Cluster.delay`, :meth:`~Cluster.bandwidth`, :meth:`~Cluster.heal`) go through
  ``POST /api/v1/links/...`` with the other nodes' ids. Process faults (:meth:`~Cluster.kill`
  = SIGKILL, :meth:`~Cluster.restart`, :meth:`~Cluster.pause` / :meth:`~Cluster.resume` =
  SIGSTOP / SIGCONT) act on the child process. Peers and link targets are named by node
  index; a peer may also be given by label.
- **A timeline.** Every fault, whatever its outcome, is recorded (:attr:`Cluster.timeline`:
  when, which node, what, its arguments, what came of it), so a failed test shows what was
  done to the cluster and in which order.
- **Observation.** :meth:`~Cluster.snapshot` of one node, :meth:`~Cluster.wait_for` a
  predicate over every node's snapshot with a deadline (its :class:`ClusterTimeout` names what
  it waited for and the values it last saw), :meth:`~Cluster.converged`, and
  :meth:`~Cluster.journal`: the journals of all nodes merged in time order, each row tagged
  with its node. A node's journal is read before it is killed, so a crash loses nothing that
  node had journaled by then.
- **Teardown, always.** ``async with`` stops every node however the block ends: an exception,
  a failed assertion, a cancellation (pytest-asyncio's runner turns Ctrl-C into one),
  KeyboardInterrupt. A paused node is resumed first (a stopped process would sit on its
  SIGTERM forever), then every node gets SIGTERM, SIGKILL after 3 s, and is reaped. Should
  this process die without running teardown, the kernel sends every node SIGTERM
  (:func:`zakura.testnet._die_with_parent`) and an ``atexit`` hook resumes paused ones.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import orjson

from node_core.chain.chainstate import CHAIN_FILE
from node_core.chain.store import ChainStore, StoreError
from node_core.control import Action, ActionInvalid, ActionResult, Refusal
from zakura.testnet import HOST, STOP_GRACE_SECS, Testnet, TestnetError, TestnetNode

__all__ = [
    "Cluster",
    "ClusterError",
    "ClusterTimeout",
    "FaultRecord",
    "FaultRefused",
    "HostileSpec",
    "JournalRow",
    "KillRecord",
    "NodeInfo",
    "NodeState",
    "Snapshot",
    "Tip",
]

#: A snapshot document as the API serves it (typed in :mod:`node_core.observe.schema`).
Snapshot = dict[str, Any]
#: A journal row as the API serves it, plus ``node`` (the node's index) and ``boot_id``.
JournalRow = dict[str, Any]

#: Seconds a read (snapshot, journal page) may take before the node counts as not answering.
READ_TIMEOUT = 10.0
#: Peer actions wait for the node to observe their effect (up to 5 s) before answering.
ACTION_TIMEOUT = 20.0
#: How often :meth:`Cluster.wait_for` polls.
POLL_INTERVAL = 0.25
#: Rows per journal page (the API's maximum).
JOURNAL_PAGE = 5000
#: Seconds a SIGSTOP or SIGCONT may take to show in the process state.
SIGNAL_TIMEOUT = 5.0
#: Seconds teardown spends reading the last journal rows of each node.
FINAL_JOURNAL_TIMEOUT = 5.0


class ClusterError(Exception):
    """The cluster cannot do what was asked (a node is down, an index is out of range ...)."""


class ClusterTimeout(TimeoutError):
    """A wait ran out; the message says what it waited for and the values it last saw."""


class FaultRefused(ClusterError):
    """A node refused or failed a fault; :attr:`result` is its answer."""

    def __init__(self, message: str, result: ActionResult) -> None:
        super().__init__(message)
        self.result = result


class NodeState(StrEnum):
    """What the cluster last did to a node's process."""

    RUNNING = "running"
    PAUSED = "paused"  # SIGSTOP: alive, answers nothing until resumed
    KILLED = "killed"  # exited (SIGKILL, or on its own); restart() brings it back


@dataclass(frozen=True, slots=True)
class HostileSpec:
    """The hostile nodes of a cluster: the last ``count`` nodes run ``mode``.

    ``mode`` is one of :data:`node_core.block_sync.hostile.ALL_HOSTILE_MODES`; ``delay`` and
    ``rate`` are ``--hostile-delay`` (slow-responder) and ``--hostile-rate`` (slow-blocks).
    """

    count: int
    mode: str
    delay: float | None = None
    rate: int | None = None

    @classmethod
    def of(cls, value: HostileSpec | Mapping[str, Any] | None) -> HostileSpec | None:
        """A spec from what a marker or a caller gives: a spec, ``{"count": 1, "mode":
        "..."}`` (``delay``, ``rate`` optional), or None for no hostile node."""
        if value is None or isinstance(value, HostileSpec):
            return value
        unknown = sorted(set(value) - {"count", "mode", "delay", "rate"})
        if unknown:
            raise ValueError(f"hostile: unknown key {unknown[0]!r} (count, mode, delay, rate)")
        if "mode" not in value:
            raise ValueError("hostile: needs a mode, e.g. {'count': 1, 'mode': 'silent'}")
        return cls(
            int(value.get("count", 1)), str(value["mode"]), value.get("delay"), value.get("rate")
        )


@dataclass(frozen=True, slots=True)
class Tip:
    """A block by height and hash (hex)."""

    height: int
    hash: str

    @classmethod
    def of(cls, ref: Mapping[str, Any]) -> Tip:
        """From a snapshot's ``{"height": ..., "hash": ...}``."""
        return cls(int(ref["height"]), str(ref["hash"]))

    def __str__(self) -> str:
        return f"{self.height} {self.hash[:12]}"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node of the cluster as it is now."""

    index: int
    label: str
    #: The node id (Ed25519 public key), 64 hex: what link faults name.
    id: str
    listen: str
    api: str
    pid: int
    data_dir: Path
    #: The ``--hostile-mode`` it runs; None for an honest node.
    hostile_mode: str | None
    state: NodeState

    @property
    def honest(self) -> bool:
        return self.hostile_mode is None

    @property
    def store_path(self) -> Path:
        """Its SQLite chain store (read it with ``ChainStore(path, readonly=True)``)."""
        return self.data_dir / CHAIN_FILE


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One entry of the fault timeline: what was done to which node, and what came of it.

    Attributes:
        at: Wall-clock time it was asked (Unix seconds; comparable with journal ``wall``).
        elapsed: Seconds since the cluster started.
        node: The node acted on; None for a fault over the whole cluster (a partition, a
            heal of every node).
        fault: ``disconnect``, ``panic`` ... ``partition``, ``kill``, ``restart`` ...
        args: Its arguments (peer, service, seconds, groups, ms ...).
        ok: Whether it took effect.
        result: What the node said or did, one line (an effect, a refusal, new ports ...).
    """

    at: float
    elapsed: float
    node: int | None
    fault: str
    args: Mapping[str, object]
    ok: bool
    result: str

    def format(self) -> str:
        """One line: ``  12.30 s  node 1  park  peer=2  ok: service_parked (...)``."""
        where = "cluster" if self.node is None else f"node {self.node}"
        args = " ".join(f"{k}={v}" for k, v in self.args.items())
        verdict = "ok" if self.ok else "FAILED"
        head = f"{self.elapsed:8.2f} s  {where:<8} {self.fault:<10}"
        return f"{head} {args}  {verdict}: {self.result}"


@dataclass(frozen=True, slots=True)
class KillRecord:
    """What a node had committed when it was killed, and what its store held just after.

    ``reported`` is the verified tip of the node's last snapshot before SIGKILL (None when it
    did not answer); ``stored`` the verified tip its SQLite store holds once the process is
    gone, and ``kept_hash`` the hash it holds at the reported height (None when the store
    could not be read, with ``store_error`` saying why). A block reported durable must still
    be there: :func:`zakura.chaos.invariants.no_block_lost`.
    """

    node: int
    at: float
    reported: Tip | None
    stored: Tip | None
    kept_hash: str | None = None
    store_error: str | None = None


@dataclass(slots=True)
class _Member:
    """The cluster's own record of one node (mutable: pid, ports and state change)."""

    index: int
    proc: TestnetNode
    id: str = ""
    state: NodeState = NodeState.RUNNING

    @property
    def url(self) -> str:
        assert self.proc.api is not None
        return f"http://{self.proc.api}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.proc.token}"}

    def info(self) -> NodeInfo:
        p = self.proc
        return NodeInfo(
            index=self.index,
            label=p.label,
            id=self.id,
            listen=p.listen,
            api=p.api or "",
            pid=p.pid,
            data_dir=p.data_dir,
            hostile_mode=p.hostile_mode,
            state=self.state,
        )


@dataclass(slots=True)
class _JournalCursor:
    """Where reading one node's journal got to, and every row read so far (all its runs)."""

    boot_id: str | None = None
    seq: int = 0
    rows: list[JournalRow] = field(default_factory=list)
    gaps: int = 0  # rows the node's ring overwrote before we read them


# ---------------------------------------------------------------------- paused processes
#: Pids this process has SIGSTOPped and not yet resumed: resumed at interpreter exit, since a
#: stopped child never acts on the SIGTERM the kernel sends it when we die.
_PAUSED: set[int] = set()


@atexit.register
def _resume_paused() -> None:
    for pid in list(_PAUSED):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)
    _PAUSED.clear()


class _ClusterNet(Testnet):
    """A :class:`Testnet` that can start one node again on its data dir (and its old ports).

    Why a subclass: the testnet already owns spawning, readiness, logs, drains and stopping
    (:meth:`Testnet.stop` stops every process it ever started, a restarted one included);
    only the listen and API ports of a restarted node differ from a first start.
    """

    __test__ = False

    def __init__(self, nodes: int, **kwargs: Any) -> None:
        super().__init__(nodes, **kwargs)
        self._pinned: dict[int, tuple[int, int]] = {}

    def command(self, index: int, bootstrap: str | None) -> list[str]:
        args = super().command(index, bootstrap)
        pinned = self._pinned.get(index)
        if pinned is not None:
            for flag, port in zip(("--listen", "--api"), pinned, strict=True):
                args[args.index(flag) + 1] = f"{HOST}:{port}"
        return args

    async def respawn(
        self, index: int, bootstrap: str | None, ports: tuple[int, int] | None
    ) -> TestnetNode:
        """Start node ``index`` again (its process must have exited) and wait until ready."""
        if ports is not None:
            self._pinned[index] = ports
        try:
            node = await self._spawn(index, bootstrap)
        finally:
            self._pinned.pop(index, None)
        self.nodes[index] = node
        return node


def _port(addr: str) -> int:
    return int(addr.rpartition(":")[2])


class Cluster:
    """N real ``zakura node`` processes on 127.0.0.1 that a test can break on purpose.

    Use ``async with Cluster(...) as c:``; or ``await c.start()`` and, in a ``finally``,
    ``await c.close()``.

    Args:
        nodes: How many nodes. Node 0 is the miner every other node bootstraps from.
        blocks: Node 0 starts with the seeded chain up to this height; the others sync it.
        hostile: The last nodes run a hostile header or block sync:
            ``{"count": 1, "mode": "malformed-headers"}`` or a :class:`HostileSpec`.
        mine_interval: Node 0 mines a block every this many seconds (None: never).
        data_dir: Parent of the nodes' ``node-NN`` dirs, kept after the cluster stops. None:
            a fresh temp dir, removed at :meth:`close` unless :attr:`keep_data` is set (the
            pytest plugin sets it when the test failed).
        seed: Seed of node 0's pre-generated chain.
        target_peers: ``--target-peers`` of every node; default every other node, so a small
            cluster is a full mesh and a partition visibly cuts links.
        log_level: The nodes' ``--log-level`` (each logs to ``<its data dir>/node.log``).
        ready_timeout: Seconds a node may take to start (more for a long chain).
        idle_timeout: ``--idle-timeout`` of every node, in seconds (1 to 600): a connection
            with no record for that long is closed. Set it short (say 3) to :meth:`pause` a
            node past it in seconds; None: the node's default, 150 s.
        node_args: More ``zakura node`` flags for every node, e.g.
            ``("--diag", "parked_s=1")`` for short diagnostic thresholds.
    """

    def __init__(
        self,
        nodes: int = 3,
        *,
        blocks: int = 0,
        hostile: HostileSpec | Mapping[str, Any] | None = None,
        mine_interval: float | None = None,
        data_dir: Path | str | None = None,
        seed: int = 1,
        target_peers: int | None = None,
        log_level: str = "info",
        ready_timeout: float = 20.0,
        idle_timeout: float | None = None,
        node_args: Sequence[str] = (),
    ) -> None:
        spec = HostileSpec.of(hostile)
        self.size = nodes
        self.hostile_spec = spec
        #: Keep the data dir at :meth:`close` even when the cluster made it.
        self.keep_data = data_dir is not None
        self._dir: Path | None = None if data_dir is None else Path(data_dir)
        self._net_args: dict[str, Any] = dict(
            api_base_port=0,
            target_peers=max(1, nodes - 1) if target_peers is None else target_peers,
            allow_faults=True,
            log_level=log_level,
            ready_timeout=ready_timeout,
            blocks=blocks,
            seed=seed,
            mine_interval=mine_interval,
            hostile=0 if spec is None else spec.count,
            hostile_mode=None if spec is None else spec.mode,
            hostile_delay=None if spec is None else spec.delay,
            hostile_rate=None if spec is None else spec.rate,
            idle_timeout=idle_timeout,
            extra_args=tuple(node_args),
        )
        # Built here so bad settings fail now (ValueError), not at start(); start() builds the
        # one it runs, on the data dir it made.
        self._net = _ClusterNet(nodes, data_dir=self._dir, **self._net_args)
        self._members: list[_Member] = []
        self._journals: dict[int, _JournalCursor] = {}
        self._timeline: list[FaultRecord] = []
        self._kills: list[KillRecord] = []
        self._session: aiohttp.ClientSession | None = None
        self._t0 = time.monotonic()
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def data_dir(self) -> Path:
        """Parent of the ``node-NN`` dirs (each holds ``node.log`` and ``chain.sqlite3``)."""
        if self._dir is None:
            raise ClusterError("the cluster has no data dir before start()")
        return self._dir

    async def start(self) -> Cluster:
        """Start every node, learn its id, and return once each answers on its API.

        Raises:
            TestnetError: A node did not start (the message quotes its log); everything
                started so far has been stopped.
        """
        if self._started:
            raise ClusterError("cluster already started")
        self._started = True
        if self._dir is None:
            # Ours, not the testnet's: close() removes it, or keeps it for a failed test.
            self._dir = Path(tempfile.mkdtemp(prefix="zakura-cluster-"))
        self._net = _ClusterNet(self.size, data_dir=self._dir, **self._net_args)
        self._t0 = time.monotonic()
        try:
            started = await self._net.start()
            self._members = [_Member(n.index, n) for n in started]
            self._journals = {m.index: _JournalCursor() for m in self._members}
            self._session = aiohttp.ClientSession()
            for member, snap in zip(
                self._members,
                await asyncio.gather(*(self._get(m, "/api/v1/snapshot") for m in self._members)),
                strict=True,
            ):
                member.id = str(snap["node"]["id"])
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self, *, collect: bool = True) -> None:
        """Stop every node (paused ones resumed first) and reap it; idempotent.

        With ``collect`` the last journal rows of every node are read first (a few seconds
        at most), so :meth:`journal` still has them after the nodes are gone; teardown after
        a cancellation skips that and stops the nodes at once.
        """
        if self._closed:
            return
        self._closed = True
        for member in self._members:
            if member.state is NodeState.PAUSED:
                self._signal(member, signal.SIGCONT)
                _PAUSED.discard(member.proc.pid)
                member.state = NodeState.RUNNING
        try:
            if collect and self._session is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(FINAL_JOURNAL_TIMEOUT):
                        await self._pull_journals()
        finally:
            try:
                await self._net.stop()
            finally:
                for member in self._members:
                    if member.state is NodeState.RUNNING:
                        member.state = NodeState.KILLED
                if self._session is not None:
                    await self._session.close()
                if not self.keep_data and self._dir is not None:
                    shutil.rmtree(self._dir, ignore_errors=True)

    async def __aenter__(self) -> Cluster:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        interrupted = exc_type is not None and issubclass(
            exc_type, asyncio.CancelledError | KeyboardInterrupt | SystemExit
        )
        await self.close(collect=not interrupted)

    # ------------------------------------------------------------------ who is who
    @property
    def nodes(self) -> tuple[NodeInfo, ...]:
        """Every node, by index, as it is now."""
        return tuple(m.info() for m in self._members)

    def node(self, index: int) -> NodeInfo:
        return self._member(index).info()

    @property
    def honest(self) -> tuple[int, ...]:
        """Indexes of the honest nodes (node 0, the miner, always is)."""
        return tuple(m.index for m in self._members if m.proc.hostile_mode is None)

    @property
    def hostile(self) -> tuple[int, ...]:
        """Indexes of the hostile nodes (the last ``hostile.count``)."""
        return tuple(m.index for m in self._members if m.proc.hostile_mode is not None)

    @property
    def running(self) -> tuple[int, ...]:
        """Indexes of the nodes that answer now (neither paused nor killed)."""
        return tuple(m.index for m in self._members if m.state is NodeState.RUNNING)

    def label(self, index: int) -> str:
        return self._member(index).proc.label

    def index_of(self, label: str) -> int | None:
        """The index of the node with peer label ``label``, or None for a stranger."""
        return next((m.index for m in self._members if m.proc.label == label), None)

    @property
    def timeline(self) -> tuple[FaultRecord, ...]:
        """Every fault done to the cluster so far, in order."""
        return tuple(self._timeline)

    @property
    def kills(self) -> tuple[KillRecord, ...]:
        """What each :meth:`kill` found: the tip reported before, the store's tip after."""
        return tuple(self._kills)

    def format_timeline(self) -> str:
        return "\n".join(r.format() for r in self._timeline) or "(no fault injected)"

    def _member(self, index: int) -> _Member:
        if not self._members:
            raise ClusterError("the cluster is not started")
        if not 0 <= index < len(self._members):
            raise ClusterError(
                f"no node {index}: the cluster has nodes 0..{len(self._members) - 1}"
            )
        return self._members[index]

    def _running(self, index: int, doing: str) -> _Member:
        member = self._member(index)
        if member.state is not NodeState.RUNNING:
            raise ClusterError(f"cannot {doing} node {index}: it is {member.state.value}")
        return member

    # ------------------------------------------------------------------ HTTP
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            raise ClusterError("the cluster is not running")
        return self._session

    async def _get(self, member: _Member, path: str) -> Any:
        async with self._http().get(
            member.url + path,
            headers=member.headers,
            timeout=aiohttp.ClientTimeout(total=READ_TIMEOUT),
        ) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise ClusterError(
                    f"node {member.index}: GET {path} answered {resp.status}: {body[:200]!r}"
                )
        return orjson.loads(body)

    async def _post(self, member: _Member, path: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        async with self._http().post(
            member.url + path,
            data=orjson.dumps(body),
            headers={**member.headers, "Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=ACTION_TIMEOUT),
        ) as resp:
            raw = await resp.read()
            try:
                doc = orjson.loads(raw) if raw.strip() else {}
            except orjson.JSONDecodeError:
                doc = {"error": raw[:200].decode(errors="replace")}
            return resp.status, doc

    # ------------------------------------------------------------------ the timeline
    def _record(
        self, node: int | None, fault: str, args: Mapping[str, object], ok: bool, result: str
    ) -> FaultRecord:
        rec = FaultRecord(
            time.time(),
            round(time.monotonic() - self._t0, 3),
            node,
            fault,
            MappingProxyType(dict(args)),
            ok,
            result,
        )
        self._timeline.append(rec)
        return rec

    async def _recorded(
        self,
        node: int | None,
        fault: str,
        args: Mapping[str, object],
        act: Callable[[], Awaitable[str]],
    ) -> str:
        """Run ``act`` and put it on the timeline whatever happens (its text, or the error)."""
        try:
            result = await act()
        except BaseException as exc:
            self._record(node, fault, args, False, f"{type(exc).__name__}: {exc}"[:300])
            raise
        self._record(node, fault, args, True, result)
        return result

    # ------------------------------------------------------------------ peer faults
    async def act(
        self,
        node: int,
        action: Action,
        *,
        check: bool = True,
        args: Mapping[str, object] | None = None,
    ) -> ActionResult:
        """Send a control-model ``action`` to ``node`` (``POST /api/v1/peers/{label}/{kind}``).

        The node answers after it observed the effect (or refused); the result is recorded on
        the timeline. With ``check`` a refusal raises :class:`FaultRefused`.
        """
        fault = str(action.kind)
        args = args or {"peer": action.label}
        try:
            member = self._running(node, fault)
        except ClusterError as exc:
            self._record(node, fault, args, False, str(exc))
            raise
        body: dict[str, Any] = {}
        for key in ("service", "seconds", "rate"):
            if (value := getattr(action, key)) is not None:
                body[key] = value
        try:
            status, doc = await self._post(
                member, f"/api/v1/peers/{action.label}/{action.kind}", body
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._record(node, fault, args, False, f"no answer: {type(exc).__name__} {exc}")
            raise ClusterError(f"node {node} did not answer {action.describe()}: {exc}") from exc
        result = _action_result(status, doc)
        text = (
            f"{result.effect} ({result.reason})"
            if result.ok
            else f"{result.refusal or status}: {result.message}"
        )
        self._record(node, fault, args, result.ok, text)
        if check and not result.ok:
            raise FaultRefused(f"node {node}: {action.describe()}: {text}", result)
        return result

    def _peer_label(self, peer: int | str) -> str:
        return peer if isinstance(peer, str) else self._member(peer).proc.label

    async def disconnect(self, node: int, peer: int | str, *, check: bool = True) -> ActionResult:
        """``node`` closes its connection to ``peer`` (a node index or a peer label)."""
        return await self._peer_action(node, peer, "disconnect", check=check)

    async def panic(
        self, node: int, peer: int | str, service: str = "header_sync", *, check: bool = True
    ) -> ActionResult:
        """Raise an exception inside ``node``'s ``service`` routine for ``peer``: the routine
        panics, that connection closes, nothing else is touched."""
        return await self._peer_action(node, peer, "panic", service=service, check=check)

    async def park(self, node: int, peer: int | str, *, check: bool = True) -> ActionResult:
        """Park ``node``'s header sync with ``peer`` (its ranges go back to the queue)."""
        return await self._peer_action(node, peer, "park", check=check)

    async def unpark(self, node: int, peer: int | str, *, check: bool = True) -> ActionResult:
        """Resume ``node``'s parked header sync with ``peer`` (a new session)."""
        return await self._peer_action(node, peer, "unpark", check=check)

    async def stall(
        self,
        node: int,
        peer: int | str,
        service: str = "header_sync",
        seconds: float = 30.0,
        *,
        check: bool = True,
    ) -> ActionResult:
        """Stall ``node``'s ``service`` routine for ``peer`` for ``seconds`` (1 to 600)."""
        return await self._peer_action(
            node, peer, "stall", service=service, seconds=seconds, check=check
        )

    async def throttle(
        self, node: int, peer: int | str, kib_per_s: float, *, check: bool = True
    ) -> ActionResult:
        """``node`` reads from ``peer`` at most ``kib_per_s`` KiB/s (0 lifts the throttle)."""
        return await self._peer_action(node, peer, "throttle", rate=kib_per_s, check=check)

    async def _peer_action(
        self,
        node: int,
        peer: int | str,
        kind: str,
        *,
        check: bool,
        service: str | None = None,
        seconds: float | None = None,
        rate: float | None = None,
    ) -> ActionResult:
        args: dict[str, object] = {"peer": peer}
        for key, value in (("service", service), ("seconds", seconds), ("kib_per_s", rate)):
            if value is not None:
                args[key] = value
        try:
            action = Action(kind, self._peer_label(peer), service, seconds, rate)
        except (ActionInvalid, ClusterError) as exc:
            self._record(node, kind, args, False, f"invalid: {exc}")
            raise
        return await self.act(node, action, check=check, args=args)

    # ------------------------------------------------------------------ link faults
    def _ids(self, nodes: Iterable[int]) -> list[str]:
        return [self._member(i).id for i in nodes]

    async def _link(self, node: int, verb: str, body: Mapping[str, Any]) -> tuple[bool, str]:
        """``POST /api/v1/links/{verb}`` on ``node``; (ok, one line saying what it answered)."""
        try:
            member = self._running(node, verb)
            status, doc = await self._post(member, f"/api/v1/links/{verb}", body)
        except ClusterError as exc:
            return False, str(exc)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return False, f"no answer: {type(exc).__name__} {exc}"
        if status == 200:
            effect = doc.get("effect") or doc.get("message") or "ok"
            return True, f"{effect} ({doc['reason']})" if doc.get("reason") else str(effect)
        return False, f"HTTP {status}: {doc.get('error') or doc}"

    async def _links_on(
        self,
        fault: str,
        args: Mapping[str, object],
        calls: Mapping[int, Mapping[str, Any]],
        check: bool,
    ) -> dict[int, str]:
        """Apply one link fault (``fault`` is also the route's verb) on several nodes at once;
        record one timeline entry."""
        answers = await asyncio.gather(*(self._link(i, fault, b) for i, b in calls.items()))
        results = dict(zip(calls, answers, strict=True))
        ok = all(a[0] for a in answers)
        text = "; ".join(f"node {i}: {a[1]}" for i, a in results.items()) or "no running node"
        node = next(iter(calls)) if len(calls) == 1 and fault != "partition" else None
        self._record(node, fault, args, ok, text)
        if check and not ok:
            failed = "; ".join(f"node {i}: {a[1]}" for i, a in results.items() if not a[0])
            raise ClusterError(f"{fault} failed on {failed}")
        return {i: a[1] for i, a in results.items()}

    async def partition(self, groups: Sequence[Sequence[int]], *, check: bool = True) -> None:
        """Cut the cluster into ``groups`` (lists of node indexes).

        Every running node partitions itself from every node outside its group, in both
        directions (dials refused, connections closed); a node in no group is cut off from
        every grouped node. Paused and killed nodes are skipped: the other side of each of
        their links is cut. :meth:`heal` undoes it.
        """
        seen: dict[int, int] = {}
        for g, group in enumerate(groups):
            for i in group:
                self._member(i)
                if i in seen:
                    raise ClusterError(f"node {i} is in group {seen[i]} and group {g}")
                seen[i] = g
        calls: dict[int, dict[str, Any]] = {}
        for i in self.running:
            mine = seen.get(i)
            outside = [
                j for j in range(self.size) if j != i and (mine is None or seen.get(j) != mine)
            ]
            if outside:
                calls[i] = {"nodes": self._ids(outside)}
        await self._links_on("partition", {"groups": [list(g) for g in groups]}, calls, check)

    async def delay(
        self,
        node: int,
        to: int | Iterable[int],
        ms: float,
        jitter_ms: float = 0.0,
        *,
        check: bool = True,
    ) -> None:
        """Delay every frame ``node`` sends to ``to`` by ``ms`` (± ``jitter_ms``)."""
        targets = [to] if isinstance(to, int) else list(to)
        body = {"nodes": self._ids(targets), "ms": ms, "jitter_ms": jitter_ms}
        args = {"to": targets, "ms": ms, "jitter_ms": jitter_ms}
        await self._links_on("delay", args, {node: body}, check)

    async def bandwidth(
        self, node: int, to: int | Iterable[int], kib_per_s: float, *, check: bool = True
    ) -> None:
        """Limit what ``node`` sends to ``to`` to ``kib_per_s`` KiB/s."""
        targets = [to] if isinstance(to, int) else list(to)
        body = {"nodes": self._ids(targets), "kib_per_s": kib_per_s}
        args = {"to": targets, "kib_per_s": kib_per_s}
        await self._links_on("bandwidth", args, {node: body}, check)

    async def heal(self, node: int | None = None, *, check: bool = True) -> None:
        """Clear every link fault on ``node``, or on every running node. Each node redials
        at once the nodes whose partition it lifted (their dial backoff forgotten), so the
        cluster reconnects in moments however long the partition lasted."""
        nodes = self.running if node is None else (node,)
        args = {} if node is None else {"node": node}
        await self._links_on("heal", args, {i: {} for i in nodes}, check)

    async def links(self, node: int) -> Any:
        """``GET /api/v1/links`` of ``node``: the link faults it holds now."""
        return await self._get(self._running(node, "read the links of"), "/api/v1/links")

    # ------------------------------------------------------------------ process faults
    def _signal(self, member: _Member, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            member.proc.process.send_signal(sig)

    async def kill(self, node: int) -> KillRecord:
        """SIGKILL ``node`` (no chance to clean up) and reap it.

        Its journal and its verified tip are read first, and its store once it is gone, so
        :attr:`kills` says what it had committed and what survived.
        """
        member = self._member(node)
        if member.state is NodeState.KILLED:
            raise ClusterError(f"node {node} is already killed")

        async def act() -> str:
            reported: Tip | None = None
            if member.state is NodeState.RUNNING:
                with contextlib.suppress(Exception):
                    await self._pull_journal(member)
                    snap = await self._get(member, "/api/v1/snapshot")
                    reported = Tip.of(snap["chain"]["verified_tip"])
            member.proc.process.kill()  # SIGKILL; a stopped process dies too
            await member.proc.process.wait()
            _PAUSED.discard(member.proc.pid)
            member.state = NodeState.KILLED
            path = member.proc.data_dir / CHAIN_FILE
            stored, kept, error = _stored_tip(path, None if reported is None else reported.height)
            self._kills.append(KillRecord(node, time.time(), reported, stored, kept, error))
            return f"pid {member.proc.pid} killed; tip reported {reported}, stored {stored}"

        await self._recorded(node, "kill", {}, act)
        return self._kills[-1]

    async def restart(self, node: int) -> NodeInfo:
        """Start ``node`` again on its data dir, on its old ports when they are free, and wait
        until it is ready. A running node is stopped first (SIGTERM, SIGKILL after 3 s)."""
        member = self._member(node)

        async def act() -> str:
            if member.state is not NodeState.KILLED:
                await self._stop_one(member)
            old = member.proc
            ports = (_port(old.listen), _port(old.api or ":0"))
            # Any node still up (node 0 first, like a first start) to find the others from.
            alive = (
                m for m in self._members if m.index != node and m.state is not NodeState.KILLED
            )
            bootstrap = next((m.proc.listen for m in alive), None)
            try:
                new = await self._net.respawn(node, bootstrap, ports)
                how = "same ports"
            except TestnetError as exc:
                if exc.exit_code != 2:
                    raise
                new = await self._net.respawn(node, bootstrap, None)  # a port was taken
                how = "new ports"
            member.proc = new
            member.state = NodeState.RUNNING
            snap = await self._get(member, "/api/v1/snapshot")
            if str(snap["node"]["id"]) != member.id:
                raise ClusterError(f"node {node} came back with another id")
            return f"pid {new.pid} ready on {new.listen} api {new.api} ({how})"

        await self._recorded(node, "restart", {}, act)
        return member.info()

    async def _stop_one(self, member: _Member) -> None:
        if member.state is NodeState.PAUSED:
            self._signal(member, signal.SIGCONT)
            _PAUSED.discard(member.proc.pid)
        with contextlib.suppress(Exception):
            await self._pull_journal(member)
        proc = member.proc.process
        self._signal(member, signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_GRACE_SECS):
                await proc.wait()
        except TimeoutError:
            self._signal(member, signal.SIGKILL)
            await proc.wait()
        member.state = NodeState.KILLED

    async def pause(self, node: int) -> None:
        """SIGSTOP ``node``: it keeps its sockets but runs nothing until :meth:`resume`."""
        member = self._running(node, "pause")

        async def act() -> str:
            _PAUSED.add(member.proc.pid)
            member.proc.process.send_signal(signal.SIGSTOP)
            member.state = NodeState.PAUSED
            await _until_stopped(member.proc.pid, True)
            return f"pid {member.proc.pid} stopped"

        await self._recorded(node, "pause", {}, act)

    async def resume(self, node: int) -> None:
        """SIGCONT a paused ``node``."""
        member = self._member(node)
        if member.state is not NodeState.PAUSED:
            raise ClusterError(f"cannot resume node {node}: it is {member.state.value}")

        async def act() -> str:
            member.proc.process.send_signal(signal.SIGCONT)
            _PAUSED.discard(member.proc.pid)
            member.state = NodeState.RUNNING
            await _until_stopped(member.proc.pid, False)
            return f"pid {member.proc.pid} continued"

        await self._recorded(node, "resume", {}, act)

    # ------------------------------------------------------------------ observation
    async def snapshot(self, node: int) -> Snapshot:
        """``node``'s snapshot document (``GET /api/v1/snapshot``)."""
        doc: Snapshot = await self._get(
            self._running(node, "read a snapshot of"), "/api/v1/snapshot"
        )
        return doc

    async def snapshots(self, nodes: Iterable[int] | None = None) -> dict[int, Snapshot]:
        """The snapshots of ``nodes`` (default: every running node) that answered, by index."""
        members = [self._member(i) for i in (self.running if nodes is None else nodes)]
        members = [m for m in members if m.state is NodeState.RUNNING]
        docs = await asyncio.gather(
            *(self._get(m, "/api/v1/snapshot") for m in members), return_exceptions=True
        )
        return {
            m.index: doc
            for m, doc in zip(members, docs, strict=True)
            if not isinstance(doc, BaseException)
        }

    async def wait_for(
        self,
        predicate: Callable[[Mapping[int, Snapshot]], object],
        timeout: float = 30.0,
        *,
        what: str | None = None,
        nodes: Iterable[int] | None = None,
    ) -> dict[int, Snapshot]:
        """Poll the snapshots of ``nodes`` (default: every running node) until ``predicate``
        holds for them, and return those snapshots.

        The predicate gets ``{index: snapshot}`` for every one of the nodes, and is only asked
        once all of them answered.

        Raises:
            ClusterTimeout: After ``timeout`` seconds, naming ``what`` (default: the
                predicate's name) and each node's last tips and peers.
        """
        wanted = None if nodes is None else tuple(nodes)
        what = what or getattr(predicate, "__name__", repr(predicate))
        deadline = time.monotonic() + timeout
        last: dict[int, Snapshot] = {}
        while True:
            indexes = self.running if wanted is None else wanted
            snaps = await self.snapshots(indexes)
            last.update(snaps)
            if len(snaps) == len(indexes) and predicate(snaps):
                return snaps
            if time.monotonic() >= deadline:
                raise ClusterTimeout(
                    f"waited {timeout:g} s for {what}; last values:\n"
                    + self.describe(last, indexes)
                )
            await asyncio.sleep(POLL_INTERVAL)

    def describe(self, snaps: Mapping[int, Snapshot], nodes: Iterable[int] | None = None) -> str:
        """One line per node: its tips, peers and state (what a timeout shows)."""
        lines = []
        for i in range(self.size) if nodes is None else nodes:
            member = self._member(i)
            snap = snaps.get(i)
            head = f"  node {i} ({member.proc.label}, {member.state.value})"
            if snap is None:
                lines.append(f"{head}: no snapshot")
                continue
            chain = snap["chain"]
            lines.append(
                f"{head}: verified {Tip.of(chain['verified_tip'])}, header "
                f"{Tip.of(chain['header_tip'])}, {len(snap['peers'])} peers"
            )
        return "\n".join(lines)

    async def converged(self, timeout: float = 60.0, *, nodes: Iterable[int] | None = None) -> Tip:
        """Wait until every honest running node (or ``nodes``) has the same verified tip,
        height and hash, and return it.

        The verified tip, not the header tip: a header is only a claim until its body is
        committed, and a hostile peer can hand out headers nobody serves.
        """
        honest = self.honest
        wanted = tuple(i for i in self.running if i in honest) if nodes is None else tuple(nodes)

        def same_verified_tip(snaps: Mapping[int, Snapshot]) -> bool:
            return len({Tip.of(s["chain"]["verified_tip"]) for s in snaps.values()}) == 1

        snaps = await self.wait_for(
            same_verified_tip,
            timeout,
            what=f"nodes {list(wanted)} to share one verified tip",
            nodes=wanted,
        )
        return Tip.of(next(iter(snaps.values()))["chain"]["verified_tip"])

    async def connected(
        self, timeout: float = 30.0, *, nodes: Iterable[int] | None = None
    ) -> dict[int, Snapshot]:
        """Wait until each of ``nodes`` (default: every running node) is connected to every
        other one, and return their snapshots.

        Why: nodes find each other through discovery after they start, so a fault aimed at
        "node 1's connection to node 2" right after :meth:`start` may find no such connection.
        """
        wanted = self.running if nodes is None else tuple(nodes)
        labels = {i: self._member(i).proc.label for i in wanted}

        def full_mesh(snaps: Mapping[int, Snapshot]) -> bool:
            return all(
                {labels[j] for j in wanted if j != i} <= {p["label"] for p in s["peers"]}
                for i, s in snaps.items()
            )

        return await self.wait_for(
            full_mesh, timeout, what=f"nodes {list(wanted)} to connect to each other", nodes=wanted
        )

    # ------------------------------------------------------------------ journals
    async def _pull_journal(self, member: _Member) -> None:
        """Read every row of ``member``'s journal we do not have yet (all pages)."""
        cursor = self._journals[member.index]
        while True:
            doc = await self._get(
                member, f"/api/v1/journal?since={cursor.seq}&limit={JOURNAL_PAGE}"
            )
            boot = doc.get("boot_id")
            if boot != cursor.boot_id:  # a new run (restart): its journal counts from 1 again
                reread = cursor.seq != 0
                cursor.boot_id, cursor.seq = boot, 0
                if reread:
                    continue
            if doc.get("gap"):
                cursor.gaps += max(0, int(doc.get("first_seq", 0)) - cursor.seq - 1)
            rows = doc.get("rows") or []
            for row in rows:
                row["node"] = member.index
                row["boot_id"] = boot
            cursor.rows.extend(rows)
            if rows:
                cursor.seq = int(rows[-1]["seq"])
            if len(rows) < JOURNAL_PAGE:
                return

    async def _pull_journals(self) -> None:
        members = [m for m in self._members if m.state is NodeState.RUNNING]
        await asyncio.gather(*(self._pull_journal(m) for m in members), return_exceptions=True)

    async def journal(self, nodes: Iterable[int] | None = None) -> list[JournalRow]:
        """Every journal row of ``nodes`` (default: all) read so far and now, merged in time
        order; each row carries ``node`` (its index) and ``boot_id`` (which run of it).

        Rows of a killed or restarted node's earlier runs stay in (read before the kill);
        paused nodes are not asked.
        """
        if not self._closed:
            await self._pull_journals()
        wanted = set(range(self.size) if nodes is None else nodes)
        rows = [r for i, c in self._journals.items() if i in wanted for r in c.rows]
        rows.sort(key=lambda r: (r["wall"], r["node"], r["seq"]))
        return rows

    def journal_gaps(self, node: int) -> int:
        """Rows of ``node`` its journal ring overwrote before the cluster read them."""
        return self._journals[node].gaps


def _action_result(status: int, doc: Mapping[str, Any]) -> ActionResult:
    """The API's answer to a peer action as the control model's :class:`ActionResult`."""
    refusal = doc.get("refusal")
    try:
        parsed = None if refusal is None else Refusal(refusal)
    except ValueError:
        parsed = None
    return ActionResult(
        bool(doc.get("ok")) and status == 200,
        str(doc.get("message") or doc.get("error") or f"HTTP {status}"),
        doc.get("fault_id"),
        doc.get("effect"),
        doc.get("reason"),
        parsed,
        doc.get("field"),
    )


def _stopped(pid: int) -> bool | None:
    """Whether ``pid`` is stopped by a signal (state ``T``); None where /proc cannot say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0] == "T"


async def _until_stopped(pid: int, stopped: bool) -> None:
    """Wait until the kernel carried out a SIGSTOP (or SIGCONT): a signal is delivered
    asynchronously, and a test that pauses a node expects it paused when the call returns."""
    deadline = time.monotonic() + SIGNAL_TIMEOUT
    while (state := _stopped(pid)) is not None and state != stopped:
        if time.monotonic() > deadline:
            raise ClusterError(f"pid {pid} still {'running' if stopped else 'stopped'}")
        await asyncio.sleep(0.01)


def _stored_tip(path: Path, at: int | None) -> tuple[Tip | None, str | None, str | None]:
    """What a stopped node's store holds, read-only: its verified tip, the hash at height
    ``at``, or why it could not be read."""
    try:
        store = ChainStore(path, readonly=True)
    except StoreError as exc:
        return None, None, str(exc)
    try:
        height = store.verified_tip()
        hash_ = None if height is None else store.hash_at(height)
        kept = None if at is None else store.hash_at(at)
        if height is None or hash_ is None:
            return None, None, "the store has no verified tip"
        return Tip(height, hash_.hex()), None if kept is None else kept.hex(), None
    except Exception as exc:  # sqlite3 errors: report, the invariant judges
        return None, None, f"{type(exc).__name__}: {exc}"
    finally:
        store.close()
