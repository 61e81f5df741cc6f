"""Per-stream credit flow control and token buckets (explicit clocks, no waiting)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node_core.protocol.flow import RecvWindow, SendCredit, stream_window
from node_core.protocol.limits import FRAME_HEADER_BYTES, MIB, MIN_STREAM_WINDOW_BYTES
from node_core.protocol.ratelimit import TokenBucket

# --- stream window -------------------------------------------------------------------------


@given(st.integers(1, 64 * MIB))
def test_stream_window_fits_two_frames(frame_cap: int) -> None:
    w = stream_window(frame_cap)
    assert w >= 2 * frame_cap
    assert w >= MIN_STREAM_WINDOW_BYTES


def test_stream_window_examples() -> None:
    assert stream_window(FRAME_HEADER_BYTES) == MIN_STREAM_WINDOW_BYTES
    big = 4 * MIB + FRAME_HEADER_BYTES
    assert stream_window(big) == 2 * big


# --- send credit ---------------------------------------------------------------------------


def test_send_credit_accounting() -> None:
    credit = SendCredit(100)
    credit.consume(60)
    assert credit.available == 40
    with pytest.raises(ValueError):
        credit.consume(41)
    assert credit.available == 40  # a refused send consumes nothing
    credit.consume(40)
    assert credit.available == 0
    credit.grant(25)
    assert credit.available == 25
    credit.consume(25)
    assert credit.available == 0


# --- receive window ------------------------------------------------------------------------


def test_recv_window_detects_overrun() -> None:
    win = RecvWindow(100)
    assert win.on_data(60)
    assert win.on_data(40)
    assert win.outstanding == 100
    assert not win.on_data(1)
    assert win.outstanding == 100  # the overrun is not accounted


def test_recv_window_consumed_but_not_credited_still_counts() -> None:
    # Bytes consumed but whose credit has not been sent yet are still owed to the window:
    # the sender has not been told it may reuse them.
    win = RecvWindow(100)
    assert win.on_data(100)
    assert win.on_consumed(10) == 0  # below a quarter of the window: batched
    assert win.outstanding == 90
    assert not win.on_data(1)


def test_recv_window_grants_in_quarter_window_batches() -> None:
    win = RecvWindow(1000)
    assert win.on_data(1000)
    assert win.on_consumed(100) == 0
    assert win.on_consumed(100) == 0
    assert win.on_consumed(49) == 0
    assert win.on_consumed(1) == 250  # reaches window // 4
    assert win.on_consumed(300) == 300  # a single big consume is granted at once
    assert win.on_consumed(250) == 250
    assert win.outstanding == 200
    # After the grants the sender may send up to the granted amount again.
    assert win.on_data(800)
    assert not win.on_data(1)


def test_recv_window_never_grants_more_than_received() -> None:
    win = RecvWindow(400)
    assert win.on_data(50)
    assert win.on_consumed(10_000) == 0  # clamped to 50, below the 100-byte batch
    assert win.outstanding == 0
    assert win.on_data(60)
    assert win.on_consumed(10_000) == 110  # 50 owed + 60 newly consumed
    assert win.on_consumed(10_000) == 0


@settings(max_examples=300)
@given(
    st.integers(4, 4096),
    st.lists(st.tuples(st.sampled_from(["send", "consume"]), st.integers(0, 5000)), max_size=60),
)
def test_sender_and_receiver_stay_in_sync(window: int, ops: list[tuple[str, int]]) -> None:
    """A well-behaved sender never trips the receiver, and credit is conserved."""
    sender = SendCredit(window)
    receiver = RecvWindow(window)
    received = consumed = granted = 0
    for op, n in ops:
        if op == "send":
            n = min(n, sender.available)
            sender.consume(n)
            assert receiver.on_data(n), "a sender within its credit must never overrun"
            received += n
        else:
            before = receiver.outstanding
            grant = receiver.on_consumed(n)
            consumed += before - receiver.outstanding
            assert grant == 0 or grant >= window // 4
            if grant:
                sender.grant(grant)
                granted += grant
        # Never more credit returned than the application consumed.
        assert granted <= consumed <= received
        # Conservation: what the sender may still send + what the receiver holds or owes
        # is exactly one window.
        owed = consumed - granted
        assert sender.available + receiver.outstanding + owed == window
    # Any byte beyond the sender's credit is an overrun.
    assert not receiver.on_data(sender.available + 1)


# --- token bucket --------------------------------------------------------------------------


def test_token_bucket_starts_full_and_allows_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=5.0, now=100.0)
    assert bucket.level(100.0) == 5.0
    assert all(bucket.try_take(100.0) for _ in range(5))
    assert not bucket.try_take(100.0)


def test_token_bucket_default_burst_is_rate() -> None:
    bucket = TokenBucket(rate=3.0)
    assert bucket.burst == 3.0
    assert [bucket.try_take(0.0) for _ in range(4)] == [True, True, True, False]


def test_token_bucket_refills_at_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=5.0, now=0.0)
    for _ in range(5):
        assert bucket.try_take(0.0)
    assert not bucket.try_take(0.05)  # half a token
    assert bucket.try_take(0.1)  # one token after 0.1 s at 10/s
    assert not bucket.try_take(0.1)
    assert bucket.level(0.3) == pytest.approx(2.0)


def test_token_bucket_never_exceeds_burst() -> None:
    bucket = TokenBucket(rate=100.0, burst=4.0, now=0.0)
    assert bucket.level(1_000_000.0) == 4.0
    assert all(bucket.try_take(1_000_000.0) for _ in range(4))
    assert not bucket.try_take(1_000_000.0)


def test_token_bucket_ignores_time_going_backwards() -> None:
    bucket = TokenBucket(rate=10.0, burst=2.0, now=10.0)
    assert bucket.try_take(10.0)
    assert bucket.try_take(10.0)
    assert not bucket.try_take(5.0)
    assert bucket.level(5.0) == 0.0
    assert bucket.try_take(10.5)


def test_token_bucket_multi_token_take() -> None:
    bucket = TokenBucket(rate=1.0, burst=10.0)
    assert not bucket.try_take(0.0, 11.0)  # more than a full bucket never succeeds
    assert bucket.level(0.0) == 10.0  # and a refused take consumes nothing
    assert bucket.try_take(0.0, 10.0)
    assert bucket.level(0.0) == 0.0


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_token_bucket_rejects_non_positive_rate(rate: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate)


@settings(max_examples=300)
@given(
    st.floats(0.1, 1000.0),
    st.floats(1.0, 100.0),
    st.lists(st.tuples(st.floats(0.0, 10.0), st.floats(0.1, 5.0)), max_size=50),
)
def test_token_bucket_properties(
    rate: float, burst: float, steps: list[tuple[float, float]]
) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    now = 0.0
    taken = 0.0
    for dt, n in steps:
        now += dt
        level = bucket.level(now)
        assert 0.0 <= level <= burst
        if bucket.try_take(now, n):
            taken += n
        assert 0.0 <= bucket.level(now) <= burst
    # Never more than the initial burst plus what the rate refilled.
    assert taken <= burst + rate * now + 1e-6
