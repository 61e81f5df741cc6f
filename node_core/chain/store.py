"""SQLite chain store: headers and block bodies as opaque bytes, keyed by height and hash.

Invariants (every write transaction preserves them, ``check_consistency`` verifies them):

- Stored headers are contiguous: heights ``0..header_tip`` all exist and nothing above.
- Each header's ``prev_hash`` equals the stored hash at ``height - 1`` (linkage).
- A body exists only for a height whose header exists (foreign key).
- The verified tip is the highest ``h`` such that every body ``0..h`` exists; bodies above it
  (gaps being filled out of order) may exist.
- ``meta`` holds both tips and is updated in the same transaction as the data it summarises, so a
  crash can never leave them disagreeing; opening still recomputes them from data, because the
  data, not the summary, is the truth.

Durability: the file is in WAL mode with ``synchronous=FULL``. In WAL mode ``NORMAL`` already
survives ``kill -9`` (a committed transaction is in the WAL, in the OS page cache), but may lose the
last commits on power loss or an OS crash. Block-sync releases held bytes, and peers stop being
asked for a block, as soon as its commit returns; a commit that later vanishes would be a lost
block nobody re-requests. ``FULL`` fsyncs the WAL on every commit, so "commit returned" means
durable on disk; callers batch many bodies per transaction to amortise the fsync.

Threading: a ``sqlite3`` connection belongs to the thread that uses it. ``ChainStore`` is the
synchronous core (one connection); ``AsyncChainStore`` runs one read-write ``ChainStore`` on a
single dedicated writer thread, so commits are serialized and never block the event loop, and a
read-only ``ChainStore`` on a second thread, so reads proceed concurrently with a long commit
(WAL readers do not wait for the writer).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

__all__ = ["SCHEMA_VERSION", "AsyncChainStore", "ChainStore", "StoreError"]

SCHEMA_VERSION = 1
HASH_LEN = 32

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB
);
CREATE TABLE IF NOT EXISTS headers (
    height INTEGER PRIMARY KEY,
    hash BLOB UNIQUE NOT NULL,
    prev_hash BLOB NOT NULL,
    header BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS bodies (
    height INTEGER PRIMARY KEY REFERENCES headers(height),
    body BLOB NOT NULL
);
"""

#: Bodies inserted per statement (two parameters each, within SQLite's oldest 999 limit).
ROWS_PER_STATEMENT = 256
_INSERT_BODIES_PREFIX = "INSERT OR REPLACE INTO bodies(height, body) VALUES "

_K_VERSION = "schema_version"
_K_HEADER_TIP = "header_tip"
_K_VERIFIED_TIP = "verified_tip"


class StoreError(Exception):
    """A store operation was refused (bad linkage, missing header, unknown schema, ...)."""


