"""What every ``zakura`` subcommand shares on its command line: argument types, flag helpers,
the usage error and how it is reported.

Operators meet the node here first, so every mistake they can make on the command line ends in
one line on stderr that names the flag and the problem, and exit code 2 - never a traceback.
Runtime failures after start-up are the node's business and are logged normally.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from console.usage import UsageError
from node_core.block_sync.hostile import (
    ALL_HOSTILE_MODES,
    ALL_MODE_HELP,
    DEFAULT_HOSTILE_RATE,
)
from node_core.protocol.limits import (
    DEFAULT_IDLE_TIMEOUT_MILLIS,
    LOCAL_MAX_IDLE_TIMEOUT_MILLIS,
    MIN_IDLE_TIMEOUT_MILLIS,
    NetworkId,
)

EXIT_USAGE = 2
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


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the flag, then exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def fail(prog: str, err: UsageError) -> int:
    """Report a post-parse usage error the same way argparse reports its own."""
    print(f"{prog}: error: argument {err.flag}: {err.problem}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def fail_line(prog: str, message: str) -> int:
    """Report an input error that names no single flag (no terminal, no token ...)."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


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


def count(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An integer type with a lower bound (and, if given, an upper one) and a message that
    says so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
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


#: ``--idle-timeout`` bounds and default, in seconds: the handshake's idle-timeout limits
#: (``node_core.protocol.limits``), so a value the flag accepts is one every peer accepts.
IDLE_TIMEOUT_MIN = MIN_IDLE_TIMEOUT_MILLIS / 1000
IDLE_TIMEOUT_MAX = LOCAL_MAX_IDLE_TIMEOUT_MILLIS / 1000
IDLE_TIMEOUT_DEFAULT = DEFAULT_IDLE_TIMEOUT_MILLIS / 1000


def idle_seconds(text: str) -> float:
    """``--idle-timeout``: seconds from 1 to 600, what the handshake's limits allow.

    Why checked here and not left to the handshake: a node offering an idle timeout below the
    protocol minimum would refuse to start (``TransportConfig``), and one above the field
    maximum would be refused by every peer; both are typos the operator should hear about as
    one line naming the flag.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not IDLE_TIMEOUT_MIN <= value <= IDLE_TIMEOUT_MAX:
        raise argparse.ArgumentTypeError(
            f"must be from {IDLE_TIMEOUT_MIN:g} to {IDLE_TIMEOUT_MAX:g} seconds, got {text!r}"
        )
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


# ---------------------------------------------------------------------- shared flags
def add_log_level(p: argparse.ArgumentParser, default: str, where: str = "on stderr") -> None:
    p.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=default,
        metavar="LEVEL",
        help=f"log verbosity {where}: {', '.join(LOG_LEVELS)} (default: {default})",
    )


def add_hostile_mode(p: argparse.ArgumentParser, what: str, default: str = "honest") -> None:
    """``--hostile-mode``; its value stays None when not given, so a command can tell "not
    given" from a mode (``default`` is only what --help says happens then)."""
    p.add_argument(
        "--hostile-mode",
        choices=ALL_HOSTILE_MODES,
        default=None,
        metavar="MODE",
        help=f"{what}: {', '.join(ALL_HOSTILE_MODES)} (default: {default})",
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


# ---------------------------------------------------------------------- checks after parsing
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
