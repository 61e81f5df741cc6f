"""Sans-I/O per-peer block-sync download window (reference §4.5, §4.7, §4.11, §7.1).

One :class:`DownloadWindow` per block-sync peer routine decides how many more ``GetBlocks``
requests the routine may issue right now. It never awaits and never reads a clock: every
entry point takes ``now`` (monotonic seconds), so the whole policy is testable with
explicit times. A ``now`` older than one already seen is treated as the newest ``now`` seen,
so a caller that samples the clock slightly out of order cannot move time backwards.

Why simpler than the reference BBR-lite (``block_sync/bbr.rs``)
-----------------------------------------------------------------
BBR-lite keeps a byte-unit cwnd beside the block cwnd, a ProbeBW pacing-gain cycle (125 %),
a separate delay-gradient *ceiling* with its own relax schedule, and a delivered counter
with per-packet delivery-rate bookkeeping. None of that is needed to reproduce what an
operator sees or the safety rules the routine relies on, so this window:

- counts in **blocks only**, and what it counts against the cwnd is the blocks asked for
  and not yet received (the routine passes ``unreceived_blocks``), as the reference counts
  only unreceived heights as outstanding: there is room for one more request while fewer
  than cwnd blocks are owed, so a window smaller than one multi-block request (the 4-block
  floor against 16-block answers) still asks for the next answer while the current one
  arrives, instead of leaving the peer idle one round trip per answer. A smoothed
  blocks-per-request figure converts the block window into a request count. The byte
  budget is enforced elsewhere (``ByteBudget``), the delivery rate in bytes/s is kept for
  display only. Every block is an RTT sample (time since its request went out), so the
  later blocks of a 16-block answer include the earlier ones' transfer: a healthy peer's
  window reads a queue and sits at its floor, which the unreceived-blocks count makes
  harmless (sampling only a request's first block was tried: a throttled peer's window then
  climbed off its floor and the ``window_floor`` diagnostic stopped firing);
- measures delivery rate once per **round** (one RTprop of wall time, starting at the first
  accepted block) instead of per packet; the interval is never shorter than the previous
  RTprop, as in BBR-lite;
- has no ProbeBW gain cycle: ``cwnd_gain`` (x2) over the bandwidth-delay product already
  leaves headroom for the max filter to see a faster peer;
- folds the delay-gradient ceiling into the cwnd itself: at a probe_bw round end, if the
  smoothed RTT exceeds RTprop * 1.5 (a queue is building at the peer) the cwnd decays
  by 0.9 instead of growing. Without this, cwnd = BDP * 2 with no pacing inflates the queue,
  which inflates RTprop once the old samples age out, which inflates the BDP: a runaway;
- runs ProbeRTT on a fixed schedule (every ``probe_rtt_every`` seconds from the first
  event, holding ``probe_rtt_for`` seconds once drained) rather than only when RTprop went
  stale.

Observable state kept (what the console shows per block-sync routine, §7.1)
---------------------------------------------------------------------------
``cwnd`` (blocks, the effective window: ``min_cwnd`` during ProbeRTT), ``rtprop``
(windowed min RTT, ``horizon`` = 10 s), ``srtt`` (EWMA alpha 0.25), ``delivery_rate_blocks``
and ``delivery_rate_bytes`` (windowed max, 10 s), ``reliability`` (EWMA alpha 0.1: full
completion → 1, timeout or short response → 0), ``phase`` (``startup`` / ``probe_bw`` /
``probe_rtt``), ``proven``, ``requests_without_progress`` and the peer's ``hard_cap``.
:meth:`DownloadWindow.view` renders them JSON-ready. Dropped relative to BBR-lite: the byte
cwnd, the separate delay cap value and the delivered counter.

Phases
------
``startup``: the first round sets a delivery-rate baseline; at each later round end the
cwnd multiplies by ``startup_growth`` if the delivery rate grew by ≥ 25 % over the best
seen and no queue is building (smoothed RTT within RTprop * 1.5); three rounds without such
growth (the pipe is full) or any timeout (loss) move to ``probe_bw``. ``probe_bw``: the
cwnd targets ``max(min_cwnd, BDP * cwnd_gain) * reliability`` (BDP = max delivery rate *
RTprop), drops to a lower target at once, climbs by at most one block per accepted block,
and decays by 0.9 per round while a queue is building. ``probe_rtt``: the effective window
is ``min_cwnd`` until the outstanding requests (as passed to ``available_slots``) have
drained to it, then for ``probe_rtt_for`` more seconds, so RTprop gets a sample with an
empty queue; the underlying phase and cwnd resume afterwards. Without the drain condition
a slow peer's standing queue outlives the 200 ms hold and RTprop ratchets upward.

Invariants (tested in ``tests/block_sync/test_window.py``)
----------------------------------------------------------
- ``cwnd`` is always within ``[min(min_cwnd, ceiling), ceiling]`` with
  ``ceiling = min(max_cwnd, hard_cap)``: the peer's advertised request cap always binds,
  even below ``min_cwnd``. A *sealed* peer (reliability below :data:`SEAL_RELIABILITY`)
  keeps its cwnd but gets **zero** slots, bonus included, until a late block credits it.
- Probe-first: an unproven peer (no accepted block yet) is never offered slots beyond
  ``initial_probe_requests`` outstanding requests; a proven peer that sent
  ``max_requests_without_progress`` requests without an accepted block gets 0 slots until a
  block arrives. Neither limit is lifted by the floor-bypass ``bonus``.
- Held, never forgotten: a peer held back by one of those rules (or sealed) with nothing
  outstanding gets exactly one request after ``retry_backoff`` seconds, doubling per
  fruitless retry up to ``max_retry_backoff`` and reset by an accepted block, so one bad
  answer never silences a peer for the rest of its session. A request timeout since the
  last accepted block cancels the retry: a silent peer is the liveness rule's to reject.
- Outstanding requests plus offered slots never exceed the hard cap.
- The windowed min/max filters forget samples older than ``horizon`` seconds.
- Each timeout multiplies cwnd by ``timeout_dip`` (geometric shrink), never below the floor.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node_core.observe.schema import DownloadWindowView

SRTT_ALPHA = 0.25
"""EWMA weight of a new RTT sample in the smoothed RTT (reference BBR-lite)."""

RELIABILITY_ALPHA = 0.1
"""EWMA weight of one completion (→ 1) or failure (→ 0) in the reliability score."""

SEAL_RELIABILITY = 0.05
"""Below this reliability the peer is sealed: zero slots, no bypass.

