"""``--record FILE``, shared by ``zakura node``, ``zakura console`` and ``zakura attach``.

It lives in ``console`` so that ``zakura attach``'s parser (:mod:`console.attach`) can use it
too (``console`` must not import ``zakura``).

Each command adds the flag with :func:`add_record`, opens the file with :func:`open_record`
before anything starts (so an unwritable path, or a file that is not a recording, is one line
naming the flag and exit code 2), runs a :class:`~node_core.observe.record_writer.Recorder`
over its node or client, and at the end prints what it recorded with :func:`report`. The
format, and why, is in :mod:`node_core.observe.record_format`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.usage import UsageError

if TYPE_CHECKING:
    from node_core.observe.record_writer import Recorder, RecordSource, RecordStats, RecordWriter

__all__ = ["RECORD_HELP", "add_record", "open_record", "report", "start_recorder"]

RECORD_HELP = (
    "record {what} and every journal row to FILE, one compressed file "
    "that `zakura replay FILE` plays back; an existing recording is appended to; a crash "
    "loses at most the last second (default: off)"
)


def add_record(parser: Any, what: str) -> None:
    """Add ``--record FILE``; ``what`` says whose snapshots, and how often."""
    parser.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="FILE",
        help=RECORD_HELP.format(what=what),
    )


def open_record(args: argparse.Namespace) -> RecordWriter | None:
    """The writer for ``--record`` (``None`` without the flag).

    Raises:
        UsageError: Naming ``--record``: the file cannot be written, or it exists and is not
            a zakura recording (it is never overwritten).
    """
    path: Path | None = getattr(args, "record", None)
    if path is None:
        return None
    from node_core.observe.record_format import RecordingError
    from node_core.observe.record_writer import RecordWriter

    if path.is_dir():
        raise UsageError("--record", f"{path} is a directory, not a file")
    try:
        return RecordWriter(path)
    except RecordingError as exc:
        raise UsageError("--record", str(exc)) from None


def start_recorder(source: RecordSource, writer: RecordWriter, interval: float) -> Recorder:
    """Start reading ``source`` into ``writer`` every ``interval`` seconds (on this loop)."""
    from node_core.observe.record_writer import Recorder

    recorder = Recorder(source, writer, interval)
    recorder.start()
    return recorder


def report(prog: str, stats: RecordStats, error: str | None = None) -> None:
    """One line on stderr: what was recorded, where, and how big it is."""
    line = f"{prog}: {stats.describe()}"
    if error:
        line += f" (stopped early: {error})"
    print(line, file=sys.stderr, flush=True)
