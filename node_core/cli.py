"""The ``zakura`` command line: ``console`` (the default), ``node``, ``testnet`` and ``demo``.

Operators meet the node here first, so every mistake they can make on the command line ends in
one line on stderr that names the flag and the problem, and exit code 2 - never a traceback.
Runtime failures after start-up are the node's business and are logged normally.

``zakura node`` prints exactly one line on stdout once it is listening (see
:func:`format_start_line`); :mod:`node_core.testnet` waits for that line to know a child is
ready and to learn the ports it actually bound, so its shape is a contract.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from node_core.block_sync.hostile import (
    ALL_HOSTILE_MODES,
    ALL_MODE_HELP,
    BLOCK_HOSTILE_MODES,
    DEFAULT_HOSTILE_RATE,
)
from node_core.header_sync.hostile import DEFAULT_HOSTILE_DELAY
from node_core.protocol.limits import NetworkId

if TYPE_CHECKING:
    from node_core.node import NodeConfig

log = logging.getLogger(__name__)

EXIT_USAGE = 2
#: How long a stopped node's leftover tasks get to honour cancellation before we exit anyway.
LEFTOVER_TASK_SECS = 5.0
LOG_LEVELS = ("debug", "info", "warning", "error")
NETWORKS = {
    "regtest": NetworkId.REGTEST,
    "testnet": NetworkId.TESTNET,
    "mainnet": NetworkId.MAINNET,
}
#: The embedded testnet of ``zakura console`` and ``zakura demo``: node 0 pre-generates this many
#: blocks (about 1.3 s) and mines every this many seconds, so header sync shows out of the box.
DEMO_BLOCKS = 5000
DEMO_MINE_INTERVAL = 5.0
START_LINE_RE = re.compile(r"^zakura node ready: label=(\S+) listen=(\S+) api=(\S+)\s*$")


class UsageError(Exception):
    """Bad operator input discovered after parsing (a port in use, an exposed key ...).

    Args:
        flag: The command-line flag the operator has to change.
        problem: What is wrong, in the operator's terms.
    """

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(f"{flag}: {problem}")
        self.flag = flag
        self.problem = problem


@dataclass(frozen=True, slots=True)
class StartLine:
    """What a ``zakura node`` child announced when it became ready."""

    label: str
    listen: str
    api: str | None


def format_start_line(label: str, listen: str, api: str | None) -> str:
    """The one line ``zakura node`` prints when it is listening (parsed by the testnet)."""
    return f"zakura node ready: label={label} listen={listen} api={api or 'off'}"


def parse_start_line(line: str) -> StartLine | None:
    """Inverse of :func:`format_start_line`; ``None`` for any other line."""
    m = START_LINE_RE.match(line)
    if m is None:
        return None
    api = None if m.group(3) == "off" else m.group(3)
    return StartLine(label=m.group(1), listen=m.group(2), api=api)


# ---------------------------------------------------------------------- argument types
def parse_hostport(
    text: str, *, default_host: str | None = None, min_port: int = 0
) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (IPv6 as ``[::1]:PORT``); a bare ``PORT`` only with ``default_host``.

    Raises:
        argparse.ArgumentTypeError: With a message that says what shape was expected.
    """
    text = text.strip()
    if default_host is not None and text.isdigit():
        host, port_text = default_host, text
    elif text.startswith("["):
        inner, sep, port_text = text[1:].partition("]:")
        if not sep or not inner:
            raise argparse.ArgumentTypeError(f"expected [IPV6]:PORT, got {text!r}")
        host = inner
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            shape = "HOST:PORT or PORT" if default_host is not None else "HOST:PORT"
            raise argparse.ArgumentTypeError(
                f"expected {shape} (e.g. 127.0.0.1:9000), got {text!r}"
            )
        if not host:
            raise argparse.ArgumentTypeError(f"missing host in {text!r} (e.g. 127.0.0.1:9000)")
        if ":" in host:
            raise argparse.ArgumentTypeError(
                f"write IPv6 addresses in brackets, e.g. [::1]:9000 (got {text!r})"
            )
    if not port_text.isdigit():
        raise argparse.ArgumentTypeError(f"port {port_text!r} in {text!r} is not a number")
    port = int(port_text)
    if not min_port <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range ({min_port}-65535)")
    return host, port


