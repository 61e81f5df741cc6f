"""The ``zakura`` command line: ``console`` (the default), ``attach``, ``node``, ``testnet``,
``demo``, ``token``, ``chaos`` and ``replay``.

This package is the application layer: the only one that imports both :mod:`node_core` and
:mod:`console` (docs/ARCHITECTURE.md, "Layers and packages"). Each subcommand lives in its own
module, which adds its parser (``add_parser(sub, formatter_class)``) and runs it
(``run(args) -> exit code``); this module builds the tree and dispatches. Every module is cheap
to import, so ``--help`` answers quickly: Textual, the node and the testnet's children are
loaded only by the command that needs them.

Every mistake an operator can make on the command line ends in one line on stderr that names
the flag and the problem, and exit code 2 - never a traceback (:mod:`zakura.args`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Protocol

from console.usage import UsageError
from zakura import attach_cmd, console_cmd, demo, node_cmd, replay_cmd, testnet, token_cmd
from zakura.args import Parser, fail
from zakura.chaos import run_cmd as chaos_cmd


class Subcommand(Protocol):
    """What each subcommand module provides."""

    def add_parser(self, sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


#: The subcommands in the order --help lists them; the first is what ``zakura`` alone runs.
COMMANDS: dict[str, Subcommand] = {
    "console": console_cmd,
    "node": node_cmd,
    "testnet": testnet,
    "demo": demo,
    "token": token_cmd,
    "attach": attach_cmd,
    "chaos": chaos_cmd,
    "replay": replay_cmd,
}


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
    sub = root.add_subparsers(
        dest="command", metavar="{console,attach,node,testnet,demo,token,chaos,replay}"
    )
    for module in COMMANDS.values():
        module.add_parser(sub, fmt)
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``zakura`` console script and ``python -m zakura``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        argv = ["console"]
    args = parser.parse_args(argv)
    if args.command is None:  # only top-level flags given: they all exit, but be safe
        args = parser.parse_args(["console"])
    prog = f"zakura {args.command}"
    try:
        return COMMANDS[args.command].run(args)
    except UsageError as err:
        return fail(prog, err)
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers were installed: nothing is running yet.
        return 130


if __name__ == "__main__":
    sys.exit(main())
