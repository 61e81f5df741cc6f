"""What every long-running ``zakura`` subcommand does with its process: where logs go, and
how it makes sure to exit once its node has stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

log = logging.getLogger(__name__)

#: How long a stopped node's leftover tasks get to honour cancellation before we exit anyway.
LEFTOVER_TASK_SECS = 5.0


def setup_logging(level: str) -> None:
    """Logs go to stderr so stdout stays machine-readable (the start line, the tables)."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


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
