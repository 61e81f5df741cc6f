"""What a Headers response to one of our requests does, from matching it to committing it.

Why a module of its own: this is range sync's intake, the longest path through header sync
and one concept: the response is matched to the front of the peer's outstanding requests,
checked (shape, decoding, checkpoints, links and proof of work against the range's anchor),
cut before any header we abandoned for want of its body
(:mod:`node_core.header_sync.unavailable`), planned against the header index
(:mod:`node_core.header_sync.chain_index`: extend, identical, branch, reorg, stale) and
applied; what it covers is dropped from every peer's outstanding requests. A response that
does not link from a peer claiming more starts or narrows its fork search
(:mod:`node_core.header_sync.planning`).

:class:`HeadersResponses` is owned by the reactor (:mod:`node_core.header_sync.reactor`) and
runs inside its synchronous handlers; it reaches the reactor only through what the reactor
hands it at construction, and never imports the reactor.

Invariants:

- Responses are answered in order: each pops the front of the peer's outstanding FIFO, and
  with nothing outstanding only a late-covered credit absorbs one silently.
- A failed shared range goes back to the queue (``retry``); a failed affine range does not,
  since scheduling plans the next probe or branch range itself.
- The store follows the index in plan order: each applied plan is put to the committer in the
  same synchronous section that changed the index.
- A shared request whose heights became covered is dropped with a DropExpectation to its
  routine, and one late answer is absorbed for it; a peer that cannot take that command is
  parked.
- An answer to a range planned ahead of the index tip (anchor
  :data:`~node_core.header_sync.range_queue.AHEAD_ANCHOR`, deviation 33) is held, at most one
  per start height and :data:`MAX_HELD` in all, until the index reaches the range's start;
  it is then checked exactly like any other answer, against the header there. A held answer
  whose peer session ended, or that was asked on a chain the index has since cut back, is
  not checked: its range goes back to the queue.
- An answer is decoded in pieces over several reactor turns (:meth:`HeadersResponses.advance`)
  and the reactor handles nothing else meanwhile, so for header sync a check is as atomic as
  in one go; every read of the index happens in its last piece, which checks, plans and
  applies it in one synchronous section.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from node_core.chain.miner import ChainError
from node_core.chain.model import BlockHeader, header_rows
from node_core.header_sync.chain_index import (
    CommitPlan,
    HeaderIndex,
    LinkError,
    PlanKind,
    validate_run,
)
from node_core.header_sync.commands import DropExpectation, EnqueueOutcome
from node_core.header_sync.committer import CommitHeaders, HeaderCommitter, ReorgHeaders
from node_core.header_sync.entries import SERVICE, Outstanding
from node_core.header_sync.events import MisbehaviorReason, PeerHeadersReceived
from node_core.header_sync.planning import claims_more, widen_search
from node_core.header_sync.range_queue import AHEAD_ANCHOR, ReturnReason, SharedHeaderRangeQueue
from node_core.header_sync.unavailable import UnavailableHeaders
from node_core.protocol.errors import CodecError

if TYPE_CHECKING:
    from node_core.header_sync.entries import HeaderSyncConfig, PeerEntry
    from node_core.header_sync.observe import HeaderSyncMetrics, HeaderSyncTrace
    from node_core.observe.journal import Journal

__all__ = ["MAX_HELD", "HeadersResponses"]

#: Answers held for ranges ahead of the index tip, at most (each at most one 4,000-header
#: Headers message, 372 KB): a bound on memory whatever peers answer.
MAX_HELD = 16
#: Headers decoded between two looks at the reactor turn's deadline (~0.5 ms).
DECODE_CHUNK = 100


@dataclass(frozen=True, slots=True)
class _Held:
    """An answer to a range ahead of the tip, waiting for the index to reach its start."""

    peer: str
    generation: int
    outstanding: Outstanding
    headers: tuple[bytes, ...]
    truncations: int


@dataclass(frozen=True, slots=True)
class _Checking:
    """An answer being decoded a piece at a time (:meth:`HeadersResponses.advance`)."""

    entry: PeerEntry
    o: Outstanding
    raw: tuple[bytes, ...]
    headers: list[BlockHeader]


class HeadersResponses:
    """Headers responses to our requests; see the module docstring.

    ``record`` records a peer's misbehavior, ``command`` offers a command to a peer's sink,
    ``park`` parks a peer, ``schedule`` plans and wakes routines, ``reorged`` tells block sync
    to forget its work above a height: the reactor's own methods.
    """

    def __init__(
        self,
        *,
        peers: Mapping[str, PeerEntry],
        index: HeaderIndex,
        queue: SharedHeaderRangeQueue,
        unavailable: UnavailableHeaders,
        committer: HeaderCommitter,
        config: HeaderSyncConfig,
        metrics: HeaderSyncMetrics,
        trace: HeaderSyncTrace,
        journal: Journal,
        record: Callable[[str, MisbehaviorReason], None],
        command: Callable[[PeerEntry, DropExpectation, str], EnqueueOutcome],
        park: Callable[[PeerEntry, str], int],
        schedule: Callable[[], None],
        reorged: Callable[[int], None],
    ) -> None:
        self.peers = peers
        self.index = index
        self.queue = queue
        self.unavailable = unavailable
        self.committer = committer
        self.config = config
        self.metrics = metrics
        self.trace = trace
        self.journal = journal
        self._record = record
        self._command = command
        self._park = park
        self._schedule = schedule
        self._reorged = reorged
        self._held: dict[int, _Held] = {}
        self._checking: _Checking | None = None

    def on_headers(self, ev: PeerHeadersReceived) -> None:
        """A Headers response from ``ev.peer``: match, check, cut, plan and apply it."""
        entry = self.peers.get(ev.peer)
        if entry is None:
            self._record(ev.peer, MisbehaviorReason.UNSOLICITED_HEADERS)
            return
        if not entry.outstanding:
            if entry.late_covered > 0:
                entry.late_covered -= 1
                self.metrics.response_late_covered_dropped.inc()
                return
            self._record(ev.peer, MisbehaviorReason.UNSOLICITED_HEADERS)
            return
        o = entry.outstanding.popleft()
        if o.range.peer is not None:
            # An affine range is answered once; scheduling makes the next one if needed.
            self.queue.clear_assignment(o.range)
        self.metrics.response_received.inc()
        self.trace.row(
            "header_headers_received",
            peer=ev.peer,
            range_start=o.range.start_height,
            range_count=len(ev.headers),
            expected_count=o.range.count,
        )
        if len(ev.body_sizes) != len(ev.headers):
            self._record(ev.peer, MisbehaviorReason.MALFORMED_MESSAGE)
            self._retry(o)
            return
        if not ev.headers:
            self.metrics.response_empty_returned.inc()
            return  # the routine already returned the range and holds its slot for 1 s
        if len(ev.headers) > o.range.count:
            self._record(ev.peer, MisbehaviorReason.RESPONSE_TOO_LONG)
            self._retry(o)
            return
        if o.range.anchor_hash == AHEAD_ANCHOR:
            self._hold(entry, o, ev.headers)
            return
        self._check(entry, o, ev.headers)

    @property
    def held(self) -> int:
        """Answers held for ranges ahead of the index tip."""
        return len(self._held)

    def _hold(self, entry: PeerEntry, o: Outstanding, raw: tuple[bytes, ...]) -> None:
        start = o.range.start_height
        if start in self._held or len(self._held) >= MAX_HELD:
            # Another peer's answer to the same range is held already (a fan-out copy), or
            # the bound is reached: this one is not kept, and its range stays queued.
            self.metrics.response_late_covered_dropped.inc()
            if start not in self._held:
                self._retry(o)
            return
        truncations = self.index.truncations
        self._held[start] = _Held(entry.label, entry.generation, o, raw, truncations)

    def releasable(self) -> bool:
        """Whether a held answer's start has been reached (:meth:`release_held` has work)."""
        return bool(self._held) and self.index.hash_at(min(self._held) - 1) is not None

    def release_held(self) -> None:
        """Start the check of the lowest held answer whose start the index reached.

        One per call: the reactor calls it before any later event while :meth:`releasable`,
        so held answers are checked in the order they always were, each in its own turns.
        """
        if not self.releasable():
            return
        start = min(self._held)
        anchor = self.index.hash_at(start - 1)
        assert anchor is not None
        held = self._held.pop(start)
        entry = self.peers.get(held.peer)
        if (
            entry is None
            or entry.generation != held.generation
            or held.truncations != self.index.truncations
        ):
            self._retry(held.outstanding)
            return
        o = held.outstanding
        rng = dataclasses.replace(o.range, anchor_hash=anchor)
        self._check(entry, dataclasses.replace(o, range=rng), held.headers)

    @property
    def checking(self) -> bool:
        """An answer is being decoded: the reactor handles nothing else until it is done."""
        return self._checking is not None

    def _check(self, entry: PeerEntry, o: Outstanding, raw: tuple[bytes, ...]) -> None:
        """Start one answer's check: :meth:`advance` decodes it and then applies it."""
        self._checking = _Checking(entry, o, raw, [])

    def advance(self, deadline: float) -> None:
        """Decode the answer being checked until ``deadline`` (``time.perf_counter``), at
        least :data:`DECODE_CHUNK` headers; once all are decoded, check and apply it.

        Why in pieces: decoding is most of a check (BLAKE2b per header; 5-20 ms for 1,000
        headers on a busy machine), and one check per reactor turn still held the node's
        loop for 15-30 ms iterations during a block sync (docs/ARCHITECTURE.md, "Measuring
        performance"). Decoding reads nothing but the answer's bytes, and the reactor
        handles nothing else while :attr:`checking` (no event, result or disconnect), so
        the check is as atomic for header sync as it was in one go: only other tasks of the
        loop run between the pieces. Everything that reads the index runs in the last piece.
        """
        c = self._checking
        if c is None:
            return
        try:
            raw, out, n = c.raw, c.headers, len(c.raw)
            while len(out) < n:
                end = min(n, len(out) + DECODE_CHUNK)
                out.extend(BlockHeader.decode(b) for b in raw[len(out) : end])
                if len(out) < n and time.perf_counter() >= deadline:
                    return
        except CodecError:
            self._checking = None
            self._reject_range(c.entry, c.o, "decode")
            return
        except BaseException:
            self._checking = None
            raise
        self._checking = None
        if self.peers.get(c.entry.label) is not c.entry:
            self._retry(c.o)  # parked meanwhile (an operator's action): not ours to apply
            return
        self._checked(c.entry, c.o, tuple(out))

    def _checked(self, entry: PeerEntry, o: Outstanding, headers: tuple[BlockHeader, ...]) -> None:
        """Check a decoded answer against the range's anchor, cut, plan and apply it."""
        if any(self.config.checkpoints.contradicts(h) for h in headers):
            self._reject_range(entry, o, "checkpoint")
            return
        try:
            validate_run(
                o.range.start_height,
                o.range.anchor_hash,
                headers,
                # The anchor is ours (main chain or branch): its time bounds the first header.
                anchor_time=self.index.time_at(o.range.start_height - 1, o.range.anchor_hash),
                min_bits=self.config.min_bits,
            )
        except LinkError:
            self._on_link_failure(entry, o)
            return
        except ChainError:
            self._reject_range(entry, o, "stateless")
            return
        cut = self.unavailable.first_refused(headers, time.monotonic())
        if cut is not None:
            # The peer's chain runs through a header we abandoned for want of its body:
            # keep what comes before it, and ask this peer for nothing above it for now.
            self.queue.cap_peer(entry.label, headers[cut].height - 1)
            self.trace.row(
                "header_range_rejected",
                peer=entry.label,
                range_start=o.range.start_height,
                range_count=o.range.count,
                reason="abandoned_header",
                stage="unavailable",
            )
            headers = headers[:cut]
            if not headers:
                self._retry(o)
                self._schedule()
                return
        if o.range.finalized and (
            len(headers) != o.range.count
            or self.config.checkpoints.checkpoint_at(headers[-1].height) != headers[-1].hash
        ):
            self._reject_range(entry, o, "checkpoint")
            return
        self._apply_plan(entry, o, self.index.plan(entry.label, headers))

    def time_out(self, now: float) -> None:
        """Requests past their deadline: their ranges go back, their routines drop them."""
        for entry in list(self.peers.values()):
            expired = [o for o in entry.outstanding if o.deadline <= now]
            if not expired:
                continue
            entry.outstanding = deque(o for o in entry.outstanding if o.deadline > now)
            for o in expired:
                self.metrics.request_timed_out.inc()
                if o.range.peer is not None:
                    self.queue.clear_assignment(o.range)
                else:
                    self.queue.return_work(
                        entry.label, o.generation, o.range, ReturnReason.TIMEOUT, forward=o.forward
                    )
                if entry.generation != o.generation or entry.label not in self.peers:
                    continue
                cmd = DropExpectation(o.generation, o.range.start_height, o.range.count)
                if self._command(entry, cmd, "drop_expectation") is EnqueueOutcome.PARKED:
                    self._park(entry, "drop_expectation_undeliverable")
                    break
        self._schedule()

    def _retry(self, o: Outstanding) -> None:
        """A shared range goes back to the queue; an affine one is planned anew."""
        if o.range.peer is None:
            self.queue.retry(o.range, forward=o.forward)

    def _reject_range(self, entry: PeerEntry, o: Outstanding, stage: str) -> None:
        self.metrics.range_rejected.labels(stage).inc()
        self.trace.row(
            "header_range_rejected",
            peer=entry.label,
            range_start=o.range.start_height,
            range_count=o.range.count,
            reason="invalid_peer_range",
            stage=stage,
        )
        self._record(entry.label, MisbehaviorReason.INVALID_RANGE)
        self._retry(o)

    def _on_link_failure(self, entry: PeerEntry, o: Outstanding) -> None:
        self.metrics.stale_anchor_link_failure.inc()
        if o.range.peer is None:
            self._retry(o)
        if not claims_more(entry, self.index):
            self._reject_range(entry, o, "link")
            return
        entry.fork = widen_search(
            entry.fork,
            o.range.start_height - 1,
            self.index.finalized_height,
            self.config.fork_search_step,
        )
        self.trace.row(
            "header_fork_search",
            peer=entry.label,
            range_start=o.range.start_height,
            reason="link_failure",
        )
        self._schedule()

    def _apply_plan(self, entry: PeerEntry, o: Outstanding, plan: CommitPlan) -> None:
        kind = plan.kind
        if kind is PlanKind.STALE:
            return  # anchored on a chain we no longer follow: nothing to learn
        if kind is PlanKind.BELOW_FINALIZED:
            self._reject_range(entry, o, "checkpoint")
            return
        if entry.fork is not None and plan.matched_to >= 0:
            entry.fork.low = max(entry.fork.low, plan.matched_to)
        if kind is PlanKind.IDENTICAL:
            if entry.fork is not None and entry.fork.low >= entry.fork.high:
                entry.fork = None  # it agrees where it disagreed: it moved; start over
            self.cover(o.range.start_height, plan.matched_to)
            self._schedule()
            return
        self.index.apply(plan)
        entry.fork = None
        if kind is PlanKind.EXTEND:
            self.cover(o.range.start_height, self.index.tip_height)
            self.committer.put(CommitHeaders(plan.start, tuple(header_rows(plan.headers))))
        elif kind is PlanKind.REORG:
            assert plan.fork_height is not None
            self.queue.reset_above(plan.fork_height)
            self.queue.uncover_above(plan.fork_height)
            self.cover(0, self.index.tip_height)
            for other in self.peers.values():
                other.fork = None
            self.metrics.reorged.inc()
            self.journal.emit(
                "header_sync",
                "reorg",
                peer=entry.label,
                service=SERVICE,
                fork_height=plan.fork_height,
                new_tip=self.index.tip_height,
            )
            self.committer.put(ReorgHeaders(plan.fork_height, plan.headers))
            self._reorged(plan.fork_height)
        elif kind is PlanKind.BRANCH:
            branch = self.index.branch
            self.journal.emit(
                "header_sync",
                "branch",
                peer=entry.label,
                service=SERVICE,
                fork_height=plan.fork_height,
                tip_height=None if branch is None else branch.tip_height,
            )
        self._schedule()

    def cover(self, start: int, end: int) -> None:
        """Heights ``start..end`` are held: drop every shared request inside them."""
        if end < start:
            return
        self.queue.mark_range_covered(start, end)
        self._cancel_covered_outstanding()

    def _cancel_covered_outstanding(self) -> None:
        """Outstanding shared requests now covered are dropped; their answers are absorbed."""
        for entry in list(self.peers.values()):
            keep: deque[Outstanding] = deque()
            dropped: list[Outstanding] = []
            for o in entry.outstanding:
                if o.range.peer is None and self.queue.is_covered(o.range):
                    dropped.append(o)
                else:
                    keep.append(o)
            if not dropped:
                continue
            entry.outstanding = keep
            for o in dropped:
                entry.late_covered += 1
                cmd = DropExpectation(o.generation, o.range.start_height, o.range.count)
                if self._command(entry, cmd, "drop_expectation") is EnqueueOutcome.PARKED:
                    self._park(entry, "drop_expectation_undeliverable")
                    break
