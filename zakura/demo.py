"""``zakura demo``: the interim operator view, a plain ``rich`` table (``zakura console``, the
Textual console, is the default and what ``make run`` starts now).

Kept because it needs no full-screen terminal: piped into a log it prints a text summary every
second, which makes it handy in CI and over dumb terminals. It starts a local
:class:`~zakura.testnet.Testnet`, runs the operator's own node in this process, and shows
that node's peers live. Every figure on screen comes from ``node.snapshot()`` alone - the same
rule the Textual console follows - so this view is also a running check that the snapshot
carries what an operator needs. The renderers below are pure functions of one snapshot
document, which keeps them testable and swappable.

Peer-supplied strings (close reasons, addresses) are shown through :func:`clean` and as rich
``Text`` (never markup), so a hostile peer cannot paint the operator's terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import time
import unicodedata
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from zakura.args import add_demo_chain, add_log_level, count, seconds
from zakura.process import finish_leftover_tasks, setup_logging
from zakura.testnet import HOST, Testnet, TestnetError

if TYPE_CHECKING:
    from node_core.node import Node

T = TypeVar("T")

#: The console's state glyphs (``console.format.STATE_GLYPHS``): basic geometric shapes that
#: terminal fonts carry (``⏸``, the old parked glyph, drew as an empty box in many).
GLYPHS = {"running": "●", "exited": "○", "panicked": "■", "parked": "◐"}
GLYPH_STYLES = {"running": "green", "exited": "dim", "panicked": "bold red", "parked": "yellow"}
RECENT_CLOSED_SECS = 10.0
REFRESH_HZ = 4.0
SUMMARY_INTERVAL_SECS = 1.0
MAX_FIELD_CHARS = 80


# ---------------------------------------------------------------------- pure formatting
def clean(value: object, limit: int = MAX_FIELD_CHARS) -> str:
    """Printable, bounded text: control and format characters become ``?``."""
    text = "".join(
        "?" if unicodedata.category(ch).startswith("C") else ch for ch in str(value)[:limit]
    )
    return text + ("…" if len(str(value)) > limit else "")


def fmt_bytes(n: float) -> str:
    """``999 B``, ``1.2 KiB``, ``3.4 MiB``: readable at a glance, exact enough to compare."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def fmt_age(secs: float) -> str:
    """``42s``, ``3m07s``, ``2h05m``."""
    s = max(0, int(secs))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def routine_text(peer: dict[str, Any]) -> Text:
    """``discovery ●1``: one service, its state glyph and generation, per routine."""
    out = Text()
    for i, r in enumerate(peer.get("routines", [])):
        state = str(r.get("state"))
        if i:
            out.append("  ")
        out.append(f"{clean(r.get('service'))} ")
        out.append(GLYPHS.get(state, "?"), style=GLYPH_STYLES.get(state, ""))
        out.append(str(r.get("generation")))
    return out


def routine_plain(peer: dict[str, Any]) -> str:
    return "  ".join(
        f"{clean(r.get('service'))} {GLYPHS.get(str(r.get('state')), '?')}{r.get('generation')}"
        for r in peer.get("routines", [])
    )


def recently_closed(snap: dict[str, Any]) -> list[dict[str, Any]]:
    """Peers closed in the last 10 s of the snapshot's own clock, newest first."""
    now = float(snap.get("generated_at", time.time()))
    recent = [
        c
        for c in snap.get("recently_closed", [])
        if c.get("closed_at") is not None and now - float(c["closed_at"]) <= RECENT_CLOSED_SECS
    ]
    return sorted(recent, key=lambda c: -float(c["closed_at"]))


def headers_text(snap: dict[str, Any]) -> str:
    """``headers 1,234/5,000``: our header tip against the best tip a peer advertised.

    Why in the demo at all: its testnet's node 0 carries a chain and keeps mining, so this one
    figure shows header sync catching up and then following the tip. ``headers -`` when the
    snapshot has no chain section (a node from before header sync).
    """
    chain = snap.get("chain") or {}
    try:
        tip = int(chain["header_tip"]["height"])
        target = int(chain.get("target", tip))
    except (KeyError, TypeError, ValueError):
        return "headers -"
    return f"headers {tip:,}/{max(tip, target):,}"


