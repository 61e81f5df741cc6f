"""Reading a trace directory (``--trace-dir``) as one journal in time order, for ``zakura replay``.

A trace directory holds one JSONL file per table (:mod:`.trace`): the journal's tables
(``conn``, ``routine``, ``fault``, ...) and the services' own (``header_sync``,
``block_sync``). :class:`TraceJournal` merges the rows of every table by their ``ts`` into
one journal, the one the replay serves instead of a recording's: what a trace holds is rows,
never snapshots, so the views that draw snapshots have nothing to show (the replay says so).

Why it is read this way:

- **Index by time, rows read on demand.** A long sync traces millions of rows (every block
  requested, received and applied); holding each as a dict would cost a gigabyte. Opening
  the directory reads every line once (to check it and learn its ``ts``) and keeps, per row,
  its time and where it is (file and byte offset), sorted by time: 18 bytes a row. A seek is a
  bisection over the times; the rows the console then shows (at most its journal's 5,000) are
  read from their files by offset, so nothing is rescanned from the start.
- **Time is the trace's own.** ``ts`` is microseconds since the node created its trace writer,
  on the monotonic clock: a trace holds no wall-clock time. A row's time here (``wall`` and
  ``mono`` of the journal row) is seconds since that start, so the journal's time column reads
  as time into the trace (``00:01:02.125``).
- **Runs.** A node restarted on the same ``--trace-dir`` appends to its files, and its ``ts``
  starts again near 0. Within one file ``ts`` never goes back during a run (rows are written
  in emit order, timed by one monotonic clock), so a row whose ``ts`` is below the one before
  it in its file starts the next run; the runs are played one after the other, each starting
  where the one before ended (a table with no rows in a run cannot tell, so its later rows may
  be placed in an earlier run).
- **What is tolerated and what is refused**, as for recordings: an incomplete last line of a
  file (no newline yet: a node writing, or one killed mid-write) is left out and counted in
  :attr:`TraceJournal.torn`; any other line that is not a JSON object with an integer ``ts``
  and a string ``event`` is a :class:`TraceError` naming the file and line, since the rows
  around it cannot be trusted either.
"""

from __future__ import annotations

import bisect
import gc
from array import array
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn, overload

import orjson

from node_core.observe.record_format import RecordingError

__all__ = ["TraceError", "TraceJournal", "TraceRows", "resolve_trace_dir", "trace_nodes"]

#: The extension of a table file, as :class:`~.trace.TraceWriter` names them.
TABLE_SUFFIX = ".jsonl"
#: The keys of a trace row that are not the journal row's ``fields``.
_ROW_KEYS = frozenset({"ts", "node", "event", "peer", "service"})
#: A seek reads each file from its first wanted line to its last in one read, up to this many
#: bytes apart (beyond, the rows are far apart, from two runs: read one by one).
SPAN_READ_MAX = 32 << 20
#: Bits of a sort key below the time: the row's index in scan order (ties keep file order).
_INDEX_BITS = 40

JournalRow = dict[str, Any]


class TraceError(RecordingError):
    """A path that cannot be replayed as a trace directory. A
    :class:`~.record_format.RecordingError` (one line naming the path and the problem), so
    whoever opens a replay catches one error for both inputs."""


def _tables(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob(f"*{TABLE_SUFFIX}") if p.is_file())


def trace_nodes(directory: Path) -> list[str]:
    """The ``node-NN`` subdirectories holding trace tables (``zakura testnet --trace-dir``)."""
    try:
        subs = sorted(p for p in Path(directory).iterdir() if p.is_dir())
    except OSError:
        return []
    return [p.name for p in subs if p.name.startswith("node-") and _tables(p)]


def resolve_trace_dir(path: Path, node: str | None = None) -> Path:
    """The directory of table files ``path`` names (``node`` picks one node of a testnet's
    trace root: ``node-01`` or ``01``).

    Raises:
        TraceError: ``path`` is not a directory, is empty, holds no trace tables, or holds a
            testnet's (one subdirectory per node) and ``node`` does not pick one of them.
    """
    path = Path(path)
    if not path.is_dir():
        raise TraceError(f"{path} is not a directory")
    nodes = trace_nodes(path)
    if node is not None:
        name = node if node.startswith("node-") else f"node-{node}"
        if name not in nodes:
            have = ", ".join(nodes) if nodes else "none"
            raise TraceError(f"{path} holds no trace of {name} (its nodes: {have})")
        return path / name
    if _tables(path):
        return path
    if nodes:
        raise TraceError(
            f"{path} holds the traces of {len(nodes)} nodes ({', '.join(nodes)}): "
            f"pick one with --node {nodes[0]}"
        )
    try:
        empty = not any(path.iterdir())
    except OSError as exc:
        raise TraceError(f"{path}: {exc.strerror or exc}") from None
    if empty:
        raise TraceError(f"{path} is an empty directory: no trace tables (*.jsonl) to replay")
    raise TraceError(
        f"{path} holds no trace tables (*.jsonl, as --trace-dir writes them) and is not a recording"
    )


