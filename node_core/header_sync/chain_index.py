"""The header-sync reactor's view of the header chain: main chain, competing branch, plans.

Sans-I/O and synchronous. The reactor consults and updates this index with no await, so its
scheduling decisions (where forward ranges start, whether a response extends, repeats or
contradicts our chain) never race a store write. The store follows the index through the
committer; the index is rebuilt from the store at start.

Invariants:

- ``hashes[h]`` is the main-chain header hash at height ``h`` for ``0 <= h <= tip_height``;
  ``cum_work[h]`` is the total work of heights ``1..h`` (genesis carries none), so "work above
  ``f``" is ``cum_work[tip] - cum_work[f]`` in O(1).
- At most one competing :class:`Branch` is kept. It forks from a main-chain height at or
  above the finalized height, its headers link to each other, and it is switched to (a reorg)
  only when its work above the fork is *strictly* greater than the main chain's, so equal work
  keeps the chain we had first (as the reference's most-work rule does).
- :meth:`HeaderIndex.plan` never mutates; :meth:`HeaderIndex.apply` applies exactly one plan.
  Callers validate the headers first (:func:`validate_run`): this module trusts their links.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from node_core.chain.miner import ChainError, ChainReject, validate_header, validate_link
from node_core.chain.model import BlockHeader, work

__all__ = ["Branch", "CommitPlan", "HeaderIndex", "LinkError", "PlanKind", "validate_run"]


class LinkError(Exception):
    """The first header of a response does not chain to the range's anchor."""


def validate_run(
    start: int,
    anchor_hash: bytes,
    headers: Sequence[BlockHeader],
    *,
    anchor_time: int | None,
    min_bits: int,
) -> None:
    """Stateless checks of one response: heights from ``start``, chained to ``anchor_hash``.

    The first header is held to every rule :func:`validate_link` holds the others to, against
    the anchor (its parent): the anchor is known here only by hash and time, not as a header,
    so its link and time rule are checked one by one. Without the time check a peer could
    make time go backwards at every response boundary (docs/PROTOCOL.md §8.2, §8.5 step 4).

    Args:
        start: The requested first height (the anchor's height + 1).
        anchor_hash: Hash of the header the range was requested after.
        headers: The decoded response, in order.
        anchor_time: ``time`` of the anchor header (:meth:`HeaderIndex.time_at`). ``None``
            only when the index no longer holds the anchor (the main chain moved or the branch
            was dropped since the request): :meth:`HeaderIndex.plan` then finds the run
            ``STALE`` and nothing of it is stored, so only its other rules can be checked.
        min_bits: The network's minimum difficulty.

    Raises:
        LinkError: The first header does not name ``anchor_hash`` as its parent (the peer's
            chain differs from ours at or below the anchor: stale anchor or a fork).
        ChainError: A header breaks a consensus rule or the run is not contiguous.
    """
    if not headers:
        return
    first = headers[0]
    if first.height != start:
        raise ChainError(ChainReject.BAD_HEIGHT, f"first header at {first.height}, asked {start}")
    if first.prev_hash != anchor_hash:
        raise LinkError(f"header {first.label()} does not link to anchor {anchor_hash.hex()[:16]}")
    if anchor_time is not None and first.time < anchor_time:
        raise ChainError(
            ChainReject.TIME_BEFORE_PARENT,
            f"time {first.time} of {first.label()} < anchor time {anchor_time}",
        )
    validate_header(first, min_bits=min_bits)
    prev = first
    for header in headers[1:]:
        validate_link(prev, header, min_bits=min_bits)
        prev = header


class PlanKind(StrEnum):
    """What a validated response means for our chain."""

    EXTEND = "extend"  # new headers on top of the main tip
    IDENTICAL = "identical"  # every header is already on the main chain
    BRANCH = "branch"  # a competing branch with less or equal work: kept, not switched to
    REORG = "reorg"  # a competing branch with more work: switch to it
    STALE = "stale"  # anchored at neither the main chain nor the branch tip any more
    BELOW_FINALIZED = "below_finalized"  # contradicts the chain at or below the finalized height


@dataclass(slots=True)
class Branch:
    """A competing chain fetched from ``peer``: ``headers`` follow main height ``fork_height``."""

    peer: str
    fork_height: int
    headers: list[BlockHeader]
    work: int

    @property
    def tip_height(self) -> int:
        return self.fork_height + len(self.headers)

    @property
    def tip_hash(self) -> bytes:
        return self.headers[-1].hash


@dataclass(frozen=True, slots=True)
class CommitPlan:
    """The outcome of :meth:`HeaderIndex.plan`.

    ``headers`` are what must be written from ``start`` (EXTEND: the new suffix; REORG: the
    whole branch above ``fork_height``; BRANCH: the branch part of this response).
    ``matched_to`` is the last height of the response that equals our main chain (-1: none),
    which a fork search uses as its new known-common height.
    """

    kind: PlanKind
    start: int = 0
    headers: tuple[BlockHeader, ...] = ()
    fork_height: int | None = None
    matched_to: int = -1
    peer: str | None = None


