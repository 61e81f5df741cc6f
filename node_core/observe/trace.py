"""JSONL trace tables in the Zakura reference layout (reference §5.1, §5.2).

One file per table (``<dir>/<table>.jsonl``), one orjson-encoded object per line. The layout is
kept byte-compatible with the Rust tracer so the same analysis scripts and invariant checks work
on both implementations.

Invariants:
    * The node never blocks on tracing: rows enter a bounded queue with ``put_nowait``; a full
      queue drops the row and counts it. Disk is touched only by the writer thread.
    * Rows are written in the order they were enqueued, so within one table and one node the
      file order is the emit order (cross-table order is not modelled, as in the reference).
    * Journal events are enqueued as the immutable events themselves and turned into rows on the
      writer thread, keeping the emitting side to one queue operation.
    * ``flush()`` returns only after every row enqueued before the call is in the OS (file
      buffers flushed; no fsync: a trace is diagnostics, not a ledger).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final

import orjson

from node_core.observe.journal import Journal, JournalEvent

__all__ = ["TRANSPORT_KEYS", "TRANSPORT_TABLES", "TableTrace", "TraceWriter", "load_trace"]

_log = logging.getLogger(__name__)

TRANSPORT_TABLES: Final = frozenset({"handshake", "conn", "stream", "ratelimit"})
"""Tables whose rows follow ``ZakuraTraceEvent``: a fixed key set, absent keys as null."""

TRANSPORT_KEYS: Final = (
    "conn",
    "stream",
    "peer",
    "role",
    "phase",
    "reason",
    "selected_protocol",
    "direction",
    "stream_kind",
    "network",
)
"""Keys every transport row carries, in the reference's order (after ts, node, event)."""

_COMMON_KEYS: Final = frozenset({"ts", "node", "event"})

