"""The header-sync committer: the store I/O the reactor plans, in plan order, off its loop.

The reactor decides synchronously (against its header index) what to write and what to
serve; this task performs those actions on the chain store and hands a result back for each,
so the reactor itself never awaits.

Invariants:

- Actions run one at a time in the order they were put, so the store follows the index's
  plan order exactly (a range is never written before the range it extends).
- Consecutive header commits that chain are merged into one transaction: one fsync for all.
- Every action produces exactly one result, failures included (``CommitFailed`` carries the
  store's reason), so the reactor never waits for an answer that will not come; the task
  itself survives any failure of one action.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from node_core.chain.model import Block, BlockHeader, header_rows
from node_core.chain.store import StoreError

__all__ = [
    "Action",
    "CommitBlock",
    "CommitFailed",
    "CommitHeaders",
    "Committed",
    "HeaderCommitter",
    "ReorgHeaders",
    "Result",
    "ServeHeaders",
    "ServeReady",
    "TruncateHeaders",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CommitHeaders:
    """Store ``rows`` (:func:`~node_core.chain.model.header_rows`) from height ``start``.

    Rows, not :class:`BlockHeader` objects: a commit can wait behind the writer for a while
    (27,000 headers were queued during a 50,000-block sync), and rows of bytes are dropped
    from the garbage collector's lists at its first pass, while waiting headers were carried
    into the oldest generation and made its full collections longer and more frequent.
    """

    start: int
    rows: tuple[tuple[bytes, bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class ReorgHeaders:
    fork_height: int
    headers: tuple[BlockHeader, ...]


@dataclass(frozen=True, slots=True)
class TruncateHeaders:
    """Drop every stored header above ``height`` (headers abandoned for want of bodies).

    ``tip_hash`` is the hash at ``height``, known to the index when it planned this.
    """

    height: int
    tip_hash: bytes


@dataclass(frozen=True, slots=True)
class CommitBlock:
    block: Block


@dataclass(frozen=True, slots=True)
class ServeHeaders:
    peer: str
    generation: int
    start: int
    count: int


Action: TypeAlias = CommitHeaders | ReorgHeaders | TruncateHeaders | CommitBlock | ServeHeaders


@dataclass(frozen=True, slots=True)
class Committed:
    start: int
    count: int
    tip_height: int
    tip_hash: bytes
    kind: str
    verified: int | None = None


@dataclass(frozen=True, slots=True)
class CommitFailed:
    start: int
    error: str


@dataclass(frozen=True, slots=True)
class ServeReady:
    peer: str
    generation: int
    start: int
    count: int
    headers: tuple[bytes, ...]
    body_sizes: tuple[int, ...]


Result: TypeAlias = Committed | CommitFailed | ServeReady


class HeaderCommitter:
    """Runs :data:`Action` s against the store in order; ``on_result`` gets each outcome."""

    def __init__(self, store: Callable[[], Any], on_result: Callable[[Result], None]) -> None:
        self._store = store
        self._on_result = on_result
        self._actions: deque[Action] = deque()
        self._bell = asyncio.Event()

    def put(self, action: Action) -> None:
        self._actions.append(action)
        self._bell.set()

    def __len__(self) -> int:
        return len(self._actions)

    @property
    def pending_commits(self) -> int:
        return sum(1 for a in self._actions if not isinstance(a, ServeHeaders))

    async def run(self) -> None:
        store = self._store()
        while True:
            if not self._actions:
                self._bell.clear()
                await self._bell.wait()
                continue
            action = self._actions.popleft()
            try:
                result = await self._execute(store, action)
            except (StoreError, ValueError) as exc:
                log.error("header-sync commit failed: %s", exc)
                start = action.start if isinstance(action, CommitHeaders) else -1
                result = CommitFailed(start, str(exc)[:300])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: keep the committer alive, report it
                log.exception("header-sync committer failed")
                result = CommitFailed(-1, repr(exc)[:300])
            self._on_result(result)

    async def _execute(self, store: Any, action: Action) -> Result:
        if isinstance(action, ServeHeaders):
            rows = await store.headers_with_sizes(action.start, action.count)
            return ServeReady(
                action.peer,
                action.generation,
                action.start,
                action.count,
                tuple(r[0] for r in rows),
                tuple(r[1] for r in rows),
            )
        if isinstance(action, CommitHeaders):
            rows = list(action.rows)
            # Merge the contiguous header commits queued behind this one: one fsync for all.
            while self._actions and isinstance(self._actions[0], CommitHeaders):
                nxt = self._actions[0]
                assert isinstance(nxt, CommitHeaders)
                if nxt.start != action.start + len(rows):
                    break
                self._actions.popleft()
                rows.extend(nxt.rows)
            await store.put_headers(action.start, rows)
            tip = action.start + len(rows) - 1
            return Committed(action.start, len(rows), tip, rows[-1][0], "extend")
        if isinstance(action, ReorgHeaders):
            await store.replace_above(action.fork_height, header_rows(action.headers))
            last = action.headers[-1]
            verified = await store.verified_tip()
            return Committed(
                action.fork_height + 1,
                len(action.headers),
                last.height,
                last.hash,
                "reorg",
                verified,
            )
        if isinstance(action, TruncateHeaders):
            await store.truncate_above(action.height)
            verified = await store.verified_tip()
            return Committed(
                action.height + 1, 0, action.height, action.tip_hash, "abandon", verified
            )
        block = action.block
        await store.put_headers(block.height, header_rows((block.header,)))
        verified = await store.put_bodies([(block.height, block.body)])
        return Committed(block.height, 1, block.height, block.hash, "block", verified)
