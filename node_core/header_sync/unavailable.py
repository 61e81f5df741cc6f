"""Headers the node gave up on because no peer would serve their block bodies.

Header sync adopts headers before anyone has sent their bodies (headers first). A peer can
therefore hand the node a perfectly valid header and never serve its body; if no other peer
has that block either, block sync cannot move past it. Block sync notices (see
``BlockSyncCore`` and docs/ARCHITECTURE.md, "Bodies nobody serves") and asks header sync to
*abandon* the header chain above its verified tip. This module remembers what was abandoned so
the node does not take the same header straight back from the next peer that still
advertises it, which would restart the stall.

Sans-I/O: time is passed in as ``now``.

Invariants:

- At most :data:`CAPACITY` hashes are remembered (oldest dropped first), each for ``ttl``
  seconds; memory is bounded whatever peers send.
- Remembering is advisory: a hash is forgotten as soon as someone shows the node the block
  itself (a NewBlock carrying a valid body), and after ``ttl`` in any case, so a header
  abandoned while every peer was merely behind is not refused for long. A claim (a Status)
  is not enough: it would let any peer lift every refusal.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from node_core.chain.model import BlockHeader

if TYPE_CHECKING:
    from node_core.observe.schema import UnavailableHeader

__all__ = ["CAPACITY", "DEFAULT_TTL", "Abandoned", "UnavailableHeaders"]

#: Hashes remembered at most.
CAPACITY = 256
#: Seconds a hash stays refused (unless its block shows up first).
DEFAULT_TTL = 120.0


@dataclass(frozen=True, slots=True)
class Abandoned:
    """One abandoned header: its height and when it may be adopted again."""

    height: int
    until: float


class UnavailableHeaders:
    """Abandoned header hashes, each refused until its expiry or until its block appears."""

    def __init__(self, ttl: float = DEFAULT_TTL, capacity: int = CAPACITY) -> None:
        if ttl <= 0 or capacity < 1:
            raise ValueError("ttl must be positive and capacity at least 1")
        self.ttl = ttl
        self.capacity = capacity
        self._hashes: OrderedDict[bytes, Abandoned] = OrderedDict()

    def __len__(self) -> int:
        return len(self._hashes)

    def add(self, hash_: bytes, height: int, now: float) -> None:
        self._hashes[hash_] = Abandoned(height, now + self.ttl)
        self._hashes.move_to_end(hash_)
        while len(self._hashes) > self.capacity:
            self._hashes.popitem(last=False)

    def discard(self, hash_: bytes) -> bool:
        """The block itself was seen: the header is welcome again. True if it was refused."""
        return self._hashes.pop(hash_, None) is not None

    def height_of(self, hash_: bytes, now: float) -> int | None:
        """The height of ``hash_`` if it is refused now, else None (expired entries go)."""
        entry = self._hashes.get(hash_)
        if entry is None:
            return None
        if entry.until <= now:
            del self._hashes[hash_]
            return None
        return entry.height

    def first_refused(self, headers: Sequence[BlockHeader], now: float) -> int | None:
        """Index of the first header of ``headers`` that is refused now, or None."""
        if not self._hashes:
            return None
        for i, header in enumerate(headers):
            if self.height_of(header.hash, now) is not None:
                return i
        return None

    def view(self, now: float) -> list[UnavailableHeader]:
        """JSON-ready list for the snapshot: height, hash and seconds left, oldest first."""
        out: list[UnavailableHeader] = []
        for hash_, entry in list(self._hashes.items()):
            if entry.until <= now:
                continue
            out.append(
                {
                    "height": entry.height,
                    "hash": hash_.hex(),
                    "expires_in_s": round(entry.until - now, 1),
                }
            )
        return out
