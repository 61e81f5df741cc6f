"""The shared header range queue (reference §3.8): which header ranges still need fetching.

The reactor produces ranges (``ensure_forward`` / ``ensure_backward``), the per-peer routines
pull them (``take_for_peer``) and hand them back (``return_work``), and committed headers mark
heights covered. Everything here is pure synchronous math with no awaits, so a routine's
pull (take, record expectation, send) can run without yielding (§3.4). The wake is an
injected ``on_wake`` callback: the owner wires it to an asyncio broadcast with no stored
permit, so a routine that was busy misses it but re-attempts a pull on every loop turn.

Invariants (checked by :meth:`SharedHeaderRangeQueue.invariant_violations`):

- Covered heights are sorted, disjoint ``[start, end]`` intervals with a gap of at least one
  height between neighbours (``end + 1 == start`` merges), so "fully covered" means "inside
  one interval".
- No queued and no assigned range lies fully inside a covered interval: ``ensure_*`` and
  ``retry`` skip covered ranges, ``mark_*_covered`` prunes what became covered, and
  ``take_for_peer`` drops an entry whose clamped head would be covered instead of narrowing.
- Assignments are keyed by ``(start_height, priority)``, the same identity ``ensure_*``
  de-duplicates on, so narrowing a range to a peer's cap never strands an assignment under a
  stale key. A key maps to at most :data:`FANOUT` peers, each with the generation of the
  session that took it; an empty key is dropped.
- A range leaves its deque once :data:`FANOUT` distinct peers took it; until then it stays
  queued so a faster peer may race the slow one.
- Returns are generation-scoped: a stale session's return never clears the assignment of
  the peer's current session. A ``Timeout`` return keeps the assignment (so the timed-out
  peer does not re-grab it at once) while other peers can take the re-queued range.
- Every assigned ``(peer, generation)`` was handed out by ``take_for_peer``; the owner calls
  ``forget_peer`` when a peer's session ends, so assignments only name live sessions.
- A range with ``peer`` set (an *affine* range: a fork-search probe or a competing branch's
  next range) is offered to that peer only, is taken by it alone (fan-out 1), and is exempt
  from coverage: it deliberately re-reads heights our chain already holds, to find where the
  peer's chain leaves ours. Its ``priority`` is the peer's session generation, so its key can
  never collide with a shared range or another peer's probe. ``forget_peer`` drops it.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeAlias

from node_core.protocol.header_sync import clamp_request_count

FANOUT = 3
"""How many distinct peers may hold the same range at once (reference: fan-out 3)."""

AHEAD_ANCHOR = b""
"""The anchor of a forward range planned beyond the index tip (its anchor is not known yet):
the answer is held until the index reaches the range's start and is checked against the
header there (:mod:`node_core.header_sync.responses`)."""

PeerId: TypeAlias = str
"""A peer's label: the identity the node uses for a connection everywhere else."""

RangeKey: TypeAlias = tuple[int, int]
"""``(start_height, priority)``: the identity a range is de-duplicated and assigned under."""


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """``count`` headers from ``start_height``, chained to ``anchor_hash``.

    ``finalized`` marks a checkpoint bracket: it is only ever requested whole, because a
    partial bracket cannot be checked against the checkpoint hash at its end.
    """

    start_height: int
    count: int
    anchor_hash: bytes
    finalized: bool
    priority: int = 0
    peer: PeerId | None = None

    def __post_init__(self) -> None:
        if self.start_height < 0:
            raise ValueError(f"start_height must be >= 0, got {self.start_height}")
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")

    @property
    def end_height(self) -> int:
        """The last height the range asks for (inclusive)."""
        return self.start_height + self.count - 1

    @property
    def key(self) -> RangeKey:
        """The de-duplication and assignment identity, see :data:`RangeKey`."""
        return (self.start_height, self.priority)

    def with_count(self, count: int) -> RangeRequest:
        """The same range narrowed (or widened) to ``count`` headers."""
        return RangeRequest(
            self.start_height, count, self.anchor_hash, self.finalized, self.priority, self.peer
        )


@dataclass(frozen=True, slots=True)
class HeaderWork:
    """What ``take_for_peer`` hands a routine: the (possibly narrowed) range and its count.

    ``forward`` says which deque the range came from; pass it back to ``return_work`` so a
    retry lands in the right deque even if the assignment was already forgotten.
    """

    range: RangeRequest
    count: int
    forward: bool


class ReturnReason(Enum):
    """Why a routine hands a range back; only ``TIMEOUT`` keeps the peer's assignment."""

    TEARDOWN = "teardown"
    SEND_FAILED = "send_failed"
    EMPTY_RESPONSE = "empty_response"
    TIMEOUT = "timeout"
    REJECTED = "rejected"


