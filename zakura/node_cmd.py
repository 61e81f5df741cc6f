"""``zakura node``: one headless node until SIGINT or SIGTERM.

``zakura node`` prints exactly one line on stdout once it is listening (see
:func:`format_start_line`); :mod:`zakura.testnet` waits for that line to know a child is
ready and to learn the ports it actually bound, so its shape is a contract.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.record_flag import add_record, open_record, report, start_recorder
from console.usage import UsageError
from node_core.block_sync.hostile import BLOCK_HOSTILE_MODES, DEFAULT_HOSTILE_RATE
from node_core.header_sync.hostile import DEFAULT_HOSTILE_DELAY
from node_core.observe.gcpause import freeze_startup_heap
from zakura.api_flag import add_api, check_api, start_usage_error
from zakura.args import (
    IDLE_TIMEOUT_DEFAULT,
    IDLE_TIMEOUT_MAX,
    IDLE_TIMEOUT_MIN,
    MINE_INTERVAL_HELP,
    NETWORKS,
    add_hostile_mode,
    add_hostile_rate,
    add_log_level,
    check_data_dir,
    check_hostile_delay,
    check_hostile_rate,
    count,
    describe,
    dial_addr,
    hostile_modes_help,
    idle_seconds,
    listen_addr,
    seconds,
)
from zakura.diag_args import DIAG_HELP, add_diag_flag, thresholds_from_args
from zakura.process import finish_leftover_tasks, setup_logging
from zakura.ssh_args import SSH_HELP, add_ssh_flags, ssh_config_from_args

if TYPE_CHECKING:
    from node_core.node import NodeConfig
    from node_core.observe.record_writer import Recorder
    from node_core.transport.config import TransportConfig

log = logging.getLogger(__name__)

#: Upper bound of the admission-cap flags: far above what one process holds, low enough that
#: a typo (an extra zero or two) is refused instead of disarming the cap.
MAX_CAP = 100_000
#: ``--loop`` choices: asyncio's own loop, or uvloop (the optional ``fast`` extra).
LOOPS = ("asyncio", "uvloop")

#: ``--record``: seconds between snapshots (the console's default refresh).
RECORD_INTERVAL = 0.25

START_LINE_RE = re.compile(
    r"^zakura node ready: label=(\S+) listen=(\S+) api=(\S+)(?: ssh=(\S+))?\s*$"
)


@dataclass(frozen=True, slots=True)
class StartLine:
    """What a ``zakura node`` child announced when it became ready."""

    label: str
    listen: str
    api: str | None
    ssh: str | None = None


def format_start_line(label: str, listen: str, api: str | None, ssh: str | None = None) -> str:
    """The one line ``zakura node`` prints when it is listening (parsed by the testnet)."""
    line = f"zakura node ready: label={label} listen={listen} api={api or 'off'}"
    return line if ssh is None else f"{line} ssh={ssh}"


def parse_start_line(line: str) -> StartLine | None:
    """Inverse of :func:`format_start_line`; ``None`` for any other line."""
    m = START_LINE_RE.match(line)
    if m is None:
        return None
    api = None if m.group(3) == "off" else m.group(3)
    return StartLine(label=m.group(1), listen=m.group(2), api=api, ssh=m.group(4))


HOSTILE_HELP = hostile_modes_help(
    "hostile modes (--hostile-mode MODE; testnets only - the node attacks its peers' header\n"
    "sync (the first eight) or block sync (the last four) instead of syncing that way; give it a\n"
    "chain with --blocks so peers behind it ask it for work):"
)

HELP = """\
Run one headless node until SIGINT or SIGTERM, then stop it cleanly (exit 0).

The node listens for peers on --listen, keeps --target-peers connections (dialing addresses
learned through discovery), and keeps redialing every --bootstrap peer while it is down. Its
Ed25519 identity lives in --data-dir/node_key (created 0600 on first start; a key readable by
others is refused); its chain in --data-dir/chain.sqlite3, starting at the --network's genesis
(resumed on restart). Once listening it prints one line on stdout:

  zakura node ready: label=peer:<16 hex> listen=HOST:PORT api=HOST:PORT|off [ssh=HOST:PORT]

