"""``zakura attach URL``: the console on a node that runs elsewhere, over its control API.

The attach app itself (its flags, the token, the remote client, the Fleet view) lives with the
console in :mod:`console.attach`; this module puts it on the command line and turns its
start-up errors into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from zakura.args import fail_line

PROG = "zakura attach"


def add_parser(sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``attach`` to the ``zakura`` subcommands ``sub`` (Textual is imported only by run)."""
    from console.attach import add_parser as add_attach_parser

    add_attach_parser(sub, formatter_class)


def run(args: argparse.Namespace) -> int:
    """``zakura attach``. Raises :class:`~console.usage.UsageError` (an unknown ``--theme``,
    an unwritable ``--log-file`` ...), which :func:`zakura.cli.main` reports."""
    from console.attach import AttachError, run_attach
    from console.launcher import NotATerminal

    try:
        if args.serve is not None:
            from zakura.serve import serve

            if args.record is not None:
                raise AttachError("--record with --serve: record with a console in a terminal")
            return serve(args)
        return asyncio.run(run_attach(args))
    except (AttachError, NotATerminal) as exc:
        return fail_line(PROG, str(exc))
