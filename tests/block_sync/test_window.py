"""The per-peer block-sync download window (reference §4.5, §4.7, §4.11): explicit-time tests."""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node_core.block_sync.window import (
    SEAL_RELIABILITY,
    DownloadWindow,
    Phase,
    WindowConfig,
)

BLOCK = 1_000


def proven_window(config: WindowConfig | None = None, now: float = 0.0) -> DownloadWindow:
    """A window whose peer has delivered its probe block at ``now``."""
    w = DownloadWindow(config or WindowConfig())
    w.on_request_sent(1, now)
    w.on_block(BLOCK, 0.05, now)
    w.on_request_complete(1, 1, now)
    return w


def bounds(w: DownloadWindow) -> tuple[int, int]:
    cfg = w.config
    ceiling = min(cfg.max_cwnd, w.hard_cap)
    return min(cfg.min_cwnd, ceiling), ceiling


# ------------------------------------------------------------------------ config and view


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_cwnd": 0},
        {"initial_cwnd": 2},
        {"initial_cwnd": 2000},
        {"hard_cap": 0},
        {"startup_growth": 1.0},
        {"cwnd_gain": 0.0},
        {"timeout_dip": 1.0},
        {"horizon": 0.0},
        {"probe_rtt_for": 10.0},
        {"max_requests_without_progress": 0},
        {"initial_probe_requests": 0},
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WindowConfig(**kwargs)  # type: ignore[arg-type]


def test_fresh_window_view_is_json_ready() -> None:
    w = DownloadWindow()
    v = w.view(0.0)
    assert set(v) == {
        "cwnd",
        "rtprop_ms",
        "srtt_ms",
        "delivery_blocks_per_s",
        "delivery_bytes_per_s",
        "reliability",
        "phase",
        "proven",
        "requests_without_progress",
        "hard_cap",
        "retry_in_s",
    }
    assert v["cwnd"] == 16
    assert v["rtprop_ms"] is None and v["srtt_ms"] is None
    assert v["phase"] == "startup" and v["proven"] is False
    json.dumps(v)
    assert w.phase is Phase.STARTUP and w.rtprop is None and w.delivery_rate_blocks == 0.0


def test_input_validation() -> None:
    w = DownloadWindow()
    with pytest.raises(ValueError):
        w.on_request_sent(0, 0.0)
    with pytest.raises(ValueError):
        w.on_block(-1, 0.1, 0.0)
    with pytest.raises(ValueError):
        w.on_block(1, math.nan, 0.0)
    with pytest.raises(ValueError):
        w.on_request_complete(0, 0, 0.0)


# ------------------------------------------------------------------------- probe-first


def test_unproven_peer_gets_only_the_probe_request() -> None:
    w = DownloadWindow()
    assert w.available_slots(0, 0.0) == 1
    assert w.available_slots(0, 0.0, bonus=5) == 1, "bonus never lifts probe-first"
    w.on_request_sent(1, 0.0)
    assert w.available_slots(1, 0.1, bonus=5) == 0
    assert w.requests_without_progress == 1
    w.on_block(BLOCK, 0.2, 0.2)
    assert w.proven and w.requests_without_progress == 0
    assert w.available_slots(0, 0.2) == 16


def test_initial_probe_requests_is_configurable() -> None:
    w = DownloadWindow(WindowConfig(initial_probe_requests=3))
    assert w.available_slots(0, 0.0) == 3
    assert w.available_slots(2, 0.0) == 1


def test_proven_peer_stops_after_max_requests_without_progress() -> None:
    w = proven_window(WindowConfig(initial_cwnd=128, max_cwnd=1024))
    for _ in range(63):
        w.on_request_sent(1, 0.1)
    assert w.available_slots(0, 0.1) == 1, "one left of the 64"
    assert w.available_slots(0, 0.1, bonus=2) == 1
    w.on_request_sent(1, 0.1)
    assert w.requests_without_progress == 64
    assert w.available_slots(0, 0.1, bonus=2) == 0
    # Completions and timeouts are not block progress.
    w.on_request_complete(1, 0, 0.2)
    assert w.available_slots(0, 0.2) == 0
    w.on_block(BLOCK, 0.1, 0.3)
    assert w.requests_without_progress == 0
    assert w.available_slots(0, 0.3) > 0


