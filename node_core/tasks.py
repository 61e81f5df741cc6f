"""Owned background tasks: cancel them and wait until they are really gone.

Components that own long-running tasks (the header-sync reactor, the block-sync core, the
miner) stop the same way; a task that already failed must not make ``stop`` raise, and a
stop must not return while a task can still touch the store it is about to close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

__all__ = ["stop_tasks"]


async def stop_tasks(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel every task, then await each (their own exceptions are not ours to raise)."""
    owned = list(tasks)
    for task in owned:
        task.cancel()
    for task in owned:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
