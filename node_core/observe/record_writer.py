"""Writing a recording (:mod:`.record_format`): a writer thread, and the loop that feeds it.

:class:`RecordWriter` owns the file. Callers hand it snapshots and journal rows with
:meth:`~RecordWriter.add` (one queue operation, never a wait: a full queue drops the frame
and counts it); its thread diffs, encodes, compresses and writes, and flushes to the OS at
least every :data:`~.record_format.FLUSH_SECS`, which is what a crash can lose. No fsync: a
``kill -9`` keeps what reached the OS, and a recording is diagnostics, not a ledger.

:class:`Recorder` is what ``--record`` runs: every interval it reads a snapshot and the
journal rows since the last one from a :class:`RecordSource` (any object with the console
client's ``snapshot()`` and ``journal_since()``: the node itself through
:class:`NodeSource`, a node thread's client, the remote client of ``zakura attach``) and
hands them to the writer. Polling rather than subscribing keeps one code path for a node in
this process and one across the network; the journal's ``seq`` makes the rows gap-free
either way, and a restarted node (a new ``boot_id``) is read from its first row again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from node_core.observe.record_format import (
    FILE_HEADER,
    FLUSH_SECS,
    KEYFRAME_SECS,
    BlockEncoder,
    RecordingError,
)
from node_core.observe.record_reader import check_header, scan_blocks

__all__ = ["NodeSource", "RecordSource", "RecordStats", "RecordWriter", "Recorder"]

log = logging.getLogger(__name__)

#: Frames the writer may be behind before new ones are dropped (each is one snapshot).
QUEUE_FRAMES = 256
#: Journal rows asked for per request while catching up.
ROWS_PER_READ = 5000


@dataclass(frozen=True, slots=True)
class RecordStats:
    """What a recording holds so far (reported at the end, and while it runs)."""

    path: Path
    bytes: int
    snapshots: int
    rows: int
    dropped: int

    def describe(self) -> str:
        """One line: ``recorded 480 snapshots and 1,234 journal rows (2.1 MB) to FILE``."""
        dropped = (
            f"; {self.dropped} frames dropped (the writer fell behind)" if self.dropped else ""
        )
        return (
            f"recorded {self.snapshots:,} snapshots and {self.rows:,} journal rows "
            f"({human_bytes(self.bytes)}) to {self.path}{dropped}"
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def open_for_append(path: Path) -> IO[bytes]:
    """The file positioned for new blocks: created with its header, or an existing recording
    with any torn tail (a crash mid-write) cut off. Raises :class:`RecordingError` for a file
    that is not a recording (it is never overwritten) or cannot be opened."""
    path = Path(path)
    try:
        f = open(path, "a+b")  # noqa: SIM115 - the writer thread owns and closes it
    except OSError as exc:
        raise RecordingError(f"{path}: {exc.strerror or exc}") from None
    try:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            f.write(FILE_HEADER)
            f.flush()
            return f
        f.seek(0)
        check_header(path, f.read(len(FILE_HEADER)))
        _headers, end, torn = scan_blocks(path, f, len(FILE_HEADER), size)
        if torn:
            log.warning("%s: cutting off %d bytes of a torn last block", path, torn)
            f.truncate(end)
        return f
    except BaseException:
        f.close()
        raise


class _Stop:
    __slots__ = ()


_STOP = _Stop()
_Item = tuple[float, dict[str, Any] | None, list[dict[str, Any]]] | _Stop


class RecordWriter:
    """Appends snapshots and journal rows to ``path`` from a daemon thread.

    Raises :class:`~.record_format.RecordingError` at construction when ``path`` cannot be
    written or is a file that is not a recording, so ``--record`` fails before anything starts.
    """

    def __init__(
        self,
        path: Path,
        *,
        keyframe_secs: float = KEYFRAME_SECS,
        flush_secs: float = FLUSH_SECS,
    ) -> None:
        self.path = Path(path)
        self._file = open_for_append(self.path)
        self._encoder = BlockEncoder(keyframe_secs)
        self._flush_secs = flush_secs
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=QUEUE_FRAMES)
        self._bytes = os.fstat(self._file.fileno()).st_size
        self._dropped = 0
        self._closed = False
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
        self._thread.start()

    def add(self, t: float, snapshot: dict[str, Any] | None, rows: list[dict[str, Any]]) -> bool:
        """Queue one frame (a snapshot read at ``t``, or ``None``, and the rows since the last
        frame); ``False`` when it was dropped. Never blocks."""
        if self._closed:
            return False
        try:
            self._queue.put_nowait((t, snapshot, rows))
        except queue.Full:
            self._dropped += 1
            return False
        return True

    def stats(self) -> RecordStats:
        enc = self._encoder
        return RecordStats(self.path, self._bytes, enc.snapshots, enc.rows, self._dropped)

    def close(self, timeout: float = 10.0) -> RecordStats:
        """Write everything queued, close the file and return what was recorded."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join(timeout)
        return self.stats()

    def _run(self) -> None:
        enc = self._encoder
        deadline: float | None = None
        try:
            while True:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    item = None
                if isinstance(item, tuple):
                    t, snapshot, rows = item
                    if rows:
                        enc.add_rows(rows)
                    if snapshot is not None:
                        enc.add_snapshot(t, snapshot)
                    if deadline is None and enc.pending:
                        deadline = time.monotonic() + self._flush_secs
                if item is _STOP or (deadline is not None and time.monotonic() >= deadline):
                    self._write(enc.flush())
                    deadline = None
                if item is _STOP:
                    return
        except Exception as exc:  # a full disk must not take the node down
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("recording to %s stopped", self.path)
        finally:
            with contextlib.suppress(OSError):
                self._file.close()

    def _write(self, data: bytes) -> None:
        if data:
            self._file.write(data)
            self._file.flush()
            self._bytes += len(data)