From a perfect record that takes 29 consecutive failures (0.9 ** 29 ≈ 0.047), so a peer is
sealed only after a long run of timeouts or short responses with no completion between.
"""

STARTUP_GROWTH_THRESHOLD = 1.25
"""A round's delivery rate must beat the best so far by this factor to count as growth."""

STARTUP_FLAT_ROUNDS = 3
"""Rounds without delivery-rate growth after which startup decides the pipe is full."""

QUEUE_DELAY_FACTOR = 1.5
"""Smoothed RTT above RTprop * this means a queue is building at the peer (BBR-lite)."""

QUEUE_DECAY = 0.9
"""Per-round cwnd multiplier in probe_bw while a queue is building (BBR-lite ceiling * 0.9)."""

REQUEST_BLOCKS_ALPHA = 0.25
"""EWMA weight of one request's block count in the blocks-per-request estimate."""

MIN_ROUND_SECONDS = 1e-3
"""Shortest round, so a zero RTT sample can never divide a delivery count by zero."""


class Phase(StrEnum):
    """The window's BBR-style phase as the console shows it."""

    STARTUP = "startup"
    PROBE_BW = "probe_bw"
    PROBE_RTT = "probe_rtt"


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """Tunables of one :class:`DownloadWindow`; validated so a bad config fails at build time."""

    initial_cwnd: int = 16
    """Blocks of window a freshly proven peer starts with."""
    min_cwnd: int = 4
    """Floor of the window (and the ProbeRTT window), unless the hard cap is lower."""
    max_cwnd: int = 1024
    """Ceiling of the window in blocks."""
    hard_cap: int = 32_000
    """Request cap before the peer's Status arrives; :meth:`DownloadWindow.set_hard_cap`
    replaces it with the peer's advertised ``max_inflight_requests``."""
    startup_growth: float = 2.0
    """cwnd multiplier per startup round whose delivery rate still grew."""
    cwnd_gain: float = 2.0
    """probe_bw target = ``max(min_cwnd, BDP * cwnd_gain) * reliability``."""
    timeout_dip: float = 0.85
    """cwnd multiplier per expired request deadline."""
    horizon: float = 10.0
    """Seconds the RTprop and delivery-rate filters remember a sample."""
    probe_rtt_every: float = 10.0
    """Seconds between ProbeRTT entries (the first is this long after the first event)."""
    probe_rtt_for: float = 0.2
    """Seconds each ProbeRTT holds the window at ``min_cwnd``."""
    max_requests_without_progress: int = 64
    """A proven peer gets no slots after this many requests without an accepted block."""
    initial_probe_requests: int = 1
    """Outstanding requests an unproven peer may have before its first accepted block."""
    retry_backoff: float = 1.0
    """Seconds before a peer held back for lack of progress gets one more request; doubled
    after every such request that brings no accepted block, reset by an accepted block."""
    max_retry_backoff: float = 30.0
    """Ceiling of ``retry_backoff``."""

    def __post_init__(self) -> None:
        if self.min_cwnd < 1:
            raise ValueError("min_cwnd must be at least 1")
        if not self.min_cwnd <= self.initial_cwnd <= self.max_cwnd:
            raise ValueError("need min_cwnd <= initial_cwnd <= max_cwnd")
        if self.hard_cap < 1:
            raise ValueError("hard_cap must be at least 1")
        if not self.startup_growth > 1.0:
            raise ValueError("startup_growth must exceed 1")
        if not self.cwnd_gain > 0.0:
            raise ValueError("cwnd_gain must be positive")
        if not 0.0 < self.timeout_dip < 1.0:
            raise ValueError("timeout_dip must be in (0, 1)")
        if not self.horizon > 0.0:
            raise ValueError("horizon must be positive")
        if not 0.0 < self.probe_rtt_for < self.probe_rtt_every:
            raise ValueError("need 0 < probe_rtt_for < probe_rtt_every")
        if self.max_requests_without_progress < 1:
            raise ValueError("max_requests_without_progress must be at least 1")
        if self.initial_probe_requests < 1:
            raise ValueError("initial_probe_requests must be at least 1")
        if not 0.0 < self.retry_backoff <= self.max_retry_backoff:
            raise ValueError("need 0 < retry_backoff <= max_retry_backoff")


