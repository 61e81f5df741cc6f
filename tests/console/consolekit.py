"""Helpers for the console's pilot tests (imported as ``consolekit``).

:class:`ScriptedClient` serves fixture documents the test edits between polls
(``await app.poll()`` renders one frame), so every assertion is about a known frame.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Static

from console.app import ZakuraConsole
from console.client import ActionRequest, ActionResult, JournalRow, Snapshot
from console.fixture import fixture_journal, fixture_snapshot
from console.widgets.peer_table import PeerTable

S = TypeVar("S", bound=Screen[Any])


@dataclass
class ScriptedClient:
    """Fixture documents the test edits between polls; each poll sees a fresh copy.

    Actions always succeed and are remembered in :attr:`actions`, in order."""

    snap: Snapshot = field(default_factory=lambda: fixture_snapshot(6))
    journal: list[JournalRow] = field(default_factory=list)
    read_only: bool = False
    description: str = "scripted"
    actions: list[ActionRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.journal:
            self.journal = fixture_journal(self.snap)

    async def snapshot(self) -> Snapshot:
        return copy.deepcopy(self.snap)

    async def journal_since(self, seq: int, limit: int = 500) -> list[JournalRow]:
        return [r for r in self.journal if r["seq"] > seq][-limit:]

    async def act(self, request: ActionRequest) -> ActionResult:
        self.actions.append(request)
        return ActionResult(True, f"{request.describe()}: scripted")

    def emit(
        self,
        table: str,
        event: str,
        peer: str | None = None,
        service: str | None = None,
        **fields: Any,
    ) -> JournalRow:
        """Append one journal row with the next seq (and move the snapshot's ``journal_seq``)."""
        seq = int(self.journal[-1]["seq"]) + 1 if self.journal else 1
        row: JournalRow = {
            "seq": seq,
            "mono": float(seq),
            "wall": float(self.snap["generated_at"]) + seq / 10,
            "table": table,
            "event": event,
            "peer": peer,
            "service": service,
            "fields": fields,
        }
        self.journal.append(row)
        self.snap["journal_seq"] = seq
        return row


async def until(
    pilot: Pilot[Any], cond: Callable[[], bool], what: str = "", timeout: float = 5.0
) -> None:
    """Let the app run until ``cond`` holds (bounded), instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what or cond}"
        await pilot.pause(0.02)


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Re-check ``cond`` as the loop runs (never a fixed sleep) until it holds; fail naming
    ``what`` after ``timeout`` seconds, a deadline that only stops a broken run. For tests
    whose app runs without a :class:`Pilot` at hand, or that wait on a node rather than an
    app."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def start(app: ZakuraConsole, pilot: Pilot[Any]) -> None:
    """Wait for the app's first frame and let it render."""
    await until(pilot, lambda: app.state.snapshot is not None, "first frame")
    await pilot.pause()


async def open_screen(app: ZakuraConsole, pilot: Pilot[Any], key: str, kind: type[S]) -> S:
    """After the first frame, press ``key`` and return the view it opens (a ``kind``)."""
    await start(app, pilot)
    await pilot.press(key)
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, kind)
    return screen


def plain(widget: Static) -> str:
    """The text a ``Static`` renders."""
    return str(widget.render())


def assert_drawn(table: PeerTable) -> None:
    """What the table draws on screen is what it holds: every visible line shows its row's
    cells, in order (the view caches rendered lines and cells across frames)."""
    labels = table.row_labels()
    top = int(table.scroll_y)
    drawn = 0
    for y in range(1, table.size.height):
        index = top + y - 1
        if index >= len(labels):
            break
        line = table.render_line(y).text
        cells = table.rendered_cells(labels[index])
        assert cells is not None
        pos = 0
        for spec, (text, _style) in zip(table.specs, cells, strict=True):
            shown = text[: spec.width - 1]
            found = line.find(shown, pos)
            assert found >= 0, f"{labels[index]} {spec.key}: {shown!r} not drawn in {line!r}"
            pos = found + len(shown)
        drawn += 1
    assert drawn > 0