def listen_addr(text: str) -> tuple[str, int]:
    """``--listen``: port 0 asks the OS for a free port (the start line reports it)."""
    return parse_hostport(text)


def dial_addr(text: str) -> tuple[str, int]:
    """``--bootstrap``: a dialable address, so port 0 is refused."""
    return parse_hostport(text, min_port=1)


def api_addr(text: str) -> tuple[str, int]:
    """``--api``: a bare port means loopback; exposing the API is the operator's explicit call."""
    return parse_hostport(text, default_host="127.0.0.1")


def port_number(text: str) -> int:
    """A TCP port, 0 included (0 = let the OS choose)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535, got {text!r}")
    return int(text)


def count(minimum: int) -> Callable[[str], int]:
    """An integer type with a lower bound and a message that says so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def seconds(text: str) -> float:
    """A positive duration in seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def seconds_or_off(text: str) -> float | None:
    """A positive duration in seconds, or 0 for "off" (``None``).

    Why a separate type: the console and the demo mine by default, so the operator needs a
    way to say "don't"; ``zakura node`` mines only when asked, so there 0 is a mistake.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (0 = off), got {text!r}") from None
    if value == 0:
        return None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, or 0 for off, got {text!r}")
    return value


# ---------------------------------------------------------------------- parser
class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the flag, then exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def fail(prog: str, err: UsageError) -> int:
    """Report a post-parse usage error the same way argparse reports its own."""
    print(f"{prog}: error: argument {err.flag}: {err.problem}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def add_log_level(p: argparse.ArgumentParser, default: str, where: str = "on stderr") -> None:
    p.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=default,
        metavar="LEVEL",
        help=f"log verbosity {where}: {', '.join(LOG_LEVELS)} (default: {default})",
    )


def add_hostile_mode(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--hostile-mode",
        choices=ALL_HOSTILE_MODES,
        default=None,
        metavar="MODE",
        help=f"{what}: {', '.join(ALL_HOSTILE_MODES)} (default: honest)",
    )


def add_hostile_rate(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--hostile-rate",
        type=count(1),
        default=None,
        metavar="BYTES",
        help="--hostile-mode slow-blocks only: bytes per second the hostile block server "
        f"sends at most (default: {DEFAULT_HOSTILE_RATE}, 64 KiB/s)",
    )


def check_hostile_delay(args: argparse.Namespace) -> None:
    """--hostile-delay only means something to a slow responder; say so instead of ignoring it."""
    if args.hostile_delay is not None and args.hostile_mode != "slow-responder":
        raise UsageError(
            "--hostile-delay",
            "only applies to --hostile-mode slow-responder "
            f"(got --hostile-mode {args.hostile_mode or 'unset'})",
        )


def check_hostile_rate(args: argparse.Namespace) -> None:
    """--hostile-rate only throttles a slow block server; say so instead of ignoring it."""
    if args.hostile_rate is not None and args.hostile_mode != "slow-blocks":
        raise UsageError(
            "--hostile-rate",
            "only applies to --hostile-mode slow-blocks "
            f"(got --hostile-mode {args.hostile_mode or 'unset'})",
        )