# ----------------------------------------------------------------------- slots and caps


def test_slots_respect_cwnd_outstanding_bonus_and_hard_cap() -> None:
    w = proven_window()
    assert w.available_slots(10, 0.0) == 6
    assert w.available_slots(16, 0.0) == 0
    assert w.available_slots(16, 0.0, bonus=2) == 2
    w.set_hard_cap(5)
    assert w.cwnd == 5, "the advertised request cap binds cwnd"
    assert w.available_slots(3, 0.0, bonus=2) == 2
    assert w.available_slots(5, 0.0, bonus=2) == 0, "bonus never beats the hard cap"
    w.set_hard_cap(0)
    assert w.hard_cap == 1 and w.cwnd == 1
    assert w.available_slots(0, 0.0) == 1


def test_multi_block_requests_convert_the_block_window_to_requests() -> None:
    w = proven_window()
    for _ in range(20):
        w.on_request_sent(8, 0.0)
        w.on_block(BLOCK, 0.05, 0.0)  # keep progress so the probe-first limit stays out
    # cwnd 16 blocks at ~8 blocks per request is two requests.
    assert w.available_slots(0, 0.0) == 2
    assert w.available_slots(2, 0.0) == 0


def test_sealed_peer_gets_zero_slots_until_a_late_block() -> None:
    w = proven_window()
    n = 0
    while not w.sealed:
        w.on_timeout(1.0)
        n += 1
    assert n == 29 and w.reliability < SEAL_RELIABILITY
    lo, _ = bounds(w)
    assert w.cwnd == lo, "cwnd stays at its floor; sealing is a separate zero"
    assert w.available_slots(0, 1.0) == 0
    assert w.available_slots(0, 1.0, bonus=2) == 0
    w.on_block(BLOCK, 0.5, 1.5)  # late body credit
    assert not w.sealed
    assert w.available_slots(0, 1.5) > 0


def test_short_response_lowers_and_full_completion_raises_reliability() -> None:
    w = proven_window()
    w.on_request_complete(4, 1, 0.1)
    assert w.reliability == pytest.approx(0.9)
    w.on_request_complete(4, 4, 0.2)
    assert w.reliability == pytest.approx(0.91)


# ------------------------------------------------------------------------- timeouts


def test_timeouts_shrink_geometrically_but_not_below_min_cwnd() -> None:
    w = proven_window(WindowConfig(initial_cwnd=100, max_cwnd=1024))
    expected = 100.0
    for _ in range(30):
        w.on_timeout(0.5)
        expected = max(4.0, expected * 0.85)
        assert w.cwnd == int(expected)
    assert w.cwnd == 4
    assert w.phase is Phase.PROBE_BW, "a timeout is loss: startup ends"


# --------------------------------------------------------------------- windowed filters


def test_rtprop_min_filter_forgets_after_the_horizon() -> None:
    w = proven_window(now=0.0)  # rtt sample 0.05 at t=0
    w.on_block(BLOCK, 0.2, 5.0)
    w.on_block(BLOCK, 0.3, 9.0)
    assert w.view(9.5)["rtprop_ms"] == pytest.approx(50.0)
    assert w.view(10.0)["rtprop_ms"] == pytest.approx(50.0), "exactly at the horizon is kept"
    assert w.view(10.01)["rtprop_ms"] == pytest.approx(200.0)
    assert w.rtprop == pytest.approx(0.2)
    assert w.view(15.01)["rtprop_ms"] == pytest.approx(300.0)
    assert w.view(19.01)["rtprop_ms"] is None
    assert w.srtt == pytest.approx(0.140625)  # 0.05 -> 0.0875 -> 0.140625 (alpha 0.25)