class RecordSource(Protocol):
    """What a recorder reads: the console client's read half."""

    async def snapshot(self) -> dict[str, Any]: ...

    async def journal_since(self, seq: int, limit: int = 500) -> list[dict[str, Any]]: ...


class _NodeLike(Protocol):
    def snapshot(self) -> Any: ...

    @property
    def journal(self) -> Any: ...


class NodeSource:
    """A node in this process as a :class:`RecordSource` (``zakura node --record``)."""

    def __init__(self, node: _NodeLike) -> None:
        self._node = node

    async def snapshot(self) -> dict[str, Any]:
        return dict(self._node.snapshot())

    async def journal_since(self, seq: int, limit: int = 500) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self._node.journal.since(seq, limit)]


class Recorder:
    """Reads ``source`` every ``interval`` seconds into ``writer``, as an asyncio task.

    A read that fails (a remote node gone, a node not up yet) records nothing for that tick;
    the next tick tries again.
    """

    def __init__(
        self,
        source: RecordSource,
        writer: RecordWriter,
        interval: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.writer = writer
        self.interval = interval
        self._clock = clock
        self._seq = 0
        self._boot: object = None
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> RecordStats:
        """Stop reading, take one last frame (the state at the end), close the file."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.tick(), timeout=2.0)
        return await asyncio.to_thread(self.writer.close)

    async def tick(self) -> None:
        """Read one frame: the snapshot, then every journal row up to it."""
        snapshot = await self.source.snapshot()
        t = self._clock()
        boot = snapshot.get("boot_id")
        if self._boot is not None and boot != self._boot:
            self._seq = 0  # the node restarted: its journal starts again at seq 1
        self._boot = boot
        rows: list[dict[str, Any]] = []
        while True:
            page = await self.source.journal_since(self._seq, ROWS_PER_READ)
            rows += page
            if page:
                self._seq = int(page[-1]["seq"])
            if len(page) < ROWS_PER_READ:
                break
        self.writer.add(t, snapshot, rows)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                log.debug("recorder: no frame this tick (%s)", exc)
            next_at = max(next_at + self.interval, loop.time())
            await asyncio.sleep(next_at - loop.time())
