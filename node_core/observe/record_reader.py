"""Reading a recording (:mod:`.record_format`): its index, a snapshot at any time, its journal.

Opening a file reads every block header and checks every block's CRC (a few hundred
milliseconds for an hour of 200 peers, all sequential reads), decompresses the journal blocks
only, and keeps an index of the snapshot blocks by time. :meth:`Recording.snapshot_at` then
finds the last snapshot block starting at or before the time asked, decodes from the keyframe
block before it (at most :data:`~.record_format.KEYFRAME_SECS` of deltas) and keeps the last
few decoded blocks, so playing forward decodes each block once.

What is tolerated and what is refused:

- an incomplete last block (a file still being written, or cut short by ``kill -9``) is
  ignored, and :attr:`Recording.torn` says how many bytes; a complete last block whose CRC
  fails is treated the same (a torn write), since nothing follows it;
- anything else wrong (a foreign file, another format version, a bad block in the middle) is
  a :class:`~.record_format.RecordingError` whose one-line message names the file and what is
  wrong with it.
"""

from __future__ import annotations

import bisect
import gc
import os
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from node_core.observe.record_format import (
    BLOCK,
    BLOCK_MARKER,
    FILE_HEADER,
    JOURNAL,
    KEYFRAME,
    KINDS,
    MAGIC,
    MAX_PAYLOAD,
    BlockHeader,
    RecordingError,
    block_crc,
)
from node_core.observe.record_patch import PatchError, apply

__all__ = ["Recording", "check_header", "scan_blocks"]

Snapshot = dict[str, Any]
#: Decoded snapshot blocks kept (a keyframe interval's worth and a little more).
CACHE_BLOCKS = 16


def check_header(path: Path, head: bytes) -> None:
    """Refuse a file that is not a recording this code reads, in one line."""
    if not head:
        raise RecordingError(f"{path} is empty: not a zakura recording")
    if not head.startswith(MAGIC) or len(head) < len(FILE_HEADER):
        raise RecordingError(
            f"{path} is not a zakura recording (it starts with {head[:8]!r}, "
            f"a recording with {MAGIC!r})"
        )
    if head != FILE_HEADER:
        raise RecordingError(
            f"{path} is a zakura recording of format version {head[len(MAGIC)]}, "
            f"this zakura reads version {FILE_HEADER[len(MAGIC)]}"
        )


def scan_blocks(
    path: Path, f: IO[bytes], offset: int, size: int
) -> tuple[list[BlockHeader], int, int]:
    """Every complete block from ``offset`` to ``size``: ``(headers, end of the last good
    block, bytes of torn tail)``. Raises :class:`RecordingError` for a corrupt block that is
    not the last."""
    headers: list[BlockHeader] = []
    f.seek(offset)
    while offset < size:
        raw = f.read(BLOCK.size)
        if len(raw) < BLOCK.size:
            break  # torn header
        marker, kind, count, length, crc, t0, t1 = BLOCK.unpack(raw)
        if marker != BLOCK_MARKER or kind not in KINDS or length > MAX_PAYLOAD:
            raise RecordingError(
                f"{path}: block at byte {offset} is corrupt (no block header there)"
            )
        end = offset + BLOCK.size + length
        if end > size:
            break  # torn payload
        payload = f.read(length)
        if block_crc(raw, payload) != crc:
            if end == size:
                break  # the last block, torn by a crash mid-write: ignored like a short one
            raise RecordingError(f"{path}: block at byte {offset} is corrupt (checksum mismatch)")
        headers.append(BlockHeader(offset, kind, count, length, crc, t0, t1))
        offset = end
    return headers, offset, size - offset


