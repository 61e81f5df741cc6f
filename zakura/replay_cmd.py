"""``zakura replay PATH``: the console over a recording made with ``--record``, or over a
trace directory written by ``--trace-dir``.

The app is :class:`~console.replay_app.ReplayConsole` over a
:class:`~console.replay.ReplayClient`; this module puts it on the command line. A file that
cannot be read as a recording (missing, foreign, another format version, corrupt), or a
directory that cannot be read as a trace (empty, no tables, a malformed line, a testnet's
trace root without ``--node``), is one line naming the path and the problem, and exit code
2, before the terminal is touched.
Textual is imported only when the command runs, so ``--help`` answers quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from zakura.args import fail_line

PROG = "zakura replay"
#: The replay speeds (``--speed`` and the ``<``/``>`` keys); :data:`console.replay.SPEEDS`,
#: written out so that ``--help`` imports no Textual.
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)

HELP = """\
Play back a recording made with --record (zakura node, zakura console or zakura attach) in
the operator console: every view shows the recorded node as the live console showed it at
that moment, and every action is refused (a recording cannot be acted on).

PATH may also be a trace directory written by --trace-dir (zakura node; zakura testnet
writes one per node, node-00, node-01, ...: pick one with --node). Its tables' rows, merged
in time order, are the journal, with the same timeline, marks and keys; a trace holds no
snapshots, so the views that draw them (Overview, Peers, Misbehavior, Parked, Diagnostics,
Charts) say so and point to the Journal view (3). Its times are time since the node started
tracing (a trace has no wall clock). A malformed line is refused, naming its file and line;
an incomplete last line (a node still writing, or killed) is left out.

A timeline bar under the status bar shows the position, the duration, and a mark where a
fault was injected (F), a routine panicked (P), misbehavior was recorded (M) or the header
chain reorganized (R); clicking it seeks there.

keys:
  space                play / pause
  < >                  slower / faster (x0.25 to x64)
  left / right         seek 5 s back / forward (shift: 1 min)
  g                    go to a time: 1:02:13, 12:30 or 90 from the start, 14:03:27Z
                       (UTC time of day; not in a trace), +30 or -1:00 from here, 50%
  n or ]  /  N or [    next / previous marked event
  1, 2, ..., Enter     the console's views and peer detail, as live
  7                    charts over the whole recording, a cursor at the position
  ?, q                 every key, quit

A recording still being written (or cut short by a crash) plays up to its last complete
second; at its end the replay looks for more every second (a trace directory is read once,
when it opens). A path that is neither a recording nor a trace directory, or is corrupt, is
one line naming the problem and exit code 2."""

EXAMPLE = """\
example:
  zakura node --listen 127.0.0.1:9000 --data-dir ./a --record a.zrec   # Ctrl+C later
  zakura console --record session.zrec
  zakura replay session.zrec
  zakura replay session.zrec --at 12:30 --paused      # open paused, 12 min 30 s in
  zakura replay session.zrec --speed 8
  zakura node --listen 127.0.0.1:9000 --data-dir ./a --trace-dir ./trace-a
  zakura replay ./trace-a                            # its journal tables
  zakura testnet --nodes 4 --trace-dir ./tr
  zakura replay ./tr --node node-01                  # one node of the testnet"""


def _speed(text: str) -> float:
    try:
        value = float(text.removeprefix("x"))
    except ValueError:
        value = -1.0
    if value not in SPEEDS:
        choices = ", ".join(f"{s:g}" for s in SPEEDS)
        raise argparse.ArgumentTypeError(f"expected one of {choices}, got {text!r}")
    return value


def add_parser(sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``replay`` to the ``zakura`` subcommands ``sub``."""
    p = sub.add_parser(
        "replay",
        help="play back a --record recording or a --trace-dir directory in the console",
        description=HELP,
        epilog=EXAMPLE,
        formatter_class=formatter_class,
    )
    p.add_argument(
        "path",
        type=Path,
        metavar="PATH",
        help="a recording written by --record, or a trace directory written by --trace-dir",
    )
    p.add_argument(
        "--node",
        default=None,
        metavar="NAME",
        help="in a testnet's trace directory (one node-NN subdirectory per node), the node to "
        "replay: node-01 or 01",
    )
    p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X",
        help="playback speed: 0.25, 0.5, 1, 2, 4, 8, 16, 32 or 64 (default: 1)",
    )
    p.add_argument(
        "--at",
        default=None,
        metavar="TIME",
        help="start at TIME, in any form g takes (default: the start of the recording)",
    )
    p.add_argument(
        "--paused", action="store_true", help="open paused (default: playing from the start)"
    )
    p.add_argument("--theme", default=None, metavar="NAME", help="colour theme, as for console")
    p.add_argument("--ascii", action="store_true", help="state glyphs as letters, as for console")
    p.add_argument(
        "--log-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="where the console logs (default: a file in the temp dir, named at exit)",
    )


async def run_replay(args: argparse.Namespace) -> int:
    """Open the recording, then run the replay console until the operator quits."""
    from console.launcher import (
        check_log_file,
        check_terminal,
        check_theme,
        configure_logging,
        default_theme,
    )
    from console.replay import ReplayClient
    from console.replay_app import ReplayConsole
    from console.replay_goto import parse_goto
    from console.usage import UsageError
    from node_core.observe.record_format import RecordingError
    from node_core.observe.record_reader import Recording

    check_theme(args.theme)
    if args.log_file is not None:
        check_log_file(args.log_file)
    if args.node is not None and args.path.is_file():
        raise UsageError("--node", "only a trace directory (a testnet's) holds several nodes")
    try:
        client = ReplayClient.open(args.path, node=args.node)
    except RecordingError as exc:
        return fail_line(PROG, str(exc))
    try:
        recording = client.recording
        if isinstance(recording, Recording) and not recording.snap_blocks:
            return fail_line(PROG, f"{args.path} holds no snapshot yet: nothing to show")
        clock = client.clock
        if args.at is not None:
            try:
                clock.seek(
                    parse_goto(
                        args.at,
                        position=clock.start,
                        start=clock.start,
                        end=clock.end,
                        wall=not client.journal_only,
                    )
                )
            except ValueError as exc:
                raise UsageError("--at", str(exc)) from None
        check_terminal()
        log_file = args.log_file or Path(tempfile.gettempdir()) / f"zakura-replay-{os.getpid()}.log"
        handler = configure_logging(log_file, "info")
        try:
            app = ReplayConsole(
                client,
                theme=default_theme(args.theme, os.environ),
                ascii=args.ascii,
                play=not args.paused,
                speed=args.speed,
            )
            await app.run_async()
            return 1 if app.return_code not in (None, 0) else 0
        finally:
            logging.getLogger().removeHandler(handler)
            print(f"{PROG}: log in {log_file}", file=sys.stderr)
    finally:
        client.recording.close()


def run(args: argparse.Namespace) -> int:
    """``zakura replay``. Raises :class:`~console.usage.UsageError` (``--theme``, ``--at``)."""
    from console.launcher import NotATerminal

    try:
        return asyncio.run(run_replay(args))
    except NotATerminal as exc:
        return fail_line(PROG, str(exc))