def setup_logging(level: str) -> None:
    """Logs go to stderr so stdout stays machine-readable (the start line, the tables)."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


def hostile_modes_help(intro: str) -> str:
    """The ``--hostile-mode`` list for --help: what each mode does, what victims should do."""
    lines = [intro]
    for mode, text in ALL_MODE_HELP.items():
        lines.append(f"  {mode}")
        for label, body in (("does", text.does), ("victims", text.victims)):
            lines += textwrap.wrap(
                f"{label}: {body}", width=96, initial_indent="    ", subsequent_indent="      "
            )
    return "\n".join(lines)


MINE_INTERVAL_HELP = (
    "mine a block on our tip every S seconds and announce it with NewBlock; off by default"
)


def add_demo_chain(p: argparse.ArgumentParser, where: str) -> None:
    """``--blocks`` and ``--mine-interval`` of an embedded testnet (console, demo).

    Why on by default there: the operator should see header sync work - a sync to the
    testnet's tip, then the tip moving - without knowing which flags make it happen.
    """
    p.add_argument(
        "--blocks",
        type=count(0),
        default=DEMO_BLOCKS,
        metavar="N",
        help="testnet node 0 pre-generates the seeded chain (seed 1) up to height N before it "
        f"listens; the other nodes and your node start at genesis and sync its headers{where}; "
        f"0 starts everyone at genesis (default: {DEMO_BLOCKS})",
    )
    p.add_argument(
        "--mine-interval",
        type=seconds_or_off,
        default=DEMO_MINE_INTERVAL,
        metavar="S",
        help="testnet node 0 mines a block on its tip every S seconds and announces it with "
        "NewBlock, so every tip keeps moving; 0 turns mining off "
        f"(default: {DEMO_MINE_INTERVAL:g})",
    )


NODE_HOSTILE_HELP = hostile_modes_help(
    "hostile modes (--hostile-mode MODE; testnets only - the node attacks its peers' header\n"
    "sync (the first eight) or block sync (the last four) instead of syncing that way; give it a\n"
    "chain with --blocks so peers behind it ask it for work):"
)

TESTNET_HOSTILE_HELP = hostile_modes_help(
    "hostile modes (--hostile N --hostile-mode MODE: the last N nodes, never node 0, run a\n"
    "hostile header sync (the first eight) or block sync (the last four); each victim's records\n"
    "show in its snapshot's misbehavior list):"
)

NODE_HELP = """\
Run one headless node until SIGINT or SIGTERM, then stop it cleanly (exit 0).

The node listens for peers on --listen, keeps --target-peers connections (dialing addresses
learned through discovery), and keeps redialing every --bootstrap peer while it is down. Its
Ed25519 identity lives in --data-dir/node_key (created 0600 on first start; a key readable by
others is refused); its chain in --data-dir/chain.sqlite3, starting at the --network's genesis
(resumed on restart). Once listening it prints one line on stdout:

  zakura node ready: label=peer:<16 hex> listen=HOST:PORT api=HOST:PORT|off

The API (--api) serves /healthz and /metrics to anyone and every /api/v1 route only with a
bearer token from `zakura token create` (see `zakura token --help`); bound to an address that
is not loopback, it refuses to start until the data dir has a token.

Input errors (bad address, port in use, unusable data dir or key, a non-loopback --api with
no token) print one line on stderr naming the flag, and exit with code 2."""

NODE_EXAMPLE = f"""\
{NODE_HOSTILE_HELP}

example:
  zakura node --listen 127.0.0.1:9000 --data-dir ./node-a --api 9100
  zakura node --listen 127.0.0.1:9001 --data-dir ./node-b --bootstrap 127.0.0.1:9000
  zakura node --listen 127.0.0.1:9002 --data-dir ./node-c --bootstrap 127.0.0.1:9000 \\
      --blocks 500 --hostile-mode slow-responder --hostile-delay 40
  zakura token create --data-dir ./node-a --name me --role operator | tail -n 1 > me.token
  curl -s -H "Authorization: Bearer $(cat me.token)" 127.0.0.1:9100/api/v1/snapshot"""

TESTNET_HELP = """\
Run a local network of N node processes on 127.0.0.1 and print their addresses.

Each node is a child process (`python -m node_core node ...`) with its own data dir named
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

TESTNET_EXAMPLE = f"""\
{TESTNET_HOSTILE_HELP}

example:
  zakura testnet --nodes 8 --api-base-port 9100
  curl -s -H "Authorization: Bearer $(cat DATA/node-00/operator.token)" \\
      127.0.0.1:9100/api/v1/snapshot          # node 0's view (DATA: the printed data dir)
  zakura testnet --nodes 3 --api-base-port 9100 --data-dir tn
      # then: zakura attach --fleet tn/fleet.toml; Prometheus: tn/prometheus-targets.json
  zakura testnet --nodes 4 --blocks 5000 --mine-interval 5 --api-base-port 9100
  zakura testnet --nodes 5 --blocks 2000 --hostile 2 --hostile-mode malformed-headers"""

