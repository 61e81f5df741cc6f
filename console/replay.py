"""The replay client: a :class:`~console.client.NodeClient` over a recording or a trace.

``zakura replay FILE`` runs the ordinary console on it, so every view shows the recorded
state exactly as it shows a live node's: :meth:`ReplayClient.snapshot` is the snapshot read
last at or before the replay position, :meth:`ReplayClient.journal_since` the journal rows
written up to it. ``zakura replay DIR`` does the same over a trace directory
(:class:`~node_core.observe.trace_reader.TraceJournal`): its rows are the journal, and there
is no snapshot (:attr:`ReplayClient.journal_only`; the app says so on the views that need
one). The position belongs to a :class:`ReplayClock` (play, pause, speed, seek); the replay
app (:mod:`console.replay_app`) moves it with keys and draws it on the timeline.

Journal rows are numbered by their place in the recording (``seq`` 1, 2, ... in file order;
in a trace, in time order), not by the node's own seq: a recording may span a restart of the
node (its seq starts again) or start mid-way through its journal, and the console pages
through the journal by seq.

Read-only by construction: :meth:`ReplayClient.act` refuses every action, saying why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console.client import ActionRequest, ActionResult, JournalRow, Snapshot
from node_core.observe.record_reader import Recording
from node_core.observe.trace_reader import TraceJournal, resolve_trace_dir

__all__ = ["MARK_KINDS", "SPEEDS", "Mark", "ReplayClient", "ReplayClock", "marks_of"]

#: Playback speeds, slowest first (``<`` and ``>`` step through them).
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)

#: ``(table, event)`` of a journal row -> the mark the timeline draws for it.
MARK_KINDS: dict[tuple[str, str], str] = {
    ("fault", "injected"): "fault",
    ("routine", "panicked"): "panic",
    ("misbehavior", "recorded"): "misbehavior",
    ("header_sync", "reorg"): "reorg",
}

REFUSAL = "replay: a recording cannot be acted on ({what} refused; this console is read-only)"


@dataclass(frozen=True, slots=True)
class Mark:
    """A marked event on the timeline: when (recording time), what kind, and a short text."""

    t: float
    kind: str
    text: str


def marks_of(rows: list[JournalRow]) -> list[Mark]:
    """The marks among ``rows``, in time order."""
    out = []
    for row in rows:
        kind = MARK_KINDS.get((str(row.get("table")), str(row.get("event"))))
        if kind is None:
            continue
        peer = row.get("peer") or ""
        fields = row.get("fields") or {}
        detail = fields.get("kind") or fields.get("reason") or fields.get("error") or ""
        text = " ".join(str(p) for p in (kind, detail, peer) if p)
        out.append(Mark(float(row.get("wall") or 0.0), kind, text))
    out.sort(key=lambda m: m.t)
    return out


class ReplayClock:
    """The replay position: recording time, moving at ``speed`` while playing.

    Args:
        start, end: The recording's first and last time; the position stays between them, and
            playing stops at the end.
        clock: A monotonic clock (replaceable in tests).
    """

    def __init__(
        self, start: float, end: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.start = start
        self.end = max(start, end)
        self._clock = clock
        self._base = start
        self._since = clock()
        self.playing = False
        self.speed = 1.0

    @property
    def position(self) -> float:
        if not self.playing:
            return self._base
        pos = self._base + (self._clock() - self._since) * self.speed
        if pos >= self.end:
            self._base, self.playing = self.end, False
            return self.end
        return pos

    @property
    def duration(self) -> float:
        return self.end - self.start

    def seek(self, t: float) -> float:
        """Move to ``t`` (clamped to the recording); playing goes on from there."""
        self._base = min(max(t, self.start), self.end)
        self._since = self._clock()
        return self._base

    def set_playing(self, playing: bool) -> None:
        pos = self.position
        if playing and pos >= self.end:
            pos = self.start  # play at the end starts again
        self.playing = playing
        self.seek(pos)

    def set_speed(self, speed: float) -> None:
        self.seek(self.position)
        self.speed = speed

    def extend(self, end: float) -> None:
        """The recording grew (it is still being written)."""
        self.end = max(self.end, end)


class ReplayClient:
    """A read-only :class:`~console.client.NodeClient` over an open :class:`Recording`."""

    def __init__(
        self,
        recording: Recording | TraceJournal,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.recording = recording
        self.clock = ReplayClock(recording.start, recording.end, clock=clock)
        self._numbered = 0
        if isinstance(recording, TraceJournal):
            # Rows are read on demand and come numbered; the marks were kept while indexing.
            self.marks = marks_of(recording.marked_rows)
            self._numbered = len(recording.rows)
        else:
            self.marks = marks_of(recording.rows)
            self._number(len(recording.rows))

    @classmethod
    def open(cls, path: Path, *, node: str | None = None) -> ReplayClient:
        """A recording file, or a trace directory (``node`` picks one node of a testnet's
        trace root). Raises :class:`~node_core.observe.record_format.RecordingError` (one
        line; a :class:`~node_core.observe.trace_reader.TraceError` for a directory)."""
        path = Path(path)
        if path.is_dir():
            return cls(TraceJournal(resolve_trace_dir(path, node), marked=MARK_KINDS.keys()))
        return cls(Recording(path))

    @property
    def journal_only(self) -> bool:
        """A trace directory: journal rows, no snapshots (nor wall-clock times)."""
        return isinstance(self.recording, TraceJournal)

    # ------------------------------------------------------------------ NodeClient
    @property
    def read_only(self) -> bool:
        return True

    @property
    def description(self) -> str:
        rec = self.recording
        if isinstance(rec, TraceJournal):
            return f"replay of the trace {rec.path.name} ({rec.node_label or 'node unknown'})"
        return f"replay of {rec.path.name}"

    async def snapshot(self) -> Snapshot:
        return self.snapshot_at(self.clock.position)

    async def journal_since(self, seq: int, limit: int = 500) -> list[JournalRow]:
        return self.rows_between(seq, self.clock.position, limit)

    async def act(self, request: ActionRequest) -> ActionResult:
        return ActionResult(False, REFUSAL.format(what=request.kind))

    # ------------------------------------------------------------------ replay reads
    def snapshot_at(self, t: float) -> Snapshot:
        """The snapshot the console showed at ``t`` (an empty-node document when the
        recording holds journal rows only)."""
        found = self.recording.snapshot_at(t)
        if found is None:
            what = "trace directory" if self.journal_only else "recording"
            raise LookupError(f"this {what} holds no snapshots")
        return found[1]

    def rows_between(self, seq: int, t: float, limit: int | None = None) -> list[JournalRow]:
        """Rows numbered above ``seq`` and written at or before ``t``, oldest first."""
        upto = self.recording.rows_until(t)
        rows = self.recording.rows
        stop = upto if limit is None else min(upto, max(seq, 0) + limit)
        return rows[max(seq, 0) : stop]

    def visible_rows(self, t: float) -> int:
        """How many journal rows the console has seen at ``t``."""
        return self.recording.rows_until(t)

    def refresh(self) -> bool:
        """Pick up what a recording still being written has added; ``True`` if anything."""
        recording = self.recording
        if isinstance(recording, TraceJournal) or not recording.refresh():
            return False
        self.clock.extend(recording.end)
        self.marks = marks_of(recording.rows)
        self._number(len(self.recording.rows))
        return True

    def _number(self, upto: int) -> None:
        """Give rows their place in the recording as ``seq`` (in place, once each, as they
        are read); the node's own seq stays in ``node_seq``."""
        recording = self.recording
        if isinstance(recording, TraceJournal):
            return
        rows: list[dict[str, Any]] = recording.rows
        for i in range(self._numbered, upto):
            row = rows[i]
            row["node_seq"] = row.get("seq")
            row["seq"] = i + 1
        self._numbered = max(self._numbered, upto)
