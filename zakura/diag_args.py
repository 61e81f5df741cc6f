"""``--diag KEY=VALUE``: the diagnostic thresholds ``zakura node`` and ``zakura console`` share.

One repeated flag rather than ten: ``--help`` lists every key with its default and the
diagnostic it sets (from :data:`node_core.observe.diagnostics.KNOBS`, so the list cannot
drift from the code), and a new diagnostic adds a key, not a flag. Each item is checked as it
is parsed, so a bad one is argparse's one-line usage error naming ``--diag`` (exit 2).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from node_core.observe.diagnostics import knobs_help, parse_diag

if TYPE_CHECKING:
    from node_core.observe.diagnostics import DiagnosticThresholds

#: The ``--help`` epilog section naming every key.
DIAG_HELP = knobs_help()


def diag_item(text: str) -> str:
    """One ``KEY=VALUE``, checked now (argparse reports the error against ``--diag``)."""
    try:
        parse_diag([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_diag_flag(parser: Any) -> None:
    """Add ``--diag`` to a subcommand's parser."""
    parser.add_argument(
        "--diag",
        type=diag_item,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a diagnostic threshold, e.g. --diag stall_s=10; repeat for several; the keys "
        "and their defaults are listed below (default: those defaults)",
    )


def thresholds_from_args(args: argparse.Namespace) -> DiagnosticThresholds:
    """The thresholds the ``--diag`` items set (each was checked while parsing)."""
    return parse_diag(getattr(args, "diag", None) or [])