CONSOLE_HELP = """\
The operator console (what `make run` starts, and `zakura` with no subcommand).

Opens the full-screen console at once and, behind it, starts a local testnet of --peers node
processes and the operator's own node inside this process (fault injection enabled, target
peers = --peers, bootstrapped from testnet node 0); the status bar says "waiting for the
node..." until it is up. Testnet node 0 is a miner: it starts with a --blocks chain and mines
a block every --mine-interval seconds, while your node starts at genesis, so the Overview's
header-sync panel shows it syncing headers up to the testnet's tip and then following it.

Views: 1 Overview, 2 Peers, 3 Journal, 4 Misbehavior, 5 Parked; Enter on a peer opens its
detail; ? lists every key, ctrl+p opens the command palette. q or Ctrl+C quits and stops the
node and every testnet process it started (also when the console crashes or gets
SIGTERM/SIGHUP).

Logs never go to the terminal while the console runs: they go to --log-file, and each testnet
node logs to <data dir>/testnet/node-NN/node.log. Without --data-dir everything lives in a
temp dir removed at exit (kept, and its path printed, when the console exits with an error).
Input errors print one line on stderr naming the flag, and exit with code 2."""

CONSOLE_EXAMPLE = """\
example:
  zakura                                   # same as: zakura console
  zakura console --peers 8 --refresh 0.5
  zakura console --blocks 20000 --mine-interval 1   # a longer sync, a faster tip
  zakura console --blocks 0 --mine-interval 0       # no chain: peers and routines only
  zakura console --read-only --theme zakura-light --data-dir ./console-data"""

DEMO_HELP = """\
The interim operator view, a rich table in the terminal (`zakura console` is the default now).

Starts a local testnet of --peers node processes, then the operator's own node inside this
process (fault injection enabled, target peers = --peers, bootstrapped from testnet node 0),
and shows a live table of that node's peers built from its snapshot: routine state per service
(● running, ○ exited, ■ panicked, ◐ parked) with its generation, traffic, misbehavior, and the
peers closed in the last 10 s. Testnet node 0 is a miner: it starts with a --blocks chain and
mines a block every --mine-interval seconds; your node starts at genesis, and the header line
shows its header tip syncing up to the testnet's and then following it. When stdout is not a
terminal it prints a text summary every second instead. Ctrl-C stops the node and the
testnet."""

DEMO_EXAMPLE = """\
example:
  zakura demo --peers 8
  zakura demo --peers 3 --duration 10 | tee demo.log
  zakura demo --blocks 0 --mine-interval 0             # no chain: peers and routines only"""


