"""``zakura console``: the app at once, the local network coming up behind it.

The operator should see the console within a blink, not after six node processes have booted, so
:func:`run_console` starts the Textual app first (it says "waiting for the node..." in the
status bar) and brings up the local testnet and the operator's own node in the background
(:class:`~zakura.local_network.LocalNetwork`, on its own loop in a
:class:`~zakura.node_thread.NodeThread`: :mod:`zakura.node_thread` says why). The app gets a
:class:`~console.launcher.PendingClient` from the start, which delegates to the real client
once the node is up; until then :class:`~console.launcher.LauncherConsole` skips its polls, so
the views keep saying "waiting for the node...", no error notifications appear while the
network boots, and keys (``q`` included) work from the first frame.

Safety rules this module keeps, because a console that leaks node processes is worse than none:

- Quitting by ``q``, by Ctrl+C (a key while Textual owns the terminal, so
  :class:`~console.launcher.LauncherConsole` binds it to quit), by SIGTERM/SIGHUP/SIGINT, or by
  the app crashing all leave :meth:`ZakuraConsole.run_async`; the ``finally`` in
  :func:`run_console` then stops the node and every testnet process. The children also carry
  PDEATHSIG (see :mod:`zakura.testnet`) for the cases where no ``finally`` runs at all.
- Logging goes to a file, configured before the app starts: Textual swaps the process-wide
  stdout and stderr while it runs, and a stream handler made earlier would paint over the UI.
- Errors found before the app starts (an unknown theme, an unwritable log file) are
  :class:`~zakura.args.UsageError`\\ s: one line naming the flag, exit code 2.

Textual is imported only when the command runs, so every other command (and ``--help``)
starts quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zakura.args import (
    UsageError,
    add_demo_chain,
    add_log_level,
    check_data_dir,
    count,
    fail_line,
    seconds,
)
from zakura.process import finish_leftover_tasks

if TYPE_CHECKING:
    from console.fleet import FleetMember
    from console.launcher import LauncherConsole, PendingClient
    from zakura.node_thread import ThreadBackend
    from zakura.testnet import TestnetNode

log = logging.getLogger(__name__)

PROG = "zakura console"
#: ``--refresh``: the app's own default (:data:`console.launcher.DEFAULT_REFRESH`), written
#: out here so that ``--help`` does not import Textual.
DEFAULT_REFRESH = 0.25
#: The network starts after the first frame, or after this long if the frame never comes.
FIRST_FRAME_WAIT_SECS = 2.0

HELP = """\
The operator console (what `make run` starts, and `zakura` with no subcommand).

Opens the full-screen console at once and, behind it, starts a local testnet of --peers node
processes and the operator's own node inside this process (fault injection enabled, target
peers = --peers, bootstrapped from testnet node 0); the status bar says "waiting for the
node..." until it is up. Testnet node 0 is a miner: it starts with a --blocks chain and mines
a block every --mine-interval seconds, while your node starts at genesis, so the Overview's
header-sync panel shows it syncing headers up to the testnet's tip and then following it.

Views: 0 Fleet, 1 Overview, 2 Peers, 3 Journal, 4 Misbehavior, 5 Parked; Enter on a peer
opens its detail; the Fleet view lists your node and every testnet node (each serves its API
with an operator token), Enter there opens that node's views, 0 or Esc comes back; ? lists
every key, ctrl+p opens the command palette. q or Ctrl+C quits and stops the
node and every testnet process it started (also when the console crashes or gets
SIGTERM/SIGHUP).

