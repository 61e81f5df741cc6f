"""The network ``zakura console`` runs behind its app: a local testnet and the operator's node."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from node_core.observe.diagnostics import DiagnosticThresholds
from zakura.node_cmd import format_start_line
from zakura.testnet import HOST, Testnet

if TYPE_CHECKING:
    from node_core.node import Node
    from node_core.ssh import SshConfig
    from node_core.transport.service import Service

log = logging.getLogger(__name__)

#: Testnet nodes keep this many connections among themselves (the operator node dials them all).
TESTNET_TARGET_PEERS = 4


class LocalNetwork:
    """The local testnet (child processes) and the operator's node, on one event loop.

    The operator node runs with fault injection enabled (the console's ``d`` and ``p``),
    bootstraps from testnet node 0 and aims for one connection per testnet node. It always
    starts at genesis: with a chain on node 0 it has headers to sync, which is what the
    Overview's header-sync panel is there to show.

    With ``hostile`` the testnet gets that many nodes *more*, the last ones, running
    ``hostile_mode`` (:class:`~zakura.testnet.Testnet` keeps node 0 honest); the operator node
    aims for them too, so it meets the attack and records it (the Misbehavior view), which an
    all-honest testnet never shows.

    Args:
        peers: Number of honest testnet node processes.
        root: Data root: the testnet in ``root/testnet``, the operator node in ``root/node``.
        extra_services: Extra services for the operator node (benchmarks add a stream).
        log_level: ``--log-level`` of the testnet children (they log to their own files).
        blocks: Testnet node 0 pre-generates the seeded chain up to this height (0: none).
            The testnet is ready only after that (:data:`~zakura.testnet.PREGEN_SECS_PER_BLOCK`
            stretches node 0's ready timeout), but the app is already on screen by then.
        mine_interval: Testnet node 0 mines a block every this many seconds (None: never).
        hostile: Hostile testnet nodes added after the ``peers`` honest ones.
        hostile_mode: What they run (one of
            :data:`~node_core.block_sync.hostile.ALL_HOSTILE_MODES`); required with ``hostile``.
        api: Serve the operator node's control API on this address (``--api``); None: no API.
        ssh: Serve the operator node's console and script commands over SSH (``--ssh``).
        diagnostics: The operator node's diagnostic thresholds (``--diag``); None: defaults.

    Raises:
        ValueError: Inconsistent hostile settings
            (:class:`~zakura.testnet.HostileSettingsError` names the flag).
    """

    def __init__(
        self,
        peers: int,
        root: Path,
        *,
        extra_services: Sequence[Service] = (),
        log_level: str = "info",
        blocks: int = 0,
        mine_interval: float | None = None,
        hostile: int = 0,
        hostile_mode: str | None = None,
        api: tuple[str, int] | None = None,
        ssh: SshConfig | None = None,
        diagnostics: DiagnosticThresholds | None = None,
    ) -> None:
        self.peers = peers
        self.hostile = hostile
        self.root = root
        self.extra_services = tuple(extra_services)
        self.api = api
        self.ssh = ssh
        self.diagnostics = diagnostics or DiagnosticThresholds()
        self.testnet = Testnet(
            peers + hostile,
            data_dir=root / "testnet",
            target_peers=TESTNET_TARGET_PEERS,
            log_level=log_level,
            blocks=blocks,
            mine_interval=mine_interval,
            # Each testnet node serves its API on a free loopback port with an operator
            # token, so the console's Fleet view (0) can list and open every one of them.
            api_base_port=0,
            hostile=hostile,
            hostile_mode=hostile_mode,
        )
        self.node: Node | None = None

    async def start(self) -> Node:
        """Start the testnet, then the operator node; on failure stop what was started.

        Raises:
            zakura.testnet.TestnetError: A testnet node did not come up.
            OSError, node_core.identity.IdentityError: The operator node could not start.
            node_core.api.ApiStartError: Its API refused the address (no token for it).
        """
        from node_core.node import Node, NodeConfig

        try:
            await self.testnet.start()
            log.info(
                "testnet up: %s",
                ", ".join(f"{n.label} {n.listen} pid {n.pid}" for n in self.testnet.nodes),
            )
            node = Node(
                NodeConfig(
                    data_dir=self.root / "node",
                    listen_host=HOST,
                    listen_port=0,
                    bootstrap=((HOST, self.testnet.nodes[0].listen_port),),
                    allow_faults=True,
                    target_peers=self.peers + self.hostile,
                    api=self.api,
                    ssh=self.ssh,
                    diagnostics=self.diagnostics,
                ),
                extra_services=self.extra_services,
            )
            self.node = node
            await node.start()
        except BaseException:
            await self.stop()
            raise
        # The line `zakura node` prints when it is up (the console's terminal is the app's).
        log.info(
            "your node: %s",
            format_start_line(node.label, node.listen, node.api_address, node.ssh_address),
        )
        return node

    async def stop(self) -> None:
        """Stop the operator node, then every testnet process; idempotent, never raises."""
        try:
            if self.node is not None:
                await self.node.stop()
        except Exception:
            log.exception("stopping the operator node failed")
        finally:
            await self.testnet.stop()

    @property
    def child_pids(self) -> list[int]:
        """Pids of the testnet processes started so far (for the exit report and tests)."""
        return [n.pid for n in self.testnet.nodes]