class TraceJournal:
    """A trace directory's rows as one journal in time order (see the module docstring).

    Args:
        directory: The directory of table files (:func:`resolve_trace_dir` finds it).
        marked: ``(table, event)`` pairs whose rows are kept decoded in :attr:`marked_rows`
            (the replay's timeline marks), so nobody has to read every row for them.

    Raises:
        TraceError: No table files, no rows, a malformed line, or an unreadable file.
    """

    def __init__(self, directory: Path, *, marked: Collection[tuple[str, str]] = ()) -> None:
        self.path = Path(directory)
        self.files = _tables(self.path)
        self._table_names = [p.stem for p in self.files]
        if not self.files:
            raise TraceError(f"{self.path} holds no trace tables (*.jsonl)")
        #: Bytes of incomplete last lines left out (a node still writing, or killed).
        self.torn = 0
        #: The ``node`` of the first row read (the node's label).
        self.node_label = ""
        self.marked_rows: list[JournalRow] = []
        self._handles: dict[int, IO[bytes]] = {}
        self._scan(set(marked))
        self.rows = TraceRows(self)

    # ------------------------------------------------------------------ scanning
    def _scan(self, marked: set[tuple[str, str]]) -> None:
        ts_of, run_of, file_of, offset_of = array("q"), array("H"), array("H"), array("q")
        run_ends: list[int] = []
        kept: dict[int, tuple[str, dict[str, Any]]] = {}
        loads = orjson.loads
        for index, path in enumerate(self.files):
            table = path.stem
            run, last = 0, -1
            for offset, lineno, raw in self._lines(path):
                # One parse and a few checks per line: a long sync has millions of them.
                try:
                    row = loads(raw)
                    ts = row["ts"]
                    event = row["event"]
                    good = ts.__class__ is int and ts >= 0 and event.__class__ is str
                except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
                    good = False
                if not good:
                    _refuse(path, lineno, raw)
                if ts < last:
                    run += 1  # the node restarted and appended: a new run
                if run == len(run_ends):
                    run_ends.append(0)
                last = ts
                if ts > run_ends[run]:
                    run_ends[run] = ts
                if marked and (table, event) in marked:
                    kept[len(ts_of)] = (table, row)
                ts_of.append(ts)
                run_of.append(run)
                file_of.append(index)
                offset_of.append(offset)
                if not self.node_label and isinstance(row.get("node"), str):
                    self.node_label = row["node"]
        if not ts_of:
            raise TraceError(f"{self.path}: its trace tables hold no rows yet: nothing to show")
        self.runs = len(run_ends)
        base = [0]
        for end in run_ends[:-1]:
            base.append(base[-1] + end)  # each run starts where the one before ended
        keys = [((base[run_of[i]] + ts_of[i]) << _INDEX_BITS) | i for i in range(len(ts_of))]
        keys.sort()  # the files are sorted runs already: timsort merges them
        mask = (1 << _INDEX_BITS) - 1
        #: Row time (seconds since the trace started), sorted: what a seek bisects.
        self._times = array("d", [(k >> _INDEX_BITS) / 1e6 for k in keys])
        order = [k & mask for k in keys]
        del keys
        self._file = array("H", [file_of[i] for i in order])
        self._offset = array("q", [offset_of[i] for i in order])
        if kept:
            for position, i in enumerate(order):
                if i in kept:
                    table, row = kept[i]
                    t = self._times[position]
                    self.marked_rows.append(_journal_row(table, row, t, position))

    def _lines(self, path: Path) -> Iterator[tuple[int, int, bytes]]:
        """``(byte offset, line number, line)`` of every non-blank complete line."""
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise TraceError(f"{path}: {exc.strerror or exc}") from None
        with f:
            offset, lineno = 0, 0
            while lines := f.readlines(1 << 20):
                for raw in lines:
                    lineno += 1
                    if raw[-1:] != b"\n":
                        self.torn += len(raw)  # the last line, still being written
                        return
                    if not raw.isspace():
                        yield offset, lineno, raw
                    offset += len(raw)

    # ------------------------------------------------------------------ the index
    def __len__(self) -> int:
        return len(self._times)

    @property
    def start(self) -> float:
        """Time of the first row: 0 is when the node created its trace writer."""
        return self._times[0]

    @property
    def end(self) -> float:
        return self._times[-1]

    @property
    def duration(self) -> float:
        return self.end - self.start

    def rows_until(self, t: float) -> int:
        """How many rows were written at or before ``t`` (they come first)."""
        return bisect.bisect_right(self._times, t)

    def row(self, position: int) -> JournalRow:
        """The row at ``position`` in time order, read from its file, numbered ``position+1``."""
        return self.rows_between(position, position + 1)[0]

    def rows_between(self, first: int, stop: int) -> list[JournalRow]:
        """The rows at positions ``first`` to ``stop - 1``, in time order.

        A run of rows close in time is, in each file, a run of consecutive lines (a file is
        in time order), so each file is read once from the first of its lines to the last,
        not once per row: a seek's 5,000 rows are a few reads, not 5,000 seeks. The cyclic
        garbage collector is paused meanwhile, as for a recording's snapshots
        (:meth:`~.record_reader.Recording._decoded`): building thousands of dicts at once sets
        off its full passes over the console's heap, which cost more than the rows, and
        decoded JSON holds no cycles.
        """
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._rows_between(first, stop)
        finally:
            if enabled:
                gc.enable()

    def _rows_between(self, first: int, stop: int) -> list[JournalRow]:
        first, stop = max(first, 0), min(stop, len(self._times))
        wanted: dict[int, list[int]] = {}
        for position in range(first, stop):
            wanted.setdefault(self._file[position], []).append(position)
        lines: dict[tuple[int, int], bytes] = {}
        for index, positions in wanted.items():
            where = [self._offset[p] for p in positions]
            lines.update(((index, o), raw) for o, raw in self._read(index, where))
        out = []
        files, offsets, times, tables = self._file, self._offset, self._times, self._table_names
        loads = orjson.loads
        for position in range(first, stop):
            index = files[position]
            try:
                row = loads(lines[index, offsets[position]])
            except (KeyError, orjson.JSONDecodeError):  # the file changed since it was scanned
                path = self.files[index]
                raise TraceError(f"{path} changed while it was being replayed") from None
            out.append(_journal_row(tables[index], row, times[position], position))
        return out

    def _read(self, index: int, offsets: list[int]) -> Iterator[tuple[int, bytes]]:
        """``(offset, line)`` of the lines of file ``index`` starting at ``offsets``."""
        f = self._handles.get(index)
        if f is None:
            f = self._handles[index] = open(self.files[index], "rb")  # noqa: SIM115
        low, high = min(offsets), max(offsets)
        if high - low > SPAN_READ_MAX:  # rows of two runs, far apart in the file: one by one
            for offset in offsets:
                f.seek(offset)
                yield offset, f.readline()
            return
        f.seek(low)
        chunk = f.read(high - low) + f.readline()
        offset = low
        for raw in chunk.splitlines(keepends=True):
            yield offset, raw
            offset += len(raw)

    # ------------------------------------------------------------------ replay source
    def snapshot_at(self, t: float) -> None:
        """A trace holds no snapshots."""
        return None

    def refresh(self) -> bool:
        """A trace directory is read once, when it is opened (rows added later may belong
        anywhere in time order: reopen to see them)."""
        return False

    def close(self) -> None:
        for f in self._handles.values():
            f.close()
        self._handles.clear()