def test_delivery_rate_max_filter_forgets_after_the_horizon() -> None:
    w = proven_window(now=0.0)
    # Round 1 (t in (0, 1]): 20 blocks, rtt 0.05 -> rounds end every >= 50 ms.
    t = 0.0
    for _ in range(20):
        t += 0.01  # 100 blocks/s
        w.on_block(BLOCK, 0.05, t)
    fast = w.delivery_rate_blocks
    assert fast == pytest.approx(100.0, rel=0.25)
    assert w.delivery_rate_bytes == pytest.approx(fast * BLOCK)
    # Slow deliveries later: the fast samples stay the max until they age out.
    t = 5.0
    for _ in range(10):
        t += 0.5  # 2 blocks/s
        w.on_block(BLOCK, 0.05, t)
    assert w.delivery_rate_blocks == pytest.approx(fast)
    assert w.view(10.15)["delivery_blocks_per_s"] == pytest.approx(fast)
    for _ in range(12):
        t += 0.5
        w.on_block(BLOCK, 0.05, t)
    assert t > 10.2 + 1.0
    assert w.delivery_rate_blocks == pytest.approx(2.0, rel=0.25)
    assert w.view(t + 10.01)["delivery_blocks_per_s"] == 0.0


def test_time_never_moves_backwards() -> None:
    w = proven_window(now=0.0)
    w.on_block(BLOCK, 0.2, 12.0)  # the 0.05 sample at t=0 has aged out
    assert w.view(3.0)["rtprop_ms"] == pytest.approx(200.0)


# ---------------------------------------------------------------------------- ProbeRTT


def test_probe_rtt_every_10s_for_200ms_drains_to_min_cwnd() -> None:
    w = proven_window(WindowConfig(initial_cwnd=64), now=0.0)
    assert w.cwnd == 64 and w.available_slots(0, 9.99) == 64
    assert w.available_slots(0, 10.0) == 4, "ProbeRTT: the window is min_cwnd"
    assert w.phase is Phase.PROBE_RTT and w.cwnd == 4
    assert w.view(10.1)["phase"] == "probe_rtt"
    assert w.available_slots(4, 10.1) == 0
    assert w.available_slots(4, 10.1, bonus=2) == 2, "floor bypass still works in ProbeRTT"
    assert w.view(10.2)["phase"] == "startup"
    assert w.cwnd == 64, "the underlying window resumes"
    assert w.available_slots(0, 19.9) == 64
    assert w.available_slots(0, 20.0) == 4
    assert w.view(20.2)["phase"] == "startup"


def test_probe_rtt_holds_only_after_the_window_drained() -> None:
    w = proven_window(WindowConfig(initial_cwnd=64), now=0.0)
    assert w.available_slots(40, 10.0) == 0
    assert w.available_slots(20, 10.5) == 0
    assert w.view(10.6)["phase"] == "probe_rtt", "still draining: the 200 ms has not started"
    assert w.available_slots(4, 11.0) == 0  # drained now; hold until 11.2
    assert w.view(11.19)["phase"] == "probe_rtt"
    assert w.view(11.2)["phase"] == "startup"
    assert w.available_slots(40, 11.2) == 24
    # The next ProbeRTT is scheduled from the previous entry, not its exit.
    assert w.available_slots(0, 20.0) == 4


def test_probe_rtt_after_an_idle_gap_runs_once_from_now() -> None:
    w = proven_window(now=0.0)
    assert w.available_slots(0, 100.0) == 4
    assert w.phase is Phase.PROBE_RTT
    assert w.view(100.2)["phase"] == "startup"
    assert w.available_slots(0, 109.9) == 16
    assert w.available_slots(0, 110.0) == 4


def test_unreceived_blocks_ask_for_the_next_answer_before_the_current_one_ends() -> None:
    """Counted in blocks not yet received, a 4-block window keeps one 16-block request
    ahead: the next one goes out once fewer than 4 blocks of the current one are owed."""
    w = proven_window(WindowConfig(initial_cwnd=4))
    for _ in range(20):
        w.on_request_sent(16, 0.0)
        w.on_block(BLOCK, 0.05, 0.0)
    assert w.cwnd == 4
    assert w.available_slots(0, 0.0, unreceived_blocks=0) == 1
    assert w.available_slots(1, 0.0, unreceived_blocks=16) == 0
    assert w.available_slots(1, 0.0, unreceived_blocks=4) == 0
    assert w.available_slots(1, 0.0, unreceived_blocks=3) == 1
    assert w.available_slots(1, 0.0) == 0, "without the count a request counts whole"
    assert w.available_slots(1, 0.0, bonus=2, unreceived_blocks=16) == 2
    w.set_hard_cap(1)
    assert w.available_slots(1, 0.0, unreceived_blocks=0) == 0, "the hard cap still binds"