The API (--api) serves /healthz and /metrics to anyone and every /api/v1 route only with a
bearer token from `zakura token create` (see `zakura token --help`); bound to an address that
is not loopback, it refuses to start until the data dir has a token. With --ssh and no --api
the API is served on 127.0.0.1 with a free port, for the SSH consoles.

Input errors (bad address, port in use, unusable data dir or key, a non-loopback --api with
no token) print one line on stderr naming the flag, and exit with code 2."""

EXAMPLE = f"""\
{HOSTILE_HELP}

{SSH_HELP}

{DIAG_HELP}

example:
  zakura node --listen 127.0.0.1:9000 --data-dir ./node-a --api 9100
  zakura node --listen 127.0.0.1:9001 --data-dir ./node-b --bootstrap 127.0.0.1:9000
  zakura node --listen 127.0.0.1:9002 --data-dir ./node-c --bootstrap 127.0.0.1:9000 \\
      --blocks 500 --hostile-mode slow-responder --hostile-delay 40
  zakura token create --data-dir ./node-a --name me --role operator | tail -n 1 > me.token
  curl -s -H "Authorization: Bearer $(cat me.token)" 127.0.0.1:9100/api/v1/snapshot
  echo "zakura-role=operator $(cat ~/.ssh/id_ed25519.pub)" > ./node-a/ssh_keys
  zakura node --listen 127.0.0.1:9000 --data-dir ./node-a --ssh 2222 \
      --ssh-authorized-keys ./node-a/ssh_keys
  ssh -p 2222 127.0.0.1            # the console;  ssh -p 2222 127.0.0.1 peers  # a command"""