class Recording:
    """An open recording, indexed; :meth:`refresh` picks up blocks written since."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._file: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 - kept open for seeks
        except OSError as exc:
            raise RecordingError(f"{self.path}: {exc.strerror or exc}") from None
        try:
            check_header(self.path, self._file.read(len(FILE_HEADER)))
        except RecordingError:
            self._file.close()
            raise
        self._scanned = len(FILE_HEADER)
        self.snap_blocks: list[BlockHeader] = []
        self._key_of: list[int] = []
        self._t_firsts: list[float] = []
        self.rows: list[dict[str, Any]] = []
        self._row_t: list[float] = []
        self.torn = 0
        self._cache: OrderedDict[int, list[tuple[float, Snapshot]]] = OrderedDict()
        try:
            self.refresh()
        except RecordingError:
            self._file.close()
            raise

    # ------------------------------------------------------------------ index
    def refresh(self) -> bool:
        """Index the blocks written since the last look; ``True`` when there were some."""
        size = os.fstat(self._file.fileno()).st_size
        headers, self._scanned, self.torn = scan_blocks(self.path, self._file, self._scanned, size)
        for h in headers:
            if h.kind == JOURNAL:
                for row in self._lines(h):
                    self.rows.append(row)
                    t = float(row.get("wall") or 0.0)
                    # A running maximum, so the times stay sorted for bisect even where a
                    # row's wall clock stepped back.
                    self._row_t.append(max(t, self._row_t[-1]) if self._row_t else t)
                continue
            if h.kind == KEYFRAME:
                self._key_of.append(len(self.snap_blocks))
            elif not self.snap_blocks:
                raise RecordingError(
                    f"{self.path}: block at byte {h.offset} is corrupt (a delta before any "
                    "keyframe)"
                )
            else:
                self._key_of.append(self._key_of[-1])
            self.snap_blocks.append(h)
            self._t_firsts.append(
                max(h.t_first, self._t_firsts[-1]) if self._t_firsts else h.t_first
            )
        return bool(headers)

    @property
    def size(self) -> int:
        """Bytes of complete blocks (the file's size less any torn tail)."""
        return self._scanned

    @property
    def start(self) -> float:
        """Time of the first snapshot (or first journal row when there is no snapshot)."""
        if self.snap_blocks:
            return self.snap_blocks[0].t_first
        return self._row_t[0] if self._row_t else 0.0

    @property
    def end(self) -> float:
        """Time of the last snapshot or journal row, whichever is later."""
        last = self.snap_blocks[-1].t_last if self.snap_blocks else self.start
        return max(last, self._row_t[-1]) if self._row_t else last

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def keyframes(self) -> int:
        return sum(1 for h in self.snap_blocks if h.kind == KEYFRAME)

    def rows_until(self, t: float) -> int:
        """How many journal rows were written at or before ``t`` (they come first)."""
        return bisect.bisect_right(self._row_t, t)

    # ------------------------------------------------------------------ snapshots
    def snapshot_at(self, t: float) -> tuple[float, Snapshot] | None:
        """The last snapshot read at or before ``t`` (the first one before the start), with
        its time; ``None`` for a recording without snapshots."""
        if not self.snap_blocks:
            return None
        i = max(0, bisect.bisect_right(self._t_firsts, t) - 1)
        records = self._decoded(i)
        j = max(0, bisect.bisect_right([r[0] for r in records], t) - 1)
        return records[j]

    def snapshots(self, first_block: int = 0) -> Iterator[tuple[float, Snapshot]]:
        """Every snapshot, in order, from snapshot block ``first_block`` on (for tests, tools
        and the replay's chart series, which picks up where it stopped; replay seeks)."""
        for i in range(first_block, len(self.snap_blocks)):
            yield from self._decoded(i)

    def close(self) -> None:
        self._file.close()

    def _decoded(self, i: int) -> list[tuple[float, Snapshot]]:
        if (hit := self._cache.get(i)) is not None:
            self._cache.move_to_end(i)
            return hit
        # Decoding builds tens of thousands of dicts and lists at once, which sets off the
        # cyclic garbage collector, whose full passes over a big heap (a console's) cost more
        # than the decode: bench record_replay measured a seek's p99 falling from 82 ms to 33
        # ms without them. Decoded JSON holds no reference cycles, so pausing it loses nothing.
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._decode_through(i)
        finally:
            if enabled:
                gc.enable()

    def _decode_through(self, i: int) -> list[tuple[float, Snapshot]]:
        # Walk forward from the keyframe, or from the latest block already decoded after it.
        start = self._key_of[i]
        for j in range(i - 1, start - 1, -1):
            if j in self._cache:
                start = j + 1
                break
        records: list[tuple[float, Snapshot]] = []
        for j in range(start, i + 1):
            records = self._decode_one(j)
            self._cache[j] = records
            self._cache.move_to_end(j)
        while len(self._cache) > CACHE_BLOCKS:
            self._cache.popitem(last=False)
        return records

    def _decode_one(self, i: int) -> list[tuple[float, Snapshot]]:
        h = self.snap_blocks[i]
        lines = self._lines(h)
        out: list[tuple[float, Snapshot]] = []
        try:
            if h.kind == KEYFRAME:
                t, current = lines[0]
                out.append((float(t), current))
                lines = lines[1:]
            else:
                current = self._cache[i - 1][-1][1]
            for t, patch in lines:
                current = apply(current, patch)
                out.append((float(t), current))
        except (PatchError, ValueError, TypeError, IndexError) as exc:
            raise RecordingError(
                f"{self.path}: block at byte {h.offset} is corrupt ({exc})"
            ) from None
        return out

    def _lines(self, h: BlockHeader) -> list[Any]:
        self._file.seek(h.offset + BLOCK.size)
        try:
            data = zlib.decompress(self._file.read(h.length))
            lines = [orjson.loads(line) for line in data.split(b"\n")] if h.count else []
        except (zlib.error, orjson.JSONDecodeError) as exc:
            raise RecordingError(
                f"{self.path}: block at byte {h.offset} is corrupt ({exc})"
            ) from None
        if len(lines) != h.count:
            raise RecordingError(
                f"{self.path}: block at byte {h.offset} is corrupt ({len(lines)} records, "
                f"its header says {h.count})"
            )
        return lines