def test_probe_rtt_drains_on_unreceived_blocks() -> None:
    w = proven_window()
    w.on_request_sent(16, 0.0)
    w.on_block(BLOCK, 0.05, 0.0)
    assert w.available_slots(1, 10.0, unreceived_blocks=12) == 0  # ProbeRTT, not drained
    assert w.phase is Phase.PROBE_RTT
    assert w.available_slots(1, 10.5, unreceived_blocks=4) == 0  # drained: hold 200 ms
    assert w.phase is Phase.PROBE_RTT
    w.available_slots(0, 10.7, unreceived_blocks=0)
    assert w.phase is not Phase.PROBE_RTT


# ------------------------------------------------------------- convergence (simulated peer)


@dataclass
class SimPeer:
    """A FIFO server: one-way delay ``rtt / 2`` each way, ``1 / rate`` seconds per block."""

    rate: float
    rtt: float
    free_at: float = 0.0
    inflight: list[tuple[float, float]] = field(default_factory=list)

    def request(self, now: float) -> None:
        start = max(now + self.rtt / 2, self.free_at)
        self.free_at = start + 1.0 / self.rate
        heapq.heappush(self.inflight, (self.free_at + self.rtt / 2, now))


def simulate(w: DownloadWindow, peer: SimPeer, until: float) -> list[tuple[float, int, str]]:
    """Drive ``w`` against ``peer`` with one-block requests; returns (t, cwnd, phase) trace."""
    t = 0.0
    trace: list[tuple[float, int, str]] = []
    while t < until:
        for _ in range(w.available_slots(len(peer.inflight), t)):
            peer.request(t)
            w.on_request_sent(1, t)
        if peer.inflight:
            t, sent = heapq.heappop(peer.inflight)
            w.on_block(BLOCK, t - sent, t)
            w.on_request_complete(1, 1, t)
        else:
            t += 0.001
        trace.append((t, w.cwnd, w.phase.value))
    return trace


def test_fast_reliable_peer_grows_in_startup_until_the_rate_plateaus() -> None:
    w = DownloadWindow()
    peer = SimPeer(rate=5000.0, rtt=0.05)  # BDP 250 blocks
    trace = simulate(w, peer, until=5.0)
    startup = [c for _, c, p in trace if p == "startup"]
    assert max(startup) >= 256, "startup doubled well past the initial 16"
    left_startup = next(t for t, _, p in trace if p == "probe_bw")
    assert left_startup < 1.5
    assert w.phase is Phase.PROBE_BW
    assert w.delivery_rate_blocks == pytest.approx(5000.0, rel=0.1)
    assert w.rtprop == pytest.approx(0.05, rel=0.05)
    # probe_bw settles between one BDP and the 2x gain target, queue kept in check.
    late = [c for t, c, _ in trace if t > 3.0]
    assert min(late) >= 200 and max(late) <= 520
    assert w.reliability == 1.0


def test_slow_peer_converges_to_a_small_window() -> None:
    w = DownloadWindow()
    peer = SimPeer(rate=4.0, rtt=0.2)  # BDP 0.8 blocks
    trace = simulate(w, peer, until=90.0)
    assert w.phase in (Phase.PROBE_BW, Phase.PROBE_RTT)
    late = [c for t, c, _ in trace if t > 60.0]
    assert max(late) <= 8
    assert w.delivery_rate_blocks == pytest.approx(4.0, rel=0.3)


def test_probe_rtt_refreshes_rtprop_for_a_fast_peer() -> None:
    w = DownloadWindow()
    peer = SimPeer(rate=5000.0, rtt=0.05)
    trace = simulate(w, peer, until=25.0)
    assert any(p == "probe_rtt" for _, _, p in trace)
    # Without drains the queue would ratchet RTprop up as old samples age out.
    assert w.rtprop is not None and w.rtprop < 0.05 * 1.2
    late = [c for t, c, p in trace if t > 15.0 and p != "probe_rtt"]
    assert max(late) <= 520


# --------------------------------------------------------------------- property-based