def header_line(snap: dict[str, Any]) -> str:
    """Who we are, where we listen, for how long, how connected, how far synced, how healthy
    the loop is."""
    node, dialer, lag = snap["node"], snap["dialer"], snap["loop_lag"]
    return (
        f"{clean(node['label'])}  listen {clean(node['listen'])}  "
        f"up {fmt_age(float(node['uptime_s']))}  "
        f"peers {dialer['connected']}/{dialer['target']} connected  "
        f"{headers_text(snap)}  "
        f"loop lag p99 {float(lag['p99_ms']):.1f} ms"
    )


def render(snap: dict[str, Any]) -> RenderableType:
    """The live view: header, peer table, recently closed peers."""
    table = Table(expand=False, show_edge=False, pad_edge=False, header_style="bold")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("label", "left"),
        ("addr", "left"),
        ("dir", "left"),
        ("age", "right"),
        ("routines", "left"),
        ("in", "right"),
        ("out", "right"),
        ("misb", "right"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)
    for p in snap.get("peers", []):
        misb = int(p.get("misbehavior_count", 0))
        table.add_row(
            Text(clean(p.get("label"))),
            Text(clean(p.get("addr"))),
            Text("in" if p.get("direction") == "inbound" else "out"),
            Text(fmt_age(float(p.get("age_s", 0.0)))),
            routine_text(p),
            Text(fmt_bytes(int(p.get("bytes_in", 0)))),
            Text(fmt_bytes(int(p.get("bytes_out", 0)))),
            Text(str(misb), style="bold red" if misb else "dim"),
        )
    parts: list[RenderableType] = [Text(header_line(snap), style="bold"), table]
    closed = recently_closed(snap)
    if closed:
        gone = Table(title="closed in the last 10 s", show_edge=False, header_style="bold")
        for name in ("label", "addr", "reason", "ago"):
            gone.add_column(name)
        now = float(snap.get("generated_at", time.time()))
        for c in closed:
            gone.add_row(
                Text(clean(c.get("label"))),
                Text(clean(c.get("addr"))),
                Text(clean(c.get("reason")), style="yellow"),
                Text(fmt_age(now - float(c["closed_at"]))),
            )
        parts.append(gone)
    legend = "● running  ○ exited  ■ panicked  ◐ parked   (number = generation)   Ctrl-C quits"
    parts.append(Text(legend, style="dim"))
    return Group(*parts)


def summary_lines(snap: dict[str, Any]) -> list[str]:
    """The same facts as :func:`render`, as plain lines for logs and pipes."""
    lines = [header_line(snap)]
    for p in snap.get("peers", []):
        lines.append(
            f"  {clean(p.get('label'))}  {clean(p.get('addr'))}  {clean(p.get('direction'))}  "
            f"age {fmt_age(float(p.get('age_s', 0.0)))}  {routine_plain(p)}  "
            f"in {fmt_bytes(int(p.get('bytes_in', 0)))}  "
            f"out {fmt_bytes(int(p.get('bytes_out', 0)))}  "
            f"misbehavior {int(p.get('misbehavior_count', 0))}"
        )
    for c in recently_closed(snap):
        lines.append(f"  closed {clean(c.get('label'))}: {clean(c.get('reason'))}")
    return lines


# ---------------------------------------------------------------------- running it
async def _unless_stopped(aw: Awaitable[T], stop: asyncio.Event) -> T | None:
    """Await ``aw`` unless ``stop`` is set first (then cancel it and return ``None``)."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def _wait(stop: asyncio.Event, timeout: float) -> None:
    """Sleep until the next frame, or return at once when asked to stop.

    ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11 ``wait_for`` can swallow a
    cancellation that lands just as the inner wait completes, leaving the task running.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, timeout)):
            await stop.wait()


