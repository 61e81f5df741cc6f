"""Helpers for the chaos tests (imported as ``chaoskit``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path


def proc_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (``R``, ``S``, ``T`` stopped, ``Z`` zombie ...),
    or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone (it no longer runs any code)."""
    return proc_state(pid) not in (None, "Z", "X")


async def poll(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``cond()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