EVENTS = st.one_of(
    st.tuples(st.just("send"), st.integers(1, 128), st.integers(0, 3)),
    st.tuples(st.just("block"), st.integers(0, 2_000_000), st.floats(0.0, 20.0)),
    st.tuples(st.just("complete"), st.integers(1, 128), st.integers(0, 130)),
    st.tuples(st.just("timeout"), st.just(0), st.just(0)),
    st.tuples(st.just("cap"), st.integers(-5, 40_000), st.just(0)),
    st.tuples(st.just("force_send"), st.integers(1, 4), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.tuples(EVENTS, st.floats(0.0, 3.0)), max_size=200),
    config=st.builds(
        WindowConfig,
        initial_cwnd=st.integers(4, 64),
        min_cwnd=st.integers(1, 4),
        max_cwnd=st.integers(64, 2048),
        max_requests_without_progress=st.integers(1, 80),
        initial_probe_requests=st.integers(1, 3),
    ),
)
def test_random_event_sequences_never_violate_bounds(
    events: list[tuple[tuple[str, int, float], float]], config: WindowConfig
) -> None:
    w = DownloadWindow(config)
    now = 0.0
    outstanding = 0
    honest = True  # the driver has only ever sent what available_slots allowed
    for (kind, a, b), dt in events:
        now += dt
        if kind == "send":
            slots = w.available_slots(outstanding, now, bonus=int(b))
            for _ in range(slots):
                w.on_request_sent(a, now)
                outstanding += 1
        elif kind == "force_send":
            for _ in range(a):
                w.on_request_sent(1, now)
                outstanding += 1
            honest = False
        elif kind == "block":
            w.on_block(a, b, now)
        elif kind == "complete":
            w.on_request_complete(a, int(b), now)
            outstanding = max(0, outstanding - 1)
        elif kind == "timeout":
            w.on_timeout(now)
            outstanding = max(0, outstanding - 1)
        else:
            w.set_hard_cap(a)

        lo, hi = bounds(w)
        assert lo <= w.cwnd <= hi
        assert 0.0 <= w.reliability <= 1.0
        assert w.requests_without_progress >= 0
        for bonus in (0, 2):
            slots = w.available_slots(outstanding, now, bonus=bonus)
            assert slots >= 0
            held = w.sealed or w.requests_without_progress >= (
                config.max_requests_without_progress if w.proven else config.initial_probe_requests
            )
            if slots:
                assert outstanding + slots <= w.hard_cap
            if held:
                # Held back: at most one retry, only with nothing outstanding, only once
                # its backoff has run out.
                if slots:
                    assert slots == 1 and outstanding == 0
                    assert w.retry_at is not None and now >= w.retry_at
            elif not w.proven:
                assert outstanding + slots <= config.initial_probe_requests or slots == 0
            if bonus == 0 and slots:
                assert outstanding + slots <= max(1, w.cwnd)
        if honest and not w.proven:
            assert outstanding <= config.initial_probe_requests
        v = w.view(now)
        assert v["phase"] in {"startup", "probe_bw", "probe_rtt"}
        json.dumps(v)


# --------------------------------------------------------------- held peers are retried


def test_a_failed_probe_is_retried_after_a_growing_backoff() -> None:
    """Issue 16 defect 4: one bad answer must not silence an unproven peer for good."""
    w = DownloadWindow()
    assert w.available_slots(0, 0.0) == 1
    w.on_request_sent(4, 0.0)
    w.on_request_complete(4, 0, 0.1)  # answered, but nothing accepted (a wrong body)
    assert w.available_slots(0, 0.2) == 0  # held: the backoff starts now
    assert w.retry_at == pytest.approx(1.2)
    assert w.available_slots(0, 1.1) == 0
    assert w.available_slots(0, 1.2) == 1  # one more probe
    w.on_request_sent(4, 1.2)
    assert w.retry_at is None
    w.on_request_complete(4, 0, 1.3)
    assert w.available_slots(0, 1.4) == 0
    assert w.retry_at == pytest.approx(3.4)  # doubled
    assert w.available_slots(0, 3.4) == 1
    w.on_request_sent(4, 3.4)
    w.on_block(1000, 0.05, 3.45)  # finally a good block: proven, backoff reset
    assert w.proven and w.retry_at is None
    assert w.available_slots(0, 3.5) >= 1