class TraceRows(Sequence[JournalRow]):
    """:attr:`TraceJournal.rows`: the rows in time order, each read when it is asked for."""

    def __init__(self, journal: TraceJournal) -> None:
        self._journal = journal

    def __len__(self) -> int:
        return len(self._journal)

    @overload
    def __getitem__(self, i: int) -> JournalRow: ...
    @overload
    def __getitem__(self, i: slice) -> list[JournalRow]: ...
    def __getitem__(self, i: int | slice) -> JournalRow | list[JournalRow]:
        n = len(self._journal)
        if isinstance(i, slice):
            first, stop, step = i.indices(n)
            if step == 1:
                return self._journal.rows_between(first, stop)
            return [self._journal.row(k) for k in range(first, stop, step)]
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        return self._journal.row(i)


def _refuse(path: Path, lineno: int, raw: bytes) -> NoReturn:
    """Say what is wrong with a line that is not a trace row."""
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise TraceError(f"{path}:{lineno}: not valid JSON ({exc})") from None
    if not isinstance(row, dict):
        raise TraceError(f"{path}:{lineno}: not a trace row (a JSON object)")
    ts = row.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
        raise TraceError(f"{path}:{lineno}: not a trace row (no integer ts >= 0)")
    raise TraceError(f"{path}:{lineno}: not a trace row (no event name)")


def _journal_row(table: str, row: dict[str, Any], t: float, position: int) -> JournalRow:
    """A trace row as the console's journal row. Keys the trace writes as null on every row
    of its table (the reference's uniform rows) are left out of ``fields``, as the live
    journal never had them."""
    fields = {k: v for k, v in row.items() if k not in _ROW_KEYS and v is not None}
    return {
        "seq": position + 1,
        "node_seq": None,
        "mono": t,
        "wall": t,
        "table": table,
        "event": row["event"],
        "peer": row.get("peer"),
        "service": row.get("service"),
        "fields": fields,
    }