# Table names become file names; refuse anything that could escape the trace directory.
_TABLE_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class _Flush:
    """Queue marker: everything before it is written once the writer reaches it."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop:
    """Queue marker: the writer drains up to here, closes its files and exits."""

    __slots__ = ()


_STOP: Final = _Stop()

# Queue items: a journal event, a prepared row (table, row, ts), or a marker.
_Item = JournalEvent | tuple[str, dict[str, object], int] | _Flush | _Stop


class TraceWriter:
    """Writes trace rows to per-table JSONL files from a daemon thread.

    Args:
        directory: Trace directory; created (with parents) now so a bad ``--trace-dir`` fails at
            start-up rather than silently on the first row.
        node_label: Value of every row's ``node`` key.
        queue_rows: Bound of the row queue; beyond it rows are dropped, never waited for.
        autostart: Start the writer thread now. ``False`` defers it to :meth:`start` (or the
            first :meth:`flush`), e.g. to create the writer before the node is running.

    Attributes:
        on_drop: Optional hook called in the emitting thread with the new drop total whenever
            a row is dropped; the node wires it to the ``zakura_trace_rows_dropped`` counter.
    """

    def __init__(
        self,
        directory: Path,
        node_label: str,
        *,
        queue_rows: int = 65_536,
        autostart: bool = True,
    ) -> None:
        if queue_rows < 1:
            raise ValueError(f"queue_rows must be >= 1, got {queue_rows}")
        self.directory = Path(directory)
        self.node_label = node_label
        self.on_drop: Callable[[int], None] | None = None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._start_mono = time.monotonic()
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_rows)
        self._dropped = 0
        self._written = 0
        self._errors = 0
        self._closed = False
        self._lock = threading.Lock()  # guards start/close, never taken on the emit path
        self._files: dict[str, IO[bytes]] = {}
        self._valid_tables: set[str] = set()
        self._unsubscribes: list[Callable[[], None]] = []
        self._thread = threading.Thread(
            target=self._run, name=f"trace-writer-{node_label}", daemon=True
        )
        self._started = False
        if autostart:
            self.start()

    # ----------------------------------------------------------------- public API

    @property
    def dropped(self) -> int:
        """Rows dropped because the queue was full."""
        return self._dropped

    @property
    def written(self) -> int:
        """Rows encoded and written to their table file by the writer thread."""
        return self._written

    @property
    def errors(self) -> int:
        """Rows lost on the writer side: unencodable values, bad table names, I/O errors."""
        return self._errors

    def start(self) -> None:
        """Start the writer thread; idempotent."""
        with self._lock:
            if not self._started and not self._closed:
                self._started = True
                self._thread.start()

    def attach(self, journal: Journal) -> None:
        """Trace every future event of ``journal`` (one row per event)."""
        self._unsubscribes.append(journal.subscribe(self._enqueue_event))

    def write_row(self, table: str, row: dict[str, object]) -> bool:
        """Enqueue a prepared row for ``<table>.jsonl``.

        ``ts`` (now) and ``node`` are added on the writer thread if the row lacks them. The
        writer takes ownership of ``row``: do not mutate it afterwards.

        Returns:
            True if queued; False if dropped (queue full, counted) or the writer is closed
            (not counted: nothing is lost that the node still expected to be traced).
        """
        if self._closed:
            return False
        ts = int((time.monotonic() - self._start_mono) * 1_000_000)
        return self._put((table, row, ts))

    def flush(self, timeout: float = 5.0) -> None:
        """Block until every row enqueued before this call is written and flushed.

        Blocking is fine here: this is for tests and shutdown, never the hot path.

        Raises:
            TimeoutError: The writer did not catch up within ``timeout`` seconds.
        """
        if self._closed and not self._thread.is_alive():
            return
        self.start()
        deadline = time.monotonic() + timeout
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            raise TimeoutError(f"trace queue stayed full for {timeout}s") from None
        if not marker.done.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"trace writer did not flush within {timeout}s")

    def close(self) -> None:
        """Detach from journals, flush, stop the thread and close files; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for unsubscribe in self._unsubscribes:
            unsubscribe()
        self._unsubscribes.clear()
        if not self._started:
            # Rows queued before start still belong on disk; run the writer once to drain them.
            self._started = True
            self._thread.start()
        try:
            self._queue.put(_STOP, timeout=5.0)
        except queue.Full:
            _log.error("trace writer for %s did not drain; closing anyway", self.node_label)
            return
        self._thread.join(timeout=10.0)

    # ------------------------------------------------------------- emitting side

    def _enqueue_event(self, event: JournalEvent) -> None:
        if not self._closed:
            self._put(event)

    def _put(self, item: _Item) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._dropped += 1
            hook = self.on_drop
            if hook is not None:
                try:
                    hook(self._dropped)
                except Exception:
                    _log.exception("trace on_drop hook failed")
            return False
        return True

    # --------------------------------------------------------------- writer side

    def _run(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if isinstance(item, _Stop):
                self._flush_files()
                self._close_files()
                return
            if isinstance(item, _Flush):
                self._flush_files()
                item.done.set()
                continue
            try:
                self._write(item)
            except Exception:
                self._errors += 1
                _log.exception("trace writer failed to write a row")
            if self._queue.empty():
                self._flush_files()

    def _write(self, item: JournalEvent | tuple[str, dict[str, object], int]) -> None:
        if isinstance(item, JournalEvent):
            table = item.table
            row = self._event_row(item)
        else:
            table, given, ts = item
            row = {"ts": ts, "node": self.node_label} | given
        line = orjson.dumps(row) + b"\n"
        self._file(table).write(line)
        self._written += 1

    def _event_row(self, ev: JournalEvent) -> dict[str, object]:
        row: dict[str, object] = {
            "ts": max(0, int((ev.mono - self._start_mono) * 1_000_000)),
            "node": self.node_label,
            "event": ev.event,
        }
        fields = ev.fields
        if ev.table in TRANSPORT_TABLES:
            for key in TRANSPORT_KEYS:
                row[key] = fields.get(key)
            if ev.peer is not None:
                row["peer"] = ev.peer
            if ev.service is not None:
                row["service"] = ev.service
        else:
            row["peer"] = ev.peer if ev.peer is not None else fields.get("peer")
            row["service"] = ev.service if ev.service is not None else fields.get("service")
        for key, value in fields.items():
            # Fields never override the common keys, nor explicit peer/service.
            if key not in row:
                row[key] = value
        return row

    def _file(self, table: str) -> IO[bytes]:
        f = self._files.get(table)
        if f is None:
            if table not in self._valid_tables:
                if not _TABLE_RE.fullmatch(table):
                    raise ValueError(f"invalid trace table name {table!r}")
                self._valid_tables.add(table)
            f = open(self.directory / f"{table}.jsonl", "ab")  # noqa: SIM115 - kept open
            self._files[table] = f
        return f

    def _flush_files(self) -> None:
        for table, f in self._files.items():
            try:
                f.flush()
            except OSError:
                self._errors += 1
                _log.exception("trace writer failed to flush %s.jsonl", table)

    def _close_files(self) -> None:
        for f in self._files.values():
            try:
                f.close()
            except OSError:
                _log.exception("trace writer failed to close a table file")
        self._files.clear()


class TableTrace:
    """Rows of one service table, written straight to the writer; a no-op without one.

    Services trace per-request events at network rate, so they skip the journal (which is
    the operator's) and enqueue rows directly. ``keys`` are written on every row, null when
    unset, so a table's rows are uniform (the reference's field keys).
    """

    __slots__ = ("_writer", "keys", "table")

    def __init__(self, writer: TraceWriter | None, table: str, keys: tuple[str, ...] = ()) -> None:
        self._writer = writer
        self.table = table
        self.keys = keys

    def row(self, event: str, **fields: object) -> None:
        writer = self._writer
        if writer is None:
            return
        row: dict[str, object] = {"event": event}
        for key in self.keys:
            row[key] = fields.pop(key, None)
        row.update(fields)
        writer.write_row(self.table, row)


def load_trace(directory: Path) -> dict[str, list[dict[str, object]]]:
    """Read a trace directory the way the Rust ``TraceReader::load`` does.

    Reads ``*.jsonl`` in ``directory`` and in each immediate subdirectory (sorted by path);
    the table name is the file stem; a subdirectory named ``node-X`` tags its rows with
    node ``X``, overriding the row's own ``node``; blank lines are skipped.

    Returns:
        Table name -> rows in file order (files concatenated in path order).

    Raises:
        FileNotFoundError: ``directory`` does not exist.
        ValueError: A line is not a JSON object; the message names the file and line.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"trace directory not found: {directory}")
    sources: list[tuple[Path, str | None]] = [(p, None) for p in directory.glob("*.jsonl")]
    for sub in directory.iterdir():
        if sub.is_dir():
            node = sub.name[len("node-") :] if sub.name.startswith("node-") else None
            sources.extend((p, node) for p in sub.glob("*.jsonl"))
    sources.sort(key=lambda s: s[0])
    tables: dict[str, list[dict[str, object]]] = {}
    for path, node in sources:
        rows = tables.setdefault(path.stem, [])
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    row = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not valid JSON: {exc}") from exc
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{lineno}: expected a JSON object")
                if node is not None:
                    row["node"] = node
                rows.append(row)
    return tables