class HeaderIndex:
    """Main-chain hashes and cumulative work by height, plus at most one competing branch."""

    def __init__(self, genesis: BlockHeader, *, finalized_height: int = 0) -> None:
        self.hashes: list[bytes] = [genesis.hash]
        self.times: list[int] = [genesis.time]
        self.cum_work: list[int] = [0]
        self.finalized_height = finalized_height
        self.branch: Branch | None = None
        self.reorgs = 0
        #: Times the main chain was cut back (reorg, abandon, refused commit): an answer held
        #: for a range ahead of the tip is only checked against the chain it was asked on.
        self.truncations = 0

    # --- facts -----------------------------------------------------------------------------

    @property
    def tip_height(self) -> int:
        return len(self.hashes) - 1

    @property
    def tip_hash(self) -> bytes:
        return self.hashes[-1]

    def hash_at(self, height: int) -> bytes | None:
        return self.hashes[height] if 0 <= height < len(self.hashes) else None

    def time_at(self, height: int, hash_: bytes) -> int | None:
        """``time`` of header ``hash_`` at ``height`` if the index holds it, else ``None``.

        A range's anchor is a main-chain header (forward ranges, fork-search probes) or a
        branch header (branch extensions); :func:`validate_run` needs its time to hold the
        first header of the answer to the time rule.
        """
        if self.hash_at(height) == hash_:
            return self.times[height]
        branch = self.branch
        if branch is not None and branch.fork_height < height <= branch.tip_height:
            header = branch.headers[height - branch.fork_height - 1]
            if header.hash == hash_:
                return header.time
        return None

    def work_above(self, height: int) -> int:
        """Main-chain work of heights ``height+1 .. tip``."""
        return self.cum_work[-1] - self.cum_work[height]

    def load(self, headers: Iterable[BlockHeader]) -> None:
        """Append stored headers 1..tip at start (they were validated when first stored)."""
        for header in headers:
            self._append(header)

    def _append(self, header: BlockHeader) -> None:
        self.hashes.append(header.hash)
        self.times.append(header.time)
        self.cum_work.append(self.cum_work[-1] + work(header.bits))

    def truncate_to(self, height: int) -> None:
        """Forget the main chain above ``height`` (a planned write the store refused)."""
        self.truncations += 1
        del self.hashes[height + 1 :]
        del self.times[height + 1 :]
        del self.cum_work[height + 1 :]

    # --- planning --------------------------------------------------------------------------

    def plan(self, peer: str, headers: Sequence[BlockHeader]) -> CommitPlan:
        """Classify a validated, contiguous, non-empty response against the index."""
        first = headers[0]
        start = first.height
        if self.hash_at(start - 1) == first.prev_hash:
            return self._plan_on_main(peer, start, headers)
        branch = self.branch
        if (
            branch is not None
            and start == branch.tip_height + 1
            and first.prev_hash == (branch.tip_hash)
        ):
            total = branch.work + sum(work(h.bits) for h in headers)
            merged = (*branch.headers, *headers)
            if total > self.work_above(branch.fork_height):
                return CommitPlan(
                    PlanKind.REORG, branch.fork_height + 1, merged, branch.fork_height, -1, peer
                )
            return CommitPlan(PlanKind.BRANCH, start, tuple(headers), branch.fork_height, -1, peer)
        return CommitPlan(PlanKind.STALE, start)

    def _plan_on_main(self, peer: str, start: int, headers: Sequence[BlockHeader]) -> CommitPlan:
        hashes = self.hashes
        tip = self.tip_height
        i = 0
        n = len(headers)
        while i < n and start + i <= tip and hashes[start + i] == headers[i].hash:
            i += 1
        matched_to = start + i - 1
        if i == n:
            return CommitPlan(PlanKind.IDENTICAL, start, (), None, matched_to, peer)
        height = start + i
        rest = tuple(headers[i:])
        if height > tip:
            return CommitPlan(PlanKind.EXTEND, height, rest, None, matched_to, peer)
        fork = height - 1
        if fork < self.finalized_height:
            return CommitPlan(PlanKind.BELOW_FINALIZED, height, (), fork, matched_to, peer)
        branch_work = sum(work(h.bits) for h in rest)
        if branch_work > self.work_above(fork):
            return CommitPlan(PlanKind.REORG, height, rest, fork, matched_to, peer)
        return CommitPlan(PlanKind.BRANCH, height, rest, fork, matched_to, peer)

    def apply(self, plan: CommitPlan) -> None:
        """Make the index reflect ``plan`` (the committer makes the store follow)."""
        if plan.kind is PlanKind.EXTEND:
            for header in plan.headers:
                self._append(header)
        elif plan.kind is PlanKind.REORG:
            assert plan.fork_height is not None
            self.truncate_to(plan.fork_height)
            for header in plan.headers:
                self._append(header)
            self.branch = None
            self.reorgs += 1
        elif plan.kind is PlanKind.BRANCH:
            assert plan.fork_height is not None and plan.peer is not None
            branch = self.branch
            rest = list(plan.headers)
            if (
                branch is not None
                and branch.fork_height == plan.fork_height
                and plan.start == branch.tip_height + 1
            ):
                branch.headers.extend(rest)
                branch.work += sum(work(h.bits) for h in rest)
            else:
                self.branch = Branch(
                    plan.peer, plan.fork_height, rest, sum(work(h.bits) for h in rest)
                )

    def drop_branch(self, peer: str | None = None) -> None:
        """Forget the competing branch (all of it, or only if it came from ``peer``)."""
        if self.branch is not None and (peer is None or self.branch.peer == peer):
            self.branch = None
