"""The recording file format: snapshots and journal rows over time, in one compressed file.

``--record FILE`` (``zakura node``, ``zakura console``, ``zakura attach``) writes it and
``zakura replay FILE`` reads it. What it had to be, and how this format gets there:

- **Appendable, readable while written, a crash loses at most the last second.** The file is
  an 8-byte header followed by *blocks*, each independently zlib-compressed with a small
  header of its own (kind, record count, payload length, CRC-32, first and last timestamp).
  The writer collects at most one second of records, then writes them as one or two blocks
  and flushes them to the OS, so a ``kill -9`` leaves every complete block on disk and at most
  a second of records (and a torn last block) unwritten. A reader stops at the first block
  that is incomplete, so a file being written, or one cut short by a crash, reads up to its
  last complete second; appending to an existing recording first cuts off such a torn tail.
  Nothing is ever rewritten in place.
- **Seek anywhere in an hour in < 100 ms.** Snapshot blocks are *keyframe* blocks (their
  first record is a whole snapshot) or *delta* blocks (every record is a patch against the
  previous snapshot, :mod:`.record_patch`). A keyframe starts a block at most every
  :data:`KEYFRAME_SECS`; the reader indexes block headers only (never payloads) when it opens
  a file, so a seek decompresses one keyframe block and the few delta blocks after it.
- **Every journal row, cheap to scan.** Journal rows go to their own blocks, so the timeline's
  marks (faults, panics, misbehavior, reorgs) and the journal view read them without
  decompressing a single snapshot.
- **Why zlib.** It is in the standard library (no new dependency for the node), a block of
  JSON compresses 5-20x at level 6, and decompressing a keyframe block takes about a
  millisecond. Zstandard would be faster still, but is not installed with the node, and the
  seek goal is met without it (``python -m bench --only record_replay``).
- **A corrupt or foreign file is said in one line.** The header's magic and version, each
  block's marker and CRC are checked, and :class:`RecordingError` names the file and what is
  wrong with it ("not a zakura recording", "block at byte N is corrupt (checksum)").

Layout (big-endian)::

    file   = b"ZKREC" version:u8 b"\\r\\n"  block*
    block  = b"BK" kind:u8 pad:u8 count:u32 length:u32 crc32:u32 t_first:f64 t_last:f64
             payload[length]          # zlib of count lines joined by b"\\n"
    kind   = K (keyframe: a snapshot line, then patch lines) | D (patch lines) | J (journal)
    line   = orjson of [t, snapshot] (K's first) | [t, patch] (K, D) | a journal row (J)

``t`` is wall-clock seconds (``time.time()``) when the recorder read the snapshot; a journal
row's time is its own ``wall``. The CRC covers the block header (with the CRC field zero) and
the payload.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any, Final

import orjson

from node_core.observe.record_patch import diff

__all__ = [
    "BLOCK",
    "FILE_HEADER",
    "KEYFRAME_SECS",
    "BlockEncoder",
    "BlockHeader",
    "RecordingError",
    "encode_block",
]

MAGIC: Final = b"ZKREC"
VERSION: Final = 1
#: The file's first bytes: magic, version, and CRLF (which a text-mode copy would mangle).
FILE_HEADER: Final = MAGIC + bytes([VERSION]) + b"\r\n"
BLOCK_MARKER: Final = b"BK"
BLOCK: Final = struct.Struct(">2sBxIIIdd")
KEYFRAME, DELTA, JOURNAL = ord("K"), ord("D"), ord("J")
KINDS: Final = frozenset({KEYFRAME, DELTA, JOURNAL})
#: A keyframe block starts at most this long after the previous one: a seek decodes at most
#: this many seconds of deltas (one block per second) after one whole snapshot.
KEYFRAME_SECS: Final = 10.0
#: The writer flushes its blocks at least this often: what a crash can lose.
FLUSH_SECS: Final = 1.0
#: A block payload bigger than this is not one the writer made (a corrupt length field).
MAX_PAYLOAD: Final = 1 << 30
ZLIB_LEVEL: Final = 6


class RecordingError(Exception):
    """A file that cannot be read (or appended to) as a recording; the message is one line
    naming the file and the problem."""


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """One block as the reader indexes it: where it is and what time it covers."""

    offset: int
    kind: int
    count: int
    length: int
    crc: int
    t_first: float
    t_last: float

    @property
    def end(self) -> int:
        return self.offset + BLOCK.size + self.length


def encode_block(kind: int, lines: list[bytes], t_first: float, t_last: float) -> bytes:
    """One complete block: header and compressed payload."""
    payload = zlib.compress(b"\n".join(lines), ZLIB_LEVEL)
    head = BLOCK.pack(BLOCK_MARKER, kind, len(lines), len(payload), 0, t_first, t_last)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return BLOCK.pack(BLOCK_MARKER, kind, len(lines), len(payload), crc, t_first, t_last) + payload


def block_crc(raw_header: bytes, payload: bytes) -> int:
    """The CRC a block's header should carry (the header with its CRC field zeroed)."""
    marker, kind, count, length, _crc, t0, t1 = BLOCK.unpack(raw_header)
    head = BLOCK.pack(marker, kind, count, length, 0, t0, t1)
    return zlib.crc32(payload, zlib.crc32(head))