def test_a_held_peer_with_a_request_out_gets_nothing_more() -> None:
    w = DownloadWindow()
    w.on_request_sent(4, 0.0)
    assert w.available_slots(1, 5.0) == 0
    assert w.retry_at is None  # nothing to back off from while the probe is out


def test_a_timed_out_probe_is_never_retried() -> None:
    """A silent peer owes blocks: the liveness rule rejects it; no second probe feeds it."""
    w = DownloadWindow()
    w.on_request_sent(4, 0.0)
    w.on_timeout(8.0)
    for t in (8.1, 10.0, 100.0):
        assert w.available_slots(0, t) == 0


def test_the_backoff_is_capped() -> None:
    w = DownloadWindow(WindowConfig(retry_backoff=1.0, max_retry_backoff=4.0))
    now = 0.0
    waits = []
    for _ in range(5):
        w.on_request_sent(1, now)
        w.on_request_complete(1, 0, now)
        assert w.available_slots(0, now) == 0
        assert w.retry_at is not None
        waits.append(round(w.retry_at - now, 3))
        now = w.retry_at
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]


# ------------------------------------------------- multi-block answers (the routine's use)


@dataclass
class AnswerPeer:
    """A FIFO server answering ``count``-block requests one block per ``1 / rate`` seconds,
    one-way delay ``rtt / 2`` each way."""

    rate: float
    rtt: float
    free_at: float = 0.0
    arrivals: list[tuple[float, int]] = field(default_factory=list)

    def request(self, now: float, count: int, rid: int) -> None:
        start = max(now + self.rtt / 2, self.free_at)
        for k in range(count):
            heapq.heappush(self.arrivals, (start + (k + 1) / self.rate + self.rtt / 2, rid))
        self.free_at = start + count / self.rate


def simulate_answers(
    w: DownloadWindow, peer: AnswerPeer, until: float, per_request: int = 16
) -> list[tuple[float, int, int]]:
    """Drive ``w`` as the routine does: slots from the unreceived blocks, every block an RTT
    sample since its request; returns (t, cwnd, blocks delivered so far)."""
    owed: dict[int, list[float]] = {}  # request -> [sent at, blocks unreceived]
    t, rid, delivered = 0.0, 0, 0
    trace: list[tuple[float, int, int]] = []
    while t < until:
        unreceived = int(sum(o[1] for o in owed.values()))
        for _ in range(w.available_slots(len(owed), t, unreceived_blocks=unreceived)):
            peer.request(t, per_request, rid)
            w.on_request_sent(per_request, t)
            owed[rid] = [t, float(per_request)]
            rid += 1
        if peer.arrivals:
            t, r = heapq.heappop(peer.arrivals)
            w.on_block(BLOCK, t - owed[r][0], t)
            owed[r][1] -= 1
            delivered += 1
            if not owed[r][1]:
                w.on_request_complete(per_request, per_request, t)
                del owed[r]
        else:
            t += 0.001
        trace.append((t, w.cwnd, delivered))
    return trace


def test_a_fast_peer_answering_16_blocks_is_kept_busy() -> None:
    """1,000 blocks/s behind a 10 ms round trip: one 16-block request at a time would
    leave it idle 10 ms in every 26 (about 62 % of its rate); asking ahead keeps it busy."""
    trace = simulate_answers(DownloadWindow(), AnswerPeer(rate=1000.0, rtt=0.01), until=6.0)
    late = [(t, d) for t, _, d in trace if t >= 1.0]
    rate = (late[-1][1] - late[0][1]) / (late[-1][0] - late[0][0])
    assert rate >= 950.0


def test_a_throttled_peer_answering_16_blocks_sits_at_the_floor() -> None:
    """One block a second (a throttled read): the window comes down to its floor and stays
    there for long stretches, which is what the window_floor diagnostic reports."""
    trace = simulate_answers(DownloadWindow(), AnswerPeer(rate=1.0, rtt=0.05), until=120.0)
    longest, since = 0.0, None
    for t, cwnd, _ in trace:
        since = (since if since is not None else t) if cwnd <= 4 else None
        longest = longest if since is None else max(longest, t - since)
    assert longest >= 10.0
    assert max(c for t, c, _ in trace if t > 30.0) <= 16
