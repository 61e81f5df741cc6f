"""Block-sync peer registry: the facts every routine publishes about its peer (reference §4.9).

A routine owns its peer's state; other routines and the core only need a few facts about it
(does it serve this height, how much room does its window have, which heights does it owe),
so each routine publishes them here and everyone else reads them here.

Invariants:

- **Generation-gated writes.** Every routine write names the session generation it was
  admitted under; a write from any other generation is ignored (returns False), so a stale
  routine finishing late can never overwrite the facts of the peer's reconnected session.
- **The core owns membership.** Only :meth:`PeerRegistry.admit` (a new session) and
  :meth:`PeerRegistry.remove` (its connection closed) add or drop an entry; a routine's exit
  only clears what it published (:meth:`PeerRegistry.clear_outstanding`), as in the
  reference, so a parked or exiting routine leaves no claim on any height behind.
- Re-admitting a peer keeps its last servable range and caps (they are facts about the peer,
  not the session) but never its outstanding heights or slot figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from node_core.protocol.block_sync import Status

if TYPE_CHECKING:
    from node_core.observe.schema import BlockSyncSlots

__all__ = ["PeerFacts", "PeerRegistry", "Slots"]


@dataclass(frozen=True, slots=True)
class Slots:
    """A routine's window as others see it: capacity, window, free slots, requests out."""

    hard_capacity: int = 0
    effective_window: int = 0
    available: int = 0
    outstanding_requests: int = 0


@dataclass(slots=True)
class PeerFacts:
    """What the registry knows about one peer's current session."""

    label: str
    generation: int
    direction: str
    status: Status | None = None
    outstanding: dict[int, bytes] = field(default_factory=dict)  # height -> expected hash
    slots: Slots = field(default_factory=Slots)

    def serves(self, height: int) -> bool:
        st = self.status
        return st is not None and st.servable_low <= height <= st.servable_high


class PeerRegistry:
    """Per-peer block-sync facts keyed by peer label."""

    def __init__(self) -> None:
        self._peers: dict[str, PeerFacts] = {}

    # ------------------------------------------------------------------ membership (core)
    def admit(self, label: str, generation: int, direction: str) -> PeerFacts:
        old = self._peers.get(label)
        facts = PeerFacts(label, generation, direction)
        if old is not None:
            facts.status = old.status
        self._peers[label] = facts
        return facts

    def remove(self, label: str, generation: int) -> bool:
        facts = self._peers.get(label)
        if facts is None or facts.generation != generation:
            return False
        del self._peers[label]
        return True

    # ------------------------------------------------------------------ routine writes
    def _current(self, label: str, generation: int) -> PeerFacts | None:
        facts = self._peers.get(label)
        return facts if facts is not None and facts.generation == generation else None

    def upsert_status(self, label: str, generation: int, status: Status) -> bool:
        facts = self._current(label, generation)
        if facts is None:
            return False
        facts.status = status
        return True

    def set_outstanding(self, label: str, generation: int, heights: Mapping[int, bytes]) -> bool:
        facts = self._current(label, generation)
        if facts is None:
            return False
        facts.outstanding = dict(heights)
        return True

    def clear_outstanding(self, label: str, generation: int) -> bool:
        facts = self._current(label, generation)
        if facts is None:
            return False
        facts.outstanding = {}
        facts.slots = Slots()
        return True

    def publish_slots(self, label: str, generation: int, slots: Slots) -> bool:
        facts = self._current(label, generation)
        if facts is None:
            return False
        facts.slots = slots
        return True

    # ------------------------------------------------------------------ queries
    def get(self, label: str) -> PeerFacts | None:
        return self._peers.get(label)

    def __iter__(self) -> Iterator[PeerFacts]:
        return iter(tuple(self._peers.values()))

    def __len__(self) -> int:
        return len(self._peers)

    def peers_with_status(self) -> int:
        return sum(1 for f in self._peers.values() if f.status is not None)

    def total_unreceived(self) -> int:
        return sum(len(f.outstanding) for f in self._peers.values())

    def has_outstanding_height(self, height: int) -> bool:
        return any(height in f.outstanding for f in self._peers.values())

    def floor_has_unsaturated_other_server(self, label: str, height: int) -> bool:
        """Another peer serves ``height`` and has a free slot in its normal window.

        The floor lane may borrow bypass slots beyond a full window only when nobody else
        could take the floor height without them (reference §4.5 step 4).
        """
        return any(
            f.label != label and f.serves(height) and f.slots.available > 0
            for f in self._peers.values()
        )

    def slot_summary(self) -> BlockSyncSlots:
        facts = list(self._peers.values())
        return {
            "peers": len(facts),
            "with_status": self.peers_with_status(),
            "capacity": sum(f.slots.hard_capacity for f in facts),
            "effective_window": sum(f.slots.effective_window for f in facts),
            "available": sum(f.slots.available for f in facts),
            "saturated": sum(1 for f in facts if f.status is not None and f.slots.available == 0),
            "outstanding_requests": sum(f.slots.outstanding_requests for f in facts),
            "unreceived": self.total_unreceived(),
        }