HELP = """\
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

EXAMPLE = """\
example:
  zakura demo --peers 8
  zakura demo --peers 3 --duration 10 | tee demo.log
  zakura demo --blocks 0 --mine-interval 0             # no chain: peers and routines only"""


def add_parser(sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``demo`` to the ``zakura`` subcommands ``sub``."""
    demo = sub.add_parser(
        "demo",
        help="the interim rich-table view of a local testnet and your own node",
        description=HELP,
        epilog=EXAMPLE,
        formatter_class=formatter_class,
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


async def run_demo(args: argparse.Namespace) -> int:
    """``zakura demo``: testnet + own node + live peer view, until Ctrl-C or ``--duration``."""
    from node_core.node import Node, NodeConfig

    console = Console()
    tty = console.is_terminal
    if tty:
        # Live owns the terminal: route logs through it so they print above the table.
        root_logger = logging.getLogger()
        level = root_logger.level
        for h in list(root_logger.handlers):
            root_logger.removeHandler(h)
        root_logger.addHandler(RichHandler(console=console, show_path=False, level=level))

    owns_root = args.data_dir is None
    root = Path(tempfile.mkdtemp(prefix="zakura-demo-")) if owns_root else Path(args.data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    net = Testnet(
        args.peers,
        data_dir=root / "testnet",
        target_peers=4,
        blocks=args.blocks,
        mine_interval=args.mine_interval,
    )
    node: Node | None = None
    try:
        chain = f" (node 0 pre-generates {args.blocks:,} blocks)" if args.blocks else ""
        print(
            f"zakura demo: starting a testnet of {args.peers} peer processes{chain} in {root} ..."
        )
        sys.stdout.flush()
        try:
            if await _unless_stopped(net.start(), stop) is None:
                return 0
        except TestnetError as exc:
            print(f"zakura demo: error: {exc}", file=sys.stderr, flush=True)
            return exc.exit_code
        node = Node(
            NodeConfig(
                data_dir=root / "node",
                listen_host=HOST,
                listen_port=0,
                bootstrap=((HOST, net.nodes[0].listen_port),),
                allow_faults=True,
                target_peers=len(net.nodes),
            )
        )
        await node.start()
        print(f"zakura demo: your node {node.label} listens on {node.listen}", flush=True)
        deadline = None if args.duration is None else loop.time() + args.duration
        if tty:
            await _live(node, stop, deadline, console)
        else:
            await _summaries(node, stop, deadline)
        return 0
    finally:
        print("zakura demo: stopping ...", flush=True)
        if node is not None:
            await node.stop()
        await net.stop()
        if owns_root:
            shutil.rmtree(root, ignore_errors=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await finish_leftover_tasks()


def _remaining(deadline: float | None, period: float) -> float:
    if deadline is None:
        return period
    return min(period, deadline - asyncio.get_running_loop().time())


def _done(stop: asyncio.Event, deadline: float | None) -> bool:
    return stop.is_set() or (deadline is not None and asyncio.get_running_loop().time() >= deadline)


async def _live(node: Node, stop: asyncio.Event, deadline: float | None, console: Console) -> None:
    """Redraw at 4 Hz from a fresh snapshot; refresh is driven here, so no render thread."""
    with Live(render(node.snapshot()), console=console, auto_refresh=False) as live:
        while not _done(stop, deadline):
            live.update(render(node.snapshot()), refresh=True)
            await _wait(stop, _remaining(deadline, 1.0 / REFRESH_HZ))


async def _summaries(node: Node, stop: asyncio.Event, deadline: float | None) -> None:
    """Not a terminal (CI logs, pipes): one plain summary per second."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        lines = summary_lines(node.snapshot())
        lines[0] = f"[{loop.time() - started:5.1f}s] {lines[0]}"
        print("\n".join(lines), flush=True)
        if _done(stop, deadline):
            return
        await _wait(stop, _remaining(deadline, SUMMARY_INTERVAL_SECS))


def run(args: argparse.Namespace) -> int:
    """``zakura demo``: logs on stderr (through the live view on a terminal)."""
    setup_logging(args.log_level)
    return asyncio.run(run_demo(args))
