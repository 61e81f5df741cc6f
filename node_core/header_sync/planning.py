"""Range planning: which header ranges the reactor puts in the shared queue, and fork search.

Why a module of its own: *what* to ask for is a decision apart from *how* the reactor keeps
its shared state. Three kinds of range are planned, each at most one response long:

- **forward**: above our index tip, up to the best tip any peer's Status claims; a range that
  reaches a checkpoint ends on it and is marked finalized;
- **fork-search probes**: a response that does not link to its anchor, from a peer claiming a
  higher tip than any we know, starts a search for where that peer's chain leaves ours
  (:class:`~node_core.header_sync.entries.ForkSearch`). Each probe is anchored ``step``
  below the lowest anchor that failed to link, each probe that fails to link too multiplies
  ``step`` by 4, and no probe is anchored below the finalized height. Probes are affine: only
  that peer takes them;
- **branch extensions**: once a probe links, the part that differs is the competing branch
  (:mod:`node_core.header_sync.chain_index`), extended by affine ranges from its owner until
  it catches up with the owner's Status.

Sans-I/O and pure: these functions read the index and the peers' records and return ranges or
a new search; the reactor (:mod:`node_core.header_sync.reactor`) queues them, records
misbehavior and drops searches. They never import the reactor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import TYPE_CHECKING

from node_core.header_sync.entries import ForkSearch
from node_core.header_sync.range_queue import AHEAD_ANCHOR, RangeRequest
from node_core.protocol.header_sync import MAX_HEADERS_PER_RESPONSE, clamp_max_headers

if TYPE_CHECKING:
    from node_core.chain.genesis import Checkpoints
    from node_core.header_sync.chain_index import HeaderIndex
    from node_core.header_sync.entries import PeerEntry

__all__ = [
    "ProbeEnd",
    "best_advertised",
    "branch_extension",
    "claims_more",
    "forward_range",
    "forward_ranges",
    "next_probe",
    "pipeline",
    "widen_search",
]


class ProbeEnd(Enum):
    """Why a fork search ends without another probe."""

    #: Nothing is left between where the chains agree and where they differ: the peer's
    #: answers contradict each other (misbehavior).
    EXHAUSTED = "exhausted"
    #: Our index no longer holds the probe's anchor (it moved meanwhile): start over later.
    NO_ANCHOR = "no_anchor"


def best_advertised(peers: Iterable[PeerEntry]) -> int:
    """The highest tip any peer's Status claims; -1 while no peer has sent one."""
    best = -1
    for entry in peers:
        if entry.status is not None:
            best = max(best, entry.status.tip_height)
    return best


def forward_range(index: HeaderIndex, best: int, checkpoints: Checkpoints) -> RangeRequest | None:
    """The forward range above our index tip towards ``best``; None when we are not behind."""
    tip = index.tip_height
    if best <= tip:
        return None
    start = tip + 1
    end = min(best, tip + MAX_HEADERS_PER_RESPONSE)
    finalized = False
    cp = checkpoints.next_at_or_above(start)
    if cp is not None and cp <= end:
        end, finalized = cp, True
    return RangeRequest(start, end - start + 1, index.tip_hash, finalized)


def forward_ranges(
    index: HeaderIndex, best: int, checkpoints: Checkpoints, step: int, ahead: int
) -> list[RangeRequest]:
    """Up to ``ahead`` consecutive forward ranges of at most ``step`` headers from our tip.

    The first is :func:`forward_range`'s, narrowed to ``step``; the others lie beyond our
    index tip, so their anchor is :data:`AHEAD_ANCHOR` (resolved when their answer is
    checked). Each range that reaches a checkpoint ends on it and is finalized. With
    ``ahead = 1`` this is the reference's single forward range (deviation 33).
    """
    out: list[RangeRequest] = []
    start, anchor = index.tip_height + 1, index.tip_hash
    step = max(1, min(step, MAX_HEADERS_PER_RESPONSE))
    while len(out) < ahead and start <= best:
        end = min(best, start + step - 1)
        cp = checkpoints.next_at_or_above(start)
        finalized = cp is not None and cp <= end
        if cp is not None and finalized:
            end = cp
        out.append(RangeRequest(start, end - start + 1, anchor, finalized))
        start, anchor = end + 1, AHEAD_ANCHOR
    return out


def pipeline(peers: Iterable[PeerEntry], ranges_ahead: int) -> tuple[int, int]:
    """``(step, ahead)`` for :func:`forward_ranges`.

    One peer with a Status (or none): one range of up to 4,000 headers, narrowed to the
    peer's cap when taken, as the reference plans it. Two or more: ranges of the smallest cap
    any of them advertised (so no range is narrowed and no gap opens between them), one per
    peer plus one, at most ``ranges_ahead`` (deviation 33).
    """
    caps = [clamp_max_headers(e.status.max_headers_per_response) for e in peers if e.status]
    if len(caps) < 2 or ranges_ahead < 2:
        return MAX_HEADERS_PER_RESPONSE, 1
    return min(caps), min(len(caps) + 1, ranges_ahead)


def branch_extension(index: HeaderIndex, peers: Mapping[str, PeerEntry]) -> RangeRequest | None:
    """The next range of the competing branch, affine to its owner; None when there is none
    to ask (no branch, its owner gone or without a Status, or the branch caught up)."""
    branch = index.branch
    if branch is None:
        return None
    owner = peers.get(branch.peer)
    if owner is None or owner.status is None:
        return None
    ahead = owner.status.tip_height - branch.tip_height
    if ahead <= 0:
        return None
    return RangeRequest(
        branch.tip_height + 1,
        min(ahead, MAX_HEADERS_PER_RESPONSE),
        branch.tip_hash,
        False,
        owner.generation,
        owner.label,
    )


def claims_more(entry: PeerEntry, index: HeaderIndex) -> bool:
    """Whether ``entry``'s Status claims a higher tip than our index or its branch holds."""
    best_known = index.tip_height
    branch = index.branch
    if branch is not None:
        best_known = max(best_known, branch.tip_height)
    return entry.status is not None and entry.status.tip_height > best_known


def widen_search(
    search: ForkSearch | None, failed_anchor: int, finalized_height: int, first_step: int
) -> ForkSearch:
    """A range anchored at ``failed_anchor`` did not link: start a search, or narrow the
    running one (updated in place) and probe 4 times further below next."""
    if search is None:
        return ForkSearch(finalized_height, failed_anchor, first_step)
    search.high = min(search.high, failed_anchor)
    search.step *= 4
    return search


def next_probe(entry: PeerEntry, index: HeaderIndex) -> RangeRequest | ProbeEnd | None:
    """The next probe of ``entry``'s fork search, why the search ends, or None when it has
    no search running (or no Status)."""
    search = entry.fork
    if search is None or entry.status is None:
        return None
    if search.high <= search.low:
        return ProbeEnd.EXHAUSTED
    mid = max(search.low, search.high - search.step)
    anchor = index.hash_at(mid)
    if anchor is None:
        return ProbeEnd.NO_ANCHOR
    count = min(search.high - mid, MAX_HEADERS_PER_RESPONSE)
    return RangeRequest(mid + 1, count, anchor, False, entry.generation, entry.label)