Logs never go to the terminal while the console runs: they go to --log-file, and each testnet
node logs to <data dir>/testnet/node-NN/node.log. Without --data-dir everything lives in a
temp dir removed at exit (kept, and its path printed, when the console exits with an error).
Input errors print one line on stderr naming the flag, and exit with code 2."""

EXAMPLE = """\
example:
  zakura                                   # same as: zakura console
  zakura console --peers 8 --refresh 0.5
  zakura console --blocks 20000 --mine-interval 1   # a longer sync, a faster tip
  zakura console --blocks 0 --mine-interval 0       # no chain: peers and routines only
  zakura console --read-only --theme zakura-light --data-dir ./console-data"""


def add_parser(sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``console`` to the ``zakura`` subcommands ``sub``."""
    console = sub.add_parser(
        "console",
        help="the operator console over a local testnet and your own node (the default)",
        description=HELP,
        epilog=EXAMPLE,
        formatter_class=formatter_class,
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
        default=DEFAULT_REFRESH,
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


async def _bring_up(
    app: LauncherConsole,
    client: PendingClient,
    backend: ThreadBackend,
    read_only: bool,
    log_file: Path,
) -> None:
    """Start the network once the first frame is on screen, then hand the node to the app.

    If it cannot start, or the node thread ends by itself, end the app with one line that
    says why and where the log is.
    """
    from zakura.testnet import TestnetError

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(FIRST_FRAME_WAIT_SECS):
            await app.first_frame.wait()
    try:
        inner = await backend.start(read_only)
    except TestnetError as exc:
        _give_up(app, client, str(exc), exc.exit_code, log_file)
        return
    except Exception as exc:
        log.exception("the operator node did not start")
        _give_up(app, client, f"the node did not start: {exc}", 1, log_file)
        return
    client.attach(inner)
    app.node_attached()
    app.add_fleet(fleet_members(backend.network.testnet.nodes))
    log.info("console attached to %s", inner.description)
    # The node thread only ends when told to; if it ends by itself, the console is blind.
    await backend.wait_ended()
    _give_up(app, client, "the node stopped unexpectedly", 1, log_file)


def fleet_members(nodes: list[TestnetNode]) -> list[FleetMember]:
    """A Fleet view row for each testnet node, through its API and operator token."""
    from console.fleet import FleetMember as Member
    from console.remote import RemoteNodeClient

    return [
        Member(n.name, RemoteNodeClient(f"http://{n.api}", n.token or ""))
        for n in nodes
        if n.api is not None
    ]


def _give_up(
    app: LauncherConsole, client: PendingClient, message: str, code: int, log_file: Path
) -> None:
    log.error("%s", message)
    client.fail(message)
    app.exit(return_code=code, message=f"zakura console: error: {message} (log: {log_file})")


async def run_console(args: argparse.Namespace) -> int:
    """``zakura console``: the app now, the network behind it, everything stopped at the end.

    Args:
        args: Parsed flags (``peers``, ``data_dir``, ``refresh``, ``read_only``, ``theme``,
            ``ascii``, ``log_file``, ``log_level``, ``blocks``, ``mine_interval``).

    Returns:
        The exit code: 0 after a normal quit, 1 when the app crashed or the node failed, 2
        when a testnet node rejected its input.

    Raises:
        zakura.args.UsageError: Bad input found before the app started (also a console
            :class:`~console.launcher.OptionError`, such as an unknown ``--theme``).
        console.launcher.NotATerminal: stdin or stdout is not a terminal.
    """
    # Read from the module at call time (not bound at import), so tests can replace them.
    from console import launcher
    from zakura.local_network import LocalNetwork
    from zakura.node_thread import NODE_THREAD_SWITCH_INTERVAL, ThreadBackend, gil_switch_interval

    try:
        launcher.check_theme(args.theme)
        if args.log_file is not None:
            launcher.check_log_file(args.log_file)
    except launcher.OptionError as err:
        raise UsageError(err.flag, err.problem) from None
    if args.data_dir is not None:
        check_data_dir(args.data_dir)
    launcher.check_terminal()
    owns_root = args.data_dir is None
    root = Path(tempfile.mkdtemp(prefix="zakura-console-")) if owns_root else Path(args.data_dir)
    # An owned temp dir is removed only after a clean exit: otherwise its logs explain why.
    remove_root = False
    handler: logging.Handler | None = None
    try:
        log_file = Path(args.log_file) if args.log_file is not None else root / "console.log"
        handler = launcher.configure_logging(log_file, args.log_level)
        log.info(
            "zakura console starting: %d peers, node 0 with %d blocks mining every %s, data in %s",
            args.peers,
            args.blocks,
            "(never)" if args.mine_interval is None else f"{args.mine_interval:g} s",
            root,
        )

        network = LocalNetwork(
            args.peers,
            root,
            log_level=args.log_level,
            blocks=args.blocks,
            mine_interval=args.mine_interval,
        )
        backend = ThreadBackend(network)
        chain = f" (node 0 pre-generates {args.blocks:,} blocks)" if args.blocks else ""
        client = launcher.PendingClient(
            read_only=args.read_only,
            starting=f"starting a local testnet of {args.peers} peers{chain} in {root}",
        )
        app = launcher.LauncherConsole(
            client,
            refresh_interval=args.refresh,
            theme=launcher.default_theme(args.theme, os.environ),
            ascii=bool(getattr(args, "ascii", False)),
        )
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, app.exit)
        bring_up = asyncio.ensure_future(_bring_up(app, client, backend, args.read_only, log_file))
        try:
            with gil_switch_interval(NODE_THREAD_SWITCH_INTERVAL):
                await app.run_async()
        finally:
            log.info("console closed (return code %s); stopping everything", app.return_code)
            bring_up.cancel()
            with contextlib.suppress(BaseException):
                await bring_up
            await backend.stop()
            for sig in signals:
                loop.remove_signal_handler(sig)
            await finish_leftover_tasks()
        code = app.return_code or 0
        log.info(
            "stopped: operator node and testnet pids %s; exit code %d", network.child_pids, code
        )
        remove_root = owns_root and code == 0
        return code
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
        if remove_root:
            shutil.rmtree(root, ignore_errors=True)
        elif owns_root:
            print(f"zakura console: logs kept in {root}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """``zakura console``; no stderr logging here: the console sends every record to its log
    file. Raises :class:`~zakura.args.UsageError`."""
    from console.launcher import NotATerminal

    try:
        return asyncio.run(run_console(args))
    except NotATerminal as exc:
        return fail_line(PROG, str(exc))
