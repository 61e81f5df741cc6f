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
- Errors found before the app starts (an unknown theme, an unwritable log file, hostile
  settings that do not fit, an ``--api`` address that is refused, in use or not this
  machine's) are :class:`~zakura.args.UsageError`\\ s: one line naming the flag, exit code 2,
  and nothing started. ``--api`` is checked that early (:func:`zakura.api_flag.check_api`)
  because the node binds it only after the testnet is up, seconds into the app; should
  another program take the port in between, the app ends with the same line and exit code 2,
  and everything it started is stopped.

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

from console.record_flag import add_record, open_record, report, start_recorder
from console.usage import UsageError
from zakura.api_flag import add_api, check_api, start_usage_error
from zakura.args import (
    EXIT_USAGE,
    add_demo_chain,
    add_hostile_mode,
    add_log_level,
    check_data_dir,
    count,
    fail_line,
    hostile_modes_help,
    seconds,
)
from zakura.diag_args import DIAG_HELP, add_diag_flag, thresholds_from_args
from zakura.process import finish_leftover_tasks
from zakura.ssh_args import SSH_HELP, add_ssh_flags, ssh_config_from_args

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
#: How long the notification saying where ``--api`` listens stays up.
API_NOTICE_SECS = 20.0
#: ``--hostile``: each hostile peer is one more node process; a handful shows every defence.
MAX_HOSTILE = 8
#: ``--hostile`` without ``--hostile-mode``: status-spam attacks at once, unasked (a Status every
#: 100 ms), and is record-only, so view 4 fills within seconds while the hostile peers stay
#: connected and visible in the Peers view.
DEFAULT_HOSTILE_MODE = "status-spam"

HELP = """\
The operator console (what `make run` starts, and `zakura` with no subcommand).

Opens the full-screen console at once and, behind it, starts a local testnet of --peers node
processes (plus --hostile ones) and the operator's own node inside this process (fault
injection enabled, target peers = every testnet node, bootstrapped from testnet node 0); the
status bar says "waiting for the
node..." until it is up. Testnet node 0 is a miner: it starts with a --blocks chain and mines
a block every --mine-interval seconds, while your node starts at genesis, so the Overview's
header-sync panel shows it syncing headers up to the testnet's tip and then following it.

Views: 0 Fleet, 1 Overview, 2 Peers, 3 Journal, 4 Misbehavior, 5 Parked, 6 Diagnostics, 7 Charts;
Enter on a peer opens its detail; the Fleet view lists your node and every testnet node (each
serves its API with an operator token), Enter there opens that node's views, 0 or Esc comes
back; ? lists every key, ctrl+p opens the command palette. q or Ctrl+C quits and stops the
node and every testnet process it started (also when the console crashes or gets
SIGTERM/SIGHUP).

Misbehavior: --hostile N adds N hostile nodes to the local testnet (after the --peers honest
ones; node 0 stays honest) running --hostile-mode (default: status-spam, a Status every 100 ms
that your node records as status_spam and keeps the connection). Your node connects to them
too, so view 4 Misbehavior shows its records within seconds, and the Fleet view marks them
"hostile". --hostile-mode needs --hostile N (N >= 1): given alone it is an error, not ignored.

API: --api HOST:PORT serves your node's control API as `zakura node --api` does: /healthz and
/metrics to anyone, every /api/v1 route only with a token from `zakura token create --data-dir
DIR/node` (DIR is --data-dir; a running node picks a new token up at its next request); an
address that is not loopback is refused until DIR/node has a token. Where it listens goes to
the log (`your node: zakura node ready: ... api=HOST:PORT`) and to a notification. A bad
address or a port in use is one line and exit code 2, before anything starts.

SSH: --ssh HOST:PORT --ssh-authorized-keys FILE serves your node's console and script
commands over SSH, as `zakura node --ssh` does (see remote operation below): each session
gets its own console process attached to your node. The host key lives in DIR/node (without
--data-dir it is new every run, so clients see a new fingerprint).

Logs never go to the terminal while the console runs: they go to --log-file, and each testnet
node logs to <data dir>/testnet/node-NN/node.log. Without --data-dir everything lives in a
temp dir removed at exit (kept, and its path printed, when the console exits with an error).
Input errors print one line on stderr naming the flag, and exit with code 2."""

HOSTILE_HELP = hostile_modes_help(
    "hostile modes (--hostile N --hostile-mode MODE; the N hostile nodes attack header sync\n"
    "(the first eight) or block sync (the last four); your node is one of their victims):"
)

EXAMPLE = f"""\
{HOSTILE_HELP}

{SSH_HELP}

{DIAG_HELP}

example:
  zakura                                   # same as: zakura console
  zakura console --peers 8 --refresh 0.5
  zakura console --blocks 20000 --mine-interval 1   # a longer sync, a faster tip
  zakura console --blocks 0 --mine-interval 0       # no chain: peers and routines only
  zakura console --read-only --theme zakura-light --data-dir ./console-data
  zakura console --hostile 2               # two status-spam peers: press 4 for Misbehavior
  zakura console --hostile 1 --hostile-mode backwards-time   # a forged header, refused
  zakura console --data-dir ./c --api 9100 # then, in another shell:
  zakura token create --data-dir ./c/node --name me --role operator | tail -n 1 > me.token
  curl -s -H "Authorization: Bearer $(cat me.token)" 127.0.0.1:9100/api/v1/misbehavior
  zakura console --data-dir ./c --ssh 2222 --ssh-authorized-keys ~/.ssh/authorized_keys
  ssh -p 2222 127.0.0.1                    # your node's console, from another terminal"""


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
        help="number of honest testnet node processes to start (--hostile adds more); your "
        "node aims to connect to all of them (default: 6)",
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
        help="disable every action (disconnect, panic, park, unpark, stall, throttle); READ-ONLY "
        "shows "
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
    console.add_argument(
        "--hostile",
        type=count(0, MAX_HOSTILE),
        default=0,
        metavar="N",
        help="add N hostile nodes to the local testnet, beside the --peers honest ones; your "
        f"node connects to them and records what they do (view 4); 0 to {MAX_HOSTILE} "
        "(default: 0)",
    )
    add_hostile_mode(
        console,
        "what the --hostile nodes do (listed below; needs --hostile N)",
        DEFAULT_HOSTILE_MODE,
    )
    add_api(console, "DIR/node")
    add_ssh_flags(console)
    add_record(console, "your node's snapshot every --refresh")
    add_diag_flag(console)
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
    from node_core.ssh import SshStartError
    from zakura.testnet import TestnetError

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(FIRST_FRAME_WAIT_SECS):
            await app.first_frame.wait()
    network = backend.network
    try:
        inner = await backend.start(read_only)
    except TestnetError as exc:
        _give_up(app, client, str(exc), exc.exit_code, log_file)
        return
    except SshStartError as exc:  # --ssh taken since run_console checked it, or a bad host key
        _give_up(app, client, f"argument {exc.flag}: {exc.problem}", EXIT_USAGE, log_file)
        return
    except Exception as exc:
        node = network.node
        usage = None if node is None else start_usage_error(exc, node, api=network.api)
        if usage is not None:  # --api, refused or taken since run_console checked it
            _give_up(app, client, f"argument {usage.flag}: {usage.problem}", EXIT_USAGE, log_file)
            return
        log.exception("the operator node did not start")
        _give_up(app, client, f"the node did not start: {exc}", 1, log_file)
        return
    client.attach(inner)
    app.node_attached()
    app.add_fleet(fleet_members(network.testnet.nodes))
    log.info("console attached to %s", inner.description)
    if network.node is not None and (api := network.node.api_address) is not None:
        app.notify(
            f"your node's API: http://{api} (a token: zakura token create --data-dir "
            f"{network.root / 'node'} --name NAME --role operator)",
            title="--api",
            timeout=API_NOTICE_SECS,
        )
    if network.node is not None and (ssh := network.node.ssh_address) is not None:
        host, _, port = ssh.rpartition(":")
        app.notify(
            f"your node's console over SSH: ssh -p {port} {host}",
            title="--ssh",
            timeout=API_NOTICE_SECS,
        )
    # The node thread only ends when told to; if it ends by itself, the console is blind.
    await backend.wait_ended()
    _give_up(app, client, "the node stopped unexpectedly", 1, log_file)


def fleet_members(nodes: list[TestnetNode]) -> list[FleetMember]:
    """A Fleet view row for each testnet node, through its API and operator token; a hostile
    node's name says so (its misbehavior is what the operator is looking at)."""
    from console.fleet import FleetMember as Member
    from console.remote import RemoteNodeClient

    return [
        Member(
            n.name if n.hostile_mode is None else f"{n.name} hostile",
            RemoteNodeClient(f"http://{n.api}", n.token or ""),
        )
        for n in nodes
        if n.api is not None
    ]


def _give_up(
    app: LauncherConsole, client: PendingClient, message: str, code: int, log_file: Path
) -> None:
    log.error("%s", message)
    client.fail(message)
    app.exit(return_code=code, message=f"zakura console: error: {message} (log: {log_file})")


def hostile_settings(args: argparse.Namespace) -> tuple[int, str | None]:
    """``--hostile`` and ``--hostile-mode`` as the testnet takes them: how many, and the mode.

    The mode defaults to :data:`DEFAULT_HOSTILE_MODE` only with ``--hostile`` > 0; given alone
    it is refused like ``zakura testnet`` refuses it (:func:`zakura.testnet.check_hostile`),
    because silently running an honest testnet would hide the operator's mistake.

    Raises:
        zakura.args.UsageError: Naming the flag to fix.
    """
    from zakura.testnet import HostileSettingsError, check_hostile

    hostile: int = getattr(args, "hostile", 0)
    given: str | None = getattr(args, "hostile_mode", None)
    mode = given if given is not None or not hostile else DEFAULT_HOSTILE_MODE
    try:
        check_hostile(args.peers + hostile, hostile, mode)
    except HostileSettingsError as exc:
        raise UsageError(exc.flag, str(exc)) from None
    return hostile, mode


async def run_console(args: argparse.Namespace) -> int:
    """``zakura console``: the app now, the network behind it, everything stopped at the end.

    Args:
        args: Parsed flags (``peers``, ``data_dir``, ``refresh``, ``read_only``, ``theme``,
            ``ascii``, ``log_file``, ``log_level``, ``blocks``, ``mine_interval``; ``hostile``,
            ``hostile_mode``, ``api`` and the ``ssh`` flags may be missing: no hostile nodes, no
            API, no SSH).

    Returns:
        The exit code: 0 after a normal quit, 1 when the app crashed or the node failed, 2
        when a testnet node rejected its input.

    Raises:
        console.usage.UsageError: Bad input found before the app started (the console's own
            checks raise it too, such as an unknown ``--theme``).
        console.launcher.NotATerminal: stdin or stdout is not a terminal.
    """
    # Read from the module at call time (not bound at import), so tests can replace them.
    from console import launcher
    from zakura.local_network import LocalNetwork
    from zakura.node_thread import NODE_THREAD_SWITCH_INTERVAL, ThreadBackend, gil_switch_interval

    launcher.check_theme(args.theme)
    if args.log_file is not None:
        launcher.check_log_file(args.log_file)
    hostile, hostile_mode = hostile_settings(args)
    api: tuple[str, int] | None = getattr(args, "api", None)
    if args.data_dir is not None:
        check_data_dir(args.data_dir)
    if api is not None:
        node_dir = None if args.data_dir is None else Path(args.data_dir) / "node"
        check_api(api, node_dir, token_dir="DIR/node")
    ssh = ssh_config_from_args(args, probe=True)
    launcher.check_terminal()
    writer = open_record(args)
    owns_root = args.data_dir is None
    root = Path(tempfile.mkdtemp(prefix="zakura-console-")) if owns_root else Path(args.data_dir)
    # An owned temp dir is removed only after a clean exit: otherwise its logs explain why.
    remove_root = False
    handler: logging.Handler | None = None
    try:
        log_file = Path(args.log_file) if args.log_file is not None else root / "console.log"
        handler = launcher.configure_logging(log_file, args.log_level)
        hostiles = f" and {hostile} hostile ({hostile_mode})" if hostile else ""
        log.info(
            "zakura console starting: %d peers%s, node 0 with %d blocks mining every %s, "
            "data in %s",
            args.peers,
            hostiles,
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
            hostile=hostile,
            hostile_mode=hostile_mode,
            api=api,
            ssh=ssh,
            diagnostics=thresholds_from_args(args),
        )
        backend = ThreadBackend(network)
        chain = f" (node 0 pre-generates {args.blocks:,} blocks)" if args.blocks else ""
        client = launcher.PendingClient(
            read_only=args.read_only,
            starting=f"starting a local testnet of {args.peers} peers{hostiles}{chain} in {root}",
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
        # Reads your node as the views do (waiting until it is up), whatever view is shown.
        recorder = None if writer is None else start_recorder(client, writer, args.refresh)
        try:
            with gil_switch_interval(NODE_THREAD_SWITCH_INTERVAL):
                await app.run_async()
        finally:
            log.info("console closed (return code %s); stopping everything", app.return_code)
            bring_up.cancel()
            with contextlib.suppress(BaseException):
                await bring_up
            if recorder is not None:
                report(PROG, await recorder.stop(), recorder.writer.error)
            # The Fleet view's HTTP sessions to the testnet nodes: closed here, or aiohttp
            # prints "Unclosed connector" over the operator's shell after the app has gone.
            with contextlib.suppress(Exception):
                await app.fleet.close()
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
