"""A node: identity, transport, services, dialer, observability and faults, composed.

``Node.start()`` brings everything up in dependency order and ``Node.stop()`` takes it down in
reverse; both are safe to call once each. Everything an operator or a test looks at goes
through :func:`node_core.observe.snapshot.build_snapshot` and the journal.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from node_core.block_sync.core import BlockSyncConfig, BlockSyncCore, BlockSyncMetrics
from node_core.block_sync.hostile import (
    DEFAULT_HOSTILE_RATE,
    BlockHostileMode,
    HostileBlockSync,
    parse_any_mode,
)
from node_core.block_sync.service import BlockSyncService
from node_core.chain.chainstate import ChainState
from node_core.chain.genesis import genesis_hash
from node_core.chain.interval_miner import Miner
from node_core.discovery.book import AddressBook
from node_core.discovery.dialer import Dialer
from node_core.discovery.records import make_record
from node_core.discovery.service import SERVICE_ID, DiscoveryConfig, DiscoveryService
from node_core.faults import FaultInjector
from node_core.header_sync.entries import HeaderSyncConfig
from node_core.header_sync.hostile import DEFAULT_HOSTILE_DELAY, HostileHeaderSync
from node_core.header_sync.observe import HeaderSyncMetrics, HeaderSyncTrace
from node_core.header_sync.reactor import HeaderSyncReactor
from node_core.header_sync.service import HeaderSyncService
from node_core.identity import Identity, load_or_create
from node_core.observe.diagnostics import DiagnosticThresholds
from node_core.observe.diagnostics_task import DiagnosticsMonitor, node_facts
from node_core.observe.gcpause import gc_paused
from node_core.observe.journal import Journal
from node_core.observe.looplag import LoopLagMonitor
from node_core.observe.metrics import NodeMetrics
from node_core.observe.misbehavior import MisbehaviorLog
from node_core.observe.trace import TraceWriter
from node_core.protocol import discovery as dwire
from node_core.protocol.limits import PROTOCOL_VERSION, NetworkId
from node_core.transport.config import TransportConfig
from node_core.transport.endpoint import Transport
from node_core.transport.service import Service, ServiceRegistry

if TYPE_CHECKING:
    from node_core.observe.schema import Snapshot
    from node_core.ssh import SshConfig
    from node_core.transport.connection import Connection

log = logging.getLogger(__name__)


def default_chain_id(network_id: int) -> bytes:
    """The chain id of a network: its genesis hash (peers on another chain are refused)."""
    return genesis_hash(NetworkId(network_id))


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything needed to run one node. Defaults make a loopback regtest node."""

    data_dir: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    bootstrap: tuple[tuple[str, int], ...] = ()
    api: tuple[str, int] | None = None
    allow_faults: bool = False
    trace_dir: Path | None = None
    target_peers: int = 4
    network_id: int = int(NetworkId.REGTEST)
    chain_id: bytes | None = None
    transport: TransportConfig = field(default_factory=TransportConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    dial_interval: float = 1.0
    advertise_host: str | None = None
    #: Pre-generate the seeded chain up to this height at start, before listening (a miner).
    blocks: int = 0
    #: Seed of the pre-generated chain; nodes with the same seed build the same chain.
    chain_seed: int = 1
    header_sync: HeaderSyncConfig = field(default_factory=HeaderSyncConfig)
    block_sync: BlockSyncConfig = field(default_factory=BlockSyncConfig)
    #: Run block-sync (stream 6). False: a headers-only node (``--headers-only``).
    sync_blocks: bool = True
    #: Mine a block on our tip every this many seconds and announce it (None: never).
    mine_interval: float | None = None
    #: Run a hostile header-sync or block-sync instead of the honest one (testnets only; see
    #: :mod:`node_core.header_sync.hostile` and :mod:`node_core.block_sync.hostile` for the
    #: modes). None: honest.
    hostile_mode: str | None = None
    #: ``slow-responder``: seconds each hostile answer is held back.
    hostile_delay: float = DEFAULT_HOSTILE_DELAY
    #: ``slow-blocks``: bytes per second the hostile block server is throttled to.
    hostile_rate_bytes: int = DEFAULT_HOSTILE_RATE
    #: Serve the console and script commands over SSH (``--ssh``); it needs the API, so a
    #: node with SSH and no ``api`` serves one on 127.0.0.1 with a free port.
    ssh: SshConfig | None = None
    #: When each diagnostic fires (``--diag KEY=VALUE``; node_core/observe/diagnostics.py).
    diagnostics: DiagnosticThresholds = field(default_factory=DiagnosticThresholds)

    def __post_init__(self) -> None:
        if self.hostile_mode is not None:
            parse_any_mode(self.hostile_mode)  # raises, naming the valid modes
        if not self.hostile_delay >= 0:
            raise ValueError(f"hostile_delay must be >= 0 seconds, got {self.hostile_delay}")
        if self.hostile_rate_bytes <= 0:
            raise ValueError(
                f"hostile_rate_bytes must be > 0 bytes/s, got {self.hostile_rate_bytes}"
            )

    @property
    def effective_chain_id(self) -> bytes:
        return self.chain_id if self.chain_id is not None else default_chain_id(self.network_id)


class Node:
    """One running node. Create, ``await start()``, use, ``await stop()``."""

    def __init__(self, config: NodeConfig, *, extra_services: Sequence[Service] = ()) -> None:
        self.config = config
        self.identity: Identity = load_or_create(config.data_dir)
        self.label = self.identity.label
        self.node_id = self.identity.node_id
        #: This run's id, random, in every snapshot: a client that sees another one knows the
        #: node restarted and its journal (born beside it, here) numbers rows from 1 again. A
        #: Node starts at most once, so one object is one run; a restart is a new Node.
        self.boot_id = os.urandom(8).hex()
        self.journal = Journal(self.label)
        self.metrics = NodeMetrics()
        self.misbehavior = MisbehaviorLog(self.journal, self.metrics)
        self.trace: TraceWriter | None = None
        if config.trace_dir is not None:
            self.trace = TraceWriter(config.trace_dir, self.label)
            self.trace.on_drop = lambda _total: self.metrics.trace_rows_dropped.inc()
            self.trace.attach(self.journal)
        self.chain_id = config.effective_chain_id
        self.chain = ChainState(config.data_dir, config.network_id, self.journal)
        self.book = AddressBook(self_id=self.node_id)
        self._record_sequence = int(time.time())
        self._self_record: dwire.SignedNodeRecord | None = None
        self.discovery = DiscoveryService(
            node_id=self.node_id,
            network_id=config.network_id,
            chain_id=self.chain_id,
            book=self.book,
            journal=self.journal,
            misbehavior=self.misbehavior,
            self_record=self.self_record,
            summaries=self._summaries,
            config=config.discovery,
        )
        self.header_sync_metrics = HeaderSyncMetrics(self.metrics)
        self.header_sync = HeaderSyncReactor(
            chain=self.chain,
            journal=self.journal,
            misbehavior=self.misbehavior,
            metrics=self.header_sync_metrics,
            trace=HeaderSyncTrace(self.trace),
            config=config.header_sync,
        )
        self.header_sync_service = HeaderSyncService(self.header_sync, self.header_sync_metrics)
        self.block_sync = BlockSyncCore(
            chain=self.chain,
            header_sync=self.header_sync,
            journal=self.journal,
            misbehavior=self.misbehavior,
            metrics=BlockSyncMetrics(self.metrics),
            trace=self.trace,
            config=config.block_sync,
        )
        self.header_sync.on_reorg = self.block_sync.on_header_reorg
        self.header_sync.tip_listeners.append(self.block_sync.on_header_tip)
        self.block_sync_service = BlockSyncService(self.block_sync)
        self.miner: Miner | None = None
        if config.hostile_mode is not None:
            # On kind 5 or 6, so it replaces that honest service only: a hostile block server
            # keeps an honest header sync (its peers must see a normal chain to ask it).
            hostile: Service
            if isinstance(parse_any_mode(config.hostile_mode), BlockHostileMode):
                hostile = HostileBlockSync(
                    config.hostile_mode, self.chain, rate=config.hostile_rate_bytes
                )
            else:
                hostile = HostileHeaderSync(
                    config.hostile_mode, self.chain, delay=config.hostile_delay
                )
            extra_services = [hostile, *extra_services]
        # An extra service on a built-in's stream kind replaces that built-in: tests put
        # stand-ins on kind 5 to probe the transport without header-sync's own behaviour.
        taken = {svc.kind for svc in extra_services}
        builtins: list[Service] = [self.discovery, self.header_sync_service]
        if config.sync_blocks:
            builtins.append(self.block_sync_service)
        self.registry = ServiceRegistry(
            [*(svc for svc in builtins if svc.kind not in taken), *extra_services]
        )
        transport_config = replace(
            config.transport, network_id=config.network_id, chain_id=self.chain_id
        )
        self.transport = Transport(
            self.identity, transport_config, self.registry, self.journal, self.metrics
        )
        self.dialer = Dialer(
            self.transport,
            self.book,
            self.journal,
            self.metrics,
            target=config.target_peers,
            bootstrap=list(config.bootstrap),
            interval=config.dial_interval,
        )
        # A healed partition retries the dials it refused now, not after their backoff.
        self.transport.links.on_heal.append(self.dialer.links_healed)
        self.loop_lag = LoopLagMonitor()
        self.loop_lag.on_sample = self.metrics.record_loop_lag
        self.faults = FaultInjector(self, enabled=config.allow_faults)
        self.diagnostics = DiagnosticsMonitor(
            partial(node_facts, self), self.journal, self.metrics, config.diagnostics
        )
        self.api: Any = None
        self.ssh: Any = None
        self.started_mono = time.monotonic()
        self.started_wall = time.time()
        self._started = False
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._started:
            raise RuntimeError("node already started")
        self._started = True
        await self.chain.open()
        if self.config.blocks > 0:
            await self.chain.pregenerate(self.config.blocks, self.config.chain_seed)
        await self.header_sync.start()
        await self.block_sync.start()
        if self.config.mine_interval is not None:
            self.miner = Miner(self, self.config.mine_interval)
            self.miner.start()
        host, port = await self.transport.listen(self.config.listen_host, self.config.listen_port)
        self.started_mono = time.monotonic()
        self.started_wall = time.time()
        self.loop_lag.start()
        self.diagnostics.start()
        self.dialer.start()
        api = self.config.api
        if api is None and self.config.ssh is not None:
            api = ("127.0.0.1", 0)  # SSH consoles attach through the API, on loopback
        if api is not None:
            from node_core.api import ApiServer

            self.api = ApiServer(self)
            await self.api.start(*api)
        if self.config.ssh is not None:
            from node_core.ssh import SshServer

            self.ssh = SshServer(self, self.api, self.config.ssh, self.config.data_dir)
            await self.ssh.start()
        self.journal.emit(
            "node",
            "started",
            listen=f"{host}:{port}",
            api=self.api_address,
            allow_faults=self.config.allow_faults,
        )
        log.info("node %s listening on %s:%d", self.label, host, port)

    async def stop(self) -> None:
        if self._stopped or not self._started:
            return
        self._stopped = True
        self.journal.emit("node", "stopping")
        if self.ssh is not None:
            with contextlib.suppress(Exception):
                await self.ssh.stop()
        if self.api is not None:
            with contextlib.suppress(Exception):
                await self.api.stop()
        if self.miner is not None:
            await self.miner.stop()
        await self.dialer.stop()
        await self.transport.close()
        await self.loop_lag.stop()
        await self.diagnostics.stop()
        await self.block_sync.stop()
        await self.header_sync.stop()
        await self.chain.close()
        if self.trace is not None:
            self.trace.close()

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ facts
    @property
    def listen(self) -> str:
        return f"{self.transport.listen_host}:{self.transport.listen_port}"

    @property
    def api_address(self) -> str | None:
        return None if self.api is None else str(self.api.address)

    @property
    def ssh_address(self) -> str | None:
        return None if self.ssh is None else str(self.ssh.address)

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_mono

    def connections(self) -> list[Connection]:
        """The live connections, by connection id (what snapshots and the API list)."""
        return sorted(self.transport.peers.connections(), key=lambda c: c.peer.conn_id)

    def connection_for_label(self, label: str) -> Connection | None:
        """The live connection to the peer labelled ``label``, if any (faults name peers so)."""
        return self.transport.connection_for_label(label)

    def advertised_host(self) -> str:
        host = self.config.advertise_host or self.transport.listen_host or "127.0.0.1"
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_unspecified:
                return "127.0.0.1"
        return host

    def self_record(self) -> dwire.SignedNodeRecord:
        """Our signed record; re-signed when it would expire within the hour."""
        rec = self._self_record
        if rec is None or rec.record.expires_at_unix_secs - time.time() < 3600:
            self._record_sequence += 1
            addr = dwire.SocketAddr(
                ipaddress.ip_address(self.advertised_host()), self.transport.listen_port
            )
            rec = make_record(
                self.identity,
                addrs=[addr],
                services=[SERVICE_ID],
                network_id=self.config.network_id,
                chain_id=self.chain_id,
                protocol_min=PROTOCOL_VERSION,
                protocol_max=PROTOCOL_VERSION,
                sequence=self._record_sequence,
                now_unix=time.time(),
            )
            self._self_record = rec
        return rec

    def _summaries(self) -> list[dwire.ServiceSummary]:
        free = max(0, self.transport.config.max_connections - len(self.transport.peers))
        return [dwire.ServiceSummary(SERVICE_ID, min(free, 0xFFFF), min(free, 0xFFFF), b"")]

    def _snapshot_doc(self) -> Snapshot:
        from node_core.observe.snapshot import build_snapshot

        with gc_paused():
            return build_snapshot(self)

    def snapshot(self) -> dict[str, Any]:
        """The snapshot document (:class:`node_core.observe.schema.Snapshot`), as the plain
        dict the console's client protocol still speaks."""
        return cast("dict[str, Any]", self._snapshot_doc())