DEFAULT_WINDOW_CONFIG = WindowConfig()
"""The reference-shaped defaults; a module constant so it can be a default argument."""


class _WindowedFilter:
    """Running min (or max) of ``(time, value)`` samples no older than ``horizon``.

    A monotonic deque: a new sample evicts every older sample it dominates (they can never
    be the extreme again while it is in the window), so the front is always the answer once
    expired samples are popped. Expiry happens at read time, against an explicit ``now``.
    """

    __slots__ = ("_horizon", "_keep_max", "_samples")

    def __init__(self, horizon: float, *, keep_max: bool) -> None:
        self._horizon = horizon
        self._keep_max = keep_max
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, value: float) -> None:
        while self._samples and self._dominates(value, self._samples[-1][1]):
            self._samples.pop()
        self._samples.append((now, value))

    def get(self, now: float) -> float | None:
        """The extreme of samples taken at or after ``now - horizon``; None if there are none."""
        cutoff = now - self._horizon
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
        return self._samples[0][1] if self._samples else None

    def _dominates(self, new: float, old: float) -> bool:
        return new >= old if self._keep_max else new <= old


def _ewma(old: float, sample: float, alpha: float) -> float:
    return old + alpha * (sample - old)


class DownloadWindow:
    """Adaptive per-peer request window; see the module docstring for rules and invariants.

    Read-only properties report the state as of the newest ``now`` passed to any method;
    :meth:`view` takes ``now`` itself so filters are aged before rendering.
    """

    __slots__ = (
        "_backoff",
        "_best_rate",
        "_config",
        "_cwnd",
        "_flat_rounds",
        "_full_pipe",
        "_hard_cap",
        "_next_probe_at",
        "_now",
        "_probe_until",
        "_probing",
        "_proven",
        "_rate_blocks",
        "_rate_bytes",
        "_reliability",
        "_request_blocks",
        "_retry_at",
        "_round_blocks",
        "_round_bytes",
        "_round_start",
        "_rtprop",
        "_rwp",
        "_srtt",
        "_timed_out",
    )

    def __init__(self, config: WindowConfig = DEFAULT_WINDOW_CONFIG) -> None:
        self._config = config
        self._hard_cap = config.hard_cap
        self._cwnd = float(config.initial_cwnd)
        self._clamp_cwnd()
        self._proven = False
        self._rwp = 0
        self._reliability = 1.0
        self._srtt: float | None = None
        self._rtprop = _WindowedFilter(config.horizon, keep_max=False)
        self._rate_blocks = _WindowedFilter(config.horizon, keep_max=True)
        self._rate_bytes = _WindowedFilter(config.horizon, keep_max=True)
        self._full_pipe = False
        self._best_rate = 0.0
        self._flat_rounds = 0
        self._round_start: float | None = None
        self._round_blocks = 0
        self._round_bytes = 0
        self._request_blocks = 1.0
        self._now: float | None = None
        self._next_probe_at = math.inf
        self._probing = False
        self._probe_until: float | None = None
        self._backoff = config.retry_backoff
        self._retry_at: float | None = None
        self._timed_out = False

    # ----------------------------------------------------------------- read-only state

    @property
    def config(self) -> WindowConfig:
        return self._config

    @property
    def cwnd(self) -> int:
        """Effective window in blocks: ``min_cwnd`` (or the lower hard cap) during ProbeRTT."""
        if self._probing:
            return int(self._floor())
        return int(self._cwnd)

    @property
    def hard_cap(self) -> int:
        return self._hard_cap

    def cwnd_at(self, now: float) -> int:
        """:attr:`cwnd` once the clock moved to ``now`` (the ``cwnd`` :meth:`view` shows)."""
        self._advance(now)
        return self.cwnd

    @property
    def proven(self) -> bool:
        """True once the peer delivered an accepted block this session."""
        return self._proven

    @property
    def requests_without_progress(self) -> int:
        """Requests sent since the last accepted block."""
        return self._rwp

    @property
    def rtprop(self) -> float | None:
        """Windowed min RTT in seconds, or None with no sample inside the horizon."""
        return self._rtprop.get(self._now) if self._now is not None else None

    @property
    def srtt(self) -> float | None:
        """Smoothed RTT in seconds, or None before the first sample."""
        return self._srtt

    @property
    def delivery_rate_blocks(self) -> float:
        """Windowed max delivery rate in blocks/s (0 with no sample inside the horizon)."""
        return self._max_rate(self._rate_blocks)

    @property
    def delivery_rate_bytes(self) -> float:
        """Windowed max delivery rate in body bytes/s (display only)."""
        return self._max_rate(self._rate_bytes)

    @property
    def reliability(self) -> float:
        return self._reliability

    @property
    def sealed(self) -> bool:
        """Reliability fell below :data:`SEAL_RELIABILITY`: no slots, no bypass."""
        return self._reliability < SEAL_RELIABILITY

    @property
    def retry_at(self) -> float | None:
        """When a peer held back for lack of progress may be asked once more (None: not held)."""
        return self._retry_at

    @property
    def phase(self) -> Phase:
        if self._probing:
            return Phase.PROBE_RTT
        return Phase.PROBE_BW if self._full_pipe else Phase.STARTUP

    # ----------------------------------------------------------------------- inputs

    def set_hard_cap(self, requests: int) -> None:
        """Apply the peer's advertised ``max_inflight_requests`` (clamped to at least 1)."""
        self._hard_cap = max(1, requests)
        self._clamp_cwnd()

    def available_slots(
        self,
        outstanding_requests: int,
        now: float,
        bonus: int = 0,
        *,
        unreceived_blocks: int | None = None,
    ) -> int:
        """How many more requests may be issued now.

        Zero for a sealed peer. An unproven peer is limited to ``initial_probe_requests``
        requests in total before its first accepted block, and a proven one to
        ``max_requests_without_progress`` requests since its last accepted block; neither
        limit nor sealing is lifted by ``bonus`` (the routine's floor-bypass slots), which
        otherwise extends the cwnd. The hard cap always binds.

        This is also where ProbeRTT learns the window has drained (``outstanding_requests``
        at or below ``min_cwnd``) and starts its hold timer, so call it on every fill.
        """
        now = self._advance(now)
        cfg = self._config
        outstanding = max(0, outstanding_requests)
        in_flight = (
            outstanding * self._request_blocks
            if unreceived_blocks is None
            else float(max(0, unreceived_blocks))
        )
        if self._probing and self._probe_until is None and in_flight <= self._floor():
            # Drained: hold the floor window for probe_rtt_for so RTprop sees an empty queue.
            self._probe_until = now + cfg.probe_rtt_for
        hard_room = self._hard_cap - outstanding
        held = self.sealed or self._rwp >= (
            cfg.max_requests_without_progress if self._proven else cfg.initial_probe_requests
        )
        if held:
            # No progress (a failed probe, too many requests without a block, or sealed):
            # once nothing is outstanding, one more request after a growing backoff, so a
            # peer that sent one bad answer is asked again instead of never (issue 16). A
            # peer whose request timed out gets none: it owes blocks, and the routine's
            # liveness rule rejects it rather than feeding a silent peer more heights.
            if outstanding > 0 or self._timed_out:
                return 0
            if self._retry_at is None:
                self._retry_at = now + self._backoff
                self._backoff = min(self._backoff * 2.0, cfg.max_retry_backoff)
                return 0
            return 0 if now < self._retry_at else max(0, min(1, hard_room))
        if not self._proven:
            # Probe first (reference §4.7): an unproven peer gets ``initial_probe_requests``
            # requests in total until its first accepted block, not per round: a request that
            # timed out does not earn a silent peer another one.
            probe_room = cfg.initial_probe_requests - max(outstanding, self._rwp)
            window_room = self._window_room(outstanding, unreceived_blocks, 0)
            return max(0, min(probe_room, window_room, hard_room))
        progress_room = cfg.max_requests_without_progress - self._rwp
        window_room = self._window_room(outstanding, unreceived_blocks, max(0, bonus))
        return max(0, min(window_room, progress_room, hard_room))

    def _window_room(self, outstanding: int, unreceived: int | None, bonus: int) -> int:
        """Requests the cwnd (plus ``bonus`` requests) leaves room for.

        Given ``unreceived`` (blocks asked for and not yet received), counted as the
        reference counts what it still waits for (§4.9: outstanding heights are unreceived
        only; §4.11: a non-zero gate is room for one more request): there is room while
        fewer than cwnd blocks are unreceived, so the next answer is asked for while the
        last blocks of the current one still arrive, and a window smaller than one request
        still keeps the peer busy. Without it, every outstanding request counts whole and
        the block window converts to ``max(1, cwnd / blocks per request)`` requests.
        """
        if unreceived is None:
            return max(1, int(self.cwnd / self._request_blocks)) + bonus - outstanding
        room_blocks = self.cwnd + bonus * self._request_blocks - unreceived
        return math.ceil(room_blocks / self._request_blocks) if room_blocks > 0 else 0

    def on_request_sent(self, blocks: int, now: float) -> None:
        """Record one ``GetBlocks`` of ``blocks`` blocks going out."""
        if blocks < 1:
            raise ValueError("a request carries at least one block")
        now = self._advance(now)
        self._rwp += 1
        self._retry_at = None
        self._request_blocks = _ewma(self._request_blocks, float(blocks), REQUEST_BLOCKS_ALPHA)
        # A round that delivered nothing and has outlived one RTprop spans an idle gap;
        # restart it so the gap is not averaged into the next delivery-rate sample.
        if (
            self._round_start is not None
            and self._round_blocks == 0
            and now - self._round_start > self._round_floor(now)
        ):
            self._round_start = now

    def on_block(self, nbytes: int, rtt: float, now: float) -> None:
        """Record an accepted block that took ``rtt`` seconds since its request went out.

        Proves the peer, resets requests-without-progress, feeds the RTT filters, the
        delivery-rate round and the cwnd. A block reaching a sealed peer is the late-body
        credit: one reliability step toward 1, which unseals it.
        """
        if nbytes < 0:
            raise ValueError("nbytes must be non-negative")
        if not (math.isfinite(rtt) and rtt >= 0.0):
            raise ValueError("rtt must be a finite non-negative number of seconds")
        now = self._advance(now)
        self._rwp = 0
        self._backoff = self._config.retry_backoff
        self._retry_at = None
        self._timed_out = False
        if self.sealed:
            self._reliability = _ewma(self._reliability, 1.0, RELIABILITY_ALPHA)
        prev_rtprop = self._rtprop.get(now)
        self._rtprop.add(now, rtt)
        self._srtt = rtt if self._srtt is None else _ewma(self._srtt, rtt, SRTT_ALPHA)
        if not self._proven:
            # Rounds start at the proof: the single probe request says nothing about rate.
            self._proven = True
            self._round_start = now
            self._round_blocks = 0
            self._round_bytes = 0
            return
        self._round_blocks += 1
        self._round_bytes += nbytes
        assert self._round_start is not None
        elapsed = now - self._round_start
        floor = max(prev_rtprop if prev_rtprop is not None else rtt, MIN_ROUND_SECONDS)
        if elapsed >= floor:
            self._end_round(now, elapsed)
        elif self._full_pipe and not self._probing:
            self._retarget(now, grow=True)

    def on_request_complete(self, requested: int, received: int, now: float) -> None:
        """A request finished (BlocksDone or all blocks received): full → reliability up."""
        if requested < 1 or received < 0:
            raise ValueError("need requested >= 1 and received >= 0")
        now = self._advance(now)
        target = 1.0 if received >= requested else 0.0
        self._reliability = _ewma(self._reliability, target, RELIABILITY_ALPHA)
        if self._full_pipe:
            self._retarget(now, grow=False)

    def on_timeout(self, now: float) -> None:
        """A request deadline expired: cwnd * ``timeout_dip``, reliability toward 0.

        A timeout is loss, so it also ends startup.
        """
        now = self._advance(now)
        self._timed_out = True
        self._reliability = _ewma(self._reliability, 0.0, RELIABILITY_ALPHA)
        self._cwnd *= self._config.timeout_dip
        self._clamp_cwnd()
        self._full_pipe = True

    def view(self, now: float) -> DownloadWindowView:
        """JSON-ready snapshot for the console (times in ms, rates per second)."""
        now = self._advance(now)
        rtprop = self._rtprop.get(now)
        return {
            "cwnd": self.cwnd,
            "rtprop_ms": None if rtprop is None else rtprop * 1000.0,
            "srtt_ms": None if self._srtt is None else self._srtt * 1000.0,
            "delivery_blocks_per_s": self._max_rate(self._rate_blocks),
            "delivery_bytes_per_s": self._max_rate(self._rate_bytes),
            "reliability": self._reliability,
            "phase": self.phase.value,
            "proven": self._proven,
            "requests_without_progress": self._rwp,
            "hard_cap": self._hard_cap,
            "retry_in_s": None
            if self._retry_at is None
            else round(max(0.0, self._retry_at - now), 1),
        }

    # --------------------------------------------------------------------- internals

    def _ceiling(self) -> float:
        return float(min(self._config.max_cwnd, self._hard_cap))

    def _floor(self) -> float:
        return float(min(self._config.min_cwnd, self._ceiling()))

    def _clamp_cwnd(self) -> None:
        self._cwnd = min(max(self._cwnd, self._floor()), self._ceiling())

    def _max_rate(self, rates: _WindowedFilter) -> float:
        if self._now is None:
            return 0.0
        value = rates.get(self._now)
        return 0.0 if value is None else value

    def _round_floor(self, now: float) -> float:
        rtprop = self._rtprop.get(now)
        if rtprop is None:
            rtprop = self._srtt if self._srtt is not None else 0.0
        return max(rtprop, MIN_ROUND_SECONDS)

    def _advance(self, now: float) -> float:
        """Move time forward (never back) and run the ProbeRTT schedule."""
        if self._now is None:
            self._now = now
            self._next_probe_at = now + self._config.probe_rtt_every
        elif now > self._now:
            self._now = now
        now = self._now
        if self._probe_until is not None and now >= self._probe_until:
            self._probing = False
            self._probe_until = None
        if not self._probing and now >= self._next_probe_at:
            # Scheduled from the actual entry, so a long idle gap yields one ProbeRTT, not
            # a burst of back-dated ones. The hold timer starts once drained (see
            # available_slots), as BBR holds ProbeRTT only after inflight reached its floor.
            self._probing = True
            self._next_probe_at = now + self._config.probe_rtt_every
        return now

    def _end_round(self, now: float, elapsed: float) -> None:
        """Close a round: record its delivery rate, then run startup or probe_bw logic."""
        assert self._round_start is not None
        rate = self._round_blocks / elapsed
        self._rate_blocks.add(now, rate)
        self._rate_bytes.add(now, self._round_bytes / elapsed)
        self._round_start = now
        self._round_blocks = 0
        self._round_bytes = 0
        if self._probing:
            # A drained round's rate is low by design: it says nothing about the pipe.
            return
        if not self._full_pipe:
            best = self._rate_blocks.get(now) or 0.0
            if self._best_rate == 0.0:
                # The first round only sets the baseline: it started with the pipeline
                # empty, so any later round "grows" against it and would double blindly.
                self._best_rate = best
                return
            grew = best >= self._best_rate * STARTUP_GROWTH_THRESHOLD
            # A queue already building means the window outgrew the pipe: count the round
            # as flat even if the rate still rose, so a slow peer is not flooded.
            if grew and not self._queue_building(now):
                self._best_rate = best
                self._flat_rounds = 0
                self._cwnd *= self._config.startup_growth
                self._clamp_cwnd()
            else:
                self._flat_rounds += 1
                if self._flat_rounds >= STARTUP_FLAT_ROUNDS:
                    self._full_pipe = True
                    self._retarget(now, grow=False)
            return
        if self._queue_building(now):
            self._cwnd *= QUEUE_DECAY
            self._clamp_cwnd()
        else:
            self._retarget(now, grow=True)

    def _queue_building(self, now: float) -> bool:
        """Smoothed RTT well above RTprop: requests are queueing at the peer."""
        rtprop = self._rtprop.get(now)
        if self._srtt is None or rtprop is None:
            return False
        return self._srtt > rtprop * QUEUE_DELAY_FACTOR

    def _retarget(self, now: float, *, grow: bool) -> None:
        """Move the probe_bw cwnd toward ``max(min_cwnd, BDP * gain) * reliability``.

        A lower target applies at once; a higher one is approached one block per call
        (``grow``), i.e. per accepted block, so the window at most doubles per round, and
        never while a queue is building.
        """
        rate = self._rate_blocks.get(now)
        rtprop = self._rtprop.get(now)
        if rate is None or rtprop is None:
            return
        cfg = self._config
        target = max(float(cfg.min_cwnd), rate * rtprop * cfg.cwnd_gain) * self._reliability
        cwnd = self._cwnd
        if target < cwnd:
            self._cwnd = target
        elif not grow or target == cwnd or self._queue_building(now):
            return  # unchanged (called per accepted block: the common case costs little)
        else:
            self._cwnd = min(target, cwnd + 1.0)
        self._clamp_cwnd()