class ChainStore:
    """Synchronous chain store over one SQLite connection; use from a single thread.

    Args:
        path: The SQLite file; created with the current schema if it does not exist.
        readonly: Open without writing anything (no schema creation, no tip repair), for a
            reader connection beside a writer.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        try:
            if readonly:
                uri = self.path.resolve().as_uri() + "?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, isolation_level=None)
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open chain store {self.path}: {exc}") from exc
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(
                f"{self.path} is not a usable chain store ({exc}): the file is damaged or is "
                "not a SQLite database, and nothing was written to it; move it away to start "
                "the chain afresh, or put back a good copy"
            ) from None
        except BaseException:
            self._db.close()
            raise

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> None:
        """Set pragmas, create or check the schema, and (writer only) repair tips from data."""
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=10000")
        if self.readonly:
            self._check_version(required=True)
            return
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"chain store {self.path}: cannot enable WAL (got {mode!r})")
        self._db.execute("PRAGMA synchronous=FULL")
        self._check_version(required=False)
        # executescript commits implicitly, so run the DDL outside our explicit transaction;
        # CREATE TABLE IF NOT EXISTS makes it idempotent and SQLite DDL is itself atomic.
        self._db.executescript(_SCHEMA)
        with self._write():
            self._check_version(required=False)
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                (_K_VERSION, SCHEMA_VERSION),
            )
            self._repair_tips()

    def _check_version(self, *, required: bool) -> None:
        """Refuse a file written by an unknown schema version rather than misread it."""
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if has_meta is None:
            if required:
                raise StoreError(f"chain store {self.path} has no schema (meta table missing)")
            return
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (_K_VERSION,)).fetchone()
        if row is None:
            if required:
                raise StoreError(f"chain store {self.path} has no schema_version")
            return
        if row[0] != SCHEMA_VERSION:
            raise StoreError(
                f"chain store {self.path} has schema version {row[0]!r}; "
                f"this build supports version {SCHEMA_VERSION}"
            )

    def _repair_tips(self) -> None:
        """Recompute both tips from data and rewrite meta if it disagrees (crash recovery)."""
        row = self._db.execute("SELECT MAX(height) FROM headers").fetchone()
        header_tip: int | None = row[0]
        verified = self._compute_verified_tip(-1)
        self._set_meta(_K_HEADER_TIP, header_tip)
        self._set_meta(_K_VERIFIED_TIP, verified)

    # -- transactions and meta -------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock up front."""
        if self.readonly:
            raise StoreError(f"chain store {self.path} is open read-only")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[None]:
        """A read transaction, so multi-statement reads see one snapshot."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def _get_meta_int(self, key: str) -> int | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row is None or row[0] is None:
            return None
        return int(row[0])

    def _set_meta(self, key: str, value: int | None) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _compute_verified_tip(self, start: int) -> int | None:
        """Walk bodies upward from ``start`` (a height whose bodies 0..start all exist, or -1)."""
        tip = start
        cur = self._db.execute(
            "SELECT height FROM bodies WHERE height > ? ORDER BY height", (start,)
        )
        for (height,) in cur:
            if height != tip + 1:
                break
            tip = height
        cur.close()
        return None if tip < 0 else tip

    def _hash_at(self, height: int) -> bytes | None:
        row = self._db.execute("SELECT hash FROM headers WHERE height=?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    # -- headers ---------------------------------------------------------------------------

    def put_headers(self, start_height: int, headers: Sequence[tuple[bytes, bytes, bytes]]) -> None:
        """Append ``(hash, prev_hash, header)`` at ``start_height, start_height+1, ...`` atomically.

        The first must link to the stored hash at ``start_height - 1`` (unless it is genesis) and
        each to the one before it, so the stored chain is always one linked, contiguous run.
        Headers already stored with the same hash are skipped (a re-delivered range is harmless);
        a different hash at a stored height is refused: a reorg calls ``truncate_above`` first.

        Raises:
            StoreError: Nothing is written if any header does not link or conflicts.
        """
        if start_height < 0:
            raise StoreError(f"negative start height {start_height}")
        if not headers:
            return
        with self._write():
            self._put_headers(start_height, headers)

    def replace_above(
        self, fork_height: int, headers: Sequence[tuple[bytes, bytes, bytes]]
    ) -> None:
        """A reorg in one transaction: drop everything above ``fork_height``, then append.

        One transaction, so a crash leaves either the old branch or the new one, never a store
        cut back to the fork with the new headers missing.

        Raises:
            StoreError: Nothing changes if the new headers do not link at ``fork_height``.
        """
        if fork_height < 0:
            raise StoreError(f"negative fork height {fork_height}")
        with self._write():
            self._truncate_above(fork_height)
            self._put_headers(fork_height + 1, headers)

    def _put_headers(
        self, start_height: int, headers: Sequence[tuple[bytes, bytes, bytes]]
    ) -> None:
        if not headers:
            return
        if start_height == 0:
            expected_prev: bytes | None = None
        else:
            expected_prev = self._hash_at(start_height - 1)
            if expected_prev is None:
                raise StoreError(
                    f"header at {start_height} does not link: no stored header at "
                    f"{start_height - 1}"
                )
        height = start_height
        for hash_, prev_hash, header in headers:
            if len(hash_) != HASH_LEN:
                raise StoreError(f"header at {height}: hash is {len(hash_)} bytes, not 32")
            if expected_prev is not None and bytes(prev_hash) != expected_prev:
                raise StoreError(
                    f"header at {height} does not link: prev_hash {bytes(prev_hash).hex()} "
                    f"!= stored {expected_prev.hex()}"
                )
            stored = self._hash_at(height)
            if stored is None:
                try:
                    self._db.execute(
                        "INSERT INTO headers(height, hash, prev_hash, header) VALUES (?, ?, ?, ?)",
                        (height, bytes(hash_), bytes(prev_hash), bytes(header)),
                    )
                except sqlite3.IntegrityError as exc:
                    raise StoreError(f"header at {height}: {exc}") from exc
            elif stored != bytes(hash_):
                raise StoreError(
                    f"header at {height} conflicts with the stored one; truncate_above first"
                )
            expected_prev = bytes(hash_)
            height += 1
        tip = self._get_meta_int(_K_HEADER_TIP)
        if tip is None or height - 1 > tip:
            self._set_meta(_K_HEADER_TIP, height - 1)

    def header_tip(self) -> tuple[int, bytes] | None:
        """The highest stored header as ``(height, hash)``, or None for an empty store."""
        with self._read():
            tip = self._get_meta_int(_K_HEADER_TIP)
            if tip is None:
                return None
            hash_ = self._hash_at(tip)
        return None if hash_ is None else (tip, hash_)

    def hash_at(self, height: int) -> bytes | None:
        """The stored header hash at ``height``, or None."""
        return self._hash_at(height)

    def header_at(self, height: int) -> bytes | None:
        """The stored header bytes at ``height``, or None."""
        row = self._db.execute("SELECT header FROM headers WHERE height=?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    def height_of(self, hash_: bytes) -> int | None:
        """The height of a stored header by hash, or None (for locators and NewBlock)."""
        row = self._db.execute("SELECT height FROM headers WHERE hash=?", (hash_,)).fetchone()
        return None if row is None else int(row[0])

    def headers_range(self, start: int, count: int) -> list[bytes]:
        """Up to ``count`` header bytes from ``start`` upward (fewer at the tip)."""
        if count <= 0:
            return []
        rows = self._db.execute(
            "SELECT header FROM headers WHERE height >= ? AND height < ? ORDER BY height",
            (start, start + count),
        ).fetchall()
        return [bytes(r[0]) for r in rows]

    def headers_with_sizes(self, start: int, count: int) -> list[tuple[bytes, int]]:
        """Up to ``count`` ``(header, body size or 0)`` from ``start`` (serving GetHeaders)."""
        if count <= 0:
            return []
        rows = self._db.execute(
            "SELECT h.header, COALESCE(length(b.body), 0) FROM headers h "
            "LEFT JOIN bodies b ON b.height = h.height "
            "WHERE h.height >= ? AND h.height < ? ORDER BY h.height",
            (start, start + count),
        ).fetchall()
        return [(bytes(r[0]), int(r[1])) for r in rows]

    def blocks_range(self, start: int, count: int, max_bytes: int) -> list[tuple[bytes, bytes]]:
        """Up to ``count`` ``(header, body)`` from ``start`` while bodies are contiguous.

        Stops at the first missing body and before the bodies would exceed ``max_bytes``
        (the first block is always included), so a server answers with what it has, in
        order, within the response cap it advertised.
        """
        if count <= 0:
            return []
        rows = self._db.execute(
            "SELECT h.height, h.header, b.body FROM headers h JOIN bodies b "
            "ON b.height = h.height WHERE h.height >= ? AND h.height < ? ORDER BY h.height",
            (start, start + count),
        ).fetchall()
        out: list[tuple[bytes, bytes]] = []
        total = 0
        for expected, (height, header, body) in enumerate(rows, start):
            if height != expected or (out and total + len(body) > max_bytes):
                break
            total += len(body)
            out.append((bytes(header), bytes(body)))
        return out

    # -- bodies ----------------------------------------------------------------------------

    def put_bodies(self, bodies: Sequence[tuple[int, bytes]]) -> int | None:
        """Store ``(height, body)`` pairs atomically and advance the verified tip contiguously.

        Bodies may arrive out of order; the verified tip only moves over a gap-free run from 0,
        so "verified tip" always means every body at or below it is durable.

        A constant number of statements per :data:`ROWS_PER_STATEMENT` bodies, not a few per
        body: the committer runs this on a writer thread beside the event loop, and every
        statement step releases and retakes the GIL, which costs up to a switch interval
        while the loop is busy (measured: 3 steps a body made the writer wait ~4x its CPU).

        Returns:
            The verified tip after the commit (None if body 0 is still missing).

        Raises:
            StoreError: Nothing is written if any height has no stored header.
        """
        with self._write():
            heights = sorted({height for height, _ in bodies})
            if heights and not self._headers_exist(heights):
                for height in heights:
                    if self._hash_at(height) is None:
                        raise StoreError(f"body at {height} has no stored header")
            for at in range(0, len(bodies), ROWS_PER_STATEMENT):
                chunk = bodies[at : at + ROWS_PER_STATEMENT]
                self._db.execute(
                    _INSERT_BODIES_PREFIX + ",".join(("(?, ?)",) * len(chunk)),
                    [value for height, body in chunk for value in (height, bytes(body))],
                )
            old = self._get_meta_int(_K_VERIFIED_TIP)
            new = self._verified_tip_above(-1 if old is None else old)
            if new != old:
                self._set_meta(_K_VERIFIED_TIP, new)
            return new

    def _headers_exist(self, heights: Sequence[int]) -> bool:
        """Whether every one of ``heights`` (sorted, distinct) has a stored header: one row."""
        if heights[-1] - heights[0] + 1 == len(heights):  # a contiguous run, the usual batch
            row = self._db.execute(
                "SELECT COUNT(*) FROM headers WHERE height BETWEEN ? AND ?",
                (heights[0], heights[-1]),
            ).fetchone()
            return bool(row[0] == len(heights))
        return all(self._hash_at(height) is not None for height in heights)

    def _verified_tip_above(self, start: int) -> int | None:
        """:meth:`_compute_verified_tip` in one statement (one step, one row): the first
        body above ``start`` whose successor is missing ends the run from ``start + 1``, if
        that body exists. ``check_consistency`` keeps the row-by-row walk, so the two are
        checked against each other."""
        row = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM bodies WHERE height = :next), "
            "(SELECT MIN(b.height) FROM bodies b WHERE b.height > :start AND NOT EXISTS "
            "(SELECT 1 FROM bodies c WHERE c.height = b.height + 1))",
            {"next": start + 1, "start": start},
        ).fetchone()
        tip = start if not row[0] else int(row[1])
        return None if tip < 0 else tip

    def verified_tip(self) -> int | None:
        """Highest height with every body 0..height stored, or None."""
        return self._get_meta_int(_K_VERIFIED_TIP)

    def body_at(self, height: int) -> bytes | None:
        """The stored body at ``height``, or None."""
        row = self._db.execute("SELECT body FROM bodies WHERE height=?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    # -- reorg -----------------------------------------------------------------------------

    def truncate_above(self, height: int) -> None:
        """Delete headers and bodies above ``height`` in one transaction (reorg rollback).

        ``height = -1`` empties the chain. Tips are lowered to what remains.
        """
        with self._write():
            self._truncate_above(height)

    def _truncate_above(self, height: int) -> None:
        self._db.execute("DELETE FROM bodies WHERE height > ?", (height,))
        self._db.execute("DELETE FROM headers WHERE height > ?", (height,))
        tip = self._get_meta_int(_K_HEADER_TIP)
        if tip is not None and tip > height:
            self._set_meta(_K_HEADER_TIP, height if height >= 0 else None)
        verified = self._get_meta_int(_K_VERIFIED_TIP)
        if verified is not None and verified > height:
            self._set_meta(_K_VERIFIED_TIP, height if height >= 0 else None)

    # -- checks ----------------------------------------------------------------------------

    def check_consistency(self) -> list[str]:
        """Every violated invariant as a readable line; an empty list means consistent.

        A plain function of stored state so tests, the fault harness and the console can all
        call it after a crash.
        """
        problems: list[str] = []
        with self._read():
            integrity = [r[0] for r in self._db.execute("PRAGMA integrity_check")]
            if integrity != ["ok"]:
                problems.extend(f"sqlite integrity: {line}" for line in integrity)
            for row in self._db.execute("PRAGMA foreign_key_check"):
                problems.append(f"foreign key violation: {tuple(row)}")
            prev: bytes | None = None
            expected = 0
            for height, hash_, prev_hash in self._db.execute(
                "SELECT height, hash, prev_hash FROM headers ORDER BY height"
            ):
                if height != expected:
                    problems.append(f"headers not contiguous: expected {expected}, found {height}")
                    prev = None
                if len(hash_) != HASH_LEN:
                    problems.append(f"header at {height}: hash is {len(hash_)} bytes")
                if prev is not None and bytes(prev_hash) != prev:
                    problems.append(f"header at {height}: prev_hash does not match hash below")
                prev = bytes(hash_)
                expected = height + 1
            data_tip = expected - 1 if expected > 0 else None
            meta_tip = self._get_meta_int(_K_HEADER_TIP)
            if meta_tip != data_tip:
                problems.append(f"header tip in meta {meta_tip} != stored tip {data_tip}")
            verified = self._get_meta_int(_K_VERIFIED_TIP)
            computed = self._compute_verified_tip(-1)
            if verified is not None:
                missing = self._db.execute(
                    "SELECT ? + 1 - COUNT(*) FROM bodies WHERE height <= ?", (verified, verified)
                ).fetchone()[0]
                if missing:
                    problems.append(f"verified tip {verified} has {missing} missing bodies below")
                if data_tip is None or verified > data_tip:
                    problems.append(f"verified tip {verified} above header tip {data_tip}")
            if verified != computed:
                problems.append(f"verified tip in meta {verified} != contiguous bodies {computed}")
            orphan = self._db.execute(
                "SELECT COUNT(*) FROM bodies WHERE height NOT IN (SELECT height FROM headers)"
            ).fetchone()[0]
            if orphan:
                problems.append(f"{orphan} bodies without a header")
        return problems

    def close(self) -> None:
        """Close the connection; committed data is already durable."""
        self._db.close()


class AsyncChainStore:
    """Asyncio facade: writes on one dedicated writer thread, reads on one reader thread.

    Create with ``await AsyncChainStore.open(path)``. Each await resolves after the work is done
    on its thread; a write's await resolving means its transaction committed (durable).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="chainstore-writer")
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix="chainstore-reader")
        self._writer: ChainStore | None = None
        self._reader: ChainStore | None = None

    @classmethod
    async def open(cls, path: Path) -> AsyncChainStore:
        """Open (creating or resuming) the store; the writer opens first so the schema exists."""
        self = cls(path)
        try:
            self._writer = await self._run(self._writer_pool, lambda: ChainStore(self.path))
            self._reader = await self._run(
                self._reader_pool, lambda: ChainStore(self.path, readonly=True)
            )
        except BaseException:
            await self.close()
            raise
        return self

    @staticmethod
    async def _run(pool: ThreadPoolExecutor, fn: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn)

    def _w(self) -> ChainStore:
        if self._writer is None:
            raise StoreError(f"chain store {self.path} is closed")
        return self._writer

    def _r(self) -> ChainStore:
        if self._reader is None:
            raise StoreError(f"chain store {self.path} is closed")
        return self._reader

    async def _write(self, fn: Callable[[ChainStore], _T]) -> _T:
        store = self._w()
        return await self._run(self._writer_pool, lambda: fn(store))

    async def _read(self, fn: Callable[[ChainStore], _T]) -> _T:
        store = self._r()
        return await self._run(self._reader_pool, lambda: fn(store))

    async def put_headers(
        self, start_height: int, headers: Sequence[tuple[bytes, bytes, bytes]]
    ) -> None:
        """See ``ChainStore.put_headers``."""
        await self._write(lambda s: s.put_headers(start_height, headers))

    async def put_bodies(self, bodies: Sequence[tuple[int, bytes]]) -> int | None:
        """See ``ChainStore.put_bodies``; returns the durable verified tip."""
        return await self._write(lambda s: s.put_bodies(bodies))

    async def replace_above(
        self, fork_height: int, headers: Sequence[tuple[bytes, bytes, bytes]]
    ) -> None:
        """See ``ChainStore.replace_above``."""
        await self._write(lambda s: s.replace_above(fork_height, headers))

    async def headers_with_sizes(self, start: int, count: int) -> list[tuple[bytes, int]]:
        """See ``ChainStore.headers_with_sizes``."""
        return await self._read(lambda s: s.headers_with_sizes(start, count))

    async def blocks_range(
        self, start: int, count: int, max_bytes: int
    ) -> list[tuple[bytes, bytes]]:
        """See ``ChainStore.blocks_range``."""
        return await self._read(lambda s: s.blocks_range(start, count, max_bytes))

    async def truncate_above(self, height: int) -> None:
        """See ``ChainStore.truncate_above``."""
        await self._write(lambda s: s.truncate_above(height))

    async def header_tip(self) -> tuple[int, bytes] | None:
        """See ``ChainStore.header_tip``."""
        return await self._read(lambda s: s.header_tip())

    async def verified_tip(self) -> int | None:
        """See ``ChainStore.verified_tip``."""
        return await self._read(lambda s: s.verified_tip())

    async def hash_at(self, height: int) -> bytes | None:
        """See ``ChainStore.hash_at``."""
        return await self._read(lambda s: s.hash_at(height))

    async def header_at(self, height: int) -> bytes | None:
        """See ``ChainStore.header_at``."""
        return await self._read(lambda s: s.header_at(height))

    async def height_of(self, hash_: bytes) -> int | None:
        """See ``ChainStore.height_of``."""
        return await self._read(lambda s: s.height_of(hash_))

    async def headers_range(self, start: int, count: int) -> list[bytes]:
        """See ``ChainStore.headers_range``."""
        return await self._read(lambda s: s.headers_range(start, count))

    async def body_at(self, height: int) -> bytes | None:
        """See ``ChainStore.body_at``."""
        return await self._read(lambda s: s.body_at(height))

    async def check_consistency(self) -> list[str]:
        """See ``ChainStore.check_consistency``; runs on the reader thread."""
        return await self._read(lambda s: s.check_consistency())

    async def close(self) -> None:
        """Close both connections on their own threads, then stop the threads."""
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await self._run(self._reader_pool, reader.close)
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await self._run(self._writer_pool, writer.close)
        self._reader_pool.shutdown(wait=True)
        self._writer_pool.shutdown(wait=True)