def build_parser() -> Parser:
    """The whole command tree; every flag says its default and every level has an example."""
    fmt = argparse.RawDescriptionHelpFormatter
    root = Parser(
        prog="zakura",
        formatter_class=fmt,
        description=(
            "zakura: an asyncio peer-to-peer node following the Zakura peer-routine\n"
            "architecture, its local testnet, and an operator console. With no subcommand it\n"
            "runs `zakura console` (a local testnet plus a node of your own, in a live TUI)."
        ),
        epilog="example:\n  zakura            # same as: zakura console\n  zakura node --help",
    )
    sub = root.add_subparsers(dest="command", metavar="{console,attach,node,testnet,demo,token}")

    console = sub.add_parser(
        "console",
        help="the operator console over a local testnet and your own node (the default)",
        description=CONSOLE_HELP,
        epilog=CONSOLE_EXAMPLE,
        formatter_class=fmt,
    )
    console.add_argument(
        "--peers",
        type=count(1),
        default=6,
        metavar="N",
        help="number of testnet node processes to start; your node aims to connect to all "
        "of them (default: 6)",
    )
    console.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep all data under DIR (your node in DIR/node, the testnet in DIR/testnet, "
        "the log in DIR/console.log) (default: a temp dir, removed at exit)",
    )
    console.add_argument(
        "--refresh",
        type=seconds,
        default=0.25,
        metavar="SECONDS",
        help="how often the views fetch fresh data from the node (default: 0.25, i.e. 4 Hz)",
    )
    console.add_argument(
        "--read-only",
        action="store_true",
        help="disable every action (disconnect, panic, park, stall, throttle); READ-ONLY shows "
        "in the status bar (default: actions allowed, each asks for confirmation)",
    )
    console.add_argument(
        "--theme",
        default=None,
        metavar="NAME",
        help="colour theme: zakura-dark, zakura-light, zakura-high-contrast, or ansi (the "
        "terminal's own 16 colours, for SSH and terminals without true colour); t cycles them "
        "while running (default: zakura-dark, or ansi when COLORTERM is not truecolor/24bit)",
    )
    console.add_argument(
        "--ascii",
        action="store_true",
        help="draw routine states as letters (R running, P parked, E exited, X panicked) "
        "instead of symbols, for bare terminals and serial consoles (default: symbols)",
    )
    console.add_argument(
        "--log-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the console's and your node's log here, never to the terminal "
        "(default: <data dir>/console.log)",
    )
    add_demo_chain(console, " (the Overview's header-sync panel)")
    add_log_level(console, "info", "in --log-file and in every testnet node's node.log")

    node = sub.add_parser(
        "node",
        help="run one headless node",
        description=NODE_HELP,
        epilog=NODE_EXAMPLE,
        formatter_class=fmt,
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
    node.add_argument(
        "--api",
        type=api_addr,
        default=None,
        metavar="HOST:PORT",
        help="serve the read-only control API here; a bare PORT means 127.0.0.1:PORT "
        "(default: off)",
    )
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
    add_log_level(node, "info")

    testnet = sub.add_parser(
        "testnet",
        help="run a local network of node processes",
        description=TESTNET_HELP,
        epilog=TESTNET_EXAMPLE,
        formatter_class=fmt,
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

    demo = sub.add_parser(
        "demo",
        help="the interim rich-table view of a local testnet and your own node",
        description=DEMO_HELP,
        epilog=DEMO_EXAMPLE,
        formatter_class=fmt,
    )
    demo.add_argument(
        "--peers",
        type=count(1),
        default=6,
        metavar="N",
        help="number of testnet node processes to start (default: 6)",
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep all data under DIR (your node in DIR/node, the testnet in DIR/testnet) "
        "(default: a temp dir, removed at exit)",
    )
    demo.add_argument(
        "--duration",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="exit by itself this long after the view starts (default: run until Ctrl-C)",
    )
    add_demo_chain(demo, " (the header line's headers figure)")
    add_log_level(demo, "warning")

    from node_core.token_cli import add_parser as add_token_parser

    add_token_parser(sub, formatter_class=fmt)
    _add_attach_parser(sub, fmt)
    return root


def _add_attach_parser(
    sub: argparse._SubParsersAction[Parser], fmt: type[argparse.HelpFormatter]
) -> None:
    """``zakura attach`` lives with the console (Textual is imported only when it runs)."""
    from console.attach import add_parser

    add_parser(sub, fmt)


# ---------------------------------------------------------------------- zakura node
def check_data_dir(path: Path) -> None:
    """Fail fast, naming the flag, when the data dir cannot hold the key and state."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        problem = f"{path} is not a writable directory ({describe(exc)})"
        raise UsageError("--data-dir", problem) from None


def describe(exc: OSError) -> str:
    """An OSError in operator words, without the errno noise."""
    if isinstance(exc, socket.gaierror):
        return "cannot resolve that host name"
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (another node or program is listening there)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "cannot bind that address (it is not an address of this machine)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


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
    )


async def run_node(args: argparse.Namespace) -> int:
    """Start the node, print the start line, wait for SIGINT/SIGTERM, stop cleanly."""
    from node_core.api import ApiStartError
    from node_core.chain.chainstate import ChainStateError
    from node_core.chain.store import StoreError
    from node_core.identity import IdentityError
    from node_core.node import Node

    check_hostile_delay(args)
    check_hostile_rate(args)
    check_data_dir(args.data_dir)
    try:
        node = Node(node_config_from_args(args))
    except IdentityError as exc:
        raise UsageError("--data-dir", str(exc)) from None
    except OSError as exc:
        # The identity loaded, so the data dir is fine: the trace writer could not start.
        raise UsageError("--trace-dir", f"{args.trace_dir}: {describe(exc)}") from None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await node.start()
        except (ChainStateError, StoreError) as exc:
            raise UsageError("--data-dir", str(exc)) from None
        except ApiStartError as exc:
            raise UsageError("--api", str(exc)) from None
        except OSError as exc:
            # listen comes first in Node.start: a still-unbound listener means it was --listen.
            bad_listen = node.transport.listen_port == 0
            flag, (host, port) = ("--listen", args.listen) if bad_listen else ("--api", args.api)
            raise UsageError(flag, f"{host}:{port}: {describe(exc)}") from None
        print(format_start_line(node.label, node.listen, node.api_address), flush=True)
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
        await node.stop()
        await finish_leftover_tasks()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


async def finish_leftover_tasks(timeout: float = LEFTOVER_TASK_SECS) -> None:
    """Cancel, and keep re-cancelling, every task a stopped node left behind.

    Why: a SIGTERMed node must exit. ``asyncio.run`` cancels leftover tasks exactly once and
    then waits for them without limit, but on Python 3.11 ``asyncio.wait_for`` swallows a
    cancellation that arrives just as its inner awaitable completes; a loop built on it then
    never ends and the process hangs after shutdown (seen with the dialer's wake loop). So
    cancel repeatedly until every task is done; if some still refuse after ``timeout``, log
    them and leave with exit code 1 instead of hanging.
    """
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    deadline = loop.time() + timeout
    while left := [t for t in asyncio.all_tasks() if t is not me and not t.done()]:
        if loop.time() >= deadline:
            names = ", ".join(sorted(t.get_name() for t in left))
            log.error("tasks ignored cancellation for %.0f s, exiting anyway: %s", timeout, names)
            logging.shutdown()
            sys.stdout.flush()
            os._exit(1)
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=0.05)


# ---------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``zakura`` console script and ``python -m node_core``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        argv = ["console"]
    args = parser.parse_args(argv)
    if args.command is None:  # only top-level flags given: they all exit, but be safe
        args = parser.parse_args(["console"])
    prog = f"zakura {args.command}"
    if args.command == "console":
        # No stderr logging here: the console sends every record to its log file.
        return _console(args, prog)
    if args.command == "attach":
        return _attach(args, prog)
    if args.command == "token":
        from node_core.token_cli import run as run_token

        return run_token(args)
    setup_logging(args.log_level)
    try:
        if args.command == "node":
            return asyncio.run(run_node(args))
        if args.command == "testnet":
            from node_core.testnet import run_testnet_cli

            return asyncio.run(run_testnet_cli(args))
        from node_core.demo import run_demo

        return asyncio.run(run_demo(args))
    except UsageError as err:
        return fail(prog, err)
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers were installed: nothing is running yet.
        return 130


def _attach(args: argparse.Namespace, prog: str) -> int:
    """``zakura attach``: the console on a remote node over its control API."""
    from console.attach import AttachError, run_attach
    from console.launcher import NotATerminal

    try:
        return asyncio.run(run_attach(args))
    except (AttachError, NotATerminal) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except UsageError as err:
        return fail(prog, err)
    except KeyboardInterrupt:
        return 130


def _console(args: argparse.Namespace, prog: str) -> int:
    """``zakura console``: Textual imported only here, so other commands start quickly."""
    from console.launcher import NotATerminal, run_console

    try:
        return asyncio.run(run_console(args))
    except UsageError as err:
        return fail(prog, err)
    except NotATerminal as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