class BlockEncoder:
    """Turns snapshots and journal rows into blocks; pure (no I/O, no clock).

    Feed it with :meth:`add_snapshot` and :meth:`add_rows`, and take what it has as bytes with
    :meth:`flush` whenever the caller decides (the writer thread: at most every second; the
    benchmark and the tests: every simulated second). The first snapshot after construction is
    always a keyframe, so a file appended to by a new encoder stays seekable.
    """

    def __init__(self, keyframe_secs: float = KEYFRAME_SECS) -> None:
        self.keyframe_secs = keyframe_secs
        self._previous: Any = None
        self._last_key_t: float | None = None
        self._snap_lines: list[bytes] = []
        self._snap_kind = DELTA
        self._snap_t: tuple[float, float] = (0.0, 0.0)
        self._rows: list[bytes] = []
        self._rows_t: tuple[float, float] = (0.0, 0.0)
        self.snapshots = 0
        self.rows = 0

    @property
    def pending(self) -> bool:
        """Records added since the last :meth:`flush`."""
        return bool(self._snap_lines or self._rows)

    def add_snapshot(self, t: float, snapshot: dict[str, Any]) -> None:
        """Add the snapshot read at ``t`` (a keyframe if one is due and a block starts)."""
        if not self._snap_lines:
            due = self._last_key_t is None or t - self._last_key_t >= self.keyframe_secs
            self._snap_kind = KEYFRAME if due else DELTA
            self._snap_t = (t, t)
            if due:
                self._last_key_t = t
                self._snap_lines.append(orjson.dumps([t, snapshot]))
                self._previous = snapshot
                self.snapshots += 1
                return
        self._snap_lines.append(orjson.dumps([t, diff(self._previous, snapshot)]))
        self._previous = snapshot
        self._snap_t = (self._snap_t[0], t)
        self.snapshots += 1

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Add journal rows (each keeps its own ``wall`` time)."""
        for row in rows:
            t = float(row.get("wall") or 0.0)
            lo, hi = self._rows_t
            self._rows_t = (t, t) if not self._rows else (min(lo, t), max(hi, t))
            self._rows.append(orjson.dumps(row))
        self.rows += len(rows)

    def flush(self) -> bytes:
        """The blocks for everything added since the last flush (``b""`` when nothing was)."""
        out = b""
        if self._snap_lines:
            out += encode_block(self._snap_kind, self._snap_lines, *self._snap_t)
            self._snap_lines = []
        if self._rows:
            out += encode_block(JOURNAL, self._rows, *self._rows_t)
            self._rows = []
        return out