def add_parser(sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``node`` to the ``zakura`` subcommands ``sub``."""
    node = sub.add_parser(
        "node",
        help="run one headless node",
        description=HELP,
        epilog=EXAMPLE,
        formatter_class=formatter_class,
    )
    node.add_argument(
        "--listen",
        type=listen_addr,
        required=True,
        metavar="HOST:PORT",
        help="address to accept peers on; port 0 picks a free port (required)",
    )
    node.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory for the identity key and node state; created if missing (required)",
    )
    node.add_argument(
        "--bootstrap",
        type=dial_addr,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="peer to dial and keep redialing; repeat for several (default: none)",
    )
    add_api(node, "DIR")
    node.add_argument(
        "--allow-faults",
        action="store_true",
        help="accept fault injection (disconnect, panic a routine ...) (default: refused)",
    )
    node.add_argument(
        "--trace-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the journal as JSONL trace tables into DIR (default: off)",
    )
    node.add_argument(
        "--target-peers",
        type=count(0),
        default=4,
        metavar="N",
        help="connections to keep, inbound ones included (default: 4)",
    )
    node.add_argument(
        "--network",
        choices=sorted(NETWORKS),
        default="regtest",
        help="network id sent in the handshake; peers must match, and so must the chain id, "
        "which is this network's genesis hash (default: regtest)",
    )
    node.add_argument(
        "--blocks",
        type=count(0),
        default=0,
        metavar="N",
        help="before listening, pre-generate the seeded chain up to height N in "
        "--data-dir/chain.sqlite3 (a miner node starts with its chain); a restart keeps what is "
        "stored and adds only what is missing (default: 0, start from genesis)",
    )
    node.add_argument(
        "--seed",
        type=count(0),
        default=1,
        metavar="S",
        help="seed of the --blocks chain: the same seed gives the same chain, byte for byte "
        "(default: 1)",
    )
    node.add_argument(
        "--mine-interval",
        type=seconds,
        default=None,
        metavar="S",
        help=f"{MINE_INTERVAL_HELP} (S must be positive, e.g. 5)",
    )
    node.add_argument(
        "--headers-only",
        action="store_true",
        help="sync and serve headers but never download block bodies (no block-sync stream); "
        "bodies this node already has stay in its store (default: off, bodies are synced)",
    )
    node.add_argument(
        "--idle-timeout",
        type=idle_seconds,
        default=IDLE_TIMEOUT_DEFAULT,
        metavar="SECONDS",
        help="close a connection that received no record (data or keepalive PING) for this "
        "many seconds; offered in the handshake, the smaller of both sides' values applies, "
        "and keepalive PINGs go out every 10 s, or every third of the timeout when that is "
        f"shorter; {IDLE_TIMEOUT_MIN:g} to {IDLE_TIMEOUT_MAX:g} "
        f"(default: {IDLE_TIMEOUT_DEFAULT:g})",
    )
    add_admission_flags(node)
    node.add_argument(
        "--loop",
        choices=LOOPS,
        default="asyncio",
        help="the event loop the node runs on: asyncio's own, or uvloop (an optional extra: "
        "pip install 'zakura-console[fast]'; refused when it is not installed) "
        "(default: asyncio)",
    )
    add_hostile_mode(
        node, "run a hostile header or block sync that attacks peers in MODE (listed below)"
    )
    node.add_argument(
        "--hostile-delay",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="--hostile-mode slow-responder only: hold each answer back this long; past the "
        "peers' 30 s request timeout they time out, at or under it they are served "
        "(default: 35)",
    )
    add_hostile_rate(node)
    add_ssh_flags(node)
    add_diag_flag(node)
    add_record(node, f"a snapshot every {RECORD_INTERVAL:g} s")
    add_log_level(node, "info")


def add_admission_flags(node: argparse.ArgumentParser) -> None:
    """The transport's admission caps. The defaults suit a small testnet and stay safe; a
    node meant to hold many peers (``bench/scale_peers.py`` holds 1,000) raises them."""
    from node_core.protocol import limits as L

    caps = (
        ("--max-connections", L.DEFAULT_MAX_CONNECTIONS,
         "refuse an inbound peer once N connections are up or handshaking"),
        ("--max-connections-per-ip", L.DEFAULT_MAX_CONNECTIONS_PER_IP,
         "refuse a new peer from an IP address that already has N connections"),
        ("--max-pending-handshakes", L.DEFAULT_MAX_PENDING_HANDSHAKES,
         "refuse a connection while N handshakes are in progress"),
    )  # fmt: skip
    for flag, default, what in caps:
        node.add_argument(
            flag,
            type=count(1, MAX_CAP),
            default=default,
            metavar="N",
            help=f"{what} (default: {default})",
        )


def transport_config(
    idle_timeout: float,
    *,
    max_connections: int | None = None,
    max_connections_per_ip: int | None = None,
    max_pending_handshakes: int | None = None,
) -> TransportConfig:
    """The transport settings of a node whose connections idle out after ``idle_timeout`` s,
    with the admission caps given (``None``: the default).

    The idle timeout is a handshake limit (offered in the Hello, the smaller of both sides'
    applies), so it goes into the offered limits; the keepalive interval must stay below it
    (``TransportConfig`` checks), so it is the default 10 s or a third of the timeout, the
    interval the connection would use anyway (docs/PROTOCOL.md section 5.7).
    """
    from dataclasses import replace

    from node_core.protocol.handshake import DEFAULT_LIMITS
    from node_core.protocol.limits import DEFAULT_KEEPALIVE_SECS
    from node_core.transport.config import TransportConfig

    default = TransportConfig()
    return TransportConfig(
        limits=replace(DEFAULT_LIMITS, idle_timeout_millis=round(idle_timeout * 1000)),
        keepalive_interval=min(DEFAULT_KEEPALIVE_SECS, idle_timeout / 3),
        max_connections=max_connections or default.max_connections,
        max_connections_per_ip=max_connections_per_ip or default.max_connections_per_ip,
        max_pending_handshakes=max_pending_handshakes or default.max_pending_handshakes,
    )


def node_config_from_args(args: argparse.Namespace) -> NodeConfig:
    """Build the :class:`NodeConfig` for ``zakura node`` (imported late to keep --help quick)."""
    from node_core.node import NodeConfig

    host, port = args.listen
    return NodeConfig(
        data_dir=args.data_dir,
        listen_host=host,
        listen_port=port,
        bootstrap=tuple(args.bootstrap),
        api=args.api,
        allow_faults=args.allow_faults,
        trace_dir=args.trace_dir,
        target_peers=args.target_peers,
        network_id=int(NETWORKS[args.network]),
        blocks=args.blocks,
        chain_seed=args.seed,
        mine_interval=args.mine_interval,
        sync_blocks=not args.headers_only,
        hostile_mode=args.hostile_mode,
        hostile_delay=DEFAULT_HOSTILE_DELAY if args.hostile_delay is None else args.hostile_delay,
        hostile_rate_bytes=DEFAULT_HOSTILE_RATE if args.hostile_rate is None else args.hostile_rate,
        ssh=ssh_config_from_args(args),
        diagnostics=thresholds_from_args(args),
        transport=transport_config(
            args.idle_timeout,
            max_connections=args.max_connections,
            max_connections_per_ip=args.max_connections_per_ip,
            max_pending_handshakes=args.max_pending_handshakes,
        ),
    )


async def run_node(args: argparse.Namespace) -> int:
    """Start the node, print the start line, wait for SIGINT/SIGTERM, stop cleanly."""
    from node_core.api import ApiStartError
    from node_core.chain.chainstate import ChainStateError
    from node_core.chain.store import StoreError
    from node_core.identity import IdentityError
    from node_core.node import Node
    from node_core.ssh import SshStartError

    check_hostile_delay(args)
    check_hostile_rate(args)
    check_data_dir(args.data_dir)
    if args.api is not None:
        check_api(args.api, args.data_dir)  # before a long --blocks pre-generation, not after
    try:
        node = Node(node_config_from_args(args))
    except IdentityError as exc:
        raise UsageError("--data-dir", str(exc)) from None
    except OSError as exc:
        # The identity loaded, so the data dir is fine: the trace writer could not start.
        raise UsageError("--trace-dir", f"{args.trace_dir}: {describe(exc)}") from None

    writer = open_record(args)  # before the node starts: a bad --record is a usage error
    recorder: Recorder | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await node.start()
        except (ChainStateError, StoreError) as exc:
            raise UsageError("--data-dir", str(exc)) from None
        except SshStartError as exc:
            raise UsageError(exc.flag, exc.problem) from None
        except (ApiStartError, OSError) as exc:
            err = start_usage_error(exc, node, api=args.api, listen=args.listen)
            if err is None:
                raise
            raise err from None
        freeze_startup_heap()
        if writer is not None:
            from node_core.observe.record_writer import NodeSource

            recorder = start_recorder(NodeSource(node), writer, RECORD_INTERVAL)
        print(
            format_start_line(node.label, node.listen, node.api_address, node.ssh_address),
            flush=True,
        )
        if args.hostile_mode is not None:
            log.warning(
                "node %s runs a HOSTILE %s (%s): it attacks its peers instead of syncing that way",
                node.label,
                "block sync" if args.hostile_mode in BLOCK_HOSTILE_MODES else "header sync",
                args.hostile_mode,
            )
        await stop.wait()
        log.info("signal received, stopping node %s", node.label)
    finally:
        if recorder is not None:
            report("zakura node", await recorder.stop(), recorder.writer.error)
        elif writer is not None:  # the node never started: keep what the file holds
            writer.close()
        await node.stop()
        await finish_leftover_tasks()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The ``--loop`` choice as an event-loop factory (``None``: asyncio's default loop).

    Raises:
        UsageError: uvloop was asked for and is not installed.
    """
    if name == "asyncio":
        return None
    try:  # by name: the extra is optional, so neither the import nor mypy may require it
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        raise UsageError(
            "--loop", "uvloop is not installed (pip install 'zakura-console[fast]')"
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(args: argparse.Namespace) -> int:
    """``zakura node``: logs on stderr, the node until a signal. Raises :class:`UsageError`."""
    factory = loop_factory(args.loop)
    setup_logging(args.log_level)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run_node(args))