@dataclass(slots=True)
class _Assignment:
    """The peers currently holding one range key (peer -> generation), and its direction."""

    range: RangeRequest
    forward: bool
    peers: dict[PeerId, int] = field(default_factory=dict)


class SharedHeaderRangeQueue:
    """Forward and backward range deques, per-range assignments and covered heights.

    Not thread-safe and needs no lock: every method is synchronous and the asyncio loop
    runs one at a time. Methods that make new work available call ``on_wake``.
    """

    def __init__(self, on_wake: Callable[[], None]) -> None:
        self._on_wake = on_wake
        self._forward: deque[RangeRequest] = deque()
        self._backward: deque[RangeRequest] = deque()
        self._assigned: dict[RangeKey, _Assignment] = {}
        self._covered: list[tuple[int, int]] = []
        #: Heights above which a peer is not asked (its chain runs through a header the node
        #: abandoned for want of a body); cleared by its next Status or its session's end.
        self._caps: dict[PeerId, int] = {}

    # --- read-only views ---------------------------------------------------------------

    @property
    def forward(self) -> Sequence[RangeRequest]:
        """Queued forward ranges, front first (a tuple snapshot)."""
        return tuple(self._forward)

    @property
    def backward(self) -> Sequence[RangeRequest]:
        """Queued backward ranges, front first (a tuple snapshot)."""
        return tuple(self._backward)

    @property
    def assigned(self) -> dict[RangeKey, dict[PeerId, int]]:
        """A copy of the assignments: range key -> {peer: generation}."""
        return {key: dict(a.peers) for key, a in self._assigned.items()}

    def assigned_range(self, key: RangeKey) -> RangeRequest | None:
        """The range currently assigned under ``key``, if any."""
        a = self._assigned.get(key)
        return a.range if a is not None else None

    @property
    def covered(self) -> Sequence[tuple[int, int]]:
        """Covered ``[start, end]`` intervals, sorted and disjoint."""
        return tuple(self._covered)

    def is_covered(self, rng: RangeRequest) -> bool:
        """Whether every height of ``rng`` is covered (so fetching it is pointless)."""
        return self._interval_covered(rng.start_height, rng.end_height)

    # --- producing work ----------------------------------------------------------------

    def ensure_forward(self, rng: RangeRequest) -> None:
        """Queue ``rng`` at the back of the forward deque unless it is known already; wake."""
        self._ensure(self._forward, rng)

    def ensure_backward(self, rng: RangeRequest) -> None:
        """Queue ``rng`` at the back of the backward deque unless it is known already; wake."""
        self._ensure(self._backward, rng)

    def _ensure(self, dq: deque[RangeRequest], rng: RangeRequest) -> None:
        # The reactor re-ensures the same target on every status; only genuinely new work is
        # queued. The wake is unconditional so an idle routine re-checks even on a no-op.
        known = (
            (rng.peer is None and self.is_covered(rng))
            or rng.key in self._assigned
            or any(q.key == rng.key for q in self._forward)
            or any(q.key == rng.key for q in self._backward)
        )
        if not known:
            dq.append(rng)
        self._wake()

    # --- handing out and taking back ---------------------------------------------------

    def next_for_peer(
        self, peer: PeerId, advertised_tip: int
    ) -> tuple[bool, int, RangeRequest] | None:
        """The range ``peer`` would get: ``(forward, index, range)``, without taking it.

        Forward before backward; the first range that starts within the peer's advertised tip
        (a finalized one must end within it), that fewer than :data:`FANOUT` peers hold and
        that this peer does not hold already. Within a deque, a range nobody holds comes
        before one another peer holds (deviation 33 in docs/PROTOCOL.md): several ranges are
        fetched in parallel from different peers, and a peer joins a range already asked of
        another (fan-out) only when no unasked range is left for it. ``take_for_peer``
        narrows it to the tip.
        """
        advertised_tip = min(advertised_tip, self._caps.get(peer, advertised_tip))
        for forward, dq in ((True, self._forward), (False, self._backward)):
            shared: tuple[bool, int, RangeRequest] | None = None
            for index, rng in enumerate(dq):
                if rng.peer not in (None, peer) or rng.start_height > advertised_tip:
                    continue
                if rng.end_height > advertised_tip and rng.finalized:
                    continue  # a checkpoint bracket is only ever fetched whole
                a = self._assigned.get(rng.key)
                if a is None:
                    return forward, index, rng
                if shared is None and len(a.peers) < FANOUT and peer not in a.peers:
                    shared = (forward, index, rng)
            if shared is not None:
                return shared
        return None

    def take_for_peer(
        self,
        peer: PeerId,
        generation: int,
        advertised_tip: int,
        max_headers: int,
        frame_cap: int,
    ) -> HeaderWork | None:
        """Assign the next range to ``peer`` under ``generation``, clamped to its caps.

        A finalized range the clamp would shrink stays queued whole and ``None`` is returned
        (another peer with a larger cap can take it). A non-finalized range whose narrowed head
        is already covered is dropped and the search goes on. Does not wake: taking work never
        makes more work available.
        """
        while True:
            pick = self.next_for_peer(peer, advertised_tip)
            if pick is None:
                return None
            forward, index, rng = pick
            advertised_tip = min(advertised_tip, self._caps.get(peer, advertised_tip))
            # A peer behind the range's end still serves its head: a range produced up to
            # the best advertised tip must not wait for the one peer that claims it.
            within = min(rng.count, advertised_tip - rng.start_height + 1)
            count = clamp_request_count(within, max_headers, frame_cap)
            if count < rng.count and rng.finalized:
                return None
            dq = self._forward if forward else self._backward
            if count == rng.count:
                break
            rng = rng.with_count(count)
            if rng.peer is not None or not self.is_covered(rng):
                dq[index] = rng
                break
            # A partially covered range narrowed into its covered head: fetching it would be
            # wasted, so drop the entry (the reactor re-produces the tail from its best tip).
            del dq[index]
        a = self._assigned.get(rng.key)
        if a is None:
            a = self._assigned[rng.key] = _Assignment(rng, forward)
        else:
            a.range = rng
        a.peers[peer] = generation
        if len(a.peers) >= FANOUT or rng.peer is not None:
            del dq[index]
        return HeaderWork(rng, count, forward)

    def return_work(
        self,
        peer: PeerId,
        generation: int,
        rng: RangeRequest,
        reason: ReturnReason,
        *,
        forward: bool | None = None,
    ) -> None:
        """Hand ``rng`` back from ``peer``'s session ``generation``; always re-queue it; wake.

        Only the same generation clears the peer's assignment, so a stale session's teardown
        cannot release the range the reconnected session is fetching. ``TIMEOUT`` keeps the
        assignment so the slow peer does not take the range straight back. ``forward`` (from
        :attr:`HeaderWork.forward`) picks the deque when the assignment is already gone.
        """
        a = self._assigned.get(rng.key)
        if forward is None:
            forward = a.forward if a is not None else True
        if a is not None and reason is not ReturnReason.TIMEOUT and a.peers.get(peer) == generation:
            del a.peers[peer]
            if not a.peers:
                del self._assigned[rng.key]
        self._retry(rng, forward)
        self._wake()

    def retry(self, rng: RangeRequest, *, forward: bool | None = None) -> None:
        """Push ``rng`` to the front of its deque unless covered; wake.

        Deliberately no de-duplication (as in the reference): a retried range must be
        reachable at the front even while a stale copy sits further back.
        """
        if forward is None:
            a = self._assigned.get(rng.key)
            forward = a.forward if a is not None else True
        self._retry(rng, forward)
        self._wake()

    def _retry(self, rng: RangeRequest, forward: bool) -> None:
        if rng.peer is not None or not self.is_covered(rng):
            (self._forward if forward else self._backward).appendleft(rng)

    def cap_peer(self, peer: PeerId, height: int) -> None:
        """Ask ``peer`` for nothing above ``height`` until :meth:`uncap_peer` (no wake)."""
        self._caps[peer] = min(height, self._caps.get(peer, height))

    def uncap_peer(self, peer: PeerId) -> bool:
        """Lift ``peer``'s cap (it sent a new Status); wake if there was one."""
        if self._caps.pop(peer, None) is None:
            return False
        self._wake()
        return True

    def cap_of(self, peer: PeerId) -> int | None:
        return self._caps.get(peer)

    def forget_peer(self, peer: PeerId) -> None:
        """Drop ``peer`` from every assignment (its session ended); wake.

        No re-queue here: the ending session's teardown returns its in-flight range, and the
        fan-out copies that stayed queued are simply takeable again.
        """
        self._caps.pop(peer, None)
        for key in list(self._assigned):
            a = self._assigned[key]
            a.peers.pop(peer, None)
            if not a.peers:
                del self._assigned[key]
        self._forward = deque(r for r in self._forward if r.peer != peer)
        self._backward = deque(r for r in self._backward if r.peer != peer)
        self._wake()

    def clear_assignment(self, rng: RangeRequest) -> None:
        """Drop every peer's assignment of ``rng``'s key; wake."""
        self._assigned.pop(rng.key, None)
        self._wake()

    # --- resets and coverage -----------------------------------------------------------

    def reset_above(self, height: int) -> None:
        """Drop forward queued and assigned ranges ending above ``height`` (a reanchor).

        Backward brackets sit below the anchor and stay valid; no wake, nothing new.
        """
        self._forward = deque(r for r in self._forward if r.end_height <= height)
        for key in [k for k, a in self._assigned.items() if a.forward]:
            if self._assigned[key].range.end_height > height:
                del self._assigned[key]

    def mark_height_covered(self, height: int) -> None:
        """Mark one height covered (see :meth:`mark_range_covered`)."""
        self.mark_range_covered(height, height)

    def mark_range_covered(self, start: int, end: int) -> None:
        """Merge ``[start, end]`` into the covered intervals, then prune covered work.

        Touching intervals (``end + 1 == start``) merge, so a range spanning two adjacent
        commits counts as covered. No wake: covering removes work, it never adds any.
        """
        if end < start:
            raise ValueError(f"empty covered range [{start}, {end}]")
        lo = bisect.bisect_left(self._covered, (start, start))
        if lo > 0 and self._covered[lo - 1][1] + 1 >= start:
            lo -= 1
        hi = lo
        new_start, new_end = start, end
        while hi < len(self._covered) and self._covered[hi][0] <= end + 1:
            new_start = min(new_start, self._covered[hi][0])
            new_end = max(new_end, self._covered[hi][1])
            hi += 1
        self._covered[lo:hi] = [(new_start, new_end)]
        self._forward = deque(r for r in self._forward if not self._prunable(r))
        self._backward = deque(r for r in self._backward if not self._prunable(r))
        for key in [k for k, a in self._assigned.items() if self._prunable(a.range)]:
            del self._assigned[key]

    def uncover_above(self, height: int) -> None:
        """Forget coverage above ``height`` (a reorg to a shorter chain); no wake."""
        kept: list[tuple[int, int]] = []
        for s, e in self._covered:
            if s > height:
                break
            kept.append((s, min(e, height)))
        self._covered = kept

    def _prunable(self, rng: RangeRequest) -> bool:
        return rng.peer is None and self.is_covered(rng)

    def _interval_covered(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self._covered, start, key=lambda iv: iv[0]) - 1
        return i >= 0 and self._covered[i][0] <= start and end <= self._covered[i][1]

    # --- observability -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Counts for the console and the snapshot document (orjson-serializable)."""
        peers = {p for a in self._assigned.values() for p in a.peers}
        return {
            "forward": len(self._forward),
            "backward": len(self._backward),
            "assigned_ranges": len(self._assigned),
            "assigned_peers": len(peers),
            "assignments": sum(len(a.peers) for a in self._assigned.values()),
            "covered_intervals": len(self._covered),
            "covered_heights": sum(e - s + 1 for s, e in self._covered),
        }

    def invariant_violations(self, live: Mapping[PeerId, int]) -> list[str]:
        """Every broken invariant, given each live peer's current generation; [] when sound."""
        out: list[str] = []
        for key, a in self._assigned.items():
            if not a.peers:
                out.append(f"assignment {key} has no peers")
            if len(a.peers) > FANOUT:
                out.append(f"assignment {key} has {len(a.peers)} peers > fan-out {FANOUT}")
            if a.range.key != key:
                out.append(f"assignment {key} holds range keyed {a.range.key}")
            for peer, gen in a.peers.items():
                if peer not in live:
                    out.append(f"range {key} assigned to gone peer {peer!r} (gen {gen})")
                elif live[peer] != gen:
                    out.append(
                        f"range {key} assigned to {peer!r} under stale gen {gen}"
                        f" (current {live[peer]})"
                    )
            if self._prunable(a.range):
                out.append(f"range {key} is both covered and assigned")
        for direction, rng in self._queued():
            if self._prunable(rng):
                out.append(
                    f"{direction} range {rng.start_height}..={rng.end_height} is both"
                    " covered and queued"
                )
        for (s1, e1), (s2, e2) in zip(self._covered, self._covered[1:], strict=False):
            if not (s1 <= e1 and e1 + 1 < s2):
                out.append(f"covered intervals [{s1},{e1}] and [{s2},{e2}] overlap or touch")
        return out

    def _queued(self) -> Iterator[tuple[str, RangeRequest]]:
        for rng in self._forward:
            yield "forward", rng
        for rng in self._backward:
            yield "backward", rng

    def _wake(self) -> None:
        self._on_wake()
